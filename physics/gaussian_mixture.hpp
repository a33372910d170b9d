// Gaussian mixture target (Máté & Fleuret Table 1; Souveton et al. Sec. 5):
//   p(x) = Σ_k w_k N(x; μ_k, s_k² I),  Σ_k w_k = 1, so log Z = 0.
//   energy(x) = -log Σ_k exp(ℓ_k(x)),  ℓ_k = log w_k - (D/2) log(2π s_k²) - |x - μ_k|² / (2 s_k²)
//   ∇energy(x) = Σ_k r_k(x) (x - μ_k) / s_k²,   r_k = exp(ℓ_k - logsumexp ℓ)
// Presets: gmm4 (Máté Eq. 2), gmm2asym (Máté Eq. 11), gmm9 (Souveton Fig. 2).
#pragma once

#include "physics/distribution.hpp"

namespace bf {

/// One term of a streaming log-sum-exp over l_0, l_1, …: the running maximum m and the sums
/// kept relative to it are rescaled by the returned factor, and e = exp(l − m) is the new term's
/// weight (k = 0 starts the sums: factor 1, e = 1).
template <class T>
KOKKOS_INLINE_FUNCTION T lse_fold(int k, T l, T& m, T& e) {
  e = T(1);
  if (k == 0) {
    m = l;
    return T(1);
  }
  if (l > m) {
    const T scale = kmath::exp(m - l);
    m = l;
    return scale;
  }
  e = kmath::exp(l - m);
  return T(1);
}

struct GaussianMixtureKernel {
  int dim = 0;
  int n_comp = 0;
  Matrix<double> mean;      // [K x D]
  Vector<double> log_norm;  // log w_k - (D/2) log(2π s_k²)
  Vector<double> inv_var;   // 1 / s_k²
  Vector<double> width;     // s_k
  Vector<double> cum_weight;

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* x) const {
    // Streaming log-sum-exp over components.
    T m = T(0), s = T(0);
    for (int k = 0; k < n_comp; ++k) {
      T d2 = T(0);
      for (int j = 0; j < dim; ++j) {
        const T t = x[j] - T(mean(k, j));
        d2 += t * t;
      }
      T e;
      const T scale = lse_fold(k, T(log_norm(k)) - T(0.5) * T(inv_var(k)) * d2, m, e);
      s = s * scale + e;
    }
    return -(m + kmath::log(s));
  }

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* x, T* g) const {
    // Streaming log-sum-exp; g accumulates Σ_k exp(ℓ_k - m) (x - μ_k)/s_k².
    T m = T(0), s = T(0);
    for (int j = 0; j < dim; ++j) g[j] = T(0);
    for (int k = 0; k < n_comp; ++k) {
      T d2 = T(0);
      for (int j = 0; j < dim; ++j) {
        const T t = x[j] - T(mean(k, j));
        d2 += t * t;
      }
      T c;
      const T scale_old = lse_fold(k, T(log_norm(k)) - T(0.5) * T(inv_var(k)) * d2, m, c);
      s = s * scale_old + c;
      const T ci = c * T(inv_var(k));
      for (int j = 0; j < dim; ++j) g[j] = g[j] * scale_old + ci * (x[j] - T(mean(k, j)));
    }
    const T inv_s = T(1) / s;
    for (int j = 0; j < dim; ++j) g[j] *= inv_s;
    return -(m + kmath::log(s));
  }

  /// The velocity of the path x_t = α x₀ + β ε (x₀ from this mixture, ε ~ N(0, I) independent;
  /// Holderrieth et al.'s Hamiltonian generative flows): V*(x) = E[α̇ x₀ + β̇ ε | x_t = x] into v,
  /// returning ∇·V*(x). Per component k, with a_k = α² s_k² + β² and d_k = x − α μ_k,
  ///   E_k[x₀|x] = μ_k + α s_k² d_k / a_k,  E_k[ε|x] = β d_k / a_k,
  ///   m_k = α̇ E_k[x₀|x] + β̇ E_k[ε|x] = α̇ μ_k + c_k d_k,  c_k = (α̇ α s_k² + β̇ β) / a_k,
  ///   r_k ∝ w_k N(x; α μ_k, a_k I),  V* = Σ_k r_k m_k,
  /// and, with g_k = ∇ log N(x; α μ_k, a_k I) = −d_k / a_k and ∇r_k = r_k (g_k − Σ_j r_j g_j),
  ///   ∇·V* = D Σ_k r_k c_k + Σ_k r_k m_k·g_k − V*·Σ_k r_k g_k.
  /// (Derived here from the Gaussian conditionals; the poster states only V* = E[v_t | x_t].)
  template <class T>
  KOKKOS_INLINE_FUNCTION T path_velocity(const T* x, T al, T be, T dal, T dbe, T* v) const {
    // Pass 1, streaming log-sum-exp: v ← Σ e_k m_k, A = Σ e_k c_k, B = Σ e_k m_k·g_k.
    T m = T(0), s = T(0), A = T(0), B = T(0);
    for (int j = 0; j < dim; ++j) v[j] = T(0);
    for (int k = 0; k < n_comp; ++k) {
      const T w2 = T(width(k)) * T(width(k)), a = al * al * w2 + be * be, c = (dal * al * w2 + dbe * be) / a;
      T d2 = T(0), mg = T(0);
      for (int j = 0; j < dim; ++j) {
        const T d = x[j] - al * T(mean(k, j));
        d2 += d * d;
        mg -= (dal * T(mean(k, j)) + c * d) * d / a;
      }
      const T l = T(log_norm(k)) + T(0.5) * T(dim) * kmath::log(w2 / a) - T(0.5) * d2 / a;  // log w_k N(x; α μ_k, a_k)
      T e;
      const T scale_old = lse_fold(k, l, m, e);
      s = s * scale_old + e;
      A = A * scale_old + e * c;
      B = B * scale_old + e * mg;
      for (int j = 0; j < dim; ++j) v[j] = v[j] * scale_old + e * (dal * T(mean(k, j)) + c * (x[j] - al * T(mean(k, j))));
    }
    const T inv_s = T(1) / s;
    for (int j = 0; j < dim; ++j) v[j] *= inv_s;
    // Pass 2: C = Σ_k r_k g_k·V* with the final normaliser.
    T C = T(0);
    for (int k = 0; k < n_comp; ++k) {
      const T w2 = T(width(k)) * T(width(k)), a = al * al * w2 + be * be;
      T d2 = T(0), gv = T(0);
      for (int j = 0; j < dim; ++j) {
        const T d = x[j] - al * T(mean(k, j));
        d2 += d * d;
        gv -= d * v[j] / a;
      }
      const T l = T(log_norm(k)) + T(0.5) * T(dim) * kmath::log(w2 / a) - T(0.5) * d2 / a;
      C += kmath::exp(l - m) * inv_s * gv;
    }
    return T(dim) * A * inv_s + B * inv_s - C;
  }

  /// Exact sample: component by inverse CDF of the weights, then Gaussian noise.
  KOKKOS_INLINE_FUNCTION void sample(const RngStream& rng, double* x) const {
    const double u = rng.uniform(0, 0);
    int k = 0;
    while (k < n_comp - 1 && u > cum_weight(k)) ++k;
    for (int j = 0; j < dim; ++j) x[j] = mean(k, j) + width(k) * rng.normal(2u + static_cast<std::uint32_t>(j));
  }
};

