// Hamiltonian score matching: both gradients of the HSM loss (the velocity
// predictor's φ and the force's θ through the leapfrog with per-state sources)
// and the denoising baseline's against central differences; with the force
// fixed, −L̂ against the closed-form discrepancy D_t of a Gaussian; trained, the
// quadratic force's A = ∇²U against Σ⁻¹, and with one leapfrog step against the
// discrete optimum ω*²(1 − h²ω*²/4) = 1/σ²; the score error figure against a
// force known in closed form.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdio>

#include "flows/models/hsm.hpp"
#include "flows/training_set.hpp"
#include "physics/metrics.hpp"
#include "physics/targets.hpp"
#include "tests/score_study.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;
using test::central_difference;
using test::to_host;

namespace {

/// A Gaussian mixture target: N(0, s² I) in `dim` dimensions, or a named preset.
std::unique_ptr<Distribution> gaussian(int dim, double s) {
  TargetSpec ts;
  ts.name = "gmm";
  ts.dim = dim;
  ts.weights = {1.0};
  ts.means.assign(dim, 0.0);
  ts.widths = {s};
  return make_target(ts);
}
std::unique_ptr<Distribution> preset(const std::string& name) {
  TargetSpec ts;
  ts.name = name;
  return make_target(ts);
}

HsmSpec spec(bool quadratic, bool dsm, int steps, double time, int inner = 2) {
  HsmSpec s;
  s.quadratic_potential = quadratic;
  s.hidden = {8, 8};
  s.activation = Activation::swish;
  s.kernels = 2;
  s.time_input = true;
  s.output_gain = 1.0;
  s.steps = steps;
  s.time = time;
  s.dsm = dsm;
  s.dsm_sigma = 0.3;
  s.inner_steps = inner;
  s.inner_lr_scale = 1.0;
  s.dataset_size = 500;
  s.epochs = false;
  return s;
}

/// The sign of a step's gradient: θ ascends the HSM loss (its gradient is of −Σℓ), φ descends it.
template <class T>
double gradient_sign(const HsmModel<T>& m, std::int64_t step) {
  return m.force_step(step) && !m.spec().dsm ? -1.0 : 1.0;
}

/// Checks the model's gradient at `step` against central differences of its loss, over
/// the parameters of the group that step updates (the other group's gradient must be 0).
void check_gradient(HsmModel<double>& model, std::int64_t step, const std::string& what) {
  const std::size_t P = model.layout().size();
  Vector<double> p("p", P);
  model.initialize(p, 4u);
  auto hp = to_host(p);
  TestRng r(13);
  for (double& v : hp) v += 0.2 * r.normal();
  const BatchRef b{9u, step, 0, 6, 6};
  auto loss_at = [&](const std::vector<double>& q) {
    Vector<double> g("g", P);
    return model.loss_and_grad(test::device_vec<double>(q), g, b, LocalCollective());
  };
  Vector<double> g("g", P);
  const double l0 = model.loss_and_grad(test::device_vec<double>(hp), g, b, LocalCollective());
  ASSERT_TRUE(std::isfinite(l0)) << what;
  const auto hg = to_host(g);
  const auto groups = model.parameter_groups();
  int checked = 0, nonzero = 0;
  for (std::size_t k = 0; k < P; ++k) {
    bool updated = groups.empty();
    for (const auto& gr : groups) updated |= k >= gr.begin && k < gr.end && gr.updates_at(step);
    if (!updated) {
      EXPECT_EQ(hg[k], 0.0) << what << ": parameter " << k << " of the group not updated at step " << step;
      continue;
    }
    const double fd = gradient_sign(model, step) * central_difference(
                                                       [&](double h) {
                                                         auto q = hp;
                                                         q[k] += h;
                                                         return loss_at(q);
                                                       },
                                                       1e-4);
    EXPECT_NEAR(fd, hg[k], 1e-6 * std::max(1.0, std::fabs(hg[k]))) << what << ": parameter " << k;
    ++checked;
    nonzero += hg[k] != 0.0;
  }
  EXPECT_GE(checked, 10) << what;
  EXPECT_GE(nonzero, 3) << what;
}

/// Symmetric 2 x 2 (or n x n) matrix functions through the eigendecomposition.
Eigen::MatrixXd matrix_function(const Eigen::MatrixXd& A, const std::function<double(double)>& f) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(A);
  Eigen::VectorXd d = es.eigenvalues();
  for (int i = 0; i < d.size(); ++i) d[i] = f(d[i]);
  return es.eigenvectors() * d.asDiagonal() * es.eigenvectors().transpose();
}

