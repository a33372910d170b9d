#include "flows/nhf.hpp"

#include "flows/noise.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

namespace bf {

namespace {

// The momentum noise of a sample: a purpose of its own beside the prior's.
Purpose momentum_purpose(Purpose p) { return static_cast<Purpose>(1000u + static_cast<std::uint32_t>(p)); }

// y = a x + y on n x d rows.
template <class T>
void axpy(int n, int d, T a, const Rows<const T>& x, const Rows<T>& y) {
  Kokkos::parallel_for(
      "bf::nhf_axpy", Policy(0, static_cast<std::int64_t>(n) * d), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / d;
        const int j = static_cast<int>(e - i * d);
        y(i, j) += a * x(i, j);
      });
}

template <class T>
void copy_rows(int n, int d, const Rows<const T>& x, const Rows<T>& y) {
  Kokkos::parallel_for(
      "bf::nhf_copy", Policy(0, static_cast<std::int64_t>(n) * d), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / d;
        const int j = static_cast<int>(e - i * d);
        y(i, j) = x(i, j);
      });
}

// ∇E at rows x [n x D] of a scalar MLP E by reverse mode, into g: a forward
// of the value rows, then a reverse pass with output adjoint 1 that computes
// input adjoints only (no weight-gradient GEMMs): about two passes of n rows,
// against one pass of (1 + D) n rows for D axis tangents.
template <class T>
void scalar_gradient(const Mlp<T>& net, typename Mlp<T>::Workspace& ws, const Vector<T>& params, int n,
                     const Rows<const T>& x, const Matrix<T>& adj_buf, const Rows<T>& g) {
  net.forward(params, ws, n, 0, x);
  const Rows<T> adj = rows_of<T>(adj_buf, 0, n);
  Kokkos::parallel_for(
      "bf::nhf_unit_adjoint", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { adj(i, 0) = T(1); });
  net.reverse(params, Vector<T>(), ws, adj, g);
}

// hu += c H u and grad += c ∂(u·∇E)/∂θ at rows x, for a scalar MLP E: u·∇E(x)
// is E's tangent output along u, so one forward of [x; u] (one tangent) and
// one reverse pass with adjoint c on the tangent output give both: the
// parameter gradient, and H u as the value row's input adjoint. Two rows per
// sample, whatever D.
template <class T>
void scalar_hvp(const Mlp<T>& net, typename Mlp<T>::Workspace& ws, const Vector<T>& params, const Vector<T>& grad,
                int n, int d, T c, const Rows<const T>& x, const Rows<const T>& u, const Matrix<T>& row_buf,
                const Matrix<T>& adj_buf, const Matrix<T>& in_buf, const Rows<T>& hu) {
  const Rows<T> rows = rows_of<T>(row_buf, 0, 2 * n), adj = rows_of<T>(adj_buf, 0, 2 * n),
                in = rows_of<T>(in_buf, 0, 2 * n);
  Kokkos::parallel_for(
      "bf::nhf_hvp_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, 1);
        for (int j = 0; j < d; ++j) {
          rows(r0, j) = x(i, j);
          rows(r0 + 1, j) = u(i, j);
        }
        adj(r0, 0) = T(0);
        adj(r0 + 1, 0) = c;
      });
  net.forward(params, ws, n, 1, rows);
  net.reverse(params, grad, ws, adj, in);
  Kokkos::parallel_for(
      "bf::nhf_hvp", Policy(0, static_cast<std::int64_t>(n) * d), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / d;
        const int j = static_cast<int>(e - i * d);
        hu(i, j) += in(row_of(i, 0, 1), j);
      });
}

}  // namespace

