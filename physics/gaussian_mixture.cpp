#include "physics/gaussian_mixture.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace bf {

GaussianMixture::GaussianMixture(std::string name, std::vector<double> weights,
                                 std::vector<std::vector<double>> means, std::vector<double> widths)
    : name_(std::move(name)), weights_(std::move(weights)), widths_(std::move(widths)) {
  const std::size_t k = weights_.size();
  if (k == 0) throw std::invalid_argument("gaussian mixture: no components");
  if (means.size() != k || widths_.size() != k)
    throw std::invalid_argument("gaussian mixture: " + std::to_string(k) + " weights but " +
                                std::to_string(means.size()) + " means and " +
                                std::to_string(widths_.size()) + " widths");
  const std::size_t d = means[0].size();
  if (d == 0) throw std::invalid_argument("gaussian mixture: means have dimension 0");
  double total = 0.0;
  for (std::size_t c = 0; c < k; ++c) {
    if (means[c].size() != d)
      throw std::invalid_argument("gaussian mixture: component " + std::to_string(c) + " mean has dimension " +
                                  std::to_string(means[c].size()) + ", expected " + std::to_string(d));
    if (!(weights_[c] > 0.0) || !std::isfinite(weights_[c]))
      throw std::invalid_argument("gaussian mixture: weight " + std::to_string(c) + " must be positive and finite");
    if (!(widths_[c] > 0.0) || !std::isfinite(widths_[c]))
      throw std::invalid_argument("gaussian mixture: width " + std::to_string(c) + " must be positive and finite");
    for (double v : means[c])
      if (!std::isfinite(v)) throw std::invalid_argument("gaussian mixture: non-finite mean");
    total += weights_[c];
  }
  for (double& w : weights_) w /= total;

  kernel_.dim = static_cast<int>(d);
  kernel_.n_comp = static_cast<int>(k);
  kernel_.mean = Matrix<double>("gmm_mean", k, d);
  auto hm = Kokkos::create_mirror_view(kernel_.mean);
  std::vector<double> log_norm(k), inv_var(k), cum(k);
  double acc = 0.0;
  for (std::size_t c = 0; c < k; ++c) {
    for (std::size_t j = 0; j < d; ++j) hm(c, j) = means[c][j];
    const double var = widths_[c] * widths_[c];
    log_norm[c] = std::log(weights_[c]) - 0.5 * static_cast<double>(d) * std::log(2.0 * kPi * var);
    inv_var[c] = 1.0 / var;
    acc += weights_[c];
    cum[c] = acc;
  }
  cum[k - 1] = 1.0;
  Kokkos::deep_copy(kernel_.mean, hm);
  kernel_.log_norm = to_device(log_norm, "gmm_log_norm");
  kernel_.inv_var = to_device(inv_var, "gmm_inv_var");
  kernel_.width = to_device(widths_, "gmm_width");
  kernel_.cum_weight = to_device(cum, "gmm_cum_weight");

  modes_.means = std::move(means);
  modes_.weights = weights_;
  modes_.weights_exact = true;
  modes_.rule = "nearest component mean";
}

const std::vector<std::string>& GaussianMixture::preset_names() {
  static const std::vector<std::string> names{"gmm4", "gmm2asym", "gmm9"};
  return names;
}

std::unique_ptr<GaussianMixture> GaussianMixture::preset(const std::string& name) {
  if (name == "gmm4") {  // Máté Eq. 2
    return std::make_unique<GaussianMixture>(
        name, std::vector<double>{0.25, 0.25, 0.25, 0.25},
        std::vector<std::vector<double>>{{8, 8}, {8, -8}, {-8, 8}, {-8, -8}},
        std::vector<double>{1, 1, 1, 1});
  }
  if (name == "gmm2asym") {  // Máté Eq. 11
    return std::make_unique<GaussianMixture>(name, std::vector<double>{1.0 / 3.0, 2.0 / 3.0},
                                             std::vector<std::vector<double>>{{4, 4}, {-8, -8}},
                                             std::vector<double>{1, 1});
  }
  if (name == "gmm9") {  // Souveton Fig. 2; centres on {-2,0,2}^2 (project convention)
    std::vector<std::vector<double>> means;
    for (double a : {-2.0, 0.0, 2.0})
      for (double b : {-2.0, 0.0, 2.0}) means.push_back({a, b});
    return std::make_unique<GaussianMixture>(name, std::vector<double>(9, 1.0 / 9.0), means,
                                             std::vector<double>(9, 0.5));
  }
  return nullptr;
}

std::string GaussianMixture::description() const {
  std::ostringstream os;
  os << name_ << ": Gaussian mixture, D=" << kernel_.dim << ", K=" << kernel_.n_comp << ", components";
  for (std::size_t c = 0; c < weights_.size(); ++c) {
    os << (c ? "; " : " ") << "w=" << fmt_num(weights_[c]) << " mu=(";
    for (std::size_t j = 0; j < modes_.means[c].size(); ++j)
      os << (j ? "," : "") << fmt_num(modes_.means[c][j]);
    os << ") s=" << fmt_num(widths_[c]);
  }
  return os.str();
}

}  // namespace bf
