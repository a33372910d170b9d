#include "flows/nn/gemm.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

// Host backends exist only where the default memory space is host memory and
// the translation unit is compiled for the host (no nvcc/hipcc device pass).
#if !(defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL))
#define BOLTZFLOW_HOST_ONLY 1
#include <Eigen/Core>
#endif

#if defined(BOLTZFLOW_HAVE_BLAS) && defined(BOLTZFLOW_HOST_ONLY)
extern "C" {
// The Fortran BLAS interface, column-major (every BLAS has it; OpenBLAS, BLIS
// and MKL implement it in C and ignore the hidden string lengths).
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
}
#endif

namespace bf {

namespace {

double g_flops = 0.0;
thread_local bool t_serial_gemm = false;

bool transposed(const char* t) { return t[0] == 'T' || t[0] == 't' || t[0] == 'C' || t[0] == 'c'; }

// C's shape m x n and the inner size k of op(A) op(B); throws if they do not
// match. Returns whether C has any element (else there is nothing to do).
template <class T>
bool product_shape(const char* ta, const char* tb, const Rows<const T>& a, const Rows<const T>& b, const Rows<T>& c,
                   std::int64_t& m, std::int64_t& n, std::int64_t& k) {
  const bool at = transposed(ta), bt = transposed(tb);
  m = static_cast<std::int64_t>(at ? a.extent(1) : a.extent(0));
  k = static_cast<std::int64_t>(at ? a.extent(0) : a.extent(1));
  const std::int64_t kb = static_cast<std::int64_t>(bt ? b.extent(1) : b.extent(0));
  n = static_cast<std::int64_t>(bt ? b.extent(0) : b.extent(1));
  if (kb != k || static_cast<std::int64_t>(c.extent(0)) != m || static_cast<std::int64_t>(c.extent(1)) != n)
    throw std::logic_error("gemm: shapes do not match");
  return m > 0 && n > 0;
}

template <class T>
void gemm_kokkos(const char* ta, const char* tb, T alpha, const Rows<const T>& a, const Rows<const T>& b, T beta,
                 const Rows<T>& c) {
  KokkosBlas::gemm(ta, tb, alpha, a, b, beta, c);
}

#ifdef BOLTZFLOW_HOST_ONLY
// Leading dimension of a row-major view: its row stride (at least 1 for BLAS).
template <class V>
int leading(const V& v) {
  std::int64_t s = static_cast<std::int64_t>(v.stride(0));
  s = std::max<std::int64_t>(s, static_cast<std::int64_t>(v.extent(1)));
  return static_cast<int>(std::max<std::int64_t>(s, 1));
}

template <class T>
void gemm_eigen(const char* ta, const char* tb, T alpha, const Rows<const T>& a, const Rows<const T>& b, T beta,
                const Rows<T>& c) {
  std::int64_t m, n, k;
  if (!product_shape(ta, tb, a, b, c, m, n, k)) return;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using MMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  const CMap A(a.data(), static_cast<Eigen::Index>(a.extent(0)), static_cast<Eigen::Index>(a.extent(1)),
               Eigen::OuterStride<>(leading(a)));
  const CMap B(b.data(), static_cast<Eigen::Index>(b.extent(0)), static_cast<Eigen::Index>(b.extent(1)),
               Eigen::OuterStride<>(leading(b)));
  MMap C(c.data(), static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(n), Eigen::OuterStride<>(leading(c)));
  if (beta == T(0))
    C.setZero();
  else if (beta != T(1))
    C *= beta;
  if (k == 0) return;
  const bool at = transposed(ta), bt = transposed(tb);
  if (!at && !bt) C.noalias() += alpha * (A * B);
  else if (!at && bt) C.noalias() += alpha * (A * B.transpose());
  else if (at && !bt) C.noalias() += alpha * (A.transpose() * B);
  else C.noalias() += alpha * (A.transpose() * B.transpose());
}
#endif

#ifdef BOLTZFLOW_HOST_ONLY
// Products with a side of at most kNarrow: a network's first layer on a 2-D
// input (k = 2), a scalar output (n = 1), their reverse passes (m = 1, n = 2).
// The BLAS packs both operands for a register-blocked microkernel that such a
// side leaves mostly idle, and its cost there is the packing and the passes
// over C. Plain loops along the long sides, vectorized by the compiler, write
// C once. Sums run in a fixed order (kLanes partial sums, then added in
// order), so results depend on the shape only.
constexpr std::int64_t kNarrow = 4;
constexpr int kLanes = 16;

// Where the plain loops beat OpenBLAS's AVX2 kernels (fp32, one Zen 3 core,
// 1024 rows, long side 128, best of 7 x 50 calls, repeated): k = 2 1.5-2.1x,
// k = 3 1.1-1.2x, k = 1 1.0-1.4x, m = 1 1.8-2.8x, n = 1 2.7-2.8x, Aᵀ with
// n = 2 1.6-1.8x. A with n = 2 (one dot product per element of C) was
// 0.7-1.2x, so that case stays with the backend.
bool narrow(bool at, std::int64_t m, std::int64_t n, std::int64_t k) {
  return k <= kNarrow || m <= kNarrow || n == 1 || (at && n <= kNarrow);
}

template <class T>
T dot(const T* x, const T* y, std::int64_t len) {
  T s[kLanes] = {};
  std::int64_t q = 0;
  for (; q + kLanes <= len; q += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += x[q + l] * y[q + l];
  for (int l = 0; q < len; ++q, ++l) s[l] += x[q] * y[q];
  T t = T(0);
  for (int l = 0; l < kLanes; ++l) t += s[l];
  return t;
}

// c[j] = β c[j] + Σ_{q<K} s[q] rows[q][j] for j < n (β = 0 writes without reading c).
template <int K, class T>
void combine_rows(T* c, T beta, const T* s, const T* const* rows, std::int64_t n) {
  if (beta == T(0)) {
    for (std::int64_t j = 0; j < n; ++j) {
      T v = T(0);
      for (int q = 0; q < K; ++q) v += s[q] * rows[q][j];
      c[j] = v;
    }
  } else {
    for (std::int64_t j = 0; j < n; ++j) {
      T v = beta * c[j];
      for (int q = 0; q < K; ++q) v += s[q] * rows[q][j];
      c[j] = v;
    }
  }
}

template <class T>
void combine_rows(int kq, T* c, T beta, const T* s, const T* const* rows, std::int64_t n) {
  switch (kq) {
    case 1: return combine_rows<1>(c, beta, s, rows, n);
    case 2: return combine_rows<2>(c, beta, s, rows, n);
    case 3: return combine_rows<3>(c, beta, s, rows, n);
    default: return combine_rows<4>(c, beta, s, rows, n);
  }
}

// Scratch of this thread for transposed copies of a narrow operand.
template <class T>
T* scratch(std::size_t count) {
  thread_local std::vector<T> buf;
  if (buf.size() < count) buf.resize(count);
  return buf.data();
}

// The narrow product on raw row-major pointers; op(A)(i, q) and op(B)(q, j) by stride.
template <class T>
void gemm_narrow(bool at, bool bt, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                 std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  auto A = [&](std::int64_t i, std::int64_t q) { return at ? a[q * lda + i] : a[i * lda + q]; };
  auto B = [&](std::int64_t q, std::int64_t j) { return bt ? b[j * ldb + q] : b[q * ldb + j]; };
  auto scale_row = [&](T* ci) {
    if (beta == T(0))
      std::fill(ci, ci + n, T(0));
    else if (beta != T(1))
      for (std::int64_t j = 0; j < n; ++j) ci[j] *= beta;
  };
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i) scale_row(c + i * ldc);
    return;
  }
  if (k <= kNarrow) {
    // Row i of C is a combination of the k rows of op(B): contiguous rows (B, or a copy of Bᵀ).
    const T* rows[kNarrow];
    T* copy = bt ? scratch<T>(static_cast<std::size_t>(k * n)) : nullptr;
    for (std::int64_t q = 0; q < k; ++q) {
      if (bt) {
        for (std::int64_t j = 0; j < n; ++j) copy[q * n + j] = b[j * ldb + q];
        rows[q] = copy + q * n;
      } else {
        rows[q] = b + q * ldb;
      }
    }
    for (std::int64_t i = 0; i < m; ++i) {
      T s[kNarrow];
      for (std::int64_t q = 0; q < k; ++q) s[q] = alpha * A(i, q);
      combine_rows<T>(static_cast<int>(k), c + i * ldc, beta, s, rows, n);
    }
    return;
  }
  if (n <= kNarrow) {
    if (!at) {
      // C(i, j) = A(i, :) · op(B)(:, j): columns of op(B) contiguous (rows of B, or a copy).
      const T* cols[kNarrow];
      T* copy = bt ? nullptr : scratch<T>(static_cast<std::size_t>(n * k));
      for (std::int64_t j = 0; j < n; ++j) {
        if (bt) {
          cols[j] = b + j * ldb;
        } else {
          for (std::int64_t q = 0; q < k; ++q) copy[j * k + q] = b[q * ldb + j];
          cols[j] = copy + j * k;
        }
      }
      for (std::int64_t i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        for (std::int64_t j = 0; j < n; ++j) {
          const T v = alpha * dot(a + i * lda, cols[j], k);
          ci[j] = beta == T(0) ? v : beta * ci[j] + v;
        }
      }
      return;
    }
    // op(A) = Aᵀ: row q of A is column q of op(A), contiguous along i. Accumulate
    // the n columns of C along them (a weight gradient Σ_q g_q x_qᵀ with x narrow).
    T* acc = scratch<T>(static_cast<std::size_t>(n * m));
    std::fill(acc, acc + n * m, T(0));
    for (std::int64_t q = 0; q < k; ++q) {
      const T* aq = a + q * lda;
      for (std::int64_t j = 0; j < n; ++j) {
        const T bq = B(q, j);
        T* cj = acc + j * m;
        for (std::int64_t i = 0; i < m; ++i) cj[i] += bq * aq[i];
      }
    }
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        const T v = alpha * acc[j * m + i];
        T& cij = c[i * ldc + j];
        cij = beta == T(0) ? v : beta * cij + v;
      }
    return;
  }
  // m <= kNarrow: each of C's few rows is Σ_q op(A)(i, q) op(B)(q, :).
  for (std::int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (!bt) {
      scale_row(ci);
      for (std::int64_t q = 0; q < k; ++q) {
        const T s = alpha * A(i, q);
        const T* bq = b + q * ldb;
        for (std::int64_t j = 0; j < n; ++j) ci[j] += s * bq[j];
      }
    } else {
      // op(B)(:, j) is row j of B: dots with row i of op(A) (a copy where A is transposed).
      const T* ai = a + i * lda;
      if (at) {
        T* copy = scratch<T>(static_cast<std::size_t>(k));
        for (std::int64_t q = 0; q < k; ++q) copy[q] = a[q * lda + i];
        ai = copy;
      }
      for (std::int64_t j = 0; j < n; ++j) {
        const T v = alpha * dot(ai, b + j * ldb, k);
        ci[j] = beta == T(0) ? v : beta * ci[j] + v;
      }
    }
  }
}
#endif

