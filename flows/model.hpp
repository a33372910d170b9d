// What the runner trains: a flow with one flat parameter buffer, a loss whose
// per-sample terms and parameter gradients it computes on a rank's share of
// the global batch, and samples with their log density for evaluation.
//
// Models know nothing of MPI: where a loss needs a batch-wide quantity (the
// normalised trajectory weights of Máté Eq. 9, say) it asks the Collective
// the runner hands in. Sample i of step s always draws its noise from
// Philox(seed, purpose, s, i) with i the *global* index, so results do not
// depend on how the batch is split.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "flows/nn/parameters.hpp"
#include "physics/distribution.hpp"

namespace bf {

/// Batch-wide sums across the processes sharing a batch (MPI in the runner;
/// the identity in a single process).
struct Collective {
  virtual ~Collective() = default;
  virtual void sum(double* values, int n) const = 0;
  virtual void max(double* values, int n) const = 0;
};

/// The collective of a single process.
struct LocalCollective final : Collective {
  void sum(double*, int) const override {}
  void max(double*, int) const override {}
};

/// Where a model's samples in a batch come from.
struct BatchRef {
  std::uint32_t seed = 0;
  std::int64_t step = 0;       // training step (counter of the noise)
  std::uint64_t first = 0;     // global index of this rank's first sample
  int count = 0;               // this rank's samples
  std::int64_t global = 0;     // samples in the whole batch

  /// A whole batch of `count` samples held by one rank.
  static BatchRef one_rank(std::uint32_t seed, std::int64_t step, std::uint64_t first, int count) {
    return BatchRef{seed, step, first, count, count};
  }
};

/// A learned scalar potential V(x), with the mass matrix of a quadratic
/// kinetic energy if it has one: what a run maps beside its checkpoint
/// (the NHF potential, src/run/potential_map.cpp).
template <class T>
struct LearnedPotential {
  virtual ~LearnedPotential() = default;
  /// V at n points (rows of dim numbers, host).
  virtual std::vector<double> potential(const Vector<T>& params, const std::vector<double>& points) = 0;
  /// M, row-major dim x dim; empty if the kinetic energy is not quadratic.
  virtual std::vector<double> mass_matrix(const Vector<T>& params) const = 0;
};

template <class T>
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string kind() const = 0;
  /// One line describing the architecture, for logs and checkpoints.
  virtual std::string description() const = 0;
  virtual const ParameterLayout& layout() const = 0;
  virtual int dim() const = 0;
  /// Largest per-rank batch the workspaces were sized for.
  virtual int max_batch() const = 0;

  /// The parts of the buffer trained by their own Adam, and when (ParameterGroup);
  /// empty: one Adam over everything at every step.
  virtual std::vector<ParameterGroup> parameter_groups() const { return {}; }

  /// Initial parameters as a pure function of the seed.
  virtual void initialize(const Vector<T>& params, std::uint32_t seed) const {
    initialize_parameters(layout(), params, seed);
  }

