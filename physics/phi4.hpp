// φ⁴ theory on a periodic lattice (Máté & Fleuret Eq. 19), in the general form
//   S(φ) = Σ_i [ κ Σ_μ (φ_i − φ_{i+μ})² + μ₂ φ_i² + λ₄ (φ_i − α)⁴ ]
//   ∂S/∂φ_i = 2κ Σ_μ (2φ_i − φ_{i+μ} − φ_{i−μ}) + 2μ₂ φ_i + 4λ₄ (φ_i − α)³
// over the d directions μ of the lattice (d = 1: Máté's ring).
// Presets:
//   phi4     Máté Eq. 19: κ = 1, μ₂ = −m, λ₄ = λ (= 1/16), α (= 0.01), N = 16
//   phi4-dw  the authors' code: a Euclidean double well on a periodic time
//            lattice, S = dT Σ [λ/4 x⁴ − m/2 x² + (m/2)(x_i − x_{i−1})²/dT²],
//            T = 4, dT = T/N, λ = 1, so κ = m/(2dT), μ₂ = −dT m/2, λ₄ = dT λ/4, α = 0
//   phi4-general  κ, μ₂, λ₄, α given directly.
// Modes: the constant fields (a,…,a), (b,…,b) with a < b the local minima of
// u(x) = μ₂ x² + λ₄ (x − α)⁴ (the kinetic term vanishes on constant fields).
// A sample belongs to the mode on its side of the barrier (the local maximum
// of u) in the mean field φ̄; mode weights are approximated by Máté Eq. 21,
// the density of φ̄ ∝ exp(−V u(φ̄)) with V the number of sites.
#pragma once

#include "physics/distribution.hpp"

namespace bf {

struct Phi4Kernel {
  static constexpr int max_dims = 4;
  int ndims = 1;
  int extent[max_dims] = {1, 1, 1, 1};
  std::int64_t stride[max_dims] = {1, 1, 1, 1};
  std::int64_t volume = 1;
  double kappa = 1, mu2 = 0, lambda4 = 0, alpha = 0;

  /// Index of the forward neighbour of site i in direction d (periodic).
  KOKKOS_INLINE_FUNCTION std::int64_t forward(std::int64_t i, int d) const {
    const std::int64_t c = (i / stride[d]) % extent[d];
    return c + 1 < extent[d] ? i + stride[d] : i - (extent[d] - 1) * stride[d];
  }
  KOKKOS_INLINE_FUNCTION std::int64_t backward(std::int64_t i, int d) const {
    const std::int64_t c = (i / stride[d]) % extent[d];
    return c > 0 ? i - stride[d] : i + (extent[d] - 1) * stride[d];
  }

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy(const T* phi) const {
    T s = T(0);
    for (std::int64_t i = 0; i < volume; ++i) {
      const T p = phi[i];
      for (int d = 0; d < ndims; ++d) {
        const T dp = p - phi[forward(i, d)];
        s += T(kappa) * dp * dp;
      }
      const T y = p - T(alpha);
      const T y2 = y * y;
      s += T(mu2) * p * p + T(lambda4) * y2 * y2;
    }
    return s;
  }

  template <class T>
  KOKKOS_INLINE_FUNCTION T energy_grad(const T* phi, T* g) const {
    T s = T(0);
    for (std::int64_t i = 0; i < volume; ++i) {
      const T p = phi[i];
      T lap = T(0);
      for (int d = 0; d < ndims; ++d) {
        const T pf = phi[forward(i, d)];
        const T dp = p - pf;
        s += T(kappa) * dp * dp;
        lap += T(2) * p - pf - phi[backward(i, d)];
      }
      const T y = p - T(alpha);
      const T y2 = y * y;
      s += T(mu2) * p * p + T(lambda4) * y2 * y2;
      g[i] = T(2) * T(kappa) * lap + T(2) * T(mu2) * p + T(4) * T(lambda4) * y2 * y;
    }
    return s;
  }
};

/// The default values are the phi4 preset (Máté Eq. 19 on the 16-site ring);
/// phi4_preset gives the others'.
struct Phi4Params {
  std::string preset = "phi4";     // phi4 | phi4-dw | phi4-general
  std::vector<int> shape{16};      // lattice extents
  double m = 0.5;                  // phi4, phi4-dw
  double lambda = 1.0 / 16.0;      // phi4, phi4-dw
  double alpha = 0.01;             // phi4, phi4-general
  double time_extent = 4.0;        // phi4-dw: T
  double kappa = 1.0, mu2 = -0.5, lambda4 = 1.0 / 16.0;  // phi4-general
};

/// A preset's parameters, the one place they are written: phi4 as above,
/// phi4-dw m = 3, λ = 1 (the authors' double well), phi4-general α = 0.
/// Throws std::invalid_argument for an unknown name.
Phi4Params phi4_preset(const std::string& name);

class Phi4 : public KernelDistribution<Phi4Kernel> {
 public:
  explicit Phi4(const Phi4Params& p);

  std::string name() const override { return params_.preset; }
  std::string description() const override;
  int dim() const override { return static_cast<int>(kernel_.volume); }
  void assign_modes(const ConstMatrix<double>& x, const Vector<int>& mode) const override;
  /// The mean field φ̄ = (1/V) Σ φ_i and its magnitude |φ̄|.
  std::vector<std::string> observable_names() const override { return {"mean_field", "abs_mean_field"}; }
  void observables(const ConstMatrix<double>& x, const Matrix<double>& o) const override;
  /// Lattice figures: ⟨φ̄⟩, ⟨|φ̄|⟩, the susceptibility χ₂ = Σ_x G_c(x) = V(⟨φ̄²⟩ − ⟨φ̄⟩²),
  /// V(⟨φ̄²⟩ − ⟨|φ̄|⟩²), the action density ⟨S⟩/V, and the connected two-point
  /// function along the first axis, G(t) = ⟨(1/V) Σ_y φ_y φ_{y + t ê₀}⟩ − ⟨φ̄⟩², t = 0 .. L₀/2 (G(L₀ − t) = G(t)).
  Estimators estimators() const override;
  void estimator_primaries(const ConstMatrix<double>& x, const Matrix<double>& a) const override;
  /// φ̄ in 60 bins over 1.6 times the wells' span centred on the barrier, against Eq. 21's constant-field
  /// density ∝ exp(−V u(φ̄)) (V sites; u the single-site potential).
  HistogramSpec histogram() const override { return histogram_; }

  const Phi4Params& params() const { return params_; }
  double kappa() const { return kernel_.kappa; }
  double mu2() const { return kernel_.mu2; }
  double lambda4() const { return kernel_.lambda4; }
  double alpha() const { return kernel_.alpha; }
  /// The local minima of u (one or two) and the barrier between them (NaN if one).
  const std::vector<double>& well_minima() const { return minima_; }
  double barrier() const { return barrier_; }

 private:
  Phi4Params params_;
  std::vector<double> minima_;
  double barrier_;
  HistogramSpec histogram_;  // computed once with the modes
};

}  // namespace bf
