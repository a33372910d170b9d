// NhfFlow's minibatches of the data set (density estimation): with
// replacement by global sample index, or in epochs (every point once per
// epoch, whatever the rank count).
#include <utility>
#include <vector>

#include "flows/models/nhf_impl.hpp"

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

template <class T>
void detail::NhfImpl<T>::select_minibatch(const BatchRef& bref) {
  const int n = bref.count;
  const std::int64_t N = static_cast<std::int64_t>(data.extent(0));
  const std::uint32_t seed = bref.seed;
  const std::uint64_t first = bref.first;
  const auto rows = idx;
  if (!spec.epochs) {
    const std::uint32_t step = static_cast<std::uint32_t>(bref.step);
    Kokkos::parallel_for(
        "bf::nhf_minibatch", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          // Minibatch by global index, with replacement: index ⌊u N⌋.
          const RngStream s(seed, Purpose::minibatch, step, first + static_cast<std::uint64_t>(i));
          std::int64_t k = static_cast<std::int64_t>(s.uniform(0) * static_cast<double>(N));
          rows(i) = k < N ? k : N - 1;
        });
    return;
  }
  // Epochs: global sample g of the run (step × batch + its index in the batch)
  // is point order_{g / N}[g mod N]; a batch of at most N spans two epochs at most.
  if (bref.global > N) throw std::logic_error("nhf: epoch minibatches need a batch of at most the data set");
  const std::int64_t g0 = bref.step * bref.global + static_cast<std::int64_t>(first), e0 = g0 / N;
  if (order_epoch != e0 || order_seed != seed) {
    auto h = Kokkos::create_mirror_view(order);
    for (int r = 0; r < 2; ++r) {
      const auto o = epoch_order(seed, e0 + r, N);
      for (std::int64_t i = 0; i < N; ++i) h(r, i) = o[static_cast<std::size_t>(i)];
    }
    Kokkos::deep_copy(order, h);
    order_epoch = e0;
    order_seed = seed;
  }
  const auto ord = order;
  Kokkos::parallel_for(
      "bf::nhf_minibatch_epochs", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t g = g0 + i;
        rows(i) = ord(g / N - e0, g % N);
      });
}

template <class T>
std::vector<std::int64_t> NhfFlow<T>::minibatch_indices(const BatchRef& bref) {
  if (!m_->spec.elbo) throw std::logic_error("nhf: minibatches exist only for train.loss = elbo");
  if (bref.count > m_->max_batch) throw std::logic_error("nhf: batch larger than the workspace");
  m_->select_minibatch(bref);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_->idx);
  return std::vector<std::int64_t>(h.data(), h.data() + bref.count);
}

template void detail::NhfImpl<float>::select_minibatch(const BatchRef&);
template void detail::NhfImpl<double>::select_minibatch(const BatchRef&);
template std::vector<std::int64_t> NhfFlow<float>::minibatch_indices(const BatchRef&);
template std::vector<std::int64_t> NhfFlow<double>::minibatch_indices(const BatchRef&);

}  // namespace bf
