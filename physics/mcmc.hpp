// Flow-based Markov chain Monte Carlo (Albergo, Kanwar & Shanahan 2019):
// an independence Metropolis–Hastings chain whose proposals x'_t ~ q are the
// flow's samples, accepted with probability min(1, w(x')/w(x_t)),
// w = e^{−f}/q (the importance weight, known up to the constant Z). The chain
// leaves p = e^{−f}/Z invariant and converges to it whatever q, provided q > 0
// wherever p is: asymptotically exact samples from an inexact flow.
//
// Its statistics: the integrated autocorrelation time of a series o_t,
//   τ_int = ½ + Σ_{t=1}^{W} ρ(t),   ρ(t) = Γ(t)/Γ(0),  Γ(t) = mean_s (o_s − ō)(o_{s+t} − ō),
// with Sokal's automatic window (the smallest W ≥ c τ_int(W), c = 5), so that
// the error of the mean of n correlated values is sd · √(2 τ_int / n)
// (τ_int = ½ for independent values). Several chains of one length share ō and
// average their Γ(t).
#pragma once

#include <cstdint>
#include <vector>

namespace bf {

struct IndependenceChain {
  std::vector<std::int64_t> state;   // per step t: the proposal (0..n−1) the chain sits on after step t
  std::vector<std::uint8_t> accepted;  // per step t ≥ 1: whether proposal t was accepted (step 0: 1)
  std::int64_t accepts = 0;            // over steps 1..n−1
};

/// The chain over proposals 0..n−1 with log weights log_w, started at proposal 0;
/// step t ≥ 1 accepts proposal t iff log_u[t] < log_w[t] − log_w[state]. A
/// proposal whose log weight is not finite is never accepted; from a state whose
/// log weight is not finite (NaN, −∞) any finite proposal is.
IndependenceChain independence_mh(const std::vector<double>& log_w, const std::vector<double>& log_u);

struct AutocorrelationTime {
  double tau = 0.5;     // τ_int
  long long window = 0; // W
  bool converged = true;  // false: no W ≤ n/4 satisfied W ≥ c τ_int(W) (τ is then a lower bound)
};

/// τ_int of equally long chains (one series each), averaging their autocovariances.
AutocorrelationTime integrated_autocorrelation_time(const std::vector<std::vector<double>>& chains, double c = 5.0);

}  // namespace bf
