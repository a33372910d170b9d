// The deformation-trajectory CNF: every piece of the deformation error and
// both losses' parameter gradients against central finite differences, RK4
// against a linear field's closed form, backward integration against forward.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "flows/models/cnf.hpp"
#include "physics/targets.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;

namespace {

using test::central_difference;
using test::to_host;
const auto device = test::device_vec<double>;
double central(const std::function<double(double)>& f, double h = 1e-4) { return central_difference(f, h); }
void expect_close(double fd, double an, double scale, double tol, const std::string& what) {
  EXPECT_LE(std::fabs(fd - an), tol * std::fmax(std::fabs(an), scale)) << what << ": fd " << fd << " vs " << an;
}

struct CnfSetup {
  std::unique_ptr<Distribution> target;
  std::unique_ptr<CnfFlow<double>> flow;
  std::vector<double> params;
};

CnfSetup make(const std::string& target, bool deformation, bool trainable, int steps = 6, int batch = 5,
              int train_batch = 0) {
  CnfSetup s;
  TargetSpec ts;
  ts.name = target;
  if (target == "phi4") ts.phi4.shape = {3};
  s.target = make_target(ts);
  CnfSpec spec;
  spec.kernels = 3;
  spec.hidden = {7, 6};
  spec.activation = Activation::swish;
  spec.time_input = true;
  spec.output_gain = 1.0;
  spec.g_hidden = {5};
  spec.c_hidden = {4};
  spec.steps = steps;
  spec.deformation = deformation;
  spec.trainable = trainable;
  spec.time_chunk = 3;
  spec.train_batch = train_batch;
  std::shared_ptr<const Distribution> base =
      target == "phi4" ? std::shared_ptr<const Distribution>(std::make_unique<GeneralizedGaussian>(3, 2.0, 4.0))
                       : std::shared_ptr<const Distribution>(GeneralizedGaussian::gaussian(2, 1.5));
  s.flow = std::make_unique<CnfFlow<double>>(*s.target, base, spec, batch);
  Vector<double> p("p", s.flow->layout().size());
  s.flow->initialize(p, 3u);
  s.params = to_host(p);
  // Non-zero everywhere (g starts at zero by design; biases too): perturb.
  TestRng r(5);
  for (double& v : s.params) v += 0.2 * r.normal();
  return s;
}

// Parameters that make V(x, t) = A x at every t (identity activations, hidden width D, each kernel's MLP
// the same linear map, so the normalised time mixture is that map); everything else zero.
std::vector<double> linear_velocity(const CnfFlow<double>& flow, int kernels, int D, const std::vector<double>& A) {
  std::vector<double> p(flow.layout().size(), 0.0);
  for (int k = 0; k < kernels; ++k) {
    const auto& w0 = flow.layout().slice("V.k" + std::to_string(k) + ".W0");
    const auto& w1 = flow.layout().slice("V.k" + std::to_string(k) + ".W1");
    for (int i = 0; i < D; ++i) p[w0.offset + i * (D + 1) + i] = 1.0;  // h = x (t column 0)
    for (int i = 0; i < D * D; ++i) p[w1.offset + i] = A[i];
  }
  return p;
}

}  // namespace

TEST(Cnf, DeformationErrorPiecesMatchFiniteDifferences) {
  for (const std::string target : {"gmm2asym", "phi4"}) {
    for (bool trainable : {false, true}) {
      CnfSetup s = make(target, true, trainable);
      const int D = s.target->dim(), n = 3;
      TestRng r(9);
      std::vector<double> x(static_cast<std::size_t>(n) * D);
      for (double& v : x) v = 1.5 * r.normal();
      const double t = 0.37;
      const Vector<double> p = device(s.params);
      const DeformationTerms T0 = s.flow->terms(p, x, t);
      for (int i = 0; i < n; ++i) {
        const std::string where = target + (trainable ? " trainable" : " linear") + " sample " + std::to_string(i);
        expect_close(central([&](double h) { return s.flow->terms(p, x, t + h).f[i]; }), T0.dt_f[i], 1e-3, 1e-7,
                     "d/dt f_t, " + where);
        double trace = 0;
        for (int j = 0; j < D; ++j) {
          expect_close(central([&](double h) {
                         std::vector<double> y = x;
                         y[i * D + j] += h;
                         return s.flow->terms(p, y, t).f[i];
                       }),
                       T0.grad_f[i * D + j], 1e-3, 1e-7, "grad f_t, " + where);
          trace += central([&](double h) {
            std::vector<double> y = x;
            y[i * D + j] += h;
            return s.flow->terms(p, y, t).v[i * D + j];
          });
        }
        expect_close(trace, T0.div_v[i], 1e-3, 1e-7, "div V_t, " + where);
        // C_t depends on t alone.
        std::vector<double> y = x;
        for (double& v : y) v += 0.5;
        EXPECT_EQ(s.flow->terms(p, y, t).c[i], T0.c[i]) << where;
        double gv = 0;
        for (int j = 0; j < D; ++j) gv += T0.grad_f[i * D + j] * T0.v[i * D + j];
        EXPECT_NEAR(T0.e[i], T0.dt_f[i] + gv - T0.div_v[i] + T0.c[i], 1e-12) << where;
      }
    }
  }
}

