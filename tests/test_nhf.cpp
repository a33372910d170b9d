// Neural Hamiltonian Flows: the leapfrog is exactly reversible and
// volume-preserving, and the ELBO and reverse-KL parameter gradients (the
// discrete adjoint of the leapfrog with HVPs) match finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "flows/models/nhf.hpp"
#include "physics/base_distributions.hpp"
#include "physics/metrics.hpp"
#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;

namespace {

using test::to_host;
const auto device = test::device_vec<double>;
double central(const std::function<double(double)>& f, double h) { return test::central_difference(f, h); }

struct NhfSetup {
  std::unique_ptr<Distribution> target;
  std::unique_ptr<NhfFlow<double>> flow;
  std::vector<double> params;
};

NhfSetup make(const std::string& target, bool fixed, bool elbo, Activation act, const std::string& prior = "gauss",
              int max_batch = 6, double time = 0.8) {
  NhfSetup s;
  TargetSpec ts;
  ts.name = target;
  ts.quadrature_grid = 50;
  if (target == "phi4") ts.phi4.shape = {3};
  s.target = make_target(ts);
  const int D = s.target->dim();
  NhfSpec spec;
  spec.hidden = {6, 5};
  spec.activation = act;
  spec.fixed_kinetic = fixed;
  spec.steps = 4;
  spec.time = time;
  spec.elbo = elbo;
  spec.dataset_size = 50;
  std::shared_ptr<const Distribution> pr =
      prior == "softuniform" ? std::shared_ptr<const Distribution>(std::make_unique<SoftUniform>(D, 3.0))
                             : std::shared_ptr<const Distribution>(GeneralizedGaussian::gaussian(D, 1.5));
  s.flow = std::make_unique<NhfFlow<double>>(*s.target, pr, spec, max_batch, 9u);
  Vector<double> p("p", s.flow->layout().size());
  s.flow->initialize(p, 2u);
  s.params = to_host(p);
  TestRng r(3);
  for (double& v : s.params) v += 0.3 * r.normal();  // biases and the mass matrix away from zero
  return s;
}

}  // namespace

// ∇V by reverse mode (what the leapfrog uses) against central differences of V.
TEST(Nhf, PotentialGradientByReverseModeMatchesFiniteDifferences) {
  for (Activation act : {Activation::softplus, Activation::swish, Activation::tanh}) {
    NhfSetup s = make("phi4", false, false, act);
    const int D = s.target->dim(), n = 4;
    TestRng r(17);
    std::vector<double> q(static_cast<std::size_t>(n) * D);
    for (double& v : q) v = r.normal();
    const Vector<double> p = device(s.params);
    const std::vector<double> g = s.flow->potential_gradient(p, q);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < D; ++j) {
        const double fd = central(
            [&](double h) {
              std::vector<double> y(q.begin() + i * D, q.begin() + (i + 1) * D);
              y[j] += h;
              return s.flow->potential(p, y)[0];
            },
            1e-4);
        EXPECT_NEAR(g[static_cast<std::size_t>(i) * D + j], fd, 1e-8 * std::fmax(1.0, std::fabs(fd))) << activation_name(act) << " " << i << "," << j;
      }
  }
}

TEST(Nhf, LeapfrogIsReversibleAndVolumePreserving) {
  for (bool fixed : {false, true}) {
    NhfSetup s = make("gmm9", fixed, true, Activation::softplus);
    const Vector<double> p = device(s.params);
    TestRng r(7);
    std::vector<double> q0(10), p0(10);
    for (double& v : q0) v = r.normal();
    for (double& v : p0) v = r.normal();
    // Forward then backward (dt → −dt) returns the start to rounding.
    std::vector<double> q = q0, m = p0;
    s.flow->leapfrog(p, q, m, 0.1);
    double moved = 0;
    for (std::size_t i = 0; i < q.size(); ++i) moved += std::fabs(q[i] - q0[i]);
    EXPECT_GT(moved, 1e-3) << "the flow moves the points";
    s.flow->leapfrog(p, q, m, -0.1);
    for (std::size_t i = 0; i < q.size(); ++i) {
      EXPECT_NEAR(q[i], q0[i], 1e-13) << (fixed ? "fixed" : "mlp");
      EXPECT_NEAR(m[i], p0[i], 1e-13) << (fixed ? "fixed" : "mlp");
    }
    // det of the Jacobian of (q, p) → (q', p') is 1 (central differences, 4 x 4 for D = 2).
    const int D = 2;
    auto map = [&](const std::vector<double>& z) {
      std::vector<double> qq{z[0], z[1]}, pp{z[2], z[3]};
      s.flow->leapfrog(p, qq, pp, 0.1);
      return std::vector<double>{qq[0], qq[1], pp[0], pp[1]};
    };
    const std::vector<double> z{q0[0], q0[1], p0[0], p0[1]};
    double J[4][4];
    for (int c = 0; c < 2 * D; ++c)
      for (int rr = 0; rr < 2 * D; ++rr)
        J[rr][c] = central(
            [&](double h) {
              std::vector<double> zz = z;
              zz[c] += h;
              return map(zz)[rr];
            },
            1e-4);
    // 4 x 4 determinant by Gaussian elimination.
    double det = 1;
    for (int c = 0; c < 4; ++c) {
      int piv = c;
      for (int rr = c + 1; rr < 4; ++rr)
        if (std::fabs(J[rr][c]) > std::fabs(J[piv][c])) piv = rr;
      if (piv != c) {
        for (int k = 0; k < 4; ++k) std::swap(J[c][k], J[piv][k]);
        det = -det;
      }
      det *= J[c][c];
      for (int rr = c + 1; rr < 4; ++rr) {
        const double f = J[rr][c] / J[c][c];
        for (int k = c; k < 4; ++k) J[rr][k] -= f * J[c][k];
      }
    }
    EXPECT_NEAR(det, 1.0, 1e-8) << (fixed ? "fixed" : "mlp");
  }
}

