// The integrators' adjoints against central finite differences, each on an
// analytic field with parameters (no network: the field's own derivatives are
// written out by hand below, so a wrong transpose in the integrator cannot
// hide behind a matching mistake in a network).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "flows/integrators/leapfrog.hpp"
#include "flows/integrators/rk4.hpp"
#include "test_helpers.hpp"

using namespace bf;
using bf::test::central_difference;
using bf::test::TestRng;

namespace {

// Σ_i f(i) over n rows.
template <class F>
double sum_rows(int n, const F& f) {
  double s = 0;
  Kokkos::parallel_reduce(
      "test_sum_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += f(i); }, s);
  return s;
}

// V_j(x, t) = θ0 tanh x_j + θ1 t x_{j+1} + θ2 x_j x_{j+1}   (indices mod D, D ≥ 3)
//   ∂V_j/∂x_j = θ0 sech² x_j + θ2 x_{j+1},  ∂V_j/∂x_{j+1} = θ1 t + θ2 x_j
//   ∇·V = Σ_j θ0 sech² x_j + θ2 x_{j+1},   ∂(∇·V)/∂x_k = −2 θ0 tanh x_k sech² x_k + θ2
struct AnalyticField {
  AnalyticField(double a, double b, double c) : th{a, b, c} {}
  double th[3];
  double grad[3] = {0, 0, 0};
  Matrix<double> ctx;  // the point of the last forward
  double ctx_t = 0;

  void velocity(int n, const Rows<const double>& x, double t, const Rows<double>& v, const Span<double>& div,
                bool with_div) {
    const int D = static_cast<int>(x.extent(1));
    const double a = th[0], b = th[1], c = th[2];
    Kokkos::parallel_for(
        "test_field_v", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          double d = 0;
          for (int j = 0; j < D; ++j) {
            const int jn = (j + 1) % D;
            const double th_ = kmath::tanh(x(i, j));
            v(i, j) = a * th_ + b * t * x(i, jn) + c * x(i, j) * x(i, jn);
            d += a * (1 - th_ * th_) + c * x(i, jn);
          }
          div(i) = with_div ? d : 0.0;
        });
  }

  void forward(int n, const Rows<const double>& x, double t, const Span<double>& div) {
    const int D = static_cast<int>(x.extent(1));
    ctx = Matrix<double>("test_field_ctx", n, D);
    Kokkos::deep_copy(ctx, Kokkos::View<const double**, Kokkos::LayoutRight, MemSpace>(x.data(), n, D));
    ctx_t = t;
    Matrix<double> scratch("test_field_scratch", n, D);
    velocity(n, x, t, Rows<double>(scratch.data(), n, D), div, true);
  }

  void reverse(int n, const Rows<const double>& vb, double db, const Rows<double>& xb) {
    const int D = static_cast<int>(vb.extent(1));
    const double a = th[0], b = th[1], c = th[2], t = ctx_t;
    const Matrix<double> x = ctx;
    Kokkos::parallel_for(
        "test_field_xbar", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          for (int k = 0; k < D; ++k) {
            const int kp = (k + D - 1) % D, kn = (k + 1) % D;
            const double th_ = kmath::tanh(x(i, k)), s2 = 1 - th_ * th_;
            // x_k enters V_k (diagonal) and V_{k−1} (as its x_{j+1}).
            double g = vb(i, k) * (a * s2 + c * x(i, kn)) + vb(i, kp) * (b * t + c * x(i, kp));
            g += db * (-2 * a * th_ * s2 + c);
            xb(i, k) = g;
          }
        });
    grad[0] += sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int j = 0; j < D; ++j) {
        const double th_ = kmath::tanh(x(i, j));
        s += vb(i, j) * th_ + db * (1 - th_ * th_);
      }
      return s;
    });
    grad[1] += sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int j = 0; j < D; ++j) s += vb(i, j) * t * x(i, (j + 1) % D);
      return s;
    });
    grad[2] += sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int j = 0; j < D; ++j) s += vb(i, j) * x(i, j) * x(i, (j + 1) % D) + db * x(i, (j + 1) % D);
      return s;
    });
  }
};

