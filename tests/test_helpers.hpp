// Small helpers shared by the tests.
#pragma once

#include <cmath>
#include <functional>
#include <utility>
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

/// Host values (row-major for a matrix) in a new device vector or matrix of T.
template <class T>
Vector<T> device_vec(const std::vector<double>& v) {
  Vector<T> d("test_vector", v.size());
  auto h = Kokkos::create_mirror_view(d);
  for (std::size_t i = 0; i < v.size(); ++i) h(i) = static_cast<T>(v[i]);
  Kokkos::deep_copy(d, h);
  return d;
}
template <class T>
Matrix<T> device_mat(const std::vector<double>& v, int rows, int cols) {
  Matrix<T> d("test_matrix", rows, cols);
  auto h = Kokkos::create_mirror_view(d);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) h(i, j) = static_cast<T>(v[static_cast<std::size_t>(i) * cols + j]);
  Kokkos::deep_copy(d, h);
  return d;
}

/// A device vector's or matrix's values on the host, as doubles (row-major; always a real copy).
template <class V>
std::vector<double> to_host(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  if constexpr (V::rank == 1) {
    for (std::size_t i = 0; i < v.extent(0); ++i) out.push_back(static_cast<double>(h(i)));
  } else {
    for (std::size_t i = 0; i < v.extent(0); ++i)
      for (std::size_t j = 0; j < v.extent(1); ++j) out.push_back(static_cast<double>(h(i, j)));
  }
  return out;
}

/// Central difference of s -> f(s) at 0, Richardson-extrapolated over steps h and h/2
/// (truncation error O(h⁴)).
inline double central_difference(const std::function<double(double)>& f, double h) {
  auto c = [&](double s) { return (f(s) - f(-s)) / (2 * s); };
  return (4 * c(h / 2) - c(h)) / 3;
}

/// Directional checks of a gradient g of loss at params: for `trials` random directions u
/// (from rng), the pair (central difference of loss along u with step h, u·g).
template <class Rng>
std::vector<std::pair<double, double>> directional_checks(const std::function<double(const std::vector<double>&)>& loss,
                                                          const std::vector<double>& params,
                                                          const std::vector<double>& g, Rng& rng, int trials = 3,
                                                          double h = 1e-5) {
  std::vector<std::pair<double, double>> out;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<double> u(params.size());
    double dot = 0;
    for (std::size_t i = 0; i < u.size(); ++i) u[i] = rng.normal(), dot += u[i] * g[i];
    const double fd = central_difference(
        [&](double s) {
          std::vector<double> q = params;
          for (std::size_t i = 0; i < q.size(); ++i) q[i] += s * u[i];
          return loss(q);
        },
        h);
    out.emplace_back(fd, dot);
  }
  return out;
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