template <class T>
NhfFlow<T>::NhfFlow(const Distribution& target, std::shared_ptr<const Distribution> prior, const NhfSpec& spec,
                    int max_batch, std::uint32_t seed)
    : target_(target), prior_(std::move(prior)), spec_(spec), dim_(target.dim()), max_batch_(max_batch) {
  const int D = dim_, B = max_batch, L = spec.steps;
  if (prior_->dim() != D) throw std::invalid_argument("nhf: prior and target dimensions differ");
  if (!prior_->has_sampler() || !std::isfinite(prior_->log_z()))
    throw std::invalid_argument("nhf: the prior needs an exact sampler and a known normaliser");
  if (L < 1) throw std::invalid_argument("nhf: leapfrog steps must be at least 1");
  if (!(spec.time > 0) || !std::isfinite(spec.time)) throw std::invalid_argument("nhf: integration time must be positive");
  if (B < 1) throw std::invalid_argument("nhf: batch must be at least 1");
  if (spec.elbo && !target.has_sampler())
    throw std::invalid_argument("nhf: density estimation (train.loss = elbo) needs a target with exact samples; "
                                "use train.loss = reverse_kl to sample '" + target.name() + "' from its energy");
  MlpSpec scalar;
  scalar.widths.push_back(D);
  for (int h : spec.hidden) scalar.widths.push_back(h);
  scalar.widths.push_back(1);
  scalar.activation = spec.activation;
  v_ = std::make_unique<Mlp<T>>("V", scalar, layout_);
  if (spec.fixed_kinetic) {
    layout_.add("K.L", {D, D}, ParamInit{});  // zero: L = I, M = I
    mass_ = layout_.slice("K.L");
  } else {
    k_ = std::make_unique<Mlp<T>>("K", scalar, layout_);
  }
  MlpSpec enc = scalar;
  enc.widths.back() = D;
  mu_ = std::make_unique<Mlp<T>>("encoder.mu", enc, layout_);
  sig_ = std::make_unique<Mlp<T>>("encoder.sigma", enc, layout_);

  const int rows = 2 * B;  // an HVP: value and one tangent row per sample
  wv_ = v_->workspace(rows);
  if (k_) wk_ = k_->workspace(rows);
  wmu_ = mu_->workspace(B);
  wsig_ = sig_->workspace(B);
  vrows_ = Matrix<T>("nhf_vrows", rows, D);
  vadj_ = Matrix<T>("nhf_vadj", rows, 1);
  vin_ = Matrix<T>("nhf_vin", rows, D);
  krows_ = Matrix<T>("nhf_krows", rows, D);
  kadj_ = Matrix<T>("nhf_kadj", rows, 1);
  kin_ = Matrix<T>("nhf_kin", rows, D);
  q_ = Matrix<T>("nhf_q", B, D);
  p_ = Matrix<T>("nhf_p", B, D);
  gq_ = Matrix<T>("nhf_gq", B, D);
  gp_ = Matrix<T>("nhf_gp", B, D);
  qs_ = Matrix<T>("nhf_qs", static_cast<std::size_t>(L + 1) * B, D);
  phs_ = Matrix<T>("nhf_phs", static_cast<std::size_t>(L) * B, D);
  a_ = Matrix<T>("nhf_a", B, D);
  b_ = Matrix<T>("nhf_b", B, D);
  tmp_ = Matrix<T>("nhf_tmp", B, D);
  mu_v_ = Matrix<T>("nhf_mu", B, D);
  sig_v_ = Matrix<T>("nhf_sigma", B, D);
  eps_ = Matrix<T>("nhf_eps", B, D);
  enc_in_ = Matrix<T>("nhf_encoder_in", B, D);
  e_ = Vector<T>("nhf_e", B);
  e2_ = Vector<T>("nhf_e2", B);
  zd_ = Matrix<double>("nhf_z", B, D);
  if (spec.elbo) {
    if (spec.dataset_size < 1) throw std::invalid_argument("nhf: the data set needs at least one point");
    data_ = Matrix<double>("nhf_data", spec.dataset_size, D);
    target.sample(seed, Purpose::dataset, 0, 0, data_);
    idx_ = Kokkos::View<std::int64_t*, MemSpace>("nhf_minibatch", B);
    if (spec.epochs) order_ = Kokkos::View<std::int64_t**, MemSpace>("nhf_epoch_order", 2, spec.dataset_size);
  }
}

template <class T>
std::string NhfFlow<T>::description() const {
  std::ostringstream os;
  os << "nhf: " << (spec_.fixed_kinetic ? "fixed-kinetic (K = p^T M p / 2)" : "MLP-kinetic") << ", V";
  for (int h : spec_.hidden) os << " x " << h;
  os << " (" << activation_name(spec_.activation) << "), leapfrog L = " << spec_.steps << ", T = " << spec_.time
     << ", prior " << prior_->description() << "; loss "
     << (spec_.elbo ? "ELBO on " + std::to_string(spec_.dataset_size) + " exact samples" : std::string("reverse KL"));
  return os.str();
}

template <class T>
void NhfFlow<T>::initialize(const Vector<T>& params, std::uint32_t seed) const {
  initialize_parameters(layout_, params, seed);
}

