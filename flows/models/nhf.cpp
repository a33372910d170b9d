// NhfFlow: construction, the losses through the Leapfrog's adjoint, sampling,
// and the host diagnostics. The minibatches are flows/training_set.*, the
// Hamiltonian (V, K and their Hessian-vector products) in nhf_impl.hpp.
#include "flows/models/nhf.hpp"

#include <cfloat>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "flows/host_rows.hpp"
#include "flows/models/nhf_impl.hpp"
#include "flows/noise.hpp"

namespace bf {

namespace {

// The momentum noise of a sample: a purpose of its own beside the prior's.
Purpose momentum_purpose(Purpose p) { return static_cast<Purpose>(1000u + static_cast<std::uint32_t>(p)); }

}  // namespace

const char* symmetry_points_name(SymmetryPoints p) {
  switch (p) {
    case SymmetryPoints::prior: return "the prior's draws";
    case SymmetryPoints::orbit: return "the batch's start moved along its orbits";
    default: return "the batch's start";
  }
}

template <class T>
detail::NhfImpl<T>::NhfImpl(const Distribution& tgt, std::shared_ptr<const Distribution> pr, const NhfSpec& sp,
                            int max_b, std::uint32_t seed)
    : target(tgt), prior(std::move(pr)), spec(sp), dim(tgt.dim()), max_batch(max_b) {
  const int D = dim, B = max_b, L = sp.steps;
  if (prior->dim() != D) throw std::invalid_argument("nhf: prior and target dimensions differ");
  if (!prior->has_sampler() || !std::isfinite(prior->log_z()))
    throw std::invalid_argument("nhf: the prior needs an exact sampler and a known normaliser");
  if (L < 1) throw std::invalid_argument("nhf: leapfrog steps must be at least 1");
  if (!(sp.time > 0) || !std::isfinite(sp.time)) throw std::invalid_argument("nhf: integration time must be positive");
  if (B < 1) throw std::invalid_argument("nhf: batch must be at least 1");
  if (sp.elbo && !tgt.has_sampler())
    throw std::invalid_argument("nhf: density estimation (train.loss = elbo) needs a target with exact samples; "
                                "use train.loss = reverse_kl to sample '" + tgt.name() + "' from its energy");
  MlpSpec scalar;
  scalar.widths.push_back(D);
  for (int h : sp.hidden) scalar.widths.push_back(h);
  scalar.widths.push_back(1);
  scalar.activation = sp.activation;
  v = std::make_unique<Mlp<T>>("V", scalar, layout);
  if (sp.fixed_kinetic) {
    mass = add_quadratic_form(layout, "K.L", D);  // zero: L = I, M = I
  } else {
    k = std::make_unique<Mlp<T>>("K", scalar, layout);
  }
  MlpSpec enc = scalar;
  enc.widths.back() = D;
  mu = std::make_unique<Mlp<T>>("encoder.mu", enc, layout);
  sig = std::make_unique<Mlp<T>>("encoder.sigma", enc, layout);

  const int rows = 2 * B;  // an HVP: value and one tangent row per sample
  wv = v->workspace(rows);
  if (k) wk = k->workspace(rows);
  wmu = mu->workspace(B);
  wsig = sig->workspace(B);
  vrows = Matrix<T>("nhf_vrows", rows, D);
  vadj = Matrix<T>("nhf_vadj", rows, 1);
  vin = Matrix<T>("nhf_vin", rows, D);
  krows = Matrix<T>("nhf_krows", rows, D);
  kadj = Matrix<T>("nhf_kadj", rows, 1);
  kin = Matrix<T>("nhf_kin", rows, D);
  q = Matrix<T>("nhf_q", B, D);
  p = Matrix<T>("nhf_p", B, D);
  leapfrog = Leapfrog<T>(B, D, L);
  mu_bar = Matrix<T>("nhf_mu_bar", B, D);
  a = Matrix<T>("nhf_a", B, D);
  b = Matrix<T>("nhf_b", B, D);
  tmp = Matrix<T>("nhf_tmp", B, D);
  mu_v = Matrix<T>("nhf_mu", B, D);
  sig_v = Matrix<T>("nhf_sigma", B, D);
  eps = Matrix<T>("nhf_eps", B, D);
  enc_in = Matrix<T>("nhf_encoder_in", B, D);
  e = Vector<T>("nhf_e", B);
  e2 = Vector<T>("nhf_e2", B);
  zd = Matrix<double>("nhf_z", B, D);
  term = Vector<double>("nhf_marginal_term", B);
  if (sp.elbo) data = TrainingSet(tgt, sp.dataset_size, sp.epochs, seed, B);
  if (!sp.symmetry.empty()) {
    if (sp.symmetry.dim != D) throw std::invalid_argument("nhf: the symmetry generators' dimension differs from the target's");
    require_invariant_prior(*prior, sp.symmetry);
    if (!(sp.symmetry_tolerance >= 0) || !(sp.symmetry_rate >= 0))
      throw std::invalid_argument("nhf: the symmetry tolerance and rate must be non-negative");
    ngen = sp.symmetry.count();
    gen = Matrix<T>("nhf_generators", static_cast<std::size_t>(ngen) * D, D);
    auto hg = Kokkos::create_mirror_view(gen);
    for (int k = 0; k < ngen; ++k)
      for (int r = 0; r < D; ++r)
        for (int c = 0; c < D; ++c) hg(k * D + r, c) = static_cast<T>(sp.symmetry.b[k][static_cast<std::size_t>(r) * D + c]);
    Kokkos::deep_copy(gen, hg);
    for (Matrix<T>* mm : {&spm, &sgv, &sgk, &suq, &sup, &shu, &spq}) *mm = Matrix<T>("nhf_symmetry_rows", B, D);
    sc = Matrix<T>("nhf_bracket", B, ngen);
    if (sp.symmetry_points == SymmetryPoints::orbit) orbit = GroupAction(sp.symmetry, B);
    lam = Vector<T>("nhf_lambda", ngen);
    lam_host = Kokkos::create_mirror_view(lam);
    lambda.assign(ngen, 1.0);
    cma.assign(ngen, 0.0);
    pending.assign(ngen, 0.0);
  }
}

template <class T>
void detail::NhfImpl<T>::bracket(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<const T>& q,
                                 double* csum) {
  const int D = dim, K = ngen;
  const Rows<T> p = head_rows(spm, n), gv = head_rows(sgv, n), gk = head_rows(sgk, n), uq = head_rows(suq, n),
                up = head_rows(sup, n), c = head_rows(sc, n);
  NhfHamiltonian<T> H{*this, params, grad};
  H.grad_v(n, q, gv);
  H.grad_k(n, p, gk);
  const Matrix<T> B = gen;
  const Vector<T> l = lam;
  const bool with_grad = grad.extent(0) > 0;
  // c_k = Σ_r (B_kᵀp)_r ∂_r K − (B_k q)_r ∂_r V; the HVP directions Σ_k 2λ_k c_k (B_kᵀp) and −Σ_k 2λ_k c_k (B_k q).
  Kokkos::parallel_for(
      "bf::nhf_bracket", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        for (int r = 0; r < D; ++r) {
          uq(i, r) = T(0);
          up(i, r) = T(0);
        }
        for (int k = 0; k < K; ++k) {
          T ck = T(0);
          for (int r = 0; r < D; ++r) {
            T btp = T(0), bq = T(0);
            for (int s = 0; s < D; ++s) {
              btp += B(k * D + s, r) * p(i, s);
              bq += B(k * D + r, s) * q(i, s);
            }
            ck += btp * gk(i, r) - bq * gv(i, r);
          }
          c(i, k) = ck;
          if (!with_grad) continue;
          const T a = T(2) * l(k) * ck;
          for (int r = 0; r < D; ++r) {
            T btp = T(0), bq = T(0);
            for (int s = 0; s < D; ++s) {
              btp += B(k * D + s, r) * p(i, s);
              bq += B(k * D + r, s) * q(i, s);
            }
            up(i, r) += a * btp;
            uq(i, r) -= a * bq;
          }
        }
      });
  for (int k = 0; k < K; ++k) {
    double s = 0;
    Kokkos::parallel_reduce(
        "bf::nhf_bracket_sum", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += static_cast<double>(c(i, k)) * static_cast<double>(c(i, k)); },
        s);
    csum[k] += s;
  }
  if (!with_grad) return;
  const Rows<T> hu = head_rows(shu, n);
  Kokkos::deep_copy(Kokkos::subview(shu, std::make_pair(0, n), Kokkos::ALL()), T(0));  // H u is not used
  H.hvp_v(n, T(1), q, uq, hu);
  H.hvp_k(n, T(1), p, up, hu);
}