TEST(Cnf, LossGradientsMatchFiniteDifferences) {
  struct Case {
    std::string target;
    bool deformation, trainable;
  };
  for (const Case& c : {Case{"gmm2asym", true, false}, Case{"gmm2asym", true, true}, Case{"phi4", true, true},
                       Case{"gmm2asym", false, false}, Case{"phi4", false, false}}) {
    CnfSetup s = make(c.target, c.deformation, c.trainable);
    BatchRef b = BatchRef::one_rank(11, 4, 100, 5);
    LocalCollective coll;
    // The deformation loss differentiates with the trajectory positions held
    // fixed (no gradient through them); the reverse KL through everything.
    auto loss = [&](const std::vector<double>& q) {
      Vector<double> g("g", q.size());
      return c.deformation ? s.flow->deformation_loss_on_last_trajectory(device(q), g)
                           : s.flow->loss_and_grad(device(q), g, b, coll);
    };
    Vector<double> grad("grad", s.params.size());
    const double l0 = s.flow->loss_and_grad(device(s.params), grad, b, coll);
    const auto g = to_host(grad);
    if (c.deformation) {
      Vector<double> g2("g2", s.params.size());
      EXPECT_EQ(s.flow->deformation_loss_on_last_trajectory(device(s.params), g2), l0);
      EXPECT_EQ(to_host(g2), g) << "the same loss and gradient on the stored trajectory";
    }
    TestRng r(13);
    const std::string what = c.target + (c.deformation ? (c.trainable ? " deformation/trainable" : " deformation/linear")
                                                       : " reverse KL");
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<double> u(s.params.size());
      double dot = 0;
      for (std::size_t i = 0; i < u.size(); ++i) u[i] = r.normal(), dot += u[i] * g[i];
      const double fd = central(
          [&](double h) {
            std::vector<double> q = s.params;
            for (std::size_t i = 0; i < q.size(); ++i) q[i] += h * u[i];
            return loss(q);
          },
          1e-5);
      expect_close(fd, dot, 1e-3, 1e-6, what);
    }
  }
}

// The loss's deformation error uses one tangent of g along (V, 1); terms()
// builds E from ∇g and ∂_t g through D + 1 axis tangents. The loss on the
// stored trajectory must be Σ_i (1/S) Σ_s |E| + E² of terms() at its points.
TEST(Cnf, DeformationLossIsTheMeanErrorOfTheAxisTangentTerms) {
  for (const std::string target : {"gmm2asym", "phi4"})
    for (bool trainable : {false, true}) {
      const int steps = 6, batch = 5;
      CnfSetup s = make(target, true, trainable, steps, batch);
      const Vector<double> p = device(s.params);
      Vector<double> grad("grad", s.params.size());
      LocalCollective coll;
      const double loss = s.flow->loss_and_grad(p, grad, BatchRef::one_rank(11, 4, 100, batch), coll);
      double want = 0;
      for (int k = 0; k <= steps; ++k) {
        const DeformationTerms tr = s.flow->terms(p, s.flow->last_trajectory_point(k), static_cast<double>(k) / steps);
        for (double e : tr.e) want += (std::fabs(e) + e * e) / (steps + 1);
      }
      EXPECT_NEAR(loss, want, 1e-12 * std::fmax(1.0, std::fabs(want))) << target << (trainable ? " trainable" : " linear");
    }
}

