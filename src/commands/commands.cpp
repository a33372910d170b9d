#include "src/commands/commands.hpp"

#include <iostream>

namespace bf {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds{
      {"train", cmd_train, "train a flow (data-parallel over MPI ranks, checkpointed, resumable)"},
      {"evaluate", cmd_evaluate, "evaluate a trained flow: ESS, KL, log Z, Hausdorff, mode coverage"},
      {"sample", cmd_sample, "draw samples with log q and log w from a trained flow into an HDF5 file"},
      {"inspect", cmd_inspect, "show what a checkpoint or sample file holds"},
      {"check", cmd_check, "score a sampler with a known answer (exact sampler or importance proposal)"},
      {"bench", cmd_bench,
       "benchmarks: 'bench engine' times the network engine against the GEMM rate, 'bench train --config FILE' "
       "times training steps (s/step, GFLOP/s, ratio to the core's best GEMM)"},
  };
  return cmds;
}

void print_root(const Environment& env, const std::string& text) {
  if (env.root()) std::cout << text << std::flush;
}

}  // namespace bf
