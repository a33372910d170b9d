// boltzflow check: score a sampler whose answer is known.
//
// Draws samples from a proposal, either the target's exact sampler (then
// reverse/forward KL = 0 and ESS = 1 exactly) or a broad base distribution used
// as an importance proposal (then log Z of a normalised target is 0 within its
// error bar), computes every metric per rank and reduces them exactly across
// ranks. It exercises targets, samplers, metrics and the MPI reduction end to end.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "physics/targets.hpp"
#include "src/commands/cli.hpp"
#include "src/commands/commands.hpp"
#include "src/io/metrics_mpi.hpp"
#include "src/io/mpi_env.hpp"
#include "src/run/run_dir.hpp"
#include "src/run/target_config.hpp"

namespace bf {

int cmd_check(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(), "INI file with [target] and [run] keys")(
      "target", po::value<std::string>(), "shorthand for --target.name")(
      "samples", po::value<std::string>()->default_value("100000"), "global number of samples (split over ranks)")(
      "proposal", po::value<std::string>()->default_value("auto"),
      "auto (the exact sampler where the target has one, else gauss), exact, gauss, gengauss, softuniform")(
      "proposal.scale", po::value<std::string>(),
      "gauss: standard deviation (default: 1.5 x the largest |mode coordinate|, at least 1)")(
      "proposal.sigma", po::value<std::string>()->default_value("1"), "gengauss: sigma")(
      "proposal.power", po::value<std::string>()->default_value("2"), "gengauss: p")(
      "proposal.half_width", po::value<std::string>()->default_value("3"), "softuniform: a")(
      "json", po::value<std::string>(), "write the global and per-rank metrics to this JSON file");
  add_config_options(desc, {"run", "target"});
  const auto vm = parse_command_line(args, desc, "check");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow check [--target NAME] [--samples N] [--proposal P] [--json FILE] "
                              "[--target.KEY VALUE ...]",
                              "Scores a sampler whose answer is known: the target's exact sampler, or a broad "
                              "base distribution as importance proposal. Prints every metric per rank and "
                              "globally (reduced exactly across MPI ranks).",
                              desc, {"run", "target"}));
    return kExitOk;
  }
  Config cfg;
  apply_command_line(cfg, vm);
  if (vm.count("target")) cfg.set("target.name", vm["target"].as<std::string>(), "--target");
  const long long n_total = parse_int(vm["samples"].as<std::string>(), "--samples");
  if (n_total < 1) throw InputError("--samples must be at least 1, got " + std::to_string(n_total));
  if (vm.count("json")) root_agreed(env, [&] { check_new_output_file(vm["json"].as<std::string>(), "--json"); });
  const Settings settings = Settings::from(with_presets(cfg));
  const std::uint32_t seed = static_cast<std::uint32_t>(settings.run.seed);
  const auto target = make_target(settings.target);
  const int d = target->dim();

  // The proposal.
  std::string kind = vm["proposal"].as<std::string>();
  if (kind == "auto") kind = target->has_sampler() ? "exact" : "gauss";
  const Distribution* proposal = nullptr;
  std::unique_ptr<Distribution> base;
  if (kind == "exact") {
    if (!target->has_sampler() || !std::isfinite(target->log_z()))
      throw InputError("--proposal exact: target '" + target->name() + "' has no exact sampler");
    proposal = target.get();
  } else {
    BaseSpec bs;
    bs.kind = kind;
    double far = 0.0;
    for (const auto& m : target->modes().means)
      for (double v : m) far = std::fmax(far, std::fabs(v));
    bs.scale = vm.count("proposal.scale") ? parse_real(vm["proposal.scale"].as<std::string>(), "--proposal.scale")
                                          : std::fmax(1.0, 1.5 * far);
    bs.sigma = parse_real(vm["proposal.sigma"].as<std::string>(), "--proposal.sigma");
    bs.power = parse_real(vm["proposal.power"].as<std::string>(), "--proposal.power");
    bs.half_width = parse_real(vm["proposal.half_width"].as<std::string>(), "--proposal.half_width");
    try {
      base = make_base(bs, d);
    } catch (const std::invalid_argument& e) {
      throw InputError(std::string("--proposal: ") + e.what());
    }
    proposal = base.get();
  }

  // This rank's share of the global sample indices.
  const Slice mine = split_range(n_total, env.rank(), env.size());
  // In chunks of at most 2^18 samples (the sums merge exactly), so any --samples fits in memory.
  const long long chunk = std::min<long long>(mine.count(), 1LL << 18);
  Matrix<double> xbuf("check_x", static_cast<std::size_t>(std::max(1LL, chunk)), d);
  Vector<double> qbuf("check_log_q", static_cast<std::size_t>(std::max(1LL, chunk)));
  const bool forward = target->has_sampler() && std::isfinite(target->log_z());
  MetricSums local;
  for (long long c0 = 0; c0 == 0 || c0 < mine.count(); c0 += chunk) {
    const long long n = std::min(chunk, mine.count() - c0);
    const Matrix<double> x = Kokkos::subview(xbuf, std::make_pair(0LL, n), Kokkos::ALL());
    const Vector<double> log_q = Kokkos::subview(qbuf, std::make_pair(0LL, n));
    const std::uint64_t first = static_cast<std::uint64_t>(mine.begin + c0);
    if (n > 0) {
      proposal->sample(seed, Purpose::check_proposal, 0, first, x);
      proposal->log_density(x, log_q);
    }
    MetricSums s = metric_sums(*target, x, log_q);
    if (forward) {
      if (n > 0) {
        target->sample(seed, Purpose::target_sample, 0, first, x);
        proposal->log_density(x, log_q);
      }
      add_forward_sums(s, *target, x, log_q);
    }
    local = c0 == 0 ? s : merge(local, s);
    if (n <= 0) break;
  }
  Kokkos::fence();
  const MetricSums global = allreduce(local, env.comm());
  const std::vector<MetricSums> per_rank = gather_to_root(local, env.comm());
  if (!env.root()) return kExitOk;

  const Metrics g = finalize(global, *target);
  std::ostringstream os;
  os << "boltzflow check\n  target:   " << target->description() << "\n  proposal: "
     << (kind == "exact" ? "the target's exact sampler" : proposal->description()) << "\n  samples:  " << n_total
     << " on " << env.size() << " rank(s), seed " << seed << ", Kokkos " << kokkos_backend() << "\n\n";
  os << metrics_table_header();
  Json ranks = Json::array();
  for (std::size_t r = 0; r < per_rank.size(); ++r) {
    const Metrics m = finalize(per_rank[r], *target);
    os << metrics_table_row(std::to_string(r), m);
    Json jr = to_json(m);
    jr["rank"] = static_cast<long long>(r);
    ranks.push_back(jr);
  }
  os << metrics_table_row("all", g) << "\nmode coverage (" << target->modes().rule << "):";
  for (std::size_t k = 0; k < g.mode_fractions.size(); ++k)
    os << " " << fmt_num(std::round(g.mode_fractions[k] * 1e4) / 1e4) << " (" << fmt_num(g.mode_weights[k]) << ")";
  os << "\n";
  std::cout << os.str() << std::flush;

  if (vm.count("json")) {
    Json j = to_json(g);
    j["ranks"] = env.size();
    j["target"] = target->name();
    j["target_description"] = target->description();
    j["proposal"] = kind;
    j["seed"] = static_cast<long long>(seed);
    j["per_rank"] = ranks;
    const std::string path = vm["json"].as<std::string>();
    std::ofstream out(path);
    if (!out) throw InputError("--json: cannot write '" + path + "'");
    out << j.dump(2) << "\n";
  }
  return kExitOk;
}

}  // namespace bf
