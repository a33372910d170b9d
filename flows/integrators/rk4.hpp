// Rk4, one of the flows' integrators: a small type with its step and the
// step's discrete adjoint side by side, acting on a field through an explicit
// interface (the field owns its networks and their context; the integrator
// owns its stage buffers). It integrates dx/dt = V(x, t) with I = ∫ ∇·V dt
// alongside, on a VectorField:
//   velocity(n, x, t, v, div, with_div)  V at n rows x, one time t; ∇·V into div when with_div (else 0)
//   forward(n, x, t, div)                ∇·V at (x, t), keeping the context for reverse
//   reverse(n, v̄, d̄, x̄)                 after forward: x̄ = (∂V/∂x)ᵀ v̄ + d̄ ∂(∇·V)/∂x,
//                                         parameter adjoints accumulated by the field
// The forward stores, when asked, exactly the states the adjoint needs and
// nothing of the networks: the adjoint re-runs the field at the stored points.
#pragma once

#include "flows/elementwise.hpp"
#include "flows/nn/mlp.hpp"

namespace bf {

/// Classical fourth-order Runge–Kutta, fixed step h (h < 0 integrates backwards):
///
///   x ──k1 = V(x, t)──► x + h/2 k1 ──k2 = V(·, t + h/2)──► x + h/2 k2 ──k3──► x + h k3 ──k4 = V(·, t + h)
///   x' = x + h/6 (k1 + 2 k2 + 2 k3 + k4)       I' = I + h/6 (d1 + 2 d2 + 2 d3 + d4),  d_i = ∇·V at stage i
///
/// Adjoint of one step for a loss ℓ(x_N, I_N), λ = ∂ℓ/∂x and μ = ∂ℓ/∂I (constant along the path: I
/// enters linearly), from stage 4 back to stage 1 with k̄ the adjoint of the later stage's k:
///   stage i at point y_i = x + a_i h k_{i−1} (a = 0, ½, ½, 1), weight b_i = (1, 2, 2, 1)/6:
///     v̄_i = k̄_i + b_i h λ,  d̄_i = μ b_i h,  ȳ_i = (∂V/∂y)ᵀ v̄_i + d̄_i ∂d_i/∂y   (the field's reverse)
///     λ_new += ȳ_i,  k̄_{i−1} = a_i h ȳ_i
///   and λ ← λ_new (x' = x + …, so λ reaches x directly too).
/// The adjoint needs the 4 stage points of each step (`stages`); it re-runs each stage with the
/// divergence, so a forward without it can still have I: the adjoint adds the stage's b_i h d_i to
/// `integral` when one is given. The adjoint evaluates each stage at the forward's time, computed
/// the same way ((t0 + s h) + c_i h), so it is the exact adjoint of the steps that ran.
template <class T>
class Rk4 {
 public:
  Rk4() = default;
  Rk4(int max_batch, int dim)
      : xs_("rk4_stage_point", max_batch, dim), k_("rk4_k", max_batch, dim), acc_("rk4_acc", max_batch, dim),
        div_("rk4_div", max_batch), dacc_("rk4_dacc", max_batch) {}

