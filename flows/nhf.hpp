// Neural Hamiltonian Flows (Toth et al. 2020; Souveton et al. 2024), in phase
// space (q, p) ∈ R^D × R^D with H(q, p) = V(q) + K(p).
//
//   encoder    f(p | q) = N(p; μ(q), diag σ(q)²), μ, σ MLPs (D, H, H, D), σ = softplus(·) > 0
//   potential  V = MLP (D, H, H, 1), smooth activation
//   kinetic    K = MLP (D, H, H, 1) ("mlp"), or ½ pᵀ M p with M = L Lᵀ, L lower-triangular
//              with positive diagonal exp(l_ii) ("fixed"; D(D+1)/2 parameters)
//   leapfrog   p_h = p − (dt/2) ∇V(q);  q' = q + dt ∇K(p_h);  p' = p_h − (dt/2) ∇V(q'),
//              L steps of dt = T/L, volume-preserving and reversible (dt → −dt)
//
// Losses:
//   elbo (density estimation from samples, Eq. 4): q_T from data, p_T ~ f(·|q_T),
//     (q_0, p_0) by the leapfrog backwards; ℓ = −log π0(q_0) − log N(p_0; 0, I) + log f(p_T|q_T)
//   reverse_kl (sampling an energy or posterior, Eq. 6): q_0 ~ π0, p_0 ~ f(·|q_0),
//     (q_T, p_T) forwards; ℓ = log f(p_0|q_0) + f(q_T) − log g(p_T), g = N(0, I)
// Importance weights live on phase space. For the sampler (reverse_kl)
//   log w = −f(q_T) + log g(p_T) − log π0(q_0) − log f(p_0|q_0),
// and for the density model, sampling (q_0, p_0) ~ π0 × N(0, I) forwards,
//   log w = −f(q_T) + log f(p_T|q_T) − log π0(q_0) − log N(p_0),
// both with E[w] = Z; sample() reports log q := −f(q_T) − log w, so the metric
// suite applies unchanged.
//
// Gradients: the exact discrete adjoint of the leapfrog. The states of the
// forward pass (L + 1 positions and L half-kick momenta: O(L B D) numbers, no
// network activations) are stored. The forward pass takes ∇V and ∇K by
// reverse mode (a forward and an input-adjoint pass of B rows, whatever D);
// each adjoint step runs the network at a stored point with one tangent, the
// adjoint direction u, and takes the Hessian-vector product H u and the
// parameter gradient of u·∇E from one reverse pass (2 B rows, whatever D). The
// two half kicks that meet at an interior position share one HVP.
#pragma once

#include <memory>

#include "flows/mlp.hpp"
#include "flows/model.hpp"

namespace bf {

struct NhfSpec {
  std::vector<int> hidden{128, 128};
  Activation activation = Activation::softplus;
  bool fixed_kinetic = false;
  int steps = 10;        // leapfrog steps L
  double time = 1.0;     // integration time T = L dt
  bool elbo = true;      // density estimation from samples; false: reverse KL (sampling)
  int dataset_size = 5000;
  // elbo minibatches: false, each point drawn uniformly with replacement; true,
  // epochs: a fresh random order of the data set per epoch, consecutive
  // samples (over steps and ranks) taking consecutive points of it, so every
  // point is used once per epoch (Souveton et al.'s training). Needs the global
  // batch to be at most the data set.
  bool epochs = false;
};

template <class T>
class NhfFlow final : public Model<T> {
 public:
  /// `seed` draws the data set (elbo) from the target's exact sampler.
  NhfFlow(const Distribution& target, std::shared_ptr<const Distribution> prior, const NhfSpec& spec, int max_batch,
          std::uint32_t seed);

  std::string kind() const override { return "nhf"; }
  std::string description() const override;
  const ParameterLayout& layout() const override { return layout_; }
  int dim() const override { return dim_; }
  int max_batch() const override { return max_batch_; }
  void initialize(const Vector<T>& params, std::uint32_t seed) const override;

  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;

