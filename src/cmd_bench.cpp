// boltzflow bench engine: seconds per forward + reverse of the tangent-carrying
// MLP, the achieved GFLOP/s, and the ratio to the GEMM rate measured in the
// same run on the same shapes (the GEMMs of the pass replayed alone).
//
// Network: 17 inputs (16 lattice sites and t) → 3 hidden layers of `width`
// (swish) → 16 outputs, i.e. the φ⁴ vector field of Máté & Fleuret; K tangents
// along the first K input axes (K = 17: the divergence and the time
// derivative at once). The reverse pass is the one training uses (parameter
// gradients, no input adjoints). FLOPs count the GEMMs only
// (2 m n k each: forward, Ŵ and R̂ per layer).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "flows/derivatives.hpp"
#include "flows/mlp.hpp"
#include "src/cli.hpp"
#include "src/commands.hpp"
#include "src/json.hpp"
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

  // The same GEMMs alone, on buffers of the same shapes.
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
  const double gemm_secs = time_per_call(
      [&] {
        for (std::size_t l = 0; l < a.size(); ++l)  // forward: C = A Bᵀ
          gemm<T>("N", "T", T(1), a[l], b[l], T(0), c[l]);
        for (std::size_t l = a.size(); l-- > 0;) {
          gemm<T>("T", "N", T(1), c[l], a[l], T(1), b[l]);  // Ŵ += Âᵀ R
          if (l > 0) gemm<T>("N", "N", T(1), c[l], b[l], T(0), a[l]);  // R̂ = Â W
        }
      },
      min_time);
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
  return r;
}

}  // namespace

int cmd_bench(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("what", po::value<std::string>()->default_value("engine"),
                                                          "what to benchmark: engine")(
      "json", po::value<std::string>(), "also write the rows as a JSON list of objects")(
      "batch", po::value<int>()->default_value(256), "samples per pass")(
      "widths", po::value<std::string>()->default_value("64,128"), "hidden widths")(
      "tangents", po::value<std::string>()->default_value("0,2,17"), "tangent counts K")(
      "precision", po::value<std::string>()->default_value("double,float"), "double, float or both")(
      "min-time", po::value<double>()->default_value(0.5), "seconds to time each configuration");
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (boltzflow bench)");
  }
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow bench engine [--json FILE] [--batch N] [--widths 64,128] [--tangents 0,2,17]",
                              "Times forward + reverse of the tangent-carrying MLP (17 -> 3 x width -> 16, swish) "
                              "and reports seconds per pass, GFLOP/s (GEMM FLOPs) and the ratio to the rate of "
                              "the same GEMMs timed alone in the same run.",
                              desc, {}));
    return kExitOk;
  }
  if (vm["what"].as<std::string>() != "engine")
    throw InputError("bench: unknown benchmark '" + vm["what"].as<std::string>() + "' (known: engine)");
  const int batch = vm["batch"].as<int>();
  if (batch < 1) throw InputError("bench: --batch must be at least 1");
  const double min_time = vm["min-time"].as<double>();
  std::vector<int> widths, ks;
  for (double v : parse_reals(vm["widths"].as<std::string>(), "--widths")) widths.push_back(static_cast<int>(v));
  for (double v : parse_reals(vm["tangents"].as<std::string>(), "--tangents")) {
    if (v < 0 || v > 17) throw InputError("bench: tangent counts must be in [0, 17]");
    ks.push_back(static_cast<int>(v));
  }
  const std::string prec = vm["precision"].as<std::string>();
  std::vector<BenchRow> rows;
  std::ostringstream os;
  os << build_description() << ", rank 0 of " << env.size() << "\n";
  os << "width    K  batch  precision   s/pass       GFLOP/s   GEMM GFLOP/s   ratio\n";
  print_root(env, os.str());
  for (int w : widths)
    for (int k : ks)
      for (const std::string p : {"double", "float"}) {
        if (prec.find(p) == std::string::npos) continue;
        const BenchRow r = p == "double" ? bench_one<double>(w, k, batch, min_time) : bench_one<float>(w, k, batch, min_time);
        rows.push_back(r);
        char buf[256];
        std::snprintf(buf, sizeof buf, "%5d %4d %6d  %-9s %10.3e %12.2f %14.2f %7.3f\n", r.width, r.k, r.batch,
                      r.precision.c_str(), r.seconds, r.gflops, r.gemm_gflops, r.ratio);
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
      j["gemm_gflops"] = r.gemm_gflops;
      j["ratio"] = r.ratio;
      list.push_back(j);
    }
    std::ofstream out(vm["json"].as<std::string>());
    if (!out) throw InputError("bench: cannot write '" + vm["json"].as<std::string>() + "'");
    out << list.dump(2) << "\n";
  }
  return kExitOk;
}

}  // namespace bf