template <class T>
void NhfFlow<T>::grad_v(const Vector<T>& params, int n, const Rows<const T>& q, const Rows<T>& g) {
  scalar_gradient<T>(*v_, wv_, params, n, q, vadj_, g);
}

template <class T>
void NhfFlow<T>::hvp_v(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& q,
                       const Rows<const T>& u, const Rows<T>& hu) {
  scalar_hvp<T>(*v_, wv_, params, grad, n, dim_, c, q, u, vrows_, vadj_, vin_, hu);
}

template <class T>
void NhfFlow<T>::grad_k(const Vector<T>& params, int n, const Rows<const T>& p, const Rows<T>& g) {
  const int D = dim_;
  if (k_) {
    scalar_gradient<T>(*k_, wk_, params, n, p, kadj_, g);
    return;
  }
  // ∇K = M p = L (Lᵀ p), L lower-triangular with diagonal exp(l_ii).
  const Rows<const T> L = slice_matrix(params, mass_);
  Kokkos::parallel_for(
      "bf::nhf_grad_k_fixed", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        for (int r = 0; r < D; ++r) {
          T s = T(0);
          for (int c = 0; c <= r; ++c) {
            T w = T(0);  // (Lᵀ p)_c = Σ_{k ≥ c} L_kc p_k
            for (int k = c; k < D; ++k) w += (k == c ? kmath::exp(L(k, k)) : L(k, c)) * p(i, k);
            s += (r == c ? kmath::exp(L(r, r)) : L(r, c)) * w;
          }
          g(i, r) = s;
        }
      });
}

template <class T>
void NhfFlow<T>::hvp_k(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& u,
                       const Rows<T>& hu, const Rows<const T>& p) {
  const int D = dim_;
  if (k_) {
    scalar_hvp<T>(*k_, wk_, params, grad, n, D, c, p, u, krows_, kadj_, kin_, hu);
    return;
  }
  // H_K u = M u; ∂(uᵀ L Lᵀ p)/∂L_rc = u_r (Lᵀ p)_c + p_r (Lᵀ u)_c, times L_rr on the log diagonal.
  const Rows<const T> L = slice_matrix(params, mass_);
  const Rows<T> w = head_rows(tmp_, n);
  grad_k(params, n, u, w);  // w = M u
  axpy<T>(n, D, c, w, hu);
  const Rows<T> dL = slice_matrix(grad, mass_);
  Kokkos::parallel_for(
      "bf::nhf_mass_grad", Policy(0, static_cast<std::int64_t>(D) * D), KOKKOS_LAMBDA(const std::int64_t e) {
        const int r = static_cast<int>(e / D), col = static_cast<int>(e % D);
        if (col > r) return;
        T s = T(0);
        for (int i = 0; i < n; ++i) {
          T ltp = T(0), ltu = T(0);
          for (int k = col; k < D; ++k) {
            const T lk = k == col ? kmath::exp(L(k, k)) : L(k, col);
            ltp += lk * p(i, k);
            ltu += lk * u(i, k);
          }
          s += u(i, r) * ltp + p(i, r) * ltu;
        }
        dL(r, col) += c * s * (r == col ? kmath::exp(L(r, r)) : T(1));
      });
}

template <class T>
void NhfFlow<T>::integrate(const Vector<T>& params, int n, const Rows<T>& q, const Rows<T>& p, T dt, bool store) {
  const int D = dim_, L = spec_.steps;
  const Rows<T> gq = head_rows(gq_, n), gp = head_rows(gp_, n);
  grad_v(params, n, q, gq);
  for (int s = 0; s < L; ++s) {
    if (store) copy_rows<T>(n, D, q, rows_of<T>(qs_, static_cast<std::int64_t>(s) * n, n));
    axpy<T>(n, D, -dt / T(2), gq, p);  // p_h = p − dt/2 ∇V(q)
    if (store) copy_rows<T>(n, D, p, rows_of<T>(phs_, static_cast<std::int64_t>(s) * n, n));
    grad_k(params, n, p, gp);
    axpy<T>(n, D, dt, gp, q);          // q' = q + dt ∇K(p_h)
    grad_v(params, n, q, gq);
    axpy<T>(n, D, -dt / T(2), gq, p);  // p' = p_h − dt/2 ∇V(q')
  }
  if (store) copy_rows<T>(n, D, q, rows_of<T>(qs_, static_cast<std::int64_t>(L) * n, n));
}

