#include "src/io/metrics_mpi.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace bf {
namespace {

// Flat form of MetricSums for gathering.
std::vector<double> pack(const MetricSums& s) {
  const std::size_t k = s.modes.count.size();
  std::vector<double> v{static_cast<double>(s.reverse.n), s.reverse.max, s.reverse.s1, s.reverse.s2,
                        s.reverse.sum_log, s.has_forward ? 1.0 : 0.0, static_cast<double>(s.forward.n),
                        s.forward.max, s.forward.s1, s.forward.s2, s.forward.sum_log, static_cast<double>(k)};
  for (std::size_t c = 0; c < k; ++c) v.push_back(s.modes.min_dist2[c]);
  for (std::size_t c = 0; c < k; ++c) v.push_back(static_cast<double>(s.modes.count[c]));
  v.push_back(static_cast<double>(s.modes.non_finite));
  const auto& o = s.observables;
  v.push_back(static_cast<double>(o.o1.size()));
  for (const auto* a : {&o.o1, &o.o2, &o.wo1, &o.wo2}) v.insert(v.end(), a->begin(), a->end());
  v.push_back(static_cast<double>(o.h.size()));
  for (const auto* a : {&o.h, &o.wh}) v.insert(v.end(), a->begin(), a->end());
  v.push_back(static_cast<double>(s.momentum_samples));
  v.push_back(s.has_marginal_forward ? 1.0 : 0.0);
  for (const auto* w : {&s.marginal_reverse, &s.marginal_forward})
    v.insert(v.end(), {static_cast<double>(w->n), w->max, w->s1, w->s2, w->sum_log});
  const auto& e = s.estimators;
  v.push_back(static_cast<double>(e.primaries));
  v.push_back(static_cast<double>(e.n.size()));
  v.push_back(e.max);
  for (const auto* a : {&e.n, &e.w, &e.a, &e.wa}) v.insert(v.end(), a->begin(), a->end());
  // The reverse weights' tail, padded to a fixed length (MPI_Gather takes one length).
  v.push_back(static_cast<double>(s.reverse.top.size()));
  v.insert(v.end(), s.reverse.top.begin(), s.reverse.top.end());
  v.resize(v.size() + (LogWeightSums::kTailKeep - s.reverse.top.size()), 0.0);
  return v;
}

MetricSums unpack(const double* v) {
  MetricSums s;
  s.reverse = {static_cast<std::int64_t>(v[0]), v[1], v[2], v[3], v[4], {}};
  s.has_forward = v[5] != 0.0;
  s.forward = {static_cast<std::int64_t>(v[6]), v[7], v[8], v[9], v[10], {}};
  const std::size_t k = static_cast<std::size_t>(v[11]);
  for (std::size_t c = 0; c < k; ++c) s.modes.min_dist2.push_back(v[12 + c]);
  for (std::size_t c = 0; c < k; ++c) s.modes.count.push_back(static_cast<std::int64_t>(v[12 + k + c]));
  s.modes.non_finite = static_cast<std::int64_t>(v[12 + 2 * k]);
  const double* ob = v + 13 + 2 * k;
  const std::size_t m = static_cast<std::size_t>(ob[0]);
  auto& o = s.observables;
  o.o1.assign(ob + 1, ob + 1 + m);
  o.o2.assign(ob + 1 + m, ob + 1 + 2 * m);
  o.wo1.assign(ob + 1 + 2 * m, ob + 1 + 3 * m);
  o.wo2.assign(ob + 1 + 3 * m, ob + 1 + 4 * m);
  const double* hb = ob + 1 + 4 * m;
  const std::size_t nb = static_cast<std::size_t>(hb[0]);
  o.h.assign(hb + 1, hb + 1 + nb);
  o.wh.assign(hb + 1 + nb, hb + 1 + 2 * nb);
  const double* mb = hb + 1 + 2 * nb;
  s.momentum_samples = static_cast<int>(mb[0]);
  s.has_marginal_forward = mb[1] != 0.0;
  s.marginal_reverse = {static_cast<std::int64_t>(mb[2]), mb[3], mb[4], mb[5], mb[6], {}};
  s.marginal_forward = {static_cast<std::int64_t>(mb[7]), mb[8], mb[9], mb[10], mb[11], {}};
  const double* eb = mb + 12;
  auto& e = s.estimators;
  e.primaries = static_cast<int>(eb[0]);
  const std::size_t nbl = static_cast<std::size_t>(eb[1]), nk = nbl * static_cast<std::size_t>(e.primaries);
  e.max = eb[2];
  const double* ev = eb + 3;
  e.n.assign(ev, ev + nbl);
  e.w.assign(ev + nbl, ev + 2 * nbl);
  e.a.assign(ev + 2 * nbl, ev + 2 * nbl + nk);
  e.wa.assign(ev + 2 * nbl + nk, ev + 2 * nbl + 2 * nk);
  const double* tb = ev + 2 * nbl + 2 * nk;
  s.reverse.top.assign(tb + 1, tb + 1 + static_cast<std::size_t>(tb[0]));
  return s;
}

// n, max, s1, s2 and Σ log w over ranks (no tail).
LogWeightSums allreduce_weights(const LogWeightSums& local, MPI_Comm comm) {
  LogWeightSums r = local;
  double mx = local.max;
  MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_DOUBLE, MPI_MAX, comm);
  r.rescale_to(mx);
  double sums[3] = {r.s1, r.s2, r.sum_log};
  MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, comm);
  std::int64_t n = local.n;
  MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_INT64_T, MPI_SUM, comm);
  return {n, mx, sums[0], sums[1], sums[2], {}};
}

}  // namespace

