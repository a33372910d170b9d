// Figures with error bars: the jackknife over blocks of samples.
//
// A target names per-sample primaries a_j(x) and figures F(⟨a⟩) of their
// means (Distribution::estimators: for φ⁴ the magnetisation, χ₂, G(t), the
// action density; by default the mean and standard deviation of every
// observable). Samples go to B blocks by their global index (block
// ⌊i B / n⌋, so the blocks do not depend on how samples are split over
// ranks); a block keeps its count, Σ w and Σ a_j, Σ w a_j with w the
// importance weight relative to a common maximum, sums that merge exactly
// like the metric sums. The estimate is F at the full means — plain (the
// flow's samples as they are) or self-normalised reweighted, ⟨a⟩_w = Σ w a / Σ w —
// and its error the jackknife's: with F_(b) the figure without block b,
//   σ² = (B − 1)/B Σ_b (F_(b) − mean_b F_(b))²,
// which carries the weights' fluctuations and, for ratio and nonlinear
// figures, their bias-corrected spread. For Markov chains the blocks are
// consecutive stretches of every chain (bins), valid when a stretch is
// much longer than the integrated autocorrelation time.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "physics/distribution.hpp"

namespace bf {

struct EstimatorSums {
  static constexpr int kBlocks = 32;
  int primaries = 0;
  double max = -std::numeric_limits<double>::infinity();  // the weights' reference: w = exp(log w − max)
  std::vector<double> n, w;   // per block: samples, Σ w
  std::vector<double> a, wa;  // [block · primaries + j]: Σ a_j, Σ w a_j
  bool empty() const { return primaries == 0; }
  /// Re-expresses the weighted sums relative to a larger maximum.
  void rescale_to(double new_max);
};

/// A rank's sums: samples x (global indices first .., of `total`) with log weights log_w.
EstimatorSums estimator_sums(const Distribution& target, const ConstMatrix<double>& x,
                             const Kokkos::View<const double*, MemSpace>& log_w, std::uint64_t first,
                             std::int64_t total);
EstimatorSums merge(const EstimatorSums& a, const EstimatorSums& b);

struct Jackknife {
  std::vector<double> value, error;  // per figure
  int blocks = 0;                    // blocks with samples (error NaN below 2)
};
/// F at the full means Σ_b sums / Σ_b weight, with the jackknife error over
/// the blocks of positive weight; sums is [block · k + j].
Jackknife jackknife(const std::vector<double>& weight, const std::vector<double>& sums, int k,
                    const std::function<std::vector<double>(const std::vector<double>&)>& derive);

struct EstimatorFigure {
  std::string name;
  double flow = 0, flow_error = 0, reweighted = 0, reweighted_error = 0;
  double exact = std::numeric_limits<double>::quiet_NaN();
};
/// The figures of a target from merged sums (empty if it has none).
std::vector<EstimatorFigure> estimator_figures(const EstimatorSums& s, const Distribution& target, int* blocks);

}  // namespace bf
