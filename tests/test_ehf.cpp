// Equivariant Hamiltonian flows (Rezende et al. 2019): the rings and the O(2) φ⁴
// targets against closed forms and quadrature, their invariance ({g, S} = 0),
// the generators and the prior check, the Poisson bracket c = {g, H} against
// central differences of the networks, the penalty's parameter gradient against
// central differences, the GECO multiplier update, and the leapfrog's exact
// equivariance for an invariant Hamiltonian.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "flows/integrators/leapfrog.hpp"
#include "flows/models/nhf.hpp"
#include "physics/base_distributions.hpp"
#include "physics/symmetry.hpp"
#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;
using test::to_host;

namespace {

const auto device = test::device_vec<double>;

std::vector<double> energies(const Distribution& d, const std::vector<double>& pts) {
  const int D = d.dim(), n = static_cast<int>(pts.size()) / D;
  Vector<double> e("e", n);
  d.energy(ConstMatrix<double>(test::device_mat<double>(pts, n, D)), e);
  return to_host(e);
}

std::vector<double> gradients(const Distribution& d, const std::vector<double>& pts) {
  const int D = d.dim(), n = static_cast<int>(pts.size()) / D;
  Vector<double> e("e", n);
  Matrix<double> g("g", n, D);
  d.energy_grad(ConstMatrix<double>(test::device_mat<double>(pts, n, D)), e, g);
  return to_host(g);
}

/// ∫ exp(−energy) over [−L, L]² by the midpoint rule on m² points.
double plane_integral(const Distribution& d, double L, int m) {
  double s = 0;
  const double h = 2 * L / m;
  std::vector<double> row(2 * static_cast<std::size_t>(m));
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < m; ++j) row[2 * j] = -L + (i + 0.5) * h, row[2 * j + 1] = -L + (j + 0.5) * h;
    for (double e : energies(d, row)) s += std::exp(-e);
  }
  return s * h * h;
}

std::unique_ptr<Distribution> ring(std::vector<double> radii, std::vector<double> widths, std::vector<double> weights = {}) {
  TargetSpec t;
  t.name = "ring";
  t.radii = std::move(radii);
  t.widths = std::move(widths);
  t.weights = std::move(weights);
  return make_target(t);
}

std::unique_ptr<Distribution> o2phi4(std::vector<int> shape, double m = 0.5, double lambda = 1.0 / 16) {
  TargetSpec t;
  t.name = "o2-phi4";
  t.phi4.shape = std::move(shape);
  t.phi4.m = m;
  t.phi4.lambda = lambda;
  return make_target(t);
}

/// Rotates every consecutive pair of coordinates of a row by angle a.
std::vector<double> rotate_pairs(std::vector<double> x, double a) {
  for (std::size_t i = 0; i + 1 < x.size(); i += 2) {
    const double u = x[i], v = x[i + 1];
    x[i] = std::cos(a) * u - std::sin(a) * v;
    x[i + 1] = std::sin(a) * u + std::cos(a) * v;
  }
  return x;
}

}  // namespace

TEST(Ehf, RingNormalisersMatchTheClosedFormAndQuadrature) {
  // The figures: R = 2, s = 0.5: Z = 15.7496; R = 3, s = 0.3: Z = 14.1746.
  EXPECT_NEAR(RingMixture::ring_normaliser(2.0, 0.5), 15.7496, 5e-4);
  EXPECT_NEAR(RingMixture::ring_normaliser(3.0, 0.3), 14.1746, 5e-4);
  for (auto [R, s] : {std::pair{2.0, 0.5}, std::pair{3.0, 0.3}, std::pair{0.4, 0.8}}) {
    auto d = ring({R}, {s});
    const double z = plane_integral(*d, R + 10 * s, 1200);  // the energy on a grid: independent of the closed form
    EXPECT_NEAR(std::log(z), d->log_z(), 2e-5) << "R " << R << " s " << s;
  }
  // A mixture of two rings (weights 1:3): ∫ exp(−energy) = Z of the first ring.
  auto m = ring({1.0, 3.0}, {0.3, 0.5}, {1.0, 3.0});
  EXPECT_NEAR(std::log(plane_integral(*m, 6.0, 1200)), std::log(RingMixture::ring_normaliser(1.0, 0.3)), 2e-5);
}