template <class T>
void detail::NhfImpl<T>::encode(const Vector<T>& params, int n, const Rows<const T>& x, const Rows<T>& mu_out,
                                const Rows<T>& sigma_out) {
  // The encoder's own copy of its input: the caller's rows move with the flow,
  // and the reverse pass needs the input of the forward.
  const Rows<T> in = head_rows(enc_in, n);
  Leapfrog<T>::copy(n, dim, x, in);
  const Rows<const T> m = mu->forward(params, wmu, n, 0, in);
  const Rows<const T> s = sig->forward(params, wsig, n, 0, in);
  for_each_element("bf::nhf_encode", n, dim, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    mu_out(i, j) = m(i, j);
    sigma_out(i, j) = softplus(s(i, j)) + T(1e-6);
  });
}

template <class T>
void detail::NhfImpl<T>::encode_reverse(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& mu_adj,
                                        const Rows<T>& sigma_adj) {
  mu->reverse(params, grad, wmu, mu_adj, Rows<T>());
  // σ = softplus(s): s̄ = σ̄ sigmoid(s), with s the cached output of the σ network.
  const Rows<const T> s = rows_of<const T>(wsig.pre[sig->layers() - 1], 0, n);
  for_each_element("bf::nhf_sigma_bar", n, dim, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    sigma_adj(i, j) *= sigmoid(s(i, j));
  });
  sig->reverse(params, grad, wsig, sigma_adj, Rows<T>());
}