MetricSums allreduce(const MetricSums& local, MPI_Comm comm) {
  MetricSums g = local;
  // 1. the largest log weights
  double mx[2] = {local.reverse.max, local.forward.max}, gmx[2];
  MPI_Allreduce(mx, gmx, 2, MPI_DOUBLE, MPI_MAX, comm);
  // 2. sums rescaled to them (the weighted observable sums with the reverse weights)
  const double obs_factor = (local.reverse.n == 0 || local.reverse.max == -INFINITY) ? 0.0 : std::exp(local.reverse.max - gmx[0]);
  LogWeightSums r = local.reverse, f = local.forward;
  r.rescale_to(gmx[0]);
  f.rescale_to(gmx[1]);
  double sums[6] = {r.s1, r.s2, r.sum_log, f.s1, f.s2, f.sum_log}, gsums[6];
  MPI_Allreduce(sums, gsums, 6, MPI_DOUBLE, MPI_SUM, comm);
  const std::size_t k = local.modes.count.size();
  std::vector<std::int64_t> counts{local.reverse.n, local.forward.n, local.has_forward ? 1 : 0,
                                   local.modes.non_finite};
  counts.insert(counts.end(), local.modes.count.begin(), local.modes.count.end());
  std::vector<std::int64_t> gcounts(counts.size());
  MPI_Allreduce(counts.data(), gcounts.data(), static_cast<int>(counts.size()), MPI_INT64_T, MPI_SUM, comm);
  // 3. minimum distances
  std::vector<double> gmin(k);
  MPI_Allreduce(local.modes.min_dist2.data(), gmin.data(), static_cast<int>(k), MPI_DOUBLE, MPI_MIN, comm);
  int size = 1, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  // 4. the reverse weights' tail: each rank's largest (as many as the fit of
  // the global n needs) gathered on the root, the largest of them broadcast.
  std::vector<double> top;
  {
    const std::size_t need = pareto_tail_size(gcounts[0]) + 1;
    const int mine = static_cast<int>(std::min(local.reverse.top.size(), need));
    std::vector<int> cnt(rank == 0 ? size : 0), displ(rank == 0 ? size : 0);
    MPI_Gather(&mine, 1, MPI_INT, cnt.data(), 1, MPI_INT, 0, comm);
    std::vector<double> all;
    if (rank == 0) {
      int total = 0;
      for (int r = 0; r < size; ++r) {
        displ[r] = total;
        total += cnt[r];
      }
      all.resize(static_cast<std::size_t>(total));
    }
    MPI_Gatherv(local.reverse.top.data(), mine, MPI_DOUBLE, all.data(), cnt.data(), displ.data(), MPI_DOUBLE, 0,
                comm);
    if (rank == 0) {
      top = largest_log_weights(std::move(all));
      if (top.size() > need) top.resize(need);
    }
    int len = static_cast<int>(top.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, comm);
    top.resize(static_cast<std::size_t>(len));
    MPI_Bcast(top.data(), len, MPI_DOUBLE, 0, comm);
  }

  g.reverse = {gcounts[0], gmx[0], gsums[0], gsums[1], gsums[2], std::move(top)};
  g.forward = {gcounts[1], gmx[1], gsums[3], gsums[4], gsums[5], {}};
  g.has_forward = gcounts[2] == size;
  g.modes.min_dist2 = gmin;
  g.modes.non_finite = gcounts[3];
  g.modes.count.assign(gcounts.begin() + 4, gcounts.end());
  // Estimator block sums: weighted ones at the common max, then summed (every rank has the same blocks).
  if (!local.estimators.empty()) {
    EstimatorSums e = local.estimators;
    e.rescale_to(gmx[0]);
    std::vector<double> v;
    for (const auto* a : {&e.n, &e.w, &e.a, &e.wa}) v.insert(v.end(), a->begin(), a->end());
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, comm);
    std::size_t o = 0;
    for (auto* a : {&e.n, &e.w, &e.a, &e.wa}) {
      std::copy(v.begin() + static_cast<std::ptrdiff_t>(o), v.begin() + static_cast<std::ptrdiff_t>(o + a->size()),
                a->begin());
      o += a->size();
    }
    g.estimators = e;
  }
  // The marginal estimate's weights (phase-space flows; every rank has the same K).
  g.marginal_reverse = allreduce_weights(local.marginal_reverse, comm);
  g.marginal_forward = allreduce_weights(local.marginal_forward, comm);
  int has_mf = local.has_marginal_forward ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &has_mf, 1, MPI_INT, MPI_MIN, comm);
  g.has_marginal_forward = has_mf == 1;
  // Observables: plain sums, and weighted sums at the common max.
  const std::size_t m = local.observables.o1.size();
  if (m > 0) {
    std::vector<double> ob;
    ob.insert(ob.end(), local.observables.o1.begin(), local.observables.o1.end());
    ob.insert(ob.end(), local.observables.o2.begin(), local.observables.o2.end());
    for (double v : local.observables.wo1) ob.push_back(v * obs_factor);
    for (double v : local.observables.wo2) ob.push_back(v * obs_factor);
    const std::size_t nb = local.observables.h.size();  // the same on every rank (the target's)
    ob.insert(ob.end(), local.observables.h.begin(), local.observables.h.end());
    for (double v : local.observables.wh) ob.push_back(v * obs_factor);
    std::vector<double> gob(ob.size());
    MPI_Allreduce(ob.data(), gob.data(), static_cast<int>(ob.size()), MPI_DOUBLE, MPI_SUM, comm);
    g.observables.o1.assign(gob.begin(), gob.begin() + m);
    g.observables.o2.assign(gob.begin() + m, gob.begin() + 2 * m);
    g.observables.wo1.assign(gob.begin() + 2 * m, gob.begin() + 3 * m);
    g.observables.wo2.assign(gob.begin() + 3 * m, gob.begin() + 4 * m);
    g.observables.h.assign(gob.begin() + 4 * m, gob.begin() + 4 * m + nb);
    g.observables.wh.assign(gob.begin() + 4 * m + nb, gob.begin() + 4 * m + 2 * nb);
  }
  return g;
}