// H(q, p) = V(q) + K(p),  V = Σ_j θ0 q_j⁴/4 + θ1 q_j q_{j+1},  K = Σ_j θ2 log cosh p_j + θ3 p_j²/2
//   ∇V_k = θ0 q_k³ + θ1 (q_{k+1} + q_{k−1}),   (H_V u)_k = 3 θ0 q_k² u_k + θ1 (u_{k+1} + u_{k−1})
//   ∇K_k = θ2 tanh p_k + θ3 p_k,               (H_K u)_k = (θ2 sech² p_k + θ3) u_k
struct AnalyticHamiltonian {
  AnalyticHamiltonian(double a, double b, double c, double d) : th{a, b, c, d} {}
  double th[4];
  double grad[4] = {0, 0, 0, 0};

  void grad_v(int n, const Rows<const double>& q, const Rows<double>& g) {
    const int D = static_cast<int>(q.extent(1));
    const double a = th[0], b = th[1];
    for_each_element("test_grad_v", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t k) {
      const double qk = q(i, k);
      g(i, k) = a * qk * qk * qk + b * (q(i, (k + 1) % D) + q(i, (k + D - 1) % D));
    });
  }
  void grad_k(int n, const Rows<const double>& p, const Rows<double>& g) {
    const int D = static_cast<int>(p.extent(1));
    const double c = th[2], d = th[3];
    for_each_element("test_grad_k", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t k) {
      g(i, k) = c * kmath::tanh(p(i, k)) + d * p(i, k);
    });
  }
  void hvp_v(int n, double w, const Rows<const double>& q, const Rows<const double>& u, const Rows<double>& hu) {
    const int D = static_cast<int>(q.extent(1));
    const double a = th[0], b = th[1];
    for_each_element("test_hvp_v", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t k) {
      hu(i, k) += w * (3 * a * q(i, k) * q(i, k) * u(i, k) + b * (u(i, (k + 1) % D) + u(i, (k + D - 1) % D)));
    });
    grad[0] += w * sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int k = 0; k < D; ++k) s += u(i, k) * q(i, k) * q(i, k) * q(i, k);
      return s;
    });
    grad[1] += w * sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int k = 0; k < D; ++k) s += u(i, k) * (q(i, (k + 1) % D) + q(i, (k + D - 1) % D));
      return s;
    });
  }
  void hvp_k(int n, double w, const Rows<const double>& p, const Rows<const double>& u, const Rows<double>& hu) {
    const int D = static_cast<int>(p.extent(1));
    const double c = th[2], d = th[3];
    for_each_element("test_hvp_k", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t k) {
      const double t = kmath::tanh(p(i, k));
      hu(i, k) += w * (c * (1 - t * t) + d) * u(i, k);
    });
    grad[2] += w * sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int k = 0; k < D; ++k) s += u(i, k) * kmath::tanh(p(i, k));
      return s;
    });
    grad[3] += w * sum_rows(n, KOKKOS_LAMBDA(const std::int64_t i) {
      double s = 0;
      for (int k = 0; k < D; ++k) s += u(i, k) * p(i, k);
      return s;
    });
  }
};

std::vector<double> randoms(TestRng& r, std::size_t n, double scale) {
  std::vector<double> v(n);
  for (double& x : v) x = scale * r.normal();
  return v;
}
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

constexpr int kN = 3, kD = 4, kSteps = 5;

// ℓ = ⟨w, x_N⟩ + μ Σ_i I_N(i), integrated by Rk4 from x0 with θ.
struct Rk4Problem {
  std::vector<double> x0, w, th;
  double mu, t0, h;

  double loss(const std::vector<double>& x, const std::vector<double>& theta) const {
    AnalyticField f(theta[0], theta[1], theta[2]);
    Rk4<double> rk4(kN, kD);
    Matrix<double> xd = bf::test::device_mat<double>(x, kN, kD);
    Vector<double> I("I", kN);
    rk4.integrate(f, kN, Rows<double>(xd.data(), kN, kD), Span<double>(I.data(), kN), t0, h, kSteps, true,
                  Matrix<double>(), Matrix<double>());
    double s = dot(w, bf::test::to_host(xd));
    for (double v : bf::test::to_host(I)) s += mu * v;
    return s;
  }
};

}  // namespace

