// CnfFlow: construction, the reverse-KL loss through Rk4's adjoint, sampling
// and the log-density. The deformation loss is in cnf_deformation.cpp.
#include "flows/models/cnf.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "flows/host_rows.hpp"
#include "flows/models/cnf_impl.hpp"

namespace bf {

namespace detail {

template <class T>
CnfImpl<T>::CnfImpl(const Distribution& tgt, std::shared_ptr<const Distribution> base_in, const CnfSpec& sp,
                    int max_b)
    : target(tgt), base_ptr(std::move(base_in)), base(*base_ptr), spec(sp), dim(tgt.dim()), max_batch(max_b) {
  if (base.dim() != dim) throw std::invalid_argument("cnf: base and target dimensions differ");
  if (!std::isfinite(base.log_z()) || !base.has_sampler())
    throw std::invalid_argument("cnf: the base needs an exact sampler and a known normaliser");
  if (sp.steps < 1) throw std::invalid_argument("cnf: integration steps must be at least 1");
  if (sp.time_chunk < 1) throw std::invalid_argument("cnf: time chunk must be at least 1");
  if (max_b < 1) throw std::invalid_argument("cnf: batch must be at least 1");
  const int D = dim, B = max_b, N = sp.steps, C = std::min(sp.time_chunk, N + 1);
  spec.time_chunk = C;
  TimeMixtureSpec vs;
  vs.kernels = sp.kernels;
  vs.space_dim = D;
  vs.outputs = D;
  vs.hidden = sp.hidden;
  vs.activation = sp.activation;
  vs.time_input = sp.time_input;
  vs.output_gain = sp.output_gain;
  v = std::make_unique<TimeMixture<T>>("V", vs, layout);
  const bool deform = sp.deformation;
  if (deform) {
    TimeMixtureSpec cs = vs;
    cs.space_dim = 0;
    cs.outputs = 1;
    cs.hidden = sp.c_hidden;
    cs.time_input = true;
    cs.output_gain = 1.0;
    c = std::make_unique<TimeMixture<T>>("C", cs, layout);
    if (sp.trainable) {
      TimeMixtureSpec gs = vs;
      gs.outputs = 1;
      gs.hidden = sp.g_hidden;
      gs.output_gain = 0.0;  // g starts at 0: the linear interpolation
      g = std::make_unique<TimeMixture<T>>("g", gs, layout);
    }
  }
  // Workspaces. Sampling and log q integrate up to B points, one velocity
  // evaluation at a time: (1 + D) B rows. The loss handles up to Bt points
  // (the training batch per rank): the deformation loss C trajectory points
  // at once, (1 + D) Bt C rows, the reverse-KL adjoint (1 + D) Bt rows. Sizing
  // the loss buffers by the evaluation batch instead costs gigabytes for the
  // paper's phi^4 network.
  const int Bt = sp.train_batch > 0 ? std::min(sp.train_batch, B) : B;
  train_batch = Bt;
  const int lrows = (1 + D) * Bt * (deform ? C : 1);
  const int nrows = std::max((1 + D) * B, lrows);
  wv = v->workspace(nrows);
  vrows = Matrix<T>("cnf_vrows", nrows, D + 1);
  adj_v = Matrix<T>("cnf_adj_v", lrows, D);
  rk4 = Rk4<T>(B, D);
  zd = Matrix<double>("cnf_z", B, D);
  x = Matrix<T>("cnf_x", B, D);
  divint = Vector<T>("cnf_divint", B);
  t = Vector<T>("cnf_t", std::max(B, Bt * C));
  w = Vector<T>("cnf_w", Bt);
  lq0 = Vector<T>("cnf_lq0", B);
  e1 = Vector<T>("cnf_e1", deform ? Bt * C : Bt);
  if (deform) {
    traj = Matrix<T>("cnf_traj", static_cast<std::size_t>(N + 1) * Bt, D);
    wc = c->workspace(Bt * C);
    crows = Matrix<T>("cnf_crows", Bt * C, 1);
    adj_c = Matrix<T>("cnf_adj_c", Bt * C, 1);
    grad0 = Matrix<T>("cnf_grad0", Bt * C, D);
    grad1 = Matrix<T>("cnf_grad1", Bt * C, D);
    e0 = Vector<T>("cnf_e0", Bt * C);
    if (g) {
      // g carries one tangent, the flow direction (V, 1): 2 rows per point.
      wg = g->workspace(2 * Bt * C);
      grows = Matrix<T>("cnf_grows", 2 * Bt * C, D + 1);
      adj_g = Matrix<T>("cnf_adj_g", 2 * Bt * C, 1);
      adj_gx = Matrix<T>("cnf_adj_gx", 2 * Bt * C, D);
    }
  } else {
    adj_in = Matrix<T>("cnf_adj_in", (1 + D) * Bt, D);
    stages = Matrix<T>("cnf_stages", static_cast<std::size_t>(4) * N * Bt, D);
    grad1 = Matrix<T>("cnf_lambda", Bt, D);
  }
}

template <class T>
void CnfImpl<T>::draw_base(std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first, int n) {
  const int D = dim;
  const Matrix<double> z = Kokkos::subview(zd, std::make_pair(0, n), Kokkos::ALL());
  base.sample(seed, purpose, static_cast<std::uint32_t>(step), first, z);
  const Rows<T> xs = head_rows(x, n);
  for_each_element("bf::cnf_load_z", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    xs(i, j) = static_cast<T>(z(i, j));
  });
  base.energy(ConstMatrix<T>(xs), Vector<T>(Kokkos::subview(lq0, std::make_pair(0, n))));
}

// Reverse KL through the trajectory: ℓ = log p0(z) − ∫∇·V + f1(x_1), by Rk4's
// adjoint with λ = ∇f1(x_1) and μ = ∂ℓ/∂I = −1; the adjoint sums ∫∇·V.
template <class T>
double CnfImpl<T>::reverse_kl_loss(const Vector<T>& params, const Vector<T>& grad, int n, const Span<const T>& log_q0) {
  const int N = spec.steps;
  const double h = 1.0 / N;
  const Rows<T> xs = head_rows(x, n);
  const Span<T> dint = head(divint, n);
  fill_value<T>(dint, n, T(0));
  CnfVelocity<T> field{*this, params, grad};
  rk4.integrate(field, n, xs, dint, 0.0, h, N, false, Matrix<T>(), stages);
  const Vector<T> e = Kokkos::subview(e1, std::make_pair(0, n));
  const Matrix<T> lam = Kokkos::subview(grad1, std::make_pair(0, n), Kokkos::ALL());
  target.energy_grad(ConstMatrix<T>(xs), e, lam);
  rk4.adjoint(field, n, head_rows(grad1, n), T(-1), dint, 0.0, h, N, stages);
  double loss = 0.0;
  Kokkos::parallel_reduce(
      "bf::cnf_reverse_kl", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += static_cast<double>(log_q0(i) - dint(i) + e(i)); },
      loss);
  return loss;
}

