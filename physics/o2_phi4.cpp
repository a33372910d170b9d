#include "physics/o2_phi4.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "physics/rings.hpp"  // the angular observables

namespace bf {

namespace {
/// The summed field Σ_x φ_x of row i (interleaved components) into m0, m1.
KOKKOS_INLINE_FUNCTION void field_sum(const ConstMatrix<double>& x, std::int64_t i, std::int64_t v, double& m0,
                                      double& m1) {
  m0 = 0;
  m1 = 0;
  for (std::int64_t s = 0; s < v; ++s) {
    m0 += x(i, 2 * s);
    m1 += x(i, 2 * s + 1);
  }
}
}  // namespace

O2Phi4::O2Phi4(const std::vector<int>& shape, double m, double lambda) : shape_(shape), m_(m), lambda_(lambda) {
  Phi4Kernel& L = kernel_.lattice;
  if (shape.empty() || static_cast<int>(shape.size()) > Phi4Kernel::max_dims)
    throw std::invalid_argument("o2-phi4: lattice must have 1 to 4 dimensions");
  L.ndims = static_cast<int>(shape.size());
  std::int64_t vol = 1;
  for (int d = L.ndims - 1; d >= 0; --d) {
    if (shape[d] < 2) throw std::invalid_argument("o2-phi4: every lattice extent must be at least 2");
    L.extent[d] = shape[d];
    L.stride[d] = vol;
    vol *= shape[d];
  }
  L.volume = vol;
  if (!(lambda > 0) || !std::isfinite(lambda) || !std::isfinite(m))
    throw std::invalid_argument("o2-phi4: lambda must be positive and m finite (otherwise not normalisable)");
  L.kappa = 1.0;
  L.mu2 = -m;
  L.lambda4 = lambda;
  L.alpha = 0.0;
  radius_ = m > 0 ? std::sqrt(m / (2.0 * lambda)) : 0.0;
  const int nm = m > 0 ? 8 : 1;
  for (int j = 0; j < nm; ++j) {
    std::vector<double> f(static_cast<std::size_t>(2 * vol));
    for (std::int64_t i = 0; i < vol; ++i) {
      f[2 * i] = radius_ * std::cos(2.0 * kPi * j / 8.0);
      f[2 * i + 1] = radius_ * std::sin(2.0 * kPi * j / 8.0);
    }
    modes_.means.push_back(f);
    modes_.weights.push_back(1.0 / nm);
  }
  modes_.weights_exact = true;
  modes_.rule = m > 0 ? "sector (of 8) of the mean field's angle" : "single well";
}

std::string O2Phi4::description() const {
  std::ostringstream os;
  os << "o2-phi4: two-component phi^4 on a periodic ";
  for (std::size_t d = 0; d < shape_.size(); ++d) os << (d ? "x" : "") << shape_[d];
  os << " lattice, S = sum [ |phi_x - phi_x+mu|^2 - m |phi_x|^2 + lambda |phi_x|^4 ], m = " << fmt_num(m_)
     << ", lambda = " << fmt_num(lambda_) << " (O(2) invariant; wells at |phi| = " << fmt_num(radius_) << ")";
  return os.str();
}

void O2Phi4::assign_modes(const ConstMatrix<double>& x, const Vector<int>& mode) const {
  if (modes_.means.size() < 2) {
    Kokkos::deep_copy(mode, 0);
    return;
  }
  const std::int64_t v = kernel_.lattice.volume;
  Kokkos::parallel_for(
      "bf::o2phi4_assign_modes", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        double m0, m1;
        field_sum(x, i, v, m0, m1);
        const double a = kmath::atan2(m1, m0);  // (−π, π]
        int j = static_cast<int>(kmath::floor(a / (kPi / 4.0) + 0.5));
        mode(i) = ((j % 8) + 8) % 8;
      });
}

std::vector<std::string> O2Phi4::observable_names() const {
  std::vector<std::string> n{"abs_mean_field"};
  for (const auto& a : angular_observable_names("mean_field_angle")) n.push_back(a);
  return n;
}

void O2Phi4::observables(const ConstMatrix<double>& x, const Matrix<double>& o) const {
  const std::int64_t v = kernel_.lattice.volume;
  Kokkos::parallel_for(
      "bf::o2phi4_observables", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        double m0, m1;
        field_sum(x, i, v, m0, m1);
        m0 /= static_cast<double>(v);
        m1 /= static_cast<double>(v);
        o(i, 0) = kmath::sqrt(m0 * m0 + m1 * m1);
        angular_observables(kmath::atan2(m1, m0), o, i, 1);
      });
}

std::vector<double> O2Phi4::observable_means() const {
  std::vector<double> m{std::nan("")}, s{std::nan("")};
  append_uniform_angle_moments(m, s);
  return m;
}
std::vector<double> O2Phi4::observable_sds() const {
  std::vector<double> m{std::nan("")}, s{std::nan("")};
  append_uniform_angle_moments(m, s);
  return s;
}

Distribution::HistogramSpec O2Phi4::histogram() const { return uniform_angle_histogram(1); }

}  // namespace bf
