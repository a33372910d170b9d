// Targets and base distributions: gradients against central finite
// differences, energies against plain host references, normalisation,
// φ⁴ modes, the supernova likelihood against an independent computation.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <fstream>
#include <functional>
#include <memory>

#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;

namespace {

struct Case {
  std::string label;
  std::shared_ptr<Distribution> dist;
  std::function<std::vector<double>(TestRng&)> point;  // where to test
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  auto near_modes = [](const Distribution* d, double spread) {
    return [d, spread](TestRng& r) {
      const auto& means = d->modes().means;
      const auto& m = means[r.next() % means.size()];
      std::vector<double> x(m.size());
      for (std::size_t j = 0; j < m.size(); ++j) x[j] = m[j] + spread * r.normal();
      return x;
    };
  };
  for (const std::string name : {"gmm4", "gmm2asym", "gmm9"}) {
    TargetSpec s;
    s.name = name;
    std::shared_ptr<Distribution> d = make_target(s);
    cases.push_back({name, d, near_modes(d.get(), 3.0)});
  }
  {
    TargetSpec s;  // a 3-D mixture with unequal widths, from a full spec
    s.name = "gmm";
    s.dim = 3;
    s.weights = {1, 2, 3};
    s.means = {0, 0, 0, 3, -1, 2, -2, 2, 1};
    s.widths = {0.5, 1.0, 2.0};
    std::shared_ptr<Distribution> d = make_target(s);
    cases.push_back({"gmm-3d", d, near_modes(d.get(), 2.0)});
  }
  for (const std::string name : {"phi4", "phi4-dw", "phi4-general"}) {
    TargetSpec s;
    s.name = name;
    if (name == "phi4-dw") s.phi4.m = 3.0, s.phi4.lambda = 1.0;
    std::shared_ptr<Distribution> d = make_target(s);
    cases.push_back({name, d, near_modes(d.get(), 1.0)});
  }
  {
    TargetSpec s;
    s.name = "phi4";
    s.phi4.shape = {4, 3};
    s.phi4.m = 0.75;
    std::shared_ptr<Distribution> d = make_target(s);
    cases.push_back({"phi4-2d", d, near_modes(d.get(), 1.0)});
  }
  {
    TargetSpec s;
    s.name = "supernova";
    s.quadrature_grid = 200;
    std::shared_ptr<Distribution> d = make_target(s);
    cases.push_back({"supernova", d, [](TestRng& r) {
                       return std::vector<double>{-0.85 + 1.0 * r.normal(), 0.85 + 1.0 * r.normal()};
                     }});
  }
  for (double p : {1.5, 2.0, 4.0}) {
    std::shared_ptr<Distribution> d = std::make_unique<GeneralizedGaussian>(5, 1.7, p);
    cases.push_back({"gengauss-p" + fmt_num(p), d, [](TestRng& r) {
                       std::vector<double> x(5);
                       for (double& v : x) v = 2.0 * r.normal();
                       return x;
                     }});
  }
  {
    std::shared_ptr<Distribution> d = std::make_unique<SoftUniform>(4, 3.0, 1.3);
    cases.push_back({"softuniform", d, [](TestRng& r) {
                       std::vector<double> x(4);
                       for (double& v : x) v = 4.0 * r.normal();
                       return x;
                     }});
  }
  return cases;
}

double energy_at(const Distribution& d, const std::vector<double>& x) {
  Matrix<double> m = test::device_matrix({x});
  Vector<double> e("e", 1);
  d.energy(m, e);
  return test::to_host(e)[0];
}

}  // namespace

