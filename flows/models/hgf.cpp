// HgfFlow: the velocity regression, sampling backwards from the path's end and
// the log-density forwards to it, with a learned V_φ or the closed-form V*.
#include "flows/models/hgf.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "flows/host_rows.hpp"
#include "flows/integrators/rk4.hpp"
#include "flows/nn/derivatives.hpp"
#include "flows/noise.hpp"
#include "flows/training_set.hpp"
#include "physics/gaussian_mixture.hpp"

namespace bf {

PathKind parse_path(const std::string& name) {
  if (name == "flow_matching") return PathKind::flow_matching;
  if (name == "oscillation") return PathKind::oscillation;
  if (name == "diffusion") return PathKind::diffusion;
  throw std::invalid_argument("unknown path '" + name + "' (flow_matching, oscillation or diffusion)");
}

std::string path_name(PathKind kind) {
  return kind == PathKind::flow_matching ? "flow_matching" : kind == PathKind::oscillation ? "oscillation" : "diffusion";
}

namespace detail {

template <class T>
struct HgfImpl {
  HgfImpl(const Distribution& tgt, const HgfSpec& sp, int max_b, std::uint32_t seed);

  const Distribution& target;
  const GaussianMixture* mixture = nullptr;  // exact velocity
  HgfSpec spec;
  int dim, max_batch;
  double end_time;
  ParameterLayout layout;
  std::unique_ptr<TimeMixture<T>> v;
  typename TimeMixture<T>::Workspace wv;
  TrainingSet data;
  Rk4<T> rk4;
  std::vector<double> end_mean, end_sd;  // p_T = Π_j N(end_mean_j, end_sd_j²)
  Vector<double> end_mean_d, end_sd_d;
  Matrix<T> x, x0, eps, vt, rows, adj;
  Matrix<double> coef;  // exact velocity: (α, β, α̇, β̇) per row
  Vector<T> t, dint;
  Vector<double> u;

  /// V at n points x and one time t (divergence when with_div) into v, div.
  void field(const Vector<T>& params, int n, const Rows<const T>& xs, T time, const Rows<T>& out_v, const Span<T>& div,
             bool with_div);
  /// log p_T at the n rows of xs into lq (double).
  void end_log_density(int n, const Rows<const T>& xs, const Span<double>& lq) const;
};

template <class T>
HgfImpl<T>::HgfImpl(const Distribution& tgt, const HgfSpec& sp, int max_b, std::uint32_t seed)
    : target(tgt), spec(sp), dim(tgt.dim()), max_batch(max_b), end_time(sp.path.end_time()) {
  if (max_b < 1) throw std::invalid_argument("hgf: batch must be at least 1");
  if (sp.steps < 1) throw std::invalid_argument("hgf: integration steps must be at least 1");
  if (!(end_time > 0) || !std::isfinite(end_time)) throw std::invalid_argument("hgf: the path's end time must be positive");
  if (sp.path.kind == PathKind::oscillation && !(sp.path.omega > 0 && sp.path.sigma_v > 0))
    throw std::invalid_argument("hgf: oscillation needs omega > 0 and sigma_v > 0");
  const int D = dim, B = max_b;
  data = TrainingSet(tgt, sp.dataset_size, sp.epochs, seed, B);
  if (sp.exact_velocity) {
    mixture = dynamic_cast<const GaussianMixture*>(&tgt);
    if (!mixture)
      throw std::invalid_argument("hgf: model.velocity = exact needs a Gaussian-mixture target (its V* is closed form), not '" +
                                  tgt.name() + "'");
  } else {
    TimeMixtureSpec vs;
    vs.kernels = sp.kernels;
    vs.space_dim = D;
    vs.outputs = D;
    vs.hidden = sp.hidden;
    vs.activation = sp.activation;
    vs.time_input = sp.time_input;
    vs.output_gain = sp.output_gain;
    v = std::make_unique<TimeMixture<T>>("V", vs, layout);
    wv = v->workspace((1 + D) * B);
    rows = Matrix<T>("hgf_rows", (1 + D) * B, D + 1);
  }
  adj = Matrix<T>("hgf_adj", B, D);
  if (mixture) coef = Matrix<double>("hgf_coef", B, 4);
  // The end distribution: exact for flow matching and oscillation; the data set's
  // per-axis mean and T² + variance for diffusion.
  end_mean.assign(D, 0.0);
  end_sd.assign(D, sp.path.kind == PathKind::oscillation ? sp.path.sigma_v / sp.path.omega : 1.0);
  if (sp.path.kind == PathKind::diffusion) {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), data.data());
    const int N = data.size();
    for (int j = 0; j < D; ++j) {
      double s = 0, s2 = 0;
      for (int i = 0; i < N; ++i) s += h(i, j);
      const double mean = s / N;
      for (int i = 0; i < N; ++i) s2 += (h(i, j) - mean) * (h(i, j) - mean);
      end_mean[j] = mean;
      end_sd[j] = std::sqrt(end_time * end_time + s2 / N);
    }
  }
  end_mean_d = to_device(end_mean, "hgf_end_mean");
  end_sd_d = to_device(end_sd, "hgf_end_sd");
  rk4 = Rk4<T>(B, D);
  x = Matrix<T>("hgf_x", B, D);
  x0 = Matrix<T>("hgf_x0", B, D);
  eps = Matrix<T>("hgf_eps", B, D);
  vt = Matrix<T>("hgf_vt", B, D);
  t = Vector<T>("hgf_t", B);
  dint = Vector<T>("hgf_dint", B);
  u = Vector<double>("hgf_u", B);
}

