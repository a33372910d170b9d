// MPI then Kokkos, finalized in reverse order; the rank and size of the run.
// Only --kokkos-* arguments reach Kokkos (3.4 would react to a bare --help).
#pragma once

#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

namespace bf {

class Environment {
 public:
  /// Initializes MPI and Kokkos. `kokkos_args` are the --kokkos-* arguments.
  Environment(int& argc, char**& argv, const std::vector<std::string>& kokkos_args);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm comm() const { return MPI_COMM_WORLD; }
  bool root() const { return rank_ == 0; }

 private:
  int rank_ = 0, size_ = 1;
};

/// Name of the Kokkos execution space in use ("Serial", "OpenMP", "Cuda").
std::string kokkos_backend();

/// The slice [begin, end) of `total` global items owned by `rank` of `size`
/// (uneven splits allowed: sizes differ by at most one).
struct Slice {
  long long begin = 0, end = 0;
  long long count() const { return end - begin; }
};
Slice split_range(long long total, int rank, int size);

/// Every rank's `count` rows of `width` numbers, concatenated in rank order on
/// rank 0 (empty elsewhere): the gather of contiguous slices (collective).
std::vector<double> gather_rows(const Environment& env, const double* rows, long long count, int width);

/// Runs f on rank 0; an exception there is re-thrown on every rank
/// (InputError as InputError, anything else as RunError; src/errors.hpp).
void root_agreed(const Environment& env, const std::function<void()>& f);

/// Collective: every rank leaves with rank 0's value (its size, then its data).
void broadcast(const Environment& env, std::string& s);
void broadcast(const Environment& env, std::vector<double>& v);

}  // namespace bf
