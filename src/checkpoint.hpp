// HDF5 checkpoints (C API): everything needed to continue a run bit for bit.
//
//   /format                   "boltzflow-checkpoint" (attribute "version" = 1)
//   /parameters               flat parameter buffer (model precision)
//   /optimizer/m, /optimizer/v  Adam moments (model precision)
//   /state/*                  step, adam_steps, lr_factor, seed, consecutive_failures, wall_time
//   /config                   the fully resolved configuration (INI text)
//   /metrics                  the metrics history up to /state/step (JSON lines)
//   /provenance/*             program version, ranks, Kokkos backend, precision,
//                             model kind and parameter-layout signature, hostname, time
//
// Written by one rank to "<path>.tmp" and renamed over <path>, so a job killed
// while writing leaves the previous checkpoint intact.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bf {

struct Checkpoint {
  // state
  std::int64_t step = 0;
  std::int64_t adam_steps = 0;
  double lr_factor = 1.0;
  std::uint32_t seed = 0;
  std::int64_t consecutive_failures = 0;
  double wall_time = 0;
  // buffers (values exactly representable in `precision`)
  std::vector<double> parameters, adam_m, adam_v;
  // text
  std::string config;
  std::string metrics;
  // provenance
  std::string program_version, backend, precision, model_kind, layout_signature, created;
  int ranks = 1;
};

/// Writes atomically (temporary file + rename). Throws std::runtime_error on I/O failure.
void write_checkpoint(const std::string& path, const Checkpoint& c);

/// Reads and validates a checkpoint. Missing, truncated, non-HDF5 and foreign
/// files raise InputError naming the file and the problem.
Checkpoint read_checkpoint(const std::string& path);

/// Whether `path` looks like a boltzflow checkpoint (without throwing).
bool is_checkpoint(const std::string& path);

}  // namespace bf
