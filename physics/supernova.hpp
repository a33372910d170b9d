// Type Ia supernova cosmology posterior (Souveton et al. Sec. 6.2; JLA data).
//
// Flat ΛCDM with the Pen (1999) luminosity-distance fit, JLA binned data:
//   s³ = (1 − Ω_m)/Ω_m,  η(a) = 2 √(s³+1) [a⁻⁴ − 0.1540 s a⁻³ + 0.4304 s² a⁻² + 0.19097 s³ a⁻¹ + 0.066941 s⁴]^(−1/8)
//   D_L(z) = 3000 (1+z) [η(1) − η(1/(1+z))],  μ(z) = 25 − 5 log10 h + 5 log10 D_L
//   log ℓ = −½ rᵀ C⁻¹ r − ½ log det(2π C),   r = μ(z) − μ_data
// The Gaussian normaliser is kept, so log Z below is the Bayesian evidence.
//
// Parameters live in q ∈ R² with (Ω_m, h) = sigmoid(q); the prior is uniform
// on (0,1)² in (Ω_m, h), the logistic density in q. The energy is
//   f(q) = −log ℓ(σ(q)) − Σ_i log σ(q_i)(1 − σ(q_i)),
// and ∫ e^{−f} dq = ∫ ℓ dΩ_m dh = Z. With q = (q₀, q₁): s³ = e^{−q₀} exactly,
// which keeps the energy and its gradient free of cancellation near Ω_m → 1.
// Exact posterior moments come from midpoint quadrature on (0,1)²; the h
// integral is cheap because μ depends on h only through a constant shift.
#pragma once

#include "physics/distribution.hpp"

namespace bf {

/// Pen (1999) η and its derivative with respect to q₀ = logit Ω_m, for a
/// given scale factor a. Usable on host and device.
template <class T>
KOKKOS_INLINE_FUNCTION T pen_eta(T a, T q0, T* deta_dq0) {
  const T s = kmath::exp(-q0 / T(3));  // s³ = (1 − Ω)/Ω = e^{−q₀}
  const T ia = T(1) / a;
  const T ia2 = ia * ia, ia3 = ia2 * ia, ia4 = ia2 * ia2;
  const T s2 = s * s, s3 = s2 * s, s4 = s2 * s2;
  const T P = ia4 - T(0.1540) * s * ia3 + T(0.4304) * s2 * ia2 + T(0.19097) * s3 * ia + T(0.066941) * s4;
  const T dP_ds = -T(0.1540) * ia3 + T(2 * 0.4304) * s * ia2 + T(3 * 0.19097) * s2 * ia + T(4 * 0.066941) * s3;
  // √(s³ + 1) = exp(½ softplus(−q₀)) = Ω^{−1/2}
  const T eta = T(2) * kmath::exp(T(0.5) * softplus(-q0)) * kmath::pow(P, T(-0.125));
  if (deta_dq0) {
    const T one_minus_omega = sigmoid(-q0);
    // d/dq₀ log η = −½(1 − Ω) − (1/8) P'(s) (ds/dq₀) / P,  ds/dq₀ = −s/3
    *deta_dq0 = eta * (-T(0.5) * one_minus_omega + T(0.125) * dP_ds * s / (T(3) * P));
  }
  return eta;
}

struct SupernovaKernel {
  static constexpr int max_bins = 64;
  int n_bins = 0;
  Vector<double> z, mu_data;
  Matrix<double> cinv;
  double log_norm = 0;  // −½ log det(2π C)

