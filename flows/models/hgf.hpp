// Hamiltonian generative flows (Holderrieth, Xu & Jaakkola 2024, the poster in
// shared/seeds/hamiltonian-score-matching-poster.txt).
//
// A force F and a coupling Π(x₀, v₀) whose x-marginal is the data give paths
// (x_t, v_t); the velocity V*(x, t) = E[v_t | x_t = x] satisfies the continuity
// equation of x_t (poster), so V_φ is learned by regression,
//   ℓ = E_{t ~ U[0, T], (x₀, ε)} ‖V_φ(x_t, t) − v_t‖²,
// and samples are drawn as x_T ~ p_T, integrated along dx/dt = V_φ from T back
// to 0 with RK4 and the exact divergence, so log q comes with them:
//   log q(x₀) = log p_T(x_T) + ∫_0^T ∇·V_φ(x_t, t) dt.
// The paths are simulation-free, x_t = α(t) x₀ + β(t) ε and v_t = α̇ x₀ + β̇ ε with ε ~ N(0, I):
//   flow_matching  F = 0, v₀ = ε − x₀:        α = 1 − t, β = t, T = 1, x_T = ε ~ N(0, I)
//   oscillation    F = −ω² x, v₀ = σ_v ε:      α = cos ωt, β = (σ_v/ω) sin ωt, T = π/(2ω),
//                                              x_T = v₀/ω ~ N(0, (σ_v/ω)² I)
//   diffusion      F = 0, v₀ = ε:               α = 1, β = t, T given; x_T is only approximately
//                                              N(mean, T² + Var) (the data set's per-axis moments;
//                                              the poster: "does not converge in finite time")
// (The paths are the poster's; the α, β forms and the diffusion end's Gaussian are ours.)
// V_φ is a time mixture of MLPs (as the CNF's V) of [x, t/T]; or, for Gaussian-mixture
// targets, the closed form V* (GaussianMixture::path_velocity; `exact`, no parameters).
#pragma once

#include <memory>
#include <string>

#include "flows/model.hpp"
#include "flows/nn/time_mixture.hpp"

namespace bf {

enum class PathKind { flow_matching, oscillation, diffusion };

/// The path coefficients α(t), β(t) and their time derivatives (device-copyable).
struct HamiltonianPath {
  PathKind kind = PathKind::flow_matching;
  double omega = 1.0;    // oscillation: frequency ω
  double sigma_v = 1.0;  // oscillation: initial velocity scale σ_v
  double time = 3.0;     // diffusion: end time T

  KOKKOS_INLINE_FUNCTION double end_time() const {
    return kind == PathKind::flow_matching ? 1.0 : kind == PathKind::oscillation ? 0.5 * 3.14159265358979323846 / omega : time;
  }
  /// c = (α, β, α̇, β̇) at t.
  KOKKOS_INLINE_FUNCTION void coefficients(double t, double* c) const {
    if (kind == PathKind::flow_matching) {
      c[0] = 1.0 - t, c[1] = t, c[2] = -1.0, c[3] = 1.0;
    } else if (kind == PathKind::oscillation) {
      const double co = kmath::cos(omega * t), si = kmath::sin(omega * t);
      c[0] = co, c[1] = sigma_v / omega * si, c[2] = -omega * si, c[3] = sigma_v * co;
    } else {
      c[0] = 1.0, c[1] = t, c[2] = 0.0, c[3] = 1.0;
    }
  }
};

PathKind parse_path(const std::string& name);
std::string path_name(PathKind kind);

/// The flow's architecture; whoever builds it sets every field (src/run/model_config.cpp; tests).
struct HgfSpec {
  HamiltonianPath path;
  bool exact_velocity = false;  // V* in closed form (Gaussian-mixture targets), no parameters
  int kernels = 0;
  std::vector<int> hidden;
  Activation activation = Activation::identity;
  bool time_input = false;
  double output_gain = 0;
  int steps = 0;                // RK4 steps over [0, T]
  int dataset_size = 0;         // exact samples of the target the loss learns from
  bool epochs = false;          // minibatches in epochs (else with replacement)
};

namespace detail {
template <class T>
struct HgfImpl;
}

template <class T>
class HgfFlow final : public Model<T> {
 public:
  HgfFlow(const Distribution& target, const HgfSpec& spec, int max_batch, std::uint32_t seed);

  std::string kind() const override { return "hgf"; }
  std::string description() const override;
  const ParameterLayout& layout() const override;
  int dim() const override;
  int max_batch() const override;

  /// Σ_i ‖V_φ(x_t, t) − v_t‖² over this rank's samples (t = T u, u ~ U(0, 1), x₀ from the
  /// data set, ε ~ N(0, I), all by global sample index); gradient by one reverse pass of V.
  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;
  bool has_log_density() const override { return true; }
  void log_density(const Vector<T>& params, const ConstMatrix<double>& x, const Vector<double>& log_q) override;

  /// V(x, t) and ∇·V at n ≤ max_batch points (host copies, for tests): v [n x D], div [n].
  void velocity(const Vector<T>& params, const std::vector<double>& x, double t, std::vector<double>& v,
                std::vector<double>& div);
  /// log p_T of the path's end at n points (host, for tests).
  std::vector<double> end_log_density(const std::vector<double>& x) const;
  const HgfSpec& spec() const;
  ~HgfFlow() override;

 private:
  std::unique_ptr<detail::HgfImpl<T>> m_;
};

}  // namespace bf
