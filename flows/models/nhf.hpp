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
// Equivariant Hamiltonian flows (Rezende, Racanière, Higgins & Toth 2019): with
// linear symmetry generators g_k = pᵀB_k q (physics/symmetry.hpp) the loss gains
// the constraint penalty Σ_k λ_k (E[c_k²] − κ), c_k = {g_k, H} = (B_kᵀp)·∇K(p) −
// (B_k q)·∇V(q), on the batch's own start positions (the data for elbo, the
// prior's draws for reverse_kl), on fresh draws of the prior, or on the batch's start
// positions each moved along its orbit by a random group element (SymmetryPoints), with
// fresh momenta p ~ N(0, I). If every c_k and
// {g_k, π0} vanish, the flow is equivariant and its density invariant (their
// Lemma 1). θ-gradient: 2 λ_k c_k ∂c_k/∂θ, which is one HVP pass of each network
// with u = Σ_k 2λ_k c_k B_kᵀp (K) and −Σ_k 2λ_k c_k B_k q (V) (the positions and
// momenta carry no gradient). λ by the GECO update (Rezende & Viola 2018):
//   Ĉ_k = E_batch[c_k²] − κ (over the global batch), C_ma ← 0.99 C_ma + 0.01 Ĉ
//   (C_ma starts at the first Ĉ), λ_k ← λ_k exp(η C_ma) with |η C_ma| ≤ 0.1 per step,
//   λ_k ∈ [1e−6, 1e6], λ₀ = 1; λ held at λ₀ before training step symmetry_warmup (ours: C_ma
//   starts at the random networks' violation and would drive λ far past what is needed).
// The seed's equation is garbled at this point; this form is a reconstruction.
// GECO's loss λ(Ĉ + stopgrad(C_ma − Ĉ)) has the gradient used here; the loss
// reported is −ELBO (or the reverse KL) + Σ λ_k Ĉ_k, whose gradient it is (metrics.jsonl
// has the penalty Σ λ_k Ĉ_k on its own as symmetry_penalty).
//
// Gradients: the exact discrete adjoint of the Leapfrog (flows/integrators/leapfrog.hpp).
// The states of the forward pass (L + 1 positions and L half-kick momenta:
// O(L B D) numbers, no network activations) are stored. The forward pass takes ∇V and ∇K by
// reverse mode (a forward and an input-adjoint pass of B rows, whatever D);
// each adjoint step runs the network at a stored point with one tangent, the
// adjoint direction u, and takes the Hessian-vector product H u and the
// parameter gradient of u·∇E from one reverse pass (2 B rows, whatever D). The
// two half kicks that meet at an interior position share one HVP.
#pragma once

#include <memory>

#include "flows/nn/mlp.hpp"
#include "flows/model.hpp"
#include "physics/symmetry.hpp"

namespace bf {

/// Where the symmetry penalty's positions come from (NhfSpec::symmetry_points).
enum class SymmetryPoints { start, prior, orbit };
const char* symmetry_points_name(SymmetryPoints p);

namespace detail {
template <class T>
struct NhfImpl;
}

/// The flow's architecture. No defaults of its own: whoever builds the flow
/// sets every field (the program from its settings, src/run/model_config.cpp;
/// tests explicitly); the zero values are not a usable flow.
struct NhfSpec {
  std::vector<int> hidden;
  Activation activation = Activation::identity;
  bool fixed_kinetic = false;
  int steps = 0;         // leapfrog steps L
  double time = 0;       // integration time T = L dt
  bool elbo = false;     // density estimation from samples; false: reverse KL (sampling)
  int dataset_size = 0;
  // elbo minibatches: false, each point drawn uniformly with replacement; true,
  // epochs: a fresh random order of the data set per epoch, consecutive
  // samples (over steps and ranks) taking consecutive points of it, so every
  // point is used once per epoch (Souveton et al.'s training). Needs the global
  // batch to be at most the data set.
  bool epochs = false;
  // The symmetry constraint (empty generators: none): κ and the GECO rate η.
  Generators symmetry;
  double symmetry_tolerance = 0;
  double symmetry_rate = 0;
  // GECO's multipliers stay at their value before this training step (the moving average runs):
  // it forgets the random networks' first violations before λ follows it.
  std::int64_t symmetry_warmup = 0;
  // Where the penalty is evaluated: the batch's start positions (the data for elbo, the
  // prior's draws for reverse_kl), fresh draws of the prior of their own, or the start
  // positions moved along their orbits by random group elements (GroupAction, angles
  // uniform on [−π, π) per generator): for an invariant target, more of its samples.
  SymmetryPoints symmetry_points = SymmetryPoints::start;
};

template <class T>
class NhfFlow final : public Model<T>, public LearnedPotential<T> {
 public:
  /// `seed` draws the data set (elbo) from the target's exact sampler.
  NhfFlow(const Distribution& target, std::shared_ptr<const Distribution> prior, const NhfSpec& spec, int max_batch,
          std::uint32_t seed);

