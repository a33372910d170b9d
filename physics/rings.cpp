#include "physics/rings.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace bf {

double RingMixture::ring_normaliser(double R, double s) {
  return 2.0 * kPi *
         (s * s * std::exp(-0.5 * R * R / (s * s)) + R * s * std::sqrt(kPi / 2.0) * (1.0 + std::erf(R / (s * std::sqrt(2.0)))));
}

std::vector<std::string> angular_observable_names(const std::string& angle) {
  std::vector<std::string> n{angle};
  for (int k = 1; k <= kAngularMoments; ++k) {
    n.push_back("cos_" + std::to_string(k) + "_" + angle);
    n.push_back("sin_" + std::to_string(k) + "_" + angle);
  }
  return n;
}

void append_uniform_angle_moments(std::vector<double>& means, std::vector<double>& sds) {
  means.push_back(0.0);
  sds.push_back(kPi / std::sqrt(3.0));
  for (int k = 1; k <= kAngularMoments; ++k) {
    means.insert(means.end(), {0.0, 0.0});
    sds.insert(sds.end(), {1.0 / std::sqrt(2.0), 1.0 / std::sqrt(2.0)});
  }
}

Distribution::HistogramSpec uniform_angle_histogram(int observable) {
  Distribution::HistogramSpec h;
  h.observable = observable;
  h.bins = 16;
  h.lo = -kPi;
  h.hi = kPi;
  h.split = 0.0;
  h.reference.assign(16, 1.0 / 16.0);
  h.reference_name = "uniform (rotation invariance)";
  return h;
}

RingMixture::RingMixture(std::vector<double> w, std::vector<double> r, std::vector<double> s)
    : w_(std::move(w)), r_(std::move(r)), s_(std::move(s)) {
  const std::size_t K = r_.size();
  if (K == 0) throw std::invalid_argument("ring: needs at least one radius");
  if (w_.empty()) w_.assign(K, 1.0);
  if (s_.size() == 1) s_.assign(K, s_[0]);
  if (w_.size() != K || s_.size() != K)
    throw std::invalid_argument("ring: " + std::to_string(K) + " radii need as many weights (or none) and widths (or one)");
  double wsum = 0;
  for (std::size_t k = 0; k < K; ++k) {
    if (!(r_[k] >= 0) || !std::isfinite(r_[k])) throw std::invalid_argument("ring: radii must be finite and non-negative");
    if (!(s_[k] > 0) || !std::isfinite(s_[k])) throw std::invalid_argument("ring: widths must be positive");
    if (!(w_[k] > 0) || !std::isfinite(w_[k])) throw std::invalid_argument("ring: weights must be positive");
    wsum += w_[k];
  }
  for (double& x : w_) x /= wsum;
  const double z1 = ring_normaliser(r_[0], s_[0]);
  log_z_ = std::log(z1);
  std::vector<double> iv(K), lc(K), cw(K), tot(K);
  double c = 0;
  for (std::size_t k = 0; k < K; ++k) {
    iv[k] = 1.0 / (s_[k] * s_[k]);
    lc[k] = std::log(w_[k]) + log_z_ - std::log(ring_normaliser(r_[k], s_[k]));
    c += w_[k];
    cw[k] = k + 1 == K ? 1.0 : c;
    tot[k] = ring_normaliser(r_[k], s_[k]) / (2.0 * kPi);
  }
  kernel_.n_comp = static_cast<int>(K);
  kernel_.radius = to_device(r_, "ring_radius");
  kernel_.width = to_device(s_, "ring_width");
  kernel_.inv_var = to_device(iv, "ring_inv_var");
  kernel_.log_coef = to_device(lc, "ring_log_coef");
  kernel_.cum_weight = to_device(cw, "ring_cum_weight");
  kernel_.total = to_device(tot, "ring_total");
  // Modes: 8 points per ring; each ring's 8 cells share its mass equally by symmetry
  // (exact for one ring; with several, the cells' boundaries cut the rings' tails).
  for (std::size_t k = 0; k < K; ++k)
    for (int j = 0; j < 8; ++j) {
      modes_.means.push_back({r_[k] * std::cos(2.0 * kPi * j / 8.0), r_[k] * std::sin(2.0 * kPi * j / 8.0)});
      modes_.weights.push_back(w_[k] / 8.0);
    }
  modes_.weights_exact = K == 1;
  modes_.rule = "nearest of 8 points per ring (angles 2 pi j / 8)";
  // Exact moments: the radius by quadrature; the angle uniform; cos kθ, sin kθ mean 0, sd 1/√2.
  double rmax = 0;
  for (std::size_t k = 0; k < K; ++k) rmax = std::max(rmax, r_[k] + 40.0 * s_[k]);
  const int n = 400000;
  const double h = rmax / n;
  double m0 = 0, m1 = 0, m2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = (i + 0.5) * h;
    double p = 0;
    for (std::size_t k = 0; k < K; ++k) p += std::exp(lc[k] - 0.5 * iv[k] * (x - r_[k]) * (x - r_[k]));
    p *= x;
    m0 += p;
    m1 += p * x;
    m2 += p * x * x;
  }
  const double mean_r = m1 / m0;
  means_ = {mean_r};
  sds_ = {std::sqrt(std::max(0.0, m2 / m0 - mean_r * mean_r))};
  append_uniform_angle_moments(means_, sds_);
}

std::string RingMixture::description() const {
  std::ostringstream os;
  os << "ring: exp(-(|x| - R)^2 / 2 s^2) in the plane, " << r_.size() << " concentric ring(s)";
  for (std::size_t k = 0; k < r_.size(); ++k)
    os << (k ? "; " : ": ") << "w=" << fmt_num(w_[k]) << " R=" << fmt_num(r_[k]) << " s=" << fmt_num(s_[k]);
  os << ", log Z = " << fmt_num(log_z_);
  return os.str();
}

std::vector<std::string> RingMixture::observable_names() const {
  std::vector<std::string> n{"radius"};
  for (const auto& a : angular_observable_names("angle")) n.push_back(a);
  return n;
}

void RingMixture::observables(const ConstMatrix<double>& x, const Matrix<double>& o) const {
  Kokkos::parallel_for(
      "bf::ring_observables", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        o(i, 0) = kmath::sqrt(x(i, 0) * x(i, 0) + x(i, 1) * x(i, 1));
        angular_observables(kmath::atan2(x(i, 1), x(i, 0)), o, i, 1);
      });
}

Distribution::HistogramSpec RingMixture::histogram() const { return uniform_angle_histogram(1); }

}  // namespace bf
