// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Every random number in boltzflow is a pure function of
//   key     = (seed, purpose)
//   counter = (draw, sample index low, sample index high, step)
// so the noise of global sample i at step s never depends on how many ranks or
// threads share the batch, and resuming a run needs no generator state beyond
// the step. Kokkos' random pools are neither rank-aware nor reproducible on GPUs.
#pragma once

#include "physics/core.hpp"

namespace bf {

/// What a stream of random numbers is for; part of the Philox key, so streams
/// of different purposes never overlap.
enum class Purpose : std::uint32_t {
  check_proposal = 1,   // `boltzflow check` importance proposal
  target_sample = 2,    // exact samples of a target (forward metrics, data sets)
  init = 3,             // parameter initialisation
  base_sample = 4,      // base / prior samples of a flow
  momentum = 5,         // NHF momentum (encoder reparameterisation)
  minibatch = 6,        // minibatch selection
  eval = 7,             // evaluation samples
  sample = 8,           // `boltzflow sample`
  dataset = 9,          // training data sets drawn from a target
  minibatch_order = 10, // the order of a data set in each epoch (epoch minibatches)
  mcmc = 11,            // `boltzflow sample --mcmc`: the accept/reject uniforms
  marginal_momentum = 12,  // NHF marginal estimate: the K momenta per sample
  path_time = 13,       // Hamiltonian generative flow: the time of each sample on its path
  path_noise = 14,      // Hamiltonian generative flow: the path's noise ε
  invariance_check = 15,  // symmetry: the prior's samples its invariance is checked at
  symmetry_momentum = 16, // symmetry constraint: the momenta p of the bracket {g, H}(q, p)
  symmetry_points = 17,   // symmetry constraint: its positions q, when drawn from the prior
  symmetry_orbit = 18,    // symmetry constraint: the group element moving a start position along its orbit
  test = 100,           // tests
};

struct Philox4x32 {
  std::uint32_t v[4];
};

/// Philox4x32 with 10 rounds; matches Random123's philox4x32_R(10, ctr, key).
KOKKOS_INLINE_FUNCTION Philox4x32 philox4x32_10(Philox4x32 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += W0;
      k1 += W1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * ctr.v[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * ctr.v[2];
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

/// 52 random bits as a double strictly inside (0, 1): (k + 1/2) / 2^52, whose
/// extremes 2^-53 and 1 - 2^-53 are exact (53 bits would round up to 1).
KOKKOS_INLINE_FUNCTION double u01_open(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 12;
  return (static_cast<double>(bits) + 0.5) * (1.0 / 4503599627370496.0);
}

/// The random numbers of one sample: fixed key, step and global sample index;
/// `draw` enumerates independent 128-bit blocks within the sample.
struct RngStream {
  std::uint32_t k0, k1;
  std::uint32_t step;
  std::uint64_t index;

  KOKKOS_INLINE_FUNCTION RngStream(std::uint32_t seed, Purpose purpose, std::uint32_t step_,
                                   std::uint64_t index_)
      : k0(seed), k1(static_cast<std::uint32_t>(purpose)), step(step_), index(index_) {}

  KOKKOS_INLINE_FUNCTION Philox4x32 block(std::uint32_t draw) const {
    return philox4x32_10(Philox4x32{{draw, static_cast<std::uint32_t>(index),
                                     static_cast<std::uint32_t>(index >> 32), step}},
                         k0, k1);
  }

  /// Uniform in (0, 1); two per block (which = 0, 1).
  KOKKOS_INLINE_FUNCTION double uniform(std::uint32_t draw, int which = 0) const {
    const Philox4x32 b = block(draw);
    return which == 0 ? u01_open(b.v[0], b.v[1]) : u01_open(b.v[2], b.v[3]);
  }

  /// Standard normal number j of this sample: Box-Muller on block j/2,
  /// the cosine branch for even j, the sine branch for odd j.
  KOKKOS_INLINE_FUNCTION double normal(std::uint32_t j) const {
    const Philox4x32 b = block(j >> 1);
    const double u1 = u01_open(b.v[0], b.v[1]);
    const double u2 = u01_open(b.v[2], b.v[3]);
    const double r = kmath::sqrt(-2.0 * kmath::log(u1));
    const double a = 2.0 * kPi * u2;
    return (j & 1u) ? r * kmath::sin(a) : r * kmath::cos(a);
  }

  /// Gamma(shape, 1) by Marsaglia & Tsang (2000), using the draw blocks
  /// [lane * 256, lane * 256 + 256): two blocks per attempt. For shape < 1,
  /// Gamma(shape) = Gamma(shape + 1) * U^(1/shape).
  KOKKOS_INLINE_FUNCTION double gamma(double shape, std::uint32_t lane) const {
    const std::uint32_t base = lane * 256u;
    const bool boost = shape < 1.0;
    const double a = boost ? shape + 1.0 : shape;
    const double d = a - 1.0 / 3.0;
    const double c = 1.0 / kmath::sqrt(9.0 * d);
    double v = 1.0;
    for (std::uint32_t attempt = 0; attempt < 126; ++attempt) {
      const Philox4x32 bn = block(base + 2 * attempt);
      const double u1 = u01_open(bn.v[0], bn.v[1]);
      const double u2 = u01_open(bn.v[2], bn.v[3]);
      const double x = kmath::sqrt(-2.0 * kmath::log(u1)) * kmath::cos(2.0 * kPi * u2);
      const double t = 1.0 + c * x;
      if (t <= 0.0) continue;
      v = t * t * t;
      const double u = uniform(base + 2 * attempt + 1, 0);
      if (kmath::log(u) < 0.5 * x * x + d - d * v + d * kmath::log(v)) break;
    }
    double g = d * v;
    if (boost) {
      g *= kmath::pow(uniform(base + 255, 0), 1.0 / shape);
    }
    return g;
  }
};

}  // namespace bf
