// Run at 1, 2 and 3 MPI ranks: samples do not depend on the rank count, and
// the metrics reduced across ranks equal the single-process metrics on the
// same samples.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <random>

#include "physics/base_distributions.hpp"
#include "physics/mcmc.hpp"
#include "physics/metrics.hpp"
#include "physics/phi4.hpp"
#include "physics/targets.hpp"
#include "src/io/metrics_mpi.hpp"
#include "src/io/mpi_env.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;

namespace {

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

std::unique_ptr<Distribution> target(const std::string& name) {
  TargetSpec s;
  s.name = name;
  s.quadrature_grid = 1000;
  return make_target(s);
}

// Metric sums of samples [begin, end) drawn from `proposal` (global indices).
MetricSums sums_of_slice(const Distribution& tgt, const Distribution& proposal, long long begin, long long end,
                         bool forward, long long total = 0) {
  const long long n = end - begin;
  Matrix<double> x("x", n, tgt.dim());
  Vector<double> lq("lq", n);
  proposal.sample(5u, Purpose::check_proposal, 0, static_cast<std::uint64_t>(begin), x);
  proposal.log_density(x, lq);
  MetricSums s = metric_sums(tgt, x, lq, static_cast<std::uint64_t>(begin), total);
  if (forward) {
    Matrix<double> y("y", n, tgt.dim());
    Vector<double> lqy("lqy", n);
    tgt.sample(5u, Purpose::target_sample, 0, static_cast<std::uint64_t>(begin), y);
    proposal.log_density(y, lqy);
    add_forward_sums(s, tgt, y, lqy);
  }
  return s;
}

void expect_rel(double a, double b, double tol, const std::string& what) {
  if (std::isnan(a) && std::isnan(b)) return;
  EXPECT_LE(std::fabs(a - b), tol * std::fmax(1.0, std::fabs(b))) << what << ": " << a << " vs " << b;
}

}  // namespace

TEST(MpiSamples, DoNotDependOnRankCount) {
  const long long n = 1001;  // uneven split on 2 and 3 ranks
  std::vector<std::unique_ptr<Distribution>> dists;
  dists.push_back(target("gmm9"));
  dists.push_back(std::make_unique<GeneralizedGaussian>(3, 1.0, 4.0));
  dists.push_back(std::make_unique<SoftUniform>(3, 3.0));
  for (const auto& d : dists) {
    const Slice sl = split_range(n, rank(), size());
    Matrix<double> x("x", sl.count(), d->dim());
    d->sample(9u, Purpose::base_sample, 4u, static_cast<std::uint64_t>(sl.begin), x);
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    std::vector<int> counts(size()), displs(size());
    for (int r = 0; r < size(); ++r) {
      const Slice s = split_range(n, r, size());
      counts[r] = static_cast<int>(s.count() * d->dim());
      displs[r] = static_cast<int>(s.begin * d->dim());
    }
    std::vector<double> all(static_cast<std::size_t>(n) * d->dim());
    MPI_Gatherv(h.data(), counts[rank()], MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0,
                MPI_COMM_WORLD);
    if (rank() == 0) {
      Matrix<double> ref("ref", n, d->dim());
      d->sample(9u, Purpose::base_sample, 4u, 0, ref);
      const auto hr = test::host_rows(ref);
      for (long long i = 0; i < n; ++i)
        for (int j = 0; j < d->dim(); ++j)
          ASSERT_EQ(all[static_cast<std::size_t>(i) * d->dim() + j], hr[i][j]) << d->name() << " sample " << i;
    }
  }
}

