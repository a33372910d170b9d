// Concentric rings in the plane (Rezende et al. 2019's SO(2)-invariant test density):
//   p(x) ∝ Σ_k a_k exp(−(|x| − R_k)² / 2 s_k²),   a_k = w_k Z₁ / Z_k,
// so component k holds mass w_k (Σ w_k = 1) and ∫ exp(−energy) = Z₁, the first
// ring's normaliser. One ring (K = 1) is exp(−(|x| − R)²/2s²) with log Z = log Z₁:
//   Z_k = 2π F_k(∞),  F_k(r) = ∫₀^r t exp(−(t − R_k)²/2s_k²) dt
//       = s_k² [e^{−R_k²/2s_k²} − e^{−(r−R_k)²/2s_k²}] + R_k s_k √(π/2) [erf((r − R_k)/(s_k√2)) + erf(R_k/(s_k√2))]
// (R = 2, s = 0.5: Z = 15.7496; R = 3, s = 0.3: Z = 14.1746).
// Exact samples: a component by its weight, the angle uniform, the radius by
// inverting F_k (bisection in double). The density is invariant under every
// rotation about the origin, so its angle is uniform: the observables are the
// radius, the angle and cos kθ, sin kθ (k = 1..4, exact means 0), and the
// histogram is the angle's over 16 bins against the uniform. Modes (for
// Hausdorff and coverage): 8 points per ring at angles 2πj/8.
#pragma once

#include "physics/distribution.hpp"
#include "physics/gaussian_mixture.hpp"  // lse_fold

namespace bf {

struct RingKernel {
  int n_comp = 0;
  Vector<double> radius, inv_var, width, log_coef, cum_weight, total;  // total: F_k(∞)

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* x) const {
    const T r = kmath::sqrt(x[0] * x[0] + x[1] * x[1]);
    T m = T(0), s = T(0);
    for (int k = 0; k < n_comp; ++k) {
      const T d = r - T(radius(k));
      T e;
      const T scale = lse_fold(k, T(log_coef(k)) - T(0.5) * T(inv_var(k)) * d * d, m, e);
      s = s * scale + e;
    }
    return -(m + kmath::log(s));
  }

  /// ∇energy = (dE/dr) x/r; at the origin (a cone point of the density) 0.
  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* x, T* g) const {
    const T r = kmath::sqrt(x[0] * x[0] + x[1] * x[1]);
    T m = T(0), s = T(0), dr = T(0);
    for (int k = 0; k < n_comp; ++k) {
      const T d = r - T(radius(k));
      T e;
      const T scale = lse_fold(k, T(log_coef(k)) - T(0.5) * T(inv_var(k)) * d * d, m, e);
      s = s * scale + e;
      dr = dr * scale + e * T(inv_var(k)) * d;
    }
    dr /= s;
    const T f = r > T(0) ? dr / r : T(0);
    g[0] = f * x[0];
    g[1] = f * x[1];
    return -(m + kmath::log(s));
  }

  /// F_k(r), the unnormalised radial distribution function of component k.
  KOKKOS_INLINE_FUNCTION double radial_cdf(int k, double r) const {
    const double R = radius(k), s = width(k), c = 1.0 / (s * 1.4142135623730951);
    return s * s * (kmath::exp(-0.5 * R * R / (s * s)) - kmath::exp(-0.5 * (r - R) * (r - R) / (s * s))) +
           R * s * 1.2533141373155003 * (kmath::erf((r - R) * c) + kmath::erf(R * c));
  }

  KOKKOS_INLINE_FUNCTION void sample(const RngStream& st, double* x) const {
    const double u0 = st.uniform(0, 0), u1 = st.uniform(0, 1), u2 = st.uniform(1, 0);
    int k = 0;
    while (k + 1 < n_comp && u0 > cum_weight(k)) ++k;
    const double target = u2 * total(k);
    double lo = 0.0, hi = radius(k) + 40.0 * width(k);
    for (int it = 0; it < 64; ++it) {
      const double mid = 0.5 * (lo + hi);
      (radial_cdf(k, mid) < target ? lo : hi) = mid;
    }
    const double r = 0.5 * (lo + hi), a = 2.0 * kPi * u1;
    x[0] = r * kmath::cos(a);
    x[1] = r * kmath::sin(a);
  }

};

class RingMixture : public SampleableKernelDistribution<RingKernel> {
 public:
  /// Weights (normalised here), radii R_k ≥ 0 and widths s_k > 0; throws std::invalid_argument.
  RingMixture(std::vector<double> weights, std::vector<double> radii, std::vector<double> widths);

  std::string name() const override { return "ring"; }
  std::string description() const override;
  int dim() const override { return 2; }
  double log_z() const override { return log_z_; }

  std::vector<std::string> observable_names() const override;
  /// The estimators' table: the first two observables (its mean and sd); the angle's harmonics
  /// are reported as the angular moments.
  std::vector<int> estimated_observables() const override { return {0, 1}; }
  void observables(const ConstMatrix<double>& x, const Matrix<double>& o) const override;
  std::vector<double> observable_means() const override { return means_; }
  std::vector<double> observable_sds() const override { return sds_; }
  HistogramSpec histogram() const override;
  int angle_observable() const override { return 1; }

  /// Z_k = 2π F_k(∞) of one ring exp(−(|x| − R)²/2s²), the closed form above.
  static double ring_normaliser(double radius, double width);

 private:
  std::vector<double> w_, r_, s_;
  double log_z_ = 0;
  std::vector<double> means_, sds_;
};

/// The angular observables of a point with angle a into o(i, first ..): a, cos a, sin a, …, cos 4a, sin 4a.
KOKKOS_INLINE_FUNCTION void angular_observables(double a, const Matrix<double>& o, std::int64_t i, int first) {
  o(i, first) = a;
  for (int k = 1; k <= kAngularMoments; ++k) {
    o(i, first + 2 * k - 1) = kmath::cos(k * a);
    o(i, first + 2 * k) = kmath::sin(k * a);
  }
}
/// Their exact means and standard deviations under rotation invariance (θ uniform on (−π, π]),
/// appended to means and sds.
void append_uniform_angle_moments(std::vector<double>& means, std::vector<double>& sds);
/// Their names, from the angle's.
std::vector<std::string> angular_observable_names(const std::string& angle);
/// The uniform angle's histogram: 16 bins over [−π, π) with mass 1/16 each.
Distribution::HistogramSpec uniform_angle_histogram(int observable);

}  // namespace bf
