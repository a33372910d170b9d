// HsmModel: the Hamiltonian score-matching loss and its two gradients through
// the leapfrog with per-state sources, the denoising baseline, and the learned
// force for evaluation. The equations are in hsm.hpp.
#include "flows/models/hsm.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "flows/host_rows.hpp"
#include "flows/integrators/leapfrog.hpp"
#include "flows/nn/derivatives.hpp"
#include "flows/nn/quadratic_form.hpp"
#include "flows/noise.hpp"
#include "flows/training_set.hpp"

namespace bf {

namespace detail {

template <class T>
struct HsmImpl {
  HsmImpl(const Distribution& tgt, const HsmSpec& sp, int max_b, std::uint32_t seed);

  HsmSpec spec;
  int dim, max_batch;
  ParameterLayout layout;
  std::size_t force_end = 0;          // U's part of the buffer: [0, force_end)
  std::unique_ptr<Mlp<T>> u;          // U as an MLP (D, hidden, 1)
  ParamSlice quad;                    // or the quadratic form's L
  typename Mlp<T>::Workspace wu;
  std::unique_ptr<TimeMixture<T>> v;  // V_φ of [x, t/T] (hsm only)
  typename TimeMixture<T>::Workspace wv;
  Leapfrog<T> leapfrog;
  TrainingSet data;
  Matrix<T> q, p, a, b, g, eps, tmp;   // B rows of D
  Matrix<T> urows, uadj, uin;          // U's HVP rows (2 B)
  Matrix<T> vs, vin, vadj, qbar, pbar;  // every state: L B rows (vin: [x_s, s/L])
  Matrix<double> fd;                   // score(): B rows of D (double)

  /// ∇U at n rows x into g.
  void grad_u(const Vector<T>& params, int n, const Rows<const T>& x, const Rows<T>& out);
  /// V_φ's input rows [x_i, τ] (D + 1 columns) from n rows x (public: CUDA's device lambdas).
  static void time_rows(int n, int D, const Rows<const T>& x, T tau, const Rows<T>& in) {
    Kokkos::parallel_for(
        "bf::hsm_time_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          for (int j = 0; j < D; ++j) in(i, j) = x(i, j);
          in(i, D) = tau;
        });
  }
  /// hu += c ∇²U u, grad += c ∂(u·∇U)/∂θ (grad may be empty).
  void hvp_u(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& x,
             const Rows<const T>& dir, const Rows<T>& hu);
};

/// H(x, v) = U(x) + ½|v|² as the Leapfrog's Hamiltonian; U's parameter adjoints go to grad.
template <class T>
struct HsmHamiltonian {
  HsmImpl<T>& m;
  const Vector<T>& params;
  Vector<T> grad;

