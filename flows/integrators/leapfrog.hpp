// Leapfrog, one of the flows' integrators (like Rk4, flows/integrators/rk4.hpp:
// step and adjoint_step side by side). It integrates Hamilton's equations of
// H(q, p) = V(q) + K(p) on a Hamiltonian:
//   grad_v(n, q, g), grad_k(n, p, g)     ∇V, ∇K at n rows
//   hvp_v(n, c, q, u, hu), hvp_k(…)      hu += c H u at rows q (p), and the parameter
//                                         adjoint c ∂(u·∇E)/∂θ accumulated by the field
#pragma once

#include "flows/elementwise.hpp"
#include "flows/nn/mlp.hpp"

namespace bf {

/// The leapfrog (velocity Verlet) for H(q, p) = V(q) + K(p), step dt (dt < 0: backwards):
///
///   p_h = p − dt/2 ∇V(q)        half kick
///   q'  = q + dt ∇K(p_h)        drift
///   p'  = p_h − dt/2 ∇V(q')     half kick (its ∇V(q') is the next step's first)
///
/// volume-preserving and reversible (dt → −dt). The adjoint of a loss ℓ(q_L, p_L), b = q̄ and a = p̄,
/// runs the three maps backwards; the transpose of a kick p −= c ∇V(q) is q̄ −= c H_V p̄, of a drift
/// q += dt ∇K(p) is p̄ += dt H_K q̄, each with the parameter adjoint of the same product. Consecutive
/// half kicks at an interior position Q_s share one Hessian-vector product of weight dt:
///   Q_L: −dt/2,  then per step s = L−1 … 0:  drift at PH_s: dt,  kick at Q_s: −dt (s > 0) or −dt/2 (s = 0).
/// The forward stores Q_0 … Q_L and PH_0 … PH_{L−1} (O(L n D) numbers, no network state).
template <class T>
class Leapfrog {
 public:
  Leapfrog() = default;
  Leapfrog(int max_batch, int dim, int steps)
      : steps_(steps), gq_("leapfrog_grad_v", max_batch, dim), gp_("leapfrog_grad_k", max_batch, dim),
        qs_("leapfrog_positions", static_cast<std::size_t>(steps + 1) * max_batch, dim),
        phs_("leapfrog_half_momenta", static_cast<std::size_t>(steps) * max_batch, dim) {}

  int steps() const { return steps_; }

  /// One step s in place; gq holds ∇V(q) on entry and ∇V(q') on exit. With store, keeps Q_s and PH_s.
  template <class Hamiltonian>
  void step(Hamiltonian& H, int n, int s, const Rows<T>& q, const Rows<T>& p, T dt, bool store) {
    const int D = static_cast<int>(q.extent(1));
    const Rows<T> gq = head_rows(gq_, n), gp = head_rows(gp_, n);
    if (store) copy(n, D, q, position(s, n));
    axpy(n, D, -dt / T(2), gq, p);
    if (store) copy(n, D, p, rows_of<T>(phs_, static_cast<std::int64_t>(s) * n, n));
    H.grad_k(n, p, gp);
    axpy(n, D, dt, gp, q);
    H.grad_v(n, q, gq);
    axpy(n, D, -dt / T(2), gq, p);
  }

  /// L steps of dt from (q, p), in place; with store, the states the adjoint needs.
  template <class Hamiltonian>
  void integrate(Hamiltonian& H, int n, const Rows<T>& q, const Rows<T>& p, T dt, bool store) {
    integrate(H, n, q, p, dt, store, [](int, const Rows<T>&, const Rows<T>&) {});
  }

  /// The same, calling visit(s, q_s, p_s) at every state s = 1 … L the integration reaches
  /// (a loss over the whole trajectory, as Hamiltonian score matching's, reads them there).
  template <class Hamiltonian, class Visit>
  void integrate(Hamiltonian& H, int n, const Rows<T>& q, const Rows<T>& p, T dt, bool store, Visit&& visit) {
    H.grad_v(n, q, head_rows(gq_, n));
    for (int s = 0; s < steps_; ++s) {
      step(H, n, s, q, p, dt, store);
      visit(s + 1, q, p);
    }
    if (store) copy(n, static_cast<int>(q.extent(1)), q, position(steps_, n));
  }

