#include "flows/training_set.hpp"

#include <stdexcept>
#include <utility>

namespace bf {

namespace {
// The order of the data set in epoch e: a Fisher–Yates shuffle whose swaps
// are drawn from the run's seed and e alone (host; N numbers once per epoch).
std::vector<std::int64_t> epoch_order(std::uint32_t seed, std::int64_t e, std::int64_t N) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i) order[i] = i;
  for (std::int64_t i = N - 1; i > 0; --i) {
    const RngStream s(seed, Purpose::minibatch_order, static_cast<std::uint32_t>(e), static_cast<std::uint64_t>(i));
    std::int64_t j = static_cast<std::int64_t>(s.uniform(0) * static_cast<double>(i + 1));
    j = j < i ? j : i;
    std::swap(order[i], order[j]);
  }
  return order;
}
}  // namespace

TrainingSet::TrainingSet(const Distribution& target, int size, bool epochs, std::uint32_t seed, int max_batch)
    : epochs_(epochs), max_batch_(max_batch) {
  if (size < 1) throw std::invalid_argument("the data set needs at least one point");
  if (!target.has_sampler())
    throw std::invalid_argument("target '" + target.name() + "' has no exact sampler to draw a data set from");
  data_ = Matrix<double>("training_set", size, target.dim());
  target.sample(seed, Purpose::dataset, 0, 0, data_);
  idx_ = Kokkos::View<std::int64_t*, MemSpace>("training_set_rows", max_batch);
  if (epochs) order_ = Kokkos::View<std::int64_t**, MemSpace>("training_set_epoch_order", 2, size);
}

void TrainingSet::select(const BatchRef& bref) {
  const int n = bref.count;
  if (n > max_batch_) throw std::logic_error("training set: batch larger than the workspace");
  const std::int64_t N = static_cast<std::int64_t>(data_.extent(0));
  const std::uint32_t seed = bref.seed;
  const std::uint64_t first = bref.first;
  const auto rows = idx_;
  if (!epochs_) {
    const std::uint32_t step = static_cast<std::uint32_t>(bref.step);
    Kokkos::parallel_for(
        "bf::minibatch", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          // Minibatch by global index, with replacement: index ⌊u N⌋.
          const RngStream s(seed, Purpose::minibatch, step, first + static_cast<std::uint64_t>(i));
          std::int64_t k = static_cast<std::int64_t>(s.uniform(0) * static_cast<double>(N));
          rows(i) = k < N ? k : N - 1;
        });
    return;
  }
  // Epochs: global sample g of the run (step × batch + its index in the batch)
  // is point order_{g / N}[g mod N]; a batch of at most N spans two epochs at most.
  if (bref.global > N) throw std::logic_error("epoch minibatches need a batch of at most the data set");
  const std::int64_t g0 = bref.step * bref.global + static_cast<std::int64_t>(first), e0 = g0 / N;
  if (order_epoch_ != e0 || order_seed_ != seed) {
    auto h = Kokkos::create_mirror_view(order_);
    for (int r = 0; r < 2; ++r) {
      const auto o = epoch_order(seed, e0 + r, N);
      for (std::int64_t i = 0; i < N; ++i) h(r, i) = o[static_cast<std::size_t>(i)];
    }
    Kokkos::deep_copy(order_, h);
    order_epoch_ = e0;
    order_seed_ = seed;
  }
  const auto ord = order_;
  Kokkos::parallel_for(
      "bf::minibatch_epochs", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t g = g0 + i;
        rows(i) = ord(g / N - e0, g % N);
      });
}

std::vector<std::int64_t> TrainingSet::indices(const BatchRef& bref) {
  select(bref);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), idx_);
  return std::vector<std::int64_t>(h.data(), h.data() + bref.count);
}

}  // namespace bf
