# Warnings on for our own code only (dependencies are SYSTEM includes), and
# the floating-point options every target of ours shares.
function(boltzflow_warnings target)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    return()
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
    # No FP trap handlers are used, so let the compiler if-convert and
    # vectorize branchy element-wise code (vexp, activations); results of IEEE
    # operations are unchanged (no reassociation, NaN and inf behave as before).
    if(NOT Kokkos_ENABLE_CUDA AND NOT Kokkos_ENABLE_HIP)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-trapping-math>)
      if(BOLTZFLOW_NATIVE)
        target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
      endif()
    endif()
  endif()
endfunction()
