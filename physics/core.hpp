// Kokkos types and the one math shim used by every kernel in boltzflow.
//
// Kokkos 3.4 keeps the math functions in Kokkos::Experimental, Kokkos 4.x in
// Kokkos (the Experimental names are deprecated there). Device code calls
// bf::kmath::exp(...) and nothing from std::.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>

namespace bf {

#if KOKKOS_VERSION >= 40000
namespace kmath = ::Kokkos;
#else
namespace kmath = ::Kokkos::Experimental;
#endif

using ExecSpace = Kokkos::DefaultExecutionSpace;
using MemSpace = ExecSpace::memory_space;
using HostSpace = Kokkos::HostSpace;

/// Row-major batch of samples, [n x dim], contiguous rows.
template <class T>
using Matrix = Kokkos::View<T**, Kokkos::LayoutRight, MemSpace>;
template <class T>
using Vector = Kokkos::View<T*, MemSpace>;
template <class T>
using HostMatrix = Kokkos::View<T**, Kokkos::LayoutRight, HostSpace>;
template <class T>
using HostVector = Kokkos::View<T*, HostSpace>;

using Policy = Kokkos::RangePolicy<ExecSpace>;

constexpr double kPi = 3.14159265358979323846;
constexpr double kLn10 = 2.30258509299404568402;
constexpr double kLog2Pi = 1.83787706640934548356;  // log(2 pi)

/// Pointer to row i of a LayoutRight matrix (rows are contiguous).
template <class View>
KOKKOS_INLINE_FUNCTION auto row(const View& v, std::int64_t i) -> decltype(v.data()) {
  return v.data() + i * static_cast<std::int64_t>(v.stride(0));
}

/// Numerically stable log(1 + exp(x)).
template <class T>
KOKKOS_INLINE_FUNCTION T softplus(T x) {
  return x > T(0) ? x + kmath::log1p(kmath::exp(-x)) : kmath::log1p(kmath::exp(x));
}

/// Logistic sigmoid, stable for large |x|.
template <class T>
KOKKOS_INLINE_FUNCTION T sigmoid(T x) {
  if (x >= T(0)) {
    return T(1) / (T(1) + kmath::exp(-x));
  }
  const T e = kmath::exp(x);
  return e / (T(1) + e);
}

/// log(sigmoid(x)) = -softplus(-x).
template <class T>
KOKKOS_INLINE_FUNCTION T log_sigmoid(T x) {
  return -softplus(-x);
}

}  // namespace bf
