// Kokkos types and the one math shim used by every kernel in boltzflow.
//
// Kokkos 3.4 keeps the math functions in Kokkos::Experimental, Kokkos 4.x in
// Kokkos (the Experimental names are deprecated there). Device code calls
// bf::kmath::exp(...) and nothing from std::.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <cstring>

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

/// (The element-wise functions below are forced inline: a call in a loop
/// stops it from vectorizing, and GCC under -fopenmp was seen not to inline
/// vexp into Kokkos' OpenMP kernels, a third of an activation's time.)
///
/// exp(x) in a form compilers vectorize on CPU backends (no library call,
/// no floor, no integer conversions): exp(x) = 2^k e^r with k = round(x / ln 2)
/// found by the 1.5·2^52 (float: 1.5·2^23) shift, a Cody–Waite reduced
/// |r| ≤ ln 2 / 2, e^r by its Taylor polynomial to degree 13 (double; relative
/// error below 1e-15) or 7 (float; about 1 ulp), and 2^k assembled in the
/// exponent bits of the shifted number. Overflows to inf above 709.7 (88.5 in
/// float), flushes to 0 below −708 (−87), propagates NaN. GPU backends use the
/// vendor exp, which is already fast.
#if !(defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL))
template <class To, class From>
inline To bit_cast_value(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast_value: sizes differ");
  To t;
  std::memcpy(&t, &f, sizeof(To));  // compiles to a register move
  return t;
}
#endif

KOKKOS_FORCEINLINE_FUNCTION double vexp(double x) {
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL)
  return kmath::exp(x);
#else
  constexpr double shift = 6755399441055744.0;  // 1.5 * 2^52
  const double xc = x < -708.0 ? -708.0 : (x > 709.7 ? 709.7 : x);
  double kf = (xc * 1.4426950408889634074 + shift) - shift;  // round(x / ln 2)
  kf = kf > 1023.0 ? 1023.0 : kf;                           // keeps 2^k a finite double
  const double r = (xc - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // (kf + shift) has k + 2^51·3 in its low mantissa bits: move k + 1023 to the exponent.
  const std::int64_t kb = bit_cast_value<std::int64_t>(kf + shift) - std::int64_t(0x4338000000000000LL);
  const double two_k = bit_cast_value<double>((kb + 1023) << 52);
  // Every candidate computed unconditionally, then selected: no branch to vectorize around.
  const double normal = p * two_k, huge = p * 1e308 * 1e308;
  const double y = x < -708.0 ? 0.0 : (x > 709.7 ? huge : normal);
  return x == x ? y : x;
#endif
}

KOKKOS_FORCEINLINE_FUNCTION float vexp(float x) {
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL)
  return kmath::exp(x);
#else
  constexpr float shift = 12582912.0f;  // 1.5 * 2^23
  const float xc = x < -87.0f ? -87.0f : (x > 88.5f ? 88.5f : x);
  float kf = (xc * 1.44269504f + shift) - shift;
  kf = kf > 127.0f ? 127.0f : kf;
  const float r = (xc - kf * 0.693145752f) - kf * 1.42860677e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const std::int32_t kb = bit_cast_value<std::int32_t>(kf + shift) - std::int32_t(0x4B400000);
  const float two_k = bit_cast_value<float>(static_cast<std::int32_t>((kb + 127) << 23));
  const float normal = p * two_k, huge = p * 1e30f * 1e30f;
  const float y = x < -87.0f ? 0.0f : (x > 88.5f ? huge : normal);
  return x == x ? y : x;
#endif
}

/// exp(x) − 1 without the cancellation near 0: the Taylor polynomial for
/// |x| < 1/2 (degree 9 in float, 14 in double: remainder below 2^-30 and
/// 2^-54 relative), vexp(x) − 1 elsewhere (no cancellation there: |e^x − 1| ≥ 0.39).
/// Both are computed and one selected, so loops over it vectorize.
template <class T>
KOKKOS_FORCEINLINE_FUNCTION T vexpm1(T x) {
  constexpr int n = sizeof(T) == 4 ? 9 : 14;
  T p = T(1);
  for (int k = n; k >= 2; --k) p = T(1) + p * (x * (T(1) / T(k)));  // e^x − 1 = x (1 + x/2 (1 + x/3 (…)))
  const T small = x * p;
  const T large = vexp(x) - T(1);
  const T ax = x < T(0) ? -x : x;
  return ax < T(0.5) ? small : large;
}

/// log(1 + u) for u in [0, 1] (what softplus needs: u = e^{−|x|}) in a form
/// that vectorizes: with s = u / (2 + u) ∈ [0, 1/3], log(1 + u) = log((1 + s)/(1 − s))
/// = 2 atanh s = 2 s Σ_k s^{2k}/(2k + 1), summed to k = 6 in float and k = 15 in
/// double (the first omitted term is below 2^-26 and 2^-55 of the sum). Exact
/// for u = 0, relative error of a few ulps everywhere else (tests/test_engine.cpp).
template <class T>
KOKKOS_FORCEINLINE_FUNCTION T vlog1p_unit(T u) {
  constexpr int n = sizeof(T) == 4 ? 6 : 15;
  const T s = u / (T(2) + u), z = s * s;
  T p = T(1) / T(2 * n + 1);
  for (int k = n - 1; k >= 0; --k) p = p * z + T(1) / T(2 * k + 1);
  return T(2) * s * p;
}

/// Numerically stable log(1 + exp(x)) = max(x, 0) + log(1 + e^{−|x|}).
template <class T>
KOKKOS_FORCEINLINE_FUNCTION T softplus(T x) {
  const T ax = x < T(0) ? -x : x;
  return (x > T(0) ? x : T(0)) + vlog1p_unit(vexp(-ax));
}

/// Logistic sigmoid, stable for large |x|.
template <class T>
KOKKOS_FORCEINLINE_FUNCTION T sigmoid(T x) {
  // e^{-|x|} never overflows; the branch is a select, so the loop vectorizes.
  const T e = vexp(x >= T(0) ? -x : x);
  const T s = T(1) / (T(1) + e);
  const T es = e * s;
  return x >= T(0) ? s : es;
}

/// log(sigmoid(x)) = -softplus(-x).
template <class T>
KOKKOS_INLINE_FUNCTION T log_sigmoid(T x) {
  return -softplus(-x);
}

}  // namespace bf