TEST(Nhf, LossGradientsMatchFiniteDifferences) {
  struct Case {
    std::string target;
    bool fixed, elbo;
    Activation act;
    std::string prior;
  };
  const Case cases[] = {{"gmm9", false, true, Activation::softplus, "gauss"},
                        {"gmm9", true, true, Activation::tanh, "softuniform"},
                        {"gmm2asym", false, false, Activation::swish, "gauss"},
                        {"supernova", true, false, Activation::softplus, "softuniform"},
                        {"phi4", false, false, Activation::tanh, "gauss"},
                        {"phi4", true, true, Activation::softplus, "gauss"}};
  for (const auto& c : cases) {
    if (c.target == "phi4" && c.elbo) continue;  // no exact samples of φ⁴
    NhfSetup s = make(c.target, c.fixed, c.elbo, c.act, c.prior);
    BatchRef b = BatchRef::one_rank(5, 2, 10, 6);
    LocalCollective coll;
    auto loss = [&](const std::vector<double>& q) {
      Vector<double> g("g", q.size());
      return s.flow->loss_and_grad(device(q), g, b, coll);
    };
    Vector<double> grad("grad", s.params.size());
    s.flow->loss_and_grad(device(s.params), grad, b, coll);
    const auto g = to_host(grad);
    TestRng r(11);
    const std::string what = c.target + (c.fixed ? " fixed" : " mlp") + (c.elbo ? " elbo" : " reverse KL");
    for (const auto& [fd, dot] : test::directional_checks(loss, s.params, g, r))
      EXPECT_LE(std::fabs(fd - dot), 1e-6 * std::fmax(1.0, std::fabs(dot))) << what << ": fd " << fd << " vs " << dot;
  }
}

TEST(Nhf, FixedKineticMassMatrixIsSymmetricPositiveDefinite) {
  NhfSetup s = make("gmm9", true, true, Activation::softplus);
  const auto M = s.flow->mass_matrix(device(s.params));
  ASSERT_EQ(M.size(), 4u);
  EXPECT_DOUBLE_EQ(M[1], M[2]);
  EXPECT_GT(M[0], 0);
  EXPECT_GT(M[0] * M[3] - M[1] * M[2], 0);
}

