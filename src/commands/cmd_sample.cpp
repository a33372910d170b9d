// boltzflow sample --checkpoint FILE --samples N --out FILE.h5
// Each rank draws its share of the global sample indices; rank 0 gathers and
// writes /samples [N x D], /log_q [N] and /log_w [N] = −f − log q.
//
// boltzflow sample --checkpoint FILE --mcmc N [--chains C] [--burn-in B] --out FILE.h5
// Flow-based MCMC (physics/mcmc.hpp): C independence Metropolis–Hastings
// chains of N steps with the flow as proposal. Proposal t of chain c is global
// sample c·N + t and its accept/reject uniform is Philox(seed, mcmc, 0, c·N + t),
// so the chains do not depend on the rank count: ranks draw the proposals of
// their chains, rank 0 runs the chains and writes them with their statistics.
#include <cmath>
#include <algorithm>
#include <limits>
#include <fstream>
#include <cstring>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "physics/estimators.hpp"
#include "physics/mcmc.hpp"
#include "physics/rng.hpp"

#include "src/commands/cli.hpp"
#include "src/commands/commands.hpp"
#include "src/io/hdf5_util.hpp"
#include "src/run/loaded_run.hpp"
#include "src/run/model_config.hpp"
#include "src/run/run_dir.hpp"
#include "src/errors.hpp"
#include "src/io/mpi_env.hpp"
#include "src/version.hpp"

