#include "physics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace bf {

void LogWeightSums::rescale_to(double new_max) {
  if (n == 0 || max == -std::numeric_limits<double>::infinity()) {
    max = new_max;
    return;
  }
  const double f = std::exp(max - new_max);
  s1 *= f;
  s2 *= f * f;
  max = new_max;
}

LogWeightSums log_weight_sums(const Kokkos::View<const double*, MemSpace>& log_w) {
  LogWeightSums s;
  s.n = static_cast<std::int64_t>(log_w.extent(0));
  if (s.n == 0) return s;
  double mx = 0;
  Kokkos::parallel_reduce(
      "bf::metrics_max", Policy(0, s.n),
      KOKKOS_LAMBDA(const std::int64_t i, double& m) { m = log_w(i) > m ? log_w(i) : m; },
      Kokkos::Max<double>(mx));
  double s1 = 0, s2 = 0, sl = 0;
  Kokkos::parallel_reduce(
      "bf::metrics_s1", Policy(0, s.n),
      KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += kmath::exp(log_w(i) - mx); }, s1);
  Kokkos::parallel_reduce(
      "bf::metrics_s2", Policy(0, s.n),
      KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += kmath::exp(2.0 * (log_w(i) - mx)); }, s2);
  Kokkos::parallel_reduce(
      "bf::metrics_sumlog", Policy(0, s.n), KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += log_w(i); }, sl);
  s.max = mx;
  s.s1 = s1;
  s.s2 = s2;
  s.sum_log = sl;
  // The tail, on host: the largest log weights in descending order.
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), log_w);
  s.top = largest_log_weights(std::vector<double>(h.data(), h.data() + s.n));
  return s;
}

std::vector<double> largest_log_weights(std::vector<double> v) {
  const std::size_t keep = std::min<std::size_t>(v.size(), LogWeightSums::kTailKeep);
  auto desc = [](double a, double b) { return a > b || (!std::isnan(a) && std::isnan(b)); };
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(keep), v.end(), desc);
  v.resize(keep);
  return v;
}

std::size_t pareto_tail_size(std::int64_t n) {
  const double nn = static_cast<double>(n);
  const double m = std::floor(std::min(nn / 5.0, 3.0 * std::sqrt(nn)));
  return std::min<std::size_t>(static_cast<std::size_t>(std::fmax(m, 0.0)), LogWeightSums::kTailKeep - 1);
}

LogWeightSums merge(const LogWeightSums& a, const LogWeightSums& b) {
  if (a.n == 0) return b;
  if (b.n == 0) return a;
  LogWeightSums x = a, y = b;
  const double m = std::fmax(a.max, b.max);
  x.rescale_to(m);
  y.rescale_to(m);
  LogWeightSums r;
  r.n = a.n + b.n;
  r.max = m;
  r.s1 = x.s1 + y.s1;
  r.s2 = x.s2 + y.s2;
  r.sum_log = a.sum_log + b.sum_log;
  std::vector<double> both = a.top;
  both.insert(both.end(), b.top.begin(), b.top.end());
  r.top = largest_log_weights(std::move(both));
  return r;
}