TEST(Ehf, RingSamplerMatchesTheDensity) {
  auto m = ring({1.0, 4.0}, {0.2, 0.3}, {1.0, 3.0});
  const int n = 200000;
  Matrix<double> x("x", n, 2);
  m->sample(7, Purpose::test, 0, 0, x);
  const auto h = to_host(x);
  // The radius: its mean against the quadrature figure; the inner ring's mass (r < 2.5) against ¼
  // (the rings' tails across r = 2.5 are below 1e−6 here); the angle's moments against 0.
  double r1 = 0, inner = 0, c[5] = {0}, s[5] = {0};
  for (int i = 0; i < n; ++i) {
    const double r = std::hypot(h[2 * i], h[2 * i + 1]), a = std::atan2(h[2 * i + 1], h[2 * i]);
    r1 += r;
    inner += r < 2.5;
    for (int k = 1; k <= 4; ++k) c[k] += std::cos(k * a), s[k] += std::sin(k * a);
  }
  const double mean_r = m->observable_means()[0], sd_r = m->observable_sds()[0];
  EXPECT_NEAR(r1 / n, mean_r, 5 * sd_r / std::sqrt(n));
  // To first order in s/R the r-Jacobian moves a ring's mean radius to R + s²/R.
  EXPECT_NEAR(mean_r, 0.25 * (1.0 + 0.04) + 0.75 * (4.0 + 0.09 / 4.0), 2e-3);
  EXPECT_NEAR(inner / n, 0.25, 5 * std::sqrt(0.25 * 0.75 / n));
  for (int k = 1; k <= 4; ++k) EXPECT_LT(std::hypot(c[k], s[k]) / n, 5 / std::sqrt(n)) << "k = " << k;
}

// The estimators' table of the rings covers the radius and the angle (the harmonics are the
// angular moments): primaries o, o² of those two observables, exact values from the target.
TEST(Ehf, RingEstimatorsCoverTheRadiusAndTheAngle) {
  const auto d = ring({2.0}, {0.5});
  const Distribution::Estimators e = d->estimators();
  EXPECT_EQ(e.figures, (std::vector<std::string>{"mean radius", "mean angle", "sd radius", "sd angle"}));
  EXPECT_EQ(e.primaries, (std::vector<std::string>{"radius", "angle", "radius^2", "angle^2"}));
  EXPECT_NEAR(e.exact[1], 0.0, 1e-12);
  EXPECT_NEAR(e.exact[3], kPi / std::sqrt(3.0), 1e-12);
  const std::vector<double> pts{0.0, 3.0, -1.0, -1.0};
  Matrix<double> a("a", 2, 4);
  d->estimator_primaries(ConstMatrix<double>(test::device_mat<double>(pts, 2, 2)), a);
  const auto h = to_host(a);
  EXPECT_NEAR(h[0], 3.0, 1e-14);
  EXPECT_NEAR(h[1], kPi / 2, 1e-14);
  EXPECT_NEAR(h[2], 9.0, 1e-13);
  EXPECT_NEAR(h[4 + 1], -3 * kPi / 4, 1e-14);
  EXPECT_NEAR(h[4 + 3], 9 * kPi * kPi / 16, 1e-13);
}

TEST(Ehf, TargetGradientsMatchFiniteDifferences) {
  std::vector<std::unique_ptr<Distribution>> ds;
  ds.push_back(ring({2.0}, {0.5}));
  ds.push_back(ring({1.0, 3.0}, {0.3, 0.5}, {1.0, 3.0}));
  ds.push_back(o2phi4({8}));
  ds.push_back(o2phi4({3, 3}, 1.0, 0.3));
  TestRng r(4);
  for (const auto& d : ds) {
    const int D = d->dim();
    std::vector<double> x(static_cast<std::size_t>(D));
    for (double& v : x) v = 1.5 * r.normal();
    const auto g = gradients(*d, x);
    for (int j = 0; j < D; ++j) {
      const double fd = test::central_difference(
          [&](double h) {
            auto y = x;
            y[j] += h;
            return energies(*d, y)[0];
          },
          1e-4);
      EXPECT_NEAR(g[j], fd, 1e-7 * std::fmax(1.0, std::fabs(fd))) << d->name() << " coordinate " << j;
    }
  }
}

TEST(Ehf, O2Phi4AndRingsAreInvariantUnderTheirRotations) {
  TestRng r(5);
  struct Case {
    std::unique_ptr<Distribution> d;
    std::string gen;
  };
  std::vector<Case> cases;
  cases.push_back({o2phi4({8}), "o2_lattice"});
  cases.push_back({o2phi4({4, 4}, 1.0, 0.2), "o2_lattice"});
  cases.push_back({ring({2.0}, {0.5}), "so2"});
  cases.push_back({ring({1.0, 3.0}, {0.3, 0.5}, {1.0, 3.0}), "so2"});
  for (const auto& c : cases) {
    const int D = c.d->dim(), n = 64;
    std::vector<double> pts(static_cast<std::size_t>(n) * D);
    for (double& v : pts) v = 1.3 * r.normal();
    const Generators g = make_generators(c.gen, D);
    // {g, S} = (B q)·∇S(q): zero to rounding, relative to |Bq| |∇S|.
    EXPECT_LT(invariance_violation(*c.d, g, ConstMatrix<double>(test::device_mat<double>(pts, n, D))), 1e-13)
        << c.d->name();
    // A finite rotation leaves the energy unchanged.
    for (int i = 0; i < 4; ++i) {
      const std::vector<double> x(pts.begin() + i * D, pts.begin() + (i + 1) * D);
      const double e0 = energies(*c.d, x)[0], e1 = energies(*c.d, rotate_pairs(x, 0.77))[0];
      EXPECT_NEAR(e1, e0, 1e-12 * std::fmax(1.0, std::fabs(e0))) << c.d->name();
    }
  }
  // The check can fail: φ⁴'s one-component action under pairs of sites, and a Gaussian mixture.
  TargetSpec t;
  t.name = "phi4";
  t.phi4.shape = {8};
  auto phi4 = make_target(t);
  t.name = "gmm4";
  auto gmm4 = make_target(t);
  std::vector<double> pts(8 * 8);
  for (double& v : pts) v = 1.3 * r.normal();
  EXPECT_GT(invariance_violation(*phi4, make_generators("o2_lattice", 8), ConstMatrix<double>(test::device_mat<double>(pts, 8, 8))), 1e-3);
  EXPECT_GT(invariance_violation(*gmm4, make_generators("so2", 2), ConstMatrix<double>(test::device_mat<double>(pts, 32, 2))), 1e-3);
}