template <class T>
void detail::NhfImpl<T>::draw_prior(std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first, int n) {
  const Matrix<double> z = Kokkos::subview(zd, std::make_pair(0, n), Kokkos::ALL());
  prior->sample(seed, purpose, static_cast<std::uint32_t>(step), first, z);
  const Rows<T> qs = head_rows(q, n);
  for_each_element("bf::nhf_q0", n, dim, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    qs(i, j) = static_cast<T>(z(i, j));
  });
}

template <class T>
NhfFlow<T>::NhfFlow(const Distribution& target, std::shared_ptr<const Distribution> prior, const NhfSpec& spec,
                    int max_batch, std::uint32_t seed)
    : m_(std::make_unique<detail::NhfImpl<T>>(target, std::move(prior), spec, max_batch, seed)) {}

template <class T>
NhfFlow<T>::~NhfFlow() = default;

template <class T>
const ParameterLayout& NhfFlow<T>::layout() const {
  return m_->layout;
}
template <class T>
int NhfFlow<T>::dim() const {
  return m_->dim;
}
template <class T>
int NhfFlow<T>::max_batch() const {
  return m_->max_batch;
}
template <class T>
const NhfSpec& NhfFlow<T>::spec() const {
  return m_->spec;
}

template <class T>
std::string NhfFlow<T>::description() const {
  const NhfSpec& sp = m_->spec;
  std::ostringstream os;
  os << "nhf: " << (sp.fixed_kinetic ? "fixed-kinetic (K = p^T M p / 2)" : "MLP-kinetic") << ", V";
  for (int h : sp.hidden) os << " x " << h;
  os << " (" << activation_name(sp.activation) << "), leapfrog L = " << sp.steps << ", T = " << sp.time
     << ", prior " << m_->prior->description() << "; loss "
     << (sp.elbo ? "ELBO on " + std::to_string(sp.dataset_size) + " exact samples" : std::string("reverse KL"));
  if (!sp.symmetry.empty())
    os << ", symmetry " << sp.symmetry.name << " (" << sp.symmetry.count() << " generator(s), E[{g, H}^2] <= "
       << sp.symmetry_tolerance << " at " << symmetry_points_name(sp.symmetry_points)
       << ", GECO rate " << sp.symmetry_rate
       << (sp.symmetry_warmup > 0 ? ", multipliers from step " + std::to_string(sp.symmetry_warmup) : std::string())
       << ")";
  return os.str();
}

template <class T>
void NhfFlow<T>::initialize(const Vector<T>& params, std::uint32_t seed) const {
  initialize_parameters(m_->layout, params, seed);
}