  /// V at n points (rows of D numbers, host), for maps of the learned potential.
  std::vector<double> potential(const Vector<T>& params, const std::vector<double>& points);
  /// The mass matrix M = L Lᵀ (fixed kinetic), row-major D x D; empty for an MLP kinetic energy.
  std::vector<double> mass_matrix(const Vector<T>& params) const;
  /// Runs the leapfrog on host points (n x D positions and momenta) with dt (sign: direction);
  /// for tests of reversibility and volume preservation.
  void leapfrog(const Vector<T>& params, std::vector<double>& q, std::vector<double>& p, double dt);

  const NhfSpec& spec() const { return spec_; }
  /// The data-set rows (elbo) the samples of `batch` start from, as the loss draws them.
  std::vector<std::int64_t> minibatch_indices(const BatchRef& batch);

  // The implementation. Public only because CUDA forbids extended (device)
  // lambdas in private or protected member functions; not part of the interface.
  // ∇V at rows q [n x D] into g (reverse mode, no parameter gradient); ∇K likewise at p.
  void grad_v(const Vector<T>& params, int n, const Rows<const T>& q, const Rows<T>& g);
  void grad_k(const Vector<T>& params, int n, const Rows<const T>& p, const Rows<T>& g);
  // At rows q (V) or p (K): hu += c H u and grad += c ∂(u·∇E)/∂θ (one tangent along u).
  void hvp_v(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& q,
             const Rows<const T>& u, const Rows<T>& hu);
  void hvp_k(const Vector<T>& params, const Vector<T>& grad, int n, T c, const Rows<const T>& u, const Rows<T>& hu,
             const Rows<const T>& p);
  // Leapfrog from (q, p) [n x D] in place with step dt; stores Q [(L+1) n x D] and PH [L n x D] when store.
  void integrate(const Vector<T>& params, int n, const Rows<T>& q, const Rows<T>& p, T dt, bool store);
  // Adjoint of the stored integration: (b = q̄, a = p̄) at the end → at the start; θ̄ into grad.
  void adjoint(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& b, const Rows<T>& a, T dt);
  // Encoder at rows q: μ and σ into mu, sigma (and the raw σ output kept for the reverse).
  void encode(const Vector<T>& params, int n, const Rows<const T>& q, const Rows<T>& mu, const Rows<T>& sigma);
  // The data-set rows of this rank's samples of `batch` into idx_ (elbo).
  void select_minibatch(const BatchRef& batch);
  // Encoder reverse: adjoints of μ and σ → parameter gradients.
  void encode_reverse(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& mu_bar,
                      const Rows<T>& sigma_bar);

 private:
  const Distribution& target_;
  std::shared_ptr<const Distribution> prior_;
  NhfSpec spec_;
  int dim_, max_batch_;
  ParameterLayout layout_;
  std::unique_ptr<Mlp<T>> v_, k_, mu_, sig_;
  ParamSlice mass_;  // fixed kinetic: L (D x D, lower triangle, log diagonal)
  typename Mlp<T>::Workspace wv_, wk_, wmu_, wsig_;
  Matrix<double> data_, zd_;
  Kokkos::View<std::int64_t*, MemSpace> idx_;     // data-set row of each sample of the batch
  Kokkos::View<std::int64_t**, MemSpace> order_;  // epochs: the data set's order in epochs order_epoch_, + 1
  std::int64_t order_epoch_ = -1;
  std::uint32_t order_seed_ = 0;
  Matrix<T> vrows_, krows_, vadj_, kadj_, vin_, kin_;       // network rows and adjoints
  Matrix<T> q_, p_, gq_, gp_, qs_, phs_, a_, b_, tmp_, mu_v_, sig_v_, eps_, enc_in_;
  Vector<T> e_, e2_;
};

}  // namespace bf
