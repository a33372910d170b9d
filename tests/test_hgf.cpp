// Hamiltonian generative flows: the Gaussian mixture's closed-form path
// velocity V* against quadrature of its defining conditional expectation and
// its divergence against finite differences; the oscillation <-> flow-matching
// reparametrisation; the exact V* sampling the mixture through RK4; the
// velocity-regression gradient against central finite differences; batch
// splits; sampling against the log density at the samples.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "flows/models/hgf.hpp"
#include "physics/gaussian_mixture.hpp"
#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;

namespace {

using test::central_difference;
using test::to_host;

std::unique_ptr<Distribution> target(const std::string& name) {
  TargetSpec ts;
  ts.name = name;
  if (name == "gmm") {  // 0.4 N(-2, 1) + 0.6 N(2, 1), the 1-D mixture
    ts.dim = 1;
    ts.weights = {0.4, 0.6};
    ts.means = {-2.0, 2.0};
    ts.widths = {1.0, 1.0};
  }
  return make_target(ts);
}

// V*(x) and ∇·V* by the closed form at one point.
std::pair<std::vector<double>, double> vstar(const GaussianMixture& g, const double c[4], const std::vector<double>& x) {
  const int D = g.dim();
  Matrix<double> coef("c", 1, 4), xm("x", 1, D), v("v", 1, D);
  Vector<double> div("div", 1);
  auto hc = Kokkos::create_mirror_view(coef);
  auto hx = Kokkos::create_mirror_view(xm);
  for (int k = 0; k < 4; ++k) hc(0, k) = c[k];
  for (int j = 0; j < D; ++j) hx(0, j) = x[j];
  Kokkos::deep_copy(coef, hc);
  Kokkos::deep_copy(xm, hx);
  g.path_velocity<double>(coef, xm, v, div);
  return {to_host(v), to_host(div)[0]};
}

HamiltonianPath path_of(PathKind kind) {
  HamiltonianPath p;
  p.kind = kind;
  p.omega = 1.3;
  p.sigma_v = 0.8;
  p.time = 2.0;
  return p;
}

}  // namespace

// E[α̇ x₀ + β̇ ε | x_t = x] by quadrature over x₀ (ε = (x − α x₀)/β given x₀), independent of the
// closed form's Gaussian conditionals: 1-D on a 20 001-point grid over [−14, 14], 2-D (gmm9) on 801² over [−7, 7]².
TEST(PathVelocity, ClosedFormMatchesQuadratureOfTheConditionalExpectation) {
  for (const std::string name : {"gmm", "gmm9"}) {
    const auto tgt = target(name);
    const auto& g = dynamic_cast<const GaussianMixture&>(*tgt);
    const int D = g.dim();
    for (PathKind kind : {PathKind::flow_matching, PathKind::oscillation, PathKind::diffusion}) {
      const HamiltonianPath path = path_of(kind);
      for (double frac : {0.2, 0.55, 0.9}) {
        double c[4];
        path.coefficients(frac * path.end_time(), c);
        const std::vector<double> x = D == 1 ? std::vector<double>{0.7} : std::vector<double>{0.6, -1.1};
        const int n = D == 1 ? 20001 : 801;
        const double lo = D == 1 ? -14 : -7, hi = -lo, dx = (hi - lo) / (n - 1);  // beyond 10 widths of every component
        std::vector<double> num(D, 0.0);
        double den = 0;
        std::vector<double> x0(D);
        const auto& w = g.weights();
        const auto& m = g.modes().means;
        const auto& s = g.widths();
        auto visit = [&]() {
          double px = 0;  // the mixture's density at x₀
          for (std::size_t k = 0; k < w.size(); ++k) {
            double d2 = 0;
            for (int j = 0; j < D; ++j) d2 += (x0[j] - m[k][j]) * (x0[j] - m[k][j]);
            px += w[k] * std::exp(-0.5 * d2 / (s[k] * s[k])) / std::pow(2 * kPi * s[k] * s[k], 0.5 * D);
          }
          double e2 = 0;
          for (int j = 0; j < D; ++j) e2 += (x[j] - c[0] * x0[j]) * (x[j] - c[0] * x0[j]);
          const double wgt = px * std::exp(-0.5 * e2 / (c[1] * c[1]));
          den += wgt;
          for (int j = 0; j < D; ++j) num[j] += wgt * (c[2] * x0[j] + c[3] * (x[j] - c[0] * x0[j]) / c[1]);
        };
        for (int a = 0; a < n; ++a) {
          x0[0] = lo + a * dx;
          if (D == 1) {
            visit();
            continue;
          }
          for (int b = 0; b < n; ++b) {
            x0[1] = lo + b * dx;
            visit();
          }
        }
        const auto [v, div] = vstar(g, c, x);
        for (int j = 0; j < D; ++j)
          EXPECT_NEAR(v[j], num[j] / den, 1e-6 * (1 + std::fabs(v[j])))
              << name << " " << path_name(kind) << " t/T " << frac << " axis " << j;
        // ∇·V* against central differences of the closed form.
        double trace = 0;
        for (int j = 0; j < D; ++j)
          trace += central_difference(
              [&](double h) {
                std::vector<double> y = x;
                y[j] += h;
                return vstar(g, c, y).first[j];
              },
              1e-3);
        EXPECT_NEAR(div, trace, 1e-8 * (1 + std::fabs(div))) << name << " " << path_name(kind) << " t/T " << frac;
      }
    }
  }
}