template <class T>
double NhfFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& bref,
                                 const Collective& coll) {
  detail::NhfImpl<T>& m = *m_;
  const int n = bref.count, D = m.dim;
  if (n > m.max_batch) throw std::logic_error("nhf: batch larger than the workspace");
  const bool elbo = m.spec.elbo;
  const T dt = static_cast<T>(m.spec.time / m.spec.steps);
  const Rows<T> q = head_rows(m.q, n), p = head_rows(m.p, n), a = head_rows(m.a, n), b = head_rows(m.b, n),
                mu = head_rows(m.mu_v, n), sig = head_rows(m.sig_v, n), eps = head_rows(m.eps, n);
  // The start: positions from the prior (sampling) or the data set (density estimation).
  if (elbo) {
    m.data.select(bref);
    gather_selected<T>(m.data, n, q);
  } else {
    m.draw_prior(bref.seed, Purpose::base_sample, bref.step, bref.first, n);
  }
  // The symmetry penalty at the batch's start positions, with momenta of its own.
  double penalty = 0;
  if (m.ngen > 0) {
    const int K = m.ngen;
    standard_normals<T>(bref.seed, Purpose::symmetry_momentum, bref.step, bref.first, n, D, m.spm);
    const auto hl = m.lam_host;
    for (int k = 0; k < K; ++k) hl(k) = static_cast<T>(m.lambda[k]);
    Kokkos::deep_copy(m.lam, hl);
    std::vector<double> cs(K, 0.0);
    Rows<const T> at = q;
    if (m.spec.symmetry_points != SymmetryPoints::start) {
      const Matrix<double> z = Kokkos::subview(m.zd, std::make_pair(0, n), Kokkos::ALL());
      if (m.spec.symmetry_points == SymmetryPoints::prior) {
        m.prior->sample(bref.seed, Purpose::symmetry_points, static_cast<std::uint32_t>(bref.step), bref.first, z);
      } else {
        for_each_element("bf::nhf_orbit_from", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
          z(i, j) = static_cast<double>(q(i, j));
        });
        m.orbit.apply_random(bref.seed, Purpose::symmetry_orbit, static_cast<std::uint32_t>(bref.step), bref.first, z);
      }
      const Rows<T> pq = head_rows(m.spq, n);
      for_each_element("bf::nhf_symmetry_points", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
        pq(i, j) = static_cast<T>(z(i, j));
      });
      at = pq;
    }
    m.bracket(params, grad, n, at, cs.data());
    const double kappa = m.spec.symmetry_tolerance;
    for (int k = 0; k < K; ++k) penalty += static_cast<double>(hl(k)) * (cs[k] - n * kappa);
    coll.sum(cs.data(), K);
    for (int k = 0; k < K; ++k) m.pending[k] = cs[k] / static_cast<double>(bref.global) - kappa;
    m.has_pending = true;
    m.pending_step = bref.step;
  }
  standard_normals<T>(bref.seed, Purpose::momentum, bref.step, bref.first, n, D, m.eps);
  m.encode(params, n, q, mu, sig);
  // p = μ + σ ε at the encoder's end; log f there (without −D/2 log 2π, which cancels).
  Vector<T> lf = Kokkos::subview(m.e, std::make_pair(0, n));
  Kokkos::parallel_for(
      "bf::nhf_momentum", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        T l = T(0);
        for (int j = 0; j < D; ++j) {
          p(i, j) = mu(i, j) + sig(i, j) * eps(i, j);
          l += -kmath::log(sig(i, j)) - T(0.5) * eps(i, j) * eps(i, j);
        }
        lf(i) = l;
      });
  // The flow: forwards from the prior (sampling) or backwards from the data.
  const T h = elbo ? -dt : dt;
  detail::NhfHamiltonian<T> H{m, params, grad};
  m.leapfrog.integrate(H, n, q, p, h, true);
  // The end energy: f (sampling) or the prior's (density estimation); gradient into b.
  const Matrix<T> bm = Kokkos::subview(m.b, std::make_pair(0, n), Kokkos::ALL());
  double loss = 0;
  {
    const Vector<T> ee = Kokkos::subview(m.e2, std::make_pair(0, n));
    (elbo ? *m.prior : m.target).energy_grad(ConstMatrix<T>(q), ee, bm);
    const T lz = elbo ? static_cast<T>(m.prior->log_z()) : T(0);
    Kokkos::parallel_reduce(
        "bf::nhf_loss", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& acc) {
          T kin = T(0);
          for (int j = 0; j < D; ++j) {
            kin += T(0.5) * p(i, j) * p(i, j);
            a(i, j) = p(i, j);  // p̄ at the end: ∂(½|p|²)/∂p
          }
          acc += static_cast<double>(ee(i) + lz + kin + lf(i));
        },
        loss);
  }
  m.leapfrog.adjoint(H, n, b, a, h);
  // Encoder: μ̄ = p̄, σ̄ = p̄ ε − 1/σ (from log f).
  const Rows<T> mubar = head_rows(m.mu_bar, n), sigbar = head_rows(m.tmp, n);
  for_each_element("bf::nhf_encoder_bar", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    mubar(i, j) = a(i, j);
    sigbar(i, j) = a(i, j) * eps(i, j) - T(1) / sig(i, j);
  });
  // The encoder's context is from encode() above: the leapfrog runs only V and K.
  m.encode_reverse(params, grad, n, mubar, sigbar);
  return loss + penalty;
}