// Zhang & Stephens (2009), "A new and efficient estimation method for the
// generalized Pareto distribution", Technometrics 51. In their parametrisation
// F(x) = 1 − (1 − b x)^{1/k} with b = k/σ; for fixed b the likelihood is largest
// at k(b) = −mean log(1 − b x), where the log-likelihood is
// n (log(b/k) + k − 1) (from log f = −log σ + (1/k − 1) log(1 − b x)). b̂ is the
// mean of m = 30 + ⌊√n⌋ grid points b_j = 1/x_max + (1 − √(m/(j − ½)))/(3 x_q)
// (x_q the first quartile; every b_j < 1/x_max) weighted ∝ their likelihoods.
// The tail shape ξ ("k" of PSIS) is −k(b̂). The weak prior of Vehtari et al.
// (PSIS, Appendix) pulls it towards ½ by 10 pseudo-points.
double generalized_pareto_shape(std::vector<double> x) {
  const std::size_t n = x.size();
  if (n < 5) return std::numeric_limits<double>::quiet_NaN();
  std::sort(x.begin(), x.end());
  const double x_max = x.back();
  const double x_q = x[static_cast<std::size_t>(std::floor(static_cast<double>(n) / 4.0 + 0.5)) - 1];  // first quartile
  if (!(x_max > 0) || !(x_q > 0)) return std::numeric_limits<double>::quiet_NaN();
  const int m = 30 + static_cast<int>(std::floor(std::sqrt(static_cast<double>(n))));
  std::vector<double> b(m), l(m);
  auto k_of = [&](double bj) {
    double acc = 0;
    for (double v : x) acc += std::log1p(-bj * v);
    return -acc / static_cast<double>(n);
  };
  for (int j = 0; j < m; ++j) {
    b[j] = 1.0 / x_max + (1.0 - std::sqrt(static_cast<double>(m) / (j + 0.5))) / (3.0 * x_q);
    const double kj = k_of(b[j]);
    l[j] = static_cast<double>(n) * (std::log(b[j] / kj) + kj - 1.0);  // the profile log-likelihood
  }
  double b_hat = 0, wsum = 0;
  for (int j = 0; j < m; ++j) {
    double denom = 0;  // w_j = 1 / Σ_i exp(l_i − l_j), in a form that cannot overflow
    for (int i = 0; i < m; ++i) denom += std::exp(l[i] - l[j]);
    const double w = 1.0 / denom;
    b_hat += w * b[j];
    wsum += w;
  }
  b_hat /= wsum;
  const double k_zs = k_of(b_hat);  // Zhang & Stephens' k
  const double xi = -k_zs;
  const double nn = static_cast<double>(n);
  return (nn * xi + 10.0 * 0.5) / (nn + 10.0);
}

double pareto_k_hat(const std::vector<double>& top, std::int64_t n) {
  std::size_t m = pareto_tail_size(n);
  m = std::min(m, top.size() > 0 ? top.size() - 1 : 0);
  if (m < 5 || !std::isfinite(top[0]) || !std::isfinite(top[m])) return std::numeric_limits<double>::quiet_NaN();
  // Exceedances of the weights over the (M+1)-th largest, relative to the
  // largest (w/w_max, so nothing overflows; the shape is scale-free).
  const double u = std::exp(top[m] - top[0]);
  std::vector<double> x(m);
  for (std::size_t i = 0; i < m; ++i) x[i] = std::exp(top[i] - top[0]) - u;
  return generalized_pareto_shape(std::move(x));
}

ImportanceSummary summarize(const LogWeightSums& s) {
  ImportanceSummary r;
  r.n = s.n;
  if (s.n == 0) {
    r.kl = r.ess = r.log_mean_w = r.log_mean_w_stderr = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  const double n = static_cast<double>(s.n);
  r.kl = 0.0 - s.sum_log / n;  // (0.0 - x turns -0 into 0)
  r.ess = (s.s1 * s.s1) / (n * s.s2);  // (Σw/n)² / (Σw²/n); the max cancels
  r.log_mean_w = s.max + std::log(s.s1 / n);
  r.log_mean_w_stderr = std::sqrt(std::fmax(0.0, 1.0 / r.ess - 1.0) / n);
  r.n_eff = r.ess * n;
  r.pareto_k = pareto_k_hat(s.top, s.n);
  r.stderr_reliable = std::isfinite(r.pareto_k) && r.pareto_k <= kParetoKThreshold && r.n_eff >= 100.0;
  return r;
}

ModeSums mode_sums(const Distribution& target, const ConstMatrix<double>& x) {
  const ModeSet& ms = target.modes();
  const int n_modes = static_cast<int>(ms.means.size());
  const int d = target.dim();
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  ModeSums r;
  r.min_dist2.assign(n_modes, std::numeric_limits<double>::infinity());
  r.count.assign(n_modes, 0);
  if (n == 0) return r;
  Vector<int> mode("mode_of_sample", n);
  target.assign_modes(x, mode);
  Vector<int> finite("sample_is_finite", n);
  std::int64_t bad = 0;
  Kokkos::parallel_reduce(
      "bf::metrics_non_finite", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        const double* xi = row(x, i);
        bool ok = true;
        for (int j = 0; j < d; ++j) ok = ok && kmath::isfinite(xi[j]);
        finite(i) = ok ? 1 : 0;
        acc += ok ? 0 : 1;
      },
      bad);
  r.non_finite = bad;
  for (int k = 0; k < n_modes; ++k) {
    const Vector<double> m = to_device(ms.means[k], "mode_mean");
    double dmin = 0;
    Kokkos::parallel_reduce(
        "bf::metrics_mode_dist", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& acc) {
          if (!finite(i)) return;
          const double* xi = row(x, i);
          double d2 = 0.0;
          for (int j = 0; j < d; ++j) {
            const double t = xi[j] - m(j);
            d2 += t * t;
          }
          acc = d2 < acc ? d2 : acc;
        },
        Kokkos::Min<double>(dmin));
    std::int64_t c = 0;
    Kokkos::parallel_reduce(
        "bf::metrics_mode_count", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) { acc += finite(i) && mode(i) == k ? 1 : 0; }, c);
    r.min_dist2[k] = dmin;
    r.count[k] = c;
  }
  return r;
}