template <class T>
void NhfFlow<T>::adjoint(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& b, const Rows<T>& a,
                         T dt) {
  const int L = spec_.steps;
  auto q_at = [&](int s) { return rows_of<const T>(qs_, static_cast<std::int64_t>(s) * n, n); };
  for (int s = L - 1; s >= 0; --s) {
    if (s == L - 1) hvp_v(params, grad, n, -dt / T(2), q_at(L), a, b);  // the last half kick, at Q[L]
    // drift: p̄_h += dt H_K(p_h) q̄
    hvp_k(params, grad, n, dt, b, a, rows_of<const T>(phs_, static_cast<std::int64_t>(s) * n, n));
    // first half kick of step s and last of step s − 1 meet at Q[s]: one HVP.
    hvp_v(params, grad, n, s > 0 ? -dt : -dt / T(2), q_at(s), a, b);
  }
}

template <class T>
void NhfFlow<T>::encode(const Vector<T>& params, int n, const Rows<const T>& q, const Rows<T>& mu,
                        const Rows<T>& sigma) {
  const int D = dim_;
  // The encoder's own copy of its input: the caller's q moves with the flow,
  // and the reverse pass needs the input of the forward.
  const Rows<T> in = head_rows(enc_in_, n);
  copy_rows<T>(n, D, q, in);
  const Rows<const T> m = mu_->forward(params, wmu_, n, 0, in);
  const Rows<const T> s = sig_->forward(params, wsig_, n, 0, in);
  Kokkos::parallel_for(
      "bf::nhf_encode", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / D;
        const int j = static_cast<int>(e - i * D);
        mu(i, j) = m(i, j);
        sigma(i, j) = softplus(s(i, j)) + T(1e-6);
      });
}

template <class T>
void NhfFlow<T>::encode_reverse(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& mu_bar,
                                const Rows<T>& sigma_bar) {
  const int D = dim_;
  mu_->reverse(params, grad, wmu_, mu_bar, Rows<T>());
  // σ = softplus(s): s̄ = σ̄ sigmoid(s), with s the cached output of the σ network.
  const Rows<const T> s = rows_of<const T>(wsig_.pre[sig_->layers() - 1], 0, n);
  Kokkos::parallel_for(
      "bf::nhf_sigma_bar", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / D;
        const int j = static_cast<int>(e - i * D);
        sigma_bar(i, j) *= sigmoid(s(i, j));
      });
  sig_->reverse(params, grad, wsig_, sigma_bar, Rows<T>());
}

namespace {
// The order of the data set in epoch e: a Fisher–Yates shuffle whose swaps
// are drawn from the run's seed and e alone (host; N numbers once per epoch).
std::vector<std::int64_t> epoch_order(std::uint32_t seed, std::int64_t e, std::int64_t N) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i) order[i] = i;
  for (std::int64_t i = N - 1; i > 0; --i) {
    const RngStream s(seed, Purpose::minibatch_order, static_cast<std::uint32_t>(e), static_cast<std::uint64_t>(i));
    std::int64_t j = static_cast<std::int64_t>(s.uniform(0) * static_cast<double>(i + 1));
    j = j < i ? j : i;
    std::swap(order[i], order[j]);
  }
  return order;
}
}  // namespace

template <class T>
void NhfFlow<T>::select_minibatch(const BatchRef& bref) {
  const int n = bref.count;
  const Matrix<double> data = data_;
  const std::int64_t N = static_cast<std::int64_t>(data.extent(0));
  const std::uint32_t seed = bref.seed;
  const std::uint64_t first = bref.first;
  const auto idx = idx_;
  if (!spec_.epochs) {
    const std::uint32_t step = static_cast<std::uint32_t>(bref.step);
    Kokkos::parallel_for(
        "bf::nhf_minibatch", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          // Minibatch by global index, with replacement: index ⌊u N⌋.
          const RngStream s(seed, Purpose::minibatch, step, first + static_cast<std::uint64_t>(i));
          std::int64_t k = static_cast<std::int64_t>(s.uniform(0) * static_cast<double>(N));
          idx(i) = k < N ? k : N - 1;
        });
    return;
  }
  // Epochs: global sample g of the run (step × batch + its index in the batch)
  // is point order_{g / N}[g mod N]; a batch of at most N spans two epochs at most.
  if (bref.global > N) throw std::logic_error("nhf: epoch minibatches need a batch of at most the data set");
  const std::int64_t g0 = bref.step * bref.global + static_cast<std::int64_t>(first), e0 = g0 / N;
  if (order_epoch_ != e0 || order_seed_ != seed) {
    auto h = Kokkos::create_mirror_view(order_);
    for (int r = 0; r < 2; ++r) {
      const auto o = epoch_order(seed, e0 + r, N);
      for (std::int64_t i = 0; i < N; ++i) h(r, i) = o[static_cast<std::size_t>(i)];
    }
    Kokkos::deep_copy(order_, h);
    order_epoch_ = e0;
    order_seed_ = seed;
  }
  const auto order = order_;
  Kokkos::parallel_for(
      "bf::nhf_minibatch_epochs", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t g = g0 + i;
        idx(i) = order(g / N - e0, g % N);
      });
}

