#include "src/target_config.hpp"

#include <stdexcept>

namespace bf {

std::unique_ptr<Distribution> make_target(Config& cfg) {
  TargetSpec spec;
  spec.name = cfg.get_string("target.name");
  auto real_or = [&](const std::string& key, double preset_default) {
    if (!cfg.is_set(key)) cfg.set(key, fmt_num(preset_default), "preset " + spec.name);
    return cfg.get_real(key);
  };
  if (spec.name == "gmm") {
    if (!cfg.is_set("target.dim") || !cfg.is_set("target.weights") || !cfg.is_set("target.means") ||
        !cfg.is_set("target.widths"))
      throw InputError("target.name = gmm needs target.dim, target.weights, target.means and target.widths");
    spec.dim = static_cast<int>(cfg.get_int("target.dim"));
    spec.weights = cfg.get_reals("target.weights");
    spec.means = cfg.get_reals("target.means");
    spec.widths = cfg.get_reals("target.widths");
  } else if (spec.name.rfind("phi4", 0) == 0) {
    spec.phi4.shape.clear();
    for (long long e : cfg.get_ints("target.shape")) spec.phi4.shape.push_back(static_cast<int>(e));
    if (spec.name == "phi4") {
      spec.phi4.m = real_or("target.m", 0.5);
      spec.phi4.lambda = real_or("target.lambda", 1.0 / 16.0);
      spec.phi4.alpha = real_or("target.alpha", 0.01);
    } else if (spec.name == "phi4-dw") {
      spec.phi4.m = real_or("target.m", 3.0);
      spec.phi4.lambda = real_or("target.lambda", 1.0);
      spec.phi4.time_extent = cfg.get_real("target.time_extent");
    } else {
      spec.phi4.kappa = cfg.get_real("target.kappa");
      spec.phi4.mu2 = cfg.get_real("target.mu2");
      spec.phi4.lambda4 = cfg.get_real("target.lambda4");
      spec.phi4.alpha = real_or("target.alpha", 0.0);
    }
  } else if (spec.name == "supernova") {
    spec.quadrature_grid = static_cast<int>(cfg.get_int("target.quadrature_grid"));
  }
  try {
    return bf::make_target(spec);
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("target: ") + e.what());
  }
}

}  // namespace bf
