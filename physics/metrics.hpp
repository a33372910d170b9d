// Sampler metrics (Máté & Fleuret Eqs. 14–18), in log space.
//
// On samples x_i ~ q with log q(x_i):  log w_i = −f(x_i) − log q(x_i)
//   reverse KL (− log Z) = −mean(log w)
//   reverse ESS          = (mean w)² / mean(w²)
//   log Z                = log mean w,   stderr ≈ sqrt((1/ESS − 1)/n)   (delta method)
//   n_eff                = ESS · n
//   Pareto k̂             = the shape of a generalized Pareto fitted to the largest
//                          M = min(n/5, 3√n) weights (Zhang & Stephens 2009, as in
//                          Vehtari et al.'s Pareto-smoothed importance sampling).
//                          The weights' variance, which the stderr and the ESS
//                          estimate, is finite only for k < ½; above ½ the log Z
//                          error bar is flagged unreliable, as it is when n_eff < 100
//                          or there are too few samples for the fit (M < 5).
//                          (Vehtari et al. use 0.7 for Pareto-*smoothed* estimates;
//                          these are plain importance sampling.)
// On exact target samples y_j ~ p with log q(y_j):  log v_j = log q(y_j) + f(y_j)
//   forward KL (+ log Z) = −mean(log v),  forward ESS = (mean v)² / mean(v²)
// Hausdorff = max over modes m of min_i |m − x_i|; mode coverage = fraction of
// samples assigned to each mode, and its total-variation distance to the
// modes' weights. Both over the finite samples only: a sample with a NaN or
// infinite coordinate is counted (non_finite) and reported, never assigned to
// a mode or taken as near one.
//
// Every figure is built from *sums* that merge exactly: the largest log weight
// first, then sums of exp(log w − max) rescaled to the common max, minima of
// squared distances, integer counts. A rank computes its sums; the runner
// reduces them over ranks (max, then sums; min; integer sum), so the global
// figure equals the single-process one on the same samples up to rounding of
// the sums' order.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "physics/distribution.hpp"
#include "physics/estimators.hpp"

namespace bf {

/// Below this Pareto k̂ the importance weights have a finite variance (the
/// log Z error bar and the ESS estimate it); above, the error bar is flagged.
inline constexpr double kParetoKThreshold = 0.5;

struct LogWeightSums {
  /// How many of the largest log weights a sum keeps for the tail fit: enough
  /// for M = 3√n up to n ≈ 1.8·10⁶ samples (beyond, the fit uses the largest 4096).
  static constexpr std::size_t kTailKeep = 4096;
  std::int64_t n = 0;
  double max = -std::numeric_limits<double>::infinity();  // max log w
  double s1 = 0;                                           // Σ exp(log w − max)
  double s2 = 0;                                           // Σ exp(2 (log w − max))
  double sum_log = 0;                                      // Σ log w
  std::vector<double> top;                                 // the largest log w, descending (≤ kTailKeep)