template <class T>
void HgfImpl<T>::field(const Vector<T>& params, int n, const Rows<const T>& xs, T time, const Rows<T>& out_v,
                       const Span<T>& div, bool with_div) {
  const int D = dim;
  if (mixture) {
    const Matrix<double> cf = coef;
    const HamiltonianPath path = spec.path;
    const double tt = static_cast<double>(time);
    Kokkos::parallel_for(
        "bf::hgf_exact_coefficients", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { path.coefficients(tt, &cf(i, 0)); });
    mixture->template path_velocity<T>(Kokkos::subview(cf, std::make_pair(0, n), Kokkos::ALL()), xs, out_v, div);
    return;
  }
  const int k = with_div ? D : 0;
  const T tau = time / static_cast<T>(end_time);  // the network's time on [0, 1]
  const Span<T> ts(t.data(), n);
  Kokkos::parallel_for(
      "bf::hgf_time", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { ts(i) = tau; });
  const Rows<T> r = rows_of<T>(rows, 0, (1 + k) * n);
  axis_tangent_rows<T>(n, D, xs, Span<const T>(ts), k, r);
  const Rows<const T> out = v->forward(params, wv, n, k, Rows<const T>(r), false);
  for_each_element("bf::hgf_velocity", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    out_v(i, j) = out(row_of(i, 0, k), j);
  });
  if (with_div) {
    divergence<T>(out, n, D, k, div);
  } else {
    Kokkos::parallel_for(
        "bf::hgf_no_div", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { div(i) = T(0); });
  }
}

template <class T>
void HgfImpl<T>::end_log_density(int n, const Rows<const T>& xs, const Span<double>& lq) const {
  const int D = dim;
  const Vector<double> mu = end_mean_d, sd = end_sd_d;
  Kokkos::parallel_for(
      "bf::hgf_end_log_density", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        double s = 0;
        for (int j = 0; j < D; ++j) {
          const double z = (static_cast<double>(xs(i, j)) - mu(j)) / sd(j);
          s += -0.5 * z * z - kmath::log(sd(j)) - 0.5 * kmath::log(2.0 * 3.14159265358979323846);
        }
        lq(i) = s;
      });
}

/// The field as Rk4 integrates it (no adjoint: sampling and log q only).
template <class T>
struct HgfVelocity {
  HgfImpl<T>& m;
  const Vector<T>& params;
  void velocity(int n, const Rows<const T>& x, T t, const Rows<T>& out_v, const Span<T>& out_div, bool with_div) {
    m.field(params, n, x, t, out_v, out_div, with_div);
  }
};

}  // namespace detail

template <class T>
HgfFlow<T>::HgfFlow(const Distribution& target, const HgfSpec& spec, int max_batch, std::uint32_t seed)
    : m_(std::make_unique<detail::HgfImpl<T>>(target, spec, max_batch, seed)) {}

template <class T>
HgfFlow<T>::~HgfFlow() = default;