// The reverse-KL loss sums ∫∇·V dt in its adjoint sweep; the sampler
// integrates it forwards. On the same base samples the loss must be
// Σ log q(x_1) + f1(x_1) of the sampler's output.
TEST(Cnf, ReverseKlLossIsTheSamplersLogDensityPlusEnergy) {
  for (const std::string target : {"gmm2asym", "phi4"}) {
    const int batch = 5;
    CnfSetup s = make(target, false, false, 6, batch);
    const Vector<double> p = device(s.params);
    Vector<double> grad("grad", s.params.size());
    LocalCollective coll;
    const double loss = s.flow->loss_and_grad(p, grad, BatchRef::one_rank(11, 4, 100, batch), coll);
    Matrix<double> x("x", batch, s.target->dim());
    Vector<double> lq("lq", batch), f("f", batch);
    s.flow->sample(p, 11, Purpose::base_sample, 4, 100, x, lq);
    s.target->energy(ConstMatrix<double>(x), f);
    double want = 0;
    const auto hl = to_host(lq), hf = to_host(f);
    for (int i = 0; i < batch; ++i) want += hl[i] + hf[i];
    EXPECT_NEAR(loss, want, 1e-10 * std::fmax(1.0, std::fabs(want))) << target;
  }
}

// V(x, t) = A x exactly (identity activations, t ignored): RK4 gives
// x_N = P(hA)^N z with P(M) = I + M + M²/2 + M³/6 + M⁴/24, and log q drops by
// tr A exactly; both close to the exact flow e^A z.
TEST(Cnf, Rk4MatchesTheLinearFieldClosedForm) {
  const int D = 2, N = 20;
  TargetSpec ts;
  ts.name = "gmm2asym";
  auto target = make_target(ts);
  CnfSpec spec;
  spec.kernels = 2;
  spec.hidden = {D};
  spec.activation = Activation::identity;
  spec.time_input = true;
  spec.output_gain = 1.0;
  spec.time_chunk = 1;
  spec.steps = N;
  spec.deformation = false;
  CnfFlow<double> flow(*target, GeneralizedGaussian::gaussian(D, 1.0), spec, 4);
  const double A[2][2] = {{-0.3, 0.8}, {-0.5, 0.2}};
  const Vector<double> params = device(linear_velocity(flow, 2, D, {A[0][0], A[0][1], A[1][0], A[1][1]}));
  std::vector<double> x{0.7, -1.1, 2.0, 0.3}, div;
  const std::vector<double> z = x;
  flow.integrate(params, x, div, false);
  // P(hA)^N z on the host.
  const double h = 1.0 / N;
  for (int s = 0; s < 2; ++s) {
    double v[2] = {z[2 * s], z[2 * s + 1]};
    for (int n = 0; n < N; ++n) {
      double term[2] = {v[0], v[1]}, acc[2] = {v[0], v[1]};
      for (int k = 1; k <= 4; ++k) {
        const double t0 = h * (A[0][0] * term[0] + A[0][1] * term[1]) / k;
        const double t1 = h * (A[1][0] * term[0] + A[1][1] * term[1]) / k;
        term[0] = t0, term[1] = t1;
        acc[0] += t0, acc[1] += t1;
      }
      v[0] = acc[0], v[1] = acc[1];
    }
    EXPECT_NEAR(x[2 * s], v[0], 1e-13);
    EXPECT_NEAR(x[2 * s + 1], v[1], 1e-13);
    EXPECT_NEAR(div[s], A[0][0] + A[1][1], 1e-13) << "∫ div V dt = tr A";
  }
  // And close to e^A z (RK4 error O(h⁴)): e^A by a long Taylor series.
  double E[2][2] = {{1, 0}, {0, 1}}, T[2][2] = {{1, 0}, {0, 1}};
  for (int k = 1; k < 30; ++k) {
    double U[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) U[i][j] = (T[i][0] * A[0][j] + T[i][1] * A[1][j]) / k;
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) T[i][j] = U[i][j], E[i][j] += U[i][j];
  }
  EXPECT_NEAR(x[0], E[0][0] * z[0] + E[0][1] * z[1], 1e-6);
  EXPECT_NEAR(x[1], E[1][0] * z[0] + E[1][1] * z[1], 1e-6);
  // The sampler's log q is log p0(z) − tr A.
  Matrix<double> xs("xs", 3, D);
  Vector<double> lq("lq", 3);
  flow.sample(params, 7u, Purpose::test, 0, 0, xs, lq);
  Matrix<double> zs("zs", 3, D);
  GeneralizedGaussian::gaussian(D, 1.0)->sample(7u, Purpose::test, 0, 0, zs);
  Vector<double> lp0("lp0", 3);
  GeneralizedGaussian::gaussian(D, 1.0)->log_density(zs, lp0);
  const auto hl = to_host(lq), hp = to_host(lp0);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(hl[i], hp[i] - (A[0][0] + A[1][1]), 1e-12);
}

