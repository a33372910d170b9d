#include "physics/mcmc.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace bf {

IndependenceChain independence_mh(const std::vector<double>& log_w, const std::vector<double>& log_u) {
  if (log_u.size() != log_w.size()) throw std::invalid_argument("independence_mh: log_w and log_u differ in length");
  IndependenceChain c;
  const std::size_t n = log_w.size();
  c.state.resize(n);
  c.accepted.resize(n);
  if (n == 0) return c;
  std::int64_t cur = 0;
  c.state[0] = 0;
  c.accepted[0] = 1;
  for (std::size_t t = 1; t < n; ++t) {
    const double lw = log_w[t], lc = log_w[static_cast<std::size_t>(cur)];
    bool accept = false;
    if (std::isfinite(lw)) accept = !std::isfinite(lc) || log_u[t] < lw - lc;
    if (accept) {
      cur = static_cast<std::int64_t>(t);
      ++c.accepts;
    }
    c.state[t] = cur;
    c.accepted[t] = accept ? 1 : 0;
  }
  return c;
}

AutocorrelationTime integrated_autocorrelation_time(const std::vector<std::vector<double>>& chains, double c) {
  AutocorrelationTime r;
  if (chains.empty() || chains[0].size() < 2) return r;
  const std::size_t n = chains[0].size();
  for (const auto& ch : chains)
    if (ch.size() != n) throw std::invalid_argument("integrated_autocorrelation_time: chains differ in length");
  double mean = 0;
  for (const auto& ch : chains)
    for (double v : ch) mean += v;
  mean /= static_cast<double>(n * chains.size());
  auto gamma = [&](std::size_t t) {
    double s = 0;
    for (const auto& ch : chains)
      for (std::size_t i = 0; i + t < n; ++i) s += (ch[i] - mean) * (ch[i + t] - mean);
    return s / static_cast<double>((n - t) * chains.size());
  };
  const double g0 = gamma(0);
  if (!(g0 > 0)) return r;  // a constant series: nothing to correlate
  double tau = 0.5;
  const std::size_t max_w = std::max<std::size_t>(1, n / 4);
  for (std::size_t w = 1; w <= max_w; ++w) {
    tau += gamma(w) / g0;
    if (static_cast<double>(w) >= c * tau) {
      r.tau = tau;
      r.window = static_cast<long long>(w);
      return r;
    }
  }
  r.tau = tau;
  r.window = static_cast<long long>(max_w);
  r.converged = false;
  return r;
}

}  // namespace bf