TEST(Ehf, GeneratorsAreParsedAndCheckedAndNonInvariantPriorsRefused) {
  const Generators so2 = make_generators("so2", 2);
  ASSERT_EQ(so2.count(), 1);
  EXPECT_EQ(so2.b[0], (std::vector<double>{0, -1, 1, 0}));  // pᵀBq = q₁p₂ − q₂p₁
  const Generators o2 = make_generators("o2_lattice", 6);
  ASSERT_EQ(o2.count(), 1);
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(o2.b[0][(2 * s) * 6 + 2 * s + 1], -1.0);
    EXPECT_EQ(o2.b[0][(2 * s + 1) * 6 + 2 * s], 1.0);
  }
  EXPECT_TRUE(make_generators("none", 4).empty());
  EXPECT_THROW(make_generators("so2", 3), std::invalid_argument);
  EXPECT_THROW(make_generators("o2_lattice", 5), std::invalid_argument);
  EXPECT_THROW(make_generators("so3", 3), std::invalid_argument);
  const std::string dir = testing::TempDir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + name) << text;
    return "matrix:" + dir + name;
  };
  // Two generators of SO(3) in a file.
  const Generators two = make_generators(write("bf_gen_ok.txt", "0 -1 0  1 0 0  0 0 0\n0 0 -1  0 0 0  1 0 0\n"), 3);
  EXPECT_EQ(two.count(), 2);
  EXPECT_THROW(make_generators(write("bf_gen_sym.txt", "0 1 0  1 0 0  0 0 0"), 3), std::invalid_argument);  // symmetric
  EXPECT_THROW(make_generators(write("bf_gen_short.txt", "0 1 0  1 0"), 3), std::invalid_argument);
  EXPECT_THROW(make_generators(write("bf_gen_word.txt", "0 -1 x 1 0 0 0 0 0"), 3), std::invalid_argument);
  EXPECT_THROW(make_generators("matrix:" + dir + "bf_gen_missing.txt", 3), std::invalid_argument);
  // Priors: N(0, s² I) and exp(−|x/σ|²) are rotation invariant; exp(−|x/σ|³) and the soft-uniform box are not.
  EXPECT_NO_THROW(require_invariant_prior(*GeneralizedGaussian::gaussian(4, 1.5), make_generators("o2_lattice", 4)));
  EXPECT_NO_THROW(require_invariant_prior(GeneralizedGaussian(2, 1.0, 2.0), so2));
  EXPECT_THROW(require_invariant_prior(GeneralizedGaussian(2, 1.0, 3.0), so2), std::invalid_argument);
  EXPECT_THROW(require_invariant_prior(SoftUniform(2, 3.0), so2), std::invalid_argument);
  EXPECT_NO_THROW(require_invariant_prior(SoftUniform(2, 3.0), make_generators("none", 2)));
}

