// The state of a training run: everything needed to continue it bit for bit,
// declared once in TrainState::fields. Saving (HDF5), loading and the
// broadcast from rank 0 all walk that one list, so a new field is one line.
//
// Checkpoint file (HDF5, C API), format version 1:
//   /format                     "boltzflow-checkpoint" (attribute "version" = 1)
//   /parameters                 flat parameter buffer (model precision)
//   /optimizer/m, /optimizer/v  Adam moments (model precision)
//   /optimizer/model            the model's own optimiser state (Model::state; double; may
//                               be absent in checkpoints of models that keep none)
//   /state/*                    step, adam_steps, lr_factor, seed, consecutive_failures, wall_time
//   /config                     the fully resolved configuration (INI text)
//   /metrics                    the metrics history up to /state/step (JSON lines)
//   /provenance/*               program version, ranks, Kokkos backend, precision,
//                               model kind and parameter-layout signature, hostname, time
//
// Written by one rank to "<path>.tmp" and renamed over <path>, so a job killed
// while writing leaves the previous checkpoint intact.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "src/io/mpi_env.hpp"

namespace bf {

struct TrainState {
  // counters
  std::int64_t step = 0;
  std::int64_t adam_steps = 0;
  double lr_factor = 1.0;
  std::int64_t seed = 0;
  std::int64_t consecutive_failures = 0;
  double wall_time = 0;
  // buffers (values exactly representable in `precision`)
  std::vector<double> parameters, adam_m, adam_v;
  std::vector<double> model_state;  // always double (Lagrange multipliers: not rounded to the model's precision)
  // text
  std::string config;
  std::string metrics;
  // provenance
  std::string program_version, backend, precision, model_kind, layout_signature, created;
  std::int64_t ranks = 1;

  /// The one field list: f(hdf5_path, member) for every member above, in file order.
  template <class Self, class F>
  static void fields(Self& s, F&& f) {
    f("parameters", s.parameters);
    f("optimizer/m", s.adam_m);
    f("optimizer/v", s.adam_v);
    f("optimizer/model", s.model_state);
    f("state/step", s.step);
    f("state/adam_steps", s.adam_steps);
    f("state/lr_factor", s.lr_factor);
    f("state/seed", s.seed);
    f("state/consecutive_failures", s.consecutive_failures);
    f("state/wall_time", s.wall_time);
    f("config", s.config);
    f("metrics", s.metrics);
    f("provenance/program_version", s.program_version);
    f("provenance/ranks", s.ranks);
    f("provenance/backend", s.backend);
    f("provenance/precision", s.precision);
    f("provenance/model_kind", s.model_kind);
    f("provenance/layout_signature", s.layout_signature);
    f("provenance/created", s.created);
  }
};

/// Writes atomically (temporary file + rename). Throws std::runtime_error on I/O
/// failure. `after_parameters` (tests only) runs once /parameters is written.
void save_state(const std::string& path, const TrainState& s,
                const std::function<void()>& after_parameters = nullptr);

/// Reads and validates a checkpoint. Missing, truncated, non-HDF5 and foreign
/// files raise InputError naming the file and the problem.
TrainState load_state(const std::string& path);

/// Collective: every rank leaves with rank 0's state.
void broadcast_state(const Environment& env, TrainState& s);

/// Whether `path` looks like a boltzflow checkpoint (without throwing).
bool is_checkpoint(const std::string& path);

}  // namespace bf
