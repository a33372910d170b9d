#include "src/run/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>

namespace bf {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string type_name(KeyType t) {
  switch (t) {
    case KeyType::Int: return "integer";
    case KeyType::Real: return "number";
    case KeyType::String: return "text";
    case KeyType::Bool: return "true/false";
    case KeyType::RealList: return "list of numbers";
    case KeyType::IntList: return "list of integers";
    case KeyType::Choice: return "choice";
  }
  return "?";
}

}  // namespace

long long parse_int(const std::string& text, const std::string& what) {
  const std::string t = trim(text);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || errno == ERANGE) {
    // Accept integral reals written as 1e4.
    char* end2 = nullptr;
    const double d = std::strtod(t.c_str(), &end2);
    if (!t.empty() && *end2 == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
      return static_cast<long long>(d);
    throw InputError(what + ": '" + text + "' is not an integer");
  }
  return v;
}

double parse_real(const std::string& text, const std::string& what) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0') throw InputError(what + ": '" + text + "' is not a number");
  if (!std::isfinite(v)) throw InputError(what + ": '" + text + "' is not a finite number");
  return v;
}

std::vector<double> parse_reals(const std::string& text, const std::string& what) {
  // Items are separated by whitespace or by one ',', ';' or 'x' (with optional
  // spaces around it). An empty item -- "64,,64", ",64", "64," -- is an error,
  // not a silently shorter list.
  std::vector<double> out;
  std::string tok;
  bool separator = false;  // a ',', ';' or 'x' since the last item
  auto malformed = [&] {
    throw InputError(what + ": '" + text + "' is a malformed list (an empty item between separators)");
  };
  auto flush = [&] {
    if (tok.empty()) return;
    out.push_back(parse_real(tok, what));
    tok.clear();
    separator = false;
  };
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      flush();
    } else if (c == ',' || c == ';' || c == 'x') {
      if (tok.empty() && (out.empty() || separator)) malformed();
      flush();
      separator = true;
    } else {
      tok += c;
    }
  }
  flush();
  if (separator) malformed();
  return out;
}

const KeyInfo* find_key(const std::string& key) {
  for (const auto& k : config_registry())
    if (k.key == key) return &k;
  return nullptr;
}

std::string closest_key(const std::string& key) {
  std::string best;
  std::size_t best_d = 1000;
  for (const auto& k : config_registry()) {
    std::size_t d = edit_distance(key, k.key);
    // Also compare the part after the section, so "lr" suggests "train.lr".
    const auto dot = k.key.find('.');
    if (dot != std::string::npos) d = std::min(d, edit_distance(key, k.key.substr(dot + 1)) + 1);
    if (d < best_d) {
      best_d = d;
      best = k.key;
    }
  }
  return best_d <= std::max<std::size_t>(2, key.size() / 3) ? best : "";
}

Config::Config() {
  for (const auto& k : config_registry()) {
    values_[k.key] = k.default_value;
    origins_[k.key] = "default";
  }
}

const std::string& Config::raw(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("config key '" + key + "' is not in the registry");
  return it->second;
}

const std::string& Config::origin(const std::string& key) const {
  auto it = origins_.find(key);
  if (it == origins_.end()) throw std::logic_error("config key '" + key + "' is not in the registry");
  return it->second;
}

void Config::set(const std::string& key_in, const std::string& value_in, const std::string& origin) {
  const std::string key = trim(key_in), value = trim(value_in);
  const KeyInfo* info = find_key(key);
  if (!info) {
    const std::string hint = closest_key(key);
    throw InputError(origin + ": unknown config key '" + key + "'" +
                     (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                     "; 'boltzflow train --help' lists every key");
  }
  const std::string what = origin + ": " + key;
  auto check_range = [&](double v) {
    if (v < info->min || v > info->max) {
      std::ostringstream os;
      os << what << " = " << value << " is out of range [" << info->min << ", " << info->max << "]";
      throw InputError(os.str());
    }
  };
  if (value.empty()) {
    // Keys whose default is unset may be cleared; every other key needs a value.
    if (!info->default_value.empty() && info->type != KeyType::String)
      throw InputError(what + ": needs a value (" + type_name(info->type) + ")");
  } else {
    switch (info->type) {
      case KeyType::Int:
        check_range(static_cast<double>(parse_int(value, what)));
        break;
      case KeyType::Real:
        check_range(parse_real(value, what));
        break;
      case KeyType::Bool:
        if (value != "true" && value != "false" && value != "1" && value != "0" && value != "yes" && value != "no")
          throw InputError(what + ": '" + value + "' is not true or false");
        break;
      case KeyType::Choice:
        if (std::find(info->choices.begin(), info->choices.end(), value) == info->choices.end()) {
          std::string all;
          for (const auto& c : info->choices) all += (all.empty() ? "" : ", ") + c;
          throw InputError(what + ": '" + value + "' is not one of: " + all);
        }
        break;
      case KeyType::RealList:
        for (double v : parse_reals(value, what)) check_range(v);
        break;
      case KeyType::IntList:
        for (double v : parse_reals(value, what)) {
          if (v != std::floor(v)) throw InputError(what + ": '" + value + "' must be integers");
          check_range(v);
        }
        break;
      case KeyType::String:
        break;
    }
  }
  values_[key] = value;
  origins_[key] = origin;
}

void Config::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot read config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  load_string(ss.str(), path);
}

