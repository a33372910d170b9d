// Host ↔ device for the flows' diagnostic entry points (integrate, terms,
// potential, …), which take and return points as host row-major doubles:
// rows [r0, r0 + n) of a host array into the first n rows of a device matrix
// of T, and the first n rows back. Only those rows are copied.
#pragma once

#include <cstdint>
#include <vector>

#include "flows/nn/mlp.hpp"

namespace bf {

template <class T>
void rows_to_device(const std::vector<double>& v, std::int64_t r0, std::int64_t n, const Matrix<T>& m) {
  const Rows<T> dst = head_rows(m, n);
  auto h = Kokkos::create_mirror_view(dst);
  const std::int64_t d = static_cast<std::int64_t>(m.extent(1));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) h(i, j) = static_cast<T>(v[static_cast<std::size_t>((r0 + i) * d + j)]);
  Kokkos::deep_copy(dst, h);
}

template <class T, class V>
std::vector<double> rows_to_host(const V& m, std::int64_t n) {
  const auto src = Kokkos::subview(m, std::make_pair(std::int64_t(0), n), Kokkos::ALL());
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), src);
  const std::int64_t d = static_cast<std::int64_t>(m.extent(1));
  std::vector<double> v(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) v[static_cast<std::size_t>(i * d + j)] = static_cast<double>(h(i, j));
  return v;
}

}  // namespace bf