TEST(Cnf, BackwardIntegrationInvertsForward) {
  for (const std::string target : {"gmm2asym", "phi4"}) {
    CnfSetup s = make(target, false, false, 50, 6);
    const Vector<double> p = device(s.params);
    const int D = s.target->dim();
    TestRng r(17);
    std::vector<double> z(6 * static_cast<std::size_t>(D));
    for (double& v : z) v = r.normal();
    std::vector<double> x = z, fwd, bwd;
    s.flow->integrate(p, x, fwd, false);
    s.flow->integrate(p, x, bwd, true);
    for (std::size_t i = 0; i < z.size(); ++i) EXPECT_NEAR(x[i], z[i], 1e-6) << target;
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(fwd[i], -bwd[i], 1e-6) << target;
    // log q at the end points (backward) equals the sampler's log q (forward).
    Matrix<double> xs("xs", 6, D);
    Vector<double> lq("lq", 6), lqb("lqb", 6);
    s.flow->sample(p, 3u, Purpose::test, 0, 0, xs, lq);
    s.flow->log_density(p, xs, lqb);
    const auto a = to_host(lq), b = to_host(lqb);
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << target;
  }
}

// The deformation loss trains V on the trajectories the sampler follows: its
// stored trajectory (integrated without the divergence) ends where the
// sampler's samples (integrated with it) end, for the same base draws.
// The loss buffers follow the training batch, the sampling buffers the
// (larger) evaluation batch: the same loss and gradient either way, a loss
// batch beyond the training batch refused, sampling the full batch intact.
TEST(Cnf, LossWorkspaceFollowsTheTrainingBatch) {
  for (bool deformation : {true, false}) {
    CnfSetup small = make("phi4", deformation, deformation, 6, 5);
    CnfSetup large = make("phi4", deformation, deformation, 6, 40, 5);
    ASSERT_EQ(small.params, large.params);
    BatchRef b = BatchRef::one_rank(7, 2, 10, 5);
    Vector<double> g1("g1", small.params.size()), g2("g2", small.params.size());
    const double l1 = small.flow->loss_and_grad(device(small.params), g1, b, LocalCollective());
    const double l2 = large.flow->loss_and_grad(device(large.params), g2, b, LocalCollective());
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(to_host(g1), to_host(g2));
    b.count = b.global = 6;
    EXPECT_THROW(large.flow->loss_and_grad(device(large.params), g2, b, LocalCollective()), std::logic_error);
    Matrix<double> x("x", 40, 3);
    Vector<double> lq("lq", 40);
    large.flow->sample(device(large.params), 3u, Purpose::eval, 0, 0, x, lq);
    Matrix<double> x5("x5", 5, 3);
    Vector<double> lq5("lq5", 5);
    small.flow->sample(device(small.params), 3u, Purpose::eval, 0, 35, x5, lq5);
    const auto hx = test::host_rows(x), hx5 = test::host_rows(x5);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(hx[35 + i], hx5[i]) << "sample " << 35 + i;
  }
}

TEST(Cnf, LossTrajectoryIsTheSamplersTrajectory) {
  CnfSetup s = make("gmm2asym", true, true, 10, 5);
  const Vector<double> p = device(s.params);
  BatchRef b = BatchRef::one_rank(21, 3, 40, 5);
  Vector<double> g("g", s.params.size());
  s.flow->loss_and_grad(p, g, b, LocalCollective());
  const auto start = s.flow->last_trajectory_point(0), end = s.flow->last_trajectory_point(10);
  std::vector<double> x = start, div;
  s.flow->integrate(p, x, div, false);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], end[i], 1e-13);
  // The start points are the base samples of (seed, base_sample, step, global index).
  Matrix<double> z("z", 5, 2);
  GeneralizedGaussian::gaussian(2, 1.5)->sample(21u, Purpose::base_sample, 3, 40, z);
  const auto hz = test::host_rows(z);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_EQ(start[i * 2 + j], hz[i][j]);
}