  /// The adjoint of step s on the stored states: (b, a) = (q̄, p̄) after step s in, before it out.
  /// The kick at Q_{s+1} is step s + 1's (merged), or its own when s is the last step.
  template <class Hamiltonian>
  void adjoint_step(Hamiltonian& H, int n, int s, const Rows<T>& b, const Rows<T>& a, T dt) {
    if (s == steps_ - 1) H.hvp_v(n, -dt / T(2), position(steps_, n), a, b);
    H.hvp_k(n, dt, rows_of<const T>(phs_, static_cast<std::int64_t>(s) * n, n), b, a);
    H.hvp_v(n, s > 0 ? -dt : -dt / T(2), position(s, n), a, b);
  }

  /// The adjoint of the stored integration: (q̄, p̄) at the end in, at the start out.
  template <class Hamiltonian>
  void adjoint(Hamiltonian& H, int n, const Rows<T>& b, const Rows<T>& a, T dt) {
    for (int s = steps_ - 1; s >= 0; --s) adjoint_step(H, n, s, b, a, dt);
  }

  /// The adjoint of a loss over every state, ℓ(q_1, p_1, …, q_L, p_L): ∂ℓ/∂q_s and ∂ℓ/∂p_s
  /// (the sources) in rows (s − 1) n … s n − 1 of qbar and pbar, s = 1 … L; (b, a) come out
  /// as (q̄_0, p̄_0) (b, a are overwritten, not added to). A source on p_s lies between the two
  /// half kicks at Q_s, so the later one (step s − 1's, earlier in the adjoint) sees p̄ + p̄_s:
  /// the merged product at Q_s is then −dt H (p̄ + p̄_s / 2), still one product per step.
  template <class Hamiltonian>
  void adjoint_with_sources(Hamiltonian& H, int n, const Rows<T>& b, const Rows<T>& a, T dt,
                            const Matrix<T>& qbar, const Matrix<T>& pbar) {
    const int D = static_cast<int>(b.extent(1)), L = steps_;
    copy(n, D, source(qbar, L, n), b);
    copy(n, D, source(pbar, L, n), a);
    H.hvp_v(n, -dt / T(2), position(L, n), a, b);
    const Rows<T> u = head_rows(gp_, n);  // the merged kick's direction (gp_ is free in the adjoint)
    for (int s = L - 1; s >= 1; --s) {
      H.hvp_k(n, dt, rows_of<const T>(phs_, static_cast<std::int64_t>(s) * n, n), b, a);
      const Rows<const T> qs = source(qbar, s, n), ps = source(pbar, s, n);
      for_each_element("bf::leapfrog_source", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        u(i, j) = a(i, j) + ps(i, j) / T(2);
        a(i, j) += ps(i, j);
        b(i, j) += qs(i, j);
      });
      // b's source is added before the product, which only adds to b: the order does not matter.
      H.hvp_v(n, -dt, position(s, n), Rows<const T>(u), b);
    }
    H.hvp_k(n, dt, rows_of<const T>(phs_, 0, n), b, a);
    H.hvp_v(n, -dt / T(2), position(0, n), a, b);
  }

  /// y += c x and y = x on n x d rows (public: CUDA needs device lambdas in public members).
  static void axpy(int n, int d, T c, const Rows<const T>& x, const Rows<T>& y) {
    for_each_element("bf::leapfrog_axpy", n, d, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      y(i, j) += c * x(i, j);
    });
  }
  static void copy(int n, int d, const Rows<const T>& x, const Rows<T>& y) {
    for_each_element("bf::leapfrog_copy", n, d, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      y(i, j) = x(i, j);
    });
  }

 private:
  Rows<T> position(int s, int n) const { return rows_of<T>(qs_, static_cast<std::int64_t>(s) * n, n); }
  static Rows<T> source(const Matrix<T>& m, int s, int n) {
    return rows_of<T>(m, static_cast<std::int64_t>(s - 1) * n, n);
  }

  int steps_ = 0;
  Matrix<T> gq_, gp_, qs_, phs_;
};

}  // namespace bf
