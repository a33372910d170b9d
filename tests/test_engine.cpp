// The differentiable engine: every quantity and every parameter gradient
// against central finite differences (double), the fused kernels against a
// plain-loop host reference (float and double), Adam and its schedule against
// hand-computed steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>

#include "flows/nn/derivatives.hpp"
#include "flows/nn/mlp.hpp"
#include "flows/nn/time_mixture.hpp"
#include "tests/test_helpers.hpp"

using namespace bf;
using bf::test::TestRng;

namespace {

using bf::test::device_mat;
using bf::test::device_vec;
using bf::test::to_host;

std::vector<double> random_vec(TestRng& r, std::size_t n, double scale = 1.0) {
  std::vector<double> v(n);
  for (double& x : v) x = scale * r.normal();
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Richardson-extrapolated central difference of f along a parameter h -> f(h).
double central(const std::function<double(double)>& f, double h = 1e-3) {
  auto c = [&](double s) { return (f(s) - f(-s)) / (2 * s); };
  return (4 * c(h / 2) - c(h)) / 3;
}

void expect_close(double fd, double an, double scale, double tol, const std::string& what) {
  EXPECT_LE(std::fabs(fd - an), tol * std::fmax(std::fabs(an), scale)) << what << ": fd " << fd << " vs " << an;
}

// ---- plain-loop host reference of a tangent-carrying MLP (double) ----------
struct RefMlp {
  std::vector<int> widths;
  Activation act;
  std::vector<std::size_t> w_off, b_off;
};

double ref_act(Activation a, double x, double& d1, double& d2) {
  const double s = 1 / (1 + std::exp(-x));
  switch (a) {
    case Activation::softplus: d1 = s; d2 = s * (1 - s); return std::log1p(std::exp(x));
    case Activation::swish: d1 = s + x * s * (1 - s); d2 = s * (1 - s) * (2 + x * (1 - 2 * s)); return x * s;
    case Activation::tanh: { const double t = std::tanh(x); d1 = 1 - t * t; d2 = -2 * t * (1 - t * t); return t; }
    default: d1 = 1; d2 = 0; return x;
  }
}

// Forward of value + k tangents; returns all layers' (pre, out) for the reverse.
struct RefCache {
  std::vector<std::vector<double>> in, pre;  // per layer, rows x width
};
std::vector<double> ref_forward(const RefMlp& m, const std::vector<double>& p, const std::vector<double>& x, int batch,
                                int k, RefCache* cache = nullptr) {
  const int rows = (1 + k) * batch, L = static_cast<int>(m.widths.size()) - 1;
  std::vector<double> h = x;
  for (int l = 0; l < L; ++l) {
    const int ni = m.widths[l], no = m.widths[l + 1];
    std::vector<double> a(static_cast<std::size_t>(rows) * no, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < no; ++o) {
        double s = r % (1 + k) == 0 ? p[m.b_off[l] + o] : 0.0;
        for (int i = 0; i < ni; ++i) s += p[m.w_off[l] + static_cast<std::size_t>(o) * ni + i] * h[r * ni + i];
        a[r * no + o] = s;
      }
    if (cache) cache->in.push_back(h), cache->pre.push_back(a);
    if (l == L - 1) return a;
    std::vector<double> out(a.size());
    for (int i = 0; i < batch; ++i)
      for (int o = 0; o < no; ++o) {
        double d1, d2;
        const int r0 = i * (1 + k);
        out[r0 * no + o] = ref_act(m.act, a[r0 * no + o], d1, d2);
        for (int t = 1; t <= k; ++t) out[(r0 + t) * no + o] = d1 * a[(r0 + t) * no + o];
      }
    h = out;
  }
  return h;
}

// Reverse: parameter gradient and input adjoints (all rows) for output adjoints g.
void ref_reverse(const RefMlp& m, const std::vector<double>& p, const RefCache& c, int batch, int k,
                 std::vector<double> g, std::vector<double>& grad, std::vector<double>& adj_in) {
  const int rows = (1 + k) * batch, L = static_cast<int>(m.widths.size()) - 1;
  for (int l = L - 1; l >= 0; --l) {
    const int ni = m.widths[l], no = m.widths[l + 1];
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < no; ++o) {
        for (int i = 0; i < ni; ++i) grad[m.w_off[l] + static_cast<std::size_t>(o) * ni + i] += g[r * no + o] * c.in[l][r * ni + i];
        if (r % (1 + k) == 0) grad[m.b_off[l] + o] += g[r * no + o];
      }
    std::vector<double> gp(static_cast<std::size_t>(rows) * ni, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < ni; ++i)
        for (int o = 0; o < no; ++o) gp[r * ni + i] += g[r * no + o] * p[m.w_off[l] + static_cast<std::size_t>(o) * ni + i];
    if (l == 0) {
      adj_in = gp;
      return;
    }
    const auto& a = c.pre[l - 1];
    for (int i = 0; i < batch; ++i)
      for (int j = 0; j < ni; ++j) {
        double d1, d2;
        const int r0 = i * (1 + k);
        ref_act(m.act, a[r0 * ni + j], d1, d2);
        double acc = d1 * gp[r0 * ni + j];
        for (int t = 1; t <= k; ++t) {
          const int q = (r0 + t) * ni + j;
          acc += d2 * a[q] * gp[q];
          gp[q] *= d1;
        }
        gp[r0 * ni + j] = acc;
      }
    g = gp;
  }
}

struct NetSetup {
  ParameterLayout layout;
  std::unique_ptr<Mlp<double>> mlp;
  std::vector<double> params;
};

NetSetup make_mlp(const std::vector<int>& widths, Activation act, std::uint32_t seed) {
  NetSetup s;
  MlpSpec spec;
  spec.widths = widths;
  spec.activation = act;
  s.mlp = std::make_unique<Mlp<double>>("net", spec, s.layout);
  Vector<double> p("p", s.layout.size());
  initialize_parameters(s.layout, p, seed);
  s.params = to_host(p);
  // Non-zero biases so the bias paths are exercised.
  TestRng r(seed);
  for (int l = 0; l < s.mlp->layers(); ++l) {
    const auto& b = s.mlp->bias(l);
    for (std::size_t i = 0; i < b.size; ++i) s.params[b.offset + i] = 0.3 * r.normal();
  }
  return s;
}

}  // namespace