/// The closed form of the issue: π = N(0, Σ), F = −A x, x_t = C x₀ + S v₀ with C = cos(√A t),
/// S = √A⁻¹ sin(√A t); D_t = tr(Σ_vx Σ_xx⁻¹ Σ_xv), Σ_xx = C Σ Cᵀ + S Sᵀ, Σ_vx = Ċ Σ Cᵀ + Ṡ Sᵀ.
double discrepancy(const Eigen::MatrixXd& A, const Eigen::MatrixXd& Sigma, double t) {
  const auto C = matrix_function(A, [t](double a) { return std::cos(std::sqrt(a) * t); });
  const auto S = matrix_function(A, [t](double a) { return std::sin(std::sqrt(a) * t) / std::sqrt(a); });
  const auto Cd = matrix_function(A, [t](double a) { return -std::sqrt(a) * std::sin(std::sqrt(a) * t); });
  const auto Sd = matrix_function(A, [t](double a) { return std::cos(std::sqrt(a) * t); });
  const Eigen::MatrixXd xx = C * Sigma * C.transpose() + S * S.transpose();
  const Eigen::MatrixXd vx = Cd * Sigma * C.transpose() + Sd * S.transpose();
  return (vx * xx.inverse() * vx.transpose()).trace();
}

/// Initial parameters (seed 3) with the quadratic potential set to ½ xᵀAx: A's
/// lower-triangular factor in the form's slice (log diagonal).
Vector<double> quadratic_parameters(HsmModel<double>& model, const Eigen::MatrixXd& A) {
  Vector<double> p("p", model.layout().size());
  model.initialize(p, 3u);
  auto hp = to_host(p);
  const ParamSlice& s = model.layout().slice("U.L");
  const Eigen::MatrixXd L = A.llt().matrixL();
  const int D = static_cast<int>(A.rows());
  for (int r = 0; r < D; ++r)
    for (int c = 0; c <= r; ++c) hp[s.offset + r * D + c] = r == c ? std::log(L(r, c)) : L(r, c);
  Kokkos::deep_copy(p, test::device_vec<double>(hp));
  return p;
}

}  // namespace

TEST(Hsm, VelocityAndForceGradientsMatchFiniteDifferences) {
  const auto tgt = preset("gmm4");
  for (bool quadratic : {false, true}) {
    HsmModel<double> model(*tgt, spec(quadratic, false, 3, 0.6), 6, 2u);
    ASSERT_EQ(model.parameter_groups().size(), 2u);
    const std::string what = quadratic ? "quadratic U" : "MLP U";
    check_gradient(model, 0, what + ", velocity step");
    check_gradient(model, 4, what + ", velocity step");
    check_gradient(model, 5, what + ", force step");  // inner_steps 2: steps 2, 5, 8, … are the force's
  }
  // A single leapfrog step and a long trajectory.
  for (int L : {1, 7}) {
    HsmModel<double> model(*tgt, spec(false, false, L, 0.9, 1), 6, 3u);
    check_gradient(model, 1, "L = " + std::to_string(L) + ", force step");
    check_gradient(model, 2, "L = " + std::to_string(L) + ", velocity step");
  }
}

TEST(Hsm, DenoisingGradientMatchesFiniteDifferences) {
  const auto tgt = preset("gmm2asym");
  for (bool quadratic : {false, true}) {
    HsmModel<double> model(*tgt, spec(quadratic, true, 1, 1.0), 6, 2u);
    EXPECT_TRUE(model.parameter_groups().empty());
    check_gradient(model, 3, quadratic ? "dsm, quadratic U" : "dsm, MLP U");
  }
}