std::vector<MetricSums> gather_to_root(const MetricSums& local, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const std::vector<double> mine = pack(local);
  const int len = static_cast<int>(mine.size());
  std::vector<double> all(rank == 0 ? static_cast<std::size_t>(len) * size : 0);
  MPI_Gather(mine.data(), len, MPI_DOUBLE, all.data(), len, MPI_DOUBLE, 0, comm);
  std::vector<MetricSums> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r) out.push_back(unpack(all.data() + static_cast<std::size_t>(r) * len));
  return out;
}

std::string metrics_table_header(bool score_model) {
  if (score_model) return "rank      samples  score error +- its standard error\n";
  return "rank      samples   reverse_kl  reverse_ess        log_z     stderr   forward_kl  forward_ess  "
         "hausdorff  cover_tv  nonfinite      n_eff  pareto_k\n";
}

std::string metrics_table_row(const std::string& who, const Metrics& m) {
  char buf[512];
  if (m.score_model) {
    std::snprintf(buf, sizeof buf, "%-6s %10lld  score_error %.6g +- %.3g\n", who.c_str(),
                  static_cast<long long>(m.score_samples), m.score_error, m.score_error_stderr);
    return buf;
  }
  std::snprintf(buf, sizeof buf,
                "%-6s %10lld %12.6g %12.6g %12.6g %10.3g %12.6g %12.6g %10.4g %10.4g %10lld %10.4g %9.3g%s\n",
                who.c_str(), static_cast<long long>(m.samples), m.reverse_kl, m.reverse_ess, m.log_z,
                m.log_z_stderr, m.forward_kl, m.forward_ess, m.hausdorff, m.mode_coverage_tv,
                static_cast<long long>(m.non_finite_samples), m.reverse_n_eff, m.pareto_k,
                m.log_z_stderr_reliable ? "" : "  (log_z stderr unreliable)");
  return buf;
}