// The group's action against closed forms: rotations of pairs (o2_lattice), a generator
// of large norm (many substeps), two generators applied in order; for a dense antisymmetric
// generator the group law exp(aB) exp(bB) = exp((a + b)B), |x| kept, and d/dθ at 0 = B x.
TEST(Ehf, GroupActionMatchesClosedFormsAndTheGroupLaw) {
  TestRng r(17);
  auto run = [](const Generators& g, const std::vector<double>& x, const std::vector<double>& theta) {
    const int D = g.dim, K = g.count(), n = static_cast<int>(x.size()) / D;
    Matrix<double> xd = test::device_mat<double>(x, n, D);
    GroupAction(g, n).apply(ConstMatrix<double>(test::device_mat<double>(theta, n, K)), xd);
    return to_host(xd);
  };
  const int n = 7;
  {  // o2_lattice on 3 sites: each pair rotated by θ_i
    std::vector<double> x(n * 6), th(n);
    for (double& v : x) v = 2 * r.normal();
    for (int i = 0; i < n; ++i) th[i] = -3.1 + 6.2 * i / (n - 1);
    const auto y = run(make_generators("o2_lattice", 6), x, th);
    for (int i = 0; i < n; ++i) {
      const auto want = rotate_pairs(std::vector<double>(x.begin() + 6 * i, x.begin() + 6 * i + 6), th[i]);
      for (int j = 0; j < 6; ++j) EXPECT_NEAR(y[6 * i + j], want[j], 1e-14 * 4) << i << " " << j;
    }
  }
  const std::string dir = testing::TempDir();
  {  // 7 J in the (0, 1) plane of R^3 (21 substeps at θ = 2.9), then J' in the (0, 2) plane
    std::ofstream(dir + "bf_gen_act.txt") << "0 -7 0  7 0 0  0 0 0\n0 0 -1  0 0 0  1 0 0\n";
    const Generators g = make_generators("matrix:" + dir + "bf_gen_act.txt", 3);
    std::vector<double> x(n * 3), th(n * 2);
    for (double& v : x) v = r.normal();
    for (double& v : th) v = 2.9 * (2 * r.uniform() - 1);
    const auto y = run(g, x, th);
    for (int i = 0; i < n; ++i) {
      const double a = 7 * th[2 * i], b = th[2 * i + 1];
      const double u0 = std::cos(a) * x[3 * i] - std::sin(a) * x[3 * i + 1];
      const double u1 = std::sin(a) * x[3 * i] + std::cos(a) * x[3 * i + 1];
      const double want[3] = {std::cos(b) * u0 - std::sin(b) * x[3 * i + 2], u1,
                              std::sin(b) * u0 + std::cos(b) * x[3 * i + 2]};
      for (int j = 0; j < 3; ++j) EXPECT_NEAR(y[3 * i + j], want[j], 1e-13) << i << " " << j;
    }
  }
  {  // a dense antisymmetric 5 x 5 generator (‖B‖∞ about 4)
    const int D = 5;
    std::ostringstream text;
    text << std::setprecision(17);
    std::vector<double> B(D * D, 0.0);
    for (int a = 0; a < D; ++a)
      for (int b = a + 1; b < D; ++b) B[a * D + b] = r.normal(), B[b * D + a] = -B[a * D + b];
    for (double v : B) text << v << " ";
    std::ofstream(dir + "bf_gen_dense.txt") << text.str();
    const Generators g = make_generators("matrix:" + dir + "bf_gen_dense.txt", D);
    ASSERT_EQ(g.b[0], B);
    std::vector<double> x(n * D), a(n), b(n), ab(n);
    for (double& v : x) v = r.normal();
    for (int i = 0; i < n; ++i) a[i] = 3 * r.normal(), b[i] = 3 * r.normal(), ab[i] = a[i] + b[i];
    const auto once = run(g, x, ab), twice = run(g, run(g, x, a), b);
    for (int i = 0; i < n; ++i) {
      double n0 = 0, n1 = 0;
      for (int j = 0; j < D; ++j) {
        EXPECT_NEAR(twice[D * i + j], once[D * i + j], 1e-12) << i << " " << j;
        n0 += x[D * i + j] * x[D * i + j], n1 += once[D * i + j] * once[D * i + j];
      }
      EXPECT_NEAR(std::sqrt(n1), std::sqrt(n0), 1e-13 * std::sqrt(n0)) << i;
    }
    const double h = 1e-4;
    const auto plus = run(g, x, std::vector<double>(n, h)), minus = run(g, x, std::vector<double>(n, -h));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < D; ++j) {
        double bx = 0;
        for (int c = 0; c < D; ++c) bx += B[j * D + c] * x[D * i + c];
        EXPECT_NEAR((plus[D * i + j] - minus[D * i + j]) / (2 * h), bx, 1e-6 * std::fmax(1.0, std::fabs(bx)));
      }
  }
}

// Random group elements: a row's angle depends on its global index only (two calls over
// halves equal one over the whole), and is uniform: (1, 0) moved by so2 has angle moments
// |mean e^{ikφ}| at the noise level.
TEST(Ehf, RandomGroupElementsAreUniformAndKeyedByTheGlobalIndex) {
  const Generators g = make_generators("so2", 2);
  const int n = 4096;
  std::vector<double> x(2 * n);
  for (int i = 0; i < n; ++i) x[2 * i] = 1.0;
  const GroupAction act(g, n);
  Matrix<double> all = test::device_mat<double>(x, n, 2);
  act.apply_random(5, Purpose::symmetry_orbit, 3, 1000, all);
  Matrix<double> lo = test::device_mat<double>(std::vector<double>(x.begin(), x.begin() + 2 * 100), 100, 2);
  Matrix<double> hi = test::device_mat<double>(std::vector<double>(x.begin() + 2 * 100, x.end()), n - 100, 2);
  act.apply_random(5, Purpose::symmetry_orbit, 3, 1000, lo);
  act.apply_random(5, Purpose::symmetry_orbit, 3, 1100, hi);
  const auto ha = to_host(all), hl = to_host(lo), hh = to_host(hi);
  for (int j = 0; j < 200; ++j) EXPECT_EQ(ha[j], hl[j]);
  for (int j = 200; j < 2 * n; ++j) EXPECT_EQ(ha[j], hh[j - 200]);
  for (int k = 1; k <= 4; ++k) {
    double c = 0, s = 0;
    for (int i = 0; i < n; ++i) {
      const double phi = std::atan2(ha[2 * i + 1], ha[2 * i]);
      c += std::cos(k * phi), s += std::sin(k * phi);
    }
    EXPECT_LT(std::hypot(c, s) / n, 4.0 / std::sqrt(n)) << "k = " << k;
  }
  // Another step moves the rows elsewhere.
  Matrix<double> other = test::device_mat<double>(x, n, 2);
  act.apply_random(5, Purpose::symmetry_orbit, 4, 1000, other);
  EXPECT_GT(std::fabs(to_host(other)[1] - ha[1]), 1e-6);
}