ModeSums merge(const ModeSums& a, const ModeSums& b) {
  if (a.count.size() != b.count.size()) throw std::logic_error("merge: mode counts differ");
  ModeSums r = a;
  for (std::size_t k = 0; k < a.count.size(); ++k) {
    r.min_dist2[k] = std::fmin(a.min_dist2[k], b.min_dist2[k]);
    r.count[k] = a.count[k] + b.count[k];
  }
  r.non_finite = a.non_finite + b.non_finite;
  return r;
}

MetricSums merge(const MetricSums& a, const MetricSums& b) {
  MetricSums r;
  // Observable sums weighted relative to each side's max, rescaled to the common one.
  const double m = std::fmax(a.reverse.max, b.reverse.max);
  auto factor = [&](const LogWeightSums& s) {
    return (s.n == 0 || s.max == -std::numeric_limits<double>::infinity()) ? 0.0 : std::exp(s.max - m);
  };
  const double fa = factor(a.reverse), fb = factor(b.reverse);
  r.observables = a.observables;
  for (std::size_t k = 0; k < r.observables.o1.size() && k < b.observables.o1.size(); ++k) {
    r.observables.o1[k] += b.observables.o1[k];
    r.observables.o2[k] += b.observables.o2[k];
    r.observables.wo1[k] = fa * a.observables.wo1[k] + fb * b.observables.wo1[k];
    r.observables.wo2[k] = fa * a.observables.wo2[k] + fb * b.observables.wo2[k];
  }
  for (std::size_t k = 0; k < r.observables.h.size() && k < b.observables.h.size(); ++k) {
    r.observables.h[k] += b.observables.h[k];
    r.observables.wh[k] = fa * a.observables.wh[k] + fb * b.observables.wh[k];
  }
  r.reverse = merge(a.reverse, b.reverse);
  r.has_forward = a.has_forward && b.has_forward;
  r.forward = merge(a.forward, b.forward);
  r.modes = merge(a.modes, b.modes);
  r.momentum_samples = a.momentum_samples;
  r.marginal_reverse = merge(a.marginal_reverse, b.marginal_reverse);
  r.has_marginal_forward = a.has_marginal_forward && b.has_marginal_forward;
  r.marginal_forward = merge(a.marginal_forward, b.marginal_forward);
  r.estimators = merge(a.estimators, b.estimators);
  return r;
}

namespace {
// log w = −f(x) − log q(x) at the flow's samples, or log v = log q(y) + f(y) at the target's.
Vector<double> log_weights(const Distribution& target, const ConstMatrix<double>& x,
                           const Kokkos::View<const double*, MemSpace>& log_q, bool at_target_samples) {
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  Vector<double> lw("log_w", n);
  target.energy(x, lw);
  const double sign = at_target_samples ? 1.0 : -1.0;
  Kokkos::parallel_for(
      "bf::metrics_log_w", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { lw(i) = sign * (lw(i) + log_q(i)); });
  return lw;
}
}  // namespace