template <class T>
const ParameterLayout& HgfFlow<T>::layout() const {
  return m_->layout;
}
template <class T>
int HgfFlow<T>::dim() const {
  return m_->dim;
}
template <class T>
int HgfFlow<T>::max_batch() const {
  return m_->max_batch;
}
template <class T>
const HgfSpec& HgfFlow<T>::spec() const {
  return m_->spec;
}

template <class T>
std::string HgfFlow<T>::description() const {
  const HgfSpec& sp = m_->spec;
  std::ostringstream os;
  os << "hgf: path " << path_name(sp.path.kind);
  if (sp.path.kind == PathKind::oscillation) os << " (omega " << fmt_num(sp.path.omega) << ", sigma_v " << fmt_num(sp.path.sigma_v) << ")";
  os << ", T = " << fmt_num(m_->end_time) << ", V = ";
  if (sp.exact_velocity) {
    os << "exact (closed form for the mixture)";
  } else {
    std::string w;
    for (std::size_t i = 0; i < sp.hidden.size(); ++i) w += (i ? "x" : "") + std::to_string(sp.hidden[i]);
    os << sp.kernels << " RBF time kernels x MLP(" << w << ", " << activation_name(sp.activation)
       << (sp.time_input ? ", t input" : "") << ")";
  }
  os << ", RK4 " << sp.steps << " steps; loss velocity regression on " << sp.dataset_size << " exact samples";
  return os.str();
}

template <class T>
double HgfFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& b,
                                 const Collective&) {
  detail::HgfImpl<T>& m = *m_;
  const int n = b.count, D = m.dim;
  if (n > m.max_batch) throw std::logic_error("hgf: batch larger than the workspace");
  m.data.select(b);
  gather_selected<T>(m.data, n, head_rows(m.x0, n));
  standard_normals<T>(b.seed, Purpose::path_noise, b.step, b.first, n, D, m.eps);
  const Vector<double> u = m.u;
  const std::uint32_t seed = b.seed, step = static_cast<std::uint32_t>(b.step);
  const std::uint64_t first = b.first;
  Kokkos::parallel_for(
      "bf::hgf_times", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        u(i) = RngStream(seed, Purpose::path_time, step, first + static_cast<std::uint64_t>(i)).uniform(0);
      });
  // x_t and v_t per sample, at its own time.
  const HamiltonianPath path = m.spec.path;
  const double T_end = m.end_time;
  const Rows<T> x = head_rows(m.x, n), x0 = head_rows(m.x0, n), eps = head_rows(m.eps, n), vt = head_rows(m.vt, n);
  const Span<T> ts(m.t.data(), n);
  Kokkos::parallel_for(
      "bf::hgf_path", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        double c[4];
        const double time = T_end * u(i);
        path.coefficients(time, c);
        for (int j = 0; j < D; ++j) {
          const double a = static_cast<double>(x0(i, j)), e = static_cast<double>(eps(i, j));
          x(i, j) = static_cast<T>(c[0] * a + c[1] * e);
          vt(i, j) = static_cast<T>(c[2] * a + c[3] * e);
        }
        ts(i) = static_cast<T>(u(i));  // the network's time t/T
      });
  double loss = 0.0;
  if (m.mixture) {  // V* has no parameters: the loss alone, the regression's floor
    const Matrix<double> coef = m.coef;
    Kokkos::parallel_for(
        "bf::hgf_exact_coefficients", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i) { path.coefficients(T_end * u(i), &coef(i, 0)); });
    const Rows<T> vs = head_rows(m.adj, n);
    m.mixture->template path_velocity<T>(Kokkos::subview(coef, std::make_pair(0, n), Kokkos::ALL()), x, vs,
                                Span<T>(m.dint.data(), n));
    Kokkos::parallel_reduce(
        "bf::hgf_exact_loss", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& acc) {
          for (int j = 0; j < D; ++j) {
            const double d = static_cast<double>(vs(i, j) - vt(i, j));
            acc += d * d;
          }
        },
        loss);
    return loss;
  }
  const Rows<T> r = rows_of<T>(m.rows, 0, n);
  axis_tangent_rows<T>(n, D, Rows<const T>(x), Span<const T>(ts), 0, r);
  const Rows<const T> out = m.v->forward(params, m.wv, n, 0, Rows<const T>(r));
  const Rows<T> adj = head_rows(m.adj, n);
  Kokkos::parallel_reduce(
      "bf::hgf_loss", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, double& acc) {
        double s = 0;
        for (int j = 0; j < D; ++j) {
          const T d = out(i, j) - vt(i, j);
          adj(i, j) = T(2) * d;
          s += static_cast<double>(d) * static_cast<double>(d);
        }
        acc += s;
      },
      loss);
  m.v->reverse(params, grad, m.wv, Rows<const T>(adj), Rows<T>());
  return loss;
}