// Epoch minibatches (train.minibatch = epochs): over the run's consecutive
// samples every point of the data set comes once per epoch, in an order that
// changes between epochs; the rows of a batch do not depend on how it is split
// over ranks, and a fresh model (a resumed run) draws the same ones.
TEST(Nhf, EpochMinibatchesUseEveryPointOncePerEpochOnAnySplit) {
  TargetSpec ts;
  ts.name = "gmm9";
  auto target = make_target(ts);
  NhfSpec spec;
  spec.hidden = {4};
  spec.activation = Activation::softplus;
  spec.steps = 1;
  spec.time = 1.0;
  spec.elbo = true;
  spec.dataset_size = 50;
  spec.epochs = true;
  auto prior = std::shared_ptr<const Distribution>(GeneralizedGaussian::gaussian(2, 1.5));
  NhfFlow<double> flow(*target, prior, spec, 16, 9u), fresh(*target, prior, spec, 16, 9u);
  const int B = 12, N = 50, steps = 13;  // 156 samples: three whole epochs and a part
  std::vector<std::int64_t> seq;
  for (int step = 0; step < steps; ++step) {
    const auto whole = flow.minibatch_indices(BatchRef{5u, step, 0, B, B});
    // Two ranks: samples [0, 5) and [5, 12) of the batch.
    auto split = flow.minibatch_indices(BatchRef{5u, step, 0, 5, B});
    const auto second = flow.minibatch_indices(BatchRef{5u, step, 5, 7, B});
    split.insert(split.end(), second.begin(), second.end());
    EXPECT_EQ(split, whole) << "step " << step;
    seq.insert(seq.end(), whole.begin(), whole.end());
  }
  for (int e = 0; e < 3; ++e) {
    std::vector<std::int64_t> epoch(seq.begin() + e * N, seq.begin() + (e + 1) * N);
    std::vector<std::int64_t> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    for (int k = 0; k < N; ++k) ASSERT_EQ(sorted[k], k) << "epoch " << e << ": every point exactly once";
    if (e > 0) {
      EXPECT_NE(epoch, std::vector<std::int64_t>(seq.begin() + (e - 1) * N, seq.begin() + e * N));
    }
  }
  // A fresh model at step 7 (a resume) draws what the run drew there.
  const auto resumed = fresh.minibatch_indices(BatchRef{5u, 7, 0, B, B});
  EXPECT_EQ(resumed, std::vector<std::int64_t>(seq.begin() + 7 * B, seq.begin() + 8 * B));
  // Another seed, another order.
  EXPECT_NE(fresh.minibatch_indices(BatchRef{6u, 0, 0, B, B}), std::vector<std::int64_t>(seq.begin(), seq.begin() + B));
}

namespace {

// log q̂_K at host points (n x D) through the Model interface.
std::vector<double> marginal(NhfSetup& s, const std::vector<double>& pts, int K, std::uint64_t first = 0) {
  const int D = s.target->dim(), n = static_cast<int>(pts.size()) / D;
  Matrix<double> x("x", n, D);
  auto hx = Kokkos::create_mirror_view(x);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) hx(i, j) = pts[static_cast<std::size_t>(i) * D + j];
  Kokkos::deep_copy(x, hx);
  Vector<double> lq("lq", n);
  s.flow->marginal_log_density(device(s.params), x, K, 5u, 0, first, lq);
  return to_host(lq);
}

// Mean of exp(log q̂ − log q) over points and its standard error: exp(log q̂_K)
// is unbiased for q(x), so the ratio's mean is 1.
std::pair<double, double> ratio_mean(const std::vector<double>& est, const std::vector<double>& exact) {
  double s1 = 0, s2 = 0;
  const double n = static_cast<double>(est.size());
  for (std::size_t i = 0; i < est.size(); ++i) {
    const double r = std::exp(est[i] - exact[i]);
    s1 += r;
    s2 += r * r;
  }
  const double m = s1 / n;
  return {m, std::sqrt(std::fmax(0.0, s2 / n - m * m) / n)};
}

}  // namespace