struct EngineCase {
  std::vector<int> widths;
  Activation act;
  int k;
};

class EngineFd : public ::testing::TestWithParam<EngineCase> {};

// Tangent outputs are directional derivatives of the value outputs.
TEST_P(EngineFd, TangentsAreDirectionalDerivatives) {
  const auto c = GetParam();
  NetSetup s = make_mlp(c.widths, c.act, 3);
  const int batch = 5, n0 = c.widths.front(), n_out = c.widths.back(), k = std::max(1, c.k);
  TestRng r(17);
  const auto x = random_vec(r, static_cast<std::size_t>(batch) * n0);
  const auto dirs = random_vec(r, static_cast<std::size_t>(k) * batch * n0);  // [t-1][i][j]
  std::vector<double> rows;  // sample-major: value, then its k tangents
  for (int i = 0; i < batch; ++i) {
    rows.insert(rows.end(), x.begin() + i * n0, x.begin() + (i + 1) * n0);
    for (int t = 1; t <= k; ++t)
      rows.insert(rows.end(), dirs.begin() + ((t - 1) * batch + i) * n0, dirs.begin() + ((t - 1) * batch + i + 1) * n0);
  }
  auto p = device_vec<double>(s.params);
  auto ws = s.mlp->workspace((1 + k) * batch);
  auto in = device_mat<double>(rows, (1 + k) * batch, n0);
  const auto out = to_host(s.mlp->forward(p, ws, batch, k, in));
  auto value_at = [&](const std::vector<double>& xx) {
    auto ws0 = s.mlp->workspace(batch);
    auto in0 = device_mat<double>(xx, batch, n0);
    return to_host(s.mlp->forward(p, ws0, batch, 0, in0));
  };
  for (int t = 1; t <= k; ++t)
    for (int i = 0; i < batch; ++i)
      for (int o = 0; o < n_out; ++o) {
        const double fd = central([&](double h) {
          std::vector<double> xx = x;
          for (int j = 0; j < n0; ++j) xx[i * n0 + j] += h * dirs[((t - 1) * batch + i) * n0 + j];
          return value_at(xx)[i * n_out + o];
        });
        expect_close(fd, out[(i * (1 + k) + t) * n_out + o], 1e-3, 1e-6, "tangent");
      }
}

// Parameter gradients and input adjoints of L = Σ C ⊙ out over value and tangent rows.
TEST_P(EngineFd, ReverseGivesExactGradients) {
  const auto c = GetParam();
  NetSetup s = make_mlp(c.widths, c.act, 5);
  const int batch = 4, k = c.k, n0 = c.widths.front(), n_out = c.widths.back(), rows = (1 + k) * batch;
  TestRng r(23);
  const auto x = random_vec(r, static_cast<std::size_t>(rows) * n0);
  const auto C = random_vec(r, static_cast<std::size_t>(rows) * n_out);
  auto loss = [&](const std::vector<double>& params, const std::vector<double>& xin) {
    auto p = device_vec<double>(params);
    auto ws = s.mlp->workspace(rows);
    auto in = device_mat<double>(xin, rows, n0);
    return dot(to_host(s.mlp->forward(p, ws, batch, k, in)), C);
  };
  auto p = device_vec<double>(s.params);
  Vector<double> grad("grad", s.layout.size());
  auto ws = s.mlp->workspace(rows);
  auto in = device_mat<double>(x, rows, n0);
  s.mlp->forward(p, ws, batch, k, in);
  Matrix<double> adj_in("adj_in", rows, n0);
  s.mlp->reverse(p, grad, ws, device_mat<double>(C, rows, n_out), adj_in);
  const auto g = to_host(grad), ain = to_host(adj_in);
  for (int trial = 0; trial < 3; ++trial) {
    const auto u = random_vec(r, s.params.size());
    const double fd = central([&](double h) {
      std::vector<double> q = s.params;
      for (std::size_t i = 0; i < q.size(); ++i) q[i] += h * u[i];
      return loss(q, x);
    });
    expect_close(fd, dot(g, u), 1e-3, 1e-6, "parameter gradient");
    const auto v = random_vec(r, x.size());
    const double fdx = central([&](double h) {
      std::vector<double> xx = x;
      for (std::size_t i = 0; i < xx.size(); ++i) xx[i] += h * v[i];
      return loss(s.params, xx);
    });
    expect_close(fdx, dot(ain, v), 1e-3, 1e-6, "input adjoint");
  }
}