// Rk4's adjoint (λ = ∂ℓ/∂x_0 and the field's θ̄) against central differences
// of the forward, forwards from t0 = 0.25 and backwards from t0 = 1; and the
// integral the adjoint sums from its stage re-runs equals the forward's.
TEST(Integrators, Rk4AdjointMatchesFiniteDifferences) {
  TestRng r(41);
  for (const double h : {0.1, -0.15}) {
    Rk4Problem P{randoms(r, kN * kD, 0.7), randoms(r, kN * kD, 1.0), {0.8, -0.6, 0.3}, -0.7, h > 0 ? 0.25 : 1.0, h};
    AnalyticField f(P.th[0], P.th[1], P.th[2]);
    Rk4<double> rk4(kN, kD);
    Matrix<double> xd = bf::test::device_mat<double>(P.x0, kN, kD), stages("stages", 4 * kSteps * kN, kD);
    Vector<double> I("I", kN), I_adj("I_adjoint", kN);
    rk4.integrate(f, kN, Rows<double>(xd.data(), kN, kD), Span<double>(I.data(), kN), P.t0, h, kSteps, true,
                  Matrix<double>(), stages);
    Matrix<double> lam = bf::test::device_mat<double>(P.w, kN, kD);
    rk4.adjoint(f, kN, Rows<double>(lam.data(), kN, kD), P.mu, Span<double>(I_adj.data(), kN), P.t0, h, kSteps,
                stages);
    const std::vector<double> gx = bf::test::to_host(lam), If = bf::test::to_host(I), Ia = bf::test::to_host(I_adj);
    for (int i = 0; i < kN; ++i) EXPECT_NEAR(Ia[i], If[i], 1e-13 * (1 + std::fabs(If[i]))) << "integral " << i;
    for (std::size_t e = 0; e < P.x0.size(); ++e) {
      const double fd = central_difference(
          [&](double s) {
            std::vector<double> x = P.x0;
            x[e] += s;
            return P.loss(x, P.th);
          },
          1e-3);
      EXPECT_NEAR(gx[e], fd, 1e-8 * (1 + std::fabs(fd))) << "h " << h << " x0[" << e << "]";
    }
    for (int k = 0; k < 3; ++k) {
      const double fd = central_difference(
          [&](double s) {
            std::vector<double> th = P.th;
            th[k] += s;
            return P.loss(P.x0, th);
          },
          1e-3);
      EXPECT_NEAR(f.grad[k], fd, 1e-8 * (1 + std::fabs(fd))) << "h " << h << " theta" << k;
      EXPECT_GT(std::fabs(fd), 1e-3) << "theta" << k << " must matter for the test to test it";
    }
  }
}

namespace {
// ℓ = ⟨wq, q_L⟩ + ⟨wp, p_L⟩ after the leapfrog from (q0, p0) with θ.
struct LeapfrogProblem {
  std::vector<double> q0, p0, wq, wp, th;
  double dt;

  double loss(const std::vector<double>& q, const std::vector<double>& p, const std::vector<double>& theta) const {
    AnalyticHamiltonian H(theta[0], theta[1], theta[2], theta[3]);
    Leapfrog<double> lf(kN, kD, kSteps);
    Matrix<double> qd = bf::test::device_mat<double>(q, kN, kD), pd = bf::test::device_mat<double>(p, kN, kD);
    lf.integrate(H, kN, Rows<double>(qd.data(), kN, kD), Rows<double>(pd.data(), kN, kD), dt, false);
    return dot(wq, bf::test::to_host(qd)) + dot(wp, bf::test::to_host(pd));
  }
};
}  // namespace