MetricSums metric_sums(const Distribution& target, const ConstMatrix<double>& x,
                       const Kokkos::View<const double*, MemSpace>& log_q, std::uint64_t first,
                       std::int64_t total) {
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  if (static_cast<std::int64_t>(log_q.extent(0)) != n) throw std::logic_error("metric_sums: size mismatch");
  const Vector<double> lw = log_weights(target, x, log_q, false);
  MetricSums s;
  s.reverse = log_weight_sums(lw);
  s.modes = mode_sums(target, x);
  if (total > 0) s.estimators = estimator_sums(target, x, lw, first, total);
  const std::size_t k = target.observable_names().size();
  s.observables.o1.assign(k, 0.0);
  s.observables.o2.assign(k, 0.0);
  s.observables.wo1.assign(k, 0.0);
  s.observables.wo2.assign(k, 0.0);
  if (k > 0 && n > 0) {
    Matrix<double> o("observables", n, k);
    target.observables(x, o);
    const double mx = s.reverse.max;
    for (std::size_t c = 0; c < k; ++c) {
      const int col = static_cast<int>(c);
      double a1 = 0, a2 = 0, b1 = 0, b2 = 0;
      Kokkos::parallel_reduce(
          "bf::obs1", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += o(i, col); }, a1);
      Kokkos::parallel_reduce(
          "bf::obs2", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += o(i, col) * o(i, col); },
          a2);
      Kokkos::parallel_reduce(
          "bf::obsw1", Policy(0, n),
          KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += kmath::exp(lw(i) - mx) * o(i, col); }, b1);
      Kokkos::parallel_reduce(
          "bf::obsw2", Policy(0, n),
          KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += kmath::exp(lw(i) - mx) * o(i, col) * o(i, col); },
          b2);
      s.observables.o1[c] = a1;
      s.observables.o2[c] = a2;
      s.observables.wo1[c] = b1;
      s.observables.wo2[c] = b2;
    }
    // The histogram, on host (evaluations hold thousands of samples per chunk).
    const Distribution::HistogramSpec hs = target.histogram();
    if (hs.observable >= 0 && hs.observable < static_cast<int>(k) && hs.bins > 0) {
      s.observables.h.assign(hs.bins + 2, 0.0);
      s.observables.wh.assign(hs.bins + 2, 0.0);
      const auto ho = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), o);
      const auto hw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lw);
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = ho(i, hs.observable);
        const int b = v < hs.lo ? 0 : (v >= hs.hi ? hs.bins + 1 : 1 + std::min(hs.bins - 1, static_cast<int>((v - hs.lo) / (hs.hi - hs.lo) * hs.bins)));
        s.observables.h[b] += 1.0;
        s.observables.wh[b] += std::exp(hw(i) - mx);
      }
    }
  }
  return s;
}

void add_forward_sums(MetricSums& sums, const Distribution& target, const ConstMatrix<double>& y,
                      const Kokkos::View<const double*, MemSpace>& log_q_at_y) {
  const std::int64_t n = static_cast<std::int64_t>(y.extent(0));
  if (static_cast<std::int64_t>(log_q_at_y.extent(0)) != n) throw std::logic_error("add_forward_sums: size mismatch");
  sums.has_forward = true;
  sums.forward = log_weight_sums(log_weights(target, y, log_q_at_y, true));
}

void add_marginal_sums(MetricSums& sums, const Distribution& target, const ConstMatrix<double>& x,
                       const Kokkos::View<const double*, MemSpace>& log_q_hat, int momentum_samples,
                       bool at_target_samples) {
  if (static_cast<std::int64_t>(log_q_hat.extent(0)) != static_cast<std::int64_t>(x.extent(0)))
    throw std::logic_error("add_marginal_sums: size mismatch");
  sums.momentum_samples = momentum_samples;
  const LogWeightSums w = log_weight_sums(log_weights(target, x, log_q_hat, at_target_samples));
  if (at_target_samples) {
    sums.has_marginal_forward = true;
    sums.marginal_forward = w;
  } else {
    sums.marginal_reverse = w;
  }
}