// The fused kernels against the plain-loop host reference, double and float.
// The engine's forward (training and inference) and reverse passes against
// the plain host reference (flows-independent loops in double).
static void check_against_reference(const EngineCase& c, int batch) {
  NetSetup s = make_mlp(c.widths, c.act, 9);
  const int k = c.k, n0 = c.widths.front(), n_out = c.widths.back(), rows = (1 + k) * batch;
  RefMlp ref{c.widths, c.act, {}, {}};
  for (int l = 0; l < s.mlp->layers(); ++l) ref.w_off.push_back(s.mlp->weight(l).offset), ref.b_off.push_back(s.mlp->bias(l).offset);
  TestRng r(31);
  const auto x = random_vec(r, static_cast<std::size_t>(rows) * n0);
  const auto C = random_vec(r, static_cast<std::size_t>(rows) * n_out);
  RefCache cache;
  const auto want = ref_forward(ref, s.params, x, batch, k, &cache);
  std::vector<double> want_grad(s.params.size(), 0.0), want_adj;
  ref_reverse(ref, s.params, cache, batch, k, C, want_grad, want_adj);

  auto run = [&](auto zero, double tol) {
    using T = decltype(zero);
    ParameterLayout layout;
    MlpSpec spec;
    spec.widths = c.widths;
    spec.activation = c.act;
    Mlp<T> net("net", spec, layout);
    auto p = device_vec<T>(s.params);
    Vector<T> grad("grad", layout.size());
    auto ws = net.workspace(rows);
    auto in = device_mat<T>(x, rows, n0);
    // The inference pass (nothing cached) gives the same outputs, and refuses a reverse.
    const auto inferred = to_host(net.forward(p, ws, batch, k, in, false));
    EXPECT_THROW(net.reverse(p, grad, ws, device_mat<T>(C, rows, n_out), Rows<T>()), std::logic_error);
    const auto got = to_host(net.forward(p, ws, batch, k, in));
    EXPECT_EQ(inferred, got) << "inference and training forward passes agree";
    Matrix<T> adj("adj", rows, n0);
    net.reverse(p, grad, ws, device_mat<T>(C, rows, n_out), adj);
    const auto got_grad = to_host(grad), got_adj = to_host(adj);
    double scale = 0;
    for (double v : want) scale = std::fmax(scale, std::fabs(v));
    for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * (1 + scale)) << "output " << i;
    scale = 0;
    for (double v : want_grad) scale = std::fmax(scale, std::fabs(v));
    for (std::size_t i = 0; i < want_grad.size(); ++i) ASSERT_NEAR(got_grad[i], want_grad[i], tol * (1 + scale)) << "grad " << i;
    scale = 0;
    for (double v : want_adj) scale = std::fmax(scale, std::fabs(v));
    for (std::size_t i = 0; i < want_adj.size(); ++i) ASSERT_NEAR(got_adj[i], want_adj[i], tol * (1 + scale)) << "adj " << i;
  };
  run(double(0), 1e-12);
  run(float(0), 2e-5);
}

TEST_P(EngineFd, FusedKernelsMatchHostReference) { check_against_reference(GetParam(), 6); }

// Layers wider than the inference pass's stack block of 64 columns (130 = 2 x
// 64 + 2), a 2-wide output (the plain-loop products of gemm for narrow
// sides), and more rows (400 x 3) than one block of a pass (1024 rows).
TEST(Engine, WideLayersAndManyBlocksMatchHostReference) {
  check_against_reference(EngineCase{{3, 130, 70, 2}, Activation::swish, 2}, 400);
  check_against_reference(EngineCase{{2, 66, 1}, Activation::softplus, 1}, 700);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EngineFd,
    ::testing::Values(EngineCase{{3, 8, 2}, Activation::swish, 0}, EngineCase{{3, 8, 2}, Activation::swish, 2},
                      EngineCase{{2, 5, 7, 1}, Activation::softplus, 1}, EngineCase{{4, 6, 6, 6, 3}, Activation::tanh, 3},
                      EngineCase{{5, 16, 16, 5}, Activation::swish, 5}, EngineCase{{1, 4, 1}, Activation::tanh, 0},
                      EngineCase{{17, 32, 32, 16}, Activation::swish, 17}));

// gemm and every backend compiled in, against a plain triple loop in double,
// for every transposition, with α, β ≠ 0, 1 and shapes that are not multiples
// of any block size (on a multi-threaded host space this covers the split of
// a product into per-thread blocks, along rows and along columns), and shapes
// with a side of at most 4, which gemm computes with plain loops on host
// memory (k = 2, n = 1, m = 1, and the sides just above and below).
TEST(Gemm, EveryBackendMatchesAPlainProduct) {
  TestRng r(77);
  struct Shape { int m, n, k; };
  for (const Shape sh : {Shape{37, 5, 11}, Shape{3, 150, 20}, Shape{300, 129, 33}, Shape{1, 1, 7}, Shape{70, 33, 2},
                          Shape{65, 1, 40}, Shape{1, 45, 70}, Shape{90, 70, 5}}) {
    for (const char* ta : {"N", "T"})
      for (const char* tb : {"N", "T"}) {
        const bool at = ta[0] == 'T', bt = tb[0] == 'T';
        const int ar = at ? sh.k : sh.m, ac = at ? sh.m : sh.k, br = bt ? sh.n : sh.k, bc = bt ? sh.k : sh.n;
        const auto A = random_vec(r, static_cast<std::size_t>(ar) * ac), B = random_vec(r, static_cast<std::size_t>(br) * bc),
                   C0 = random_vec(r, static_cast<std::size_t>(sh.m) * sh.n);
        const double alpha = 0.7, beta = -0.3;
        std::vector<double> want(C0.size());
        for (int i = 0; i < sh.m; ++i)
          for (int j = 0; j < sh.n; ++j) {
            double s = 0;
            for (int q = 0; q < sh.k; ++q)
              s += (at ? A[q * ac + i] : A[i * ac + q]) * (bt ? B[j * bc + q] : B[q * bc + j]);
            want[i * sh.n + j] = alpha * s + beta * C0[i * sh.n + j];
          }
        auto check = [&](auto zero, const std::string& name, auto fn) {
          using T = decltype(zero);
          const Matrix<T> a = device_mat<T>(A, ar, ac), b = device_mat<T>(B, br, bc), c = device_mat<T>(C0, sh.m, sh.n);
          fn(ta, tb, T(alpha), Rows<const T>(a.data(), ar, ac), Rows<const T>(b.data(), br, bc), T(beta),
             Rows<T>(c.data(), sh.m, sh.n));
          const auto got = to_host(c);
          const double tol = sizeof(T) == 4 ? 2e-5 : 1e-13;
          for (std::size_t i = 0; i < want.size(); ++i)
            ASSERT_NEAR(got[i], want[i], tol * (1 + std::sqrt(static_cast<double>(sh.k))))
                << name << " " << ta << tb << " " << sh.m << "x" << sh.n << "x" << sh.k << " at " << i;
        };
        // β = 0 writes C without reading it: NaN in C must not survive.
        {
          const Matrix<float> a = device_mat<float>(A, ar, ac), b = device_mat<float>(B, br, bc);
          Matrix<float> c("c", sh.m, sh.n);
          Kokkos::deep_copy(c, std::nanf(""));
          gemm<float>(ta, tb, 1.0f, Rows<const float>(a.data(), ar, ac), Rows<const float>(b.data(), br, bc), 0.0f,
                      Rows<float>(c.data(), sh.m, sh.n));
          for (float v : to_host(c)) ASSERT_TRUE(std::isfinite(v)) << "beta = 0 " << ta << tb << " " << sh.m << "x" << sh.n;
        }
        check(double(0), "gemm (" + gemm_backend() + ")", &gemm<double>);
        check(float(0), "gemm (" + gemm_backend() + ")", &gemm<float>);
        for (const GemmBackend& be : gemm_backends()) {
          check(double(0), be.name, be.dgemm);
          check(float(0), be.name, be.sgemm);
        }
      }
  }
}

