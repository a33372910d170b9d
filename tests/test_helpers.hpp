// Small helpers shared by the tests.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "physics/core.hpp"

namespace bf::test {

/// Host rows -> device matrix.
inline Matrix<double> device_matrix(const std::vector<std::vector<double>>& rows) {
  const std::size_t n = rows.size(), d = rows.empty() ? 0 : rows[0].size();
  Matrix<double> m("test_matrix", n, d);
  auto h = Kokkos::create_mirror_view(m);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) h(i, j) = rows[i][j];
  Kokkos::deep_copy(m, h);
  return m;
}

/// Device matrix -> host rows (always a real copy).
template <class T>
std::vector<std::vector<double>> host_rows(const Matrix<T>& m) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m);
  std::vector<std::vector<double>> out(m.extent(0), std::vector<double>(m.extent(1)));
  for (std::size_t i = 0; i < m.extent(0); ++i)
    for (std::size_t j = 0; j < m.extent(1); ++j) out[i][j] = static_cast<double>(h(i, j));
  return out;
}

template <class T>
std::vector<double> host_vector(const Vector<T>& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out(v.extent(0));
  for (std::size_t i = 0; i < v.extent(0); ++i) out[i] = static_cast<double>(h(i));
  return out;
}

/// A device vector's values on the host; host values in a new device vector.
inline std::vector<double> host_values(const Vector<double>& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}
inline Vector<double> device_values(const std::vector<double>& v) {
  Vector<double> d("device_values", v.size());
  auto h = Kokkos::create_mirror_view(d);
  for (std::size_t i = 0; i < v.size(); ++i) h(i) = v[i];
  Kokkos::deep_copy(d, h);
  return d;
}

/// Central difference of s -> f(s) at 0, Richardson-extrapolated over steps h and h/2
/// (truncation error O(h⁴)).
inline double central_difference(const std::function<double(double)>& f, double h) {
  auto c = [&](double s) { return (f(s) - f(-s)) / (2 * s); };
  return (4 * c(h / 2) - c(h)) / 3;
}

/// Deterministic pseudo-random numbers for test inputs (splitmix64 -> normal).
struct TestRng {
  std::uint64_t s;
  explicit TestRng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) / 9007199254740992.0; }
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }
};

}  // namespace bf::test
