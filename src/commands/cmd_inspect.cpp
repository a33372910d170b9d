// boltzflow inspect FILE.h5: what a checkpoint or sample file holds.
#include <iostream>
#include <sstream>

#include "src/run/train_state.hpp"
#include "src/commands/cli.hpp"
#include "src/commands/commands.hpp"
#include "src/io/hdf5_util.hpp"
#include "src/io/json.hpp"
#include "src/run/run_dir.hpp"

namespace bf {

int cmd_inspect(Environment& env, const std::vector<std::string>& args) {
  po::options_description desc;
  desc.add_options()("help,h", "show this help and exit")("file", po::value<std::string>(), "the HDF5 file")(
      "rows", po::value<int>()->default_value(5), "metrics rows to show (the last ones)")(
      "step", "print only the checkpoint's step (for scripts)");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (boltzflow inspect)");
  }
  if (vm.count("help")) {
    print_root(env, help_text("boltzflow inspect FILE.h5",
                              "Prints a checkpoint's provenance, state, configuration and metrics history, or a "
                              "sample file's contents.",
                              desc, {}));
    return kExitOk;
  }
  if (!vm.count("file")) throw InputError("inspect needs a file");
  const std::string path = vm["file"].as<std::string>();
  if (!env.root()) return kExitOk;
  if (!file_exists(path)) throw InputError("'" + path + "' does not exist");
  std::ostringstream os;
  if (is_checkpoint(path)) {
    const TrainState c = load_state(path);
    if (vm.count("step")) {
      std::cout << c.step << "\n";
      return kExitOk;
    }
    os << path << ": boltzflow checkpoint\n"
       << "  step            " << c.step << "\n  adam steps      " << c.adam_steps << "\n  lr factor       "
       << c.lr_factor << "\n  seed            " << c.seed << "\n  parameters      " << c.parameters.size()
       << " (" << c.precision << ")\n  model           " << c.model_kind << "\n  written by      boltzflow "
       << c.program_version << " on " << c.ranks << " rank(s), Kokkos " << c.backend << ", " << c.created
       << "\n  training time   " << c.wall_time << " s\n\n[configuration]\n"
       << c.config;
    std::istringstream in(c.metrics);
    std::vector<std::string> rows;
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) rows.push_back(line);
    const int show = vm["rows"].as<int>();
    os << "\n[metrics] " << rows.size() << " rows; the last " << std::min<int>(show, static_cast<int>(rows.size()))
       << ":\n";
    for (std::size_t i = rows.size() > static_cast<std::size_t>(show) ? rows.size() - show : 0; i < rows.size(); ++i)
      os << "  " << rows[i] << "\n";
    for (std::size_t i = rows.size(); i-- > 0;) {
      const Json j = Json::parse(rows[i]);
      if (j.contains("log_z")) {  // an evaluation row (every flow reports log Z)
        os << "last evaluation (step " << j.at("step").get<long long>() << "): " << j.dump() << "\n";
        break;
      }
    }
  } else {
    h5::quiet();
    if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError("'" + path + "' is not an HDF5 file");
    h5::Handle f = h5::open_file(path);
    if (!h5::exists(f, "format") || h5::read_string(f, "format") != "boltzflow-samples")
      throw InputError("'" + path + "' is HDF5 but neither a boltzflow checkpoint nor a sample file");
    const auto lq = h5::read_array(f, "log_q");
    os << path << ": boltzflow samples\n  samples    " << lq.size() << "\n  target     " << h5::read_string(f, "target")
       << "\n  checkpoint " << h5::read_string(f, "checkpoint") << " (step " << h5::read_int(f, "step")
       << ")\n  seed       " << h5::read_int(f, "seed") << "\n";
  }
  std::cout << os.str() << std::flush;
  return kExitOk;
}

}  // namespace bf