std::string HistogramReport::text() const {
  if (empty()) return "";
  const int bins = static_cast<int>(flow.size());
  const double w = (hi - lo) / bins;
  double fl = flow_below, fr = flow_above, rl = reweighted_below, rr = reweighted_above, el = 0, er = 0;
  for (int b = 0; b < bins; ++b) {
    const bool left = lo + (b + 0.5) * w < split;
    (left ? fl : fr) += flow[b];
    (left ? rl : rr) += reweighted[b];
    if (b < static_cast<int>(reference.size())) (left ? el : er) += reference[b];
  }
  std::ostringstream os;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s < %.4g / > %.4g: flow %.4f / %.4f, reweighted %.4f / %.4f", observable.c_str(),
                split, split, fl, fr, rl, rr);
  os << buf;
  if (!reference.empty()) {
    std::snprintf(buf, sizeof buf, ", reference %.4f / %.4f", el, er);
    os << buf;
  }
  os << "\n";
  // Two bins per line: '#' the flow's fraction, '|' the reference's, on 25 columns.
  std::vector<double> f, e;
  double top = 0;
  for (int b = 0; b < bins; b += 2) {
    f.push_back(flow[b] + (b + 1 < bins ? flow[b + 1] : 0.0));
    double r = 0;
    for (int c = b; c < b + 2 && c < static_cast<int>(reference.size()); ++c) r += reference[c];
    e.push_back(reference.empty() ? -1.0 : r);
    top = std::fmax(top, std::fmax(f.back(), e.back()));
  }
  for (std::size_t l = 0; l < f.size(); ++l) {
    const int nf = top > 0 ? static_cast<int>(std::lround(25.0 * f[l] / top)) : 0;
    const int ne = (top > 0 && e[l] >= 0) ? static_cast<int>(std::lround(25.0 * e[l] / top)) : -1;
    std::string bar(static_cast<std::size_t>(std::max(nf, ne + 1)), ' ');
    for (int c = 0; c < nf; ++c) bar[static_cast<std::size_t>(c)] = '#';
    if (ne >= 0) bar[static_cast<std::size_t>(ne)] = '|';
    std::snprintf(buf, sizeof buf, "  %8.3f %7.4f  ", lo + 2.0 * static_cast<double>(l) * w, f[l]);
    os << buf << bar << "\n";
  }
  return os.str();
}

Metrics finalize(const MetricSums& sums, const ModeSet& modes) {
  Metrics m;
  const ImportanceSummary rev = summarize(sums.reverse);
  m.samples = rev.n;
  m.non_finite_samples = sums.modes.non_finite;
  m.reverse_kl = rev.kl;
  m.reverse_ess = rev.ess;
  m.log_z = rev.log_mean_w;
  m.log_z_stderr = rev.log_mean_w_stderr;
  m.reverse_n_eff = rev.n_eff;
  m.pareto_k = rev.pareto_k;
  m.log_z_stderr_reliable = rev.stderr_reliable;
  if (sums.has_forward) {
    const ImportanceSummary fwd = summarize(sums.forward);
    m.has_forward = true;
    m.forward_samples = fwd.n;
    m.forward_kl = fwd.kl;
    m.forward_ess = fwd.ess;
  }
  m.momentum_samples = sums.momentum_samples;
  if (sums.momentum_samples > 0) {
    const ImportanceSummary mr = summarize(sums.marginal_reverse);
    m.marginal_reverse_kl = mr.kl;
    m.marginal_reverse_ess = mr.ess;
    if (sums.has_marginal_forward) {
      const ImportanceSummary mf = summarize(sums.marginal_forward);
      m.marginal_forward_kl = mf.kl;
      m.marginal_forward_ess = mf.ess;
    }
  }
  const std::size_t k = sums.modes.count.size();
  double h = 0.0;
  std::int64_t total = 0;
  for (std::size_t c = 0; c < k; ++c) {
    h = std::fmax(h, std::sqrt(sums.modes.min_dist2[c]));
    total += sums.modes.count[c];
  }
  m.hausdorff = k ? h : std::numeric_limits<double>::quiet_NaN();
  m.mode_weights = modes.weights;
  m.mode_fractions.assign(k, 0.0);
  double tv = 0.0;
  for (std::size_t c = 0; c < k; ++c) {
    m.mode_fractions[c] = total ? static_cast<double>(sums.modes.count[c]) / static_cast<double>(total) : 0.0;
    tv += std::fabs(m.mode_fractions[c] - (c < modes.weights.size() ? modes.weights[c] : 0.0));
  }
  m.mode_coverage_tv = 0.5 * tv;
  const auto& ob = sums.observables;
  for (std::size_t c = 0; c < ob.o1.size(); ++c) {
    ObservableMoments om;
    om.name = "o" + std::to_string(c);
    const double n = static_cast<double>(sums.reverse.n);
    if (n > 0) {
      om.mean = ob.o1[c] / n;
      om.sd = std::sqrt(std::fmax(0.0, ob.o2[c] / n - om.mean * om.mean));
      om.mean_reweighted = ob.wo1[c] / sums.reverse.s1;
      om.sd_reweighted = std::sqrt(std::fmax(0.0, ob.wo2[c] / sums.reverse.s1 - om.mean_reweighted * om.mean_reweighted));
    }
    m.observables.push_back(om);
  }
  return m;
}