template <class T>
std::vector<double> NhfFlow<T>::state() const {
  const detail::NhfImpl<T>& m = *m_;
  if (m.ngen == 0) return {};
  std::vector<double> s = m.lambda;
  s.insert(s.end(), m.cma.begin(), m.cma.end());
  s.push_back(m.started ? 1.0 : 0.0);
  // The generators themselves: a resumed run is checked against them (set_state).
  for (const auto& b : m.spec.symmetry.b) s.insert(s.end(), b.begin(), b.end());
  return s;
}

template <class T>
void NhfFlow<T>::set_state(const std::vector<double>& s) {
  detail::NhfImpl<T>& m = *m_;
  const std::size_t K = static_cast<std::size_t>(m.ngen), D = static_cast<std::size_t>(m.dim);
  const std::size_t head = K == 0 ? 0 : 2 * K + 1, full = K == 0 ? 0 : head + K * D * D;
  // Checkpoints written before the generators were kept hold the head only (nothing to check).
  if (s.size() != full && !(K > 0 && s.size() == head))
    throw std::invalid_argument("nhf: the optimiser state has " + std::to_string(s.size()) + " numbers, the model " +
                                std::to_string(full) + " (symmetry constraint with " + std::to_string(K) +
                                " generators)");
  if (K == 0) return;
  if (s.size() == full) {
    double worst = 0;
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t j = 0; j < D * D; ++j)
        worst = std::fmax(worst, std::fabs(s[head + k * D * D + j] - m.spec.symmetry.b[k][j]));
    if (worst > 0)
      throw std::invalid_argument("the symmetry generators (model.symmetry = " + m.spec.symmetry.name +
                                  ") differ from those the run was trained with by up to " + fmt_num(worst) +
                                  " (a matrix file edited since?); restore them or start a new run");
  }
  m.lambda.assign(s.begin(), s.begin() + K);
  m.cma.assign(s.begin() + K, s.begin() + 2 * K);
  m.started = s[2 * K] != 0.0;
  m.has_pending = false;
}

template <class T>
void NhfFlow<T>::end_step() {
  detail::NhfImpl<T>& m = *m_;
  if (m.ngen == 0 || !m.has_pending) return;
  for (int k = 0; k < m.ngen; ++k) {
    m.cma[k] = m.started ? 0.99 * m.cma[k] + 0.01 * m.pending[k] : m.pending[k];
    // At most a factor e^{±0.1} per step: a large early violation (random networks give c² of
    // tens on a lattice) would otherwise drive λ to its bound in a step or two.
    if (m.pending_step < m.spec.symmetry_warmup) continue;
    const double step = std::fmin(0.1, std::fmax(-0.1, m.spec.symmetry_rate * m.cma[k]));
    m.lambda[k] = std::fmin(1e6, std::fmax(1e-6, m.lambda[k] * std::exp(step)));
  }
  m.started = true;
  m.has_pending = false;
}

template <class T>
std::vector<std::pair<std::string, double>> NhfFlow<T>::step_figures() const {
  const detail::NhfImpl<T>& m = *m_;
  std::vector<std::pair<std::string, double>> f;
  const double kappa = m.spec.symmetry_tolerance;
  for (int k = 0; k < m.ngen; ++k) {
    const std::string sfx = m.ngen > 1 ? "_" + std::to_string(k) : "";
    f.emplace_back("symmetry_lambda" + sfx, m.lambda[k]);
    f.emplace_back("symmetry_constraint" + sfx, m.pending[k] + kappa);
    f.emplace_back("symmetry_constraint_ma" + sfx, m.cma[k] + kappa);
  }
  if (m.ngen > 0) {  // Σ_k λ_k Ĉ_k: the part of the step's loss that is the penalty
    double pen = 0;
    for (int k = 0; k < m.ngen; ++k) pen += m.lambda[k] * m.pending[k];
    f.emplace_back("symmetry_penalty", pen);
  }
  return f;
}

template <class T>
int NhfFlow<T>::symmetry_generators() const {
  return m_->ngen;
}

