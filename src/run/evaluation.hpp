// Evaluation of a model's samples with the full metric suite, reduced
// exactly across ranks. Used by `train` (every run.eval_every steps) and by
// `evaluate`. The evaluation samples are the same at every evaluation of a
// run (Philox purpose eval, counter step 0): figures along a training run
// are compared on common random numbers.
#pragma once

#include <vector>

#include "flows/model.hpp"
#include "physics/metrics.hpp"
#include "src/io/mpi_env.hpp"

namespace bf {

struct Evaluation {
  Metrics global;
  Metrics local;                  // this rank's samples
  std::vector<Metrics> per_rank;  // on rank 0
};

/// Draws `samples` global samples from the model (split over ranks), and,
/// when `forward` and the target has an exact sampler and the model a
/// density, as many exact target samples for the forward metrics. For a
/// phase-space flow, `momentum_samples` K > 0 adds the marginal estimate's
/// figures (at the flow's samples, and at the exact samples when `forward`).
template <class T>
Evaluation evaluate_model(const Environment& env, Model<T>& model, const Vector<T>& params,
                          const Distribution& target, std::uint32_t seed, long long samples, bool forward,
                          int momentum_samples);

/// Writes a histogram report as HDF5 (/edges [bins + 1], /flow, /reweighted,
/// /reference per bin, /below and /above [flow, reweighted], /observable and
/// /reference_name), through a temporary file renamed into place.
void write_histogram(const HistogramReport& h, const std::string& path);

}  // namespace bf