// Directional central differences: (E(x + hv) - E(x - hv)) / 2h against ∇E·v,
// for several random points and directions per target.
TEST(Targets, GradientMatchesCentralFiniteDifferences) {
  TestRng rng(7);
  for (const auto& c : all_cases()) {
    const int d = c.dist->dim();
    std::vector<std::vector<double>> pts;
    for (int k = 0; k < 12; ++k) pts.push_back(c.point(rng));
    Matrix<double> x = test::device_matrix(pts);
    Vector<double> e("e", pts.size());
    Matrix<double> g("g", pts.size(), d);
    c.dist->energy_grad(x, e, g);
    const auto gh = test::host_rows(g);
    const auto eh = test::to_host(e);
    for (std::size_t k = 0; k < pts.size(); ++k) {
      EXPECT_NEAR(eh[k], energy_at(*c.dist, pts[k]), 1e-12 * (1.0 + std::fabs(eh[k]))) << c.label;
      std::vector<double> v(d);
      double vnorm = 0;
      for (double& t : v) t = rng.normal(), vnorm += t * t;
      for (double& t : v) t /= std::sqrt(vnorm);
      double analytic = 0, gnorm = 0;
      for (int j = 0; j < d; ++j) analytic += gh[k][j] * v[j], gnorm += gh[k][j] * gh[k][j];
      // Richardson-extrapolated central differences (h and h/2) keep the
      // truncation error far below the tolerance.
      auto central = [&](double h) {
        std::vector<double> xp = pts[k], xm = pts[k];
        for (int j = 0; j < d; ++j) xp[j] += h * v[j], xm[j] -= h * v[j];
        return (energy_at(*c.dist, xp) - energy_at(*c.dist, xm)) / (2 * h);
      };
      const double h = 1e-3;
      const double fd = (4.0 * central(h / 2) - central(h)) / 3.0;
      const double scale = std::fmax(std::fabs(analytic), 1e-3 * std::sqrt(gnorm) + 1e-8);
      EXPECT_LT(std::fabs(fd - analytic) / scale, 1e-7)
          << c.label << " point " << k << ": fd " << fd << " analytic " << analytic;
    }
  }
}

// The float kernels agree with the double kernels to float precision.
TEST(Targets, FloatMatchesDouble) {
  TestRng rng(11);
  for (const auto& c : all_cases()) {
    const int d = c.dist->dim();
    const int n = 16;
    std::vector<std::vector<double>> pts;
    for (int k = 0; k < n; ++k) pts.push_back(c.point(rng));
    Matrix<double> xd = test::device_matrix(pts);
    Matrix<float> xf("xf", n, d);
    {
      auto h = Kokkos::create_mirror_view(xf);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < d; ++j) h(i, j) = static_cast<float>(pts[i][j]);
      Kokkos::deep_copy(xf, h);
      // Round the double inputs identically so only arithmetic precision differs.
      auto hd = Kokkos::create_mirror_view(xd);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < d; ++j) hd(i, j) = static_cast<double>(h(i, j));
      Kokkos::deep_copy(xd, hd);
    }
    Vector<double> ed("ed", n);
    Vector<float> ef("ef", n);
    Matrix<double> gd("gd", n, d);
    Matrix<float> gf("gf", n, d);
    c.dist->energy_grad(xd, ed, gd);
    c.dist->energy_grad(xf, ef, gf);
    const auto edh = test::to_host(ed), efh = test::to_host(ef);
    const auto gdh = test::host_rows(gd), gfh = test::host_rows(gf);
    for (int i = 0; i < n; ++i) {
      // Supernova: 31 bins of distance moduli near 40 lose ~1e-5 each in float.
      const double tol = c.label == "supernova" ? 3e-3 : 2e-5;
      EXPECT_NEAR(efh[i], edh[i], tol * (1.0 + std::fabs(edh[i]))) << c.label;
      double gn = 0;
      for (int j = 0; j < d; ++j) gn += gdh[i][j] * gdh[i][j];
      for (int j = 0; j < d; ++j)
        EXPECT_NEAR(gfh[i][j], gdh[i][j], tol * (1.0 + std::sqrt(gn))) << c.label;
    }
  }
}

