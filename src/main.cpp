// boltzflow: flow-based samplers of Boltzmann densities.
//   boltzflow <command> [options]     (boltzflow --help lists the commands)
// MPI and Kokkos are initialised once here; only --kokkos-* arguments reach
// Kokkos. Exit codes: 0 success, 2 bad input, 3 stopped by a signal after
// checkpointing, 1 anything else.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "src/commands/commands.hpp"
#include "src/errors.hpp"
#include "src/run/signals.hpp"
#include "src/io/mpi_env.hpp"
#include "src/version.hpp"

namespace bf {

namespace {

std::string usage() {
  std::string s =
      "usage: boltzflow <command> [options]\n"
      "       mpirun -np N boltzflow <command> [options]\n\n"
      "Flow-based samplers of Boltzmann densities (Neural Hamiltonian Flows, deformation-trajectory CNFs)\n"
      "on phi^4 lattices, Gaussian mixtures and a supernova cosmology posterior.\n\ncommands:\n";
  for (const auto& c : commands()) s += "  " + std::string(c.name) + std::string(10 - std::strlen(c.name), ' ') + c.summary + "\n";
  s += "\n'boltzflow <command> --help' gives the options of a command.\n"
       "Kokkos options (--kokkos-num-threads=N with Kokkos 4, --kokkos-threads=N with Kokkos 3,\n"
       "--kokkos-device-id=N, ...) are passed to Kokkos; one it does not know is an error.\n"
       "Exit codes: 0 success, 1 failure, 2 bad input, 3 stopped by a signal after checkpointing.\n";
  return s;
}

}  // namespace
}  // namespace bf

int main(int argc, char** argv) {
  using namespace bf;
  // First thing: SIGTERM/SIGUSR1 only set a flag (a scheduler's signal can
  // arrive while MPI is still starting; the default action would kill us).
  install_stop_handlers();
  std::vector<std::string> kokkos_args, args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    (a.rfind("--kokkos-", 0) == 0 ? kokkos_args : args).push_back(a);
  }
  Environment env(argc, argv, kokkos_args);
  if (args.empty()) {
    if (env.root()) std::cerr << "boltzflow: error: no command given\n\n" << usage();
    return kExitBadInput;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_root(env, usage());
    return kExitOk;
  }
  if (args[0] == "--version") {
    print_root(env, build_description() + "\n");
    return kExitOk;
  }
  const Command* cmd = nullptr;
  for (const auto& c : commands())
    if (args[0] == c.name) cmd = &c;
  if (!cmd) {
    if (env.root()) std::cerr << "boltzflow: error: unknown command '" << args[0] << "'\n\n" << usage();
    return kExitBadInput;
  }
  try {
    return cmd->run(env, std::vector<std::string>(args.begin() + 1, args.end()));
  } catch (const InputError& e) {
    if (env.root()) std::cerr << "boltzflow " << cmd->name << ": error: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const RunError& e) {
    if (env.root()) std::cerr << "boltzflow " << cmd->name << ": failure: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "boltzflow " << cmd->name << " (rank " << env.rank() << "): failure: " << e.what() << "\n";
    return kExitFailure;
  }
}
