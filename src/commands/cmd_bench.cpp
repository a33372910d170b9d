// boltzflow bench engine | train.
//
// bench engine: seconds per forward + reverse of the tangent-carrying MLP, the
// achieved GFLOP/s, and its ratio to the GEMM rate measured in the same run on
// the same shapes (the GEMMs of the pass replayed alone), once with the backend
// gemm uses and once with the fastest backend compiled into this binary.
//
// Network: 17 inputs (16 lattice sites and t) → 3 hidden layers of `width`
// (swish) → 16 outputs, i.e. the φ⁴ vector field of Máté & Fleuret; K tangents
// along the first K input axes (K = 17: the divergence and the time
// derivative at once). The reverse pass is the one training uses (parameter
// gradients, no input adjoints). FLOPs count the GEMMs only
// (2 m n k each: forward, Ŵ and R̂ per layer).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "flows/nn/derivatives.hpp"
#include "flows/nn/mlp.hpp"
#include "src/commands/cli.hpp"
#include "src/run/run_dir.hpp"
#include "src/commands/commands.hpp"
#include "src/io/collective_mpi.hpp"
#include "src/io/json.hpp"
#include "src/run/model_config.hpp"
#include "src/run/target_config.hpp"
#include "src/version.hpp"

namespace bf {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct BenchRow {
  int width, k, batch;
  std::string precision;
  double seconds, gflops, gemm_gflops, ratio;
  std::string best_backend;
  double best_gemm_gflops, best_ratio;
};

// Repeats f until at least min_time seconds have passed (after one warm-up); seconds per call.
template <class F>
double time_per_call(F&& f, double min_time) {
  f();
  Kokkos::fence();
  int n = 0;
  const double t0 = now();
  double t = t0;
  while (t - t0 < min_time || n < 3) {
    f();
    Kokkos::fence();
    ++n;
    t = now();
  }
  return (t - t0) / n;
}

template <class T>
auto backend_fn(const GemmBackend& be) {
  if constexpr (sizeof(T) == 4) return be.sgemm;
  else return be.dgemm;
}

template <class T>
BenchRow bench_one(int width, int k, int batch, double min_time) {
  ParameterLayout layout;
  MlpSpec spec;
  spec.widths = {17, width, width, width, 16};
  spec.activation = Activation::swish;
  Mlp<T> net("bench", spec, layout);
  Vector<T> params("params", layout.size()), grad("grad", layout.size());
  initialize_parameters(layout, params, 1u);
  const int rows = (1 + k) * batch;
  auto ws = net.workspace(rows);
  Matrix<T> in("in", rows, 17), adj("adj", rows, 16);
  Kokkos::parallel_for(
      "bench_fill", Policy(0, static_cast<std::int64_t>(batch) * 17), KOKKOS_LAMBDA(const std::int64_t e) {
        in(e / 17, static_cast<int>(e % 17)) = T(0.01) * T(e % 97) - T(0.4);
      });
  set_axis_tangents<T>(in, batch, k, 0);
  Kokkos::deep_copy(adj, T(0.01));
  const double secs = time_per_call(
      [&] {
        net.forward(params, ws, batch, k, in);
        net.reverse(params, grad, ws, adj, Rows<T>());
      },
      min_time);

  // The same GEMMs alone, on buffers of the same shapes, with every backend.
  const auto& w = net.widths();
  std::vector<Matrix<T>> a, b, c;
  for (std::size_t l = 0; l + 1 < w.size(); ++l) {
    a.emplace_back("ga", rows, w[l]);
    b.emplace_back("gb", w[l + 1], w[l]);
    c.emplace_back("gc", rows, w[l + 1]);
    Kokkos::deep_copy(a.back(), T(0.5));
    Kokkos::deep_copy(b.back(), T(0.25));
    Kokkos::deep_copy(c.back(), T(0.125));
  }
  auto replay = [&](const GemmBackend& be) {
    auto g = backend_fn<T>(be);
    return time_per_call(
        [&] {
          for (std::size_t l = 0; l < a.size(); ++l)  // forward: C = A Bᵀ
            g("N", "T", T(1), a[l], b[l], T(0), c[l]);
          for (std::size_t l = a.size(); l-- > 0;) {
            g("T", "N", T(1), c[l], a[l], T(1), b[l]);  // Ŵ += Âᵀ R
            if (l > 0) g("N", "N", T(1), c[l], b[l], T(0), a[l]);  // R̂ = Â W
          }
        },
        min_time);
  };
  double gemm_secs = 0, best_secs = 1e300;
  std::string best;
  for (const GemmBackend& be : gemm_backends()) {
    const double t = replay(be);
    if (be.name == gemm_backend()) gemm_secs = t;
    if (t < best_secs) best_secs = t, best = be.name;
  }
  const double flops = net.forward_reverse_flops(rows, false);
  BenchRow r;
  r.width = width;
  r.k = k;
  r.batch = batch;
  r.precision = sizeof(T) == 8 ? "double" : "float";
  r.seconds = secs;
  r.gflops = flops / secs * 1e-9;
  r.gemm_gflops = flops / gemm_secs * 1e-9;
  r.ratio = r.gflops / r.gemm_gflops;
  r.best_backend = best;
  r.best_gemm_gflops = flops / best_secs * 1e-9;
  r.best_ratio = r.gflops / r.best_gemm_gflops;
  return r;
}

// The best GEMM rate of this binary's backends at the engine's reference shape
// (4352 x 128)(128 x 128), C = A Bᵀ, in precision T. Returns GFLOP/s and the backend.
template <class T>
std::pair<double, std::string> reference_gemm(double min_time) {
  const int m = 4352, n = 128, k = 128;
  Matrix<T> a("ref_a", m, k), b("ref_b", n, k), c("ref_c", m, n);
  Kokkos::deep_copy(a, T(0.5));
  Kokkos::deep_copy(b, T(0.25));
  double best = 0;
  std::string name;
  for (const GemmBackend& be : gemm_backends()) {
    auto g = backend_fn<T>(be);
    const double secs = time_per_call([&] { g("N", "T", T(1), a, b, T(0), c); }, min_time);
    const double rate = 2.0 * m * n * k / secs * 1e-9;
    if (rate > best) best = rate, name = be.name;
  }
  return {best, name};
}

std::string engine_usage() {
  return "boltzflow bench engine [--json FILE] [--batch N] [--widths 64,128] [--tangents 0,2,17] "
         "[--precision double,float] [--min-time S]";
}
std::string train_usage() {
  return "boltzflow bench train [--config FILE] [--steps N] [--warmup N] [--json FILE] [--section.key VALUE ...]";
}

int bench_engine(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("json", po::value<std::string>(),
                                                          "also write the rows as a JSON list of objects")(
      "batch", po::value<int>()->default_value(256), "samples per pass")(
      "widths", po::value<std::string>()->default_value("64,128"), "hidden widths")(
      "tangents", po::value<std::string>()->default_value("0,2,17"), "tangent counts K")(
      "precision", po::value<std::string>()->default_value("double,float"), "double, float or both")(
      "min-time", po::value<double>()->default_value(0.5), "seconds to time each configuration");
  const auto vm = parse_command_line(args, desc, "bench engine");
  if (vm.count("help")) {
    print_root(env, help_text(engine_usage(),
                              "Times forward + reverse of the tangent-carrying MLP (17 -> 3 x width -> 16, swish) "
                              "and reports seconds per pass, GFLOP/s (GEMM FLOPs) and the ratio to the rate of "
                              "the same GEMMs timed alone in the same run: with the backend the engine uses "
                              "(GEMM, ratio) and with the fastest backend compiled into this binary (best, "
                              "ratio_best), and the ratio to the core's best GEMM rate, the fastest backend at "
                              "(4352 x 128)(128 x 128) in the same run (ratio_core). The engine runs its passes "
                              "in blocks of rows that stay in cache, the replayed GEMMs whole, so ratio can exceed 1. "
                              "Backend used: " + gemm_backend() + "; see flows/nn/gemm.hpp.",
                              desc, {}));
    return kExitOk;
  }
  const int batch = vm["batch"].as<int>();
  if (batch < 1) throw InputError("bench: --batch must be at least 1");
  if (vm.count("json")) root_agreed(env, [&] { check_new_output_file(vm["json"].as<std::string>(), "--json"); });
  const double min_time = vm["min-time"].as<double>();
  if (!(min_time > 0)) throw InputError("bench: --min-time must be positive");
  std::vector<int> widths, ks;
  for (double v : parse_reals(vm["widths"].as<std::string>(), "--widths")) {
    if (v < 1) throw InputError("bench: widths must be at least 1");
    widths.push_back(static_cast<int>(v));
  }
  for (double v : parse_reals(vm["tangents"].as<std::string>(), "--tangents")) {
    if (v < 0 || v > 17) throw InputError("bench: tangent counts must be in [0, 17]");
    ks.push_back(static_cast<int>(v));
  }
  const std::string prec = vm["precision"].as<std::string>();
  // The core's best: the fastest backend at the reference shape, per precision.
  const auto core_d = reference_gemm<double>(min_time), core_f = reference_gemm<float>(min_time);
  std::vector<BenchRow> rows;
  std::ostringstream os;
  os << build_description() << ", GEMM backend " << gemm_backend() << ", rank 0 of " << env.size() << "\n";
  char head[256];
  std::snprintf(head, sizeof head,
                "core's best GEMM, (4352 x 128)(128 x 128), this run: double %.2f GFLOP/s (%s), float %.2f (%s)\n",
                core_d.first, core_d.second.c_str(), core_f.first, core_f.second.c_str());
  os << head;
  os << "width    K  batch  precision   s/pass       GFLOP/s   GEMM GFLOP/s   ratio   best GFLOP/s (backend)  ratio_best"
        "  ratio_core\n";
  print_root(env, os.str());
  for (int w : widths)
    for (int k : ks)
      for (const std::string p : {"double", "float"}) {
        if (prec.find(p) == std::string::npos) continue;
        const BenchRow r = p == "double" ? bench_one<double>(w, k, batch, min_time) : bench_one<float>(w, k, batch, min_time);
        rows.push_back(r);
        char buf[320];
        const double core = p == "double" ? core_d.first : core_f.first;
        std::snprintf(buf, sizeof buf, "%5d %4d %6d  %-9s %10.3e %12.2f %14.2f %7.3f %14.2f (%-6s) %10.3f %11.3f\n",
                      r.width, r.k, r.batch, r.precision.c_str(), r.seconds, r.gflops, r.gemm_gflops, r.ratio,
                      r.best_gemm_gflops, r.best_backend.c_str(), r.best_ratio, r.gflops / core);
        print_root(env, buf);
      }
  if (vm.count("json") && env.root()) {
    Json list = Json::array();
    for (const auto& r : rows) {
      Json j = Json::object();
      j["width"] = r.width;
      j["k"] = r.k;
      j["batch"] = r.batch;
      j["precision"] = r.precision;
      j["seconds"] = r.seconds;
      j["gflops"] = r.gflops;
      j["gemm_backend"] = gemm_backend();
      j["gemm_gflops"] = r.gemm_gflops;
      j["ratio"] = r.ratio;
      j["best_backend"] = r.best_backend;
      j["best_gemm_gflops"] = r.best_gemm_gflops;
      j["best_ratio"] = r.best_ratio;
      const auto& core = r.precision == "double" ? core_d : core_f;
      j["core_gemm_gflops"] = core.first;
      j["core_gemm_backend"] = core.second;
      j["core_ratio"] = r.gflops / core.first;
      list.push_back(j);
    }
    std::ofstream out(vm["json"].as<std::string>());
    if (!out) throw InputError("bench: cannot write '" + vm["json"].as<std::string>() + "'");
    out << list.dump(2) << "\n";
  }
  return kExitOk;
}

// The trainer's step without evaluation, checkpoints or rollback: loss and
// gradient on this rank's share, the allreduce, one Adam update.
template <class T>
Json bench_train_steps(Environment& env, const Settings& cfg, std::unique_ptr<Distribution> target, int steps,
                       int warmup) {
  const long long batch = cfg.train.batch;
  const Slice mine = split_range(batch, env.rank(), env.size());
  const int train_batch = static_cast<int>(std::max<long long>(mine.count(), 1));
  auto model = make_model<T>(cfg, *target, train_batch, train_batch);
  const std::size_t n = model->layout().size();
  Vector<T> params("params", n), grad("grad", n);
  auto host_grad = Kokkos::create_mirror_view(grad);
  model->initialize(params, static_cast<std::uint32_t>(cfg.run.seed));
  AdamConfig ac;
  ac.beta1 = cfg.train.beta1;
  ac.beta2 = cfg.train.beta2;
  ac.eps = cfg.train.eps;
  ac.clip_norm = cfg.train.clip_norm;
  Adam<T> adam(n, ac);
  // A constant learning rate: the schedule does not change the cost of a step.
  const double lr = cfg.train.lr;
  const MpiCollective coll(env.comm());
  auto step = [&](std::int64_t s) {
    Kokkos::deep_copy(grad, T(0));
    BatchRef b;
    b.seed = static_cast<std::uint32_t>(cfg.run.seed);
    b.step = s;
    b.first = static_cast<std::uint64_t>(mine.begin);
    b.count = static_cast<int>(mine.count());
    b.global = batch;
    double loss = mine.count() > 0 ? model->loss_and_grad(params, grad, b, coll) : 0.0;
    Kokkos::fence();
    allreduce_sum(env.comm(), grad, host_grad);
    MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, env.comm());
    const double scale = 1.0 / static_cast<double>(batch);
    adam.step(params, grad, lr, scale, Adam<T>::norm(grad) * scale);
    Kokkos::fence();
    return loss * scale;
  };
  for (int s = 0; s < warmup; ++s) step(s);
  std::vector<double> secs(static_cast<std::size_t>(steps));
  const double f0 = gemm_flops_counted();
  double last_loss = 0;
  MPI_Barrier(env.comm());
  for (int s = 0; s < steps; ++s) {
    const double t0 = now();
    last_loss = step(warmup + s);
    secs[static_cast<std::size_t>(s)] = now() - t0;
  }
  double flops = (gemm_flops_counted() - f0) / steps;
  // A step lasts as long as its slowest rank.
  MPI_Allreduce(MPI_IN_PLACE, secs.data(), steps, MPI_DOUBLE, MPI_MAX, env.comm());
  std::vector<double> sorted = secs;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2], fastest = sorted.front(), slowest = sorted.back();
  // The reference: every rank at once, as during the steps.
  MPI_Barrier(env.comm());
  const auto ref = reference_gemm<T>(0.3);
  double rank_rate = flops / median * 1e-9, ref_rate = ref.first;
  double sums[3] = {flops, rank_rate, ref_rate};
  MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, env.comm());
  const double total_flops = sums[0], mean_rank_rate = sums[1] / env.size(), mean_ref = sums[2] / env.size();
  Json j = Json::object();
  j["model"] = model->description();
  j["parameters"] = static_cast<long long>(model->layout().count());
  j["precision"] = cfg.model.precision;
  j["ranks"] = env.size();
  j["threads_per_rank"] = static_cast<long long>(Kokkos::DefaultHostExecutionSpace().concurrency());
  j["batch"] = batch;
  j["steps"] = steps;
  j["warmup"] = warmup;
  j["seconds_per_step"] = median;
  j["seconds_per_step_min"] = fastest;
  j["seconds_per_step_max"] = slowest;
  j["gflop_per_step"] = total_flops * 1e-9;
  j["gflops_per_rank"] = mean_rank_rate;
  j["gemm_backend"] = gemm_backend();
  j["reference_backend"] = ref.second;
  j["reference_gflops"] = mean_ref;
  j["ratio"] = mean_rank_rate / mean_ref;
  j["last_loss"] = last_loss;
  return j;
}

