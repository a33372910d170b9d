#include "src/run/train_state.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <type_traits>

#include "src/errors.hpp"
#include "src/io/hdf5_util.hpp"

namespace bf {

namespace {
constexpr const char* kFormat = "boltzflow-checkpoint";
constexpr long long kFormatVersion = 1;

// "state/step" -> ("state", "step"); "config" -> ("", "config").
std::pair<std::string, std::string> split_path(const std::string& p) {
  const auto slash = p.find('/');
  if (slash == std::string::npos) return {"", p};
  return {p.substr(0, slash), p.substr(slash + 1)};
}

template <class>
constexpr bool kAlwaysFalse = false;
}  // namespace

void save_state(const std::string& path, const TrainState& s, const std::function<void()>& after_parameters) {
  const std::string tmp = path + ".tmp";
  {
    h5::Handle f = h5::create_file(tmp);
    const bool as_float = s.precision == "float";
    h5::write_string(f, "format", kFormat);
    {
      h5::Handle d(H5Dopen2(f, "format", H5P_DEFAULT), H5Dclose);
      h5::write_string_attribute(d, "version", std::to_string(kFormatVersion));
    }
    std::map<std::string, h5::Handle> groups;
    TrainState::fields(s, [&](const std::string& p, const auto& value) {
      const auto [group, name] = split_path(p);
      hid_t loc = f;
      if (!group.empty()) {
        auto it = groups.find(group);
        if (it == groups.end()) it = groups.emplace(group, h5::create_group(f, group)).first;
        loc = it->second;
      }
      using V = std::decay_t<decltype(value)>;
      if constexpr (std::is_same_v<V, std::vector<double>>)
        h5::write_array(loc, name, value, as_float && p != "optimizer/model");
      else if constexpr (std::is_same_v<V, std::int64_t>)
        h5::write_int(loc, name, value);
      else if constexpr (std::is_same_v<V, double>)
        h5::write_double(loc, name, value);
      else if constexpr (std::is_same_v<V, std::string>)
        h5::write_string(loc, name, value);
      else
        static_assert(kAlwaysFalse<V>, "TrainState field of a type save_state cannot write");
      if (p == "parameters" && after_parameters) after_parameters();
    });
    groups.clear();
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) throw std::runtime_error("HDF5: flushing " + tmp + " failed");
  }
  // Make the data durable before the rename makes it the checkpoint.
  if (FILE* fp = std::fopen(tmp.c_str(), "rb")) {
    fsync(fileno(fp));
    std::fclose(fp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
}

bool is_checkpoint(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  h5::quiet();
  if (H5Fis_hdf5(path.c_str()) <= 0) return false;
  try {
    h5::Handle f = h5::open_file(path);
    return h5::exists(f, "format") && h5::read_string(f, "format") == kFormat;
  } catch (const std::exception&) {
    return false;
  }
}

TrainState load_state(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw InputError("checkpoint '" + path + "' does not exist");
  h5::quiet();
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError("checkpoint '" + path + "' is not a readable HDF5 file (truncated or not a checkpoint)");
  TrainState s;
  try {
    h5::Handle f = h5::open_file(path);
    if (!h5::exists(f, "format") || h5::read_string(f, "format") != kFormat)
      throw InputError("'" + path + "' is an HDF5 file but not a boltzflow checkpoint");
    {
      h5::Handle d(H5Dopen2(f, "format", H5P_DEFAULT), H5Dclose);
      const std::string v = h5::read_string_attribute(d, "version");
      if (v != std::to_string(kFormatVersion))
        throw InputError("checkpoint '" + path + "' has format version " + v + "; this boltzflow reads version " +
                         std::to_string(kFormatVersion));
    }
    TrainState::fields(s, [&](const std::string& p, auto& value) {
      using V = std::decay_t<decltype(value)>;
      if constexpr (std::is_same_v<V, std::vector<double>>)
        value = p == "optimizer/model" && !h5::exists(f, p) ? std::vector<double>() : h5::read_array(f, p);
      else if constexpr (std::is_same_v<V, std::int64_t>)
        value = h5::read_int(f, p);
      else if constexpr (std::is_same_v<V, double>)
        value = h5::read_double(f, p);
      else if constexpr (std::is_same_v<V, std::string>)
        value = h5::read_string(f, p);
      else
        static_assert(kAlwaysFalse<V>, "TrainState field of a type load_state cannot read");
    });
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError("checkpoint '" + path + "' is damaged: " + e.what());
  }
  if (s.adam_m.size() != s.parameters.size() || s.adam_v.size() != s.parameters.size())
    throw InputError("checkpoint '" + path + "' is damaged: optimizer state and parameters differ in size");
  return s;
}

void broadcast_state(const Environment& env, TrainState& s) {
  TrainState::fields(s, [&](const std::string&, auto& value) {
    using V = std::decay_t<decltype(value)>;
    if constexpr (std::is_same_v<V, std::int64_t>) {
      long long v = value;
      MPI_Bcast(&v, 1, MPI_LONG_LONG, 0, env.comm());
      value = v;
    } else if constexpr (std::is_same_v<V, double>) {
      MPI_Bcast(&value, 1, MPI_DOUBLE, 0, env.comm());
    } else {  // std::vector<double> or std::string
      broadcast(env, value);
    }
  });
}

}  // namespace bf