TEST(MpiMetrics, ReductionEqualsSerial) {
  const long long n = 20001;
  for (const std::string name : {"gmm4", "gmm2asym", "phi4", "supernova"}) {
    const auto tgt = target(name);
    double far = 1.0;
    for (const auto& m : tgt->modes().means)
      for (double v : m) far = std::fmax(far, 1.5 * std::fabs(v));
    const auto proposal = GeneralizedGaussian::gaussian(tgt->dim(), far);
    const bool fwd = tgt->has_sampler();
    const Slice sl = split_range(n, rank(), size());
    const MetricSums local = sums_of_slice(*tgt, *proposal, sl.begin, sl.end, fwd, n);
    const Metrics global = finalize(allreduce(local, MPI_COMM_WORLD), *tgt);
    // The same samples in one process.
    const Metrics serial = finalize(sums_of_slice(*tgt, *proposal, 0, n, fwd, n), *tgt);
    // The jackknife figures: blocks by global index, so the same on any rank count.
    ASSERT_EQ(global.estimators.size(), serial.estimators.size()) << name;
    EXPECT_EQ(global.estimator_blocks, serial.estimator_blocks) << name;
    EXPECT_EQ(serial.estimators.empty(), name != "phi4" && name != "supernova") << name;
    for (std::size_t k = 0; k < global.estimators.size(); ++k) {
      const auto &g = global.estimators[k], &e = serial.estimators[k];
      expect_rel(g.flow, e.flow, 1e-10, name + " " + e.name);
      expect_rel(g.flow_error, e.flow_error, 1e-8, name + " " + e.name + " error");
      expect_rel(g.reweighted, e.reweighted, 1e-10, name + " " + e.name + " reweighted");
      expect_rel(g.reweighted_error, e.reweighted_error, 1e-8, name + " " + e.name + " reweighted error");
    }
    EXPECT_EQ(global.samples, n);
    expect_rel(global.reverse_kl, serial.reverse_kl, 1e-12, name + " reverse_kl");
    expect_rel(global.reverse_ess, serial.reverse_ess, 1e-12, name + " reverse_ess");
    expect_rel(global.log_z, serial.log_z, 1e-12, name + " log_z");
    expect_rel(global.log_z_stderr, serial.log_z_stderr, 1e-12, name + " log_z_stderr");
    expect_rel(global.forward_kl, serial.forward_kl, 1e-12, name + " forward_kl");
    expect_rel(global.forward_ess, serial.forward_ess, 1e-12, name + " forward_ess");
    EXPECT_EQ(global.hausdorff, serial.hausdorff) << name << ": min/max reduce exactly";
    EXPECT_TRUE(global.pareto_k == serial.pareto_k || (std::isnan(global.pareto_k) && std::isnan(serial.pareto_k)))
        << name << ": the tail is the same largest weights on any rank count: " << global.pareto_k << " vs "
        << serial.pareto_k;
    EXPECT_EQ(global.log_z_stderr_reliable, serial.log_z_stderr_reliable) << name;
    EXPECT_EQ(global.mode_fractions, serial.mode_fractions) << name << ": integer counts";
    ASSERT_EQ(global.observables.size(), serial.observables.size());
    for (std::size_t k = 0; k < global.observables.size(); ++k) {
      expect_rel(global.observables[k].mean, serial.observables[k].mean, 1e-12, name + " observable mean");
      expect_rel(global.observables[k].sd, serial.observables[k].sd, 1e-10, name + " observable sd");
      expect_rel(global.observables[k].mean_reweighted, serial.observables[k].mean_reweighted, 1e-12,
                 name + " reweighted mean");
      expect_rel(global.observables[k].sd_reweighted, serial.observables[k].sd_reweighted, 1e-10,
                 name + " reweighted sd");
    }
    // Per-rank sums gathered and merged on the root give the same figures.
    const auto per_rank = gather_to_root(local, MPI_COMM_WORLD);
    if (rank() == 0) {
      MetricSums merged = per_rank[0];
      for (std::size_t r = 1; r < per_rank.size(); ++r) merged = merge(merged, per_rank[r]);
      const Metrics m = finalize(merged, tgt->modes());
      expect_rel(m.reverse_ess, serial.reverse_ess, 1e-12, name + " merged reverse_ess");
      expect_rel(m.log_z, serial.log_z, 1e-12, name + " merged log_z");
    }
  }
}