TEST(Hsm, BatchSplitsSumToTheWholeBatch) {
  // Samples by global index: two ranks' shares of a batch give the whole batch's loss and gradient.
  const auto tgt = preset("gmm4");
  for (std::int64_t step : {0, 2}) {
    HsmModel<double> model(*tgt, spec(false, false, 4, 0.8), 6, 2u);
    const std::size_t P = model.layout().size();
    Vector<double> p("p", P), g("g", P), g1("g1", P), g2("g2", P);
    model.initialize(p, 1u);
    const double l = model.loss_and_grad(p, g, BatchRef{3u, step, 0, 6, 6}, LocalCollective());
    const double a = model.loss_and_grad(p, g1, BatchRef{3u, step, 0, 2, 6}, LocalCollective());
    const double c = model.loss_and_grad(p, g2, BatchRef{3u, step, 2, 4, 6}, LocalCollective());
    EXPECT_NEAR(a + c, l, 1e-12 * (1 + std::fabs(l)));
    const auto h = to_host(g), h1 = to_host(g1), h2 = to_host(g2);
    for (std::size_t k = 0; k < P; ++k) EXPECT_NEAR(h1[k] + h2[k], h[k], 1e-10 * (1 + std::fabs(h[k])));
  }
}

TEST(Hsm, FixedForceDiscrepancyMatchesTheGaussianClosedForm) {
  // π = N(0, I) in 2-D and a fixed wrong force F = −A x (A not diagonal): V_φ trained alone
  // reaches E[v_t | x_t], so −L̂ = (1/L) Σ_s D_{t_s} within 5% (of the leapfrog's own
  // Gaussian states, exact for the discrete map, within 3%).
  const auto tgt = gaussian(2, 1.0);
  const int L = 5, B = 256;
  const double T = 0.5;
  HsmSpec sp = spec(true, false, L, T, 9);  // 9 velocity steps in 10; the force's are skipped
  sp.hidden = {32, 32};
  sp.kernels = 3;
  sp.dataset_size = 20000;
  HsmModel<double> model(*tgt, sp, 4096, 7u);
  const std::size_t P = model.layout().size();
  Eigen::MatrixXd A(2, 2);
  A << 2.0, 0.7, 0.7, 1.4;
  Vector<double> p = quadratic_parameters(model, A);
  const double l00 = to_host(p)[model.layout().slice("U.L").offset];
  test::train_groups(model, p, 1500, B, 1e-2, true);
  EXPECT_EQ(to_host(p)[model.layout().slice("U.L").offset], l00);  // U fixed
  double closed = 0, discrete = 0;
  const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(2, 2);
  for (int s = 1; s <= L; ++s) closed += discrepancy(A, I, s * T / L) / L;
  // The leapfrog is linear here: (x, v) ↦ K D K (x, v), so the states' covariance is M^s diag(Σ, I) M^sᵀ.
  const double h = T / L;
  Eigen::MatrixXd K = Eigen::MatrixXd::Identity(4, 4), Dr = Eigen::MatrixXd::Identity(4, 4);
  K.block(2, 0, 2, 2) = -h / 2 * A;
  Dr.block(0, 2, 2, 2) = h * I;
  const Eigen::MatrixXd M = K * Dr * K;
  Eigen::MatrixXd cov = Eigen::MatrixXd::Identity(4, 4);
  for (int s = 1; s <= L; ++s) {
    cov = M * cov * M.transpose();
    const Eigen::MatrixXd xx = cov.block(0, 0, 2, 2), vx = cov.block(2, 0, 2, 2);
    discrete += (vx * xx.inverse() * vx.transpose()).trace() / L;
  }
  // −L̂ over 40 960 fresh samples (velocity steps' noise of later steps).
  Vector<double> g("g", P);
  double sum = 0;
  const int chunks = 10, n = 4096;
  for (int c = 0; c < chunks; ++c) sum -= model.loss_and_grad(p, g, BatchRef{99u, 2 * c + 1000, 0, n, n}, LocalCollective());
  const double estimate = sum / (chunks * n);
  std::printf("  -L = %.5f over %d samples; closed form (continuous) %.5f, the leapfrog's exact %.5f\n", estimate,
              chunks * n, closed, discrete);
  EXPECT_NEAR(estimate, closed, 0.05 * closed) << "closed form " << closed;
  EXPECT_NEAR(estimate, discrete, 0.03 * discrete) << "the leapfrog's exact figure " << discrete;
  // The discrepancy is the poster's small-t law: D_t ≈ t² E‖(A − I) x‖² = t² tr((A − I)²).
  const double t = 0.05, lead = t * t * ((A - Eigen::MatrixXd::Identity(2, 2)) * (A - Eigen::MatrixXd::Identity(2, 2))).trace();
  EXPECT_NEAR(discrepancy(A, Eigen::MatrixXd::Identity(2, 2), t), lead, 0.02 * lead);
}

