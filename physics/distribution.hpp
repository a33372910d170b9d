// A density on R^D known through its energy: p(x) ∝ exp(-energy(x)).
//
// Targets (Gaussian mixtures, φ⁴, the supernova posterior) and base
// distributions (generalized Gaussian, soft-uniform, Gaussian) share this
// interface. Each is written as a small device-copyable *kernel* struct with
// per-sample inline functions (energy, energy_grad, and sample where an exact
// sampler exists); the batch loops are written once, below.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "physics/core.hpp"
#include "physics/rng.hpp"

namespace bf {

template <class T>
using ConstMatrix = Matrix<const T>;

/// The modes of a density: their means (the points the Hausdorff metric uses)
/// and the fraction of mass each holds.
struct ModeSet {
  std::vector<std::vector<double>> means;  // [n_modes][dim]
  std::vector<double> weights;             // sum to 1
  bool weights_exact = true;               // false where only an approximation is known
  std::string rule;                        // how a sample is assigned to a mode
};

/// The angular observables a rotation-invariant target shares (Distribution::angle_observable):
/// the angle θ, then cos kθ, sin kθ for k = 1 .. kAngularMoments (exact means 0 under invariance).
inline constexpr int kAngularMoments = 4;

class Distribution {
 public:
  virtual ~Distribution() = default;

  /// Short name used in configs and logs ("gmm4", "phi4", "gengauss").
  virtual std::string name() const = 0;
  /// One line with every parameter, for logs and checkpoints.
  virtual std::string description() const = 0;
  virtual int dim() const = 0;

  /// e(i) = energy(x(i, :)).
  virtual void energy(const ConstMatrix<double>& x, const Vector<double>& e) const = 0;
  virtual void energy(const ConstMatrix<float>& x, const Vector<float>& e) const = 0;
  /// e(i) = energy(x(i, :)), g(i, :) = ∇energy(x(i, :)).
  virtual void energy_grad(const ConstMatrix<double>& x, const Vector<double>& e,
                           const Matrix<double>& g) const = 0;
  virtual void energy_grad(const ConstMatrix<float>& x, const Vector<float>& e,
                           const Matrix<float>& g) const = 0;

  /// Whether exact samples can be drawn.
  virtual bool has_sampler() const { return false; }
  /// Fills x(r, :) with the exact sample of global index first_index + r drawn
  /// from the counter-based stream (seed, purpose, step). Throws if none exists.
  virtual void sample(std::uint32_t seed, Purpose purpose, std::uint32_t step,
                      std::uint64_t first_index, const Matrix<double>& x) const;

  /// log ∫ exp(-energy); NaN where unknown.
  virtual double log_z() const { return std::numeric_limits<double>::quiet_NaN(); }

  /// Mode means and weights (for Hausdorff distance and mode coverage).
  const ModeSet& modes() const { return modes_; }
  /// mode(i) = index of the mode sample i belongs to. Default: nearest mean.
  virtual void assign_modes(const ConstMatrix<double>& x, const Vector<int>& mode) const;

  /// Physical observables of a sample (e.g. Ω_m and h of the supernova posterior,
  /// the mean field of φ⁴): names, and values o(i, k) for samples x(i, :).
  virtual std::vector<std::string> observable_names() const { return {}; }
  virtual void observables(const ConstMatrix<double>&, const Matrix<double>&) const {}
  /// Exact means and standard deviations of the observables where known (else empty).
  virtual std::vector<double> observable_means() const { return {}; }
  virtual std::vector<double> observable_sds() const { return {}; }

  /// Figures with error bars (physics/estimators.hpp): per-sample primaries
  /// a_j(x) whose means ⟨a⟩ (plain or importance-reweighted) give the
  /// figures F(⟨a⟩); the errors are by jackknife over blocks of samples.
  struct Estimators {
    std::vector<std::string> primaries;
    std::vector<std::string> figures;
    std::vector<double> exact;  // per figure; NaN where unknown
    std::function<std::vector<double>(const std::vector<double>&)> derive;
    bool empty() const { return figures.empty(); }
  };
  /// Default: the mean and standard deviation of each observable that estimated_observables()
  /// names (primaries o and o²).
  virtual Estimators estimators() const;
  /// The observables (indices) the default estimators cover; empty: all of them.
  virtual std::vector<int> estimated_observables() const { return {}; }
  /// a(i, j) = primary j of sample i (a: n x estimators().primaries.size()).
  virtual void estimator_primaries(const ConstMatrix<double>& x, const Matrix<double>& a) const;

