// A checkpoint read on rank 0 and shared with every rank, with its resolved
// configuration and target: what `evaluate`, `sample` and `inspect` start from.
#pragma once

#include <memory>

#include "physics/distribution.hpp"
#include "src/run/train_state.hpp"
#include "src/run/settings.hpp"
#include "src/io/mpi_env.hpp"

namespace bf {

struct LoadedRun {
  std::string path;
  TrainState ckpt;
  Config cfg;  // the run's resolved configuration (a command may override eval.* in it)
  std::unique_ptr<Distribution> target;
  /// The typed values of cfg as it is now.
  Settings settings() const { return Settings::from(cfg); }
};

/// Collective. Bad or missing files raise InputError on every rank.
LoadedRun load_run(const Environment& env, const std::string& checkpoint_path);

/// Copies host values into a new device vector of the model precision.
template <class T>
Vector<T> device_parameters(const std::vector<double>& host);

}  // namespace bf