std::string log_z_reliability(const Metrics& m) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "log_z error bar: n_eff %.4g of %lld, Pareto k %.3g (threshold %.2g)%s",
                m.reverse_n_eff, static_cast<long long>(m.samples), m.pareto_k, kParetoKThreshold,
                m.log_z_stderr_reliable
                    ? ""
                    : (std::isfinite(m.pareto_k) && m.pareto_k > kParetoKThreshold
                           ? "; UNRELIABLE: the weights' tail is too heavy for the variance estimate"
                           : "; UNRELIABLE: too few effective samples (n_eff < 100) or too few for the tail fit"));
  return buf;
}

std::string score_text(const Metrics& m) {
  if (!m.score_model) return "";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "score error E|F - grad log pi|^2 / E|grad log pi|^2 = %.6g +- %.3g (%lld exact samples of the "
                "target; E|grad log pi|^2 = %.6g)\n",
                m.score_error, m.score_error_stderr, static_cast<long long>(m.score_samples), m.score_norm);
  return buf;
}

std::string marginal_text(const Metrics& m) {
  if (!m.phase_space) return "";
  if (m.momentum_samples <= 0) return "marginal estimate: off (eval.momentum_samples = 0)\n";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "marginal estimate (K = %d momenta per sample): reverse_kl %.6g (a lower bound)  reverse_ess %.6g",
                m.momentum_samples, m.marginal_reverse_kl, m.marginal_reverse_ess);
  std::string out = buf;
  if (std::isfinite(m.marginal_forward_kl)) {
    std::snprintf(buf, sizeof buf, "  forward_kl %.6g (an upper bound)  forward_ess %.6g", m.marginal_forward_kl,
                  m.marginal_forward_ess);
    out += buf;
  }
  out += "\n";
  if (m.marginal_unconverged())
    out += "NOT CONVERGED: the marginal ESS estimate is below the phase-space ESS, which bounds the true one "
           "from below; raise eval.momentum_samples\n";
  return out;
}

std::string phase_space_text(const Metrics& m) {
  if (!m.phase_space) return "";
  return "reverse_kl and reverse_ess" + std::string(m.has_forward ? ", forward_kl and forward_ess" : "") +
         " are of the flow on phase space (q, p): the marginal KL is at most, the marginal ESS at least that; "
         "log Z is unbiased; the marginal KL estimates below tighten as K grows\n" +
         marginal_text(m);
}

