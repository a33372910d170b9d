// Linear symmetry generators of phase space (Rezende et al. 2019, "Equivariant
// Hamiltonian Flows"): g_k(q, p) = pᵀ B_k q with B_k a D x D matrix. Its flow
// moves q̇ = ∂g/∂p = B q and ṗ = −∂g/∂q = −Bᵀ p; with B antisymmetric that is a
// rotation of q and the same rotation of p. The Poisson bracket with
// H = K(p) + U(q) is
//   {g, H} = ∂g/∂q·∂H/∂p − ∂g/∂p·∂H/∂q = (Bᵀ p)·∇K(p) − (B q)·∇U(q)
// (the seed misprints the second term of the bracket; this sign follows from
// q̇ = ∂H/∂p, ṗ = −∂H/∂q in the same paragraph). A density exp(−E(q)) is
// invariant under the generator iff (B q)·∇E(q) = 0 everywhere; N(0, I) in p is
// invariant iff B is antisymmetric.
//   so2         D = 2: B = [[0, −1], [1, 0]], g = q₁p₂ − q₂p₁
//   o2_lattice  D = 2V: the same 2 x 2 block at every site (coordinates
//               interleaved per site): the global rotation of a two-component field
//   matrix:FILE K matrices of D x D numbers, row-major, whitespace-separated
#pragma once

#include <string>
#include <vector>

#include "physics/distribution.hpp"
#include "physics/rng.hpp"

namespace bf {

struct Generators {
  int dim = 0;
  std::vector<std::vector<double>> b;  // K matrices, each D x D row-major
  std::string name;                     // so2 | o2_lattice | matrix:FILE
  int count() const { return static_cast<int>(b.size()); }
  bool empty() const { return b.empty(); }
};

/// Parses model.symmetry for dimension D: "none" (empty), so2, o2_lattice or
/// matrix:FILE. Throws std::invalid_argument naming the problem: a wrong
/// dimension, an unreadable or malformed file, or a generator that is not
/// antisymmetric (the momentum distribution N(0, I) would not be invariant).
Generators make_generators(const std::string& spec, int dim);

/// max over points and generators of |(B q)·∇E(q)| / (|B q| |∇E(q)| + tiny): 0 (to rounding)
/// iff exp(−E) is invariant at the points q (rows of x).
double invariance_violation(const Distribution& d, const Generators& g, const ConstMatrix<double>& x);

/// Throws std::invalid_argument if `prior` is not invariant under the generators, checked at
/// 256 of its own samples (relative violation above 1e-9).
void require_invariant_prior(const Distribution& prior, const Generators& g);

/// The group's action on points: each row x of a matrix moves to
///   exp(θ_K B_K) ⋯ exp(θ_1 B_1) x,
/// the exponentials applied to the vector by their Taylor series in substeps h with
/// |h| ‖B‖∞ ≤ 1 (each series summed until its term is below 1e-17 of the result), in
/// double precision: a rotation, so |x| is kept. For a target invariant under the
/// generators the moved points have the same density as the originals: the orbits of
/// data are more samples of the target. With angles uniform on [−π, π) the moved point
/// is uniform on the orbit when every generator has period 2π (so2, o2_lattice, any B
/// whose eigenvalues are ±i times integers); for other generators it is still on the
/// orbit, not uniform over it.
class GroupAction {
 public:
  GroupAction() = default;
  /// For batches of at most `capacity` rows.
  GroupAction(const Generators& g, int capacity);
  int count() const { return count_; }
  /// Moves the rows of x (n <= capacity) by the angles theta (n x K).
  void apply(const ConstMatrix<double>& theta, const Matrix<double>& x) const;
  /// Moves the rows of x by angles uniform on [−π, π), those of row i drawn from
  /// (seed, purpose, step, first + i): a row's move depends on its global index only.
  void apply_random(std::uint32_t seed, Purpose purpose, std::uint32_t step, std::uint64_t first,
                    const Matrix<double>& x) const;

 private:
  int dim_ = 0, count_ = 0;
  Matrix<double> b_;          // K·D x D, the generators stacked
  std::vector<double> norm_;  // ‖B_k‖∞ (the largest absolute row sum)
  Matrix<double> theta_, t_, u_;  // scratch: the angles, two Taylor terms per row
};

}  // namespace bf
