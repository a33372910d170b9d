#include "src/commands/cli.hpp"

#include <sstream>

namespace bf {

void add_config_options(po::options_description& desc, const std::vector<std::string>& sections) {
  for (const auto& k : config_registry()) {
    const std::string section = k.key.substr(0, k.key.find('.'));
    bool want = sections.empty();
    for (const auto& s : sections) want = want || s == section;
    if (want) desc.add_options()(k.key.c_str(), po::value<std::string>(), k.help.c_str());
  }
}

namespace {
// A config key given more than once on the command line: the last one wins,
// so scripts can append overrides. Removes the earlier occurrences.
std::vector<std::string> last_key_wins(const std::vector<std::string>& args) {
  auto key_of = [](const std::string& a) -> std::string {
    if (a.rfind("--", 0) != 0) return "";
    const std::string k = a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
    return find_key(k) ? k : "";
  };
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string k = key_of(args[i]);
    const bool has_inline_value = args[i].find('=') != std::string::npos;
    const std::size_t span = (!k.empty() && !has_inline_value && i + 1 < args.size()) ? 2 : 1;
    bool later = false;
    if (!k.empty())
      for (std::size_t j = i + span; j < args.size(); ++j)
        if (key_of(args[j]) == k) later = true;
    if (!later)
      for (std::size_t t = 0; t < span; ++t) out.push_back(args[i + t]);
    i += span - 1;
  }
  return out;
}
}  // namespace

po::variables_map parse_command_line(const std::vector<std::string>& args_in, const po::options_description& desc,
                                     const std::string& command) {
  po::variables_map vm;
  const std::vector<std::string> args = last_key_wins(args_in);
  try {
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    while (!name.empty() && name[0] == '-') name.erase(0, 1);
    std::string hint;
    if (!find_key(name)) hint = closest_key(name);
    if (hint.empty())
      for (const auto& opt : desc.options())
        if (opt->long_name().size() > 2 && opt->long_name().find(name.substr(0, 3)) == 0) hint = opt->long_name();
    throw InputError("unknown option '--" + name + "' for 'boltzflow " + command + "'" +
                     (hint.empty() ? "" : " (did you mean '--" + hint + "'?)") + "; see 'boltzflow " + command +
                     " --help'");
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (boltzflow " + command + ")");
  }
  return vm;
}

void apply_command_line(Config& cfg, const po::variables_map& vm) {
  if (vm.count("config")) cfg.load_file(vm["config"].as<std::string>());
  for (const auto& k : config_registry())
    if (vm.count(k.key)) cfg.set(k.key, vm[k.key].as<std::string>(), "--" + k.key);
}

std::string help_text(const std::string& usage, const std::string& about, const po::options_description& desc,
                      const std::vector<std::string>& sections) {
  std::ostringstream os;
  os << "usage: " << usage << "\n\n" << about << "\n\noptions:\n";
  for (const auto& opt : desc.options()) {
    if (find_key(opt->long_name())) continue;  // config keys are listed below
    os << "  " << opt->format_name() << " " << opt->format_parameter() << "\n      " << opt->description() << "\n";
  }
  if (!sections.empty()) {
    os << "\nconfiguration keys (in a --config INI file as [section] key = value, or here as --section.key "
          "VALUE):\n";
    for (const auto& s : sections) print_key_help(os, s + ".");
  }
  return os.str();
}

}  // namespace bf
