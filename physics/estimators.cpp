#include "physics/estimators.hpp"

#include <cmath>
#include <stdexcept>

namespace bf {

void EstimatorSums::rescale_to(double new_max) {
  if (max == -std::numeric_limits<double>::infinity()) {
    max = new_max;
    return;
  }
  const double f = std::exp(max - new_max);
  for (double& v : w) v *= f;
  for (double& v : wa) v *= f;
  max = new_max;
}

EstimatorSums estimator_sums(const Distribution& target, const ConstMatrix<double>& x,
                             const Kokkos::View<const double*, MemSpace>& log_w, std::uint64_t first,
                             std::int64_t total) {
  const Distribution::Estimators spec = target.estimators();
  EstimatorSums s;
  if (spec.empty()) return s;
  const int k = static_cast<int>(spec.primaries.size()), B = EstimatorSums::kBlocks;
  s.primaries = k;
  s.n.assign(B, 0.0);
  s.w.assign(B, 0.0);
  s.a.assign(static_cast<std::size_t>(B) * k, 0.0);
  s.wa.assign(static_cast<std::size_t>(B) * k, 0.0);
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  if (n == 0) return s;
  Matrix<double> a("estimator_primaries", n, k);
  target.estimator_primaries(x, a);
  // On host: a few numbers per sample, in global-index order within the chunk.
  const auto ha = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
  const auto hw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), log_w);
  double mx = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < n; ++i) mx = std::isfinite(hw(i)) && hw(i) > mx ? hw(i) : mx;
  s.max = mx;
  for (std::int64_t i = 0; i < n; ++i) {
    // Non-finite samples (counted by the metric suite) are left out, as from the mode coverage.
    bool ok = std::isfinite(hw(i));
    for (int j = 0; j < k; ++j) ok = ok && std::isfinite(ha(i, j));
    if (!ok) continue;
    const std::uint64_t g = first + static_cast<std::uint64_t>(i);
    const int b = static_cast<int>(std::min<std::uint64_t>(B - 1, g * B / static_cast<std::uint64_t>(total)));
    const double w = std::exp(hw(i) - mx);
    s.n[b] += 1.0;
    s.w[b] += w;
    for (int j = 0; j < k; ++j) {
      s.a[static_cast<std::size_t>(b) * k + j] += ha(i, j);
      s.wa[static_cast<std::size_t>(b) * k + j] += w * ha(i, j);
    }
  }
  return s;
}

EstimatorSums merge(const EstimatorSums& a, const EstimatorSums& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  if (a.primaries != b.primaries) throw std::logic_error("merge: estimator sums of different targets");
  EstimatorSums x = a, y = b;
  const double m = std::fmax(a.max, b.max);
  x.rescale_to(m);
  y.rescale_to(m);
  for (std::size_t i = 0; i < x.n.size(); ++i) x.n[i] += y.n[i], x.w[i] += y.w[i];
  for (std::size_t i = 0; i < x.a.size(); ++i) x.a[i] += y.a[i], x.wa[i] += y.wa[i];
  return x;
}

Jackknife jackknife(const std::vector<double>& weight, const std::vector<double>& sums, int k,
                    const std::function<std::vector<double>(const std::vector<double>&)>& derive) {
  const std::size_t B = weight.size();
  std::vector<double> tot(static_cast<std::size_t>(k), 0.0);
  double W = 0;
  std::vector<std::size_t> used;
  for (std::size_t b = 0; b < B; ++b) {
    if (!(weight[b] > 0)) continue;
    used.push_back(b);
    W += weight[b];
    for (int j = 0; j < k; ++j) tot[j] += sums[b * k + j];
  }
  Jackknife r;
  r.blocks = static_cast<int>(used.size());
  std::vector<double> mean(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) mean[j] = W > 0 ? tot[j] / W : std::nan("");
  r.value = derive(mean);
  const std::size_t nf = r.value.size();
  r.error.assign(nf, std::nan(""));
  if (used.size() < 2) return r;
  std::vector<std::vector<double>> loo;
  for (std::size_t b : used) {
    std::vector<double> m(static_cast<std::size_t>(k));
    for (int j = 0; j < k; ++j) m[j] = (tot[j] - sums[b * k + j]) / (W - weight[b]);
    loo.push_back(derive(m));
  }
  const double nb = static_cast<double>(used.size());
  for (std::size_t f = 0; f < nf; ++f) {
    double avg = 0;
    for (const auto& v : loo) avg += v[f];
    avg /= nb;
    double ss = 0;
    for (const auto& v : loo) ss += (v[f] - avg) * (v[f] - avg);
    r.error[f] = std::sqrt((nb - 1.0) / nb * ss);
  }
  return r;
}

std::vector<EstimatorFigure> estimator_figures(const EstimatorSums& s, const Distribution& target, int* blocks) {
  std::vector<EstimatorFigure> out;
  if (s.empty()) return out;
  const Distribution::Estimators spec = target.estimators();
  const Jackknife plain = jackknife(s.n, s.a, s.primaries, spec.derive);
  const Jackknife rew = jackknife(s.w, s.wa, s.primaries, spec.derive);
  if (blocks) *blocks = plain.blocks;
  for (std::size_t f = 0; f < spec.figures.size(); ++f) {
    EstimatorFigure e;
    e.name = spec.figures[f];
    e.flow = plain.value[f];
    e.flow_error = plain.error[f];
    e.reweighted = rew.value[f];
    e.reweighted_error = rew.error[f];
    if (f < spec.exact.size()) e.exact = spec.exact[f];
    out.push_back(e);
  }
  return out;
}

}  // namespace bf
