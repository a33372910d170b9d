#include "src/run/evaluation.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "src/io/hdf5_util.hpp"
#include "src/io/metrics_mpi.hpp"

#include <cstdio>
#include <stdexcept>

namespace bf {

namespace detail {

/// Sums of the evaluation's figures outside MetricSums: the held-out log-likelihood
/// (n, Σ ℓ, Σ ℓ²) and per generator Σ c², Σ c⁴ over n_c points; plain sums, so ranks add.
/// (Not in an anonymous namespace: CUDA's extended lambdas need an enclosing function it can name.)
struct ExtraSums {
  explicit ExtraSums(int generators) : g(generators), v(4 + 2 * static_cast<std::size_t>(generators), 0.0) {}
  int g;
  std::vector<double> v;  // n_ll, Σℓ, Σℓ², n_c, Σc²_k, Σc⁴_k

  void add_log_likelihood(const Vector<double>& l) {
    double s1 = 0, s2 = 0;
    Kokkos::parallel_reduce(
        "bf::eval_ll", Policy(0, l.extent(0)),
        KOKKOS_LAMBDA(const std::int64_t i, double& a, double& b) {
          a += l(i);
          b += l(i) * l(i);
        },
        s1, s2);
    v[0] += static_cast<double>(l.extent(0));
    v[1] += s1;
    v[2] += s2;
  }
  void add_bracket(const Matrix<double>& c) {
    v[3] += static_cast<double>(c.extent(0));
    for (int k = 0; k < g; ++k) {
      double s2 = 0, s4 = 0;
      Kokkos::parallel_reduce(
          "bf::eval_bracket", Policy(0, c.extent(0)),
          KOKKOS_LAMBDA(const std::int64_t i, double& a, double& b) {
            const double c2 = c(i, k) * c(i, k);
            a += c2;
            b += c2 * c2;
          },
          s2, s4);
      v[4 + k] += s2;
      v[4 + g + k] += s4;
    }
  }
  void reduce(MPI_Comm comm) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, comm);
  }
  /// mean and standard error of the mean from n, Σx, Σx².
  static std::pair<double, double> mean_se(double n, double s1, double s2) {
    if (!(n > 0)) return {std::nan(""), std::nan("")};
    const double mean = s1 / n, var = n > 1 ? std::fmax(0.0, (s2 - n * mean * mean) / (n - 1)) : std::nan("");
    return {mean, std::sqrt(var / n)};
  }
  void finalize(Metrics& m) const {
    if (v[0] > 0) std::tie(m.test_log_likelihood, m.test_log_likelihood_stderr) = mean_se(v[0], v[1], v[2]);
    m.symmetry_constraint.clear();
    m.symmetry_constraint_stderr.clear();
    for (int k = 0; k < g && v[3] > 0; ++k) {
      const auto [mean, se] = mean_se(v[3], v[4 + k], v[4 + g + k]);
      m.symmetry_constraint.push_back(mean);
      m.symmetry_constraint_stderr.push_back(se);
    }
  }
};

}  // namespace detail

namespace {

/// A score model's figures: its force against ∇log π on `samples` exact samples of the
/// target (the evaluation's common random numbers: Purpose::target_sample, step 0, by
/// global index), in chunks of the model's batch, the sums reduced over ranks.
template <class T>
Evaluation evaluate_score(const Environment& env, Model<T>& model, const Vector<T>& params, const Distribution& target,
                          std::uint32_t seed, long long samples) {
  const Slice mine = split_range(samples, env.rank(), env.size());
  const int d = target.dim();
  const long long chunk = std::max(1, model.max_batch());
  Matrix<double> x("score_x", std::min<long long>(chunk, std::max<long long>(1, mine.count())), d);
  Matrix<double> f("score_f", x.extent(0), d);
  ScoreSums local;
  for (long long c0 = 0; c0 < mine.count(); c0 += chunk) {
    const long long n = std::min<long long>(chunk, mine.count() - c0);
    const Matrix<double> xs = Kokkos::subview(x, std::make_pair(0LL, n), Kokkos::ALL());
    const Matrix<double> fs = Kokkos::subview(f, std::make_pair(0LL, n), Kokkos::ALL());
    target.sample(seed, Purpose::target_sample, 0, static_cast<std::uint64_t>(mine.begin + c0), xs);
    model.score(params, xs, fs);
    local = merge(local, score_sums(target, xs, fs));
  }
  Kokkos::fence();
  const auto mine_sums = local.pack();
  auto sums = mine_sums;
  MPI_Allreduce(MPI_IN_PLACE, sums.data(), ScoreSums::kCount, MPI_DOUBLE, MPI_SUM, env.comm());
  std::vector<double> all(env.root() ? static_cast<std::size_t>(ScoreSums::kCount) * env.size() : 0);
  MPI_Gather(mine_sums.data(), ScoreSums::kCount, MPI_DOUBLE, all.data(), ScoreSums::kCount, MPI_DOUBLE, 0, env.comm());
  Evaluation ev;
  finalize_score(local, ev.local);
  finalize_score(ScoreSums::unpack(sums.data()), ev.global);
  for (int r = 0; env.root() && r < env.size(); ++r) {
    ev.per_rank.emplace_back();
    finalize_score(ScoreSums::unpack(all.data() + static_cast<std::size_t>(r) * ScoreSums::kCount), ev.per_rank.back());
  }
  return ev;
}

}  // namespace