// The marginal estimate against closed forms. Density estimation (elbo) with a
// linear potential (identity activation: V(q) = aᵀq + c) and a fixed kinetic
// energy: the leapfrog is exact for a constant force, q_T = q0 + T M p0 − (T²/2) M a,
// so from q0 ~ N(0, s² I), p0 ~ N(0, I) the marginal is N(−(T²/2) M a, s² I + T² M²).
// The sampler (reverse_kl) as T → 0: the flow is the identity, so q = π0.
// exp(log q̂_K) is unbiased at every K (a wrong term in M or r would bias it),
// and log q̂_K converges to log q as K grows from below (Jensen).
TEST(Nhf, MarginalEstimateIsUnbiasedAndConvergesToTheClosedForm) {
  const double s0 = 1.5;  // the prior's scale (make())
  for (bool elbo : {true, false}) {
    const double T = elbo ? 0.8 : 1e-9;
    NhfSetup s = make("gmm9", true, elbo, Activation::identity, "gauss", 128, T);
    // A plausible encoder: its weights scaled down, so μ and σ vary gently
    // with x, and σ ≈ 1.1, wider than the flow's conditional of p given x (as
    // a proposal should be: the ratio M/r is then bounded and the test sharp).
    for (const ParamSlice& sl : s.flow->layout().slices()) {
      if (sl.name.rfind("encoder.", 0) != 0) continue;
      for (std::size_t i = sl.offset; i < sl.offset + sl.size; ++i) s.params[i] *= 0.2;
      if (sl.name == "encoder.sigma.b2")
        for (std::size_t i = sl.offset; i < sl.offset + sl.size; ++i) s.params[i] += 0.7;
    }
    const int D = 2, n = 24;
    const Vector<double> pd = device(s.params);
    const std::vector<double> M = s.flow->mass_matrix(pd);
    const std::vector<double> a = s.flow->potential_gradient(pd, {0.3, -0.2});
    // Closed form: mean m = −(T²/2) M a, covariance C = s² I + T² M M.
    double m[2], C[2][2];
    for (int r = 0; r < D; ++r) {
      m[r] = -(T * T / 2) * (M[r * D] * a[0] + M[r * D + 1] * a[1]);
      for (int c = 0; c < D; ++c) C[r][c] = (r == c ? s0 * s0 : 0.0) + T * T * (M[r * D] * M[c] + M[r * D + 1] * M[D + c]);
    }
    const double det = C[0][0] * C[1][1] - C[0][1] * C[1][0];
    TestRng rng(41);
    std::vector<double> pts, exact;
    for (int i = 0; i < n; ++i) {
      const double x0 = m[0] + 2 * rng.normal(), x1 = m[1] + 2 * rng.normal();
      pts.insert(pts.end(), {x0, x1});
      const double d0 = x0 - m[0], d1 = x1 - m[1];
      const double quad = (C[1][1] * d0 * d0 - 2 * C[0][1] * d0 * d1 + C[0][0] * d1 * d1) / det;
      exact.push_back(-0.5 * quad - 0.5 * std::log(det) - std::log(2 * M_PI));
    }
    const std::string what = elbo ? "elbo, linear V" : "sampler, T -> 0";
    // Unbiased at small K.
    for (int K : {1, 8}) {
      const auto [mean, se] = ratio_mean(marginal(s, pts, K), exact);
      EXPECT_NEAR(mean, 1.0, 4 * se + 1e-12) << what << " K = " << K << ": E exp(log q_K - log q)";
      EXPECT_GT(se, 1e-4) << what << ": the proposal is not the exact conditional, so the test has power";
    }
    // Converges from below: the mean gap shrinks, and at K = 4096 every point is close.
    auto gap = [&](int K) {
      const std::vector<double> e = marginal(s, pts, K);
      double g = 0, worst = 0;
      for (int i = 0; i < n; ++i) g += e[i] - exact[i], worst = std::fmax(worst, std::fabs(e[i] - exact[i]));
      return std::make_pair(g / n, worst);
    };
    const auto g1 = gap(1), g4096 = gap(4096);
    EXPECT_LT(g1.first, -0.02) << what << ": one momentum underestimates log q";
    EXPECT_LT(std::fabs(g4096.first), std::fabs(g1.first) / 10) << what;
    EXPECT_LT(g4096.second, 0.25) << what;  // (points out to 3 sd of q)
  }
}

// The estimate is a function of (seed, sample index, k) only: the chunking
// of pairs into batches (here 6 against 128 rows, K = 16 splitting samples
// across chunks) and where a rank's samples start do not change it.
TEST(Nhf, MarginalEstimateDoesNotDependOnTheBatchOrTheSplit) {
  for (bool elbo : {true, false}) {
    NhfSetup a = make("gmm9", false, elbo, Activation::softplus, "gauss", 6);
    NhfSetup b = make("gmm9", false, elbo, Activation::softplus, "gauss", 128);
    TestRng rng(5);
    std::vector<double> pts(2 * 10);
    for (double& v : pts) v = 2 * rng.normal();
    const std::vector<double> ea = marginal(a, pts, 16), eb = marginal(b, pts, 16);
    // The last 4 samples as a rank whose first global sample is 6.
    const std::vector<double> tail(pts.begin() + 12, pts.end());
    const std::vector<double> ec = marginal(b, tail, 16, 6);
    for (int i = 0; i < 10; ++i) {
      EXPECT_NEAR(ea[i], eb[i], 1e-12 * std::fmax(1.0, std::fabs(eb[i]))) << i;
      EXPECT_TRUE(std::isfinite(ea[i]));
    }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(ec[i], eb[6 + i]) << i;
  }
}