template <class T>
void NhfFlow<T>::symmetry_bracket(const Vector<T>& params, const ConstMatrix<double>& x, std::uint32_t seed,
                                  std::int64_t stream, std::uint64_t first, const Matrix<double>& c) {
  detail::NhfImpl<T>& m = *m_;
  if (m.ngen == 0) throw std::logic_error("nhf: no symmetry constraint");
  const int D = m.dim, K = m.ngen, total = static_cast<int>(x.extent(0));
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    const Rows<T> q = head_rows(m.q, n);
    for_each_element("bf::nhf_bracket_x", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      q(i, j) = static_cast<T>(x(c0 + i, j));
    });
    standard_normals<T>(seed, Purpose::symmetry_momentum, stream, first + static_cast<std::uint64_t>(c0), n, D, m.spm);
    std::vector<double> unused(K, 0.0);
    m.bracket(params, Vector<T>(), n, q, unused.data());
    const Matrix<T> sc = m.sc;
    for_each_element("bf::nhf_bracket_out", n, K, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t k) {
      c(c0 + i, k) = static_cast<double>(sc(i, k));
    });
  }
}

template <class T>
std::vector<double> NhfFlow<T>::kinetic(const Vector<T>& params, const std::vector<double>& points) {
  detail::NhfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(points.size()) / D;
  if (n > m.max_batch) throw std::logic_error("nhf kinetic: too many points");
  rows_to_device(points, 0, n, m.p);
  std::vector<double> out(n);
  if (m.k) {
    const Rows<const T> kv = m.k->forward(params, m.wk, n, 0, rows_of<const T>(m.p, 0, n), false);
    auto hk = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), kv);
    for (int i = 0; i < n; ++i) out[i] = static_cast<double>(hk(i, 0));
    return out;
  }
  const std::vector<double> M = quadratic_form_matrix<T>(params, m.mass);
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int r = 0; r < D; ++r)
      for (int c = 0; c < D; ++c) s += 0.5 * points[i * D + r] * M[r * D + c] * points[i * D + c];
    out[i] = s;
  }
  return out;
}

template <class T>
void NhfFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                        std::uint64_t first, const Matrix<double>& xout, const Vector<double>& log_q) {
  detail::NhfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(xout.extent(0));
  const T dt = static_cast<T>(m.spec.time / m.spec.steps);
  const T lz0 = static_cast<T>(m.prior->log_z());
  const bool elbo = m.spec.elbo;
  detail::NhfHamiltonian<T> H{m, params, Vector<T>()};
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    const std::uint64_t f0 = first + static_cast<std::uint64_t>(c0);
    const Rows<T> q = head_rows(m.q, n), p = head_rows(m.p, n), mu = head_rows(m.mu_v, n), sig = head_rows(m.sig_v, n),
                  eps = head_rows(m.eps, n);
    m.draw_prior(seed, purpose, step, f0, n);
    standard_normals<T>(seed, momentum_purpose(purpose), step, f0, n, D, m.eps);
    Vector<T> e0 = Kokkos::subview(m.e, std::make_pair(0, n));
    m.prior->energy(ConstMatrix<T>(q), e0);
    // log q_eff accumulates: −E0 − log Z0, then the momentum terms.
    Vector<double> lq = Kokkos::subview(log_q, std::make_pair(c0, c0 + n));
    if (elbo) {
      // (q0, p0) ~ π0 × N(0, I) forwards; log q = −E0 − log Z0 − ½|p0|² + Σ log σ + ½ Σ ((p_T − μ)/σ)².
      Kokkos::parallel_for(
          "bf::nhf_sample_p0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = -e0(i) - lz0;
            for (int j = 0; j < D; ++j) {
              p(i, j) = eps(i, j);
              l -= T(0.5) * eps(i, j) * eps(i, j);
            }
            lq(i) = static_cast<double>(l);
          });
      m.leapfrog.integrate(H, n, q, p, dt, false);
      m.encode(params, n, q, mu, sig);
      Kokkos::parallel_for(
          "bf::nhf_sample_lq", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = T(0);
            for (int j = 0; j < D; ++j) {
              const T z = (p(i, j) - mu(i, j)) / sig(i, j);
              l += kmath::log(sig(i, j)) + T(0.5) * z * z;
            }
            lq(i) += static_cast<double>(l);
          });
    } else {
      // q0 ~ π0, p0 ~ f(·|q0) forwards; log q = −E0 − log Z0 − Σ log σ − ½|ε|² + ½|p_T|².
      m.encode(params, n, q, mu, sig);
      Kokkos::parallel_for(
          "bf::nhf_sample_p0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = -e0(i) - lz0;
            for (int j = 0; j < D; ++j) {
              p(i, j) = mu(i, j) + sig(i, j) * eps(i, j);
              l -= kmath::log(sig(i, j)) + T(0.5) * eps(i, j) * eps(i, j);
            }
            lq(i) = static_cast<double>(l);
          });
      m.leapfrog.integrate(H, n, q, p, dt, false);
      Kokkos::parallel_for(
          "bf::nhf_sample_lq", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = T(0);
            for (int j = 0; j < D; ++j) l += T(0.5) * p(i, j) * p(i, j);
            lq(i) += static_cast<double>(l);
          });
    }
    for_each_element("bf::nhf_sample_out", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      xout(c0 + i, j) = static_cast<double>(q(i, j));
    });
  }
}

