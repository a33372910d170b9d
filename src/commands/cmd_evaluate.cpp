// boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--eval.momentum_samples K] [--json FILE] [--histogram FILE.h5]
//                    --runs GLOB... --table FILE.csv [--group-by KEY,...]
#include <glob.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "src/commands/cli.hpp"
#include "src/commands/commands.hpp"
#include "src/run/evaluation.hpp"
#include "src/run/loaded_run.hpp"
#include "src/io/metrics_mpi.hpp"
#include "src/run/model_config.hpp"
#include "src/io/hdf5_util.hpp"
#include "src/run/run_dir.hpp"
#include "src/errors.hpp"
#include "src/io/mpi_env.hpp"

namespace bf {

namespace {
// One checkpoint evaluated with the full suite over every rank.
Evaluation evaluate_checkpoint(const Environment& env, LoadedRun& run, const std::string& path, long long samples) {
  const Settings settings = run.settings();
  const int chunk = static_cast<int>(settings.eval.batch);
  return with_precision(settings, [&](auto zero) {
    using T = decltype(zero);
    auto model = make_model<T>(settings, *run.target, chunk, 1);  // sampling only: no loss buffers
    if (model->layout().signature() != run.ckpt.layout_signature)
      throw InputError("checkpoint '" + path + "' does not match the model its configuration describes");
    const Vector<T> params = device_parameters<T>(run.ckpt.parameters);
    return evaluate_model<T>(env, *model, params, *run.target, run.ckpt.seed, samples, settings.eval.forward,
                             static_cast<int>(settings.eval.momentum_samples));
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

// Keys that say where and how verbosely a run goes, not what it computes:
// runs that differ only in these still belong to one group.
bool bookkeeping_key(const std::string& key) {
  // run.eval_every too: evaluations draw their own samples (common random numbers) and leave the training as it is.
  return key == "run.out" || key == "run.progress" || key == "run.log_every" || key == "run.checkpoint_every" ||
         key == "run.stop_at" || key == "run.eval_every";
}

// A value as written, without its white space: "0.4, 0.6" and "0.4,0.6" are one value.
std::string without_spaces(const std::string& raw) {
  std::string out;
  for (char c : raw)
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  return out;
}

// --group-by KEY[,KEY...]: the keys, each a configuration key.
std::vector<std::string> group_keys(const std::string& spec) {
  std::vector<std::string> keys;
  std::istringstream in(spec);
  for (std::string k; std::getline(in, k, ',');) {
    if (k.empty()) continue;
    bool known = false;
    for (const auto& info : config_registry()) known = known || info.key == k;
    if (!known) throw InputError("--group-by: '" + k + "' is not a configuration key (see boltzflow train --help)");
    keys.push_back(k);
  }
  if (keys.empty()) throw InputError("--group-by needs at least one configuration key, e.g. run.seed");
  return keys;
}

// FILE.csv -> FILE (the name the table's companions are built from)
std::string table_stem(const std::string& table) {
  std::string stem = table;
  if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".csv") stem.resize(stem.size() - 4);
  return stem;
}
// FILE.csv -> FILE.groups.csv, FILE.h5
std::string groups_path(const std::string& table) { return table_stem(table) + ".groups.csv"; }
std::string table_h5_path(const std::string& table) { return table_stem(table) + ".h5"; }

// Mean and sample standard deviation (n − 1) of the finite values; sd is NaN for fewer than two.
std::pair<double, double> mean_sd(const std::vector<double>& v, int& count) {
  double sum = 0;
  count = 0;
  for (double x : v)
    if (std::isfinite(x)) sum += x, ++count;
  if (count == 0) return {std::nan(""), std::nan("")};
  const double mean = sum / count;
  if (count < 2) return {mean, std::nan("")};
  double ss = 0;
  for (double x : v)
    if (std::isfinite(x)) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / (count - 1))};
}

std::string mean_sd_text(double mean, double sd) {
  if (!std::isfinite(mean)) return "—";
  char buf[64];
  if (std::isfinite(sd))
    std::snprintf(buf, sizeof buf, "%.4g ± %.2g", mean, sd);
  else
    std::snprintf(buf, sizeof buf, "%.4g (one run)", mean);
  return buf;
}

// The groups of --group-by: runs whose configurations agree on every key but
// the grouped ones (and bookkeeping) form one group; each metric as mean ± sd
// over the group's runs, into FILE.groups.csv and printed. Runs that failed to
// load are listed, not grouped.
void write_groups(const std::string& table, const std::vector<std::string>& by,
                  const std::vector<std::vector<std::string>>& rows, const std::vector<std::vector<double>>& numbers,
                  const std::vector<Config>& configs, const std::vector<long long>& steps,
                  const std::vector<std::string>& metric_cols) {
  auto grouped = [&](const std::string& key) { return std::find(by.begin(), by.end(), key) != by.end(); };
  auto signature = [&](const Config& c) {
    std::string sig;
    for (const auto& k : config_registry())
      if (!grouped(k.key) && !bookkeeping_key(k.key)) sig += k.key + "=" + without_spaces(c.raw(k.key)) + "\n";
    return sig;
  };
  std::vector<std::string> sigs;            // one per group, in order of first appearance
  std::vector<std::vector<std::size_t>> members;
  std::vector<std::string> failed;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r][1] != "ok") {
      failed.push_back(rows[r][0]);
      continue;
    }
    const std::string sig = signature(configs[r]);
    const auto it = std::find(sigs.begin(), sigs.end(), sig);
    if (it == sigs.end()) {
      sigs.push_back(sig);
      members.push_back({r});
    } else {
      members[static_cast<std::size_t>(it - sigs.begin())].push_back(r);
    }
  }
  // The keys whose values tell the groups apart (printed to label them).
  std::vector<std::string> differing;
  for (const auto& k : config_registry()) {
    if (grouped(k.key) || bookkeeping_key(k.key) || members.size() < 2) continue;
    const std::string v0 = without_spaces(configs[members[0][0]].raw(k.key));
    for (const auto& m : members)
      if (without_spaces(configs[m[0]].raw(k.key)) != v0) {
        differing.push_back(k.key);
        break;
      }
  }
  std::ostringstream csv, txt;
  csv << "group,runs,step_min,step_max";
  for (const auto& c : metric_cols) csv << "," << c << "_mean," << c << "_sd," << c << "_n";
  for (const auto& k : config_registry()) csv << "," << k.key;
  csv << ",members\n";
  txt << "\n" << members.size() << " group(s) over " << [&] {
    std::string j;
    for (const auto& k : by) j += (j.empty() ? "" : ", ") + k;
    return j;
  }() << " (mean ± standard deviation over each group's runs)\n";
  for (std::size_t g = 0; g < members.size(); ++g) {
    const auto& m = members[g];
    long long smin = steps[m[0]], smax = steps[m[0]];
    for (std::size_t r : m) smin = std::min(smin, steps[r]), smax = std::max(smax, steps[r]);
    csv << g << "," << m.size() << "," << smin << "," << smax;
    txt << "group " << g << ":";
    for (const auto& k : differing) txt << " " << k << "=" << configs[m[0]].raw(k);
    txt << " (" << m.size() << " runs, step " << smin;
    if (smax != smin) txt << "–" << smax;
    txt << ")\n";
    for (std::size_t c = 0; c < metric_cols.size(); ++c) {
      std::vector<double> v;
      for (std::size_t r : m) v.push_back(numbers[r][c]);
      int n = 0;
      const auto ms = mean_sd(v, n);
      csv << "," << num(ms.first) << "," << num(ms.second) << "," << n;
      if (n > 0) txt << "  " << metric_cols[c] << " " << mean_sd_text(ms.first, ms.second) << "\n";
    }
    // Configuration: the common value, or the grouped key's values joined by ';'.
    for (const auto& k : config_registry()) {
      std::string v;
      if (grouped(k.key) || bookkeeping_key(k.key)) {
        for (std::size_t r : m) v += (v.empty() ? "" : ";") + configs[r].raw(k.key);
      } else {
        v = configs[m[0]].raw(k.key);
      }
      csv << "," << csv_field(v);
    }
    std::string names;
    for (std::size_t r : m) names += (names.empty() ? "" : ";") + rows[r][0];
    csv << "," << csv_field(names) << "\n";
    txt << "  " << [&] {
      std::string vals;
      for (const auto& k : by) {
        vals += k + " =";
        for (std::size_t r : m) vals += " " + configs[r].raw(k);
        vals += "; ";
      }
      return vals;
    }() << "runs: " << names << "\n";
  }
  if (!failed.empty()) {
    txt << "not grouped (did not load):";
    for (const auto& f : failed) txt << " " << f;
    txt << "\n";
  }
  write_text_atomic(groups_path(table), csv.str());
  std::cout << txt.str() << "groups written to " << groups_path(table) << "\n";
}

