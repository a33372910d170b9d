// The one element-wise loop of the flows: f(i, j) over the n x d entries of a
// batch of rows (sample i, component j), as an MDRange, so kernels say what
// they do to an element and not how a flat index splits into (i, j).
#pragma once

#include "physics/core.hpp"

namespace bf {

template <class F>
void for_each_element(const char* name, std::int64_t rows, std::int64_t cols, const F& f) {
  using Policy2 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
  if (rows <= 0 || cols <= 0) return;
  Kokkos::parallel_for(name, Policy2({0, 0}, {rows, cols}), f);
}

}  // namespace bf
