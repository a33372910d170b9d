// boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--json FILE]
#include <fstream>
#include <iostream>
#include <sstream>

#include "src/cli.hpp"
#include "src/commands.hpp"
#include "src/evaluation.hpp"
#include "src/loaded_run.hpp"
#include "src/metrics_mpi.hpp"
#include "src/model_config.hpp"
#include "src/run_dir.hpp"

namespace bf {

namespace {
std::string metrics_line(const std::string& who, const Metrics& m) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-6s %10lld %12.6g %12.6g %12.6g %10.3g %12.6g %12.6g %10.4g %10.4g", who.c_str(),
                static_cast<long long>(m.samples), m.reverse_kl, m.reverse_ess, m.log_z, m.log_z_stderr,
                m.forward_kl, m.forward_ess, m.hausdorff, m.mode_coverage_tv);
  return buf;
}
}  // namespace

int cmd_evaluate(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("run", po::value<std::string>(),
                                                          "run directory (its checkpoint.h5)")(
      "checkpoint", po::value<std::string>(), "a checkpoint file")(
      "eval.samples", po::value<std::string>(), "global number of samples (default: the run's eval.samples)")(
      "eval.batch", po::value<std::string>(), "samples per rank evaluated at once")(
      "json", po::value<std::string>(), "write the metrics (global and per rank) to this JSON file");
  const auto vm = parse_command_line(args, desc, "evaluate");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--json FILE]",
                              "Evaluates a trained flow: reverse KL and ESS, log Z with its standard error, "
                              "forward KL and ESS where the target has exact samples, Hausdorff distance to the "
                              "modes and mode coverage, per rank and reduced exactly over ranks.",
                              desc, {}));
    return kExitOk;
  }
  if (vm.count("run") == vm.count("checkpoint"))
    throw InputError("evaluate needs exactly one of --run DIR or --checkpoint FILE");
  const std::string path =
      vm.count("run") ? RunPaths{vm["run"].as<std::string>()}.checkpoint() : vm["checkpoint"].as<std::string>();
  LoadedRun run = load_run(env, path);
  if (vm.count("eval.samples")) run.cfg.set("eval.samples", vm["eval.samples"].as<std::string>(), "--eval.samples");
  if (vm.count("eval.batch")) run.cfg.set("eval.batch", vm["eval.batch"].as<std::string>(), "--eval.batch");
  const long long samples = run.cfg.get_int("eval.samples");
  const int chunk = static_cast<int>(run.cfg.get_int("eval.batch"));
  const Evaluation ev = with_precision(run.cfg, [&](auto zero) {
    using T = decltype(zero);
    auto model = make_model<T>(run.cfg, *run.target, chunk);
    if (model->layout().signature() != run.ckpt.layout_signature)
      throw InputError("checkpoint '" + path + "' does not match the model its configuration describes");
    const Vector<T> params = device_parameters<T>(run.ckpt.parameters);
    return evaluate_model<T>(env, *model, params, *run.target, run.ckpt.seed, samples,
                             run.cfg.get_bool("eval.forward"));
  });
  if (!env.root()) return kExitOk;
  std::ostringstream os;
  os << "boltzflow evaluate " << path << " (step " << run.ckpt.step << ")\n  target: " << run.target->description()
     << "\n  samples: " << samples << " on " << env.size() << " rank(s)\n\n"
     << "rank      samples   reverse_kl  reverse_ess        log_z     stderr   forward_kl  forward_ess  "
        "hausdorff  cover_tv\n";
  Json per_rank = Json::array();
  for (std::size_t r = 0; r < ev.per_rank.size(); ++r) {
    os << metrics_line(std::to_string(r), ev.per_rank[r]) << "\n";
    Json j = to_json(ev.per_rank[r]);
    j["rank"] = static_cast<long long>(r);
    per_rank.push_back(j);
  }
  os << metrics_line("all", ev.global) << "\n";
  std::cout << os.str() << std::flush;
  if (vm.count("json")) {
    Json j = to_json(ev.global);
    j["ranks"] = env.size();
    j["per_rank"] = per_rank;
    j["checkpoint"] = path;
    j["step"] = static_cast<long long>(run.ckpt.step);
    j["target"] = run.target->name();
    std::ofstream out(vm["json"].as<std::string>());
    if (!out) throw InputError("--json: cannot write '" + vm["json"].as<std::string>() + "'");
    out << j.dump(2) << "\n";
  }
  return kExitOk;
}

}  // namespace bf