  /// The training loss on this rank's samples: adds Σ_i ∂ℓ_i/∂θ into grad and
  /// returns Σ_i ℓ_i (the runner divides both by the global batch size).
  virtual double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                               const Collective& coll) = 0;

  /// x(r, :) ~ q_θ for global samples first .. first + count − 1 and log q_θ(x).
  virtual void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                      std::uint64_t first, const Matrix<double>& x, const Vector<double>& log_q) = 0;

  /// Whether sample() draws from the model (false: a score model, which has score()).
  virtual bool has_sampler() const { return true; }
  /// Whether the model learns a force F_θ ≈ ∇log π (score matching), evaluated by score().
  virtual bool has_score() const { return false; }
  /// f(i, :) = F_θ(x(i, :)), the learned score, at given points.
  virtual void score(const Vector<T>& params, const ConstMatrix<double>& x, const Matrix<double>& f);

  /// Whether log q_θ can be evaluated at given points (forward KL/ESS).
  virtual bool has_log_density() const { return false; }
  virtual void log_density(const Vector<T>& params, const ConstMatrix<double>& x, const Vector<double>& log_q);

  /// Whether the flow lives on phase space (x, p) (NHF): sample()'s log q is
  /// then log M(x, p)/r(p|x) at the sample's own momentum p — the figures from
  /// it are phase-space figures — and marginal_log_density estimates log q(x).
  virtual bool phase_space() const { return false; }
  /// Phase-space flows: log q̂_K(x_i) = log mean_k M(x_i, p_k)/r(p_k|x_i) over
  /// K fresh momenta p_k ~ r(·|x_i), the momentum proposal of the flow's
  /// output side, drawn from Philox(seed, Purpose::marginal_momentum, stream,
  /// (first + i)·K + k). exp(log q̂_K) is unbiased for q(x), so E log q̂_K ≤ log q(x),
  /// rising to it as K grows.
  virtual void marginal_log_density(const Vector<T>& params, const ConstMatrix<double>& x, int momentum_samples,
                                    std::uint32_t seed, std::int64_t stream, std::uint64_t first,
                                    const Vector<double>& log_q);

  /// The model's learned potential, for the artifacts written after training; none by default.
  virtual LearnedPotential<T>* learned_potential() { return nullptr; }

  /// Optimiser state the model keeps beside the parameters, in double (the Lagrange
  /// multipliers of a constrained flow and their moving averages): written to the
  /// checkpoint, restored on resume, rolled back with the in-memory snapshots. Empty: none.
  virtual std::vector<double> state() const { return {}; }
  virtual void set_state(const std::vector<double>& s);
  /// After the update of a step (on every rank, with the same values): the model commits
  /// what that step's loss_and_grad measured (the multipliers' update). Never called by a
  /// bare loss_and_grad, so gradient checks see a fixed state.
  virtual void end_step() {}
  /// Figures of the last loss_and_grad for the step's row of metrics.jsonl (name, value).
  virtual std::vector<std::pair<std::string, double>> step_figures() const { return {}; }

  /// Symmetry-constrained flows: the number of generators K of the constraint (0: none), and
  /// c(i, k) = {g_k, H}(x_i, p_i), the Poisson bracket at the points x with momenta
  /// p_i ~ N(0, I) from Philox(seed, Purpose::symmetry_momentum, stream, first + i).
  virtual int symmetry_generators() const { return 0; }
  virtual void symmetry_bracket(const Vector<T>& params, const ConstMatrix<double>& x, std::uint32_t seed,
                                std::int64_t stream, std::uint64_t first, const Matrix<double>& c);
};

}  // namespace bf

namespace bf {
template <class T>
void Model<T>::log_density(const Vector<T>&, const ConstMatrix<double>&, const Vector<double>&) {
  throw std::logic_error(kind() + ": the density cannot be evaluated at given points");
}
template <class T>
void Model<T>::score(const Vector<T>&, const ConstMatrix<double>&, const Matrix<double>&) {
  throw std::logic_error(kind() + ": not a score model");
}
template <class T>
void Model<T>::set_state(const std::vector<double>& s) {
  if (!s.empty()) throw std::invalid_argument(kind() + ": this model keeps no optimiser state, but " +
                                              std::to_string(s.size()) + " numbers were given");
}
template <class T>
void Model<T>::symmetry_bracket(const Vector<T>&, const ConstMatrix<double>&, std::uint32_t, std::int64_t,
                                std::uint64_t, const Matrix<double>&) {
  throw std::logic_error(kind() + ": no symmetry constraint");
}
template <class T>
void Model<T>::marginal_log_density(const Vector<T>&, const ConstMatrix<double>&, int, std::uint32_t, std::int64_t,
                                    std::uint64_t, const Vector<double>&) {
  throw std::logic_error(kind() + ": not a phase-space flow");
}
}  // namespace bf