Metrics finalize(const MetricSums& sums, const Distribution& target) {
  Metrics m = finalize(sums, target.modes());
  const Distribution::HistogramSpec hs = target.histogram();
  const auto& h = sums.observables.h;
  const auto& wh = sums.observables.wh;
  const auto names = target.observable_names();
  if (hs.observable >= 0 && static_cast<int>(h.size()) == hs.bins + 2) {
    HistogramReport& r = m.histogram;
    r.observable = hs.observable < static_cast<int>(names.size()) ? names[hs.observable] : "o";
    r.reference_name = hs.reference_name;
    r.lo = hs.lo;
    r.hi = hs.hi;
    r.split = hs.split;
    r.reference = hs.reference;
    double n = 0, w = 0;
    for (std::size_t b = 0; b < h.size(); ++b) n += h[b], w += wh[b];
    auto frac = [](double x, double t) { return t > 0 ? x / t : std::numeric_limits<double>::quiet_NaN(); };
    for (int b = 1; b <= hs.bins; ++b) r.flow.push_back(frac(h[b], n)), r.reweighted.push_back(frac(wh[b], w));
    r.flow_below = frac(h.front(), n), r.flow_above = frac(h.back(), n);
    r.reweighted_below = frac(wh.front(), w), r.reweighted_above = frac(wh.back(), w);
  }
  m.estimators = estimator_figures(sums.estimators, target, &m.estimator_blocks);
  const auto means = target.observable_means(), sds = target.observable_sds();
  for (std::size_t c = 0; c < m.observables.size() && c < names.size(); ++c) {
    m.observables[c].name = names[c];
    if (c < means.size()) m.observables[c].exact_mean = means[c];
    if (c < sds.size()) m.observables[c].exact_sd = sds[c];
  }
  const int a = target.angle_observable();
  if (a >= 0 && a + 2 * kAngularMoments < static_cast<int>(m.observables.size())) {
    for (int k = 1; k <= kAngularMoments; ++k) {
      const ObservableMoments &c = m.observables[a + 2 * k - 1], &s = m.observables[a + 2 * k];
      m.angular_moments.push_back(std::hypot(c.mean, s.mean));
      m.angular_moments_reweighted.push_back(std::hypot(c.mean_reweighted, s.mean_reweighted));
    }
    if (m.histogram.observable == names[a] && m.histogram.reference.size() == m.histogram.flow.size()) {
      double tv = m.histogram.flow_below + m.histogram.flow_above;
      for (std::size_t b = 0; b < m.histogram.flow.size(); ++b) tv += std::fabs(m.histogram.flow[b] - m.histogram.reference[b]);
      m.angular_tv = 0.5 * tv;
    }
  }
  return m;
}

ScoreSums score_sums(const Distribution& target, const ConstMatrix<double>& x, const ConstMatrix<double>& f) {
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  const int D = static_cast<int>(x.extent(1));
  ScoreSums s;
  if (n == 0) return s;
  Vector<double> e("score_energy", n);
  Matrix<double> g("score_energy_grad", n, D);
  target.energy_grad(x, e, g);  // ∇log π = −∇energy
  auto hg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g);
  auto hf = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), f);
  for (std::int64_t i = 0; i < n; ++i) {
    double a = 0, b = 0;
    for (int j = 0; j < D; ++j) {
      const double score = -hg(i, j), d = hf(i, j) - score;
      a += d * d;
      b += score * score;
    }
    s.n += 1, s.a += a, s.b += b, s.aa += a * a, s.bb += b * b, s.ab += a * b;
  }
  return s;
}

ScoreSums merge(const ScoreSums& x, const ScoreSums& y) {
  return ScoreSums{x.n + y.n, x.a + y.a, x.b + y.b, x.aa + y.aa, x.bb + y.bb, x.ab + y.ab};
}

void finalize_score(const ScoreSums& s, Metrics& m) {
  m.score_model = true;
  m.score_samples = static_cast<std::int64_t>(s.n);
  if (!(s.n > 0) || !(s.b > 0)) return;
  const double n = s.n, ma = s.a / n, mb = s.b / n, r = s.a / s.b;
  m.score_error = r;
  m.score_norm = mb;
  if (n < 2) return;
  const double c = n / (n - 1);  // sample (co)variances
  const double vaa = c * (s.aa / n - ma * ma), vbb = c * (s.bb / n - mb * mb), vab = c * (s.ab / n - ma * mb);
  m.score_error_stderr = std::sqrt(std::max(0.0, vaa - 2 * r * vab + r * r * vbb) / (n * mb * mb));
}

}  // namespace bf