template <class T>
void NhfFlow<T>::marginal_log_density(const Vector<T>& params, const ConstMatrix<double>& x, int K,
                                      std::uint32_t seed, std::int64_t stream, std::uint64_t first,
                                      const Vector<double>& log_q) {
  detail::NhfImpl<T>& m = *m_;
  if (K < 1) throw std::invalid_argument("nhf: the marginal estimate needs at least one momentum per sample");
  const int D = m.dim;
  const std::int64_t total = static_cast<std::int64_t>(x.extent(0)), pairs = total * K;
  if (static_cast<std::int64_t>(log_q.extent(0)) < total) throw std::logic_error("nhf marginal: log_q too short");
  const T dt = static_cast<T>(m.spec.time / m.spec.steps);
  const T lz0 = static_cast<T>(m.prior->log_z());
  const bool elbo = m.spec.elbo;
  detail::NhfHamiltonian<T> H{m, params, Vector<T>()};
  // A running log-sum-exp per sample over its K terms (the pairs of a sample
  // may span chunks): the largest term so far and Σ exp(term − largest).
  Kokkos::View<double*, MemSpace> mx("nhf_marginal_max", total), sm("nhf_marginal_sum", total);
  Kokkos::deep_copy(mx, -std::numeric_limits<double>::infinity());
  for (std::int64_t c0 = 0; c0 < pairs; c0 += m.max_batch) {
    const int n = static_cast<int>(std::min<std::int64_t>(m.max_batch, pairs - c0));
    const Rows<T> q = head_rows(m.q, n), p = head_rows(m.p, n), mu = head_rows(m.mu_v, n), sig = head_rows(m.sig_v, n),
                  eps = head_rows(m.eps, n);
    const Vector<double> term = m.term;
    for_each_element("bf::nhf_marginal_x", n, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t j) {
      q(r, j) = static_cast<T>(x((c0 + r) / K, j));
    });
    // Pair (i, k) is global pair (first + i)·K + k: contiguous over the chunk.
    standard_normals<T>(seed, Purpose::marginal_momentum, stream, first * static_cast<std::uint64_t>(K) +
                        static_cast<std::uint64_t>(c0), n, D, m.eps);
    // p ~ r(·|x); term := −log r(p|x) (the −D/2 log 2π of r and of M cancel).
    if (elbo) m.encode(params, n, q, mu, sig);
    Kokkos::parallel_for(
        "bf::nhf_marginal_p", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t r) {
          T l = T(0);
          for (int j = 0; j < D; ++j) {
            p(r, j) = elbo ? mu(r, j) + sig(r, j) * eps(r, j) : eps(r, j);
            l += (elbo ? kmath::log(sig(r, j)) : T(0)) + T(0.5) * eps(r, j) * eps(r, j);
          }
          term(r) = static_cast<double>(l);
        });
    m.leapfrog.integrate(H, n, q, p, -dt, false);  // back to (q0, p0)
    Vector<T> e0 = Kokkos::subview(m.e, std::make_pair(0, n));
    m.prior->energy(ConstMatrix<T>(q), e0);
    if (!elbo) m.encode(params, n, q, mu, sig);  // f(p0|q0)
    Kokkos::parallel_for(
        "bf::nhf_marginal_term", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t r) {
          T l = -e0(r) - lz0;  // log π0(q0)
          for (int j = 0; j < D; ++j) {
            if (elbo) {
              l -= T(0.5) * p(r, j) * p(r, j);  // log N(p0; 0, I)
            } else {
              const T z = (p(r, j) - mu(r, j)) / sig(r, j);  // log f(p0|q0)
              l -= kmath::log(sig(r, j)) + T(0.5) * z * z;
            }
          }
          term(r) += static_cast<double>(l);
        });
    // Fold the chunk's terms into their samples' running sums.
    const std::int64_t i0 = c0 / K, i1 = (c0 + n - 1) / K;
    Kokkos::parallel_for(
        "bf::nhf_marginal_fold", Policy(i0, i1 + 1), KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t r0 = (i * K > c0 ? i * K : c0) - c0;
          const std::int64_t r1 = ((i + 1) * K < c0 + n ? (i + 1) * K : c0 + n) - c0;
          double top = mx(i);
          for (std::int64_t r = r0; r < r1; ++r) top = term(r) > top ? term(r) : top;
          if (!(top > -DBL_MAX)) return;  // every term so far −∞: log q̂ = −∞
          if (!(top < DBL_MAX)) {          // a term +∞: log q̂ = +∞
            mx(i) = top;
            sm(i) = 1.0;
            return;
          }
          double s = sm(i) > 0 ? sm(i) * kmath::exp(mx(i) - top) : 0.0;  // (NaN terms make s NaN: reported non-finite)
          for (std::int64_t r = r0; r < r1; ++r) s += kmath::exp(term(r) - top);
          mx(i) = top;
          sm(i) = s;
        });
  }
  const double logk = std::log(static_cast<double>(K));
  Kokkos::parallel_for(
      "bf::nhf_marginal_out", Policy(0, total),
      KOKKOS_LAMBDA(const std::int64_t i) { log_q(i) = mx(i) + kmath::log(sm(i)) - logk; });
}