template <class T>
std::vector<std::int64_t> NhfFlow<T>::minibatch_indices(const BatchRef& bref) {
  if (!spec_.elbo) throw std::logic_error("nhf: minibatches exist only for train.loss = elbo");
  if (bref.count > max_batch_) throw std::logic_error("nhf: batch larger than the workspace");
  select_minibatch(bref);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), idx_);
  return std::vector<std::int64_t>(h.data(), h.data() + bref.count);
}

template <class T>
double NhfFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& bref,
                                 const Collective&) {
  const int n = bref.count, D = dim_;
  if (n > max_batch_) throw std::logic_error("nhf: batch larger than the workspace");
  const T dt = static_cast<T>(spec_.time / spec_.steps);
  const Rows<T> q = head_rows(q_, n), p = head_rows(p_, n), a = head_rows(a_, n), b = head_rows(b_, n), mu = head_rows(mu_v_, n),
                sig = head_rows(sig_v_, n), eps = head_rows(eps_, n);
  const Matrix<double> zd = Kokkos::subview(zd_, std::make_pair(0, n), Kokkos::ALL());
  // The start: positions from the prior (sampling) or the data set (density estimation).
  if (spec_.elbo) {
    select_minibatch(bref);
    const Matrix<double> data = data_;
    const auto idx = idx_;
    Kokkos::parallel_for(
        "bf::nhf_minibatch_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t k = idx(i);
          for (int j = 0; j < D; ++j) q(i, j) = static_cast<T>(data(k, j));
        });
  } else {
    prior_->sample(bref.seed, Purpose::base_sample, static_cast<std::uint32_t>(bref.step), bref.first, zd);
    Kokkos::parallel_for(
        "bf::nhf_q0", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          q(i, j) = static_cast<T>(zd(i, j));
        });
  }
  standard_normals<T>(bref.seed, Purpose::momentum, bref.step, bref.first, n, D, eps_);
  encode(params, n, q, mu, sig);
  // p = μ + σ ε at the encoder's end; log f there (without −D/2 log 2π, which cancels).
  Vector<T> lf = Kokkos::subview(e_, std::make_pair(0, n));
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
  const T h = spec_.elbo ? -dt : dt;
  integrate(params, n, q, p, h, true);
  // The end energy: f (sampling) or the prior's (density estimation); gradient into b.
  const Matrix<T> bm = Kokkos::subview(b_, std::make_pair(0, n), Kokkos::ALL());
  double loss = 0;
  {
    const Vector<T> ee = Kokkos::subview(e2_, std::make_pair(0, n));
    (spec_.elbo ? *prior_ : target_).energy_grad(ConstMatrix<T>(q), ee, bm);
    const T lz = spec_.elbo ? static_cast<T>(prior_->log_z()) : T(0);
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
  adjoint(params, grad, n, b, a, h);
  // Encoder: μ̄ = p̄, σ̄ = p̄ ε − 1/σ (from log f).
  const Rows<T> mubar = head_rows(gp_, n), sigbar = head_rows(tmp_, n);
  Kokkos::parallel_for(
      "bf::nhf_encoder_bar", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / D;
        const int j = static_cast<int>(e - i * D);
        mubar(i, j) = a(i, j);
        sigbar(i, j) = a(i, j) * eps(i, j) - T(1) / sig(i, j);
      });
  // The encoder's cache is from encode() above: nothing ran it since.
  encode_reverse(params, grad, n, mubar, sigbar);
  return loss;
}