namespace {
// q̄_0, p̄_0 and the 4 θ̄ of an adjoint against central differences of problem P's loss(q0, p0, θ).
template <class Problem>
void expect_leapfrog_gradients(const Problem& P, const std::vector<double>& gq, const std::vector<double>& gp,
                               const double* grad, double dt) {
  for (std::size_t e = 0; e < P.q0.size(); ++e) {
    const double fq = central_difference(
        [&](double s) {
          std::vector<double> q = P.q0;
          q[e] += s;
          return P.loss(q, P.p0, P.th);
        },
        1e-3);
    const double fp = central_difference(
        [&](double s) {
          std::vector<double> p = P.p0;
          p[e] += s;
          return P.loss(P.q0, p, P.th);
        },
        1e-3);
    EXPECT_NEAR(gq[e], fq, 1e-8 * (1 + std::fabs(fq))) << "dt " << dt << " q0[" << e << "]";
    EXPECT_NEAR(gp[e], fp, 1e-8 * (1 + std::fabs(fp))) << "dt " << dt << " p0[" << e << "]";
  }
  for (int k = 0; k < 4; ++k) {
    const double fd = central_difference(
        [&](double s) {
          std::vector<double> th = P.th;
          th[k] += s;
          return P.loss(P.q0, P.p0, th);
        },
        1e-3);
    EXPECT_NEAR(grad[k], fd, 1e-8 * (1 + std::fabs(fd))) << "dt " << dt << " theta" << k;
    EXPECT_GT(std::fabs(fd), 1e-3) << "theta" << k << " must matter for the test to test it";
  }
}
}  // namespace

// The Leapfrog's adjoint (q̄_0, p̄_0 and θ̄ of V and K) against central
// differences, forwards and backwards in time.
TEST(Integrators, LeapfrogAdjointMatchesFiniteDifferences) {
  TestRng r(43);
  for (const double dt : {0.2, -0.15}) {
    LeapfrogProblem P{randoms(r, kN * kD, 0.8), randoms(r, kN * kD, 0.8), randoms(r, kN * kD, 1.0),
                      randoms(r, kN * kD, 1.0), {0.5, -0.3, 0.9, 0.6}, dt};
    AnalyticHamiltonian H(P.th[0], P.th[1], P.th[2], P.th[3]);
    Leapfrog<double> lf(kN, kD, kSteps);
    Matrix<double> qd = bf::test::device_mat<double>(P.q0, kN, kD), pd = bf::test::device_mat<double>(P.p0, kN, kD);
    lf.integrate(H, kN, Rows<double>(qd.data(), kN, kD), Rows<double>(pd.data(), kN, kD), dt, true);
    Matrix<double> b = bf::test::device_mat<double>(P.wq, kN, kD), a = bf::test::device_mat<double>(P.wp, kN, kD);
    lf.adjoint(H, kN, Rows<double>(b.data(), kN, kD), Rows<double>(a.data(), kN, kD), dt);
    const std::vector<double> gq = bf::test::to_host(b), gp = bf::test::to_host(a);
    expect_leapfrog_gradients(P, gq, gp, H.grad, dt);
  }
}

namespace {
// ℓ = Σ_{s=1..L} ⟨wq_s, q_s⟩ + ⟨wp_s, p_s⟩ + ½ c |p_s|² over every state of the leapfrog (the shape
// of Hamiltonian score matching's loss: each state a source of the adjoint, momenta included).
struct LeapfrogPathProblem {
  std::vector<double> q0, p0, wq, wp, th;  // wq, wp: L blocks of kN x kD
  double dt, c;

  double loss(const std::vector<double>& q, const std::vector<double>& p, const std::vector<double>& theta) const {
    AnalyticHamiltonian H(theta[0], theta[1], theta[2], theta[3]);
    Leapfrog<double> lf(kN, kD, kSteps);
    Matrix<double> qd = bf::test::device_mat<double>(q, kN, kD), pd = bf::test::device_mat<double>(p, kN, kD);
    double l = 0;
    lf.integrate(H, kN, Rows<double>(qd.data(), kN, kD), Rows<double>(pd.data(), kN, kD), dt, false,
                 [&](int s, const Rows<double>&, const Rows<double>&) {
                   const std::vector<double> qs = bf::test::to_host(qd), ps = bf::test::to_host(pd);
                   for (int e = 0; e < kN * kD; ++e)
                     l += wq[(s - 1) * kN * kD + e] * qs[e] + wp[(s - 1) * kN * kD + e] * ps[e] + 0.5 * c * ps[e] * ps[e];
                 });
    return l;
  }
};
}  // namespace