// Every activation and its two derivatives, run in a device kernel, against
// long-double libm on a dense grid over [−120, 120] plus points near 0 and in
// both tails. The error is measured in units of ε·M, M the sum of the
// magnitudes of the terms of the exact expression (|s| + |a s(1 − s)| for σ'
// of swish, say), which is the relative error where nothing cancels and stays
// meaningful where σ' or σ'' crosses zero. The reference keeps every term
// free of cancellation (s(1 − s) = e/(1 + e)², e = e^{−|a|}). Exact values
// below 1e-35 (float) or 1e-300 (double) may come out as 0: vexp flushes to 0
// below e^{−87} (float) and e^{−708} (double) rather than return subnormals.
// σ, σ', σ'' at x into the columns of out, in a device kernel (a function of
// its own: CUDA allows no device lambda inside a generic lambda).
template <Activation A, class T>
void activations_on_device(const Vector<T>& x, const Matrix<T>& out, int n) {
  Kokkos::parallel_for(
      "test_activation", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        T d1, d2;
        out(i, 0) = activate_fixed<A, T>(x(i), d1, d2);
        out(i, 1) = d1;
        out(i, 2) = d2;
      });
}

template <class T>
void check_activations_against_libm(double max_units) {
  std::vector<double> xs;
  for (int i = -240000; i <= 240000; ++i) xs.push_back(i * 5e-4);
  for (int k = 1; k <= 40; ++k) xs.push_back(std::pow(10.0, -k)), xs.push_back(-std::pow(10.0, -k));
  for (double t : {150.0, 300.0, 700.0, 1e4}) xs.push_back(t), xs.push_back(-t);
  const int n = static_cast<int>(xs.size());
  Vector<T> x = device_vec<T>(xs);
  Matrix<T> out("out", n, 3);
  const double eps = std::numeric_limits<T>::epsilon(), tiny = sizeof(T) == 4 ? 1e-35 : 1e-300;
  for (Activation act : {Activation::softplus, Activation::swish, Activation::tanh}) {
    with_activation(act, [&](auto a) { activations_on_device<decltype(a)::value, T>(x, out, n); });
    const auto got = to_host(out);
    double worst[3] = {0, 0, 0}, at[3] = {0, 0, 0};
    for (int i = 0; i < n; ++i) {
      const long double a = static_cast<long double>(static_cast<T>(xs[i]));  // the input as T holds it
      const long double e = std::exp(-std::fabs(a)), r = 1.0L / (1.0L + e);
      const long double sg = a >= 0 ? r : e * r, ss = e * r * r, one_m_2s = (a >= 0 ? e - 1.0L : 1.0L - e) * r;
      long double f[3], m[3];
      if (act == Activation::softplus) {
        f[0] = a > 0 ? a + std::log1p(std::exp(-a)) : std::log1p(std::exp(a));
        f[1] = sg;
        f[2] = ss;
        m[0] = std::fabs(f[0]), m[1] = f[1], m[2] = f[2];
      } else if (act == Activation::swish) {
        f[0] = a * sg;
        f[1] = sg + a * ss;
        f[2] = ss * (2 + a * one_m_2s);
        m[0] = std::fabs(f[0]), m[1] = sg + std::fabs(a * ss), m[2] = ss * (2 + std::fabs(a * one_m_2s));
      } else {
        const long double th = std::tanh(a), e2 = std::exp(-2 * std::fabs(a));
        const long double sech2 = 4 * e2 / ((1 + e2) * (1 + e2));
        f[0] = th;
        f[1] = sech2;
        f[2] = -2 * th * sech2;
        m[0] = std::fabs(f[0]), m[1] = f[1], m[2] = std::fabs(f[2]);
      }
      for (int q = 0; q < 3; ++q) {
        const double err = static_cast<double>(std::fabs(static_cast<long double>(got[3 * i + q]) - f[q]));
        if (err <= tiny && std::fabs(static_cast<double>(f[q])) <= tiny) continue;
        const double units = err / (eps * std::fmax(static_cast<double>(m[q]), tiny));
        if (units > worst[q]) worst[q] = units, at[q] = xs[i];
      }
    }
    std::printf("  %s %-8s max error (units of eps*M): sigma %.2f at %.4g, sigma' %.2f at %.4g, sigma'' %.2f at %.4g\n",
                sizeof(T) == 4 ? "float " : "double", activation_name(act).c_str(), worst[0], at[0], worst[1], at[1],
                worst[2], at[2]);
    for (int q = 0; q < 3; ++q)
      EXPECT_LE(worst[q], max_units) << activation_name(act) << " derivative " << q << " at x = " << at[q];
  }
}