namespace {

struct Ehf {
  std::unique_ptr<Distribution> target;
  std::unique_ptr<NhfFlow<double>> flow;
  std::vector<double> params;
};

Ehf make_ehf(std::unique_ptr<Distribution> target, const std::string& gen, bool fixed, bool elbo, int max_batch = 6,
             double rate = 0.05, SymmetryPoints points = SymmetryPoints::start, std::int64_t warmup = 0) {
  Ehf s;
  s.target = std::move(target);
  const int D = s.target->dim();
  NhfSpec spec;
  spec.hidden = {6, 5};
  spec.activation = Activation::softplus;
  spec.fixed_kinetic = fixed;
  spec.steps = 2;
  spec.time = 0.7;
  spec.elbo = elbo;
  spec.dataset_size = 40;
  spec.symmetry = make_generators(gen, D);
  spec.symmetry_tolerance = 0.01;
  spec.symmetry_rate = rate;
  spec.symmetry_points = points;
  spec.symmetry_warmup = warmup;
  s.flow = std::make_unique<NhfFlow<double>>(*s.target, GeneralizedGaussian::gaussian(D, 1.2), spec, max_batch, 9u);
  Vector<double> p("p", s.flow->layout().size());
  s.flow->initialize(p, 2u);
  s.params = to_host(p);
  TestRng r(3);
  for (double& v : s.params) v += 0.3 * r.normal();
  return s;
}

}  // namespace

// c = {g, H} = (Bᵀp)·∇K(p) − (Bq)·∇V(q) by the flow, against central differences of
// the flow's K and V along the generator's directions, with the same momenta
// p ~ Philox(seed, symmetry_momentum, stream, first + i) drawn here on the host.
TEST(Ehf, BracketMatchesFiniteDifferencesOfTheNetworks) {
  for (bool fixed : {false, true}) {
    Ehf s = make_ehf(o2phi4({3}), "o2_lattice", fixed, false);
    const int D = 6, n = 5;
    TestRng r(8);
    std::vector<double> q(static_cast<std::size_t>(n) * D);
    for (double& v : q) v = r.normal();
    Matrix<double> c("c", n, 1);
    const std::uint32_t seed = 21;
    const std::int64_t stream = 4;
    const std::uint64_t first = 100;
    s.flow->symmetry_bracket(device(s.params), ConstMatrix<double>(test::device_mat<double>(q, n, D)), seed, stream, first, c);
    const auto hc = to_host(c);
    const std::vector<double> B = make_generators("o2_lattice", D).b[0];
    const auto M = s.flow->mass_matrix(device(s.params));
    for (int i = 0; i < n; ++i) {
      const RngStream st(seed, Purpose::symmetry_momentum, static_cast<std::uint32_t>(stream), first + i);
      std::vector<double> qi(q.begin() + i * D, q.begin() + (i + 1) * D), pi(D), bq(D, 0.0), btp(D, 0.0);
      for (int j = 0; j < D; ++j) pi[j] = st.normal(static_cast<std::uint32_t>(j));
      for (int a = 0; a < D; ++a)
        for (int b = 0; b < D; ++b) bq[a] += B[a * D + b] * qi[b], btp[a] += B[b * D + a] * pi[b];
      auto along = [&](const std::vector<double>& x, const std::vector<double>& u, bool kinetic) {
        return test::central_difference(
            [&](double h) {
              std::vector<double> y = x;
              for (int j = 0; j < D; ++j) y[j] += h * u[j];
              return kinetic ? s.flow->kinetic(device(s.params), y)[0] : s.flow->potential(device(s.params), y)[0];
            },
            1e-4);
      };
      const double dk = along(pi, btp, true), dv = along(qi, bq, false);
      EXPECT_NEAR(hc[i], dk - dv, 1e-7 * std::fmax(1.0, std::fabs(dk - dv))) << (fixed ? "fixed" : "mlp") << " row " << i;
      if (fixed) {  // the kinetic part in closed form: pᵀ B M p = ½ pᵀ [B, M] p
        double comm = 0;
        for (int a = 0; a < D; ++a)
          for (int b = 0; b < D; ++b) {
            double bm = 0, mb = 0;
            for (int k = 0; k < D; ++k) bm += B[a * D + k] * M[k * D + b], mb += M[a * D + k] * B[k * D + b];
            comm += 0.5 * pi[a] * (bm - mb) * pi[b];
          }
        EXPECT_NEAR(dk, comm, 1e-7 * std::fmax(1.0, std::fabs(comm)));
      }
    }
  }
}

