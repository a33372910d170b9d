# The GEMM backend for host memory (flows/nn/gemm.hpp explains the choice).
#   BOLTZFLOW_HOST_GEMM = auto   eigen when BOLTZFLOW_NATIVE and the compiler
#                                targets AVX-512 on this machine, blas otherwise
#                       = blas   the linked BLAS (Fortran interface; OpenBLAS on Debian)
#                       = eigen  Eigen's GEMM, compiled with the project's flags
#                       = kokkos KokkosBlas::gemm
# Device builds (CUDA, HIP) always use KokkosBlas (cuBLAS, rocBLAS) on device memory.
include(CheckCXXSourceCompiles)

find_package(BLAS QUIET)

set(_bf_gemm "${BOLTZFLOW_HOST_GEMM}")
if(_bf_gemm STREQUAL "auto")
  set(_bf_gemm "blas")
  if(BOLTZFLOW_NATIVE AND NOT Kokkos_ENABLE_CUDA AND NOT Kokkos_ENABLE_HIP)
    set(CMAKE_REQUIRED_FLAGS "-march=native")
    check_cxx_source_compiles("
      #ifndef __AVX512F__
      #error no AVX-512
      #endif
      int main() { return 0; }" BOLTZFLOW_NATIVE_HAS_AVX512)
    unset(CMAKE_REQUIRED_FLAGS)
    if(BOLTZFLOW_NATIVE_HAS_AVX512)
      set(_bf_gemm "eigen")
    endif()
  endif()
endif()
if(_bf_gemm STREQUAL "blas" AND NOT BLAS_FOUND)
  message(STATUS "boltzflow: no BLAS found for the host GEMM; using KokkosBlas")
  set(_bf_gemm "kokkos")
endif()
if(NOT _bf_gemm MATCHES "^(blas|eigen|kokkos)$")
  message(FATAL_ERROR "BOLTZFLOW_HOST_GEMM must be auto, blas, eigen or kokkos (got '${BOLTZFLOW_HOST_GEMM}')")
endif()
set(BOLTZFLOW_HOST_GEMM_RESOLVED "${_bf_gemm}" CACHE INTERNAL "the host GEMM backend in use")
message(STATUS "boltzflow: host GEMM backend: ${_bf_gemm}")

function(boltzflow_host_gemm target)
  string(TOUPPER "${BOLTZFLOW_HOST_GEMM_RESOLVED}" _up)
  target_compile_definitions(${target} PRIVATE BOLTZFLOW_HOST_GEMM_${_up})
  target_link_libraries(${target} PRIVATE Eigen3::Eigen)
  if(BLAS_FOUND)
    target_compile_definitions(${target} PRIVATE BOLTZFLOW_HAVE_BLAS)
    target_link_libraries(${target} PUBLIC ${BLAS_LIBRARIES})
  endif()
endfunction()