template <class T>
void CnfImpl<T>::weights(int n, std::int64_t global, const Collective& coll) {
  const Span<T> wt = head(w, n), lq = head(lq0, n), dint = head(divint, n);
  if (!spec.importance_weights) {
    fill_value<T>(wt, n, T(1));
    return;
  }
  // w_i = e^{−f1(x1) − log q(x1)}, normalised by the global batch mean (no gradient).
  const Vector<T> e = Kokkos::subview(e1, std::make_pair(0, n));
  target.energy(ConstMatrix<T>(head_rows(x, n)), e);
  Kokkos::parallel_for(
      "bf::cnf_log_w", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { wt(i) = -e(i) - (lq(i) - dint(i)); });
  double mx = -1e300;
  Kokkos::parallel_reduce(
      "bf::cnf_log_w_max", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, double& m) {
        m = static_cast<double>(wt(i)) > m ? static_cast<double>(wt(i)) : m;
      },
      Kokkos::Max<double>(mx));
  coll.max(&mx, 1);
  double s = 0;
  Kokkos::parallel_reduce(
      "bf::cnf_w_sum", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += kmath::exp(static_cast<double>(wt(i)) - mx); }, s);
  coll.sum(&s, 1);
  const double mean = s / static_cast<double>(global);
  Kokkos::parallel_for(
      "bf::cnf_w", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        wt(i) = static_cast<T>(kmath::exp(static_cast<double>(wt(i)) - mx) / mean);
      });
}

}  // namespace detail

template <class T>
CnfFlow<T>::CnfFlow(const Distribution& target, std::shared_ptr<const Distribution> base, const CnfSpec& spec,
                    int max_batch)
    : m_(std::make_unique<detail::CnfImpl<T>>(target, std::move(base), spec, max_batch)) {}

template <class T>
CnfFlow<T>::~CnfFlow() = default;

template <class T>
const ParameterLayout& CnfFlow<T>::layout() const {
  return m_->layout;
}
template <class T>
int CnfFlow<T>::dim() const {
  return m_->dim;
}
template <class T>
int CnfFlow<T>::max_batch() const {
  return m_->max_batch;
}
template <class T>
const CnfSpec& CnfFlow<T>::spec() const {
  return m_->spec;
}

template <class T>
std::string CnfFlow<T>::description() const {
  const CnfSpec& sp = m_->spec;
  std::ostringstream os;
  auto widths = [](const std::vector<int>& h) {
    std::string s;
    for (std::size_t i = 0; i < h.size(); ++i) s += (i ? "x" : "") + std::to_string(h[i]);
    return s;
  };
  os << "cnf: V_t = " << sp.kernels << " RBF time kernels x MLP(" << widths(sp.hidden) << ", "
     << activation_name(sp.activation) << (sp.time_input ? ", t input" : "") << "), RK4 " << sp.steps
     << " steps, base " << m_->base.description() << "; loss "
     << (sp.deformation ? std::string("deformation, ") + (sp.trainable ? "trainable" : "linear") +
                              " interpolation" + (sp.importance_weights ? ", Eq. 9 weights" : ", w = 1")
                        : std::string("reverse KL"));
  return os.str();
}