// The identity flow (T → 0) sampling its own prior (target = prior = N(0, s²I))
// with a constant encoder f = N(μ, σ²), σ ≠ 1: every sample is exact, so the
// marginal KL is 0, while on phase space the weights are g(p)/f(p) and the
// reverse KL is KL(f ‖ N(0, I)) = Σ_j [−log σ + (σ² + μ² − 1)/2] > 0. The
// marginal estimate goes to 0 as K grows; the phase-space figure stays.
TEST(Nhf, IdentityFlowMarginalKlVanishesWhilePhaseSpaceKlStays) {
  const int D = 2, n = 4096;
  const double s0 = 1.5, mu = 0.3, sigma = 0.6;
  const auto target = GeneralizedGaussian::gaussian(D, s0);
  std::shared_ptr<const Distribution> prior(GeneralizedGaussian::gaussian(D, s0));
  NhfSpec spec;
  spec.hidden = {6, 5};
  spec.activation = Activation::softplus;
  spec.fixed_kinetic = false;
  spec.steps = 2;
  spec.time = 1e-9;
  spec.elbo = false;
  NhfFlow<double> flow(*target, prior, spec, 512, 1u);
  Vector<double> pd("p", flow.layout().size());
  flow.initialize(pd, 3u);
  std::vector<double> params = to_host(pd);
  for (const ParamSlice& sl : flow.layout().slices()) {
    if (sl.name.rfind("encoder.", 0) != 0) continue;
    const bool last_bias = sl.name == "encoder.mu.b2" || sl.name == "encoder.sigma.b2";
    const double v = sl.name == "encoder.mu.b2" ? mu : std::log(std::expm1(sigma - 1e-6));  // softplus(v) + 1e-6 = σ
    for (std::size_t i = sl.offset; i < sl.offset + sl.size; ++i) params[i] = last_bias ? v : 0.0;
  }
  const Vector<double> p = device(params);
  Matrix<double> x("x", n, D);
  Vector<double> lq("lq", n), lm("lm", n);
  flow.sample(p, 7u, Purpose::eval, 0, 0, x, lq);
  const double kl_f = D * (-std::log(sigma) + (sigma * sigma + mu * mu - 1) / 2);
  const double log_z = target->log_z();
  MetricSums base = metric_sums(*target, x, lq);
  const Metrics joint = finalize(base, target->modes());
  // reverse_kl is KL − log Z; its standard error here is about sd(log g/f)/√n ≈ 0.02.
  EXPECT_NEAR(joint.reverse_kl + log_z, kl_f, 0.06) << "phase space: KL(f || N(0, I)) = " << kl_f;
  EXPECT_GT(kl_f, 0.4);
  double last = 1e9;
  for (int K : {1, 8, 64, 512}) {
    flow.marginal_log_density(p, x, K, 7u, 0, 0, lm);
    MetricSums s = base;
    add_marginal_sums(s, *target, x, lm, K, false);
    const Metrics m = finalize(s, target->modes());
    const double kl = m.marginal_reverse_kl + log_z;
    EXPECT_LT(std::fabs(kl), last + 1e-3) << "K = " << K << ": no worse than at K/8";
    EXPECT_LT(kl, 1e-3) << "K = " << K << ": a lower bound of the marginal KL (0), up to the noise";
    last = std::fabs(kl);
    if (K == 512) {
      EXPECT_LT(std::fabs(kl), 0.01) << "K = 512";
      EXPECT_GT(m.marginal_reverse_ess, 0.98);
    }
  }
  EXPECT_LT(joint.reverse_ess, 0.8) << "the phase-space ESS stays below";
}

// exp(log q̂_K) is unbiased for q(x) at every x, so its integral over the plane
// is 1 for any flow: checked by quadrature on a grid for the sampler (proposal
// N(0, I), M(x, p) = π0(q0) f(p0|q0)) and the density model (proposal the encoder),
// both with T > 0 and an MLP kinetic energy (no closed form for q).
TEST(Nhf, MarginalEstimateIntegratesToOne) {
  for (bool elbo : {false, true}) {
    NhfSetup s = make("gmm9", false, elbo, Activation::softplus, "gauss", 1024, 0.8);
    for (const ParamSlice& sl : s.flow->layout().slices()) {
      if (sl.name.rfind("encoder.", 0) != 0) continue;
      for (std::size_t i = sl.offset; i < sl.offset + sl.size; ++i) s.params[i] *= 0.2;
      if (sl.name == "encoder.sigma.b2")
        for (std::size_t i = sl.offset; i < sl.offset + sl.size; ++i) s.params[i] += 0.7;
    }
    const int g = 90;
    const double lo = -7, hi = 7, h = (hi - lo) / g;
    std::vector<double> pts;
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) pts.insert(pts.end(), {lo + (i + 0.5) * h, lo + (j + 0.5) * h});
    const std::vector<double> lq = marginal(s, pts, 64);
    double integral = 0;
    for (double v : lq) integral += std::exp(v) * h * h;
    EXPECT_NEAR(integral, 1.0, 0.03) << (elbo ? "elbo" : "sampler");
  }
}
