// GoogleTest main for tests that need MPI and Kokkos: initialises both once,
// runs every test on every rank, and reports on rank 0 only.
#include <gtest/gtest.h>
#include <mpi.h>

#include <Kokkos_Core.hpp>

#include "flows/nn/gemm.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int result = 0;
  Kokkos::initialize(argc, argv);
  bf::configure_gemm_threads();  // as the program does
  {
    result = RUN_ALL_TESTS();
  }
  Kokkos::finalize();
  // A failure on any rank fails the test on every rank.
  int global = 0;
  MPI_Allreduce(&result, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return global;
}
