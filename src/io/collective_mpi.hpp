// The MPI side of data parallelism, shared by the trainer and `bench train`:
// the Collective models use for batch-wide sums, and the in-place sum of a
// flat buffer (the gradient) over the ranks.
#pragma once

#include <mpi.h>

#include "flows/model.hpp"

namespace bf {

struct MpiCollective final : Collective {
  MPI_Comm comm;
  explicit MpiCollective(MPI_Comm c) : comm(c) {}
  void sum(double* v, int n) const override { MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm); }
  void max(double* v, int n) const override { MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, comm); }
};

template <class T>
MPI_Datatype mpi_type() {
  return sizeof(T) == 8 ? MPI_DOUBLE : MPI_FLOAT;
}

/// v ← Σ_ranks v in place (one MPI_Allreduce). Host-accessible memory is
/// reduced directly; device memory through `host`, a host mirror of v.
template <class T>
void allreduce_sum(MPI_Comm comm, const Vector<T>& v, const typename Vector<T>::HostMirror& host) {
  Kokkos::fence();  // kernels writing v must be done before MPI reads it
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, MemSpace>::accessible) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.extent(0)), mpi_type<T>(), MPI_SUM, comm);
  } else {
    Kokkos::deep_copy(host, v);
    MPI_Allreduce(MPI_IN_PLACE, host.data(), static_cast<int>(host.extent(0)), mpi_type<T>(), MPI_SUM, comm);
    Kokkos::deep_copy(v, host);
  }
}

}  // namespace bf