TEST(Activations, MatchLibmOnADenseGridWithBothTails) {
  check_activations_against_libm<float>(4.0);
  check_activations_against_libm<double>(4.0);
}

// The vectorizable exp − 1 and log(1 + u) against libm.
TEST(Activations, VexpmOneAndLogOnePlusAgainstLibm) {
  double worst_f = 0, worst_d = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const double x = i * 1e-4;
    const long double want = std::expm1(static_cast<long double>(x));
    worst_d = std::fmax(worst_d, static_cast<double>(std::fabs((vexpm1(x) - want) / want)) / 2.22e-16);
    const float xf = static_cast<float>(x);
    const long double wf = std::expm1(static_cast<long double>(xf));
    if (i != 0) worst_f = std::fmax(worst_f, static_cast<double>(std::fabs((vexpm1(xf) - wf) / wf)) / 1.19e-7);
  }
  double lf = 0, ld = 0;
  for (int i = 0; i <= 100000; ++i) {
    const double u = i == 0 ? 0.0 : std::pow(10.0, -40.0 + 40.0 * i / 100000.0);
    const long double want = std::log1p(static_cast<long double>(u));
    if (u >= std::numeric_limits<double>::min()) ld = std::fmax(ld, static_cast<double>(std::fabs((vlog1p_unit(u) - want) / want)) / 2.22e-16);
    const float uf = static_cast<float>(u);
    const long double wf = std::log1p(static_cast<long double>(uf));
    if (uf >= std::numeric_limits<float>::min()) lf = std::fmax(lf, static_cast<double>(std::fabs((vlog1p_unit(uf) - wf) / wf)) / 1.19e-7);
  }
  EXPECT_EQ(vlog1p_unit(0.0), 0.0);
  EXPECT_EQ(vlog1p_unit(0.0f), 0.0f);
  std::printf("  max relative error (ulps): vexpm1 float %.2f double %.2f; vlog1p_unit float %.2f double %.2f\n",
              worst_f, worst_d, lf, ld);
  EXPECT_LE(worst_f, 4.0);
  EXPECT_LE(worst_d, 4.0);
  EXPECT_LE(lf, 4.0);
  EXPECT_LE(ld, 4.0);
}

// A scalar network's input gradient (tangents), its Hessian-vector product
// (reverse of u·∇f) against finite differences of the gradient, and the
// divergence of a vector network against the trace of its finite-difference Jacobian.
TEST(EngineQuantities, GradientHvpAndDivergence) {
  const int batch = 3, D = 4;
  TestRng r(41);
  const auto x = random_vec(r, static_cast<std::size_t>(batch) * D);
  for (Activation act : {Activation::softplus, Activation::swish, Activation::tanh}) {
    // Scalar f: gradient via D axis tangents.
    NetSetup s = make_mlp({D, 12, 12, 1}, act, 2);
    auto p = device_vec<double>(s.params);
    auto grad_of = [&](const std::vector<double>& xx, std::vector<double>* hvp_u, std::vector<double>* hvp) {
      auto ws = s.mlp->workspace((1 + D) * batch);
      Matrix<double> rows("rows", (1 + D) * batch, D);
      auto h = Kokkos::create_mirror_view(rows);
      for (int i = 0; i < batch; ++i)
        for (int j = 0; j < D; ++j) h(row_of(i, 0, D), j) = xx[i * D + j];
      Kokkos::deep_copy(rows, h);
      set_axis_tangents<double>(rows, batch, D, 0);
      const auto out = s.mlp->forward(p, ws, batch, D, rows);
      Matrix<double> g("g", batch, D);
      scalar_gradient<double>(out, batch, D, D, g);
      if (hvp_u) {
        // Upstream adjoint u on the gradient: tangent-row adjoints u_j, value adjoint 0.
        Matrix<double> adj("adj", (1 + D) * batch, 1);
        auto ha = Kokkos::create_mirror_view(adj);
        for (int i = 0; i < batch; ++i)
          for (int j = 0; j < D; ++j) ha(row_of(i, 1 + j, D), 0) = (*hvp_u)[i * D + j];
        Kokkos::deep_copy(adj, ha);
        Vector<double> pg("pg", s.layout.size());
        Matrix<double> ain("ain", (1 + D) * batch, D);
        s.mlp->reverse(p, pg, ws, adj, ain);
        auto ah = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ain);
        hvp->assign(static_cast<std::size_t>(batch) * D, 0.0);
        for (int i = 0; i < batch; ++i)
          for (int j = 0; j < D; ++j) (*hvp)[i * D + j] = ah(row_of(i, 0, D), j);
      }
      return to_host(g);
    };
    auto value_at = [&](const std::vector<double>& xx) {
      auto ws = s.mlp->workspace(batch);
      return to_host(s.mlp->forward(p, ws, batch, 0, device_mat<double>(xx, batch, D)));
    };
    const auto u = random_vec(r, x.size());
    std::vector<double> hvp;
    std::vector<double> uu = u;
    const auto g = grad_of(x, &uu, &hvp);
    for (int i = 0; i < batch; ++i)
      for (int j = 0; j < D; ++j) {
        const double fd = central([&](double h) {
          std::vector<double> xx = x;
          xx[i * D + j] += h;
          return value_at(xx)[i];
        });
        expect_close(fd, g[i * D + j], 1e-3, 1e-6, "input gradient");
        // H u: finite differences of the gradient along u (per sample).
        const double fdh = central([&](double h) {
          std::vector<double> xx = x;
          for (int q = 0; q < D; ++q) xx[i * D + q] += h * u[i * D + q];
          return grad_of(xx, nullptr, nullptr)[i * D + j];
        });
        expect_close(fdh, hvp[i * D + j], 1e-3, 1e-6, "hessian-vector product");
      }
    // Vector V: divergence against the trace of the finite-difference Jacobian.
    NetSetup v = make_mlp({D, 10, 10, D}, act, 8);
    auto pv = device_vec<double>(v.params);
    auto wsv = v.mlp->workspace((1 + D) * batch);
    Matrix<double> rows("rows", (1 + D) * batch, D);
    {
      auto h = Kokkos::create_mirror_view(rows);
      for (int i = 0; i < batch; ++i)
        for (int j = 0; j < D; ++j) h(row_of(i, 0, D), j) = x[i * D + j];
      Kokkos::deep_copy(rows, h);
    }
    set_axis_tangents<double>(rows, batch, D, 0);
    Vector<double> div("div", batch);
    divergence<double>(v.mlp->forward(pv, wsv, batch, D, rows), batch, D, D, div);
    const auto divh = to_host(div);
    for (int i = 0; i < batch; ++i) {
      double trace = 0;
      for (int j = 0; j < D; ++j)
        trace += central([&](double h) {
          std::vector<double> xx = x;
          xx[i * D + j] += h;
          auto ws0 = v.mlp->workspace(batch);
          return to_host(v.mlp->forward(pv, ws0, batch, 0, device_mat<double>(xx, batch, D)))[i * D + j];
        });
      expect_close(trace, divh[i], 1e-3, 1e-6, "divergence");
    }
  }
}