// Samples with a NaN or infinite coordinate are counted, and left out of the
// mode coverage and the Hausdorff distance (they were assigned to a mode).
TEST(MpiMetrics, NonFiniteSamplesAreCountedNotAssigned) {
  const auto tgt = target("gmm4");
  const auto& means = tgt->modes().means;
  ASSERT_EQ(means.size(), 4u);
  const double nan = std::nan(""), inf = INFINITY;
  // Rows 0–7 sit on the four modes, two each; rows 8–11 are not finite.
  std::vector<std::vector<double>> all;
  for (int i = 0; i < 8; ++i) all.push_back(means[i % 4]);
  all.push_back({nan, 0.0});
  all.push_back({inf, 0.0});
  all.push_back({0.0, -inf});
  all.push_back({nan, nan});
  const Slice sl = split_range(static_cast<long long>(all.size()), rank(), size());
  std::vector<std::vector<double>> mine(all.begin() + sl.begin, all.begin() + sl.end);
  const Matrix<double> x = test::device_matrix(mine);
  Vector<double> lq("lq", sl.count());
  tgt->log_density(x, lq);
  const MetricSums local = metric_sums(*tgt, x, lq);
  const Metrics m = finalize(allreduce(local, MPI_COMM_WORLD), *tgt);
  EXPECT_EQ(m.samples, 12);
  EXPECT_EQ(m.non_finite_samples, 4);
  EXPECT_EQ(m.mode_fractions, (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
  EXPECT_EQ(m.mode_coverage_tv, 0.0);
  EXPECT_EQ(m.hausdorff, 0.0);
  EXPECT_EQ(to_json(m).at("non_finite_samples").get<long long>(), 4);
  const auto per_rank = gather_to_root(local, MPI_COMM_WORLD);
  if (rank() == 0) {
    MetricSums merged = per_rank[0];
    for (std::size_t r = 1; r < per_rank.size(); ++r) merged = merge(merged, per_rank[r]);
    EXPECT_EQ(finalize(merged, tgt->modes()).non_finite_samples, 4) << "gathered and merged";
  }
}

// The tail fit on exact generalized Pareto draws of known shape ξ:
// x = σ((1 − u)^{−ξ} − 1)/ξ.
TEST(Metrics, GeneralizedParetoShapeOfKnownTails) {
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (double xi : {-0.3, 0.2, 0.5, 0.8, 1.2}) {
    std::vector<double> x(4000);
    for (double& v : x) v = 2.0 * (std::pow(1.0 - u01(rng), -xi) - 1.0) / xi;
    EXPECT_NEAR(generalized_pareto_shape(x), xi, 0.06) << "xi = " << xi;
  }
  // Log weights whose top follows a Pareto tail of index 1/ξ: w = (1 − u)^{−ξ}.
  std::vector<double> lw(200000);
  for (double& v : lw) v = -0.8 * std::log(1.0 - u01(rng));
  EXPECT_NEAR(pareto_k_hat(largest_log_weights(lw), static_cast<std::int64_t>(lw.size())), 0.8, 0.1);
  EXPECT_TRUE(std::isnan(pareto_k_hat({0.0, -1.0, -2.0}, 3))) << "too few samples for a fit";
}

// log Z's error bar: N(0, I₂) from the proposal N(0, s² I₂). At s = 0.5 the
// weights have an infinite variance (a tail of shape k = 3/4): flagged. At
// s = 1.5 they are bounded: reliable, and the error bar is calibrated.
TEST(MpiMetrics, LogZErrorBarIsFlaggedForHeavyTailsAndCoversOtherwise) {
  const int D = 2;
  const long long n = 4096;
  const auto tgt = GeneralizedGaussian::gaussian(D, 1.0);
  const Slice sl = split_range(n, rank(), size());
  for (double s : {0.5, 1.5}) {
    const auto proposal = GeneralizedGaussian::gaussian(D, s);
    int flagged = 0, covered = 0;
    double z2 = 0;  // Σ z², z = (log Ẑ − log Z)/stderr
    for (std::uint32_t seed = 1; seed <= 20; ++seed) {
      Matrix<double> x("x", sl.count(), D);
      Vector<double> lq("lq", sl.count());
      proposal->sample(seed, Purpose::check_proposal, 0, static_cast<std::uint64_t>(sl.begin), x);
      proposal->log_density(x, lq);
      const Metrics m = finalize(allreduce(metric_sums(*tgt, x, lq), MPI_COMM_WORLD), tgt->modes());
      EXPECT_NEAR(m.reverse_n_eff, m.reverse_ess * n, 1e-9 * n);
      flagged += m.log_z_stderr_reliable ? 0 : 1;
      const double z = (m.log_z - tgt->log_z()) / m.log_z_stderr;
      covered += std::fabs(z) <= 2.5 ? 1 : 0;
      z2 += z * z;
      if (s > 1) {
        EXPECT_LT(m.pareto_k, 0.3) << "bounded weights, seed " << seed;
      }
    }
    if (s < 1) {
      EXPECT_GE(flagged, 18) << "infinite-variance weights flagged";
    } else {
      EXPECT_EQ(flagged, 0);
      // Calibrated both ways: the ±2.5σ interval covers log Z (a 2× too small
      // error bar would cover in ~16 of 20), and the rms of z is near 1.
      EXPECT_GE(covered, 18) << "the 2.5-sigma interval covers log Z";
      EXPECT_NEAR(std::sqrt(z2 / 20), 1.0, 0.4) << "rms of (log Z estimate − log Z)/stderr";
    }
  }
}

TEST(MpiMetrics, ExactSamplerHasUnitEssAndZeroKl) {
  const long long n = 30000;
  for (const std::string name : {"gmm4", "gmm2asym", "gmm9"}) {
    const auto tgt = target(name);
    const Slice sl = split_range(n, rank(), size());
    // The proposal is the target itself: log w = −f − (−f − log Z) = 0 exactly.
    const Metrics m = finalize(allreduce(sums_of_slice(*tgt, *tgt, sl.begin, sl.end, true), MPI_COMM_WORLD),
                               tgt->modes());
    EXPECT_EQ(m.reverse_ess, 1.0) << name;
    EXPECT_EQ(m.reverse_kl, 0.0) << name;
    EXPECT_EQ(m.log_z, 0.0) << name;
    EXPECT_EQ(m.forward_ess, 1.0) << name;
    EXPECT_EQ(m.forward_kl, 0.0) << name;
    EXPECT_LT(m.hausdorff, 0.1) << name << ": every mode has samples near its mean";
    EXPECT_LT(m.mode_coverage_tv, 0.02) << name;
  }
}

TEST(MpiMetrics, ImportanceLogZWithinThreeStandardErrors) {
  const long long n = 200000;
  for (const std::string name : {"gmm4", "gmm2asym", "gmm9", "supernova"}) {
    const auto tgt = target(name);
    double far = 1.0;
    for (const auto& m : tgt->modes().means)
      for (double v : m) far = std::fmax(far, 1.5 * std::fabs(v));
    const auto proposal = GeneralizedGaussian::gaussian(tgt->dim(), far);
    const Slice sl = split_range(n, rank(), size());
    const Metrics m = finalize(
        allreduce(sums_of_slice(*tgt, *proposal, sl.begin, sl.end, false), MPI_COMM_WORLD), tgt->modes());
    EXPECT_LT(std::fabs(m.log_z - tgt->log_z()), 3 * m.log_z_stderr)
        << name << ": log Z " << m.log_z << " +- " << m.log_z_stderr << " vs " << tgt->log_z();
    EXPECT_GT(m.log_z_stderr, 0.0);
    EXPECT_LT(m.log_z_stderr, 0.1);
    // Importance-reweighted supernova moments agree with the quadrature's.
    if (name == "supernova") {
      const Metrics mm = finalize(allreduce(sums_of_slice(*tgt, *proposal, sl.begin, sl.end, false), MPI_COMM_WORLD), *tgt);
      ASSERT_EQ(mm.observables.size(), 2u);
      for (const auto& o : mm.observables) {
        EXPECT_NEAR(o.mean_reweighted, o.exact_mean, 0.1 * o.exact_sd) << o.name;
        EXPECT_NEAR(o.sd_reweighted, o.exact_sd, 0.1 * o.exact_sd) << o.name;
      }
    }
  }
}

// Closed forms with non-constant weights: target p = N(0, I_D) (energy |x|²/2, log Z = (D/2) log 2π),
// proposal q = N(0, s² I_D). Per coordinate, KL(q‖p) = s²/2 − ½ − ln s, KL(p‖q) = ln s + 1/(2s²) − ½,
// E_q[(p/q)²] = s²/√(2s² − 1) and E_p[(q/p)²] = 1/(s√(2 − s²)), so rev ESS → (√(2s² − 1)/s²)^D and
// fwd ESS → (s√(2 − s²))^D. s = 1.1 keeps the fourth moments of both weights finite (3/4 < s² < 4/3),
// so the estimates converge at the n^(-1/2) rate; the tolerances are about five standard errors.
TEST(MpiMetrics, GaussianProposalMatchesClosedForms) {
  const int D = 4;
  const double s = 1.1, s2 = s * s;
  const long long n = 400000;
  const auto tgt = GeneralizedGaussian::gaussian(D, 1.0);
  const auto proposal = GeneralizedGaussian::gaussian(D, s);
  ASSERT_NEAR(tgt->log_z(), 0.5 * D * std::log(2 * M_PI), 1e-12);
  const Slice sl = split_range(n, rank(), size());
  const Metrics m = finalize(allreduce(sums_of_slice(*tgt, *proposal, sl.begin, sl.end, true), MPI_COMM_WORLD),
                             tgt->modes());
  const double rev_kl = D * (s2 / 2 - 0.5 - std::log(s)), fwd_kl = D * (std::log(s) + 1 / (2 * s2) - 0.5);
  const double rev_ess = std::pow(std::sqrt(2 * s2 - 1) / s2, D), fwd_ess = std::pow(s * std::sqrt(2 - s2), D);
  EXPECT_NEAR(m.reverse_kl + tgt->log_z(), rev_kl, 2.5e-3) << "KL(q||p) = " << rev_kl;
  EXPECT_NEAR(m.forward_kl - tgt->log_z(), fwd_kl, 2.5e-3) << "KL(p||q) = " << fwd_kl;
  EXPECT_NEAR(m.reverse_ess, rev_ess, 5e-3);
  EXPECT_NEAR(m.forward_ess, fwd_ess, 5e-3);
  EXPECT_NEAR(m.log_z, tgt->log_z(), 5 * m.log_z_stderr);
  EXPECT_LT(m.log_z_stderr, 2e-3);
  EXPECT_GT(std::fabs(m.reverse_ess - 1), 0.04) << "the weights are not constant";
}

// Independence Metropolis–Hastings: an exact proposal (constant weights) is
// always accepted.
TEST(Mcmc, ExactProposalIsAlwaysAccepted) {
  std::vector<double> lw(1000, -3.25), lu(1000);
  for (std::size_t t = 0; t < lu.size(); ++t) lu[t] = std::log(RngStream(1, Purpose::test, 0, t).uniform(0));
  const IndependenceChain c = independence_mh(lw, lu);
  EXPECT_EQ(c.accepts, 999);
  for (std::size_t t = 0; t < lw.size(); ++t) EXPECT_EQ(c.state[t], static_cast<std::int64_t>(t));
  // A NaN proposal is never accepted; from a NaN state any finite one is.
  std::vector<double> w2{std::nan(""), 0.0, std::nan(""), -1e9};
  const IndependenceChain d = independence_mh(w2, {0.0, -1e-3, -1e-3, -1e-3});
  EXPECT_EQ(d.state, (std::vector<std::int64_t>{0, 1, 1, 1}));
}

// N(0, I₂) from the wider proposal N(0, s² I₂): the acceptance rate is
// 2 P(|x| > |y|) for x ~ p, y ~ q, = 2 P(F(2,2) > s²) = 2/(1 + s²); the chain's
// mean and variance are those of p within 4 of their errors.
TEST(Mcmc, GaussianChainHasTheClosedFormAcceptanceAndTheTargetMoments) {
  const int D = 2;
  const double s = 1.5;
  const long long n = 200000;
  const auto tgt = GeneralizedGaussian::gaussian(D, 1.0);
  const auto proposal = GeneralizedGaussian::gaussian(D, s);
  Matrix<double> x("x", n, D);
  Vector<double> lq("lq", n), e("e", n);
  proposal->sample(3u, Purpose::check_proposal, 0, 0, x);
  proposal->log_density(x, lq);
  tgt->energy(x, e);
  const auto hx = test::to_host(x);
  const auto hq = test::to_host(lq), he = test::to_host(e);
  std::vector<double> lw(n), lu(n);
  for (long long t = 0; t < n; ++t) {
    lw[t] = -he[t] - hq[t];
    lu[t] = std::log(RngStream(3u, Purpose::mcmc, 0, static_cast<std::uint64_t>(t)).uniform(0));
  }
  const IndependenceChain c = independence_mh(lw, lu);
  const double acc = static_cast<double>(c.accepts) / static_cast<double>(n - 1);
  EXPECT_NEAR(acc, 2.0 / (1.0 + s * s), 0.006) << "closed form 2/(1 + s²)";
  for (int j = 0; j < D; ++j) {
    std::vector<double> v1(n), v2(n);
    for (long long t = 0; t < n; ++t) {
      const double xv = hx[static_cast<std::size_t>(c.state[t]) * D + j];
      v1[t] = xv;
      v2[t] = xv * xv;
    }
    for (int moment = 1; moment <= 2; ++moment) {
      const auto& v = moment == 1 ? v1 : v2;
      double m = 0, m2 = 0;
      for (double a : v) m += a, m2 += a * a;
      m /= n;
      const double sd = std::sqrt(m2 / n - m * m);
      const AutocorrelationTime a = integrated_autocorrelation_time({v});
      EXPECT_TRUE(a.converged);
      EXPECT_GT(a.tau, 0.6) << "a chain that rejects is correlated";
      const double err = sd * std::sqrt(2 * a.tau / n);
      EXPECT_NEAR(m, moment == 1 ? 0.0 : 1.0, 4 * err) << "coordinate " << j << ", moment " << moment;
    }
  }
}

// τ_int of an AR(1) series o_t = φ o_{t−1} + ε_t is ½ (1 + φ)/(1 − φ); ½ for
// independent values; equal chains give the τ of one.
TEST(Mcmc, AutocorrelationTimeOfAnAr1Series) {
  for (double phi : {0.0, 0.5, 0.8, 0.95}) {
    std::vector<std::vector<double>> chains(4, std::vector<double>(50000));
    for (std::size_t c = 0; c < chains.size(); ++c) {
      double o = 0;
      for (std::size_t t = 0; t < chains[c].size(); ++t) {
        o = phi * o + std::sqrt(1 - phi * phi) * RngStream(7, Purpose::test, static_cast<std::uint32_t>(c), t).normal(0);
        chains[c][t] = o;
      }
    }
    const double exact = 0.5 * (1 + phi) / (1 - phi);
    const AutocorrelationTime a = integrated_autocorrelation_time(chains);
    EXPECT_TRUE(a.converged) << phi;
    EXPECT_NEAR(a.tau, exact, 0.08 * exact + 0.02) << "phi = " << phi;
  }
  const std::vector<double> one{1, 2, 1, 2, 3, 1, 2, 2, 3, 1, 1, 2};
  EXPECT_DOUBLE_EQ(integrated_autocorrelation_time({one, one}).tau, integrated_autocorrelation_time({one}).tau);
}

namespace {

// The free field: φ⁴ with λ₄ = 0 and μ₂ > 0 is Gaussian, S = ½ φᵀAφ with
// A = 2κ(2 − P − Pᵀ) + 2μ₂ on the ring, eigenvalues λ_k = 8κ sin²(πk/N) + 2μ₂.
// G(t) = (1/N) Σ_k cos(2πkt/N)/λ_k, χ₂ = Σ_t G(t) = 1/(2μ₂), ⟨S⟩/V = ½ (one
// half per mode), ⟨φ̄⟩ = 0, φ̄ ~ N(0, χ₂/V) so ⟨|φ̄|⟩ = √(2χ₂/(πV)) and
// V(⟨φ̄²⟩ − ⟨|φ̄|⟩²) = χ₂(1 − 2/π).
struct FreeField {
  int N = 16;
  double kappa = 1.0, mu2 = 0.5;
  std::vector<double> chol;  // lower Cholesky factor of the covariance A⁻¹
  double log_det_cov = 0;
  FreeField() {
    std::vector<double> cov(N * N, 0.0);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) cov[i * N + j] = g((j - i + N) % N);
    chol.assign(N * N, 0.0);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j <= i; ++j) {
        double s = cov[i * N + j];
        for (int k = 0; k < j; ++k) s -= chol[i * N + k] * chol[j * N + k];
        chol[i * N + j] = i == j ? std::sqrt(s) : s / chol[j * N + j];
      }
    for (int i = 0; i < N; ++i) log_det_cov += 2 * std::log(chol[i * N + i]);
  }
  double g(int t) const {
    double s = 0;
    for (int k = 0; k < N; ++k) {
      const double sn = std::sin(M_PI * k / N);
      s += std::cos(2 * M_PI * k * t / N) / (8 * kappa * sn * sn + 2 * mu2);
    }
    return s / N;
  }
  std::unique_ptr<Phi4> target() const {
    Phi4Params p = phi4_preset("phi4-general");
    p.shape = {N};
    p.kappa = kappa;
    p.mu2 = mu2;
    p.lambda4 = 0.0;
    return std::make_unique<Phi4>(p);
  }
  // n samples of N(0, c·A⁻¹) with their log density.
  void sample(std::mt19937_64& rng, int n, double c, const Matrix<double>& x, const Vector<double>& lq) const {
    std::normal_distribution<double> nd;
    auto hx = Kokkos::create_mirror_view(x);
    auto hl = Kokkos::create_mirror_view(lq);
    std::vector<double> z(N);
    for (int i = 0; i < n; ++i) {
      double zz = 0;
      for (double& v : z) v = nd(rng), zz += v * v;
      for (int r = 0; r < N; ++r) {
        double s = 0;
        for (int k = 0; k <= r; ++k) s += chol[r * N + k] * z[k];
        hx(i, r) = std::sqrt(c) * s;
      }
      hl(i) = -0.5 * zz - 0.5 * (N * std::log(2 * M_PI * c) + log_det_cov);
    }
    Kokkos::deep_copy(x, hx);
    Kokkos::deep_copy(lq, hl);
  }
};

}  // namespace