TEST(Hsm, TrainedQuadraticForceReachesTheInverseCovariance) {
  // π = N(0, σ² I), σ = 0.7, from A = LLᵀ started off-diagonal: A → Σ⁻¹ (relative Frobenius error < 5%).
  const double sigma = 0.7;
  const auto tgt = gaussian(2, sigma);
  HsmSpec sp = spec(true, false, 4, 0.4, 2);
  sp.hidden = {32, 32};
  sp.kernels = 2;
  sp.dataset_size = 20000;
  HsmModel<double> model(*tgt, sp, 256, 7u);
  Eigen::MatrixXd A0(2, 2);
  A0 << 1.0, 0.5, 0.5, 3.0;
  Vector<double> p = quadratic_parameters(model, A0);
  test::train_groups(model, p, 3000, 256, 1e-2, false);
  const auto A = model.quadratic_matrix(p);
  const double target_diag = 1.0 / (sigma * sigma);
  double err = 0, norm = 0;
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const double want = r == c ? target_diag : 0.0;
      err += (A[r * 2 + c] - want) * (A[r * 2 + c] - want);
      norm += want * want;
    }
  std::printf("  A = [%.4f %.4f; %.4f %.4f], Sigma^-1 = %.4f I: relative error %.4f\n", A[0], A[1], A[2], A[3],
              target_diag, std::sqrt(err / norm));
  EXPECT_LT(std::sqrt(err / norm), 0.05) << "A = [" << A[0] << " " << A[1] << "; " << A[2] << " " << A[3] << "]";
}

TEST(Hsm, OneLeapfrogStepLearnsTheDiscreteOptimum) {
  // L = 1, h = 0.5, π = N(0, 1): the kick-drift-kick step makes E[v₁ | x₁] = 0 at
  // ω*²(1 − h²ω*²/4) = 1, ω*² = 8 − √48 = 1.0718 (the continuous optimum is 1).
  const auto tgt = gaussian(1, 1.0);
  HsmSpec sp = spec(true, false, 1, 0.5, 5);  // 5 velocity steps per force step: V close to its optimum
  sp.hidden = {16};
  sp.kernels = 1;
  sp.dataset_size = 20000;
  HsmModel<double> model(*tgt, sp, 512, 7u);
  Vector<double> p("p", model.layout().size());
  model.initialize(p, 3u);
  test::train_groups(model, p, 6000, 512, 3e-3, false);
  // The optimum of the data set the model learns from: 1/σ² is 1/E x² of its 20 000 points
  // (the population's 1.0718 ± 0.011 by their sampling error); h = 0.5 solves ω²(1 − ω²/16) = 1/E x².
  const TrainingSet data(*tgt, sp.dataset_size, false, 7u, 1);
  const auto xs = to_host(data.data());
  double m2 = 0;
  for (double x : xs) m2 += x * x / xs.size();
  const double w2 = model.quadratic_matrix(p)[0], want = 8.0 - std::sqrt(64.0 - 16.0 / m2);
  std::printf("  learned omega^2 %.5f; the discrete optimum %.5f (population 1.07180), the continuous %.5f\n", w2,
              want, 1.0 / m2);
  // Within 0.008 (measured: +0.003; the alternating min-max leaves a bias that grows with the
  // learning rate: +0.02 at 1e-2), a tenth of the distance to the continuous optimum.
  EXPECT_NEAR(w2, want, 0.008) << "learned omega^2 " << w2;
  EXPECT_GT(std::fabs(w2 - 1.0 / m2), 0.05) << "the discrete optimum, not the continuous one";
}

