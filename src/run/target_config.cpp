#include "src/run/target_config.hpp"

#include <stdexcept>

namespace bf {

Config with_presets(Config cfg) {
  const std::string name = cfg.get_string("target.name");
  auto preset = [&](const std::string& key, double value) {
    if (!cfg.is_set(key)) cfg.set(key, fmt_num(value), "preset " + name);
  };
  if (name == "ring") {
    if (!cfg.is_set("target.radii")) cfg.set("target.radii", "2", "preset ring");
    if (!cfg.is_set("target.widths")) cfg.set("target.widths", "0.5", "preset ring");
    return cfg;
  }
  if (name == "o2-phi4") {
    const Phi4Params p = phi4_preset("phi4");
    preset("target.m", p.m);
    preset("target.lambda", p.lambda);
    return cfg;
  }
  if (name.rfind("phi4", 0) != 0) return cfg;
  const Phi4Params p = phi4_preset(name);
  if (name == "phi4") {
    preset("target.m", p.m);
    preset("target.lambda", p.lambda);
    preset("target.alpha", p.alpha);
  } else if (name == "phi4-dw") {
    preset("target.m", p.m);
    preset("target.lambda", p.lambda);
  } else {
    preset("target.alpha", p.alpha);
  }
  return cfg;
}

namespace {
double resolved(const std::optional<double>& v, const char* key) {
  if (!v) throw std::logic_error(std::string(key) + " is unset: the configuration did not go through with_presets");
  return *v;
}
}  // namespace

std::unique_ptr<Distribution> make_target(const TargetSettings& t) {
  TargetSpec spec;
  spec.name = t.name;
  if (spec.name == "gmm") {
    if (!t.dim || t.weights.empty() || t.means.empty() || t.widths.empty())
      throw InputError("target.name = gmm needs target.dim, target.weights, target.means and target.widths");
    spec.dim = static_cast<int>(*t.dim);
    spec.weights = t.weights;
    spec.means = t.means;
    spec.widths = t.widths;
  } else if (spec.name == "ring") {
    spec.radii = t.radii;
    spec.widths = t.widths;
    spec.weights = t.weights;
  } else if (spec.name == "o2-phi4") {
    spec.phi4.shape.clear();
    for (long long e : t.shape) spec.phi4.shape.push_back(static_cast<int>(e));
    spec.phi4.m = resolved(t.m, "target.m");
    spec.phi4.lambda = resolved(t.lambda, "target.lambda");
  } else if (spec.name.rfind("phi4", 0) == 0) {
    spec.phi4.shape.clear();
    for (long long e : t.shape) spec.phi4.shape.push_back(static_cast<int>(e));
    if (spec.name == "phi4") {
      spec.phi4.m = resolved(t.m, "target.m");
      spec.phi4.lambda = resolved(t.lambda, "target.lambda");
      spec.phi4.alpha = resolved(t.alpha, "target.alpha");
    } else if (spec.name == "phi4-dw") {
      spec.phi4.m = resolved(t.m, "target.m");
      spec.phi4.lambda = resolved(t.lambda, "target.lambda");
      spec.phi4.time_extent = t.time_extent;
    } else {
      spec.phi4.kappa = t.kappa;
      spec.phi4.mu2 = t.mu2;
      spec.phi4.lambda4 = t.lambda4;
      spec.phi4.alpha = resolved(t.alpha, "target.alpha");
    }
  } else if (spec.name == "supernova") {
    spec.quadrature_grid = static_cast<int>(t.quadrature_grid);
  }
  try {
    return bf::make_target(spec);
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("target: ") + e.what());
  }
}

}  // namespace bf