  std::string kind() const override { return "nhf"; }
  std::string description() const override;
  const ParameterLayout& layout() const override;
  int dim() const override;
  int max_batch() const override;
  void initialize(const Vector<T>& params, std::uint32_t seed) const override;

  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;

  bool phase_space() const override { return true; }
  /// The marginal estimate with K momenta. The proposal r(p|x) is the flow's
  /// momentum distribution on its output side: the encoder f(p|x) for density
  /// estimation (elbo), the auxiliary g = N(0, I) for the sampler (reverse_kl);
  /// each is what the loss fits to the flow's conditional of p given x. M(x, p)
  /// = π0(q0) N(p0; 0, I) (elbo) or π0(q0) f(p0|q0) (sampler), with (q0, p0) the
  /// leapfrog run backwards from (x, p) (volume-preserving: no Jacobian).
  void marginal_log_density(const Vector<T>& params, const ConstMatrix<double>& x, int momentum_samples,
                            std::uint32_t seed, std::int64_t stream, std::uint64_t first,
                            const Vector<double>& log_q) override;
  LearnedPotential<T>* learned_potential() override { return this; }
  /// V at n points (rows of D numbers, host), for maps of the learned potential.
  std::vector<double> potential(const Vector<T>& params, const std::vector<double>& points) override;
  /// ∇V at n ≤ max_batch points by reverse mode, as the leapfrog takes it (host; for tests).
  std::vector<double> potential_gradient(const Vector<T>& params, const std::vector<double>& points);
  /// The mass matrix M = L Lᵀ (fixed kinetic), row-major D x D; empty for an MLP kinetic energy.
  std::vector<double> mass_matrix(const Vector<T>& params) const override;
  /// Runs the leapfrog on host points (n x D positions and momenta) with dt (sign: direction);
  /// for tests of reversibility and volume preservation.
  void leapfrog(const Vector<T>& params, std::vector<double>& q, std::vector<double>& p, double dt);

  /// The constraint's state: λ_1..K, C_ma 1..K, and whether C_ma has started (1/0).
  std::vector<double> state() const override;
  void set_state(const std::vector<double>& s) override;
  /// The GECO update with the Ĉ of the last loss_and_grad.
  void end_step() override;
  /// symmetry_lambda, symmetry_constraint (the batch's E[c²]), symmetry_constraint_ma (C_ma + κ) (_k suffixed
  /// if K > 1), and symmetry_penalty Σ_k λ_k Ĉ_k (the loss's part that is the penalty).
  std::vector<std::pair<std::string, double>> step_figures() const override;
  int symmetry_generators() const override;
  void symmetry_bracket(const Vector<T>& params, const ConstMatrix<double>& x, std::uint32_t seed,
                        std::int64_t stream, std::uint64_t first, const Matrix<double>& c) override;
  /// K at n host points (rows of D numbers; the MLP or ½pᵀMp), for tests.
  std::vector<double> kinetic(const Vector<T>& params, const std::vector<double>& points);

  const NhfSpec& spec() const;
  /// The data-set rows (elbo) the samples of `batch` start from, as the loss draws them.
  std::vector<std::int64_t> minibatch_indices(const BatchRef& batch);
  ~NhfFlow() override;

 private:
  std::unique_ptr<detail::NhfImpl<T>> m_;  // networks, buffers and kernels (flows/models/nhf_impl.hpp)
};

}  // namespace bf
