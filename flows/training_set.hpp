// A training set for the models that learn from data (the NHF's ELBO, the
// Hamiltonian generative flow's velocity regression): `size` exact samples of
// the target drawn once, sample i from Philox(seed, dataset, 0, i), and the
// rows each batch takes from it — with replacement by global sample index, or
// in epochs (every point once per epoch, a fresh order each epoch, whatever
// the rank count). Either way the rows of a batch depend on the run's seed, the
// step and the global sample index alone, never on how the batch is split.
#pragma once

#include <cstdint>
#include <vector>

#include "flows/model.hpp"

namespace bf {

class TrainingSet {
 public:
  TrainingSet() = default;
  /// Draws the points (throws std::invalid_argument for size < 1 or a target without a sampler).
  TrainingSet(const Distribution& target, int size, bool epochs, std::uint32_t seed, int max_batch);

  int size() const { return static_cast<int>(data_.extent(0)); }
  bool epochs() const { return epochs_; }
  const Matrix<double>& data() const { return data_; }

  /// The data-set rows of this rank's samples of `batch` (count ≤ max_batch), into rows().
  void select(const BatchRef& batch);
  const Kokkos::View<std::int64_t*, MemSpace>& rows() const { return idx_; }
  /// Host copy of select()'s rows (tests).
  std::vector<std::int64_t> indices(const BatchRef& batch);

 private:
  Matrix<double> data_;
  bool epochs_ = false;
  int max_batch_ = 0;
  Kokkos::View<std::int64_t*, MemSpace> idx_;     // data-set row of each sample of the batch
  Kokkos::View<std::int64_t**, MemSpace> order_;  // epochs: the data set's order in epochs order_epoch_, + 1
  std::int64_t order_epoch_ = -1;
  std::uint32_t order_seed_ = 0;
};

/// out(i, :) = the set's point of the i-th selected row, cast to T (i < n).
template <class T, class Out>
void gather_selected(const TrainingSet& set, int n, const Out& out) {
  const Matrix<double> data = set.data();
  const auto idx = set.rows();
  const int D = static_cast<int>(data.extent(1));
  Kokkos::parallel_for(
      "bf::training_set_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t k = idx(i);
        for (int j = 0; j < D; ++j) out(i, j) = static_cast<T>(data(k, j));
      });
}

}  // namespace bf
