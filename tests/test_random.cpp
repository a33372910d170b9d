// Philox4x32-10 against Random123 (published known-answer vectors and the
// library itself), and the samplers' moments within 4 standard errors.
#include <Random123/philox.h>
#include <gtest/gtest.h>

#include <cmath>

#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;

TEST(Philox, KnownAnswerVectors) {
  // Random123's kat_vectors for philox4x32 with 10 rounds: ctr, key -> out.
  struct Kat {
    std::uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& k : kats) {
    const Philox4x32 r = philox4x32_10(Philox4x32{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out[i]) << "word " << i;
  }
}

TEST(Philox, AgreesWithRandom123) {
  r123::Philox4x32_R<10> ref;
  test::TestRng rng(99);
  for (int t = 0; t < 2000; ++t) {
    r123::Philox4x32_R<10>::ctr_type c;
    r123::Philox4x32_R<10>::key_type k;
    for (int i = 0; i < 4; ++i) c.v[i] = static_cast<std::uint32_t>(rng.next());
    for (int i = 0; i < 2; ++i) k.v[i] = static_cast<std::uint32_t>(rng.next());
    const auto want = ref(c, k);
    const Philox4x32 got = philox4x32_10(Philox4x32{{c.v[0], c.v[1], c.v[2], c.v[3]}}, k.v[0], k.v[1]);
    for (int i = 0; i < 4; ++i) ASSERT_EQ(got.v[i], want.v[i]);
  }
}

TEST(Philox, StreamLayout) {
  // key = (seed, purpose), counter = (draw, index lo, index hi, step).
  const RngStream s(1234u, Purpose::base_sample, 77u, 0x0000000500000009ull);
  const Philox4x32 b = s.block(3);
  const Philox4x32 want = philox4x32_10(Philox4x32{{3u, 9u, 5u, 77u}}, 1234u,
                                        static_cast<std::uint32_t>(Purpose::base_sample));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(b.v[i], want.v[i]);
  // Uniforms are strictly inside (0, 1).
  EXPECT_GT(u01_open(0, 0), 0.0);
  EXPECT_LT(u01_open(0xffffffff, 0xffffffff), 1.0);
}

namespace {

struct Moments {
  double m1 = 0, m2 = 0, m4 = 0, m8 = 0;  // raw moments of one coordinate
};

// Empirical moments of coordinate j of n samples.
Moments empirical(const Distribution& d, int j, int n, Purpose purpose) {
  Matrix<double> x("x", n, d.dim());
  d.sample(42u, purpose, 3u, 1000u, x);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  Moments m;
  for (int i = 0; i < n; ++i) {
    const double v = h(i, j), v2 = v * v;
    m.m1 += v;
    m.m2 += v2;
    m.m4 += v2 * v2;
    m.m8 += v2 * v2 * v2 * v2;
  }
  m.m1 /= n, m.m2 /= n, m.m4 /= n, m.m8 /= n;
  return m;
}

// Checks mean, variance and (optionally) the fourth moment of a symmetric or
// shifted coordinate within 4 standard errors, given exact raw moments.
void expect_moments(const std::string& label, const Moments& emp, double mean, double ex2, double ex4, double ex8,
                    int n, bool fourth) {
  const double var = ex2 - mean * mean;
  EXPECT_NEAR(emp.m1, mean, 4 * std::sqrt(var / n)) << label << " mean";
  // SE of the second raw moment: sqrt((E x⁴ − (E x²)²)/n).
  EXPECT_NEAR(emp.m2, ex2, 4 * std::sqrt((ex4 - ex2 * ex2) / n)) << label << " second moment";
  if (fourth) {
    EXPECT_NEAR(emp.m4, ex4, 4 * std::sqrt((ex8 - ex4 * ex4) / n)) << label << " fourth moment";
  }
}

}  // namespace

TEST(Samplers, GeneralizedGaussianMoments) {
  const int n = 400000;
  for (double p : {1.0, 1.5, 2.0, 4.0}) {
    const double sigma = 1.3;
    GeneralizedGaussian d(3, sigma, p);
    // E|x|^k = σ^k Γ((k+1)/p) / Γ(1/p)
    auto abs_moment = [&](int k) { return std::pow(sigma, k) * std::tgamma((k + 1) / p) / std::tgamma(1 / p); };
    for (int j = 0; j < 3; ++j)
      expect_moments("gengauss p=" + fmt_num(p), empirical(d, j, n, Purpose::test), 0.0, abs_moment(2),
                     abs_moment(4), abs_moment(8), n, true);
  }
  auto g = GeneralizedGaussian::gaussian(2, 2.5);  // N(0, 2.5²)
  const double s2 = 2.5 * 2.5;
  expect_moments("gauss", empirical(*g, 1, n, Purpose::test), 0.0, s2, 3 * s2 * s2, 105 * s2 * s2 * s2 * s2, n,
                 true);
}

// The generalized Gaussian's normaliser log Z = D log(2σ Γ(1/p)/p) against a midpoint quadrature of
// exp(−|x/σ|^p) through the class's own energy, at the φ⁴ base (p = 4, σ = 2) and two other powers.
TEST(Samplers, GeneralizedGaussianNormaliserByQuadrature) {
  for (const double p : {4.0, 1.5, 3.0}) {
    const double sigma = p == 4.0 ? 2.0 : 0.8;
    const GeneralizedGaussian d(1, sigma, p);
    const int n = 200000;
    const double lo = -30 * sigma, h = 60 * sigma / n;
    std::vector<std::vector<double>> pts(n);
    for (int i = 0; i < n; ++i) pts[i] = {lo + (i + 0.5) * h};
    Vector<double> e("e", n);
    d.energy(test::device_matrix(pts), e);
    double z = 0;
    for (double v : test::to_host(e)) z += std::exp(-v) * h;
    EXPECT_NEAR(std::log(z), d.log_z(), 1e-10) << "p = " << p;
    EXPECT_NEAR(GeneralizedGaussian(16, sigma, p).log_z(), 16 * std::log(z), 1e-8) << "p = " << p << ", D = 16";
  }
}

TEST(Samplers, SoftUniformMoments) {
  const int n = 400000;
  for (double beta : {1.0, 2.5}) {
    SoftUniform d(2, 3.0, beta);
    // Exact moments by quadrature of the normalised density.
    double z = 0, e2 = 0, e4 = 0, e8 = 0;
    const double lo = -40, hi = 40, h = 1e-4;
    for (double x = lo + h / 2; x < hi; x += h) {
      const double p = 1.0 / ((1 + std::exp(-beta * (x + 3))) * (1 + std::exp(beta * (x - 3))));
      z += p * h;
      e2 += p * x * x * h;
      e4 += p * std::pow(x, 4) * h;
      e8 += p * std::pow(x, 8) * h;
    }
    EXPECT_NEAR(std::log(z), d.log_z() / 2, 1e-9) << "normaliser";
    expect_moments("softuniform", empirical(d, 0, n, Purpose::test), 0.0, e2 / z, e4 / z, e8 / z, n, true);
  }
  // Souveton's prior: a = 3, β = 1, normaliser 6.01491 per coordinate.
  EXPECT_NEAR(std::exp(SoftUniform(1, 3.0).log_z()), 6.01491, 1e-5);
}

TEST(Samplers, MixtureMomentsAndWeights) {
  const int n = 400000;
  for (const std::string name : {"gmm4", "gmm2asym", "gmm9"}) {
    TargetSpec s;
    s.name = name;
    auto d = make_target(s);
    const auto* gm = dynamic_cast<const GaussianMixture*>(d.get());
    ASSERT_NE(gm, nullptr);
    for (int j = 0; j < 2; ++j) {
      // Raw moments of a mixture of N(μ, s²): E x^k = Σ w E_k x^k.
      double m1 = 0, m2 = 0, m4 = 0, m8 = 0;
      for (std::size_t c = 0; c < gm->weights().size(); ++c) {
        const double w = gm->weights()[c], mu = gm->modes().means[c][j], v = std::pow(gm->widths()[c], 2);
        m1 += w * mu;
        m2 += w * (mu * mu + v);
        m4 += w * (std::pow(mu, 4) + 6 * mu * mu * v + 3 * v * v);
        // E x^8 for N(μ, v): Σ_k C(8,2k) μ^(8−2k) v^k (2k−1)!!
        m8 += w * (std::pow(mu, 8) + 28 * std::pow(mu, 6) * v + 210 * std::pow(mu, 4) * v * v +
                   420 * mu * mu * v * v * v + 105 * v * v * v * v);
      }
      const Moments e = empirical(*d, j, n, Purpose::target_sample);
      expect_moments(name, e, m1, m2, m4, m8, n, true);
    }
  }
}

TEST(Samplers, DifferentPurposesStepsAndIndicesGiveDifferentSamples) {
  GeneralizedGaussian d(1, 1.0, 2.0);
  auto draw = [&](Purpose p, std::uint32_t step, std::uint64_t first) {
    Matrix<double> x("x", 1, 1);
    d.sample(1u, p, step, first, x);
    return test::host_rows(x)[0][0];
  };
  const double a = draw(Purpose::test, 0, 0);
  EXPECT_EQ(a, draw(Purpose::test, 0, 0)) << "pure function of (seed, purpose, step, index)";
  EXPECT_NE(a, draw(Purpose::base_sample, 0, 0));
  EXPECT_NE(a, draw(Purpose::test, 1, 0));
  EXPECT_NE(a, draw(Purpose::test, 0, 1));
}