// With M = m I (commuting with every rotation) the kinetic part vanishes exactly.
TEST(Ehf, FixedKineticCommutingWithTheGeneratorContributesNothing) {
  Ehf s = make_ehf(ring({2.0}, {0.5}), "so2", true, true);
  // K.L's diagonal holds log L_ii, the strict lower triangle L_ij: L = 1.3 I.
  const ParameterLayout& lay = s.flow->layout();
  const ParamSlice L = lay.slice("K.L");
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) s.params[L.offset + a * 2 + b] = a == b ? std::log(1.3) : 0.0;
  const auto M = s.flow->mass_matrix(device(s.params));
  EXPECT_NEAR(M[0], 1.69, 1e-12);
  EXPECT_NEAR(M[1], 0.0, 1e-12);
  const int n = 6;
  TestRng r(2);
  std::vector<double> q(2 * n);
  for (double& v : q) v = r.normal();
  Matrix<double> c("c", n, 1);
  s.flow->symmetry_bracket(device(s.params), ConstMatrix<double>(test::device_mat<double>(q, n, 2)), 3, 0, 0, c);
  const auto hc = to_host(c);
  for (int i = 0; i < n; ++i) {
    const std::vector<double> qi{q[2 * i], q[2 * i + 1]}, bq{-q[2 * i + 1], q[2 * i]};
    const double dv = test::central_difference(
        [&](double h) { return s.flow->potential(device(s.params), {qi[0] + h * bq[0], qi[1] + h * bq[1]})[0]; }, 1e-4);
    EXPECT_NEAR(hc[i], -dv, 1e-8 * std::fmax(1.0, std::fabs(dv)));
  }
}

// The loss with the penalty Σ_k λ_k Σ_i (c_ik² − κ): its parameter gradient (one HVP pass of
// each network) against central differences, for both losses, both kinetic energies, one and
// two generators, at λ ≠ 1.
TEST(Ehf, PenaltyGradientMatchesFiniteDifferences) {
  const std::string dir = testing::TempDir();
  std::ofstream(dir + "bf_gen_two4.txt") << "0 -1 0 0  1 0 0 0  0 0 0 -1  0 0 1 0\n"
                                            "0 0 -1 0  0 0 0 -1  1 0 0 0  0 1 0 0\n";
  struct Case {
    std::string target, gen;
    bool fixed, elbo;
    SymmetryPoints points = SymmetryPoints::start;
  };
  const auto prior = SymmetryPoints::prior, orbit = SymmetryPoints::orbit;
  const Case cases[] = {{"ring", "so2", false, true},
                        {"ring", "so2", true, true},
                        {"ring", "so2", false, true, prior},
                        {"ring", "so2", false, true, orbit},
                        {"ring", "so2", false, false},
                        {"o2-phi4", "o2_lattice", true, false},
                        {"o2-phi4", "o2_lattice", false, false, prior},
                        {"o2-phi4", "o2_lattice", false, false, orbit},
                        {"o2-phi4-4", "matrix:" + dir + "bf_gen_two4.txt", false, false},
                        {"o2-phi4-4", "matrix:" + dir + "bf_gen_two4.txt", true, false, orbit}};
  for (const auto& c : cases) {
    std::unique_ptr<Distribution> t = c.target == "ring" ? ring({2.0}, {0.5}) : o2phi4({c.target == "o2-phi4" ? 3 : 2});
    Ehf s = make_ehf(std::move(t), c.gen, c.fixed, c.elbo, 6, 0.05, c.points);
    const int K = s.flow->symmetry_generators();
    std::vector<double> st(2 * K + 1, 0.0);
    for (int k = 0; k < K; ++k) st[k] = 2.5 + k;
    st[2 * K] = 1.0;
    s.flow->set_state(st);
    const BatchRef b = BatchRef::one_rank(5, 2, 10, 6);
    LocalCollective coll;
    auto loss = [&](const std::vector<double>& q) {
      Vector<double> g("g", q.size());
      return s.flow->loss_and_grad(device(q), g, b, coll);
    };
    Vector<double> grad("grad", s.params.size());
    s.flow->loss_and_grad(device(s.params), grad, b, coll);
    const auto g = to_host(grad);
    TestRng r(11);
    const std::string what = c.target + " " + c.gen + (c.fixed ? " fixed" : " mlp") + (c.elbo ? " elbo" : " reverse KL") +
                             " at " + symmetry_points_name(c.points);
    for (const auto& [fd, dot] : test::directional_checks(loss, s.params, g, r))
      EXPECT_LE(std::fabs(fd - dot), 1e-6 * std::fmax(1.0, std::fabs(dot))) << what << ": fd " << fd << " vs " << dot;
    // The penalty is really in the loss: with λ → 2λ the loss moves by the penalty Σ λ (c² − κ).
    const double l1 = loss(s.params);
    for (int k = 0; k < K; ++k) st[k] *= 2;
    s.flow->set_state(st);
    const double l2 = loss(s.params);
    double expect = 0;
    for (const auto& [name, v] : s.flow->step_figures())
      if (name.rfind("symmetry_constraint", 0) == 0 && name.find("_ma") == std::string::npos) {
        const int k = name.size() > std::string("symmetry_constraint").size() ? std::stoi(name.substr(20)) : 0;
        expect += (st[k] / 2) * (v - 0.01) * b.global;
      }
    EXPECT_NEAR(l2 - l1, expect, 1e-9 * std::fmax(1.0, std::fabs(expect))) << what;
    EXPECT_GT(std::fabs(expect), 1e-6) << what;
  }
}