  /// One step from (x, I) at time t, in place. `stages`, if not empty, receives the 4 stage
  /// points (4 n rows, stage-major); `point`, if not empty, the step's start x (n rows).
  template <class Field>
  void step(Field& field, int n, const Rows<T>& x, const Span<T>& integral, double t, double h, bool with_div,
            const Rows<T>& stages, const Rows<T>& point) {
    const int D = static_cast<int>(x.extent(1));
    const Rows<T> xs = head_rows(xs_, n), k = head_rows(k_, n), acc = head_rows(acc_, n);
    const Span<T> div(div_.data(), n), dacc(dacc_.data(), n);
    const T hh = static_cast<T>(h);
    const bool store_point = point.extent(0) > 0, store_stages = stages.extent(0) > 0;
    const T cw[4] = {T(1), T(2), T(2), T(1)};     // b_i · 6
    const T next[4] = {T(0.5), T(0.5), T(1), T(0)};  // a_{i+1}: the next stage's offset
    const double toff[4] = {0.0, 0.5, 0.5, 1.0};
    for_each_element("bf::rk4_begin", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      xs(i, j) = x(i, j);
      acc(i, j) = T(0);
      if (j == 0) dacc(i) = T(0);
      if (store_point) point(i, j) = x(i, j);
    });
    for (int st = 0; st < 4; ++st) {
      if (store_stages)
        for_each_element("bf::rk4_store_stage", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
          stages(static_cast<std::int64_t>(st) * n + i, j) = xs(i, j);
        });
      field.velocity(n, xs, static_cast<T>(t + toff[st] * h), k, div, with_div);
      const T c = cw[st], a = next[st] * hh;
      for_each_element("bf::rk4_stage", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        acc(i, j) += c * k(i, j);
        if (j == 0) dacc(i) += c * div(i);
        xs(i, j) = x(i, j) + a * k(i, j);
      });
    }
    for_each_element("bf::rk4_end", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      x(i, j) += hh / T(6) * acc(i, j);
      if (j == 0) integral(i) += hh / T(6) * dacc(i);
    });
  }

  /// `steps` steps from t0. `points` (if not empty) receives the steps + 1 trajectory points
  /// (row s n + i), `stages` (if not empty) the 4 steps stage points (row (4 s + i) n + ·).
  template <class Field>
  void integrate(Field& field, int n, const Rows<T>& x, const Span<T>& integral, double t0, double h, int steps,
                 bool with_div, const Matrix<T>& points, const Matrix<T>& stages) {
    const bool store_points = points.extent(0) > 0, store_stages = stages.extent(0) > 0;
    for (int s = 0; s < steps; ++s)
      step(field, n, x, integral, t0 + s * h, h, with_div,
           store_stages ? rows_of<T>(stages, static_cast<std::int64_t>(4) * s * n, 4 * n) : Rows<T>(),
           store_points ? rows_of<T>(points, static_cast<std::int64_t>(s) * n, n) : Rows<T>());
    if (store_points) {
      const Rows<T> last = rows_of<T>(points, static_cast<std::int64_t>(steps) * n, n);
      for_each_element("bf::rk4_last", n, x.extent(1), KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        last(i, j) = x(i, j);
      });
    }
  }

  /// The adjoint of step s (from t0 + s h) on its stored stage points: λ = ∂ℓ/∂x_{s+1} in, ∂ℓ/∂x_s out.
  template <class Field>
  void adjoint_step(Field& field, int n, const Rows<T>& lambda, T mu, const Span<T>& integral, double t0, int s,
                    double h, const Rows<const T>& stages) {
    const int D = static_cast<int>(lambda.extent(1));
    if (kbar_.extent(0) == 0) {  // first adjoint: a flow that only samples never holds these two
      kbar_ = Matrix<T>("rk4_kbar", xs_.extent(0), xs_.extent(1));
      xbar_ = Matrix<T>("rk4_xbar", xs_.extent(0), xs_.extent(1));
    }
    // The forward's k and accumulator are free during the adjoint: they hold λ_new and v̄.
    const Rows<T> lnew = head_rows(acc_, n), kb = head_rows(kbar_, n), xs = head_rows(xs_, n),
                  vbar = head_rows(k_, n), xbar = head_rows(xbar_, n);
    const Span<T> div(div_.data(), n);
    const bool with_integral = integral.extent(0) > 0;
    const T hh = static_cast<T>(h);
    const double t = t0 + s * h;  // the step's start, as integrate() computes it
    const T cw[4] = {T(1) / T(6), T(2) / T(6), T(2) / T(6), T(1) / T(6)};  // b_i
    const T back[4] = {T(0), T(0.5), T(0.5), T(1)};                         // a_i
    const double toff[4] = {0.0, 0.5, 0.5, 1.0};
    for_each_element("bf::rk4_adjoint_begin", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      lnew(i, j) = lambda(i, j);
      kb(i, j) = T(0);
    });
    for (int st = 3; st >= 0; --st) {
      const T c = cw[st], b = back[st] * hh;
      for_each_element("bf::rk4_adjoint_stage_out", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        xs(i, j) = stages(static_cast<std::int64_t>(st) * n + i, j);
        vbar(i, j) = kb(i, j) + c * hh * lambda(i, j);
      });
      field.forward(n, xs, static_cast<T>(t + toff[st] * h), div);
      if (with_integral)
        Kokkos::parallel_for(
            "bf::rk4_adjoint_integral", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { integral(i) += c * hh * div(i); });
      field.reverse(n, vbar, mu * c * hh, xbar);
      for_each_element("bf::rk4_adjoint_stage_in", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        lnew(i, j) += xbar(i, j);
        kb(i, j) = b * xbar(i, j);
      });
    }
    for_each_element("bf::rk4_adjoint_end", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      lambda(i, j) = lnew(i, j);
    });
  }

  /// The adjoint of `integrate(…, steps, …, stages)` from t0: λ at x_N in, at x_0 out.
  template <class Field>
  void adjoint(Field& field, int n, const Rows<T>& lambda, T mu, const Span<T>& integral, double t0, double h,
               int steps, const Matrix<T>& stages) {
    for (int s = steps - 1; s >= 0; --s)
      adjoint_step(field, n, lambda, mu, integral, t0, s, h,
                   rows_of<const T>(stages, static_cast<std::int64_t>(4) * s * n, 4 * n));
  }

 private:
  Matrix<T> xs_, k_, acc_, kbar_, xbar_;  // kbar_, xbar_: allocated by the first adjoint_step
  Vector<T> div_, dacc_;
};

}  // namespace bf