int bench_train(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(), "INI configuration (without it: the built-in defaults)")(
      "steps", po::value<int>()->default_value(10), "training steps to time (after the warm-up)")(
      "warmup", po::value<int>()->default_value(2), "steps run before timing")(
      "json", po::value<std::string>(), "also write the result as a JSON object");
  add_config_options(desc, {});
  const auto vm = parse_command_line(args, desc, "bench train");
  if (vm.count("help")) {
    print_root(env, help_text(train_usage(),
                              "Times training steps of a configuration (the trainer's step: loss and gradient on "
                              "this rank's share of train.batch, the gradient allreduce, Adam; no evaluation or "
                              "checkpoint), after --warmup steps. Prints the median seconds per step (a step lasts "
                              "as long as its slowest rank) with the fastest and slowest, the GFLOP per step of "
                              "every GEMM that ran, the GFLOP/s per rank, and its ratio to the best GEMM rate of "
                              "this binary's backends at (4352 x 128)(128 x 128), measured by every rank at once "
                              "in the same run. Run it under mpirun like train to size cluster jobs.",
                              desc, {"train", "model", "target"}));
    return kExitOk;
  }
  const int steps = vm["steps"].as<int>(), warmup = vm["warmup"].as<int>();
  if (steps < 1) throw InputError("bench train: --steps must be at least 1");
  if (warmup < 0) throw InputError("bench train: --warmup must not be negative");
  if (vm.count("json")) root_agreed(env, [&] { check_new_output_file(vm["json"].as<std::string>(), "--json"); });
  Config cfg;
  apply_command_line(cfg, vm);
  const Settings settings = Settings::from(with_presets(cfg));
  auto target = make_target(settings.target);
  const Json j = with_precision(settings, [&](auto zero) {
    using T = decltype(zero);
    return bench_train_steps<T>(env, settings, std::move(target), steps, warmup);
  });
  char buf[2048];
  std::snprintf(buf, sizeof buf,
                "%s, %d rank(s) x %lld thread(s)\n  model: %s (%lld parameters, %s), batch %lld\n"
                "  %.4g s/step (median of %d; fastest %.4g, slowest %.4g)  %.4g GFLOP/step  %.4g GFLOP/s per rank\n"
                "  GEMM %s; best GEMM rate of the core %.4g GFLOP/s (%s, (4352 x 128)(128 x 128), same run); "
                "ratio %.3f\n",
                build_description().c_str(), env.size(), j.at("threads_per_rank").get<long long>(),
                j.at("model").get<std::string>().c_str(), j.at("parameters").get<long long>(), j.at("precision").get<std::string>().c_str(),
                j.at("batch").get<long long>(), j.at("seconds_per_step").get<double>(), steps,
                j.at("seconds_per_step_min").get<double>(), j.at("seconds_per_step_max").get<double>(),
                j.at("gflop_per_step").get<double>(), j.at("gflops_per_rank").get<double>(), gemm_backend().c_str(),
                j.at("reference_gflops").get<double>(), j.at("reference_backend").get<std::string>().c_str(), j.at("ratio").get<double>());
  print_root(env, buf);
  if (vm.count("json") && env.root()) {
    std::ofstream out(vm["json"].as<std::string>());
    if (!out) throw InputError("bench: cannot write '" + vm["json"].as<std::string>() + "'");
    out << j.dump(2) << "\n";
  }
  return kExitOk;
}

}  // namespace

int cmd_bench(Environment& env, const std::vector<std::string>& args) {
  // The first argument names the benchmark (engine when omitted).
  std::string what = "engine";
  std::vector<std::string> rest = args;
  if (!rest.empty() && rest.front().rfind("-", 0) != 0) {
    what = rest.front();
    rest.erase(rest.begin());
  } else if (!rest.empty() && (rest.front() == "--help" || rest.front() == "-h")) {
    print_root(env, "usage: " + engine_usage() + "\n       " + train_usage() +
                        "\n\nbench engine: the network engine against the GEMM rate; bench train: seconds per "
                        "training step of a configuration.\nSee 'boltzflow bench engine --help' and 'boltzflow bench "
                        "train --help'.\n");
    return kExitOk;
  }
  if (what == "engine") return bench_engine(env, rest);
  if (what == "train") return bench_train(env, rest);
  throw InputError("bench: unknown benchmark '" + what + "' (known: engine, train); usage: " + engine_usage() +
                   " | " + train_usage());
}

}  // namespace bf
