// Gaussian mixture target (Máté & Fleuret Table 1; Souveton et al. Sec. 5):
//   p(x) = Σ_k w_k N(x; μ_k, s_k² I),  Σ_k w_k = 1, so log Z = 0.
//   energy(x) = -log Σ_k exp(ℓ_k(x)),  ℓ_k = log w_k - (D/2) log(2π s_k²) - |x - μ_k|² / (2 s_k²)
//   ∇energy(x) = Σ_k r_k(x) (x - μ_k) / s_k²,   r_k = exp(ℓ_k - logsumexp ℓ)
// Presets: gmm4 (Máté Eq. 2), gmm2asym (Máté Eq. 11), gmm9 (Souveton Fig. 2).
#pragma once

#include "physics/distribution.hpp"

namespace bf {

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
      const T l = T(log_norm(k)) - T(0.5) * T(inv_var(k)) * d2;
      if (k == 0) {
        m = l;
        s = T(1);
      } else if (l > m) {
        s = s * kmath::exp(m - l) + T(1);
        m = l;
      } else {
        s += kmath::exp(l - m);
      }
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
      const T l = T(log_norm(k)) - T(0.5) * T(inv_var(k)) * d2;
      T scale_old = T(1), c = T(1);
      if (k == 0) {
        m = l;
      } else if (l > m) {
        scale_old = kmath::exp(m - l);
        m = l;
      } else {
        c = kmath::exp(l - m);
      }
      s = s * scale_old + c;
      const T ci = c * T(inv_var(k));
      for (int j = 0; j < dim; ++j) g[j] = g[j] * scale_old + ci * (x[j] - T(mean(k, j)));
    }
    const T inv_s = T(1) / s;
    for (int j = 0; j < dim; ++j) g[j] *= inv_s;
    return -(m + kmath::log(s));
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

  const std::vector<double>& weights() const { return weights_; }
  const std::vector<double>& widths() const { return widths_; }

 private:
  std::string name_;
  std::vector<double> weights_, widths_;
};

}  // namespace bf