namespace bf {
namespace {

// Rank 0: runs the chains over the gathered proposals (log weights lw, their
// observables o [n x k]), writes them under /chain and returns the report.
//   /samples, /log_q, /log_w   the proposals, chain by chain (c·N + t)
//   /chain/state [C·N]         the proposal index (within its chain) each step sits on
//   /chain/accepted [C·N]      1 where step t accepted its proposal (t = 0: 1)
//   /chain/observables [C·N x k], /chain/observable_names: the chain's values
//   /chain/acceptance, /chain/tau_int [k], /chain/mean [k], /chain/error [k]
//   /chain/figure_names, /chain/figure_value, /chain/figure_error, /chain/figure_bins: the
//     target's figures (physics/estimators.hpp) jackknifed over 32 bins, bin b the b-th
//     stretch of every chain after burn-in (where the target defines figures)
struct ChainInputs {
  std::vector<std::string> names;  // observables
  std::vector<double> observables;  // [proposal · k]
  Distribution::Estimators estimators;
  std::vector<double> primaries;  // [proposal · estimators.primaries.size()]
};

std::string run_chains(hid_t f, const std::vector<double>& lw, const ChainInputs& in, long long chains,
                       long long steps, long long burn_in, std::uint32_t seed) {
  const std::vector<std::string>& names = in.names;
  const std::vector<double>& o = in.observables;
  const std::size_t k = names.size(), N = static_cast<std::size_t>(steps);
  const std::size_t ke = in.estimators.primaries.size();
  const int bins = EstimatorSums::kBlocks;
  const long long kept_steps = steps - burn_in;
  std::vector<double> bin_n(static_cast<std::size_t>(bins), 0.0), bin_a(static_cast<std::size_t>(bins) * ke, 0.0);
  std::vector<double> state(chains * N), accepted(chains * N), values(chains * N * k);
  std::vector<std::vector<std::vector<double>>> series(k, std::vector<std::vector<double>>(chains));
  long long accepts = 0;
  for (long long c = 0; c < chains; ++c) {
    const std::size_t base = static_cast<std::size_t>(c) * N;
    std::vector<double> w(lw.begin() + base, lw.begin() + base + N), log_u(N);
    for (std::size_t t = 0; t < N; ++t)
      log_u[t] = std::log(RngStream(seed, Purpose::mcmc, 0, base + t).uniform(0));
    const IndependenceChain ch = independence_mh(w, log_u);
    accepts += ch.accepts;
    for (std::size_t t = 0; t < N; ++t) {
      const std::size_t at = base + static_cast<std::size_t>(ch.state[t]);
      state[base + t] = static_cast<double>(ch.state[t]);
      accepted[base + t] = ch.accepted[t];
      for (std::size_t j = 0; j < k; ++j) {
        values[(base + t) * k + j] = o[at * k + j];
        if (static_cast<long long>(t) >= burn_in) series[j][c].push_back(o[at * k + j]);
      }
      // Bin b holds stretch b of every chain after burn-in.
      if (ke > 0 && static_cast<long long>(t) >= burn_in) {
        const std::size_t b = static_cast<std::size_t>((static_cast<long long>(t) - burn_in) * bins / kept_steps);
        bin_n[b] += 1.0;
        for (std::size_t j = 0; j < ke; ++j) bin_a[b * ke + j] += in.primaries[at * ke + j];
      }
    }
  }
  const double acceptance = static_cast<double>(accepts) / static_cast<double>(chains * (steps - 1));
  const double kept = static_cast<double>(chains * (steps - burn_in));
  std::vector<double> tau(k), mean(k), err(k);
  std::ostringstream os;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "mcmc: %lld chains x %lld steps (independence Metropolis-Hastings, the flow as proposal), burn-in "
                "%lld\n  acceptance %.4f (%lld of %lld proposals)\n",
                chains, steps, burn_in, acceptance, accepts, chains * (steps - 1));
  os << buf;
  for (std::size_t j = 0; j < k; ++j) {
    double s1 = 0, s2 = 0;
    for (const auto& ch : series[j])
      for (double v : ch) s1 += v, s2 += v * v;
    mean[j] = s1 / kept;
    const double sd = std::sqrt(std::fmax(0.0, s2 / kept - mean[j] * mean[j]));
    const AutocorrelationTime a = integrated_autocorrelation_time(series[j]);
    tau[j] = a.tau;
    err[j] = sd * std::sqrt(2.0 * a.tau / kept);
    std::snprintf(buf, sizeof buf, "  %-16s %.6g +- %.3g   tau_int %.3g (window %lld%s)\n", names[j].c_str(),
                  mean[j], err[j], a.tau, a.window,
                  a.converged ? "" : "; NOT CONVERGED: the chain is too short for its correlations, tau is a lower bound");
    os << buf;
  }
  // The target's figures, jackknifed over the bins (each a stretch of every chain).
  Jackknife jk;
  if (ke > 0) {
    jk = jackknife(bin_n, bin_a, static_cast<int>(ke), in.estimators.derive);
    const long long bin_len = kept_steps / bins;
    double tau_max = 0;
    for (double t : tau) tau_max = std::fmax(tau_max, t);
    std::snprintf(buf, sizeof buf, "  figures with jackknife errors over %d bins (%lld steps of each chain per bin):\n",
                  jk.blocks, bin_len);
    os << buf;
    for (std::size_t m = 0; m < in.estimators.figures.size(); ++m) {
      std::snprintf(buf, sizeof buf, "  %-16s %.6g +- %.3g", in.estimators.figures[m].c_str(), jk.value[m],
                    jk.error[m]);
      os << buf;
      if (m < in.estimators.exact.size() && std::isfinite(in.estimators.exact[m])) {
        std::snprintf(buf, sizeof buf, "   exact %.6g", in.estimators.exact[m]);
        os << buf;
      }
      os << "\n";
    }
    if (static_cast<double>(bin_len) < 10.0 * tau_max) {
      std::snprintf(buf, sizeof buf,
                    "  WARNING: a bin is %lld steps, under 10 tau_int (%.3g): the jackknife errors are too small; "
                    "run longer chains\n",
                    bin_len, tau_max);
      os << buf;
    }
  }
  h5::Handle g(H5Gcreate2(f, "chain", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (ke > 0) {
    std::string fn;
    for (const auto& nm : in.estimators.figures) fn += (fn.empty() ? "" : ",") + nm;
    h5::write_string(g, "figure_names", fn);
    h5::write_array(g, "figure_value", jk.value, false);
    h5::write_array(g, "figure_error", jk.error, false);
    h5::write_int(g, "figure_bins", jk.blocks);
  }
  h5::write_array(g, "state", state, false);
  h5::write_array(g, "accepted", accepted, false);
  h5::write_matrix(g, "observables", values, chains * N, k);
  std::string joined;
  for (const auto& nm : names) joined += (joined.empty() ? "" : ",") + nm;
  h5::write_string(g, "observable_names", joined);
  h5::write_double(g, "acceptance", acceptance);
  h5::write_array(g, "tau_int", tau, false);
  h5::write_array(g, "mean", mean, false);
  h5::write_array(g, "error", err, false);
  h5::write_int(g, "chains", chains);
  h5::write_int(g, "steps", steps);
  h5::write_int(g, "burn_in", burn_in);
  return os.str();
}

}  // namespace

int cmd_sample(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("checkpoint", po::value<std::string>(), "a checkpoint file")(
      "run", po::value<std::string>(), "a run directory (its checkpoint.h5)")(
      "samples", po::value<std::string>(), "global number of samples")(
      "out", po::value<std::string>(), "HDF5 file to write (must not exist)")(
      "seed", po::value<std::string>(), "seed of the sample stream (default: the run's seed)")(
      "mcmc", po::value<std::string>(), "flow-based MCMC: N steps per chain (instead of --samples)")(
      "chains", po::value<std::string>(), "with --mcmc: number of chains (default 8; any rank count)")(
      "burn-in", po::value<std::string>(), "with --mcmc: steps per chain left out of the statistics (default 0)");
  const auto vm = parse_command_line(args, desc, "sample");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow sample --checkpoint FILE (--samples N | --mcmc N [--chains C]) --out FILE.h5",
                              "Draws samples from a trained flow with their log density and log importance "
                              "weight, and writes them to an HDF5 file. With --mcmc, runs independence "
                              "Metropolis-Hastings chains with the flow as proposal (asymptotically exact samples "
                              "whatever the flow) and reports the acceptance rate and, per observable (the "
                              "target's, or the first coordinates), the mean with an error from its integrated "
                              "autocorrelation time; the chains do not depend on the rank count.",
                              desc, {}));
    return kExitOk;
  }
  if (vm.count("run") == vm.count("checkpoint")) throw InputError("sample needs exactly one of --checkpoint or --run");
  const bool mcmc = vm.count("mcmc") > 0;
  if (mcmc == (vm.count("samples") > 0)) throw InputError("sample needs exactly one of --samples N or --mcmc N");
  if (!mcmc && (vm.count("chains") || vm.count("burn-in"))) throw InputError("--chains and --burn-in need --mcmc");
  if (!vm.count("out")) throw InputError("sample needs --out FILE.h5");
  const long long steps = mcmc ? parse_int(vm["mcmc"].as<std::string>(), "--mcmc") : 0;
  const long long chains = vm.count("chains") ? parse_int(vm["chains"].as<std::string>(), "--chains") : (mcmc ? 8 : 1);
  const long long burn_in = vm.count("burn-in") ? parse_int(vm["burn-in"].as<std::string>(), "--burn-in") : 0;
  if (mcmc && steps < 2) throw InputError("--mcmc must be at least 2 steps per chain");
  if (chains < 1) throw InputError("--chains must be at least 1");
  if (burn_in < 0 || (mcmc && burn_in > steps - 2)) throw InputError("--burn-in must be in [0, --mcmc − 2]");
  if (mcmc && chains > std::numeric_limits<long long>::max() / steps)
    throw InputError("--mcmc " + std::to_string(steps) + " x --chains " + std::to_string(chains) + " overflows");
  const long long n = mcmc ? steps * chains : parse_int(vm["samples"].as<std::string>(), "--samples");
  if (n < 1) throw InputError("--samples must be at least 1");
  const std::string out = vm["out"].as<std::string>();
  // The file goes through out.tmp: find out now, not after the sampling, whether it can be written.
  root_agreed(env, [&] { check_new_output_file(out, "--out"); });
  const std::string path =
      vm.count("run") ? RunPaths{vm["run"].as<std::string>()}.checkpoint() : vm["checkpoint"].as<std::string>();
  LoadedRun run = load_run(env, path);
  const std::uint32_t seed = vm.count("seed")
                                 ? static_cast<std::uint32_t>(parse_int(vm["seed"].as<std::string>(), "--seed"))
                                 : run.ckpt.seed;
  const int d = run.target->dim();
  // Rank 0 gathers every sample (D numbers, and the figures' primaries) into one file.
  const long long width = std::max<long long>({d, static_cast<long long>(run.target->estimators().primaries.size()), 4});
  if (n > std::numeric_limits<int>::max() / width)
    throw InputError(std::to_string(n) + (mcmc ? " proposals" : " samples") + " of " + std::to_string(width) +
                     " numbers are more than one file of this command holds (2^31 numbers); draw them in several "
                     "runs with different --seed");
  const Slice chains_mine = split_range(chains, env.rank(), env.size());
  const Slice mine = mcmc ? Slice{chains_mine.begin * steps, chains_mine.end * steps} : split_range(n, env.rank(), env.size());
  Matrix<double> x("x", mine.count(), d);
  Vector<double> lq("log_q", mine.count()), lw("log_w", mine.count());
  const Settings settings = run.settings();
  with_precision(settings, [&](auto zero) {
    using T = decltype(zero);
    auto model = make_model<T>(settings, *run.target, static_cast<int>(settings.eval.batch), 1);
    if (model->layout().signature() != run.ckpt.layout_signature)
      throw InputError("checkpoint '" + path + "' does not match the model its configuration describes");
    if (!model->has_sampler())
      throw InputError("model.kind = " + model->kind() + " learns a score, not a sampler: it has no samples to draw "
                       "(boltzflow evaluate reports its score error)");
    const Vector<T> params = device_parameters<T>(run.ckpt.parameters);
    if (mine.count() > 0) model->sample(params, seed, Purpose::sample, 0, static_cast<std::uint64_t>(mine.begin), x, lq);
    return 0;
  });
  run.target->energy(x, lw);
  Kokkos::parallel_for(
      "bf::sample_log_w", Policy(0, mine.count()), KOKKOS_LAMBDA(const std::int64_t i) { lw(i) = -lw(i) - lq(i); });
  Kokkos::fence();
  auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  auto hq = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lq);
  auto hw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lw);
  const std::vector<double> ax = gather_rows(env, hx.data(), mine.count(), d),
                            aq = gather_rows(env, hq.data(), mine.count(), 1),
                            aw = gather_rows(env, hw.data(), mine.count(), 1);
  // MCMC: the observables of every proposal (the target's, or the first
  // coordinates) and the primaries of its jackknife figures, gathered likewise.
  ChainInputs in;
  if (mcmc) {
    in.names = run.target->observable_names();
    if (in.names.empty())
      for (int j = 0; j < std::min(d, 4); ++j) in.names.push_back("x" + std::to_string(j));
    const int k = static_cast<int>(in.names.size());
    std::vector<double> ho(static_cast<std::size_t>(mine.count()) * k);
    if (!run.target->observable_names().empty()) {
      Matrix<double> o("observables", mine.count(), k);
      run.target->observables(x, o);
      auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), o);
      for (long long i = 0; i < mine.count(); ++i)
        for (int j = 0; j < k; ++j) ho[static_cast<std::size_t>(i) * k + j] = h(i, j);
    } else {
      for (long long i = 0; i < mine.count(); ++i)
        for (int j = 0; j < k; ++j) ho[static_cast<std::size_t>(i) * k + j] = hx(i, j);
    }
    in.observables = gather_rows(env, ho.data(), mine.count(), k);
    in.estimators = run.target->estimators();
    const int ke = static_cast<int>(in.estimators.primaries.size());
    if (ke > 0) {
      Matrix<double> a("estimator_primaries", mine.count(), ke);  // LayoutRight: rows contiguous
      run.target->estimator_primaries(x, a);
      auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
      in.primaries = gather_rows(env, h.data(), mine.count(), ke);
    }
  }
  root_agreed(env, [&] {
    const std::string tmp = out + ".tmp";
    {
      h5::Handle f = h5::create_file(tmp);
      h5::write_string(f, "format", mcmc ? "boltzflow-chain" : "boltzflow-samples");
      if (mcmc) {
        const std::string report = run_chains(f, aw, in, chains, steps, burn_in, seed);
        std::cout << report;
      }
      h5::write_matrix(f, "samples", ax, static_cast<std::size_t>(n), static_cast<std::size_t>(d));
      h5::write_array(f, "log_q", aq, false);
      h5::write_array(f, "log_w", aw, false);
      h5::write_string(f, "target", run.target->description());
      h5::write_string(f, "checkpoint", path);
      h5::write_int(f, "step", run.ckpt.step);
      h5::write_int(f, "seed", seed);
      h5::write_string(f, "program_version", program_version());
    }
    if (std::rename(tmp.c_str(), out.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
  });
  if (env.root())
    std::cout << "wrote " << n << (mcmc ? " proposals and their chains" : " samples") << " of " << run.target->name()
              << " to " << out << "\n";
  return kExitOk;
}

}  // namespace bf