  void grad_v(int n, const Rows<const T>& x, const Rows<T>& g) { m.grad_u(params, n, x, g); }
  void hvp_v(int n, T c, const Rows<const T>& x, const Rows<const T>& u, const Rows<T>& hu) {
    m.hvp_u(params, grad, n, c, x, u, hu);
  }
  void grad_k(int n, const Rows<const T>& p, const Rows<T>& g) { Leapfrog<T>::copy(n, m.dim, p, g); }
  void hvp_k(int n, T c, const Rows<const T>&, const Rows<const T>& u, const Rows<T>& hu) {
    Leapfrog<T>::axpy(n, m.dim, c, u, hu);
  }
};

template <class T>
HsmImpl<T>::HsmImpl(const Distribution& tgt, const HsmSpec& sp, int max_b, std::uint32_t seed)
    : spec(sp), dim(tgt.dim()), max_batch(max_b) {
  const int D = dim, B = max_b;
  if (B < 1) throw std::invalid_argument("hsm: batch must be at least 1");
  if (sp.dsm) {
    if (!(sp.dsm_sigma > 0) || !std::isfinite(sp.dsm_sigma))
      throw std::invalid_argument("hsm: denoising score matching needs a noise sigma > 0");
  } else {
    if (sp.steps < 1) throw std::invalid_argument("hsm: leapfrog steps must be at least 1");
    if (!(sp.time > 0) || !std::isfinite(sp.time)) throw std::invalid_argument("hsm: integration time must be positive");
    if (sp.inner_steps < 1) throw std::invalid_argument("hsm: inner steps (velocity steps per force step) must be at least 1");
    if (!(sp.inner_lr_scale > 0) || !std::isfinite(sp.inner_lr_scale))
      throw std::invalid_argument("hsm: the velocity's learning rate must be positive");
  }
  if (!tgt.has_sampler())
    throw std::invalid_argument("hsm: score matching learns from exact samples, and '" + tgt.name() + "' has no exact sampler");
  data = TrainingSet(tgt, sp.dataset_size, sp.epochs, seed, B);
  if (sp.quadratic_potential) {
    quad = add_quadratic_form(layout, "U.L", D);  // zero: A = I
  } else {
    MlpSpec scalar;
    scalar.widths.push_back(D);
    for (int h : sp.hidden) scalar.widths.push_back(h);
    scalar.widths.push_back(1);
    scalar.activation = sp.activation;
    u = std::make_unique<Mlp<T>>("U", scalar, layout);
    wu = u->workspace(2 * B);
    urows = Matrix<T>("hsm_urows", 2 * B, D);
    uadj = Matrix<T>("hsm_uadj", 2 * B, 1);
    uin = Matrix<T>("hsm_uin", 2 * B, D);
  }
  force_end = layout.size();
  q = Matrix<T>("hsm_q", B, D);
  p = Matrix<T>("hsm_p", B, D);
  a = Matrix<T>("hsm_a", B, D);
  b = Matrix<T>("hsm_b", B, D);
  g = Matrix<T>("hsm_g", B, D);
  eps = Matrix<T>("hsm_eps", B, D);
  tmp = Matrix<T>("hsm_tmp", B, D);
  fd = Matrix<double>("hsm_f", B, D);
  if (sp.dsm) return;
  TimeMixtureSpec vspec;
  vspec.kernels = sp.kernels;
  vspec.space_dim = D;
  vspec.outputs = D;
  vspec.hidden = sp.hidden;
  vspec.activation = sp.activation;
  vspec.time_input = sp.time_input;
  vspec.output_gain = sp.output_gain;
  v = std::make_unique<TimeMixture<T>>("V", vspec, layout);
  const std::int64_t rows = static_cast<std::int64_t>(sp.steps) * B;
  wv = v->workspace(static_cast<int>(rows));
  leapfrog = Leapfrog<T>(B, D, sp.steps);
  vs = Matrix<T>("hsm_states_v", rows, D);
  vin = Matrix<T>("hsm_v_in", rows, D + 1);
  vadj = Matrix<T>("hsm_v_adj", rows, D);
  qbar = Matrix<T>("hsm_qbar", rows, D);
  pbar = Matrix<T>("hsm_pbar", rows, D);
}

template <class T>
void HsmImpl<T>::grad_u(const Vector<T>& params, int n, const Rows<const T>& x, const Rows<T>& out) {
  if (u) {
    gradient_by_reverse<T>(*u, wu, params, n, x, uadj, out);
  } else {
    quadratic_form_gradient<T>(params, quad, n, x, out);
  }
}

template <class T>
void HsmImpl<T>::hvp_u(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& x,
                       const Rows<const T>& dir, const Rows<T>& hu) {
  if (u) {
    hessian_vector_product<T>(*u, wu, params, grad, n, dim, c, x, dir, urows, uadj, uin, hu);
  } else {
    quadratic_form_hvp<T>(params, grad, quad, n, c, x, dir, tmp, hu);
  }
}

}  // namespace detail

template <class T>
HsmModel<T>::HsmModel(const Distribution& target, const HsmSpec& spec, int max_batch, std::uint32_t seed)
    : m_(std::make_unique<detail::HsmImpl<T>>(target, spec, max_batch, seed)) {}

template <class T>
HsmModel<T>::~HsmModel() = default;

template <class T>
const ParameterLayout& HsmModel<T>::layout() const {
  return m_->layout;
}
template <class T>
int HsmModel<T>::dim() const {
  return m_->dim;
}
template <class T>
int HsmModel<T>::max_batch() const {
  return m_->max_batch;
}
template <class T>
const HsmSpec& HsmModel<T>::spec() const {
  return m_->spec;
}

template <class T>
std::string HsmModel<T>::description() const {
  const HsmSpec& sp = m_->spec;
  std::string w;
  for (std::size_t i = 0; i < sp.hidden.size(); ++i) w += (i ? "x" : "") + std::to_string(sp.hidden[i]);
  std::ostringstream os;
  os << "hsm: force F = -grad U, U = ";
  if (sp.quadratic_potential) {
    os << "1/2 x^T A x (A = L L^T)";
  } else {
    os << "MLP(" << w << ", " << activation_name(sp.activation) << ")";
  }
  if (sp.dsm) {
    os << "; loss denoising score matching, sigma " << fmt_num(sp.dsm_sigma);
  } else {
    os << "; velocity V = " << sp.kernels << " RBF time kernels x MLP(" << w << ", " << activation_name(sp.activation)
       << (sp.time_input ? ", t input" : "") << "); leapfrog " << sp.steps << " steps, T = " << fmt_num(sp.time)
       << "; loss Hamiltonian score matching, " << sp.inner_steps << " velocity step(s) per force step, velocity lr x "
       << fmt_num(sp.inner_lr_scale);
  }
  os << "; from " << sp.dataset_size << " exact samples";
  return os.str();
}