// x^osc_t = c·x^FM_s with c = cos ωt + (σ_v/ω) sin ωt, s = (σ_v/ω) sin ωt / c, so
// V*_osc(x, t) = (ċ/c) x + c ṡ V*_FM(x/c, s): two closed forms at different coefficients.
TEST(PathVelocity, OscillationIsFlowMatchingReparametrised) {
  for (const std::string name : {"gmm4", "gmm9", "gmm2asym"}) {
    const auto tgt = target(name);
    const auto& g = dynamic_cast<const GaussianMixture&>(*tgt);
    const HamiltonianPath osc = path_of(PathKind::oscillation), fm = path_of(PathKind::flow_matching);
    const double w = osc.omega, sv = osc.sigma_v;
    TestRng r(3);
    double worst = 0;
    for (double frac : {0.05, 0.3, 0.6, 0.95}) {
      const double t = frac * osc.end_time(), co = std::cos(w * t), si = std::sin(w * t);
      const double c = co + sv / w * si, dc = -w * si + sv * co;
      const double s = sv / w * si / c, ds = (sv * co * c - sv / w * si * dc) / (c * c);
      double co_osc[4], co_fm[4];
      osc.coefficients(t, co_osc);
      fm.coefficients(s, co_fm);
      for (int p = 0; p < 5; ++p) {
        std::vector<double> x = {4 * r.normal(), 4 * r.normal()}, xs(2);
        for (int j = 0; j < 2; ++j) xs[j] = x[j] / c;
        const auto a = vstar(g, co_osc, x).first, b = vstar(g, co_fm, xs).first;
        for (int j = 0; j < 2; ++j) {
          const double rhs = dc / c * x[j] + c * ds * b[j];
          worst = std::max(worst, std::fabs(a[j] - rhs) / (1 + std::fabs(a[j])));
        }
      }
    }
    EXPECT_LT(worst, 1e-12) << name;
  }
}

namespace {

HgfSpec spec_for(PathKind kind, bool exact, int steps) {
  HgfSpec s;
  s.path = path_of(kind);
  s.path.omega = 1.0;
  s.path.sigma_v = 1.0;
  s.exact_velocity = exact;
  s.kernels = 3;
  s.hidden = {7, 6};
  s.activation = Activation::swish;
  s.time_input = true;
  s.output_gain = 1.0;
  s.steps = steps;
  s.dataset_size = 50;
  return s;
}

double ess_of(const Distribution& tgt, const Matrix<double>& x, const Vector<double>& lq) {
  const int n = static_cast<int>(x.extent(0));
  Vector<double> e("e", n);
  tgt.energy(ConstMatrix<double>(x), e);
  const auto he = to_host(e), hq = to_host(lq);
  std::vector<double> lw(n);
  double mx = -1e300;
  for (int i = 0; i < n; ++i) mx = std::max(mx, lw[i] = -he[i] - hq[i]);
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double w = std::exp(lw[i] - mx);
    s += w;
    s2 += w * w;
  }
  return s * s / (n * s2);
}

}  // namespace

