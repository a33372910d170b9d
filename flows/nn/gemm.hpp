// The one matrix product of the engine, C = α op(A) op(B) + β C on row-major
// (LayoutRight) views, and the backends behind it.
//
// Which backend, and why (measured with `boltzflow bench engine`, which times
// every backend compiled in at the engine's shapes in the same run):
//   device memory (CUDA, HIP)  KokkosBlas::gemm → cuBLAS / rocBLAS.
//   host, `blas`               the Fortran BLAS interface (sgemm_/dgemm_) of
//                              the BLAS the program links (OpenBLAS on Debian:
//                              runtime CPU dispatch, so the portable build stays
//                              as fast as the core's AVX2 kernels allow).
//   host, `eigen`              Eigen 3.4's GEMM, compiled for this machine's ISA
//                              (BOLTZFLOW_NATIVE). On an AVX-512 core where
//                              OpenBLAS is pinned to its Haswell (AVX2) kernels
//                              (OPENBLAS_CORETYPE, set on purpose on our Zen 5
//                              machines) Eigen is faster: fp32 162–175 against
//                              115–124 GFLOP/s at (4352 × 128)(128 × 128), one
//                              thread; on an AVX2-only core (Zen 3) OpenBLAS's
//                              kernels are faster (≈ 45–75 against ≈ 40–48).
//   host, `kokkos`             KokkosBlas::gemm (its TPL, or its own kernel).
// The CMake option BOLTZFLOW_HOST_GEMM picks one (`auto`: eigen in a native
// build whose compiler targets AVX-512, blas otherwise). The choice is fixed at
// build time, so a run is bitwise reproducible with the same binary.
//
// Every product is counted (2 m n k FLOPs), so benchmarks report the FLOP rate
// of what actually ran.
#pragma once

#include <string>
#include <vector>

#include "flows/nn/parameters.hpp"

namespace bf {

/// C = alpha op(A) op(B) + beta C on LayoutRight views ("N" or "T" for op).
template <class T>
void gemm(const char* ta, const char* tb, T alpha, const Rows<const T>& a, const Rows<const T>& b, T beta,
          const Rows<T>& c);

/// Marks work already shared out by host thread: while one lives on a thread,
/// gemm on that thread runs each product whole on it, and code that asks
/// (in_thread_block) runs its loops inline instead of dispatching Kokkos
/// kernels (Kokkos 4's OpenMP backend serialises dispatches with a mutex that
/// a dispatch from inside its own parallel region would wait on forever).
struct ThreadBlock {
  ThreadBlock();
  ~ThreadBlock();
  ThreadBlock(const ThreadBlock&) = delete;
  ThreadBlock& operator=(const ThreadBlock&) = delete;

 private:
  bool previous_;
};
/// Whether this thread is inside a ThreadBlock.
bool in_thread_block();

/// The backend gemm uses in this build: "kokkos", "blas" or "eigen".
std::string gemm_backend();

/// Sets the BLAS's own thread count for the backend in use: 1 where gemm
/// splits products over the Kokkos host threads itself (blas), the host
/// thread count otherwise (unless OPENBLAS_NUM_THREADS is set). Only OpenBLAS's
/// runtime call is used; no environment variable is read for the first case or
/// changed in any. Call once after Kokkos::initialize.
void configure_gemm_threads();

/// FLOPs (2 m n k per product) of every gemm call in this process so far.
double gemm_flops_counted();

/// A host GEMM backend compiled into this binary, callable by name (for benchmarks).
struct GemmBackend {
  std::string name;
  void (*sgemm)(const char*, const char*, float, const Rows<const float>&, const Rows<const float>&, float,
                const Rows<float>&);
  void (*dgemm)(const char*, const char*, double, const Rows<const double>&, const Rows<const double>&, double,
                const Rows<double>&);
};
/// Every backend this binary can run on its default memory space (the one gemm uses first).
std::vector<GemmBackend> gemm_backends();

}  // namespace bf