// The adjoint with a source at every state (q̄_0, p̄_0, θ̄) against central differences of the
// whole-path loss, forwards and backwards in time; and with sources only at the end it is
// the plain adjoint, bit for bit.
TEST(Integrators, LeapfrogAdjointWithSourcesMatchesFiniteDifferences) {
  TestRng r(47);
  const int E = kN * kD;
  for (const double dt : {0.2, -0.15}) {
    LeapfrogPathProblem P{randoms(r, E, 0.8), randoms(r, E, 0.8), randoms(r, kSteps * E, 1.0),
                          randoms(r, kSteps * E, 1.0), {0.5, -0.3, 0.9, 0.6}, dt, 0.7};
    AnalyticHamiltonian H(P.th[0], P.th[1], P.th[2], P.th[3]);
    Leapfrog<double> lf(kN, kD, kSteps);
    Matrix<double> qd = bf::test::device_mat<double>(P.q0, kN, kD), pd = bf::test::device_mat<double>(P.p0, kN, kD);
    std::vector<double> pbar_h(kSteps * E);
    lf.integrate(H, kN, Rows<double>(qd.data(), kN, kD), Rows<double>(pd.data(), kN, kD), dt, true,
                 [&](int s, const Rows<double>&, const Rows<double>&) {
                   const std::vector<double> ps = bf::test::to_host(pd);
                   for (int e = 0; e < E; ++e) pbar_h[(s - 1) * E + e] = P.wp[(s - 1) * E + e] + P.c * ps[e];
                 });
    Matrix<double> qbar = bf::test::device_mat<double>(P.wq, kSteps * kN, kD),
                   pbar = bf::test::device_mat<double>(pbar_h, kSteps * kN, kD), b("b", kN, kD), a("a", kN, kD);
    lf.adjoint_with_sources(H, kN, Rows<double>(b.data(), kN, kD), Rows<double>(a.data(), kN, kD), dt, qbar, pbar);
    const std::vector<double> gq = bf::test::to_host(b), gp = bf::test::to_host(a);
    expect_leapfrog_gradients(P, gq, gp, H.grad, dt);
    // Sources at the last state only: the plain adjoint.
    std::vector<double> zq(kSteps * E, 0.0), zp(kSteps * E, 0.0);
    for (int e = 0; e < E; ++e) zq[(kSteps - 1) * E + e] = P.wq[e], zp[(kSteps - 1) * E + e] = P.wp[e];
    AnalyticHamiltonian H1(P.th[0], P.th[1], P.th[2], P.th[3]), H2 = H1;
    qd = bf::test::device_mat<double>(P.q0, kN, kD), pd = bf::test::device_mat<double>(P.p0, kN, kD);
    lf.integrate(H1, kN, Rows<double>(qd.data(), kN, kD), Rows<double>(pd.data(), kN, kD), dt, true);
    Matrix<double> b1 = bf::test::device_mat<double>(std::vector<double>(P.wq.begin(), P.wq.begin() + E), kN, kD),
                   a1 = bf::test::device_mat<double>(std::vector<double>(P.wp.begin(), P.wp.begin() + E), kN, kD);
    lf.adjoint(H1, kN, Rows<double>(b1.data(), kN, kD), Rows<double>(a1.data(), kN, kD), dt);
    Matrix<double> zqd = bf::test::device_mat<double>(zq, kSteps * kN, kD), zpd = bf::test::device_mat<double>(zp, kSteps * kN, kD);
    lf.adjoint_with_sources(H2, kN, Rows<double>(b.data(), kN, kD), Rows<double>(a.data(), kN, kD), dt, zqd, zpd);
    EXPECT_EQ(bf::test::to_host(b), bf::test::to_host(b1));
    EXPECT_EQ(bf::test::to_host(a), bf::test::to_host(a1));
    for (int k = 0; k < 4; ++k) EXPECT_EQ(H2.grad[k], H1.grad[k]) << "theta" << k;
  }
}
