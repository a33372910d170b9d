// boltzflow train --config FILE [--out DIR] [--resume] [--section.key VALUE ...]
#include "src/commands/cli.hpp"
#include "src/commands/commands.hpp"
#include "src/run/trainer.hpp"

namespace bf {

int cmd_train(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(), "INI configuration (without it: the built-in defaults)")(
      "out", po::value<std::string>(), "run directory (same as --run.out)")(
      "resume", "continue the run in the run directory from its checkpoint.h5");
  add_config_options(desc, {});
  const auto vm = parse_command_line(args, desc, "train");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow train [--config FILE] [--out DIR] [--resume] [--section.key VALUE ...]",
                              "Trains a flow data-parallel over the MPI ranks (the global batch is split across "
                              "them), evaluating every run.eval_every steps and checkpointing every "
                              "run.checkpoint_every steps to DIR/checkpoint.h5. SIGTERM or SIGUSR1 checkpoint and "
                              "exit with code 3; --resume continues bit for bit.",
                              desc, {"run", "train", "model", "target", "eval"}));
    return kExitOk;
  }
  Config cfg;
  apply_command_line(cfg, vm);
  if (vm.count("out")) cfg.set("run.out", vm["out"].as<std::string>(), "--out");
  return run_training(env, cfg, vm.count("resume") > 0, FaultPlan::from_environment());
}

}  // namespace bf