TEST(Hsm, ScoreErrorOfAKnownForce) {
  // F = −A x on N(0, I): E‖F − ∇log π‖² / E‖∇log π‖² = tr((A − I)²) / D exactly in expectation;
  // the estimate lies within its standard errors, which are calibrated by repeats.
  const auto tgt = gaussian(2, 1.0);
  HsmModel<double> model(*tgt, spec(true, true, 1, 1.0), 1000, 7u);
  Eigen::MatrixXd A(2, 2);
  A << 1.5, 0.3, 0.3, 0.8;
  const Vector<double> p = quadratic_parameters(model, A);
  const Eigen::MatrixXd E = A - Eigen::MatrixXd::Identity(2, 2);
  const double exact = (E * E).trace() / 2.0;
  const int n = 1000, repeats = 200;
  double z2 = 0;
  for (int r = 0; r < repeats; ++r) {
    Matrix<double> x("x", n, 2), f("f", n, 2);
    tgt->sample(31u, Purpose::test, static_cast<std::uint32_t>(r), 0, x);
    model.score(p, ConstMatrix<double>(x), f);
    // The force itself: F = −A x.
    if (r == 0) {
      const auto hx = to_host(x), hf = to_host(f);
      for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 2; ++j)
          EXPECT_NEAR(hf[i * 2 + j], -(A(j, 0) * hx[i * 2] + A(j, 1) * hx[i * 2 + 1]), 1e-12);
    }
    // Two halves merged = the whole.
    const auto x1 = Kokkos::subview(x, std::make_pair(0, 300), Kokkos::ALL());
    const auto x2 = Kokkos::subview(x, std::make_pair(300, n), Kokkos::ALL());
    const auto f1 = Kokkos::subview(f, std::make_pair(0, 300), Kokkos::ALL());
    const auto f2 = Kokkos::subview(f, std::make_pair(300, n), Kokkos::ALL());
    Metrics whole, halves;
    finalize_score(score_sums(*tgt, x, f), whole);
    finalize_score(merge(score_sums(*tgt, x1, f1), score_sums(*tgt, x2, f2)), halves);
    EXPECT_NEAR(whole.score_error, halves.score_error, 1e-12 * whole.score_error);
    EXPECT_EQ(whole.score_samples, n);
    z2 += std::pow((whole.score_error - exact) / whole.score_error_stderr, 2);
  }
  const double rms_z = std::sqrt(z2 / repeats);
  EXPECT_GT(rms_z, 0.8);
  EXPECT_LT(rms_z, 1.25);
}

TEST(Hsm, DenoisingGradientNoiseGrowsAsOneOverSigma) {
  // The poster's Fig. 3c in numbers: DSM's per-sample gradient carries ε/σ, so as σ → 0
  // its noise grows as 1/σ while its mean tends to the score-matching gradient: the SNR
  // falls in proportion to σ. (HSM's gradient has no σ.) At the same initial U.
  const auto tgt = gaussian(1, 1.0);
  test::GradientSnr at[2];
  const double sigmas[2] = {0.1, 0.03};
  for (int k = 0; k < 2; ++k) {
    HsmSpec sp = spec(false, true, 1, 1.0);
    sp.dsm_sigma = sigmas[k];
    HsmModel<double> model(*tgt, sp, 1, 7u);
    Vector<double> p("p", model.layout().size());
    model.initialize(p, 3u);
    at[k] = test::gradient_snr(model, p, 11u, 0, 0, model.layout().size(), 40000);
    std::printf("  dsm sigma %.2f: SNR %.4f +- %.4f, |E g| %.4f, noise %.4f\n", sigmas[k], at[k].snr, at[k].error,
                at[k].mean_norm, at[k].noise);
  }
  EXPECT_NEAR(at[1].noise / at[0].noise, 0.1 / 0.03, 0.1 * 0.1 / 0.03);
  EXPECT_NEAR(at[1].mean_norm / at[0].mean_norm, 1.0, 0.2);
  EXPECT_LT(at[1].snr, 0.5 * at[0].snr);
}
