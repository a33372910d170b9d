#pragma once
#include <string>
namespace bf {
/// Program version, e.g. "0.1.0".
std::string program_version();
/// One line: version, Kokkos version and backend, MPI library.
std::string build_description();
}  // namespace bf