// Time mixture: value rows [x, t]; ∂_t F from the tangent [0, 1], ∇_x F from
// the axis tangents, parameter gradients and x adjoints, with and without t as
// a network input, including a network of t alone.
TEST(EngineTimeMixture, DerivativesAndGradients) {
  struct Case {
    int D, outputs, kernels;
    bool time_input;
  };
  for (const Case c : {Case{2, 2, 4, true}, Case{3, 1, 3, false}, Case{0, 1, 5, true}, Case{2, 3, 1, true}}) {
    const int batch = 3, cols = c.D + 1, k = c.D + 1, rows = (1 + k) * batch;
    ParameterLayout layout;
    TimeMixtureSpec spec;
    spec.kernels = c.kernels;
    spec.space_dim = c.D;
    spec.outputs = c.outputs;
    spec.hidden = {9, 7};
    spec.time_input = c.time_input;
    TimeMixture<double> tm("F", spec, layout);
    Vector<double> p("p", layout.size());
    initialize_parameters(layout, p, 4u);
    const auto params = to_host(p);
    TestRng r(57 + c.D);
    std::vector<double> x = random_vec(r, static_cast<std::size_t>(batch) * cols);
    for (int i = 0; i < batch; ++i) x[i * cols + c.D] = 0.15 + 0.3 * i;  // times in [0, 1]
    auto value = [&](const std::vector<double>& params_, const std::vector<double>& xx) {
      auto ws = tm.workspace(batch);
      auto pp = device_vec<double>(params_);
      return to_host(tm.forward(pp, ws, batch, 0, device_mat<double>(xx, batch, cols)));
    };
    // Tangents: axes of x, then time.
    Matrix<double> in("in", rows, cols);
    {
      auto h = Kokkos::create_mirror_view(in);
      for (int i = 0; i < batch; ++i)
        for (int j = 0; j < cols; ++j) h(row_of(i, 0, k), j) = x[i * cols + j];
      Kokkos::deep_copy(in, h);
    }
    set_axis_tangents<double>(in, batch, k, 0);
    auto ws = tm.workspace(rows);
    const auto out = to_host(tm.forward(p, ws, batch, k, in));
    for (int t = 1; t <= k; ++t)
      for (int i = 0; i < batch; ++i)
        for (int o = 0; o < c.outputs; ++o) {
          const double fd = central([&](double h) {
            std::vector<double> xx = x;
            xx[i * cols + t - 1] += h;
            return value(params, xx)[i * c.outputs + o];
          }, 1e-4);
          expect_close(fd, out[(i * (1 + k) + t) * c.outputs + o], 1e-3, 1e-6,
                       t == k ? "time derivative" : "input derivative");
        }
    // L = Σ C ⊙ out over all rows; parameter gradient and x adjoints.
    const auto C = random_vec(r, static_cast<std::size_t>(rows) * c.outputs);
    Vector<double> grad("grad", layout.size());
    Matrix<double> adj_x("adj_x", rows, cols);
    tm.reverse(p, grad, ws, device_mat<double>(C, rows, c.outputs), adj_x);
    const auto g = to_host(grad), ax = to_host(adj_x);
    auto loss = [&](const std::vector<double>& params_, const std::vector<double>& xx) {
      auto ws2 = tm.workspace(rows);
      auto pp = device_vec<double>(params_);
      Matrix<double> in2("in2", rows, cols);
      auto h = Kokkos::create_mirror_view(in2);
      for (int i = 0; i < batch; ++i)
        for (int j = 0; j < cols; ++j) h(row_of(i, 0, k), j) = xx[i * cols + j];
      Kokkos::deep_copy(in2, h);
      set_axis_tangents<double>(in2, batch, k, 0);
      return dot(to_host(tm.forward(pp, ws2, batch, k, in2)), C);
    };
    const auto u = random_vec(r, params.size());
    const double fd = central([&](double h) {
      std::vector<double> q = params;
      for (std::size_t i = 0; i < q.size(); ++i) q[i] += h * u[i];
      return loss(q, x);
    });
    expect_close(fd, dot(g, u), 1e-3, 1e-6, "mixture parameter gradient");
    for (int i = 0; i < batch; ++i)
      for (int j = 0; j < c.D; ++j) {
        const double fdx = central([&](double h) {
          std::vector<double> xx = x;
          xx[i * cols + j] += h;
          return loss(params, xx);
        });
        expect_close(fdx, ax[row_of(i, 0, k) * cols + j], 1e-3, 1e-6, "mixture x adjoint");
      }
  }
}

