// The run configuration: INI files and --section.key command-line overrides,
// declared once in the typed settings (src/run/settings.hpp), whose field lists
// generate the registry that also gives --help.
//
// Every value is validated when it is set (type and range), unknown keys are
// rejected with a suggestion, and the fully resolved configuration is written
// to every run directory and checkpoint.
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "src/errors.hpp"

namespace bf {

enum class KeyType { Int, Real, String, Bool, RealList, IntList, Choice };

struct KeyInfo {
  std::string key;            // "section.name"
  KeyType type;
  std::string default_value;  // "" = not set (the help says what that means)
  std::string help;
  std::vector<std::string> choices;  // KeyType::Choice
  double min = -1e308, max = 1e308;  // Int / Real / list elements

  KeyInfo(std::string key_, KeyType type_, std::string default_, std::string help_,
          std::vector<std::string> choices_ = {}, double min_ = -1e308, double max_ = 1e308)
      : key(std::move(key_)), type(type_), default_value(std::move(default_)), help(std::move(help_)),
        choices(std::move(choices_)), min(min_), max(max_) {}
};

/// Every key boltzflow knows, in help order.
const std::vector<KeyInfo>& config_registry();
const KeyInfo* find_key(const std::string& key);
/// The known key closest to `key` (for "did you mean"), or "".
std::string closest_key(const std::string& key);

class Config {
 public:
  Config();  // every key at its default

  /// Reads an INI file ([section] then key = value; # or ; comments).
  void load_file(const std::string& path);
  /// Parses INI text; `source` names it in error messages.
  void load_string(const std::string& text, const std::string& source);
  /// Sets a key after validating it; throws InputError naming key, value and origin.
  void set(const std::string& key, const std::string& value, const std::string& origin);

  bool is_set(const std::string& key) const { return !raw(key).empty(); }
  const std::string& raw(const std::string& key) const;
  const std::string& origin(const std::string& key) const;

  long long get_int(const std::string& key) const;
  double get_real(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const { return raw(key); }
  std::vector<double> get_reals(const std::string& key) const;
  std::vector<long long> get_ints(const std::string& key) const;

  /// The resolved configuration as INI text (every key, one section each).
  std::string to_ini() const;
  /// Keys whose value differs between two configs.
  std::vector<std::string> differences(const Config& other) const;

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> origins_;
};

/// Parses helpers shared by Config and command options.
long long parse_int(const std::string& text, const std::string& what);
double parse_real(const std::string& text, const std::string& what);
/// Lists: "1, 2, 3", "1 2 3", or "8x8" (IntList); an empty item ("64,,64") is an error.
std::vector<double> parse_reals(const std::string& text, const std::string& what);

/// One line per key: "--section.key  (default)  help".
void print_key_help(std::ostream& os, const std::string& section_prefix = "");

}  // namespace bf