template <class T>
Evaluation evaluate_model(const Environment& env, Model<T>& model, const Vector<T>& params,
                          const Distribution& target, std::uint32_t seed, long long samples, bool forward,
                          int momentum_samples) {
  if (model.has_score()) return evaluate_score(env, model, params, target, seed, samples);
  const Slice mine = split_range(samples, env.rank(), env.size());
  const int d = target.dim();
  const int chunk = std::max(1, model.max_batch());
  Matrix<double> x("eval_x", std::min<long long>(chunk, std::max<long long>(1, mine.count())), d);
  Vector<double> lq("eval_log_q", x.extent(0));
  const bool exact = forward && target.has_sampler() && std::isfinite(target.log_z());
  const bool fwd = exact && model.has_log_density();
  // A phase-space flow's marginal estimate (K momenta per sample), at its
  // samples (momentum stream 0) and at the exact target samples (stream 1).
  const int K = model.phase_space() ? std::max(0, momentum_samples) : 0;
  Vector<double> lm("eval_log_q_marginal", K > 0 ? x.extent(0) : 0);
  // Sums beside the metric suite's (ExtraSums): the held-out log-likelihood at the exact
  // samples, and the symmetry bracket's E[c²] (the third stream of its momenta).
  const int G = model.symmetry_generators();
  Matrix<double> cb("eval_bracket", G > 0 ? x.extent(0) : 0, std::max(G, 1));
  detail::ExtraSums extra(G);
  MetricSums local;
  bool first_chunk = true;
  for (long long c0 = 0; c0 < mine.count() || first_chunk; c0 += chunk) {
    const long long n = std::min<long long>(chunk, mine.count() - c0);
    const auto xs = Kokkos::subview(x, std::make_pair(0LL, std::max(0LL, n)), Kokkos::ALL());
    const auto ls = Kokkos::subview(lq, std::make_pair(0LL, std::max(0LL, n)));
    Matrix<double> xv = xs;
    Vector<double> lv = ls;
    const std::uint64_t first = static_cast<std::uint64_t>(mine.begin + c0);  // global index of the chunk's first sample
    if (n > 0) model.sample(params, seed, Purpose::eval, 0, first, xv, lv);
    MetricSums s = metric_sums(target, xv, lv, first, samples);
    const Vector<double> lmv = Kokkos::subview(lm, std::make_pair(0LL, K > 0 ? std::max(0LL, n) : 0LL));
    if (K > 0) {
      if (n > 0) model.marginal_log_density(params, xv, K, seed, 0, first, lmv);
      add_marginal_sums(s, target, xv, lmv, K, false);
    }
    if (exact && K > 0) {
      if (n > 0) {
        target.sample(seed, Purpose::target_sample, 0, first, xv);
        model.marginal_log_density(params, xv, K, seed, 1, first, lmv);
        extra.add_log_likelihood(lmv);
      }
      add_marginal_sums(s, target, xv, lmv, K, true);
    }
    if (fwd) {
      if (n > 0) {
        target.sample(seed, Purpose::target_sample, 0, first, xv);
        model.log_density(params, xv, lv);
      }
      add_forward_sums(s, target, xv, lv);
    }
    if (G > 0 && n > 0) {  // at exact samples if the target has them (else xv still holds the flow's)
      if (target.has_sampler()) target.sample(seed, Purpose::target_sample, 0, first, xv);
      const Matrix<double> cv = Kokkos::subview(cb, std::make_pair(0LL, n), Kokkos::ALL());
      model.symmetry_bracket(params, xv, seed, 2, first, cv);
      extra.add_bracket(cv);
    }
    local = first_chunk ? s : merge(local, s);
    first_chunk = false;
    if (n <= 0) break;
  }
  Kokkos::fence();
  Evaluation ev;
  ev.local = finalize(local, target);
  ev.global = finalize(allreduce(local, env.comm()), target);
  for (const auto& s : gather_to_root(local, env.comm())) ev.per_rank.push_back(finalize(s, target));
  extra.finalize(ev.local);
  extra.reduce(env.comm());
  extra.finalize(ev.global);
  ev.local.phase_space = ev.global.phase_space = model.phase_space();
  for (auto& m : ev.per_rank) m.phase_space = model.phase_space();
  return ev;
}

void write_histogram(const HistogramReport& h, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    h5::Handle f = h5::create_file(tmp);
    h5::write_string(f, "format", "boltzflow-histogram");
    h5::write_string(f, "observable", h.observable);
    h5::write_string(f, "reference_name", h.reference_name);
    std::vector<double> edges;
    const int bins = static_cast<int>(h.flow.size());
    for (int b = 0; b <= bins; ++b) edges.push_back(h.lo + (h.hi - h.lo) * b / bins);
    h5::write_array(f, "edges", edges, false);
    h5::write_array(f, "flow", h.flow, false);
    h5::write_array(f, "reweighted", h.reweighted, false);
    h5::write_array(f, "reference", h.reference, false);
    h5::write_array(f, "below", {h.flow_below, h.reweighted_below}, false);
    h5::write_array(f, "above", {h.flow_above, h.reweighted_above}, false);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
}

template Evaluation evaluate_model<float>(const Environment&, Model<float>&, const Vector<float>&,
                                          const Distribution&, std::uint32_t, long long, bool, int);
template Evaluation evaluate_model<double>(const Environment&, Model<double>&, const Vector<double>&,
                                           const Distribution&, std::uint32_t, long long, bool, int);

}  // namespace bf