template <class T>
std::vector<double> NhfFlow<T>::potential(const Vector<T>& params, const std::vector<double>& points) {
  detail::NhfImpl<T>& m = *m_;
  const int D = m.dim, total = static_cast<int>(points.size()) / D;
  std::vector<double> out(total);
  for (int c0 = 0; c0 < total; c0 += m.max_batch) {
    const int n = std::min(m.max_batch, total - c0);
    rows_to_device(points, c0, n, m.q);
    const Rows<const T> v = m.v->forward(params, m.wv, n, 0, rows_of<const T>(m.q, 0, n), false);
    auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    for (int i = 0; i < n; ++i) out[c0 + i] = static_cast<double>(hv(i, 0));
  }
  return out;
}

template <class T>
std::vector<double> NhfFlow<T>::potential_gradient(const Vector<T>& params, const std::vector<double>& points) {
  detail::NhfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(points.size()) / D;
  if (n > m.max_batch) throw std::logic_error("nhf potential_gradient: too many points");
  rows_to_device(points, 0, n, m.q);
  detail::NhfHamiltonian<T> H{m, params, Vector<T>()};
  H.grad_v(n, head_rows(m.q, n), head_rows(m.a, n));
  return rows_to_host<T>(m.a, n);
}

template <class T>
std::vector<double> NhfFlow<T>::mass_matrix(const Vector<T>& params) const {
  const detail::NhfImpl<T>& m = *m_;
  if (m.k) return {};
  return quadratic_form_matrix<T>(params, m.mass);
}

template <class T>
void NhfFlow<T>::leapfrog(const Vector<T>& params, std::vector<double>& qv, std::vector<double>& pv, double dt) {
  detail::NhfImpl<T>& m = *m_;
  const int D = m.dim, n = static_cast<int>(qv.size()) / D;
  if (n > m.max_batch) throw std::logic_error("nhf leapfrog: too many points");
  rows_to_device(qv, 0, n, m.q);
  rows_to_device(pv, 0, n, m.p);
  detail::NhfHamiltonian<T> H{m, params, Vector<T>()};
  m.leapfrog.integrate(H, n, head_rows(m.q, n), head_rows(m.p, n), static_cast<T>(dt), false);
  qv = rows_to_host<T>(m.q, n);
  pv = rows_to_host<T>(m.p, n);
}

template <class T>
std::vector<std::int64_t> NhfFlow<T>::minibatch_indices(const BatchRef& bref) {
  if (!m_->spec.elbo) throw std::logic_error("nhf: minibatches exist only for train.loss = elbo");
  return m_->data.indices(bref);
}

template struct detail::NhfImpl<float>;
template struct detail::NhfImpl<double>;
template class NhfFlow<float>;
template class NhfFlow<double>;

}  // namespace bf
