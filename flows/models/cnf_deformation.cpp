// CnfFlow's deformation loss (the fused error kernel and its reverse) and the
// host diagnostics of the error's terms, its independent reference.
#include <stdexcept>

#include "flows/models/cnf.hpp"
#include "flows/host_rows.hpp"
#include "flows/models/cnf_impl.hpp"

namespace bf {

namespace detail {

namespace {

// Rows of g for n samples carrying one tangent: value row [x_i, t_i], tangent
// row the flow direction [V(x_i, t_i), 1] read from V's value rows (vo, with
// k_v tangents per sample). g's tangent output is then ∂_t g + ⟨∇g, V⟩, all
// that the deformation error needs of g's derivatives.
template <class T>
void flow_rows(int n, int d, const Rows<const T>& x, const Span<const T>& t, const Rows<const T>& vo, int k_v,
               const Rows<T>& rows) {
  Kokkos::parallel_for(
      "bf::cnf_flow_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, 1), rv = row_of(i, 0, k_v);
        for (int j = 0; j < d; ++j) {
          rows(r0, j) = x(i, j);
          rows(r0 + 1, j) = vo(rv, j);
        }
        rows(r0, d) = t(i);
        rows(r0 + 1, d) = T(1);
      });
}

template <class T>
void time_rows(int n, const Span<const T>& t, const Rows<T>& rows) {
  Kokkos::parallel_for(
      "bf::cnf_time_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { rows(i, 0) = t(i); });
}

}  // namespace

// The deformation loss over the N + 1 trajectory points, `time_chunk` points
// at a time. With f_t = (1 − t) f0 + t f1 + t(1 − t) g and ġ = ∂_t g + ⟨∇g, V⟩
// (g's one tangent along (V, 1)),
//   E = f1 − f0 + (1 − 2t) g + t(1 − t) ġ + ⟨(1 − t)∇f0 + t ∇f1, V⟩ − ∇·V + C,
// so V runs first (g's tangent is V's value). The reverse pass takes
// ē = w/S · L'(E): g's value ē (1 − 2t), its tangent ē t(1 − t); C ē; V's
// tangent j (component j) −ē and V's value ē ((1 − t)∇f0 + t∇f1) plus the
// adjoint of g's tangent input, ē t(1 − t) ∇g, which g's reverse returns: so
// g's reverse runs before V's. (Axis tangents for g, D + 1 of them, would
// give ∇g and ∂_t g separately at (2 + D)/2 times the cost; `terms` does that,
// and the tests check the two against each other.)
template <class T>
double CnfImpl<T>::deformation_loss(const Vector<T>& params, const Vector<T>& grad, int n, const Span<const T>& weight) {
  const int D = dim, N = spec.steps, S = N + 1, C = spec.time_chunk;
  const bool trainable = static_cast<bool>(g);
  double total = 0.0;
  for (int n0 = 0; n0 < S; n0 += C) {
    const int cn = std::min(C, S - n0), m = cn * n;  // rows of this chunk: m = cn n samples
    const Span<T> tc = head(t, m);
    Kokkos::parallel_for(
        "bf::cnf_chunk_times", Policy(0, m), KOKKOS_LAMBDA(const std::int64_t r) {
          tc(r) = static_cast<T>(static_cast<double>(n0 + r / n) / N);
        });
    const Rows<const T> xc = rows_of<const T>(traj, static_cast<std::int64_t>(n0) * n, m);
    const Vector<T> f0 = Kokkos::subview(e0, std::make_pair(0, m)), f1 = Kokkos::subview(e1, std::make_pair(0, m));
    const Matrix<T> g0 = Kokkos::subview(grad0, std::make_pair(0, m), Kokkos::ALL());
    const Matrix<T> g1 = Kokkos::subview(grad1, std::make_pair(0, m), Kokkos::ALL());
    base.energy_grad(ConstMatrix<T>(xc), f0, g0);
    target.energy_grad(ConstMatrix<T>(xc), f1, g1);
    axis_tangent_rows<T>(m, D, xc, tc, D, rows_of<T>(vrows, 0, (1 + D) * m));
    const Rows<const T> vo = v->forward(params, wv, m, D, rows_of<const T>(vrows, 0, (1 + D) * m));
    time_rows<T>(m, tc, rows_of<T>(crows, 0, m));
    const Rows<const T> co = c->forward(params, wc, m, 0, rows_of<const T>(crows, 0, m));
    Rows<const T> go;
    if (trainable) {
      flow_rows<T>(m, D, xc, tc, vo, D, rows_of<T>(grows, 0, 2 * m));
      go = g->forward(params, wg, m, 1, rows_of<const T>(grows, 0, 2 * m));
    }
    const Rows<T> av = rows_of<T>(adj_v, 0, (1 + D) * m), ac = rows_of<T>(adj_c, 0, m);
    const Rows<T> ag = trainable ? rows_of<T>(adj_g, 0, 2 * m) : Rows<T>();
    const T inv_s = T(1) / T(S);
    double part = 0.0;
    Kokkos::parallel_reduce(
        "bf::deformation_error", Policy(0, m),
        KOKKOS_LAMBDA(const std::int64_t r, double& loss) {
          const T tt = tc(r), wr = weight(r % n) * inv_s, tq = tt * (T(1) - tt);
          const std::int64_t rv = row_of(r, 0, D), rg = row_of(r, 0, 1);
          T E = f1(r) - f0(r) + co(r, 0);
          if (trainable) E += (T(1) - T(2) * tt) * go(rg, 0) + tq * go(rg + 1, 0);
          for (int j = 0; j < D; ++j) E += ((T(1) - tt) * g0(r, j) + tt * g1(r, j)) * vo(rv, j) - vo(rv + 1 + j, j);
          loss += static_cast<double>(wr * (kmath::fabs(E) + E * E));
          const T eb = wr * ((E > T(0) ? T(1) : (E < T(0) ? T(-1) : T(0))) + T(2) * E);
          for (int j = 0; j < D; ++j) {
            av(rv, j) = eb * ((T(1) - tt) * g0(r, j) + tt * g1(r, j));
            for (int q = 0; q < D; ++q) av(rv + 1 + j, q) = q == j ? -eb : T(0);
          }
          ac(r, 0) = eb;
          if (trainable) {
            ag(rg, 0) = eb * (T(1) - T(2) * tt);
            ag(rg + 1, 0) = eb * tq;
          }
        },
        part);
    total += part;
    if (trainable) {
      // g first: its tangent-input adjoint ē t(1 − t) ∇g joins V's value adjoint.
      const Rows<T> agx = rows_of<T>(adj_gx, 0, 2 * m);
      g->reverse(params, grad, wg, ag, agx);
      for_each_element("bf::cnf_g_to_v", m, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t j) {
        av(row_of(r, 0, D), j) += agx(row_of(r, 1, 1), j);
      });
    }
    v->reverse(params, grad, wv, av, Rows<T>());
    c->reverse(params, grad, wc, ac, Rows<T>());
  }
  return total;
}

}  // namespace detail