// model.symmetry_points = orbit: the penalty's E[c²] is the bracket's at the batch's start
// positions (here the prior's draws of reverse_kl, regenerated) moved by the group's random
// elements of the same keys; and it differs from the bracket's at the unmoved positions.
TEST(Ehf, OrbitPointsAreTheStartPositionsMovedByTheGroup) {
  Ehf s = make_ehf(o2phi4({3}), "o2_lattice", false, false, 6, 0.05, SymmetryPoints::orbit);
  const int D = 6, n = 6;
  const BatchRef b = BatchRef::one_rank(5, 2, 10, n);
  LocalCollective coll;
  Vector<double> grad("grad", s.params.size());
  s.flow->loss_and_grad(device(s.params), grad, b, coll);
  double constraint = -1;
  for (const auto& [name, v] : s.flow->step_figures())
    if (name == "symmetry_constraint") constraint = v;
  Matrix<double> z("z", n, D), c("c", n, 1);
  GeneralizedGaussian::gaussian(D, 1.2)->sample(b.seed, Purpose::base_sample, 2, b.first, z);
  auto mean_c2 = [&] {
    s.flow->symmetry_bracket(device(s.params), ConstMatrix<double>(z), b.seed, b.step, b.first, c);
    double m = 0;
    for (double v : to_host(c)) m += v * v / n;
    return m;
  };
  const double unmoved = mean_c2();
  GroupAction(make_generators("o2_lattice", D), n).apply_random(b.seed, Purpose::symmetry_orbit, 2, b.first, z);
  const double moved = mean_c2();
  EXPECT_NEAR(constraint, moved, 1e-12 * std::fmax(1.0, moved));
  EXPECT_GT(std::fabs(moved - unmoved), 1e-6 * moved);
}

// GECO: Ĉ = E[c²] − κ over the batch; C_ma starts at Ĉ, then 0.99 C_ma + 0.01 Ĉ; λ ← λ exp(η C_ma).
TEST(Ehf, GecoUpdateFollowsItsRuleAndTheStateRoundTrips) {
  Ehf s = make_ehf(ring({2.0}, {0.5}), "so2", false, true);
  LocalCollective coll;
  Vector<double> p = device(s.params), g("g", s.params.size());
  auto constraint = [&]() {
    for (const auto& [name, v] : s.flow->step_figures())
      if (name == "symmetry_constraint") return v;
    return std::nan("");
  };
  auto lambda = [&]() { return s.flow->state()[0]; };
  EXPECT_EQ(s.flow->state(), (std::vector<double>{1.0, 0.0, 0.0, 0.0, -1.0, 1.0, 0.0}));  // λ, C_ma, started, B
  s.flow->loss_and_grad(p, g, BatchRef::one_rank(5, 0, 0, 6), coll);
  const double c1 = constraint() - 0.01;
  s.flow->loss_and_grad(p, g, BatchRef::one_rank(5, 0, 0, 6), coll);  // a bare loss changes no state
  EXPECT_EQ(constraint() - 0.01, c1);
  EXPECT_EQ(lambda(), 1.0);
  s.flow->end_step();
  EXPECT_DOUBLE_EQ(s.flow->state()[1], c1);
  EXPECT_DOUBLE_EQ(lambda(), std::exp(0.05 * c1));
  s.flow->loss_and_grad(p, g, BatchRef::one_rank(5, 1, 0, 6), coll);
  const double c2 = constraint() - 0.01;
  EXPECT_NE(c2, c1);
  s.flow->end_step();
  const double ma = 0.99 * c1 + 0.01 * c2;
  EXPECT_DOUBLE_EQ(s.flow->state()[1], ma);
  EXPECT_DOUBLE_EQ(lambda(), std::exp(0.05 * c1) * std::exp(0.05 * ma));
  ASSERT_LT(std::fabs(0.05 * c1), 0.1) << "the test's steps are below the per-step clip";
  s.flow->end_step();  // nothing pending: no change
  EXPECT_DOUBLE_EQ(s.flow->state()[1], ma);
  const auto st = s.flow->state();
  Ehf t = make_ehf(ring({2.0}, {0.5}), "so2", false, true);
  t.flow->set_state(st);
  EXPECT_EQ(t.flow->state(), st);
  EXPECT_THROW(t.flow->set_state({1.0, 2.0}), std::invalid_argument);
  t.flow->set_state({2.0, 0.5, 1.0});  // a checkpoint without the generators: nothing to check
  EXPECT_EQ(t.flow->state()[0], 2.0);
  // Other generators than the state's (a matrix file edited before a resume): refused, naming them.
  std::ofstream(testing::TempDir() + "bf_gen_twice.txt") << "0 -2 2 0\n";
  Ehf w = make_ehf(ring({2.0}, {0.5}), "matrix:" + testing::TempDir() + "bf_gen_twice.txt", false, true);
  try {
    w.flow->set_state(st);
    ADD_FAILURE() << "other generators accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("differ from those the run was trained with by up to 1"), std::string::npos)
        << e.what();
  }
  // A large rate: the multiplier moves by at most e^{±0.1} per step.
  Ehf u = make_ehf(ring({2.0}, {0.5}), "so2", false, true, 6, 1e4);
  u.flow->loss_and_grad(p, g, BatchRef::one_rank(5, 0, 0, 6), coll);
  u.flow->end_step();
  EXPECT_DOUBLE_EQ(u.flow->state()[0], std::exp(c1 > 0 ? 0.1 : -0.1));
  // A warm-up of 2 steps: the moving average runs from step 0, λ moves from step 2 on.
  Ehf v = make_ehf(ring({2.0}, {0.5}), "so2", false, true, 6, 0.05, SymmetryPoints::start, 2);
  for (int step = 0; step < 3; ++step) {
    v.flow->loss_and_grad(p, g, BatchRef::one_rank(5, step, 0, 6), coll);
    v.flow->end_step();
    const double st_ma = v.flow->state()[1], lam = v.flow->state()[0];
    EXPECT_DOUBLE_EQ(st_ma, step == 0 ? c1 : step == 1 ? ma : st_ma);
    EXPECT_DOUBLE_EQ(lam, step < 2 ? 1.0 : std::exp(0.05 * st_ma)) << "step " << step;
  }
}

