#include "physics/base_distributions.hpp"

#include <cmath>
#include <stdexcept>

namespace bf {

GeneralizedGaussian::GeneralizedGaussian(int dim, double sigma, double p, std::string name)
    : name_(std::move(name)) {
  if (dim < 1) throw std::invalid_argument(name_ + ": dimension must be at least 1");
  if (!(sigma > 0.0) || !std::isfinite(sigma)) throw std::invalid_argument(name_ + ": sigma must be positive");
  if (!(p >= 1.0) || !std::isfinite(p))
    throw std::invalid_argument(name_ + ": power p must be at least 1 (the energy must be differentiable)");
  kernel_.dim = dim;
  kernel_.sigma = sigma;
  kernel_.p = p;
  modes_.means = {std::vector<double>(static_cast<std::size_t>(dim), 0.0)};
  modes_.weights = {1.0};
  modes_.rule = "single mode";
}

std::unique_ptr<GeneralizedGaussian> GeneralizedGaussian::gaussian(int dim, double s) {
  return std::make_unique<GeneralizedGaussian>(dim, s * std::sqrt(2.0), 2.0, "gauss");
}

double GeneralizedGaussian::log_z() const {
  return kernel_.dim * (std::log(2.0 * kernel_.sigma) + std::lgamma(1.0 / kernel_.p) - std::log(kernel_.p));
}

std::string GeneralizedGaussian::description() const {
  if (name_ == "gauss")
    return "gauss: N(0, s^2 I), D=" + std::to_string(kernel_.dim) + ", s=" + fmt_num(kernel_.sigma / std::sqrt(2.0));
  return "gengauss: exp(-|x/sigma|^p), D=" + std::to_string(kernel_.dim) + ", sigma=" + fmt_num(kernel_.sigma) +
         ", p=" + fmt_num(kernel_.p);
}

SoftUniform::SoftUniform(int dim, double a, double beta) {
  if (dim < 1) throw std::invalid_argument("softuniform: dimension must be at least 1");
  if (!(a > 0.0) || !std::isfinite(a)) throw std::invalid_argument("softuniform: half-width a must be positive");
  if (!(beta > 0.0) || !std::isfinite(beta)) throw std::invalid_argument("softuniform: beta must be positive");
  kernel_.dim = dim;
  kernel_.a = a;
  kernel_.beta = beta;
  modes_.means = {std::vector<double>(static_cast<std::size_t>(dim), 0.0)};
  modes_.weights = {1.0};
  modes_.rule = "single mode";
}

double SoftUniform::log_z() const {
  return kernel_.dim * (std::log(2.0 * kernel_.a) - std::log1p(-std::exp(-2.0 * kernel_.a * kernel_.beta)));
}

std::string SoftUniform::description() const {
  return "softuniform: s(beta(x+a)) s(-beta(x-a)), D=" + std::to_string(kernel_.dim) + ", a=" + fmt_num(kernel_.a) +
         ", beta=" + fmt_num(kernel_.beta);
}

}  // namespace bf