  /// A histogram of one observable that evaluations report (Máté Fig. 10: φ̄ of
  /// φ⁴): `bins` equal bins over [lo, hi] of observable `observable` (−1: none),
  /// and a reference distribution's mass per bin (`reference`, summing to 1 over
  /// the range; empty if none), named `reference_name`.
  struct HistogramSpec {
    int observable = -1;
    double lo = 0, hi = 0;
    int bins = 0;
    std::vector<double> reference;
    std::string reference_name;
    double split = 0;  // the two sides whose masses are reported (φ⁴: the barrier between the wells)
  };
  virtual HistogramSpec histogram() const { return {}; }
  /// Rotation-invariant targets: the index of the observable that is the angle θ, followed
  /// by cos kθ, sin kθ for k = 1..4 (physics/rings.hpp); −1: none.
  virtual int angle_observable() const { return -1; }

  /// log density, -energy - log Z (requires a known log Z).
  void log_density(const ConstMatrix<double>& x, const Vector<double>& out) const;

 protected:
  ModeSet modes_;
};

// ---------------------------------------------------------------------------
// The batch loops, written once for every kernel.

template <class K, class T>
void batch_energy(const K& kernel, const ConstMatrix<T>& x, const Vector<T>& e) {
  Kokkos::parallel_for(
      "bf::energy", Policy(0, x.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t i) { e(i) = kernel.template energy<T>(row(x, i)); });
}

template <class K, class T>
void batch_energy_grad(const K& kernel, const ConstMatrix<T>& x, const Vector<T>& e,
                       const Matrix<T>& g) {
  Kokkos::parallel_for(
      "bf::energy_grad", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        e(i) = kernel.template energy_grad<T>(row(x, i), row(g, i));
      });
}

template <class K>
void batch_sample(const K& kernel, std::uint32_t seed, Purpose purpose, std::uint32_t step,
                  std::uint64_t first_index, const Matrix<double>& x) {
  Kokkos::parallel_for(
      "bf::sample", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t r) {
        const RngStream s(seed, purpose, step, first_index + static_cast<std::uint64_t>(r));
        kernel.sample(s, row(x, r));
      });
}

/// Implements the batched virtuals of Distribution from a kernel struct K with
///   template <class T> KOKKOS_INLINE_FUNCTION T energy(const T* x) const;
///   template <class T> KOKKOS_INLINE_FUNCTION T energy_grad(const T* x, T* g) const;
template <class K>
class KernelDistribution : public Distribution {
 public:
  void energy(const ConstMatrix<double>& x, const Vector<double>& e) const override {
    batch_energy(kernel_, x, e);
  }
  void energy(const ConstMatrix<float>& x, const Vector<float>& e) const override {
    batch_energy(kernel_, x, e);
  }
  void energy_grad(const ConstMatrix<double>& x, const Vector<double>& e,
                   const Matrix<double>& g) const override {
    batch_energy_grad(kernel_, x, e, g);
  }
  void energy_grad(const ConstMatrix<float>& x, const Vector<float>& e,
                   const Matrix<float>& g) const override {
    batch_energy_grad(kernel_, x, e, g);
  }
  const K& kernel() const { return kernel_; }

 protected:
  K kernel_;
};

/// A KernelDistribution whose kernel also has
///   KOKKOS_INLINE_FUNCTION void sample(const RngStream&, double* x) const;
template <class K>
class SampleableKernelDistribution : public KernelDistribution<K> {
 public:
  bool has_sampler() const override { return true; }
  void sample(std::uint32_t seed, Purpose purpose, std::uint32_t step, std::uint64_t first_index,
              const Matrix<double>& x) const override {
    batch_sample(this->kernel_, seed, purpose, step, first_index, x);
  }
};

/// Copies a host vector into a new device view.
template <class T>
Vector<T> to_device(const std::vector<T>& v, const std::string& label) {
  Vector<T> d(label, v.size());
  auto h = Kokkos::create_mirror_view(d);
  for (std::size_t i = 0; i < v.size(); ++i) h(i) = v[i];
  Kokkos::deep_copy(d, h);
  return d;
}

/// Formats a number compactly (%.6g) for descriptions.
std::string fmt_num(double v);

}  // namespace bf
