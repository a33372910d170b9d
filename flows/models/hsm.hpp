// Hamiltonian score matching (Holderrieth, Xu & Jaakkola 2024, the poster in
// shared/seeds/hamiltonian-score-matching-poster.txt), and denoising score
// matching as its baseline through the same force network.
//
// A force F_θ = −∇U_θ (U a scalar MLP, or ½ xᵀ A x with A = L Lᵀ) drives
// ẋ = v, v̇ = F_θ(x) from (x₀, v₀) ~ π ⊗ N(0, I), π the data. The poster's
// theorem: F_θ = ∇log π ⇔ the dynamics preserve π ⊗ N(0, I) ⇔ E[v_t | x_t] = 0
// for all t ≤ T. A velocity predictor V_φ(x, t) (a time mixture of MLPs of
// [x, t/T]) and
//   L(φ|θ) = E[‖V_φ(x_t, t)‖² − 2 V_φ(x_t, t)·v_t]                       (poster)
// give the Hamiltonian score discrepancy D(θ) = −min_φ L = E‖E[v_t | x_t]‖²,
// zero exactly at the score; training is max_θ min_φ L, alternating:
// `inner_steps` φ-steps, then one θ-step, each group with its own Adam.
// Discretely, with L kick-drift-kick leapfrog steps of h = T/L from x₀ ~ data,
//   ℓ = (1/L) Σ_{s=1..L} [‖V_φ(x_s, t_s)‖² − 2 V_φ(x_s, t_s)·v_s],  t_s = s h.
// The loss reported is L: it rises to 0⁻ as θ reaches the score, and −L
// estimates D (at the optimal φ).
// Gradients (derived here, checked against central differences in tests/test_hsm.cpp):
//   φ: one reverse pass of V over all L n states, output adjoint (2V − 2v_s)/L;
//   θ: θ ascends L, so the sources of −ℓ, ∂/∂x_s = −J_Vᵀ(2V − 2v_s)/L (V's input
//      adjoints, no weight gradient) and ∂/∂v_s = +2V/L, enter the leapfrog's
//      adjoint sweep at every state (Leapfrog::adjoint_with_sources), whose
//      Hessian-vector products of U accumulate ∂(−ℓ)/∂θ.
// Derived facts the tests check (not in the poster): E[v_t | x_t = x] =
// t (F_θ − ∇log π)(x) + O(t²); for π = N(0, Σ), F = −A x, D_t = tr(Σ_vx Σ_xx⁻¹ Σ_xv)
// in closed form; one leapfrog step h makes the optimum ω*²(1 − h²ω*²/4) = 1/σ².
//
// Denoising score matching (Vincent 2011), train.loss = dsm: y = x₀ + σ ε,
//   ℓ = ‖F_θ(y) + ε/σ‖² = ‖∇U(y) − ε/σ‖²,
// whose θ-gradient is the parameter adjoint of u·∇U(y) with u = 2(∇U − ε/σ) (one HVP pass).
// Its minimiser is the score of π * N(0, σ²), so its error has a floor at σ > 0.
//
// The product of both is the force, not a sampler: the model has no sample();
// evaluation reports the score error E_π‖F_θ − ∇log π‖² / E_π‖∇log π‖² on exact samples.
#pragma once

#include <memory>
#include <string>

#include "flows/model.hpp"
#include "flows/nn/time_mixture.hpp"

namespace bf {

/// The model's architecture and loss; whoever builds it sets every field (src/run/model_config.cpp; tests).
struct HsmSpec {
  bool quadratic_potential = false;  // U = ½ xᵀ A x, A = L Lᵀ (else an MLP)
  std::vector<int> hidden;           // U's MLP and each MLP of V_φ
  Activation activation = Activation::identity;
  int kernels = 0;                   // V_φ: RBF time kernels
  bool time_input = false;           // V_φ: t/T as a network input too
  double output_gain = 0;            // V_φ: initial scale of the last layer
  int steps = 0;                     // leapfrog steps L
  double time = 0;                   // T = L h
  bool dsm = false;                  // denoising score matching (no V_φ, no leapfrog)
  double dsm_sigma = 0;              // its noise σ
  int inner_steps = 0;               // hsm: φ-steps per θ-step
  double inner_lr_scale = 0;         // hsm: φ's learning rate over θ's
  int dataset_size = 0;              // exact samples of the target the loss learns from
  bool epochs = false;               // minibatches in epochs (else with replacement)
};

namespace detail {
template <class T>
struct HsmImpl;
}

template <class T>
class HsmModel final : public Model<T>, public LearnedPotential<T> {
 public:
  HsmModel(const Distribution& target, const HsmSpec& spec, int max_batch, std::uint32_t seed);

  std::string kind() const override { return "hsm"; }
  std::string description() const override;
  const ParameterLayout& layout() const override;
  int dim() const override;
  int max_batch() const override;
  /// hsm: θ (U) updated once every inner_steps + 1 steps, at the last; φ (V) at the others.
  /// dsm: none (one Adam).
  std::vector<ParameterGroup> parameter_groups() const override;

  /// hsm: at a φ-step (step mod (k + 1) < k) Σ_i ℓ_i and ∂/∂φ; at a θ-step Σ_i ℓ_i and ∂(−Σ ℓ_i)/∂θ.
  /// dsm: Σ_i ℓ_i and its θ-gradient. The other group's gradient is left as it is.
  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  /// Whether `step` is a θ-step (always for dsm).
  bool force_step(std::int64_t step) const;

  bool has_sampler() const override { return false; }
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;
  bool has_score() const override { return true; }
  /// f(i, :) = F_θ(x(i, :)) = −∇U(x(i, :)), in chunks of max_batch.
  void score(const Vector<T>& params, const ConstMatrix<double>& x, const Matrix<double>& f) override;

  LearnedPotential<T>* learned_potential() override { return this; }
  std::vector<double> potential(const Vector<T>& params, const std::vector<double>& points) override;
  std::vector<double> mass_matrix(const Vector<T>&) const override { return {}; }
  /// A = L Lᵀ of a quadratic potential, row-major D x D; empty for an MLP potential.
  std::vector<double> quadratic_matrix(const Vector<T>& params) const;
  /// V_φ(x, s/L) at the n rows of x (host, for tests).
  std::vector<double> velocity(const Vector<T>& params, const std::vector<double>& x, int s);

  const HsmSpec& spec() const;
  ~HsmModel() override;

 private:
  std::unique_ptr<detail::HsmImpl<T>> m_;
};

}  // namespace bf
