// Deformation-trajectory continuous normalizing flow (Máté & Fleuret 2023).
//
//   interpolation   f_t = (1 − t) f0 + t f1 [+ t(1 − t) g_t]      (linear [trainable])
//   trajectories    dx/dt = V_t(x), x(0) = z ~ p0,  d log q/dt = −∇·V_t(x)
//   error           E = ∂_t f_t + ⟨∇f_t, V_t⟩ − ∇·V_t + C_t
//   loss            mean_z w(z) (1/S) Σ_s L(E(x_s, t_s)),  L(E) = |E| + E²
//   baseline        reverse KL, mean_z [log q(x_1) + f1(x_1)], gradients through the trajectory
//
// V_t, g_t and C_t are time mixtures of MLPs (TimeMixture, swish); the
// divergence is exact (D axis tangents); g carries one tangent, along the flow
// (V, 1), whose output ∂_t g + ⟨∇g, V⟩ is all the error needs of g. The deformation loss stops gradients through the positions (the
// error is a pointwise PDE residual), as the authors' code does; trajectory
// weights are 1 by default, the per-batch normalised importance weights of
// Eq. 9 an option: early in training the normalised weights put nearly all the
// mass on one to three trajectories of a batch of 256, and with them gmm4 was still
// not covered after many steps (the authors' code uses w = 1).
//
// Integrator: Rk4 (flows/integrators/rk4.hpp) on the augmented state (x, log q),
// N steps of h = 1/N, N + 1 points t_n = n h, log q_{n+1} = log q_n − ∫∇·V.
// The reverse-KL gradient is Rk4's exact discrete adjoint. Its forward pass
// evaluates V alone (no divergence) and stores the 4 N stage points (O(N B D)
// numbers, no network activations); the adjoint re-runs each stage with the D
// axis tangents, which gives both the network's context for its reverse pass
// and the stage's share of ∫ ∇·V dt, so the loss is known when the sweep ends.
#pragma once

#include <memory>

#include "flows/model.hpp"
#include "flows/nn/time_mixture.hpp"

namespace bf {

namespace detail {
template <class T>
struct CnfImpl;
}

/// The flow's architecture. No defaults of its own: whoever builds the flow
/// sets every field (the program from its settings, src/run/model_config.cpp;
/// tests explicitly); the zero values are not a usable flow.
struct CnfSpec {
  int kernels = 0;
  std::vector<int> hidden;
  Activation activation = Activation::identity;
  bool time_input = false;
  bool trainable = false;                 // trainable interpolation g_t
  std::vector<int> g_hidden;
  std::vector<int> c_hidden;
  int steps = 0;                          // RK4 steps (steps + 1 trajectory points)
  bool deformation = false;               // false: reverse-KL baseline
  bool importance_weights = false;        // Eq. 9 weights (per-batch normalised)
  int time_chunk = 0;                     // trajectory points evaluated at once in the loss
  double output_gain = 0;                 // init scale of V's last layer
  int train_batch = 0;                    // largest loss batch (0: max_batch); the loss
                                          // buffers scale with it, sampling ones with max_batch
};

/// The terms of the deformation error at points x (n x D) and one time t.
struct DeformationTerms {
  std::vector<double> f, dt_f, grad_f, div_v, c, v, e;  // per sample ([n]; grad_f and v [n x D])
};

template <class T>
class CnfFlow final : public Model<T> {
 public:
  CnfFlow(const Distribution& target, std::shared_ptr<const Distribution> base, const CnfSpec& spec, int max_batch);

  std::string kind() const override { return "cnf"; }
  std::string description() const override;
  const ParameterLayout& layout() const override;
  int dim() const override;
  int max_batch() const override;
  void initialize(const Vector<T>& params, std::uint32_t seed) const override;

  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;
  bool has_log_density() const override { return true; }
  void log_density(const Vector<T>& params, const ConstMatrix<double>& x, const Vector<double>& log_q) override;

  /// The error terms at (x, t) for tests and diagnostics (host copies).
  DeformationTerms terms(const Vector<T>& params, const std::vector<double>& x, double t);
  /// Integrates n ≤ max_batch points z forward (t: 0 → 1) or backward (1 → 0), returning
  /// the end points and ∫ ∇·V dt along the path (host copies, for tests).
  void integrate(const Vector<T>& params, std::vector<double>& x, std::vector<double>& div_integral, bool backward);

  /// The deformation loss and its gradient on the trajectory points of the
  /// last loss_and_grad call (weights held too): the loss as a function of the
  /// parameters with the positions fixed, which is what the deformation
  /// gradient differentiates (positions carry no gradient). For tests.
  double deformation_loss_on_last_trajectory(const Vector<T>& params, const Vector<T>& grad);

  /// Host copy of the trajectory point n (0 … steps) of the last deformation-loss call ([count x D]).
  std::vector<double> last_trajectory_point(int n) const;

  const CnfSpec& spec() const;
  ~CnfFlow() override;

 private:
  std::unique_ptr<detail::CnfImpl<T>> m_;  // networks, buffers and kernels (flows/models/cnf_impl.hpp)
};

}  // namespace bf
