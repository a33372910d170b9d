// One flat parameter buffer per model, with named slices, a gradient buffer
// of the same layout, initialisation from the counter-based RNG, and Adam with
// a cosine learning-rate schedule and optional gradient-norm clipping — each
// one kernel over the flat buffer. A checkpoint is one dataset; the gradient
// allreduce is one MPI call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "physics/core.hpp"

namespace bf {

/// How a slice is initialised. Weights: N(0, gain² / fan_in) (LeCun normal);
/// `value` for constants.
struct ParamInit {
  enum Kind { zero, normal, constant } kind = zero;
  double gain = 1.0;  // normal: standard deviation = gain / sqrt(fan_in)
  int fan_in = 1;
  double value = 0.0;  // constant
};

struct ParamSlice {
  std::string name;        // "V.k0.W1"
  std::size_t offset = 0;  // into the flat buffer (multiple of kAlign)
  std::size_t size = 0;
  std::vector<int> shape;  // {rows, cols} for weights, {n} for vectors
  ParamInit init;
};

/// Slices of one model's flat buffer. Offsets are aligned to 64 bytes (8
/// doubles) so every weight matrix starts GEMM-aligned; padding stays zero.
class ParameterLayout {
 public:
  static constexpr std::size_t kAlign = 16;
  std::size_t add(const std::string& name, std::vector<int> shape, ParamInit init);
  std::size_t size() const { return size_; }
  /// Number of trainable numbers (without padding).
  std::size_t count() const;
  const std::vector<ParamSlice>& slices() const { return slices_; }
  const ParamSlice& slice(const std::string& name) const;
  /// A fingerprint of names, shapes and offsets (checkpoint compatibility).
  std::string signature() const;

 private:
  std::vector<ParamSlice> slices_;
  std::size_t size_ = 0;
};

/// Fills `values` by the layout's init rules: parameter i of the flat buffer
/// draws from Philox(seed, Purpose::init, counter i), so initial parameters
/// do not depend on ranks, threads or backend.
template <class T>
void initialize_parameters(const ParameterLayout& layout, const Vector<T>& values, std::uint32_t seed);

/// Learning rate schedule: cosine decay from lr to lr * final_fraction over
/// `total_steps` (constant when total_steps == 0 or kind == constant), with an
/// optional linear warm-up.
struct LrSchedule {
  enum Kind { constant, cosine } kind = cosine;
  double lr = 1e-3;
  double final_fraction = 0.0;
  std::int64_t total_steps = 0;
  std::int64_t warmup_steps = 0;
  /// Learning rate used for update number `step` (0-based).
  double at(std::int64_t step) const;
};

struct AdamConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip_norm = 0.0;  // clip the global gradient norm to this (0: off)
};

/// Adam (Kingma & Ba) on a flat buffer; one kernel per update.
template <class T>
class Adam {
 public:
  Adam(std::size_t n, AdamConfig cfg);
  /// On moments held elsewhere (a GroupedAdam's parts of its full-length moments).
  Adam(Vector<T> m, Vector<T> v, AdamConfig cfg);
  /// Global L2 norm of g (one reduction).
  static double norm(const Kokkos::View<const T*, MemSpace>& g);
  /// One update with learning rate lr on the gradient grad_scale * g (clipped
  /// to clip_norm when set). Returns that gradient's norm before clipping.
  double update(const Vector<T>& params, const Kokkos::View<const T*, MemSpace>& g, double lr,
                double grad_scale = 1.0);
  /// The same with the norm of grad_scale * g already known (one kernel).
  void step(const Vector<T>& params, const Kokkos::View<const T*, MemSpace>& g, double lr, double grad_scale,
            double gnorm);

  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }
  const Vector<T>& first_moment() const { return m_; }
  const Vector<T>& second_moment() const { return v_; }
  const AdamConfig& config() const { return cfg_; }

 private:
  AdamConfig cfg_;
  Vector<T> m_, v_;
  std::int64_t t_ = 0;
};

/// A contiguous part [begin, end) of the flat buffer trained by its own Adam
/// (own step count, moments and learning rate lr_scale x the run's), updated at
/// the steps s with (s mod cycle) in [first, first + count): alternating
/// min-max training, as Hamiltonian score matching's k velocity steps per force step.
struct ParameterGroup {
  std::size_t begin = 0, end = 0;
  double lr_scale = 1.0;
  std::int64_t cycle = 1, first = 0, count = 1;

  bool updates_at(std::int64_t s) const {
    const std::int64_t r = s % cycle;
    return r >= first && r < first + count;
  }
  /// Updates of this group at steps 0 … s − 1.
  std::int64_t updates_before(std::int64_t s) const {
    const std::int64_t r = s % cycle, part = r - first;
    return (s / cycle) * count + (part < 0 ? 0 : part > count ? count : part);
  }
};

/// One Adam per parameter group on full-length moment buffers (so snapshots and
/// checkpoints see one m and one v). Update t of the run is step t, so each
/// group's step count is a function of the run's (updates_before): a checkpoint
/// stores the run's alone. One group spanning the buffer is exactly Adam.
template <class T>
class GroupedAdam {
 public:
  GroupedAdam(std::size_t n, AdamConfig cfg, std::vector<ParameterGroup> groups);
  /// Update t = steps() at step s = t: each group updating at s takes lr · lr_scale on its part
  /// of grad_scale · g, clipped by its own norm (with one group, gnorm: the whole gradient's).
  void step(const Vector<T>& params, const Vector<T>& g, double lr, double grad_scale, double gnorm);
  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t);
  const Vector<T>& first_moment() const { return m_; }
  const Vector<T>& second_moment() const { return v_; }
  const std::vector<ParameterGroup>& groups() const { return groups_; }

 private:
  std::vector<ParameterGroup> groups_;
  Vector<T> m_, v_;
  std::vector<Adam<T>> parts_;
  std::int64_t t_ = 0;
};

/// Unmanaged views of parts of a flat buffer.
template <class T>
using Rows = Kokkos::View<T**, Kokkos::LayoutRight, MemSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T>
using Span = Kokkos::View<T*, MemSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

template <class T>
Rows<T> slice_matrix(const Vector<T>& buf, const ParamSlice& s) {
  return Rows<T>(buf.data() + s.offset, static_cast<std::size_t>(s.shape.at(0)), static_cast<std::size_t>(s.shape.at(1)));
}
template <class T>
Span<T> slice_vector(const Vector<T>& buf, const ParamSlice& s) {
  return Span<T>(buf.data() + s.offset, s.size);
}

}  // namespace bf
