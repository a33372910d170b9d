#include "src/commands.hpp"

#include <iostream>

namespace bf {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds{
      {"check", cmd_check, "score a sampler with a known answer (exact sampler or importance proposal)"},
      {"bench", cmd_bench, "benchmarks: 'bench engine' times the network engine against the GEMM rate"},
  };
  return cmds;
}

void print_root(const Environment& env, const std::string& text) {
  if (env.root()) std::cout << text << std::flush;
}

}  // namespace bf
