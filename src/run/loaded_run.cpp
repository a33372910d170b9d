#include "src/run/loaded_run.hpp"

#include "src/run/target_config.hpp"
#include "src/errors.hpp"
#include "src/io/mpi_env.hpp"

namespace bf {

LoadedRun load_run(const Environment& env, const std::string& path) {
  LoadedRun r;
  r.path = path;
  root_agreed(env, [&] { r.ckpt = load_state(path); });
  broadcast_state(env, r.ckpt);
  Config stored;
  stored.load_string(r.ckpt.config, path + ":/config");
  r.cfg = with_presets(stored);
  r.target = make_target(r.settings().target);
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