TEST(Hgf, ExactVelocitySamplesTheMixture) {
  // The poster's claim made concrete: the exact V*, integrated back from x_T by RK4 in 50 steps,
  // samples the mixture with log q; importance weights nearly constant (rev ESS ≥ 0.99).
  for (const std::string name : {"gmm4", "gmm9"}) {
    const auto tgt = target(name);
    for (PathKind kind : {PathKind::flow_matching, PathKind::oscillation}) {
      HgfFlow<double> flow(*tgt, spec_for(kind, true, 50), 500, 1u);
      EXPECT_EQ(flow.layout().size(), 0u);
      Vector<double> none("none", 0);
      Matrix<double> x("x", 2000, 2);
      Vector<double> lq("lq", 2000);
      flow.sample(none, 7u, Purpose::test, 0, 0, x, lq);
      const double ess = ess_of(*tgt, x, lq);
      EXPECT_GE(ess, 0.99) << name << " " << path_name(kind);
      // The log density at the samples, integrated forwards, agrees with the sampler's.
      Vector<double> lq2("lq2", 2000);
      flow.log_density(none, ConstMatrix<double>(x), lq2);
      const auto a = to_host(lq), b = to_host(lq2);
      double worst = 0;
      for (int i = 0; i < 2000; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
      EXPECT_LT(worst, 2e-3) << name << " " << path_name(kind);
    }
  }
}

TEST(Hgf, VelocityRegressionGradientMatchesFiniteDifferences) {
  const auto tgt = target("gmm2asym");
  for (PathKind kind : {PathKind::flow_matching, PathKind::oscillation, PathKind::diffusion}) {
    HgfFlow<double> flow(*tgt, spec_for(kind, false, 4), 6, 2u);
    const std::size_t P = flow.layout().size();
    Vector<double> p("p", P);
    flow.initialize(p, 4u);
    auto hp = to_host(p);
    TestRng r(11);
    for (double& v : hp) v += 0.2 * r.normal();
    const BatchRef b{9u, 3, 0, 6, 6};
    auto loss_at = [&](const std::vector<double>& q) {
      Vector<double> g("g", P);
      return flow.loss_and_grad(test::device_vec<double>(q), g, b, LocalCollective());
    };
    Vector<double> g("g", P);
    const double l0 = flow.loss_and_grad(test::device_vec<double>(hp), g, b, LocalCollective());
    EXPECT_TRUE(std::isfinite(l0));
    const auto hg = to_host(g);
    int checked = 0;
    for (std::size_t k = 0; k < P; k += std::max<std::size_t>(1, P / 40), ++checked) {
      const double fd = central_difference(
          [&](double h) {
            auto q = hp;
            q[k] += h;
            return loss_at(q);
          },
          1e-4);
      EXPECT_NEAR(fd, hg[k], 1e-6 * std::max(1.0, std::fabs(hg[k]))) << path_name(kind) << " parameter " << k;
    }
    EXPECT_GE(checked, 30);
    // A batch split in two ranks' shares sums to the whole (samples by global index).
    Vector<double> g1("g1", P), g2("g2", P);
    const Vector<double> pd = test::device_vec<double>(hp);
    const double a = flow.loss_and_grad(pd, g1, BatchRef{9u, 3, 0, 2, 6}, LocalCollective());
    const double c = flow.loss_and_grad(pd, g2, BatchRef{9u, 3, 2, 4, 6}, LocalCollective());
    EXPECT_NEAR(a + c, l0, 1e-12 * std::fabs(l0)) << path_name(kind);
    const auto h1 = to_host(g1), h2 = to_host(g2);
    for (std::size_t k = 0; k < P; ++k) EXPECT_NEAR(h1[k] + h2[k], hg[k], 1e-10 * (1 + std::fabs(hg[k])));
  }
}

TEST(Hgf, NetworkSamplesAndLogDensityAgree) {
  // A random network V: RK4 back from x_T and forward again returns to x_T's log density.
  const auto tgt = target("gmm9");
  for (PathKind kind : {PathKind::flow_matching, PathKind::oscillation, PathKind::diffusion}) {
    HgfFlow<double> flow(*tgt, spec_for(kind, false, 40), 64, 2u);
    Vector<double> p("p", flow.layout().size());
    flow.initialize(p, 4u);
    Matrix<double> x("x", 100, 2);
    Vector<double> lq("lq", 100), lq2("lq2", 100);
    flow.sample(p, 7u, Purpose::test, 0, 0, x, lq);
    flow.log_density(p, ConstMatrix<double>(x), lq2);
    const auto a = to_host(lq), b = to_host(lq2);
    for (int i = 0; i < 100; ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << path_name(kind) << " sample " << i;
    // The end distribution: N(0, I) for flow matching, N(0, (σ_v/ω)²) for oscillation (σ_v = ω = 1).
    if (kind != PathKind::diffusion) {
      const auto l = flow.end_log_density({0.5, -1.0});
      EXPECT_NEAR(l[0], -0.5 * (0.25 + 1.0) - std::log(2 * kPi), 1e-12);
    }
  }
}