// The lattice figures against the free field's closed forms, and the jackknife
// error bars against the spread of independent repetitions: z = (estimate −
// exact)/error has rms ≈ 1 over repetitions and figures. Exact samples (c = 1)
// and importance samples from a wider Gaussian (c = 1.5), whose reweighted
// figures are right while the unweighted ones are not.
TEST(Estimators, FreeFieldFiguresAndJackknifeErrorsAreCalibrated) {
  if (rank() != 0) return;
  const FreeField ff;
  const auto tgt = ff.target();
  const double chi2 = 1.0 / (2 * ff.mu2), V = ff.N;
  std::vector<double> exact{0.0, std::sqrt(2 * chi2 / (M_PI * V)), chi2, chi2 * (1 - 2 / M_PI), 0.5};
  for (int t = 0; t <= ff.N / 2; ++t) exact.push_back(ff.g(t));
  double sum_t = 0;
  for (int t = 0; t < ff.N; ++t) sum_t += ff.g(t);
  EXPECT_NEAR(sum_t, chi2, 1e-12) << "chi2 = sum_t G(t)";
  const int n = 2000, reps = 40;
  for (double c : {1.0, 1.5}) {
    std::mt19937_64 rng(c == 1.0 ? 11 : 12);
    double zz = 0, zmax = 0, g0_flow = 0;
    int count = 0;
    for (int r = 0; r < reps; ++r) {
      Matrix<double> x("x", n, ff.N);
      Vector<double> lq("lq", n);
      ff.sample(rng, n, c, x, lq);
      const Metrics m = finalize(metric_sums(*tgt, x, lq, 0, n), *tgt);
      ASSERT_EQ(m.estimators.size(), exact.size());
      EXPECT_EQ(m.estimator_blocks, EstimatorSums::kBlocks);
      for (std::size_t f = 0; f < exact.size(); ++f) {
        const auto& e = m.estimators[f];
        const double z = (e.reweighted - exact[f]) / e.reweighted_error;
        zz += z * z;
        zmax = std::fmax(zmax, std::fabs(z));
        ++count;
        if (c == 1.0) {
          EXPECT_NEAR(e.flow, e.reweighted, 1e-9 * std::fmax(1.0, std::fabs(e.flow))) << "constant weights";
        }
      }
      g0_flow += m.estimators[5].flow / reps;
    }
    const double rms = std::sqrt(zz / count);
    EXPECT_GT(rms, 0.75) << "c = " << c << ": the errors are not too large";
    EXPECT_LT(rms, 1.3) << "c = " << c << ": the errors are not too small";
    EXPECT_LT(zmax, 5.5) << "c = " << c;
    if (c != 1.0) {
      EXPECT_NEAR(g0_flow / ff.g(0), c, 0.05) << "unweighted samples of N(0, c/A) give c G(0)";
    }
  }
}