TEST(EngineTimeMixture, KernelsArePartitionOfUnity) {
  ParameterLayout layout;
  TimeMixtureSpec spec;
  spec.kernels = 8;
  spec.space_dim = 1;
  spec.outputs = 1;
  spec.hidden = {4};
  TimeMixture<double> tm("F", spec, layout);
  // With every MLP's output bias 1 and weights 0, F ≡ Σ ρ_k = 1 and ∂_t F = 0.
  Vector<double> p("p", layout.size());
  auto h = Kokkos::create_mirror_view(p);
  for (const auto& net : tm.nets()) h(net.bias(net.layers() - 1).offset) = 1.0;
  Kokkos::deep_copy(p, h);
  const int batch = 11;
  Matrix<double> in("in", 2 * batch, 2);
  auto hi = Kokkos::create_mirror_view(in);
  for (int i = 0; i < batch; ++i) hi(2 * i, 0) = 0.5, hi(2 * i, 1) = i / 10.0, hi(2 * i + 1, 1) = 1.0;
  Kokkos::deep_copy(in, hi);
  auto ws = tm.workspace(2 * batch);
  const auto out = to_host(tm.forward(p, ws, batch, 1, in));
  for (int i = 0; i < batch; ++i) {
    EXPECT_NEAR(out[2 * i], 1.0, 1e-14);
    EXPECT_NEAR(out[2 * i + 1], 0.0, 1e-12);
  }
}

TEST(Optimizer, AdamMatchesHandComputedSteps) {
  ParameterLayout layout;
  layout.add("w", {3}, ParamInit{ParamInit::constant, 1.0, 1, 0.5});
  Vector<double> p("p", layout.size());
  initialize_parameters(layout, p, 1u);
  AdamConfig cfg;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.99;
  cfg.eps = 1e-8;
  Adam<double> adam(layout.size(), cfg);
  const std::vector<std::vector<double>> grads{{1.0, -2.0, 0.0}, {0.5, 0.5, 3.0}};
  std::vector<double> theta(layout.size(), 0.0), m(layout.size(), 0.0), v(layout.size(), 0.0);
  for (int i = 0; i < 3; ++i) theta[i] = 0.5;
  for (int step = 1; step <= 2; ++step) {
    std::vector<double> g(layout.size(), 0.0);
    for (int i = 0; i < 3; ++i) g[i] = grads[step - 1][i];
    const double lr = 0.1 * step;
    adam.update(p, device_vec<double>(g), lr);
    for (std::size_t i = 0; i < g.size(); ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.99, step));
      theta[i] -= lr * mh / (std::sqrt(vh) + 1e-8);
    }
    const auto got = to_host(p);
    for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(got[i], theta[i], 1e-12) << "step " << step;
  }
  EXPECT_EQ(adam.steps(), 2);
  // Clipping: the gradient is scaled to the clip norm before the moments see it.
  AdamConfig clip = cfg;
  clip.clip_norm = 1.0;
  Adam<double> a2(layout.size(), clip);
  Vector<double> q("q", layout.size());
  const double n = a2.update(q, device_vec<double>({3.0, 4.0, 0.0}), 0.1);
  EXPECT_DOUBLE_EQ(n, 5.0);
  const auto m1 = to_host(a2.first_moment());
  EXPECT_NEAR(m1[0], 0.1 * 0.6, 1e-15);
  EXPECT_NEAR(m1[1], 0.1 * 0.8, 1e-15);
}

// GroupedAdam: one group is Adam bit for bit; with two groups in a cycle of 3 (group a at
// steps 0, 1 mod 3, group b at 2 mod 3) each part moves only at its steps, as an Adam of its
// own with its own step count and learning rate, and set_steps restores those counts.
TEST(Optimizer, GroupedAdamUpdatesEachGroupAtItsStepsAsItsOwnAdam) {
  AdamConfig cfg;
  const std::vector<double> g0{0.3, -1.2, 0.7, 2.0, -0.4, 0.9};
  Vector<double> p1 = device_vec<double>({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}), p2 = device_vec<double>({0.1, 0.2, 0.3, 0.4, 0.5, 0.6});
  Adam<double> plain(6, cfg);
  GroupedAdam<double> one(6, cfg, {});
  for (int s = 0; s < 4; ++s) {
    plain.step(p1, device_vec<double>(g0), 0.01 * (s + 1), 0.5, 1.3);
    one.step(p2, device_vec<double>(g0), 0.01 * (s + 1), 0.5, 1.3);
  }
  EXPECT_EQ(to_host(p1), to_host(p2));
  EXPECT_EQ(to_host(plain.second_moment()), to_host(one.second_moment()));

  ParameterGroup a{0, 4, 1.0, 3, 0, 2}, b{4, 6, 0.25, 3, 2, 1};
  EXPECT_EQ(a.updates_before(7), 5);  // steps 0, 1, 3, 4, 6
  EXPECT_EQ(b.updates_before(7), 2);  // steps 2, 5
  GroupedAdam<double> two(6, cfg, {a, b});
  Vector<double> p = device_vec<double>({0.1, 0.2, 0.3, 0.4, 0.5, 0.6});
  Adam<double> ra(4, cfg), rb(2, cfg);
  Vector<double> pa = device_vec<double>({0.1, 0.2, 0.3, 0.4}), pb = device_vec<double>({0.5, 0.6});
  for (int s = 0; s < 7; ++s) {
    std::vector<double> g = g0;
    for (double& x : g) x *= 1.0 + 0.1 * s;
    two.step(p, device_vec<double>(g), 0.02, 1.0, 0.0);
    if (a.updates_at(s)) ra.update(pa, device_vec<double>({g[0], g[1], g[2], g[3]}), 0.02);
    if (b.updates_at(s)) rb.update(pb, device_vec<double>({g[4], g[5]}), 0.02 * 0.25);
    const auto got = to_host(p), wa = to_host(pa), wb = to_host(pb);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], wa[i]) << "step " << s << " a" << i;
    for (int i = 0; i < 2; ++i) EXPECT_EQ(got[4 + i], wb[i]) << "step " << s << " b" << i;
  }
  EXPECT_EQ(ra.steps(), 5);
  EXPECT_EQ(rb.steps(), 2);
  // Resumed at step 7 (moments restored, counts from the run's): the next steps agree.
  GroupedAdam<double> resumed(6, cfg, {a, b});
  Kokkos::deep_copy(resumed.first_moment(), two.first_moment());
  Kokkos::deep_copy(resumed.second_moment(), two.second_moment());
  resumed.set_steps(7);
  Vector<double> q("q", 6);
  Kokkos::deep_copy(q, p);
  for (int s = 7; s < 10; ++s) {
    two.step(p, device_vec<double>(g0), 0.02, 1.0, 0.0);
    resumed.step(q, device_vec<double>(g0), 0.02, 1.0, 0.0);
  }
  EXPECT_EQ(to_host(p), to_host(q));
  EXPECT_THROW(GroupedAdam<double>(6, cfg, {ParameterGroup{0, 4}}), std::logic_error);  // does not cover
}

