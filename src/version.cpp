#include "src/version.hpp"

#include <mpi.h>

#include <Kokkos_Core.hpp>

namespace bf {

std::string program_version() { return BOLTZFLOW_VERSION; }

std::string build_description() {
  const int kv = KOKKOS_VERSION;
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  std::string m(mpi, static_cast<std::size_t>(len));
  m = m.substr(0, m.find_first_of(",\n"));
  return "boltzflow " + program_version() + " (Kokkos " + std::to_string(kv / 10000) + "." +
         std::to_string(kv / 100 % 100) + "." + std::to_string(kv % 100) + " " +
         Kokkos::DefaultExecutionSpace::name() + ", " + m + ")";
}

}  // namespace bf
