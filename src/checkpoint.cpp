#include "src/checkpoint.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "src/errors.hpp"
#include "src/hdf5_util.hpp"

namespace bf {

namespace {
constexpr const char* kFormat = "boltzflow-checkpoint";
constexpr long long kFormatVersion = 1;

// Test hook: BOLTZFLOW_FAULT_INJECT=checkpoint-write:K makes the process die
// half-way through its K-th checkpoint write, as a job killed by the
// scheduler at the wrong moment would.
bool inject_fault() {
  static int writes = 0;
  ++writes;
  const char* f = std::getenv("BOLTZFLOW_FAULT_INJECT");
  const std::string key = "checkpoint-write:";
  return f && std::string(f).rfind(key, 0) == 0 && std::atoi(f + key.size()) == writes;
}
}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& c) {
  const std::string tmp = path + ".tmp";
  {
    h5::Handle f = h5::create_file(tmp);
    const bool as_float = c.precision == "float";
    h5::write_string(f, "format", kFormat);
    {
      h5::Handle d(H5Dopen2(f, "format", H5P_DEFAULT), H5Dclose);
      h5::write_string_attribute(d, "version", std::to_string(kFormatVersion));
    }
    h5::write_array(f, "parameters", c.parameters, as_float);
    if (inject_fault()) std::_Exit(9);  // killed mid-write: the .tmp is torn, the old checkpoint untouched
    {
      h5::Handle g = h5::create_group(f, "optimizer");
      h5::write_array(g, "m", c.adam_m, as_float);
      h5::write_array(g, "v", c.adam_v, as_float);
    }
    {
      h5::Handle g = h5::create_group(f, "state");
      h5::write_int(g, "step", c.step);
      h5::write_int(g, "adam_steps", c.adam_steps);
      h5::write_double(g, "lr_factor", c.lr_factor);
      h5::write_int(g, "seed", c.seed);
      h5::write_int(g, "consecutive_failures", c.consecutive_failures);
      h5::write_double(g, "wall_time", c.wall_time);
    }
    h5::write_string(f, "config", c.config);
    h5::write_string(f, "metrics", c.metrics);
    {
      h5::Handle g = h5::create_group(f, "provenance");
      h5::write_string(g, "program_version", c.program_version);
      h5::write_int(g, "ranks", c.ranks);
      h5::write_string(g, "backend", c.backend);
      h5::write_string(g, "precision", c.precision);
      h5::write_string(g, "model_kind", c.model_kind);
      h5::write_string(g, "layout_signature", c.layout_signature);
      h5::write_string(g, "created", c.created);
    }
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

Checkpoint read_checkpoint(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw InputError("checkpoint '" + path + "' does not exist");
  h5::quiet();
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError("checkpoint '" + path + "' is not a readable HDF5 file (truncated or not a checkpoint)");
  Checkpoint c;
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
    c.parameters = h5::read_array(f, "parameters");
    c.adam_m = h5::read_array(f, "optimizer/m");
    c.adam_v = h5::read_array(f, "optimizer/v");
    c.step = h5::read_int(f, "state/step");
    c.adam_steps = h5::read_int(f, "state/adam_steps");
    c.lr_factor = h5::read_double(f, "state/lr_factor");
    c.seed = static_cast<std::uint32_t>(h5::read_int(f, "state/seed"));
    c.consecutive_failures = h5::read_int(f, "state/consecutive_failures");
    c.wall_time = h5::read_double(f, "state/wall_time");
    c.config = h5::read_string(f, "config");
    c.metrics = h5::read_string(f, "metrics");
    c.program_version = h5::read_string(f, "provenance/program_version");
    c.ranks = static_cast<int>(h5::read_int(f, "provenance/ranks"));
    c.backend = h5::read_string(f, "provenance/backend");
    c.precision = h5::read_string(f, "provenance/precision");
    c.model_kind = h5::read_string(f, "provenance/model_kind");
    c.layout_signature = h5::read_string(f, "provenance/layout_signature");
    c.created = h5::read_string(f, "provenance/created");
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError("checkpoint '" + path + "' is damaged: " + e.what());
  }
  if (c.adam_m.size() != c.parameters.size() || c.adam_v.size() != c.parameters.size())
    throw InputError("checkpoint '" + path + "' is damaged: optimizer state and parameters differ in size");
  return c;
}

}  // namespace bf