// Host reference energies written independently of the kernels.
TEST(Targets, EnergiesMatchPlainReferences) {
  TestRng rng(3);
  // Gaussian mixture: direct sum of densities.
  {
    TargetSpec s;
    s.name = "gmm";
    s.dim = 3;
    s.weights = {1, 2, 3};
    s.means = {0, 0, 0, 3, -1, 2, -2, 2, 1};
    s.widths = {0.5, 1.0, 2.0};
    auto d = make_target(s);
    for (int k = 0; k < 20; ++k) {
      std::vector<double> x{2 * rng.normal(), 2 * rng.normal(), 2 * rng.normal()};
      double p = 0;
      for (int c = 0; c < 3; ++c) {
        double d2 = 0;
        for (int j = 0; j < 3; ++j) d2 += std::pow(x[j] - s.means[c * 3 + j], 2);
        const double sd = s.widths[c];
        p += (s.weights[c] / 6.0) * std::exp(-d2 / (2 * sd * sd)) / std::pow(2 * kPi * sd * sd, 1.5);
      }
      EXPECT_NEAR(energy_at(*d, x), -std::log(p), 1e-11);
    }
  }
  // φ⁴, Máté Eq. 19 written out on the ring.
  {
    TargetSpec s;
    s.name = "phi4";
    s.phi4.m = 0.75;
    auto d = make_target(s);
    for (int k = 0; k < 10; ++k) {
      std::vector<double> phi(16);
      for (double& v : phi) v = 2 * rng.normal();
      double S = 0;
      for (int i = 0; i < 16; ++i) {
        const double next = phi[(i + 1) % 16];
        S += std::pow(phi[i] - next, 2) - 0.75 * phi[i] * phi[i] + (1.0 / 16.0) * std::pow(phi[i] - 0.01, 4);
      }
      EXPECT_NEAR(energy_at(*d, phi), S, 1e-10 * (1 + std::fabs(S)));
    }
  }
  // φ⁴ double well of the authors' code: S = dT Σ [λ/4 x⁴ − m/2 x² + (m/2)(x_i − x_{i−1})²/dT²].
  {
    TargetSpec s;
    s.name = "phi4-dw";
    s.phi4.m = 4.5;
    s.phi4.lambda = 1.0;
    s.phi4.time_extent = 4.0;
    auto d = make_target(s);
    const double dT = 4.0 / 16;
    for (int k = 0; k < 10; ++k) {
      std::vector<double> x(16);
      for (double& v : x) v = 2 * rng.normal();
      double S = 0;
      for (int i = 0; i < 16; ++i) {
        const double prev = x[(i + 15) % 16];
        S += dT * (0.25 * std::pow(x[i], 4) - 2.25 * x[i] * x[i] + 2.25 * std::pow(x[i] - prev, 2) / (dT * dT));
      }
      EXPECT_NEAR(energy_at(*d, x), S, 1e-10 * (1 + std::fabs(S)));
    }
  }
  // 2-D lattice: both directions' hopping terms.
  {
    TargetSpec s;
    s.name = "phi4-general";
    s.phi4.shape = {3, 4};
    s.phi4.kappa = 0.7;
    s.phi4.mu2 = -0.3;
    s.phi4.lambda4 = 0.2;
    s.phi4.alpha = 0.1;
    auto d = make_target(s);
    std::vector<double> x(12);
    for (double& v : x) v = rng.normal();
    double S = 0;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 4; ++b) {
        const double p = x[a * 4 + b];
        S += 0.7 * std::pow(p - x[((a + 1) % 3) * 4 + b], 2) + 0.7 * std::pow(p - x[a * 4 + (b + 1) % 4], 2) -
             0.3 * p * p + 0.2 * std::pow(p - 0.1, 4);
      }
    EXPECT_NEAR(energy_at(*d, x), S, 1e-12 * (1 + std::fabs(S)));
  }
}