// evaluate --runs GLOB... --table FILE.csv: one row per run directory, every
// metric and every configuration value, as CSV and as HDF5 (FILE.h5).
int evaluate_many(Environment& env, const std::vector<std::string>& patterns, const std::string& table,
                  const po::variables_map& vm) {
  const std::vector<std::string> by = vm.count("group-by") ? group_keys(vm["group-by"].as<std::string>())
                                                           : std::vector<std::string>();
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
    check_new_output_file(table, "--table");
    check_new_output_file(table_h5_path(table), "--table (its HDF5 table)");
    if (!by.empty()) check_new_output_file(groups_path(table), "--group-by (its table)");
  });
  // Share the list.
  std::string joined;
  for (const auto& d : dirs) joined += d + "\n";
  broadcast(env, joined);
  dirs.clear();
  std::istringstream in(joined);
  for (std::string d; std::getline(in, d);) dirs.push_back(d);

  const std::vector<std::string> metric_cols{"reverse_kl", "reverse_ess", "log_z",  "log_z_stderr",
                                             "forward_kl", "forward_ess", "hausdorff", "mode_coverage_tv",
                                             "non_finite_samples", "reverse_n_eff", "pareto_k",
                                             "log_z_stderr_reliable", "phase_space_reverse_kl",
                                             "phase_space_reverse_ess", "momentum_samples", "marginal_reverse_kl",
                                             "marginal_reverse_ess", "marginal_forward_kl", "marginal_forward_ess",
                                             "test_log_likelihood", "test_log_likelihood_stderr", "angular_tv",
                                             "symmetry_constraint", "symmetry_constraint_stderr",
                                             "score_error", "score_error_stderr"};  // score_* last (score models)
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<double>> numbers;  // [run][metric]
  std::vector<Config> configs;               // [run], empty where the run failed to load
  std::vector<long long> steps_reached;
  for (const auto& d : dirs) {
    std::vector<std::string> row{d};
    std::vector<double> nums(metric_cols.size(), std::nan(""));
    std::string status = "ok", fractions, estimators;
    long long step = -1, samples = 0;
    Config cfg;
    try {
      LoadedRun run = load_run(env, RunPaths{d}.checkpoint());
      for (const char* key : {"eval.samples", "eval.momentum_samples"})
        if (vm.count(key)) run.cfg.set(key, vm[key].as<std::string>(), std::string("--") + key);
      samples = run.settings().eval.samples;
      const Evaluation ev = evaluate_checkpoint(env, run, d, samples);
      const Metrics& m = ev.global;
      // A phase-space flow's reverse figures go to their own columns (reverse_kl, reverse_ess: nan).
      const double nan = std::nan(""), ps = m.phase_space ? 1.0 : nan, plain = m.phase_space ? nan : 1.0;
      nums = {plain * m.reverse_kl, plain * m.reverse_ess, m.log_z, m.log_z_stderr, m.forward_kl, m.forward_ess,
              m.hausdorff, m.mode_coverage_tv, static_cast<double>(m.non_finite_samples), m.reverse_n_eff,
              m.pareto_k, m.log_z_stderr_reliable ? 1.0 : 0.0, ps * m.reverse_kl, ps * m.reverse_ess,
              static_cast<double>(m.momentum_samples), m.marginal_reverse_kl, m.marginal_reverse_ess,
              m.marginal_forward_kl, m.marginal_forward_ess, m.test_log_likelihood, m.test_log_likelihood_stderr,
              m.angular_tv, nan, nan, m.score_error, m.score_error_stderr};
      if (!m.symmetry_constraint.empty()) {  // Σ_k E[c_k²]; its error in quadrature (approximate for K > 1: shared samples)
        double c = 0, e2 = 0;
        for (std::size_t k = 0; k < m.symmetry_constraint.size(); ++k)
          c += m.symmetry_constraint[k], e2 += m.symmetry_constraint_stderr[k] * m.symmetry_constraint_stderr[k];
        nums[nums.size() - 4] = c;
        nums[nums.size() - 3] = std::sqrt(e2);
      }
      if (m.score_model)  // a score model has only its score figures
        for (std::size_t k = 0; k + 2 < nums.size(); ++k) nums[k] = nan;
      for (std::size_t k = 0; k < m.mode_fractions.size(); ++k) fractions += (k ? ";" : "") + num(m.mode_fractions[k]);
      estimators = estimators_cell(m);
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
    row.push_back(estimators);
    for (const auto& k : config_registry()) row.push_back(status == "ok" ? cfg.raw(k.key) : "");
    rows.push_back(row);
    numbers.push_back(nums);
    configs.push_back(status == "ok" ? cfg : Config());
    steps_reached.push_back(step);
  }
  root_agreed(env, [&] {
    std::ostringstream csv;
    csv << "run,status,step,samples";
    for (const auto& c : metric_cols) csv << "," << c;
    csv << ",mode_fractions,estimators";
    for (const auto& k : config_registry()) csv << "," << k.key;
    csv << "\n";
    for (const auto& r : rows) {
      for (std::size_t i = 0; i < r.size(); ++i) csv << (i ? "," : "") << csv_field(r[i]);
      csv << "\n";
    }
    write_text_atomic(table, csv.str());
    // HDF5 beside it: numeric columns as arrays, text columns as strings (one per run, newline-joined lists).
    const std::string h5path = table_h5_path(table);
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
    if (!by.empty()) write_groups(table, by, rows, numbers, configs, steps_reached, metric_cols);
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
      "eval.momentum_samples", po::value<std::string>(),
      "nhf: momenta per sample of the marginal estimate (default: the run's eval.momentum_samples)")(
      "json", po::value<std::string>(), "write the metrics (global and per rank) to this JSON file")(
      "histogram", po::value<std::string>(),
      "write the target's histogram (phi4: the mean field against Eq. 21) to this HDF5 file")(
      "runs", po::value<std::vector<std::string>>()->multitoken(),
      "batch evaluation: run directories or glob patterns ('runs/*'), one row each in --table")(
      "table", po::value<std::string>(), "batch evaluation: CSV file to write (an HDF5 table beside it)")(
      "group-by", po::value<std::string>(),
      "batch evaluation: KEY[,KEY...], e.g. run.seed: runs whose configurations differ only in these keys form "
      "a group; each metric as mean and standard deviation over a group, printed and written to "
      "FILE.groups.csv");
  const auto vm = parse_command_line(args, desc, "evaluate");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow evaluate --run DIR | --checkpoint FILE [--eval.samples N] [--eval.momentum_samples K] [--json FILE] [--histogram FILE.h5]\n"
                              "       boltzflow evaluate --runs 'GLOB' [...] --table FILE.csv [--group-by KEY,...] [--eval.samples N]",
                              "Evaluates a trained flow: reverse KL and ESS, log Z with its standard error, "
                              "forward KL and ESS where the target has exact samples, Hausdorff distance to the "
                              "modes and mode coverage, per rank and reduced exactly over ranks. For an NHF the "
                              "reverse and forward figures are on phase space (q, p) and reported as such, with "
                              "marginal estimates from K momenta per sample (eval.momentum_samples).",
                              desc, {}));
    return kExitOk;
  }
  if (vm.count("runs") || vm.count("table")) {
    if (!vm.count("runs") || !vm.count("table")) throw InputError("batch evaluation needs both --runs and --table");
    if (vm.count("run") || vm.count("checkpoint") || vm.count("json") || vm.count("histogram"))
      throw InputError("--runs/--table cannot be combined with --run, --checkpoint, --json or --histogram");
  } else if (vm.count("group-by")) {
    throw InputError("--group-by groups a batch evaluation: it needs --runs and --table");
  }
  if (vm.count("runs")) {
    return evaluate_many(env, vm["runs"].as<std::vector<std::string>>(), vm["table"].as<std::string>(), vm);
  }
  if (vm.count("run") == vm.count("checkpoint"))
    throw InputError("evaluate needs exactly one of --run DIR or --checkpoint FILE (or --runs and --table)");
  const std::string path =
      vm.count("run") ? RunPaths{vm["run"].as<std::string>()}.checkpoint() : vm["checkpoint"].as<std::string>();
  root_agreed(env, [&] {
    if (vm.count("histogram")) check_new_output_file(vm["histogram"].as<std::string>(), "--histogram");
    if (vm.count("json")) check_new_output_file(vm["json"].as<std::string>(), "--json");
  });
  LoadedRun run = load_run(env, path);
  if (vm.count("histogram") && run.target->histogram().observable < 0)
    throw InputError("--histogram: target '" + run.target->name() + "' defines no histogram");
  for (const char* key : {"eval.samples", "eval.batch", "eval.momentum_samples"})
    if (vm.count(key)) run.cfg.set(key, vm[key].as<std::string>(), std::string("--") + key);
  const long long samples = run.settings().eval.samples;
  const Evaluation ev = evaluate_checkpoint(env, run, path, samples);
  if (!env.root()) return kExitOk;
  std::ostringstream os;
  os << "boltzflow evaluate " << path << " (step " << run.ckpt.step << ")\n  target: " << run.target->description()
     << "\n  samples: " << samples << " on " << env.size() << " rank(s)\n\n"
     << metrics_table_header(ev.global.score_model);
  Json per_rank = Json::array();
  for (std::size_t r = 0; r < ev.per_rank.size(); ++r) {
    os << metrics_table_row(std::to_string(r), ev.per_rank[r]);
    Json j = to_json(ev.per_rank[r]);
    j["rank"] = static_cast<long long>(r);
    per_rank.push_back(j);
  }
  os << metrics_table_row("all", ev.global);
  if (ev.global.phase_space) os << "\n" << phase_space_text(ev.global);
  if (ev.global.score_model) os << "\n" << score_text(ev.global);
  if (!ev.global.observables.empty()) os << "\nobservables (flow samples; importance-reweighted; exact where known):\n"
                                         << observables_text(ev.global);
  if (!ev.global.estimators.empty()) os << "\n" << estimators_text(ev.global);
  if (!symmetry_text(ev.global).empty()) os << "\n" << symmetry_text(ev.global);
  if (!ev.global.histogram.empty())
    os << "\nhistogram ('#' the flow's samples, '|' " << ev.global.histogram.reference_name << "):\n"
       << ev.global.histogram.text();
  if (vm.count("histogram")) {
    write_histogram(ev.global.histogram, vm["histogram"].as<std::string>());
    os << "histogram written to " << vm["histogram"].as<std::string>() << "\n";
  }
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