#if defined(BOLTZFLOW_HAVE_BLAS) && defined(BOLTZFLOW_HOST_ONLY)
// One row-major product C[M x N] = α op(A) op(B) + β C on raw pointers. Row-major
// C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ, and a row-major matrix is
// its transpose in column-major: call the Fortran GEMM with the operands
// swapped and the same transposition flags.
// β = 0 becomes a zero fill and β = 1: OpenBLAS's own β pass (a plain loop on
// AVX2 cores) took 10% of a reverse-KL step on a Zen 3 core; a memset is a
// fraction of that, and C = 0 + α A B is the same product.
template <class T>
void blas_call(bool at, bool bt, int M, int N, int K, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c,
               int ldc) {
  if (beta == T(0)) {
    if (ldc == N)
      std::memset(c, 0, sizeof(T) * static_cast<std::size_t>(M) * N);
    else
      for (int i = 0; i < M; ++i) std::memset(c + static_cast<std::int64_t>(i) * ldc, 0, sizeof(T) * N);
    beta = T(1);
  }
  const char fa = at ? 'T' : 'N', fb = bt ? 'T' : 'N';
  if constexpr (std::is_same<T, float>::value)
    sgemm_(&fb, &fa, &N, &M, &K, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
  else
    dgemm_(&fb, &fa, &N, &M, &K, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// With several host threads (Kokkos OpenMP or Threads) the product is split
// into one block of C per thread, along C's longer side, and each thread calls
// the BLAS on its block single-threaded (the BLAS is kept at one thread,
// configure_gemm_threads). Every thread then belongs to Kokkos' pool: a BLAS
// with a thread pool of its own would compete with the OpenMP threads, which
// spin for a while after each parallel region, for the same cores (measured:
// 2 threads slower than 1). Blocks depend only on the shape and the thread
// count, so a fixed thread count gives bitwise-identical results.
template <class T>
void gemm_blas(const char* ta, const char* tb, T alpha, const Rows<const T>& a, const Rows<const T>& b, T beta,
               const Rows<T>& c) {
  std::int64_t m, n, k;
  if (!product_shape(ta, tb, a, b, c, m, n, k)) return;
  const bool at = transposed(ta), bt = transposed(tb);
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int lda = leading(a), ldb = leading(b), ldc = leading(c);
  const T *pa = a.data(), *pb = b.data();
  T* pc = c.data();
  const int threads = Kokkos::DefaultHostExecutionSpace().concurrency();
  // Below ~1 MFLOP a product is too short to share out.
  constexpr int kQuantum = 16;  // block edges in multiples of a SIMD-friendly width
  const bool split_rows = M >= N;
  const int side = split_rows ? M : N;
  const int blocks = std::min(threads, (side + kQuantum - 1) / kQuantum);
  if (threads <= 1 || blocks <= 1 || t_serial_gemm || 2.0 * m * n * k < 1e6) {
    blas_call<T>(at, bt, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    return;
  }
  const int per = ((side + blocks - 1) / blocks + kQuantum - 1) / kQuantum * kQuantum;
  Kokkos::parallel_for(
      "bf::gemm_blocks", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, blocks), [=](const int blk) {
        const int lo = blk * per, hi = std::min(side, lo + per);
        if (lo >= hi) return;
        if (split_rows) {  // rows lo..hi of C: rows of op(A)
          const T* a0 = at ? pa + lo : pa + static_cast<std::int64_t>(lo) * lda;
          blas_call<T>(at, bt, hi - lo, N, K, alpha, a0, lda, pb, ldb, beta, pc + static_cast<std::int64_t>(lo) * ldc, ldc);
        } else {  // columns lo..hi of C: columns of op(B)
          const T* b0 = bt ? pb + static_cast<std::int64_t>(lo) * ldb : pb + lo;
          blas_call<T>(at, bt, M, hi - lo, K, alpha, pa, lda, b0, ldb, beta, pc + lo, ldc);
        }
      });
  Kokkos::DefaultHostExecutionSpace().fence();
}
#endif

#ifdef BOLTZFLOW_HOST_ONLY
constexpr bool kHostMemory = std::is_same<MemSpace, Kokkos::HostSpace>::value;
#endif

}  // namespace

ThreadBlock::ThreadBlock() : previous_(t_serial_gemm) { t_serial_gemm = true; }
ThreadBlock::~ThreadBlock() { t_serial_gemm = previous_; }
bool in_thread_block() { return t_serial_gemm; }

template <class T>
void gemm(const char* ta, const char* tb, T alpha, const Rows<const T>& a, const Rows<const T>& b, T beta,
          const Rows<T>& c) {
  const bool at = transposed(ta);
  // Threads inside a shared pass count too (an atomic add where OpenMP is on).
#ifdef _OPENMP
#pragma omp atomic
#endif
  g_flops += 2.0 * static_cast<double>(c.extent(0)) * static_cast<double>(c.extent(1)) *
             static_cast<double>(at ? a.extent(0) : a.extent(1));
#ifdef BOLTZFLOW_HOST_ONLY
  if constexpr (kHostMemory) {
    std::int64_t m, n, k;
    if (!product_shape(ta, tb, a, b, c, m, n, k)) return;
    if (narrow(at, m, n, k))
      return gemm_narrow<T>(at, transposed(tb), m, n, k, alpha, a.data(), leading(a), b.data(), leading(b), beta,
                            c.data(), leading(c));
  }
#endif
#if defined(BOLTZFLOW_HOST_ONLY) && defined(BOLTZFLOW_HOST_GEMM_EIGEN)
  if constexpr (kHostMemory) return gemm_eigen<T>(ta, tb, alpha, a, b, beta, c);
#elif defined(BOLTZFLOW_HOST_ONLY) && defined(BOLTZFLOW_HOST_GEMM_BLAS) && defined(BOLTZFLOW_HAVE_BLAS)
  if constexpr (kHostMemory) return gemm_blas<T>(ta, tb, alpha, a, b, beta, c);
#endif
  gemm_kokkos<T>(ta, tb, alpha, a, b, beta, c);
}

std::string gemm_backend() {
#if defined(BOLTZFLOW_HOST_ONLY) && defined(BOLTZFLOW_HOST_GEMM_EIGEN)
  if (kHostMemory) return "eigen";
#elif defined(BOLTZFLOW_HOST_ONLY) && defined(BOLTZFLOW_HOST_GEMM_BLAS) && defined(BOLTZFLOW_HAVE_BLAS)
  if (kHostMemory) return "blas";
#endif
  return "kokkos";
}

double gemm_flops_counted() { return g_flops; }

void configure_gemm_threads() {
  using SetThreads = void (*)(int);
  auto set_openblas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set_openblas) return;
#if defined(BOLTZFLOW_HOST_ONLY) && defined(BOLTZFLOW_HOST_GEMM_BLAS) && defined(BOLTZFLOW_HAVE_BLAS)
  // gemm shares each product out over the Kokkos host threads itself.
  if (kHostMemory) {
    set_openblas(1);
    return;
  }
#endif
  // KokkosBlas calls the BLAS whole: give it the host threads, unless the user chose.
  if (!std::getenv("OPENBLAS_NUM_THREADS")) set_openblas(Kokkos::DefaultHostExecutionSpace().concurrency());
}

std::vector<GemmBackend> gemm_backends() {
  std::vector<GemmBackend> v;
  v.push_back({"kokkos", &gemm_kokkos<float>, &gemm_kokkos<double>});
#ifdef BOLTZFLOW_HOST_ONLY
  if (kHostMemory) {
#ifdef BOLTZFLOW_HAVE_BLAS
    v.push_back({"blas", &gemm_blas<float>, &gemm_blas<double>});
#endif
    v.push_back({"eigen", &gemm_eigen<float>, &gemm_eigen<double>});
  }
#endif
  return v;
}

template void gemm<float>(const char*, const char*, float, const Rows<const float>&, const Rows<const float>&, float,
                          const Rows<float>&);
template void gemm<double>(const char*, const char*, double, const Rows<const double>&, const Rows<const double>&,
                           double, const Rows<double>&);

}  // namespace bf