TEST(Optimizer, CosineScheduleAndWarmup) {
  LrSchedule s;
  s.kind = LrSchedule::cosine;
  s.lr = 3e-3;
  s.total_steps = 100;
  EXPECT_DOUBLE_EQ(s.at(0), 3e-3);
  EXPECT_NEAR(s.at(50), 1.5e-3, 1e-15);
  EXPECT_NEAR(s.at(100), 0.0, 1e-18);
  EXPECT_NEAR(s.at(25), 3e-3 * 0.5 * (1 + std::cos(kPi * 0.25)), 1e-15);
  s.final_fraction = 0.1;
  EXPECT_NEAR(s.at(100), 3e-4, 1e-15);
  s.warmup_steps = 10;
  EXPECT_NEAR(s.at(0), s.lr * 0.1 * (0.1 + 0.9 * 0.5 * (1 + std::cos(0.0))), 1e-15);
  LrSchedule c;
  c.kind = LrSchedule::constant;
  c.lr = 0.2;
  c.total_steps = 10;
  EXPECT_DOUBLE_EQ(c.at(7), 0.2);
}

TEST(Parameters, InitialisationIsAPureFunctionOfSeedAndIndex) {
  ParameterLayout a, b;
  MlpSpec spec;
  spec.widths = {3, 8, 2};
  Mlp<double> na("n", spec, a);
  Mlp<float> nb("n", spec, b);
  EXPECT_EQ(a.signature(), b.signature());
  Vector<double> pa("pa", a.size());
  Vector<float> pb("pb", b.size());
  initialize_parameters(a, pa, 77u);
  initialize_parameters(b, pb, 77u);
  const auto ha = to_host(pa), hb = to_host(pb);
  for (std::size_t i = 0; i < ha.size(); ++i) EXPECT_EQ(static_cast<float>(ha[i]), static_cast<float>(hb[i]));
  // LeCun-normal weights: sample standard deviation near 1/sqrt(fan_in).
  const auto& w = a.slice("n.W0");
  double s2 = 0;
  for (std::size_t i = 0; i < w.size; ++i) s2 += ha[w.offset + i] * ha[w.offset + i];
  EXPECT_GT(s2 / w.size, 0.1 / 3);
  EXPECT_LT(s2 / w.size, 3.0 / 3);
  EXPECT_EQ(a.slice("n.W0").offset % ParameterLayout::kAlign, 0u);
  EXPECT_EQ(a.slice("n.b1").offset % ParameterLayout::kAlign, 0u);
}

// The flows' network rows of (x, t): the value row, then unit tangents along x's axes and, with
// k = d + 1, along t; each row as written out here.
TEST(Derivatives, AxisTangentRowsAreTheValueRowThenUnitTangents) {
  const int n = 3, d = 2;
  const std::vector<double> xs{0.5, -1.0, 2.0, 0.25, -3.0, 1.5}, ts{0.1, 0.6, 0.9};
  Matrix<double> x("x", n, d), rows("rows", n * (d + 2), d + 1);
  Vector<double> t("t", n);
  auto hx = Kokkos::create_mirror_view(x);
  auto ht = Kokkos::create_mirror_view(t);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) hx(i, j) = xs[i * d + j];
    ht(i) = ts[i];
  }
  Kokkos::deep_copy(x, hx);
  Kokkos::deep_copy(t, ht);
  for (int k : {0, d, d + 1}) {
    Kokkos::deep_copy(rows, -7.0);
    axis_tangent_rows<double>(n, d, Rows<const double>(x.data(), n, d), Span<const double>(t.data(), n), k,
                              Rows<double>(rows.data(), n * (1 + k), d + 1));
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
    for (int i = 0; i < n; ++i) {
      const int r0 = i * (1 + k);
      for (int j = 0; j < d; ++j) EXPECT_EQ(h(r0, j), xs[i * d + j]);
      EXPECT_EQ(h(r0, d), ts[i]);
      for (int tau = 1; tau <= k; ++tau)
        for (int j = 0; j <= d; ++j) EXPECT_EQ(h(r0 + tau, j), j == tau - 1 ? 1.0 : 0.0) << k << " " << i << " " << tau;
    }
  }
}