template <class T>
std::vector<double> CnfFlow<T>::last_trajectory_point(int n) const {
  const detail::CnfImpl<T>& m = *m_;
  if (!m.spec.deformation || m.last_count == 0) throw std::logic_error("cnf: no deformation trajectory stored");
  return rows_to_host<T>(rows_of<const T>(m.traj, static_cast<std::int64_t>(n) * m.last_count, m.last_count),
                         m.last_count);
}

template <class T>
double CnfFlow<T>::deformation_loss_on_last_trajectory(const Vector<T>& params, const Vector<T>& grad) {
  detail::CnfImpl<T>& m = *m_;
  if (!m.spec.deformation || m.last_count == 0) throw std::logic_error("cnf: no deformation trajectory to reuse");
  return m.deformation_loss(params, grad, m.last_count, detail::head(m.w, m.last_count));
}

// The terms one at a time, on the host, with g's derivatives through D + 1
// axis tangents: an evaluation independent of the fused kernel above, which
// the tests compare it with.
template <class T>
DeformationTerms CnfFlow<T>::terms(const Vector<T>& params, const std::vector<double>& xv, double tv) {
  detail::CnfImpl<T>& m = *m_;
  if (!m.spec.deformation) throw std::logic_error("cnf terms: a deformation-loss model is needed");
  const int D = m.dim, n = static_cast<int>(xv.size()) / D;
  rows_to_device(xv, 0, n, m.x);
  const Span<T> t = detail::head(m.t, n);
  detail::fill_value<T>(t, n, static_cast<T>(tv));
  const Rows<const T> x = rows_of<const T>(m.x, 0, n);
  const Vector<T> e0 = Kokkos::subview(m.e0, std::make_pair(0, n)), e1 = Kokkos::subview(m.e1, std::make_pair(0, n));
  const Matrix<T> g0 = Kokkos::subview(m.grad0, std::make_pair(0, n), Kokkos::ALL());
  const Matrix<T> g1 = Kokkos::subview(m.grad1, std::make_pair(0, n), Kokkos::ALL());
  m.base.energy_grad(ConstMatrix<T>(x), e0, g0);
  m.target.energy_grad(ConstMatrix<T>(x), e1, g1);
  axis_tangent_rows<T>(n, D, x, t, D, rows_of<T>(m.vrows, 0, (1 + D) * n));
  auto vo = Kokkos::create_mirror_view_and_copy(
      Kokkos::HostSpace(), m.v->forward(params, m.wv, n, D, rows_of<const T>(m.vrows, 0, (1 + D) * n)));
  detail::time_rows<T>(n, t, rows_of<T>(m.crows, 0, n));
  auto co = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                m.c->forward(params, m.wc, n, 0, rows_of<const T>(m.crows, 0, n)));
  typename Rows<T>::HostMirror go;
  if (m.g) {
    // ∇g and ∂_t g separately, through D + 1 axis tangents (the loss needs only
    // their combination along (V, 1)): a workspace of its own, this is a diagnostic.
    auto wg = m.g->workspace((2 + D) * n);
    Matrix<T> grows("cnf_terms_grows", (2 + D) * n, D + 1);
    axis_tangent_rows<T>(n, D, x, t, D + 1, rows_of<T>(grows, 0, (2 + D) * n));
    go = Kokkos::create_mirror_view_and_copy(
        Kokkos::HostSpace(), m.g->forward(params, wg, n, D + 1, rows_of<const T>(grows, 0, (2 + D) * n)));
  }
  auto he0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), e0);
  auto he1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), e1);
  auto hg0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g0);
  auto hg1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g1);
  DeformationTerms r;
  const double tq = tv * (1 - tv);
  for (int i = 0; i < n; ++i) {
    const std::int64_t rv = row_of(i, 0, D), rg = row_of(i, 0, D + 1);
    double f = (1 - tv) * he0(i) + tv * he1(i), dtf = he1(i) - he0(i), gv = 0, div = 0;
    if (m.g) {
      f += tq * go(rg, 0);
      dtf += (1 - 2 * tv) * go(rg, 0) + tq * go(rg + 1 + D, 0);
    }
    for (int j = 0; j < D; ++j) {
      double gf = (1 - tv) * hg0(i, j) + tv * hg1(i, j);
      if (m.g) gf += tq * go(rg + 1 + j, 0);
      r.grad_f.push_back(gf);
      r.v.push_back(vo(rv, j));
      gv += gf * vo(rv, j);
      div += vo(rv + 1 + j, j);
    }
    r.f.push_back(f);
    r.dt_f.push_back(dtf);
    r.div_v.push_back(div);
    r.c.push_back(co(i, 0));
    r.e.push_back(dtf + gv - div + co(i, 0));
  }
  return r;
}

// The members defined here (the classes are instantiated in cnf.cpp).
#define BF_CNF_DEFORMATION(T)                                                                                       \
  template double detail::CnfImpl<T>::deformation_loss(const Vector<T>&, const Vector<T>&, int, const Span<const T>&); \
  template std::vector<double> CnfFlow<T>::last_trajectory_point(int) const;                                          \
  template double CnfFlow<T>::deformation_loss_on_last_trajectory(const Vector<T>&, const Vector<T>&);                \
  template DeformationTerms CnfFlow<T>::terms(const Vector<T>&, const std::vector<double>&, double);
BF_CNF_DEFORMATION(float)
BF_CNF_DEFORMATION(double)
#undef BF_CNF_DEFORMATION

}  // namespace bf