class GaussianMixture : public SampleableKernelDistribution<GaussianMixtureKernel> {
 public:
  /// means: [K][D]; widths: K standard deviations; weights normalised here.
  GaussianMixture(std::string name, std::vector<double> weights, std::vector<std::vector<double>> means,
                  std::vector<double> widths);

  static std::unique_ptr<GaussianMixture> preset(const std::string& name);
  static const std::vector<std::string>& preset_names();

  std::string name() const override { return name_; }
  std::string description() const override;
  int dim() const override { return kernel_.dim; }
  double log_z() const override { return 0.0; }

  /// The path velocity V*(x) and ∇·V* at the rows of x, row i with its own
  /// coefficients coef(i, :) = (α, β, α̇, β̇) (GaussianMixtureKernel::path_velocity).
  template <class T, class C, class X, class Out, class Div>
  void path_velocity(const C& coef, const X& x, const Out& v, const Div& div) const {
    const GaussianMixtureKernel k = kernel_;
    Kokkos::parallel_for(
        "bf::gmm_path_velocity", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
          div(i) = k.template path_velocity<T>(row(x, i), static_cast<T>(coef(i, 0)), static_cast<T>(coef(i, 1)),
                                               static_cast<T>(coef(i, 2)), static_cast<T>(coef(i, 3)), row(v, i));
        });
  }

  const std::vector<double>& weights() const { return weights_; }
  const std::vector<double>& widths() const { return widths_; }

 private:
  std::string name_;
  std::vector<double> weights_, widths_;
};

}  // namespace bf