// A closed form that fixes the deformation error's signs, independent of the code's own formula for E.
// Base N(0, I) (energy |x|²/2), target N(0, s² I) (energy |x|²/(2s²)), linear interpolation (or a
// trainable one whose g is zero): f_t = a(t)|x|²/2 with a(t) = 1 − t + t/s², a density ∝ e^(−f_t) of
// variance 1/a(t). With V(x, t) = c x (linear_velocity) and C = 0 (zero weights):
//   E = ∂_t f + ⟨∇f, V⟩ − ∇·V + C = (a′/2 + a c)|x|² − D c.
// The exact transport c = −a′/(2a(t)) makes E independent of x, E = D a′/(2a); f_0 and f_1 are the two
// energies. terms() is checked at single times, and the fused loss that trains on its stored trajectory
// against this E at every stored point (any c).
TEST(Cnf, GaussianToGaussianDeformationErrorClosedForm) {
  const int D = 3, steps = 8, batch = 5;
  const double s = 1.7, da = 1 / (s * s) - 1;
  auto a = [&](double t) { return 1 - t + t / (s * s); };
  const auto target = GeneralizedGaussian::gaussian(D, s);
  for (bool trainable : {false, true}) {
    CnfSpec spec;
    spec.kernels = 2;
    spec.hidden = {D};
    spec.g_hidden = {4};
    spec.c_hidden = {3};
    spec.activation = Activation::identity;
    spec.time_input = true;
    spec.output_gain = 1.0;
    spec.steps = steps;
    spec.deformation = true;
    spec.trainable = trainable;
    spec.time_chunk = 2;
    CnfFlow<double> flow(*target, GeneralizedGaussian::gaussian(D, 1.0), spec, batch);
    auto linear_field = [&](double c) {
      std::vector<double> A(D * D, 0.0);
      for (int i = 0; i < D; ++i) A[i * D + i] = c;
      return device(linear_velocity(flow, spec.kernels, D, A));
    };
    const std::string what = trainable ? "trainable (g = 0)" : "linear";
    TestRng r(31);
    std::vector<double> x(4 * D);
    for (double& v : x) v = 1.3 * r.normal();
    for (double t : {0.0, 0.3, 0.77, 1.0}) {
      const double c = -da / (2 * a(t));
      const DeformationTerms T = flow.terms(linear_field(c), x, t);
      for (int i = 0; i < 4; ++i) {
        double r2 = 0;
        for (int j = 0; j < D; ++j) r2 += x[i * D + j] * x[i * D + j];
        EXPECT_NEAR(T.f[i], a(t) * r2 / 2, 1e-12) << what << " f_t at t = " << t;
        EXPECT_EQ(T.c[i], 0.0);
        EXPECT_NEAR(T.div_v[i], D * c, 1e-12) << what;
        EXPECT_NEAR(T.e[i], D * da / (2 * a(t)), 1e-12) << what << ": the exact transport at t = " << t;
      }
    }
    // The fused loss (the kernel that trains) on its own stored trajectory, for fields that are not the
    // transport: Σ over samples of the mean over the steps + 1 points of |E| + E².
    for (double c : {0.4, -0.25}) {
      const Vector<double> p = linear_field(c);
      Vector<double> grad("grad", flow.layout().size());
      const double loss = flow.loss_and_grad(p, grad, BatchRef::one_rank(11, 4, 100, batch), LocalCollective());
      double want = 0;
      for (int k = 0; k <= steps; ++k) {
        const double t = static_cast<double>(k) / steps;
        const std::vector<double> xk = flow.last_trajectory_point(k);
        for (int i = 0; i < batch; ++i) {
          double r2 = 0;
          for (int j = 0; j < D; ++j) r2 += xk[i * D + j] * xk[i * D + j];
          const double e = (da / 2 + a(t) * c) * r2 - D * c;
          want += (std::fabs(e) + e * e) / (steps + 1);
        }
      }
      EXPECT_NEAR(loss, want, 1e-11 * std::fmax(1.0, want)) << what << ", c = " << c;
    }
  }
}
