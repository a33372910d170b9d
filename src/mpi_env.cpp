#include "src/mpi_env.hpp"

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cstdlib>

#include "flows/gemm.hpp"

namespace bf {

Environment::Environment(int& argc, char**& argv, const std::vector<std::string>& kokkos_args) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  std::vector<std::string> args{argc > 0 ? argv[0] : "boltzflow"};
  args.insert(args.end(), kokkos_args.begin(), kokkos_args.end());
  std::vector<char*> ptrs;
  for (auto& a : args) ptrs.push_back(a.data());
  int kargc = static_cast<int>(ptrs.size());
  ptrs.push_back(nullptr);
  Kokkos::initialize(kargc, ptrs.data());
  // A multithreaded BLAS under several ranks per node, or beside Kokkos'
  // OpenMP threads, oversubscribes the cores (flows/gemm.hpp).
  configure_gemm_threads();
}

Environment::~Environment() {
  Kokkos::finalize();
  MPI_Finalize();
}

std::string kokkos_backend() { return Kokkos::DefaultExecutionSpace::name(); }

Slice split_range(long long total, int rank, int size) {
  Slice s;
  s.begin = total / size * rank + std::min<long long>(rank, total % size);
  s.end = s.begin + total / size + (rank < total % size ? 1 : 0);
  return s;
}

}  // namespace bf
