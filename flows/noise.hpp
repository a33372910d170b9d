// Standard normal noise by global sample index (the counter-based RNG):
// z(i, j) = normal number j of sample first + i at (seed, purpose, step).
#pragma once

#include "physics/core.hpp"
#include "physics/rng.hpp"

namespace bf {

template <class T, class Out>
void standard_normals(std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first, int n, int d,
                      const Out& z) {
  Kokkos::parallel_for(
      "bf::standard_normals", Policy(0, static_cast<std::int64_t>(n) * d), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / d;
        const int j = static_cast<int>(e - i * d);
        const RngStream s(seed, purpose, static_cast<std::uint32_t>(step), first + static_cast<std::uint64_t>(i));
        z(i, j) = static_cast<T>(s.normal(static_cast<std::uint32_t>(j)));
      });
}

}  // namespace bf