template <class T>
std::vector<ParameterGroup> HsmModel<T>::parameter_groups() const {
  const detail::HsmImpl<T>& m = *m_;
  if (m.spec.dsm) return {};
  const std::int64_t k = m.spec.inner_steps;
  ParameterGroup force{0, m.force_end, 1.0, k + 1, k, 1};
  ParameterGroup velocity{m.force_end, m.layout.size(), m.spec.inner_lr_scale, k + 1, 0, k};
  return {force, velocity};
}

template <class T>
bool HsmModel<T>::force_step(std::int64_t step) const {
  const HsmSpec& sp = m_->spec;
  return sp.dsm || step % (sp.inner_steps + 1) == sp.inner_steps;
}

template <class T>
double HsmModel<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& bt,
                                  const Collective&) {
  detail::HsmImpl<T>& m = *m_;
  const int n = bt.count, D = m.dim;
  if (n > m.max_batch) throw std::logic_error("hsm: batch larger than the workspace");
  m.data.select(bt);
  const Rows<T> q = head_rows(m.q, n), p = head_rows(m.p, n);
  gather_selected<T>(m.data, n, q);
  standard_normals<T>(bt.seed, Purpose::path_noise, bt.step, bt.first, n, D, p);  // v₀, or DSM's ε
  double loss = 0.0;

  if (m.spec.dsm) {
    // y = x₀ + σ ε; ℓ = ‖∇U(y) − ε/σ‖²; u = ∂ℓ/∂∇U = 2(∇U − ε/σ); θ̄ = ∂(u·∇U(y))/∂θ.
    const T sigma = static_cast<T>(m.spec.dsm_sigma);
    for_each_element("bf::dsm_noisy", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      q(i, j) += sigma * p(i, j);
    });
    const Rows<T> g = head_rows(m.g, n), u = head_rows(m.a, n);
    m.grad_u(params, n, Rows<const T>(q), g);
    Kokkos::parallel_reduce(
        "bf::dsm_loss", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& acc) {
          double s = 0;
          for (int j = 0; j < D; ++j) {
            const T r = g(i, j) - p(i, j) / sigma;
            u(i, j) = T(2) * r;
            s += static_cast<double>(r) * static_cast<double>(r);
          }
          acc += s;
        },
        loss);
    const Rows<T> scratch = head_rows(m.b, n);
    m.hvp_u(params, grad, n, T(1), Rows<const T>(q), Rows<const T>(u), scratch);
    return loss;
  }

  // The trajectory: state s = 1 … L goes to rows (s − 1) n … s n − 1 of V_φ's input, [x_s, s/L],
  // and of vs, v_s.
  const int L = m.spec.steps;
  const T h = static_cast<T>(m.spec.time / L);
  const bool theta = force_step(bt.step);
  const Matrix<T> vs = m.vs;
  detail::HsmHamiltonian<T> H{m, params, theta ? grad : Vector<T>()};
  m.leapfrog.integrate(H, n, q, p, h, theta, [&](int s, const Rows<T>& qs, const Rows<T>& ps) {
    const std::int64_t r0 = static_cast<std::int64_t>(s - 1) * n;
    detail::HsmImpl<T>::time_rows(n, D, qs, static_cast<T>(static_cast<double>(s) / L), rows_of<T>(m.vin, r0, n));
    Leapfrog<T>::copy(n, D, ps, rows_of<T>(vs, r0, n));
  });
  // V_φ at every state at once.
  const std::int64_t rows = static_cast<std::int64_t>(L) * n;
  const Rows<T> in = rows_of<T>(m.vin, 0, rows), adj = rows_of<T>(m.vadj, 0, rows);
  const Rows<const T> out = m.v->forward(params, m.wv, static_cast<int>(rows), 0, Rows<const T>(in));
  // ℓ's terms (‖V‖² − 2V·v)/L and their adjoints with respect to V, (2V − 2v)/L; at a force
  // step also the velocity sources of −ℓ, ∂(−ℓ)/∂v_s = 2V/L.
  const double inv_l = 1.0 / L;
  const Rows<T> qbar = rows_of<T>(m.qbar, 0, rows), pbar = rows_of<T>(m.pbar, 0, rows);
  Kokkos::parallel_reduce(
      "bf::hsm_loss", Policy(0, rows),
      KOKKOS_LAMBDA(const std::int64_t r, double& acc) {
        double s = 0;
        for (int j = 0; j < D; ++j) {
          const double vv = static_cast<double>(out(r, j)), vel = static_cast<double>(vs(r, j));
          s += vv * vv - 2.0 * vv * vel;
          adj(r, j) = static_cast<T>(2.0 * (vv - vel) * inv_l);
          if (theta) pbar(r, j) = static_cast<T>(2.0 * vv * inv_l);
        }
        acc += s * inv_l;
      },
      loss);
  if (!theta) {
    m.v->reverse(params, grad, m.wv, Rows<const T>(adj), Rows<T>());
    return loss;
  }
  // θ ascends L: the position sources of −ℓ, −J_Vᵀ adj (V's input adjoints, no weight
  // gradient), then the leapfrog's adjoint with a source at every state.
  m.v->reverse(params, Vector<T>(), m.wv, Rows<const T>(adj), qbar);
  for_each_element("bf::hsm_position_sources", rows, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t j) {
    qbar(r, j) = -qbar(r, j);
  });
  m.leapfrog.adjoint_with_sources(H, n, head_rows(m.b, n), head_rows(m.a, n), h, m.qbar, m.pbar);
  return loss;
}