template <class T>
void NhfFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                        std::uint64_t first, const Matrix<double>& xout, const Vector<double>& log_q) {
  const int D = dim_, total = static_cast<int>(xout.extent(0));
  const T dt = static_cast<T>(spec_.time / spec_.steps);
  const T lz0 = static_cast<T>(prior_->log_z());
  const bool elbo = spec_.elbo;
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    const std::uint64_t f0 = first + static_cast<std::uint64_t>(c0);
    const Rows<T> q = head_rows(q_, n), p = head_rows(p_, n), mu = head_rows(mu_v_, n), sig = head_rows(sig_v_, n),
                  eps = head_rows(eps_, n);
    const Matrix<double> zd = Kokkos::subview(zd_, std::make_pair(0, n), Kokkos::ALL());
    prior_->sample(seed, purpose, static_cast<std::uint32_t>(step), f0, zd);
    standard_normals<T>(seed, momentum_purpose(purpose), step, f0, n, D, eps_);
    Kokkos::parallel_for(
        "bf::nhf_sample_q0", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          q(i, j) = static_cast<T>(zd(i, j));
        });
    Vector<T> e0 = Kokkos::subview(e_, std::make_pair(0, n));
    prior_->energy(ConstMatrix<T>(q), e0);
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
      integrate(params, n, q, p, dt, false);
      encode(params, n, q, mu, sig);
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
      encode(params, n, q, mu, sig);
      Kokkos::parallel_for(
          "bf::nhf_sample_p0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = -e0(i) - lz0;
            for (int j = 0; j < D; ++j) {
              p(i, j) = mu(i, j) + sig(i, j) * eps(i, j);
              l -= kmath::log(sig(i, j)) + T(0.5) * eps(i, j) * eps(i, j);
            }
            lq(i) = static_cast<double>(l);
          });
      integrate(params, n, q, p, dt, false);
      Kokkos::parallel_for(
          "bf::nhf_sample_lq", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            T l = T(0);
            for (int j = 0; j < D; ++j) l += T(0.5) * p(i, j) * p(i, j);
            lq(i) += static_cast<double>(l);
          });
    }
    Kokkos::parallel_for(
        "bf::nhf_sample_out", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          xout(c0 + i, j) = static_cast<double>(q(i, j));
        });
  }
}

template <class T>
std::vector<double> NhfFlow<T>::potential(const Vector<T>& params, const std::vector<double>& points) {
  const int D = dim_, total = static_cast<int>(points.size()) / D;
  std::vector<double> out(total);
  auto hq = Kokkos::create_mirror_view(q_);
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < D; ++j) hq(i, j) = static_cast<T>(points[static_cast<std::size_t>(c0 + i) * D + j]);
    Kokkos::deep_copy(q_, hq);
    const Rows<const T> v = v_->forward(params, wv_, n, 0, rows_of<const T>(q_, 0, n), false);
    auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    for (int i = 0; i < n; ++i) out[c0 + i] = static_cast<double>(hv(i, 0));
  }
  return out;
}

template <class T>
std::vector<double> NhfFlow<T>::mass_matrix(const Vector<T>& params) const {
  if (k_) return {};
  const int D = dim_;
  auto hp = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), params);
  auto Lh = [&](int r, int c) -> double {
    if (c > r) return 0.0;
    const double v = static_cast<double>(hp(mass_.offset + static_cast<std::size_t>(r) * D + c));
    return r == c ? std::exp(v) : v;
  };
  std::vector<double> M(static_cast<std::size_t>(D) * D, 0.0);
  for (int r = 0; r < D; ++r)
    for (int c = 0; c < D; ++c)
      for (int k = 0; k < D; ++k) M[r * D + c] += Lh(r, k) * Lh(c, k);
  return M;
}

template <class T>
void NhfFlow<T>::leapfrog(const Vector<T>& params, std::vector<double>& qv, std::vector<double>& pv, double dt) {
  const int D = dim_, n = static_cast<int>(qv.size()) / D;
  auto hq = Kokkos::create_mirror_view(q_);
  auto hp = Kokkos::create_mirror_view(p_);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) hq(i, j) = static_cast<T>(qv[i * D + j]), hp(i, j) = static_cast<T>(pv[i * D + j]);
  Kokkos::deep_copy(q_, hq);
  Kokkos::deep_copy(p_, hp);
  integrate(params, n, head_rows(q_, n), head_rows(p_, n), static_cast<T>(dt), false);
  Kokkos::deep_copy(hq, q_);
  Kokkos::deep_copy(hp, p_);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) qv[i * D + j] = static_cast<double>(hq(i, j)), pv[i * D + j] = static_cast<double>(hp(i, j));
}

template class NhfFlow<float>;
template class NhfFlow<double>;

}  // namespace bf
