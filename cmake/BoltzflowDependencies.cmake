# Dependency discovery for boltzflow.
#
# Works with Debian's packages (Kokkos 3.4.1 Serial and Kokkos Kernels inside
# Trilinos 13.2) and with an upstream Kokkos 4.x / Kokkos Kernels 4.x install
# (OpenMP, CUDA, HIP) given by -DKokkos_ROOT=... -DKokkosKernels_ROOT=...
#
# Exports: Kokkos::kokkos, boltzflow::kokkoskernels, MPI::MPI_CXX,
#          boltzflow::hdf5, Eigen3::Eigen, Boost::program_options, GTest::gtest

# --- Kokkos ------------------------------------------------------------------
# A plain minimum version: a version range fails on Debian's TriBITS package.
find_package(Kokkos 3.4 REQUIRED)

# Debian fix-up: Trilinos' generated KokkosConfig.cmake computes the import
# prefix one directory too high for the multiarch layout, so Kokkos::kokkos
# points at /usr/lib/include, which does not exist. Replace any missing include
# directory by ${Kokkos_INCLUDE_DIRS} (/usr/include/trilinos there).
get_target_property(_bf_kokkos_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
set(_bf_kokkos_fixed "")
set(_bf_kokkos_needs_fix OFF)
foreach(_dir IN LISTS _bf_kokkos_inc)
  if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
    list(APPEND _bf_kokkos_fixed "${_dir}")
  else()
    set(_bf_kokkos_needs_fix ON)
  endif()
endforeach()
if(_bf_kokkos_needs_fix)
  foreach(_dir IN LISTS Kokkos_INCLUDE_DIRS)
    get_filename_component(_dir "${_dir}" REALPATH)
    list(APPEND _bf_kokkos_fixed "${_dir}")
  endforeach()
  list(REMOVE_DUPLICATES _bf_kokkos_fixed)
  set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_bf_kokkos_fixed}")
  message(STATUS "boltzflow: fixed Kokkos::kokkos include directories -> ${_bf_kokkos_fixed}")
endif()
if(DEFINED Kokkos_DEVICES)
  message(STATUS "boltzflow: Kokkos ${Kokkos_VERSION}, devices: ${Kokkos_DEVICES}")
endif()

# --- Kokkos Kernels ----------------------------------------------------------
find_package(KokkosKernels REQUIRED)
add_library(boltzflow_kokkoskernels INTERFACE)
add_library(boltzflow::kokkoskernels ALIAS boltzflow_kokkoskernels)
if(TARGET Kokkos::kokkoskernels)            # upstream 4.x
  target_link_libraries(boltzflow_kokkoskernels INTERFACE Kokkos::kokkoskernels)
elseif(TARGET trilinos_kokkoskernels)       # Debian / Trilinos
  target_link_libraries(boltzflow_kokkoskernels INTERFACE trilinos_kokkoskernels Kokkos::kokkos)
else()
  message(FATAL_ERROR "KokkosKernels was found but exports neither Kokkos::kokkoskernels nor trilinos_kokkoskernels")
endif()

# --- MPI, HDF5 (C API), Eigen, Boost, nlohmann-json, GoogleTest ----------------
find_package(MPI REQUIRED COMPONENTS C CXX)

find_package(HDF5 REQUIRED COMPONENTS C)
add_library(boltzflow_hdf5 INTERFACE)
add_library(boltzflow::hdf5 ALIAS boltzflow_hdf5)
target_include_directories(boltzflow_hdf5 SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
target_link_libraries(boltzflow_hdf5 INTERFACE ${HDF5_C_LIBRARIES} ${HDF5_LIBRARIES})
target_compile_definitions(boltzflow_hdf5 INTERFACE ${HDF5_C_DEFINITIONS} ${HDF5_DEFINITIONS})

find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(Boost 1.65 REQUIRED COMPONENTS program_options)
find_package(nlohmann_json 3.10 REQUIRED)   # Debian: nlohmann-json3-dev
if(BOLTZFLOW_ENABLE_TESTS)
  find_package(GTest REQUIRED)
endif()
