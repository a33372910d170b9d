// The subcommands of the boltzflow program.
#pragma once

#include <string>
#include <vector>

#include "src/io/mpi_env.hpp"

namespace bf {

using CommandFn = int (*)(Environment& env, const std::vector<std::string>& args);

struct Command {
  const char* name;
  CommandFn run;
  const char* summary;
};

int cmd_check(Environment& env, const std::vector<std::string>& args);
int cmd_train(Environment& env, const std::vector<std::string>& args);
int cmd_evaluate(Environment& env, const std::vector<std::string>& args);
int cmd_sample(Environment& env, const std::vector<std::string>& args);
int cmd_inspect(Environment& env, const std::vector<std::string>& args);
int cmd_bench(Environment& env, const std::vector<std::string>& args);

/// Every command, in --help order.
const std::vector<Command>& commands();

/// Prints on rank 0 only.
void print_root(const Environment& env, const std::string& text);

}  // namespace bf