std::string estimators_text(const Metrics& m) {
  if (m.estimators.empty()) return "";
  char buf[320];
  std::snprintf(buf, sizeof buf, "figures with jackknife errors (%d blocks of samples):\n  %-16s %26s %26s %12s\n",
                m.estimator_blocks, "", "flow", "reweighted", "exact");
  std::string out = buf;
  for (const auto& e : m.estimators) {
    std::snprintf(buf, sizeof buf, "  %-16s %13.6g +- %-9.3g %13.6g +- %-9.3g", e.name.c_str(), e.flow, e.flow_error,
                  e.reweighted, e.reweighted_error);
    out += buf;
    if (std::isfinite(e.exact)) {
      std::snprintf(buf, sizeof buf, " %12.6g", e.exact);
      out += buf;
    }
    out += "\n";
  }
  if (!m.log_z_stderr_reliable)
    out += "  (the importance weights fail the log_z reliability test above: the reweighted errors are too "
           "small where the weights' tail is heavy)\n";
  return out;
}

std::string estimators_cell(const Metrics& m) {
  std::string out;
  char buf[160];
  for (const auto& e : m.estimators) {
    std::snprintf(buf, sizeof buf, "%s%s=%.6g+-%.3g", out.empty() ? "" : ";", e.name.c_str(), e.reweighted,
                  e.reweighted_error);
    out += buf;
  }
  return out;
}

std::string observables_text(const Metrics& m) {
  std::string out;
  char buf[256];
  for (const auto& o : m.observables) {
    std::snprintf(buf, sizeof buf, "  %-16s %.6g +- %.4g   reweighted %.6g +- %.4g", o.name.c_str(), o.mean, o.sd,
                  o.mean_reweighted, o.sd_reweighted);
    out += buf;
    if (std::isfinite(o.exact_mean)) {
      std::snprintf(buf, sizeof buf, "   exact %.6g +- %.4g", o.exact_mean, o.exact_sd);
      out += buf;
    }
    out += "\n";
  }
  return out;
}

std::string symmetry_text(const Metrics& m) {
  std::string out;
  char buf[512];
  if (std::isfinite(m.test_log_likelihood)) {
    std::snprintf(buf, sizeof buf,
                  "held-out log-likelihood E log q_K(y) = %.6g +- %.3g (fresh exact samples, K = %d momenta; a lower "
                  "bound rising with K)\n",
                  m.test_log_likelihood, m.test_log_likelihood_stderr, m.momentum_samples);
    out += buf;
  }
  if (!m.angular_moments.empty()) {
    out += "angular moments |mean exp(i k theta)|, k = 1..4:";
    for (double a : m.angular_moments) out += " " + fmt_num(a);
    out += " (reweighted:";
    for (double a : m.angular_moments_reweighted) out += " " + fmt_num(a);
    std::snprintf(buf, sizeof buf, "); 0 under rotation invariance, noise level 1/sqrt(n) = %.3g\n",
                  m.samples > 0 ? 1.0 / std::sqrt(static_cast<double>(m.samples)) : std::nan(""));
    out += buf;
  }
  if (std::isfinite(m.angular_tv)) {
    const double bins = static_cast<double>(m.histogram.flow.size());
    std::snprintf(buf, sizeof buf,
                  "angle histogram: total variation from the uniform over %d bins = %.4g (noise level "
                  "sqrt(bins / 2 pi n) = %.3g)\n",
                  static_cast<int>(bins), m.angular_tv,
                  m.samples > 0 ? std::sqrt(bins / (2.0 * kPi * static_cast<double>(m.samples))) : std::nan(""));
    out += buf;
  }
  for (std::size_t k = 0; k < m.symmetry_constraint.size(); ++k) {
    std::snprintf(buf, sizeof buf, "symmetry constraint E[{g_%zu, H}^2] = %.4g +- %.2g\n", k,
                  m.symmetry_constraint[k], m.symmetry_constraint_stderr[k]);
    out += buf;
  }
  return out;
}