template <class T>
void CnfFlow<T>::initialize(const Vector<T>& params, std::uint32_t seed) const {
  initialize_parameters(m_->layout, params, seed);
}

template <class T>
double CnfFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& b,
                                 const Collective& coll) {
  detail::CnfImpl<T>& m = *m_;
  const int n = b.count;
  if (n > m.train_batch) throw std::logic_error("cnf: loss batch larger than the workspace");
  // z ~ p0 by global sample index; log p0(z).
  m.draw_base(b.seed, Purpose::base_sample, b.step, b.first, n);
  const Span<T> lq0 = detail::head(m.lq0, n);
  const T lz0 = static_cast<T>(m.base.log_z());
  Kokkos::parallel_for(
      "bf::cnf_log_p0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { lq0(i) = -lq0(i) - lz0; });
  if (!m.spec.deformation) return m.reverse_kl_loss(params, grad, n, lq0);

  // Deformation loss: the trajectory without gradients, then the error at its points.
  const Span<T> dint = detail::head(m.divint, n);
  detail::fill_value<T>(dint, n, T(0));
  // The divergence is needed along the way only for the importance weights.
  detail::CnfVelocity<T> field{m, params, Vector<T>()};
  m.rk4.integrate(field, n, head_rows(m.x, n), dint, 0.0, 1.0 / m.spec.steps, m.spec.steps, m.spec.importance_weights,
                  m.traj, Matrix<T>());
  m.weights(n, b.global, coll);
  m.last_count = n;
  return m.deformation_loss(params, grad, n, detail::head(m.w, n));
}

template <class T>
void CnfFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                        std::uint64_t first_index, const Matrix<double>& xout, const Vector<double>& log_q) {
  detail::CnfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(xout.extent(0));
  const T lz0 = static_cast<T>(m.base.log_z());
  detail::CnfVelocity<T> field{m, params, Vector<T>()};
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    m.draw_base(seed, purpose, step, first_index + static_cast<std::uint64_t>(c0), n);
    const Rows<T> x = head_rows(m.x, n);
    const Span<T> dint = detail::head(m.divint, n), lq0 = detail::head(m.lq0, n);
    detail::fill_value<T>(dint, n, T(0));
    m.rk4.integrate(field, n, x, dint, 0.0, 1.0 / m.spec.steps, m.spec.steps, true, Matrix<T>(), Matrix<T>());
    for_each_element("bf::cnf_sample_out", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      xout(c0 + i, j) = static_cast<double>(x(i, j));
      if (j == 0) log_q(c0 + i) = static_cast<double>(-lq0(i) - lz0 - dint(i));
    });
  }
}

template <class T>
void CnfFlow<T>::log_density(const Vector<T>& params, const ConstMatrix<double>& y, const Vector<double>& log_q) {
  // Backward from t = 1 to 0: x_0 and −∫ ∇·V dt; log q(y) = log p0(x_0) − ∫ ∇·V dt.
  detail::CnfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(y.extent(0));
  const T lz0 = static_cast<T>(m.base.log_z());
  detail::CnfVelocity<T> field{m, params, Vector<T>()};
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    const Rows<T> x = head_rows(m.x, n);
    const Span<T> dint = detail::head(m.divint, n), lq0 = detail::head(m.lq0, n);
    for_each_element("bf::cnf_density_in", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      x(i, j) = static_cast<T>(y(c0 + i, j));
      if (j == 0) dint(i) = T(0);
    });
    m.rk4.integrate(field, n, x, dint, 1.0, -1.0 / m.spec.steps, m.spec.steps, true, Matrix<T>(), Matrix<T>());
    m.base.energy(ConstMatrix<T>(x), Vector<T>(Kokkos::subview(m.lq0, std::make_pair(0, n))));
    Kokkos::parallel_for(
        "bf::cnf_density_out", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          log_q(c0 + i) = static_cast<double>(-lq0(i) - lz0 + dint(i));
        });
  }
}

template <class T>
void CnfFlow<T>::integrate(const Vector<T>& params, std::vector<double>& xv, std::vector<double>& div_integral,
                           bool backward) {
  detail::CnfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(xv.size()) / D;
  if (n > m.max_batch) throw std::logic_error("cnf integrate: too many points");
  rows_to_device(xv, 0, n, m.x);
  const Span<T> dint = detail::head(m.divint, n);
  detail::fill_value<T>(dint, n, T(0));
  detail::CnfVelocity<T> field{m, params, Vector<T>()};
  m.rk4.integrate(field, n, head_rows(m.x, n), dint, backward ? 1.0 : 0.0, (backward ? -1.0 : 1.0) / m.spec.steps,
                  m.spec.steps, true, Matrix<T>(), Matrix<T>());
  xv = rows_to_host<T>(m.x, n);
  auto hd = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m.divint);
  div_integral.assign(hd.data(), hd.data() + n);
}

template struct detail::CnfImpl<float>;
template struct detail::CnfImpl<double>;
template class CnfFlow<float>;
template class CnfFlow<double>;

}  // namespace bf
