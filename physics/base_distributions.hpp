// Base distributions of the flows, per coordinate, independent:
//   generalized Gaussian  p0(x) ∝ exp(−|x/σ|^p),  log Z = D log(2σ Γ(1/p)/p)
//                         exact sampling: G ~ Gamma(1/p, 1), x = σ · sign · G^(1/p)
//   Gaussian N(0, s²)     the generalized Gaussian with p = 2, σ = s√2
//   soft-uniform          p0(x) ∝ s(β(x + a)) s(−β(x − a)),  s the logistic sigmoid,
//                         log Z = D log(2a / (1 − e^(−2aβ)))  (6.01491 per coordinate for a = 3, β = 1)
//                         exact sampling by inverting the CDF
//                         F(x) = [log((e^u + c)/(1 + c e^u)) + aβ] / (2aβ),  u = βx, c = e^(−aβ).
#pragma once

#include "physics/distribution.hpp"

namespace bf {

struct GeneralizedGaussianKernel {
  int dim = 0;
  double sigma = 1, p = 2;

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* x) const {
    T s = T(0);
    for (int j = 0; j < dim; ++j) {
      const T t = kmath::fabs(x[j] / T(sigma));
      s += p == 2.0 ? t * t : (p == 4.0 ? (t * t) * (t * t) : kmath::pow(t, T(p)));
    }
    return s;
  }
  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* x, T* g) const {
    T s = T(0);
    const T inv = T(1) / T(sigma);
    for (int j = 0; j < dim; ++j) {
      const T u = x[j] * inv;
      const T t = kmath::fabs(u);
      T tp1;  // |u|^(p-1)
      if (p == 2.0) tp1 = t;
      else if (p == 4.0) tp1 = t * t * t;
      else tp1 = kmath::pow(t, T(p - 1.0));
      s += tp1 * t;
      g[j] = T(p) * inv * tp1 * (u < T(0) ? T(-1) : T(1));
    }
    return s;
  }
  KOKKOS_INLINE_FUNCTION void sample(const RngStream& rng, double* x) const {
    for (int j = 0; j < dim; ++j) {
      const std::uint32_t lane = static_cast<std::uint32_t>(j);
      const double g = rng.gamma(1.0 / p, lane);
      const double sign = rng.uniform(lane * 256u + 255u, 1) < 0.5 ? -1.0 : 1.0;
      x[j] = sigma * sign * kmath::pow(g, 1.0 / p);
    }
  }
};

class GeneralizedGaussian : public SampleableKernelDistribution<GeneralizedGaussianKernel> {
 public:
  /// name: "gengauss" or "gauss" (the latter only changes how it is reported).
  GeneralizedGaussian(int dim, double sigma, double p, std::string name = "gengauss");
  /// N(0, s² I).
  static std::unique_ptr<GeneralizedGaussian> gaussian(int dim, double s);

  std::string name() const override { return name_; }
  std::string description() const override;
  int dim() const override { return kernel_.dim; }
  double log_z() const override;
  double sigma() const { return kernel_.sigma; }
  double power() const { return kernel_.p; }

 private:
  std::string name_;
};

struct SoftUniformKernel {
  int dim = 0;
  double a = 3, beta = 1;

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* x) const {
    T s = T(0);
    for (int j = 0; j < dim; ++j) s += softplus(-T(beta) * (x[j] + T(a))) + softplus(T(beta) * (x[j] - T(a)));
    return s;
  }
  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* x, T* g) const {
    T s = T(0);
    for (int j = 0; j < dim; ++j) {
      const T u = T(beta) * (x[j] + T(a)), v = T(beta) * (x[j] - T(a));
      s += softplus(-u) + softplus(v);
      g[j] = T(beta) * (sigmoid(v) - sigmoid(-u));
    }
    return s;
  }
  KOKKOS_INLINE_FUNCTION void sample(const RngStream& rng, double* x) const {
    const double ab = a * beta;
    for (int j = 0; j < dim; ++j) {
      const double u = rng.uniform(static_cast<std::uint32_t>(j) >> 1, static_cast<int>(j & 1));
      const double L = (2.0 * u - 1.0) * ab;  // log((e^u + c)/(1 + c e^u)) = L
      // x β = log(E − c) − log(1 − cE), E = e^L, c = e^{−aβ}, written without cancellation.
      const double num = L + kmath::log1p(-kmath::exp(-ab - L));
      const double den = kmath::log1p(-kmath::exp(L - ab));
      x[j] = (num - den) / beta;
    }
  }
};

class SoftUniform : public SampleableKernelDistribution<SoftUniformKernel> {
 public:
  SoftUniform(int dim, double a, double beta = 1.0);
  std::string name() const override { return "softuniform"; }
  std::string description() const override;
  int dim() const override { return kernel_.dim; }
  double log_z() const override;
  double half_width() const { return kernel_.a; }
  double beta() const { return kernel_.beta; }
};

}  // namespace bf
