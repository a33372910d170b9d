// The key registry generated from the settings' field lists, and the reading
// of a validated Config into typed settings.
#include "src/run/settings.hpp"

#include <stdexcept>
#include <type_traits>

namespace bf {

namespace {

template <class M>
bool type_matches(KeyType t) {
  if constexpr (std::is_same_v<M, long long> || std::is_same_v<M, std::optional<long long>>) return t == KeyType::Int;
  if constexpr (std::is_same_v<M, double> || std::is_same_v<M, std::optional<double>>) return t == KeyType::Real;
  if constexpr (std::is_same_v<M, bool>) return t == KeyType::Bool;
  if constexpr (std::is_same_v<M, std::string>) return t == KeyType::String || t == KeyType::Choice;
  if constexpr (std::is_same_v<M, std::vector<double>>) return t == KeyType::RealList;
  if constexpr (std::is_same_v<M, std::vector<long long>>) return t == KeyType::IntList;
  return false;
}

struct RegistryBuilder {
  std::vector<KeyInfo>& keys;
  template <class S, class M>
  void operator()(M S::*, const char* key, KeyType t, const char* def, const char* help,
                  std::vector<std::string> choices = {}, double min = -1e308, double max = 1e308) {
    if (!type_matches<M>(t)) throw std::logic_error(std::string("settings: the member of '") + key + "' has the wrong type");
    const bool optional = std::is_same_v<M, std::optional<long long>> || std::is_same_v<M, std::optional<double>>;
    if (optional != (std::string(def).empty() && (t == KeyType::Int || t == KeyType::Real)))
      throw std::logic_error(std::string("settings: '") + key + "' is optional exactly when its default is unset");
    keys.emplace_back(key, t, def, help, std::move(choices), min, max);
  }
};

template <class S>
S& part(Settings& s) {
  if constexpr (std::is_same_v<S, RunSettings>) return s.run;
  if constexpr (std::is_same_v<S, TrainSettings>) return s.train;
  if constexpr (std::is_same_v<S, ModelSettings>) return s.model;
  if constexpr (std::is_same_v<S, BaseSettings>) return s.base;
  if constexpr (std::is_same_v<S, EvalSettings>) return s.eval;
  if constexpr (std::is_same_v<S, TargetSettings>) return s.target;
}

struct Reader {
  const Config& cfg;
  Settings& out;
  template <class S, class M>
  void operator()(M S::*member, const char* key, KeyType, const char*, const char*, std::vector<std::string> = {},
                  double = 0, double = 0) {
    part<S>(out).*member = read<M>(key);
  }
  template <class M>
  M read(const std::string& key) const {
    if constexpr (std::is_same_v<M, long long>) return cfg.get_int(key);
    if constexpr (std::is_same_v<M, double>) return cfg.get_real(key);
    if constexpr (std::is_same_v<M, bool>) return cfg.get_bool(key);
    if constexpr (std::is_same_v<M, std::string>) return cfg.get_string(key);
    if constexpr (std::is_same_v<M, std::vector<double>>) return cfg.get_reals(key);
    if constexpr (std::is_same_v<M, std::vector<long long>>) return cfg.get_ints(key);
    if constexpr (std::is_same_v<M, std::optional<long long>>)
      return cfg.is_set(key) ? std::optional<long long>(cfg.get_int(key)) : std::nullopt;
    if constexpr (std::is_same_v<M, std::optional<double>>)
      return cfg.is_set(key) ? std::optional<double>(cfg.get_real(key)) : std::nullopt;
  }
};

}  // namespace

const std::vector<KeyInfo>& config_registry() {
  static const std::vector<KeyInfo> keys = [] {
    std::vector<KeyInfo> k;
    RegistryBuilder b{k};
    Settings::fields(b);
    return k;
  }();
  return keys;
}

Settings Settings::from(const Config& cfg) {
  Settings s;
  Reader r{cfg, s};
  Settings::fields(r);
  return s;
}

}  // namespace bf
