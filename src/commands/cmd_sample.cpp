// boltzflow sample --checkpoint FILE --samples N --out FILE.h5
// Each rank draws its share of the global sample indices; rank 0 gathers and
// writes /samples [N x D], /log_q [N] and /log_w [N] = −f − log q.
#include <iostream>

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

int cmd_sample(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("checkpoint", po::value<std::string>(), "a checkpoint file")(
      "run", po::value<std::string>(), "a run directory (its checkpoint.h5)")(
      "samples", po::value<std::string>(), "global number of samples")(
      "out", po::value<std::string>(), "HDF5 file to write (must not exist)")(
      "seed", po::value<std::string>(), "seed of the sample stream (default: the run's seed)");
  const auto vm = parse_command_line(args, desc, "sample");
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow sample --checkpoint FILE --samples N --out FILE.h5",
                              "Draws samples from a trained flow with their log density and log importance "
                              "weight, and writes them to an HDF5 file.",
                              desc, {}));
    return kExitOk;
  }
  if (vm.count("run") == vm.count("checkpoint")) throw InputError("sample needs exactly one of --checkpoint or --run");
  if (!vm.count("samples")) throw InputError("sample needs --samples N");
  if (!vm.count("out")) throw InputError("sample needs --out FILE.h5");
  const long long n = parse_int(vm["samples"].as<std::string>(), "--samples");
  if (n < 1) throw InputError("--samples must be at least 1");
  const std::string out = vm["out"].as<std::string>();
  root_agreed(env, [&] {
    if (file_exists(out)) throw InputError("--out '" + out + "' exists; it is not overwritten");
  });
  const std::string path =
      vm.count("run") ? RunPaths{vm["run"].as<std::string>()}.checkpoint() : vm["checkpoint"].as<std::string>();
  LoadedRun run = load_run(env, path);
  const std::uint32_t seed = vm.count("seed")
                                 ? static_cast<std::uint32_t>(parse_int(vm["seed"].as<std::string>(), "--seed"))
                                 : run.ckpt.seed;
  const int d = run.target->dim();
  const Slice mine = split_range(n, env.rank(), env.size());
  Matrix<double> x("x", mine.count(), d);
  Vector<double> lq("log_q", mine.count()), lw("log_w", mine.count());
  const Settings settings = run.settings();
  with_precision(settings, [&](auto zero) {
    using T = decltype(zero);
    auto model = make_model<T>(settings, *run.target, static_cast<int>(settings.eval.batch), 1);
    if (model->layout().signature() != run.ckpt.layout_signature)
      throw InputError("checkpoint '" + path + "' does not match the model its configuration describes");
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
  std::vector<int> counts(env.size()), displs(env.size());
  for (int r = 0; r < env.size(); ++r) {
    const Slice s = split_range(n, r, env.size());
    counts[r] = static_cast<int>(s.count());
    displs[r] = static_cast<int>(s.begin);
  }
  std::vector<double> ax(env.root() ? static_cast<std::size_t>(n) * d : 0), aq(env.root() ? n : 0),
      aw(env.root() ? n : 0);
  std::vector<int> cd(env.size()), dd(env.size());
  for (int r = 0; r < env.size(); ++r) cd[r] = counts[r] * d, dd[r] = displs[r] * d;
  MPI_Gatherv(hx.data(), counts[env.rank()] * d, MPI_DOUBLE, ax.data(), cd.data(), dd.data(), MPI_DOUBLE, 0,
              env.comm());
  MPI_Gatherv(hq.data(), counts[env.rank()], MPI_DOUBLE, aq.data(), counts.data(), displs.data(), MPI_DOUBLE, 0,
              env.comm());
  MPI_Gatherv(hw.data(), counts[env.rank()], MPI_DOUBLE, aw.data(), counts.data(), displs.data(), MPI_DOUBLE, 0,
              env.comm());
  root_agreed(env, [&] {
    const std::string tmp = out + ".tmp";
    {
      h5::Handle f = h5::create_file(tmp);
      h5::write_string(f, "format", "boltzflow-samples");
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
  if (env.root()) std::cout << "wrote " << n << " samples of " << run.target->name() << " to " << out << "\n";
  return kExitOk;
}

}  // namespace bf