// ∫ exp(−E) = 1 for the normalised mixtures, by 2-D midpoint quadrature.
TEST(Targets, MixturesAreNormalised) {
  for (const std::string name : {"gmm4", "gmm2asym", "gmm9"}) {
    TargetSpec s;
    s.name = name;
    auto d = make_target(s);
    const int n = 1200;
    const double lo = -16, hi = 16, h = (hi - lo) / n;
    std::vector<std::vector<double>> pts;
    pts.reserve(static_cast<std::size_t>(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) pts.push_back({lo + (i + 0.5) * h, lo + (j + 0.5) * h});
    Matrix<double> x = test::device_matrix(pts);
    Vector<double> e("e", pts.size());
    d->energy(x, e);
    double z = 0;
    for (double v : test::to_host(e)) z += std::exp(-v) * h * h;
    EXPECT_NEAR(z, 1.0, 1e-6) << name;
    EXPECT_EQ(d->log_z(), 0.0);
  }
}

TEST(Targets, Phi4ModeMeans) {
  // Symmetric well (α = 0): minima at ±√(−μ₂ / 2λ₄) exactly.
  {
    Phi4Params p;
    p.preset = "phi4";
    p.m = 0.5;
    p.lambda = 1.0 / 16;
    p.alpha = 0.0;
    Phi4 phi(p);
    ASSERT_EQ(phi.well_minima().size(), 2u);
    EXPECT_NEAR(phi.well_minima()[0], -2.0, 1e-13);
    EXPECT_NEAR(phi.well_minima()[1], 2.0, 1e-13);
    EXPECT_NEAR(phi.barrier(), 0.0, 1e-13);
    EXPECT_NEAR(phi.modes().weights[0], 0.5, 1e-9);
  }
  // Authors' double well: modes at ±√(m/λ).
  for (double m : {6.0, 4.5, 3.0, 1.5}) {
    Phi4Params p;
    p.preset = "phi4-dw";
    p.m = m;
    p.lambda = 1.0;
    Phi4 phi(p);
    ASSERT_EQ(phi.well_minima().size(), 2u);
    EXPECT_NEAR(phi.well_minima()[1], std::sqrt(m), 1e-12);
    EXPECT_NEAR(phi.well_minima()[0], -std::sqrt(m), 1e-12);
  }
  // Máté's settings: every mode mean is a stationary point and a local minimum
  // of the full action, and the shift α makes the positive well heavier.
  for (double m : {0.25, 0.5, 0.75, 1.0}) {
    TargetSpec s;
    s.name = "phi4";
    s.phi4.m = m;
    auto d = make_target(s);
    const auto& modes = d->modes();
    ASSERT_EQ(modes.means.size(), 2u);
    EXPECT_NEAR(modes.means[1][0], std::sqrt(m / (2.0 / 16)), 0.05) << "roughly sqrt(m/2 lambda)";
    for (const auto& mean : modes.means) {
      Matrix<double> x = test::device_matrix({mean});
      Vector<double> e("e", 1);
      Matrix<double> g("g", 1, 16);
      d->energy_grad(x, e, g);
      const auto grad = test::host_rows(g);
      for (double gi : grad[0]) EXPECT_NEAR(gi, 0.0, 1e-12);
      TestRng rng(5);
      for (int k = 0; k < 20; ++k) {
        std::vector<double> y = mean;
        for (double& v : y) v += 1e-3 * rng.normal();
        EXPECT_GT(energy_at(*d, y), energy_at(*d, mean));
      }
    }
    EXPECT_GT(modes.weights[1], modes.weights[0]);
    EXPECT_NEAR(modes.weights[0] + modes.weights[1], 1.0, 1e-14);
  }
}

namespace {
// An independent supernova log-likelihood: Pen's fit in Ω_m directly, long
// double, data read from the text files, a linear solve instead of C⁻¹.
long double independent_half_chi2(double om, double h) {
  std::ifstream fm(BOLTZFLOW_SOURCE_DIR "/physics/jla/jla_mub.txt");
  std::ifstream fc(BOLTZFLOW_SOURCE_DIR "/physics/jla/jla_mub_covmatrix.txt");
  std::vector<double> z, mu, cov;
  double a, b;
  while (fm >> a >> b) z.push_back(a), mu.push_back(b);
  while (fc >> a) cov.push_back(a);
  const int n = static_cast<int>(z.size());
  auto eta = [&](long double sf) {
    const long double s = std::cbrt((1.0L - om) / om);
    const long double P = 1 / std::pow(sf, 4) - 0.1540L * s / std::pow(sf, 3) + 0.4304L * s * s / (sf * sf) +
                          0.19097L * s * s * s / sf + 0.066941L * std::pow(s, 4);
    return 2.0L * std::sqrt(s * s * s + 1.0L) * std::pow(P, -0.125L);
  };
  Eigen::VectorXd r(n);
  for (int k = 0; k < n; ++k) {
    const long double dl = 3000.0L * (1 + z[k]) * (eta(1.0L) - eta(1.0L / (1 + z[k])));
    r(k) = static_cast<double>(25.0L - 5.0L * std::log10(static_cast<long double>(h)) + 5.0L * std::log10(dl) - mu[k]);
  }
  Eigen::MatrixXd C = Eigen::Map<Eigen::MatrixXd>(cov.data(), n, n).transpose();
  const Eigen::VectorXd x = C.fullPivLu().solve(r);
  return 0.5L * r.dot(x);
}
}  // namespace

TEST(Targets, SupernovaLikelihoodAgainstIndependentComputation) {
  Supernova sn(200);
  const double ref = independent_half_chi2(0.3, 0.7);
  EXPECT_NEAR(ref, 16.99988, 5e-5) << "value quoted with the data (physics/jla/SOURCE.md)";
  EXPECT_NEAR(sn.half_chi2(0.3, 0.7), ref, 1e-9);
  // Through the kernel, in q space: E = ½χ² − log_norm − Σ log σ(1 − σ).
  const double q0 = std::log(0.3 / 0.7), q1 = std::log(0.7 / 0.3);
  const double e = energy_at(sn, {q0, q1});
  EXPECT_NEAR(e, ref - sn.log_likelihood_norm() - 2 * std::log(0.3 * 0.7), 1e-9);
  for (double om : {0.1, 0.25, 0.5, 0.9})
    for (double h : {0.6, 0.72})
      EXPECT_NEAR(sn.half_chi2(om, h), independent_half_chi2(om, h), 1e-8 * (1 + independent_half_chi2(om, h)));
}

TEST(Targets, SupernovaQuadratureStableUnderRefinement) {
  Supernova sn(200);
  const SupernovaMoments a = sn.quadrature(1000), b = sn.quadrature(4000);
  EXPECT_NEAR(a.log_z, b.log_z, 1e-7);
  EXPECT_NEAR(a.mean_omega, b.mean_omega, 1e-7);
  EXPECT_NEAR(a.mean_h, b.mean_h, 1e-8);
  EXPECT_NEAR(a.sd_omega, b.sd_omega, 1e-7);
  EXPECT_NEAR(a.sd_h, b.sd_h, 1e-8);
  // Sanity: a ΛCDM-like posterior.
  EXPECT_GT(b.mean_omega, 0.2);
  EXPECT_LT(b.mean_omega, 0.4);
  EXPECT_GT(b.mean_h, 0.65);
  EXPECT_LT(b.mean_h, 0.75);
}

TEST(Targets, BadParametersAreRejected) {
  TargetSpec s;
  s.name = "nonsense";
  EXPECT_THROW(make_target(s), std::invalid_argument);
  s.name = "gmm";
  s.dim = 2;
  s.weights = {1, 1};
  s.means = {0, 0, 1};
  s.widths = {1};
  EXPECT_THROW(make_target(s), std::invalid_argument);
  s.means = {0, 0, 1, 1};
  s.widths = {1, -1};
  EXPECT_THROW(make_target(s), std::invalid_argument);
  s.name = "phi4";
  s.phi4.lambda = -1;
  EXPECT_THROW(make_target(s), std::invalid_argument);
  EXPECT_THROW(GeneralizedGaussian(2, 1.0, 0.5), std::invalid_argument);
  EXPECT_THROW(SoftUniform(2, -1.0), std::invalid_argument);
}
