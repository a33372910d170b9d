// boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--json FILE]
#include <glob.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "src/cli.hpp"
#include "src/commands.hpp"
#include "src/evaluation.hpp"
#include "src/loaded_run.hpp"
#include "src/metrics_mpi.hpp"
#include "src/model_config.hpp"
#include "src/hdf5_util.hpp"
#include "src/run_dir.hpp"
#include "src/trainer.hpp"

namespace bf {

namespace {
// One checkpoint evaluated with the full suite over every rank.
Evaluation evaluate_checkpoint(const Environment& env, LoadedRun& run, const std::string& path, long long samples) {
  const int chunk = static_cast<int>(run.cfg.get_int("eval.batch"));
  return with_precision(run.cfg, [&](auto zero) {
    using T = decltype(zero);
    auto model = make_model<T>(run.cfg, *run.target, chunk, 1);  // sampling only: no loss buffers
    if (model->layout().signature() != run.ckpt.layout_signature)
      throw InputError("checkpoint '" + path + "' does not match the model its configuration describes");
    const Vector<T> params = device_parameters<T>(run.ckpt.parameters);
    return evaluate_model<T>(env, *model, params, *run.target, run.ckpt.seed, samples,
                             run.cfg.get_bool("eval.forward"));
  });
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "nan";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// evaluate --runs GLOB... --table FILE.csv: one row per run directory, every
// metric and every configuration value, as CSV and as HDF5 (FILE.h5).
int evaluate_many(Environment& env, const std::vector<std::string>& patterns, const std::string& table,
                  const po::variables_map& vm) {
  std::vector<std::string> dirs;
  root_agreed(env, [&] {
    for (const auto& pat : patterns) {
      glob_t g{};
      if (glob(pat.c_str(), 0, nullptr, &g) == 0)
        for (std::size_t i = 0; i < g.gl_pathc; ++i)
          if (dir_exists(g.gl_pathv[i])) dirs.push_back(g.gl_pathv[i]);
      globfree(&g);
    }
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    if (dirs.empty()) throw InputError("--runs matched no run directory");
    if (file_exists(table)) throw InputError("--table '" + table + "' exists; it is not overwritten");
  });
  // Share the list.
  std::string joined;
  for (const auto& d : dirs) joined += d + "\n";
  long long n = static_cast<long long>(joined.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, env.comm());
  joined.resize(static_cast<std::size_t>(n));
  MPI_Bcast(joined.data(), static_cast<int>(n), MPI_CHAR, 0, env.comm());
  dirs.clear();
  std::istringstream in(joined);
  for (std::string d; std::getline(in, d);) dirs.push_back(d);

  const std::vector<std::string> metric_cols{"reverse_kl", "reverse_ess", "log_z",  "log_z_stderr",
                                             "forward_kl", "forward_ess", "hausdorff", "mode_coverage_tv"};
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<double>> numbers;  // [run][metric]
  for (const auto& d : dirs) {
    std::vector<std::string> row{d};
    std::vector<double> nums(metric_cols.size(), std::nan(""));
    std::string status = "ok", fractions;
    long long step = -1, samples = 0;
    Config cfg;
    try {
      LoadedRun run = load_run(env, RunPaths{d}.checkpoint());
      if (vm.count("eval.samples")) run.cfg.set("eval.samples", vm["eval.samples"].as<std::string>(), "--eval.samples");
      samples = run.cfg.get_int("eval.samples");
      const Evaluation ev = evaluate_checkpoint(env, run, d, samples);
      const Metrics& m = ev.global;
      nums = {m.reverse_kl, m.reverse_ess, m.log_z, m.log_z_stderr, m.forward_kl, m.forward_ess, m.hausdorff,
              m.mode_coverage_tv};
      for (std::size_t k = 0; k < m.mode_fractions.size(); ++k) fractions += (k ? ";" : "") + num(m.mode_fractions[k]);
      step = run.ckpt.step;
      cfg = run.cfg;
    } catch (const InputError& e) {
      status = e.what();  // a failed or unfinished task: a row that says so
    }
    row.push_back(status);
    row.push_back(std::to_string(step));
    row.push_back(std::to_string(samples));
    for (double v : nums) row.push_back(num(v));
    row.push_back(fractions);
    for (const auto& k : config_registry()) row.push_back(status == "ok" ? cfg.raw(k.key) : "");
    rows.push_back(row);
    numbers.push_back(nums);
  }
  root_agreed(env, [&] {
    std::ostringstream csv;
    csv << "run,status,step,samples";
    for (const auto& c : metric_cols) csv << "," << c;
    csv << ",mode_fractions";
    for (const auto& k : config_registry()) csv << "," << k.key;
    csv << "\n";
    for (const auto& r : rows) {
      for (std::size_t i = 0; i < r.size(); ++i) csv << (i ? "," : "") << csv_field(r[i]);
      csv << "\n";
    }
    write_text_atomic(table, csv.str());
    // HDF5 beside it: numeric columns as arrays, text columns as strings (one per run, newline-joined lists).
    std::string h5path = table;
    if (h5path.size() > 4 && h5path.substr(h5path.size() - 4) == ".csv") h5path.resize(h5path.size() - 4);
    h5path += ".h5";
    const std::string tmp = h5path + ".tmp";
    {
      h5::Handle f = h5::create_file(tmp);
      h5::write_string(f, "format", "boltzflow-table");
      h5::Handle g = h5::create_group(f, "columns");
      for (std::size_t c = 0; c < metric_cols.size(); ++c) {
        std::vector<double> col;
        for (const auto& r : numbers) col.push_back(r[c]);
        h5::write_array(g, metric_cols[c], col, false);
      }
      std::vector<double> steps;
      std::string runs, statuses, configs;
      for (const auto& r : rows) {
        steps.push_back(std::stod(r[2]));
        runs += r[0] + "\n";
        statuses += r[1] + "\n";
      }
      h5::write_array(g, "step", steps, false);
      h5::write_string(f, "runs", runs);
      h5::write_string(f, "status", statuses);
      h5::write_string(f, "csv", csv.str());
    }
    if (std::rename(tmp.c_str(), h5path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
    std::cout << "evaluated " << rows.size() << " run(s) into " << table << " and " << h5path << "\n";
  });
  return kExitOk;
}

}  // namespace

int cmd_evaluate(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("run", po::value<std::string>(),
                                                          "run directory (its checkpoint.h5)")(
      "checkpoint", po::value<std::string>(), "a checkpoint file")(
      "eval.samples", po::value<std::string>(), "global number of samples (default: the run's eval.samples)")(
      "eval.batch", po::value<std::string>(), "samples per rank evaluated at once")(
      "json", po::value<std::string>(), "write the metrics (global and per rank) to this JSON file")(
      "runs", po::value<std::vector<std::string>>()->multitoken(),
      "batch evaluation: run directories or glob patterns ('runs/*'), one row each in --table")(
      "table", po::value<std::string>(), "batch evaluation: CSV file to write (an HDF5 table beside it)");
  const auto vm = parse_command_line(args, desc, "evaluate");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--json FILE]\n"
                              "       boltzflow evaluate --runs 'GLOB' [...] --table FILE.csv [--eval.samples N]",
                              "Evaluates a trained flow: reverse KL and ESS, log Z with its standard error, "
                              "forward KL and ESS where the target has exact samples, Hausdorff distance to the "
                              "modes and mode coverage, per rank and reduced exactly over ranks.",
                              desc, {}));
    return kExitOk;
  }
  if (vm.count("runs") || vm.count("table")) {
    if (!vm.count("runs") || !vm.count("table")) throw InputError("batch evaluation needs both --runs and --table");
    if (vm.count("run") || vm.count("checkpoint") || vm.count("json"))
      throw InputError("--runs/--table cannot be combined with --run, --checkpoint or --json");
    return evaluate_many(env, vm["runs"].as<std::vector<std::string>>(), vm["table"].as<std::string>(), vm);
  }
  if (vm.count("run") == vm.count("checkpoint"))
    throw InputError("evaluate needs exactly one of --run DIR or --checkpoint FILE (or --runs and --table)");
  const std::string path =
      vm.count("run") ? RunPaths{vm["run"].as<std::string>()}.checkpoint() : vm["checkpoint"].as<std::string>();
  LoadedRun run = load_run(env, path);
  if (vm.count("eval.samples")) run.cfg.set("eval.samples", vm["eval.samples"].as<std::string>(), "--eval.samples");
  if (vm.count("eval.batch")) run.cfg.set("eval.batch", vm["eval.batch"].as<std::string>(), "--eval.batch");
  const long long samples = run.cfg.get_int("eval.samples");
  const Evaluation ev = evaluate_checkpoint(env, run, path, samples);
  if (!env.root()) return kExitOk;
  std::ostringstream os;
  os << "boltzflow evaluate " << path << " (step " << run.ckpt.step << ")\n  target: " << run.target->description()
     << "\n  samples: " << samples << " on " << env.size() << " rank(s)\n\n"
     << metrics_table_header();
  Json per_rank = Json::array();
  for (std::size_t r = 0; r < ev.per_rank.size(); ++r) {
    os << metrics_table_row(std::to_string(r), ev.per_rank[r]);
    Json j = to_json(ev.per_rank[r]);
    j["rank"] = static_cast<long long>(r);
    per_rank.push_back(j);
  }
  os << metrics_table_row("all", ev.global);
  if (!ev.global.observables.empty()) os << "\nobservables (flow samples; importance-reweighted; exact where known):\n"
                                         << observables_text(ev.global);
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
