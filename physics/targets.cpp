#include "physics/targets.hpp"

#include <stdexcept>

namespace bf {

const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names{"gmm4", "gmm2asym", "gmm9", "gmm",
                                              "phi4", "phi4-dw", "phi4-general", "supernova",
                                              "ring",  "o2-phi4"};
  return names;
}

std::unique_ptr<Distribution> make_target(const TargetSpec& spec) {
  if (auto g = GaussianMixture::preset(spec.name)) return g;
  if (spec.name == "gmm") {
    const std::size_t k = spec.weights.size();
    if (spec.dim < 1) throw std::invalid_argument("target gmm: dim must be at least 1");
    if (k == 0) throw std::invalid_argument("target gmm: weights are empty");
    if (spec.means.size() != k * static_cast<std::size_t>(spec.dim))
      throw std::invalid_argument("target gmm: means must have " + std::to_string(k) + " x " +
                                  std::to_string(spec.dim) + " = " + std::to_string(k * spec.dim) +
                                  " numbers, got " + std::to_string(spec.means.size()));
    std::vector<double> widths = spec.widths;
    if (widths.size() == 1) widths.assign(k, widths[0]);
    if (widths.size() != k)
      throw std::invalid_argument("target gmm: widths must have 1 or " + std::to_string(k) + " numbers");
    std::vector<std::vector<double>> means(k);
    for (std::size_t c = 0; c < k; ++c)
      means[c].assign(spec.means.begin() + c * spec.dim, spec.means.begin() + (c + 1) * spec.dim);
    return std::make_unique<GaussianMixture>("gmm", spec.weights, means, widths);
  }
  if (spec.name == "phi4" || spec.name == "phi4-dw" || spec.name == "phi4-general") {
    Phi4Params p = spec.phi4;
    p.preset = spec.name;
    return std::make_unique<Phi4>(p);
  }
  if (spec.name == "ring") return std::make_unique<RingMixture>(spec.weights, spec.radii, spec.widths);
  if (spec.name == "o2-phi4") return std::make_unique<O2Phi4>(spec.phi4.shape, spec.phi4.m, spec.phi4.lambda);
  if (spec.name == "supernova") return std::make_unique<Supernova>(spec.quadrature_grid);
  std::string known;
  for (const auto& n : target_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown target '" + spec.name + "' (known: " + known + ")");
}

const std::vector<std::string>& base_names() {
  static const std::vector<std::string> names{"gengauss", "gauss", "softuniform"};
  return names;
}

std::unique_ptr<Distribution> make_base(const BaseSpec& spec, int dim) {
  if (spec.kind == "gengauss") return std::make_unique<GeneralizedGaussian>(dim, spec.sigma, spec.power);
  if (spec.kind == "gauss") {
    if (!(spec.scale > 0.0)) throw std::invalid_argument("gauss: scale must be positive");
    return GeneralizedGaussian::gaussian(dim, spec.scale);
  }
  if (spec.kind == "softuniform") return std::make_unique<SoftUniform>(dim, spec.half_width, spec.beta);
  throw std::invalid_argument("unknown base distribution '" + spec.kind + "' (known: gengauss, gauss, softuniform)");
}

}  // namespace bf
