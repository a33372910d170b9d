// `boltzflow train`: data-parallel training with exact checkpoints.
#pragma once

#include "src/run/config.hpp"
#include "src/run/faults.hpp"
#include "src/io/mpi_env.hpp"

namespace bf {

/// Runs (or resumes, with `resume`) the training `cfg` describes in the run
/// directory run.out. Returns the exit code: 0 done, 3 stopped by a signal
/// after checkpointing, 1 stopped after repeated non-finite steps.
int run_training(Environment& env, Config cfg, bool resume, const FaultPlan& faults = {});

/// Keys that may differ between a run and its resumption.
bool is_resumable_key(const std::string& key);

}  // namespace bf