void Config::load_string(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line, section;
  std::map<std::string, int> seen;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = source + ":" + std::to_string(lineno);
    // Comments: a line starting with # or ;, or " #" / " ;" after a value.
    for (std::size_t p = 0; p < line.size(); ++p) {
      if ((line[p] == '#' || line[p] == ';') && (p == 0 || line[p - 1] == ' ' || line[p - 1] == '\t')) {
        line.erase(p);
        break;
      }
    }
    const std::string t = trim(line);
    if (t.empty()) continue;
    if (t.front() == '[') {
      if (t.back() != ']') throw InputError(where + ": malformed section header '" + t + "'");
      section = trim(t.substr(1, t.size() - 2));
      if (section.empty() || section.find_first_of(" .=") != std::string::npos)
        throw InputError(where + ": malformed section name '" + section + "'");
      continue;
    }
    const auto eq = t.find('=');
    if (eq == std::string::npos) throw InputError(where + ": expected 'key = value', got '" + t + "'");
    const std::string name = trim(t.substr(0, eq));
    if (name.empty()) throw InputError(where + ": missing key before '='");
    if (section.empty() && name.find('.') == std::string::npos)
      throw InputError(where + ": key '" + name + "' is outside any [section]");
    const std::string key = section.empty() ? name : section + "." + name;
    if (seen.count(key))
      throw InputError(where + ": key '" + key + "' is set twice (first at line " + std::to_string(seen[key]) + ")");
    seen[key] = lineno;
    set(key, t.substr(eq + 1), where);
  }
}

long long Config::get_int(const std::string& key) const { return parse_int(raw(key), key); }
double Config::get_real(const std::string& key) const { return parse_real(raw(key), key); }
bool Config::get_bool(const std::string& key) const {
  const std::string& v = raw(key);
  return v == "true" || v == "1" || v == "yes";
}
std::vector<double> Config::get_reals(const std::string& key) const { return parse_reals(raw(key), key); }
std::vector<long long> Config::get_ints(const std::string& key) const {
  std::vector<long long> out;
  for (double v : parse_reals(raw(key), key)) out.push_back(static_cast<long long>(v));
  return out;
}

std::string Config::to_ini() const {
  std::ostringstream os;
  std::string section;
  for (const auto& k : config_registry()) {
    const auto dot = k.key.find('.');
    const std::string s = k.key.substr(0, dot);
    if (s != section) {
      os << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    os << k.key.substr(dot + 1) << " = " << values_.at(k.key) << "\n";
  }
  return os.str();
}

std::vector<std::string> Config::differences(const Config& other) const {
  std::vector<std::string> d;
  for (const auto& k : config_registry())
    if (values_.at(k.key) != other.values_.at(k.key)) d.push_back(k.key);
  return d;
}

void print_key_help(std::ostream& os, const std::string& prefix) {
  for (const auto& k : config_registry()) {
    if (!prefix.empty() && k.key.rfind(prefix, 0) != 0) continue;
    std::string def = k.default_value.empty() ? "(unset)" : k.default_value;
    std::string head = "  --" + k.key + " " + (k.type == KeyType::Choice ? "{" : "<");
    if (k.type == KeyType::Choice) {
      for (std::size_t i = 0; i < k.choices.size(); ++i) head += (i ? "|" : "") + k.choices[i];
      head += "}";
    } else {
      head += type_name(k.type) + ">";
    }
    os << head << "\n      " << k.help << " [default: " << def << "]\n";
  }
}

}  // namespace bf