template <class T>
void HgfFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                        std::uint64_t first_index, const Matrix<double>& xout, const Vector<double>& log_q) {
  // x_T ~ p_T, then RK4 from T back to 0; log q(x₀) = log p_T(x_T) + ∫_0^T ∇·V dt = log p_T − I,
  // I the integral accumulated with the negative step.
  detail::HgfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(xout.extent(0)), N = m.spec.steps;
  detail::HgfVelocity<T> field{m, params};
  const Vector<double> mu = m.end_mean_d, sd = m.end_sd_d;
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    standard_normals<T>(seed, purpose, step, first_index + static_cast<std::uint64_t>(c0), n, D, m.eps);
    const Rows<T> x = head_rows(m.x, n), z = head_rows(m.eps, n);
    for_each_element("bf::hgf_end_sample", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      x(i, j) = static_cast<T>(mu(j) + sd(j) * static_cast<double>(z(i, j)));
    });
    const Span<double> lq(log_q.data() + c0, n);
    m.end_log_density(n, Rows<const T>(x), lq);
    const Span<T> dint(m.dint.data(), n);
    Kokkos::parallel_for(
        "bf::hgf_dint0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { dint(i) = T(0); });
    m.rk4.integrate(field, n, x, dint, m.end_time, -m.end_time / N, N, true, Matrix<T>(), Matrix<T>());
    for_each_element("bf::hgf_sample_out", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      xout(c0 + i, j) = static_cast<double>(x(i, j));
      if (j == 0) lq(i) -= static_cast<double>(dint(i));
    });
  }
}

template <class T>
void HgfFlow<T>::log_density(const Vector<T>& params, const ConstMatrix<double>& y, const Vector<double>& log_q) {
  // Forwards from t = 0 to T: log q(y) = log p_T(x_T) + ∫_0^T ∇·V dt.
  detail::HgfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(y.extent(0)), N = m.spec.steps;
  detail::HgfVelocity<T> field{m, params};
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    const Rows<T> x = head_rows(m.x, n);
    const Span<T> dint(m.dint.data(), n);
    for_each_element("bf::hgf_density_in", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      x(i, j) = static_cast<T>(y(c0 + i, j));
      if (j == 0) dint(i) = T(0);
    });
    m.rk4.integrate(field, n, x, dint, 0.0, m.end_time / N, N, true, Matrix<T>(), Matrix<T>());
    const Span<double> lq(log_q.data() + c0, n);
    m.end_log_density(n, Rows<const T>(x), lq);
    Kokkos::parallel_for(
        "bf::hgf_density_out", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { lq(i) += static_cast<double>(dint(i)); });
  }
}

template <class T>
void HgfFlow<T>::velocity(const Vector<T>& params, const std::vector<double>& xv, double t, std::vector<double>& vv,
                          std::vector<double>& div) {
  detail::HgfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(xv.size()) / D;
  if (n > m.max_batch) throw std::logic_error("hgf velocity: too many points");
  rows_to_device(xv, 0, n, m.x);
  m.field(params, n, Rows<const T>(head_rows(m.x, n)), static_cast<T>(t), head_rows(m.vt, n), Span<T>(m.dint.data(), n),
          true);
  vv = rows_to_host<T>(m.vt, n);
  auto hd = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m.dint);
  div.assign(hd.data(), hd.data() + n);
}

template <class T>
std::vector<double> HgfFlow<T>::end_log_density(const std::vector<double>& xv) const {
  detail::HgfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(xv.size()) / D;
  if (n > m.max_batch) throw std::logic_error("hgf end_log_density: too many points");
  rows_to_device(xv, 0, n, m.x);
  Vector<double> lq("hgf_end_lq", n);
  m.end_log_density(n, Rows<const T>(head_rows(m.x, n)), Span<double>(lq.data(), n));
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lq);
  return std::vector<double>(h.data(), h.data() + n);
}

template struct detail::HgfImpl<float>;
template struct detail::HgfImpl<double>;
template class HgfFlow<float>;
template class HgfFlow<double>;

}  // namespace bf