template <class T>
void HsmModel<T>::sample(const Vector<T>&, std::uint32_t, Purpose, std::int64_t, std::uint64_t, const Matrix<double>&,
                         const Vector<double>&) {
  throw std::logic_error("hsm: a score model has no sampler (has_sampler() is false)");
}

template <class T>
void HsmModel<T>::score(const Vector<T>& params, const ConstMatrix<double>& x, const Matrix<double>& f) {
  detail::HsmImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(x.extent(0));
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    const Rows<T> q = head_rows(m.q, n), g = head_rows(m.g, n);
    for_each_element("bf::hsm_score_in", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      q(i, j) = static_cast<T>(x(c0 + i, j));
    });
    m.grad_u(params, n, Rows<const T>(q), g);
    for_each_element("bf::hsm_score_out", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      f(c0 + i, j) = -static_cast<double>(g(i, j));
    });
  }
}

template <class T>
std::vector<double> HsmModel<T>::potential(const Vector<T>& params, const std::vector<double>& points) {
  detail::HsmImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(points.size()) / D;
  std::vector<double> out(total);
  std::vector<double> A;
  if (!m.u) A = quadratic_matrix(params);
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    if (m.u) {
      rows_to_device(points, c0, n, m.q);
      const Rows<const T> uv = m.u->forward(params, m.wu, n, 0, rows_of<const T>(m.q, 0, n), false);
      auto hu = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), uv);
      for (int i = 0; i < n; ++i) out[c0 + i] = static_cast<double>(hu(i, 0));
    } else {
      for (int i = 0; i < n; ++i) {
        const double* x = &points[static_cast<std::size_t>(c0 + i) * D];
        double s = 0;
        for (int r = 0; r < D; ++r)
          for (int c = 0; c < D; ++c) s += x[r] * A[r * D + c] * x[c];
        out[c0 + i] = 0.5 * s;
      }
    }
  }
  return out;
}

template <class T>
std::vector<double> HsmModel<T>::quadratic_matrix(const Vector<T>& params) const {
  const detail::HsmImpl<T>& m = *m_;
  if (m.u) return {};
  return quadratic_form_matrix<T>(params, m.quad);
}

template <class T>
std::vector<double> HsmModel<T>::velocity(const Vector<T>& params, const std::vector<double>& x, int s) {
  detail::HsmImpl<T>& m = *m_;
  if (!m.v) throw std::logic_error("hsm velocity: denoising score matching has no velocity predictor");
  const int D = m.dim, n = static_cast<int>(x.size()) / D;
  if (n > m.max_batch) throw std::logic_error("hsm velocity: too many points");
  rows_to_device(x, 0, n, m.q);
  const Rows<T> in = rows_of<T>(m.vin, 0, n);
  detail::HsmImpl<T>::time_rows(n, D, head_rows(m.q, n), static_cast<T>(static_cast<double>(s) / m.spec.steps), in);
  const Rows<const T> out = m.v->forward(params, m.wv, n, 0, Rows<const T>(in), false);
  return rows_to_host<T>(out, n);
}

template struct detail::HsmImpl<float>;
template struct detail::HsmImpl<double>;
template class HsmModel<float>;
template class HsmModel<double>;

}  // namespace bf