namespace {
// H = E(q) + ½|p|² with E a target's energy: an invariant Hamiltonian for an invariant target
// (integration only: no HVPs, which the adjoint alone calls).
struct TargetHamiltonian {
  const Distribution& d;
  void grad(int n, const Rows<const double>& x, const Rows<double>& g, bool kinetic) {
    const int D = static_cast<int>(x.extent(1));
    if (kinetic) {
      Kokkos::deep_copy(g, x);
      return;
    }
    Matrix<double> xm("x", n, D), gm("g", n, D);
    Vector<double> e("e", n);
    Kokkos::deep_copy(xm, x);
    d.energy_grad(ConstMatrix<double>(xm), e, gm);
    Kokkos::deep_copy(g, gm);
  }
  void grad_v(int n, const Rows<const double>& x, const Rows<double>& g) { grad(n, x, g, false); }
  void grad_k(int n, const Rows<const double>& x, const Rows<double>& g) { grad(n, x, g, true); }
};
}  // namespace

// Each kick and drift of an invariant H commutes with the rotation, so the leapfrog map is
// exactly equivariant at any step size: Φ(Rq, Rp) = R Φ(q, p).
TEST(Ehf, LeapfrogOfAnInvariantHamiltonianIsEquivariantAtAnyStepSize) {
  struct Case {
    std::unique_ptr<Distribution> d;
    std::vector<double> steps;  // large ones still stable (the trajectory stays bounded)
  };
  std::vector<Case> cases;
  cases.push_back({o2phi4({4}), {0.05, 0.3}});
  cases.push_back({ring({2.0}, {0.5}), {0.05, 0.9}});
  for (const auto& c : cases) {
    const int D = c.d->dim(), n = 8;
    TestRng r(6);
    std::vector<double> q(static_cast<std::size_t>(n) * D), p(q.size());
    for (double& v : q) v = r.normal();
    for (double& v : p) v = r.normal();
    for (double dt : c.steps) {
      Leapfrog<double> lf(n, D, 5);
      TargetHamiltonian H{*c.d};
      auto run = [&](std::vector<double> q0, std::vector<double> p0) {
        Matrix<double> qm = test::device_mat<double>(q0, n, D), pm = test::device_mat<double>(p0, n, D);
        lf.integrate(H, n, head_rows(qm, n), head_rows(pm, n), dt, false);
        auto out = to_host(qm);
        const auto po = to_host(pm);
        out.insert(out.end(), po.begin(), po.end());
        return out;
      };
      const double a = 1.1;
      const auto plain = run(q, p), rotated = run(rotate_pairs(q, a), rotate_pairs(p, a));
      const std::size_t half = q.size();
      const auto rq = rotate_pairs(std::vector<double>(plain.begin(), plain.begin() + half), a);
      const auto rp = rotate_pairs(std::vector<double>(plain.begin() + half, plain.end()), a);
      double worst = 0, moved = 0, scale = 0;
      for (std::size_t i = 0; i < half; ++i) {
        worst = std::fmax(worst, std::fmax(std::fabs(rotated[i] - rq[i]), std::fabs(rotated[half + i] - rp[i])));
        moved = std::fmax(moved, std::fabs(plain[i] - q[i]));
      }
      for (double v : plain) scale = std::fmax(scale, std::fabs(v));
      EXPECT_LT(scale, 20) << c.d->name() << " dt " << dt << ": the trajectory stays bounded";
      EXPECT_LT(worst, 1e-12) << c.d->name() << " dt " << dt;
      EXPECT_GT(moved, 1e-2) << c.d->name() << " dt " << dt << ": the flow moved the points";
    }
  }
}