Json to_json(const Metrics& m) {
  Json j = Json::object();
  if (m.score_model) {  // a score model has none of the sampler's figures
    j["score_error"] = m.score_error;
    j["score_error_stderr"] = m.score_error_stderr;
    j["score_norm"] = m.score_norm;
    j["score_samples"] = static_cast<long long>(m.score_samples);
    return j;
  }
  // A phase-space flow's figures on (q, p) under their own names.
  const std::string ps = m.phase_space ? "phase_space_" : "";
  j[ps + "reverse_kl"] = m.reverse_kl;
  j[ps + "reverse_ess"] = m.reverse_ess;
  if (m.momentum_samples > 0) {
    j["momentum_samples"] = m.momentum_samples;
    j["marginal_reverse_kl"] = m.marginal_reverse_kl;
    j["marginal_reverse_ess"] = m.marginal_reverse_ess;
    j["marginal_converged"] = !m.marginal_unconverged();
    if (std::isfinite(m.marginal_forward_kl)) {
      j["marginal_forward_kl"] = m.marginal_forward_kl;
      j["marginal_forward_ess"] = m.marginal_forward_ess;
    }
  }
  j["log_z"] = m.log_z;
  j["log_z_stderr"] = m.log_z_stderr;
  j["log_z_stderr_reliable"] = m.log_z_stderr_reliable;
  j["reverse_n_eff"] = m.reverse_n_eff;
  if (std::isfinite(m.pareto_k)) j["pareto_k"] = m.pareto_k;
  j["pareto_k_threshold"] = kParetoKThreshold;
  j["hausdorff"] = m.hausdorff;
  j["mode_coverage_tv"] = m.mode_coverage_tv;
  if (m.has_forward) {
    j[ps + "forward_kl"] = m.forward_kl;
    j[ps + "forward_ess"] = m.forward_ess;
    j["forward_samples"] = static_cast<long long>(m.forward_samples);
  }
  j["mode_fractions"] = Json(m.mode_fractions);
  j["mode_weights"] = Json(m.mode_weights);
  j["samples"] = static_cast<long long>(m.samples);
  j["non_finite_samples"] = static_cast<long long>(m.non_finite_samples);
  if (std::isfinite(m.test_log_likelihood)) {
    j["test_log_likelihood"] = m.test_log_likelihood;
    j["test_log_likelihood_stderr"] = m.test_log_likelihood_stderr;
  }
  if (!m.angular_moments.empty()) {
    j["angular_moments"] = Json(m.angular_moments);
    j["angular_moments_reweighted"] = Json(m.angular_moments_reweighted);
  }
  if (std::isfinite(m.angular_tv)) j["angular_tv"] = m.angular_tv;
  if (!m.symmetry_constraint.empty()) {
    j["symmetry_constraint"] = m.symmetry_constraint.size() == 1 ? Json(m.symmetry_constraint[0]) : Json(m.symmetry_constraint);
    j["symmetry_constraint_stderr"] =
        m.symmetry_constraint.size() == 1 ? Json(m.symmetry_constraint_stderr[0]) : Json(m.symmetry_constraint_stderr);
  }
  if (!m.observables.empty()) {
    Json obs = Json::object();
    for (const auto& o : m.observables) {
      Json x = Json::object();
      x["mean"] = o.mean;
      x["sd"] = o.sd;
      x["mean_reweighted"] = o.mean_reweighted;
      x["sd_reweighted"] = o.sd_reweighted;
      if (std::isfinite(o.exact_mean)) {
        x["exact_mean"] = o.exact_mean;
        x["exact_sd"] = o.exact_sd;
      }
      obs[o.name] = x;
    }
    j["observables"] = obs;
  }
  if (!m.estimators.empty()) {
    Json est = Json::object();
    for (const auto& e : m.estimators) {
      Json x = Json::object();
      x["flow"] = e.flow;
      x["flow_error"] = e.flow_error;
      x["reweighted"] = e.reweighted;
      x["reweighted_error"] = e.reweighted_error;
      if (std::isfinite(e.exact)) x["exact"] = e.exact;
      est[e.name] = x;
    }
    j["estimators"] = est;
    j["estimator_blocks"] = m.estimator_blocks;
  }
  return j;
}

}  // namespace bf
