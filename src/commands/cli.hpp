// Command-line parsing shared by the subcommands (Boost.Program_options).
// Every config key is also an option --section.key; precedence is
// defaults < --config FILE < command-line options.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "src/run/config.hpp"

namespace bf {

namespace po = boost::program_options;

/// Adds --section.key options for every registry key in `sections` (all if empty).
void add_config_options(po::options_description& desc, const std::vector<std::string>& sections);

/// Parses args (without the program and command names). Unknown options and
/// malformed values become InputError with a suggestion.
po::variables_map parse_command_line(const std::vector<std::string>& args, const po::options_description& desc,
                                     const std::string& command);

/// Applies --config FILE (if the option exists and is given), then every
/// --section.key given on the command line, on top of `cfg`.
void apply_command_line(Config& cfg, const po::variables_map& vm);

/// Usage header plus the options, for --help.
std::string help_text(const std::string& usage, const std::string& about, const po::options_description& desc,
                      const std::vector<std::string>& sections);

}  // namespace bf
