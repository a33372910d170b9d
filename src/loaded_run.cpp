#include "src/loaded_run.hpp"

#include "src/target_config.hpp"
#include "src/errors.hpp"
#include "src/mpi_env.hpp"

namespace bf {

LoadedRun load_run(const Environment& env, const std::string& path) {
  LoadedRun r;
  r.path = path;
  std::string cfg_text;
  root_agreed(env, [&] {
    r.ckpt = read_checkpoint(path);
    cfg_text = r.ckpt.config;
  });
  auto bcast_str = [&](std::string& s) {
    long long n = static_cast<long long>(s.size());
    MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, env.comm());
    s.resize(static_cast<std::size_t>(n));
    if (n) MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, 0, env.comm());
  };
  bcast_str(cfg_text);
  bcast_str(r.ckpt.precision);
  bcast_str(r.ckpt.layout_signature);
  long long n = static_cast<long long>(r.ckpt.parameters.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, env.comm());
  r.ckpt.parameters.resize(static_cast<std::size_t>(n));
  MPI_Bcast(r.ckpt.parameters.data(), static_cast<int>(n), MPI_DOUBLE, 0, env.comm());
  long long st[2] = {r.ckpt.step, static_cast<long long>(r.ckpt.seed)};
  MPI_Bcast(st, 2, MPI_LONG_LONG, 0, env.comm());
  r.ckpt.step = st[0];
  r.ckpt.seed = static_cast<std::uint32_t>(st[1]);
  r.ckpt.config = cfg_text;
  r.cfg.load_string(cfg_text, path + ":/config");
  r.target = make_target(r.cfg);
  return r;
}

template <class T>
Vector<T> device_parameters(const std::vector<double>& host) {
  Vector<T> d("params", host.size());
  auto h = Kokkos::create_mirror_view(d);
  for (std::size_t i = 0; i < host.size(); ++i) h(i) = static_cast<T>(host[i]);
  Kokkos::deep_copy(d, h);
  return d;
}

template Vector<float> device_parameters<float>(const std::vector<double>&);
template Vector<double> device_parameters<double>(const std::vector<double>&);

}  // namespace bf