  /// Residuals r_k and (optionally) dμ_k/dq₀ at q₀; returns nothing, fills arrays.
  template <class T>
  KOKKOS_INLINE_FUNCTION void residuals(T q0, T q1, T* r, T* dmu_dq0) const {
    T deta1 = T(0);
    const T eta1 = pen_eta<T>(T(1), q0, dmu_dq0 ? &deta1 : nullptr);
    const T log10_h = log_sigmoid(q1) / T(kLn10);
    for (int k = 0; k < n_bins; ++k) {
      const T zk = T(z(k));
      T detak = T(0);
      const T etak = pen_eta<T>(T(1) / (T(1) + zk), q0, dmu_dq0 ? &detak : nullptr);
      const T dl = T(3000) * (T(1) + zk) * (eta1 - etak);
      r[k] = T(25) - T(5) * log10_h + T(5) * kmath::log10(dl) - T(mu_data(k));
      if (dmu_dq0) dmu_dq0[k] = T(5) / T(kLn10) * (deta1 - detak) / (eta1 - etak);
    }
  }

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* q) const {
    T r[max_bins];
    residuals<T>(q[0], q[1], r, nullptr);
    T chi2 = T(0);
    for (int k = 0; k < n_bins; ++k) {
      T cr = T(0);
      for (int l = 0; l < n_bins; ++l) cr += T(cinv(k, l)) * r[l];
      chi2 += r[k] * cr;
    }
    const T log_prior = log_sigmoid(q[0]) + log_sigmoid(-q[0]) + log_sigmoid(q[1]) + log_sigmoid(-q[1]);
    return T(0.5) * chi2 - T(log_norm) - log_prior;
  }

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* q, T* g) const {
    T r[max_bins], dmu[max_bins];
    residuals<T>(q[0], q[1], r, dmu);
    T chi2 = T(0), g0 = T(0), g1 = T(0);
    for (int k = 0; k < n_bins; ++k) {
      T cr = T(0);
      for (int l = 0; l < n_bins; ++l) cr += T(cinv(k, l)) * r[l];
      chi2 += r[k] * cr;
      g0 += cr * dmu[k];
      g1 += cr;
    }
    const T om = sigmoid(q[0]), h = sigmoid(q[1]);
    // dμ/dq₁ = −5/ln10 · (1 − h) for every bin; d/dq log σ(q)(1−σ(q)) = 1 − 2σ(q).
    g[0] = g0 - (T(1) - T(2) * om);
    g[1] = -T(5) / T(kLn10) * sigmoid(-q[1]) * g1 - (T(1) - T(2) * h);
    const T log_prior = log_sigmoid(q[0]) + log_sigmoid(-q[0]) + log_sigmoid(q[1]) + log_sigmoid(-q[1]);
    return T(0.5) * chi2 - T(log_norm) - log_prior;
  }
};

/// Posterior summaries from quadrature.
struct SupernovaMoments {
  int grid = 0;
  double log_z = 0;                 // log evidence, ∫ ℓ dΩ_m dh
  double mean_omega = 0, mean_h = 0;
  double sd_omega = 0, sd_h = 0, corr = 0;
  double mean_q0 = 0, mean_q1 = 0;  // posterior means of logit Ω_m, logit h
};

class Supernova : public KernelDistribution<SupernovaKernel> {
 public:
  /// grid: points per axis of the quadrature that gives the exact moments.
  explicit Supernova(int grid = 2000);

  std::string name() const override { return "supernova"; }
  std::string description() const override;
  int dim() const override { return 2; }
  double log_z() const override { return moments_.log_z; }

  std::vector<std::string> observable_names() const override { return {"Omega_m", "h"}; }
  void observables(const ConstMatrix<double>& x, const Matrix<double>& o) const override;
  std::vector<double> observable_means() const override { return {moments_.mean_omega, moments_.mean_h}; }
  std::vector<double> observable_sds() const override { return {moments_.sd_omega, moments_.sd_h}; }

  /// Quadrature moments on an n x n midpoint grid of (0,1)².
  SupernovaMoments quadrature(int n) const;
  const SupernovaMoments& moments() const { return moments_; }

  /// Host evaluation of −½ rᵀ C⁻¹ r at (Ω_m, h) (the data term without normaliser).
  double half_chi2(double omega_m, double h) const;
  double log_likelihood_norm() const { return kernel_.log_norm; }

 private:
  std::vector<double> cinv_host_;
  SupernovaMoments moments_;
};

}  // namespace bf