  /// Re-expresses s1, s2 relative to a larger maximum.
  void rescale_to(double new_max);
};

/// Sums of a rank's log weights (Kokkos reductions on the device).
LogWeightSums log_weight_sums(const Kokkos::View<const double*, MemSpace>& log_w);
LogWeightSums merge(const LogWeightSums& a, const LogWeightSums& b);

struct ImportanceSummary {
  std::int64_t n = 0;
  double kl = 0;            // −mean(log w)
  double ess = 0;           // (mean w)² / mean(w²)
  double log_mean_w = 0;    // log mean w
  double log_mean_w_stderr = 0;
  double n_eff = 0;         // ess · n
  double pareto_k = std::numeric_limits<double>::quiet_NaN();  // tail shape k̂ (NaN: too few samples)
  bool stderr_reliable = false;  // k̂ ≤ kParetoKThreshold and n_eff ≥ 100
};
ImportanceSummary summarize(const LogWeightSums& s);

/// M = min(n/5, 3√n), the number of largest weights the tail fit uses (at most kTailKeep).
std::size_t pareto_tail_size(std::int64_t n);
/// The largest kTailKeep of `log_w`, descending (NaN last).
std::vector<double> largest_log_weights(std::vector<double> log_w);
/// k̂ of a generalized Pareto fitted (Zhang & Stephens 2009, with the weak prior
/// of Vehtari et al.) to the largest M = min(n/5, 3√n) of n weights, given the
/// largest log weights in descending order (at least M + 1 of them). NaN when M < 5.
double pareto_k_hat(const std::vector<double>& top_log_w_descending, std::int64_t n);
/// The generalized Pareto fit itself on exceedances x_i > 0 (any order): its shape k.
double generalized_pareto_shape(std::vector<double> exceedances);

struct ModeSums {
  std::vector<double> min_dist2;       // per mode: min_i |m − x_i|² over finite samples
  std::vector<std::int64_t> count;     // per mode: finite samples assigned to it
  std::int64_t non_finite = 0;         // samples with a non-finite coordinate
};
/// Mode sums of a rank's samples x [n x D] under target's modes.
ModeSums mode_sums(const Distribution& target, const ConstMatrix<double>& x);
ModeSums merge(const ModeSums& a, const ModeSums& b);

/// Sums for raw and importance-reweighted moments of observables o_k:
/// Σ o, Σ o², and Σ w o, Σ w o² with w = exp(log w − max) (the max of the
/// reverse log-weight sums, rescaled with them).
struct ObservableSums {
  std::vector<double> o1, o2, wo1, wo2;
  // The target's histogram (Distribution::histogram), bins + 2 entries:
  // [0] below lo, [1..bins] the bins, [bins + 1] above hi; counts, and Σ w likewise.
  std::vector<double> h, wh;
};

/// Everything one rank contributes to a metric report.
struct MetricSums {
  LogWeightSums reverse;
  bool has_forward = false;
  LogWeightSums forward;
  ModeSums modes;
  ObservableSums observables;
  // Phase-space flows (NHF): the weights of the marginal estimate log q̂_K(x)
  // from K momenta per sample (Model::marginal_log_density), at the flow's
  // samples and, where there are exact target samples, at those. K = 0: none.
  int momentum_samples = 0;
  LogWeightSums marginal_reverse, marginal_forward;
  bool has_marginal_forward = false;
  EstimatorSums estimators;  // the target's figures with jackknife errors (empty: none, or not asked)
};
MetricSums merge(const MetricSums& a, const MetricSums& b);

/// Per-rank sums: x ~ q with log q; optionally exact target samples y with log q(y).
/// With `total` > 0 also the estimator sums, x being global samples first .. of total.
MetricSums metric_sums(const Distribution& target, const ConstMatrix<double>& x,
                       const Kokkos::View<const double*, MemSpace>& log_q, std::uint64_t first = 0,
                       std::int64_t total = 0);
void add_forward_sums(MetricSums& sums, const Distribution& target, const ConstMatrix<double>& y,
                      const Kokkos::View<const double*, MemSpace>& log_q_at_y);
/// The marginal sums of a phase-space flow: log q̂_K at its samples x (reverse)
/// or at exact target samples (at_target_samples: forward).
void add_marginal_sums(MetricSums& sums, const Distribution& target, const ConstMatrix<double>& x,
                       const Kokkos::View<const double*, MemSpace>& log_q_hat, int momentum_samples,
                       bool at_target_samples);

struct ObservableMoments {
  std::string name;
  double mean = 0, sd = 0;                      // of the flow's samples
  double mean_reweighted = 0, sd_reweighted = 0;  // self-normalised importance weights
  double exact_mean = std::numeric_limits<double>::quiet_NaN(), exact_sd = std::numeric_limits<double>::quiet_NaN();
};

/// A histogram of the flow's samples: fractions per bin, raw and
/// importance-reweighted (self-normalised), with the fractions outside the
/// range, and the target's reference mass per bin where it has one.
struct HistogramReport {
  std::string observable, reference_name;
  double lo = 0, hi = 0, split = 0;
  std::vector<double> flow, reweighted, reference;  // per bin
  double flow_below = 0, flow_above = 0, reweighted_below = 0, reweighted_above = 0;
  bool empty() const { return flow.empty(); }
  /// A few lines: the masses on each side of `split`, then the bins as text bars.
  std::string text() const;
};

struct Metrics {
  std::int64_t samples = 0;
  std::int64_t non_finite_samples = 0;  // of `samples`; left out of Hausdorff and mode coverage
  double reverse_kl = 0, reverse_ess = 0, log_z = 0, log_z_stderr = 0;
  double reverse_n_eff = 0;             // ESS · n
  double pareto_k = std::numeric_limits<double>::quiet_NaN();  // of the reverse weights
  bool log_z_stderr_reliable = false;   // k̂ ≤ kParetoKThreshold and n_eff ≥ 100
  // Phase-space flows (NHF): reverse_kl, reverse_ess and the forward figures
  // above are of the flow on (q, p), an upper bound on the marginal KL and a
  // lower bound on its ESS; log Z is unbiased all the same. The marginal
  // figures below come from log q̂_K(x) = log mean_k M(x, p_k)/r(p_k|x) over
  // K momenta: E log q̂_K ≤ log q, so the reverse KL estimate is a lower bound
  // and the forward KL an upper bound, both tightening as K grows.
  bool phase_space = false;
  int momentum_samples = 0;  // K; 0: no marginal figures
  double marginal_reverse_kl = std::numeric_limits<double>::quiet_NaN();
  double marginal_reverse_ess = std::numeric_limits<double>::quiet_NaN();
  double marginal_forward_kl = std::numeric_limits<double>::quiet_NaN();
  double marginal_forward_ess = std::numeric_limits<double>::quiet_NaN();
  /// The marginal ESS is at least the phase-space ESS (the marginal weights are conditional
  /// means of the joint ones); an estimate below it has not converged in K.
  bool marginal_unconverged() const {
    return phase_space && momentum_samples > 0 && marginal_reverse_ess < reverse_ess;
  }
  bool has_forward = false;
  std::int64_t forward_samples = 0;
  double forward_kl = std::numeric_limits<double>::quiet_NaN();
  double forward_ess = std::numeric_limits<double>::quiet_NaN();
  double hausdorff = 0;
  std::vector<double> mode_fractions, mode_weights;
  double mode_coverage_tv = 0;
  std::vector<ObservableMoments> observables;
  HistogramReport histogram;
  std::vector<EstimatorFigure> estimators;  // with jackknife errors over estimator_blocks blocks
  int estimator_blocks = 0;
  // Score models (no sampler; everything above is unset): the relative score error on
  // score_samples exact samples of the target, with its delta-method standard error.
  bool score_model = false;
  std::int64_t score_samples = 0;
  double score_error = std::numeric_limits<double>::quiet_NaN();
  double score_error_stderr = std::numeric_limits<double>::quiet_NaN();
  double score_norm = std::numeric_limits<double>::quiet_NaN();  // E_π‖∇log π‖²
  // Rotation-invariant targets (Distribution::angle_observable): |mean e^{ikθ}| of the
  // flow's samples, plain and importance-reweighted, k = 1..4 (0 under invariance; the
  // noise level of n samples is 1/√n), and the total variation of the angle's histogram
  // from the uniform (its noise level about √(bins/2πn)).
  std::vector<double> angular_moments, angular_moments_reweighted;
  double angular_tv = std::numeric_limits<double>::quiet_NaN();
  // Phase-space flows on a target with exact samples: the held-out log-likelihood
  // E_π log q̂_K(y) (the importance-weighted ELBO over K momenta at fresh exact samples, a
  // lower bound on E_π log q(y) rising with K) and its standard error.
  double test_log_likelihood = std::numeric_limits<double>::quiet_NaN();
  double test_log_likelihood_stderr = std::numeric_limits<double>::quiet_NaN();
  // Symmetry-constrained flows: E[c_k²], c_k = {g_k, H}(y, p), y exact target samples (the
  // flow's where the target has none), p ~ N(0, I), per generator, with standard errors.
  std::vector<double> symmetry_constraint, symmetry_constraint_stderr;
};

/// A learned force F against the target's score on exact samples x ~ π: per sample
/// a = ‖F(x) − ∇log π(x)‖² and b = ‖∇log π(x)‖², summed (n, Σa, Σb, Σa², Σb², Σab),
/// which merge exactly across ranks. The relative score error is R = Σa / Σb
/// (E_π‖F − ∇log π‖² / E_π‖∇log π‖²) and its standard error by the delta method,
///   se(R)² = [s_aa − 2 R s_ab + R² s_bb] / (n b̄²),  s the sample (co)variances.
struct ScoreSums {
  double n = 0, a = 0, b = 0, aa = 0, bb = 0, ab = 0;
  static constexpr int kCount = 6;
  /// The sums as kCount numbers (for MPI), and back.
  std::array<double, kCount> pack() const { return {n, a, b, aa, bb, ab}; }
  static ScoreSums unpack(const double* v) { return ScoreSums{v[0], v[1], v[2], v[3], v[4], v[5]}; }
};
/// The sums of F (f: rows of forces) on the target's samples x.
ScoreSums score_sums(const Distribution& target, const ConstMatrix<double>& x, const ConstMatrix<double>& f);
ScoreSums merge(const ScoreSums& a, const ScoreSums& b);
/// The score figures of the sums into m (score_model set).
void finalize_score(const ScoreSums& s, Metrics& m);
Metrics finalize(const MetricSums& sums, const ModeSet& modes);
/// finalize, with the target's observables named and their exact moments.
Metrics finalize(const MetricSums& sums, const Distribution& target);

}  // namespace bf
