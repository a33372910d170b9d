#include "physics/phi4.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace bf {
namespace {

// Real roots of u'(x) = 2μ₂ x + 4λ₄ (x − α)³ in increasing order.
std::vector<double> critical_points(double mu2, double lambda4, double alpha) {
  // y = x − α:  y³ + p y + q = 0 with p = μ₂/(2λ₄), q = μ₂ α/(2λ₄).
  const double p = mu2 / (2.0 * lambda4), q = mu2 * alpha / (2.0 * lambda4);
  std::vector<double> ys;
  const double disc = 4.0 * p * p * p + 27.0 * q * q;
  if (p < 0.0 && disc < 0.0) {
    const double r = 2.0 * std::sqrt(-p / 3.0);
    const double arg = std::clamp((3.0 * q / (2.0 * p)) * std::sqrt(-3.0 / p), -1.0, 1.0);
    const double theta = std::acos(arg);
    for (int k = 0; k < 3; ++k) ys.push_back(r * std::cos(theta / 3.0 - 2.0 * kPi * k / 3.0));
  } else {  // one real root (Cardano)
    const double sq = std::sqrt(std::max(0.0, q * q / 4.0 + p * p * p / 27.0));
    ys.push_back(std::cbrt(-q / 2.0 + sq) + std::cbrt(-q / 2.0 - sq));
  }
  std::vector<double> xs;
  for (double y : ys) {
    double x = y + alpha;
    for (int it = 0; it < 50; ++it) {  // Newton polish
      const double d = x - alpha;
      const double f = 2.0 * mu2 * x + 4.0 * lambda4 * d * d * d;
      const double fp = 2.0 * mu2 + 12.0 * lambda4 * d * d;
      if (fp == 0.0) break;
      const double step = f / fp;
      x -= step;
      if (std::abs(step) < 1e-16 * (1.0 + std::abs(x))) break;
    }
    xs.push_back(x);
  }
  std::sort(xs.begin(), xs.end());
  return xs;
}

}  // namespace

Phi4Params phi4_preset(const std::string& name) {
  Phi4Params p;
  p.preset = name;
  if (name == "phi4-dw") {
    p.m = 3.0;
    p.lambda = 1.0;
  } else if (name == "phi4-general") {
    p.alpha = 0.0;
  } else if (name != "phi4") {
    throw std::invalid_argument("phi4: unknown preset '" + name + "'");
  }
  return p;
}

Phi4::Phi4(const Phi4Params& p) : params_(p) {
  if (p.shape.empty() || static_cast<int>(p.shape.size()) > Phi4Kernel::max_dims)
    throw std::invalid_argument("phi4: lattice must have 1 to 4 dimensions");
  kernel_.ndims = static_cast<int>(p.shape.size());
  std::int64_t vol = 1;
  for (int d = kernel_.ndims - 1; d >= 0; --d) {  // row-major: last direction fastest
    if (p.shape[d] < 2) throw std::invalid_argument("phi4: every lattice extent must be at least 2");
    kernel_.extent[d] = p.shape[d];
    kernel_.stride[d] = vol;
    vol *= p.shape[d];
  }
  kernel_.volume = vol;
  if (p.preset == "phi4") {
    kernel_.kappa = 1.0;
    kernel_.mu2 = -p.m;
    kernel_.lambda4 = p.lambda;
    kernel_.alpha = p.alpha;
  } else if (p.preset == "phi4-dw") {
    if (kernel_.ndims != 1) throw std::invalid_argument("phi4-dw: the double well lives on a 1-d time lattice");
    if (!(p.time_extent > 0)) throw std::invalid_argument("phi4-dw: time extent T must be positive");
    const double dt = p.time_extent / static_cast<double>(vol);
    kernel_.kappa = p.m / (2.0 * dt);
    kernel_.mu2 = -dt * p.m / 2.0;
    kernel_.lambda4 = dt * p.lambda / 4.0;
    kernel_.alpha = 0.0;
  } else if (p.preset == "phi4-general") {
    kernel_.kappa = p.kappa;
    kernel_.mu2 = p.mu2;
    kernel_.lambda4 = p.lambda4;
    kernel_.alpha = p.alpha;
  } else {
    throw std::invalid_argument("phi4: unknown preset '" + p.preset + "'");
  }
  // λ₄ = 0 with μ₂ > 0 is the free (Gaussian) field, the closed-form check of the lattice figures.
  const bool free_field = kernel_.lambda4 == 0.0 && kernel_.mu2 > 0.0;
  if (!(kernel_.lambda4 > 0.0 || free_field) || !std::isfinite(kernel_.lambda4))
    throw std::invalid_argument(
        "phi4: the quartic coupling must be positive, or zero with mu2 > 0 (the free field); otherwise the "
        "density is not normalisable");
  if (!(kernel_.kappa >= 0.0) || !std::isfinite(kernel_.kappa) || !std::isfinite(kernel_.mu2) ||
      !std::isfinite(kernel_.alpha))
    throw std::invalid_argument("phi4: couplings must be finite and the hopping term non-negative");

  // Modes from the critical points of u.
  const double mu2 = kernel_.mu2, l4 = kernel_.lambda4, al = kernel_.alpha;
  const std::vector<double> cp = free_field ? std::vector<double>{0.0} : critical_points(mu2, l4, al);
  auto u = [&](double x) { const double y = x - al; return mu2 * x * x + l4 * y * y * y * y; };
  if (cp.size() == 3) {
    minima_ = {cp[0], cp[2]};
    barrier_ = cp[1];
  } else {
    minima_ = {cp[0]};
    barrier_ = std::numeric_limits<double>::quiet_NaN();
  }
  for (double a : minima_) modes_.means.push_back(std::vector<double>(static_cast<std::size_t>(vol), a));
  if (minima_.size() == 2) {
    // Máté Eq. 21: density of the mean field ∝ exp(−V u(φ̄)); integrate each side of the barrier.
    const double v = static_cast<double>(vol);
    const double umin = std::min(u(minima_[0]), u(minima_[1]));
    // Range where V (u − umin) < 60 on both sides, found by stepping outwards.
    double lo = minima_[0], hi = minima_[1];
    const double span = std::max(1.0, minima_[1] - minima_[0]);
    while (v * (u(lo) - umin) < 60.0) lo -= 0.01 * span;
    while (v * (u(hi) - umin) < 60.0) hi += 0.01 * span;
    const int n = 400000;
    const double h = (hi - lo) / n;
    double left = 0.0, right = 0.0;
    for (int i = 0; i < n; ++i) {
      const double x = lo + (i + 0.5) * h;
      const double w = std::exp(-v * (u(x) - umin));
      (x < barrier_ ? left : right) += w;
    }
    modes_.weights = {left / (left + right), right / (left + right)};
    modes_.weights_exact = false;
    modes_.rule = "side of the barrier in the mean field (Eq. 21 weights)";
  } else {
    modes_.weights = {1.0};
    modes_.weights_exact = true;
    modes_.rule = "single well";
  }
  // The mean-field histogram: 60 bins centred on the barrier (then the middle
  // bin edge, so the masses on either side are the mode fractions), against
  // the same Eq. 21 density per bin (Simpson's rule, 32 panels per bin).
  HistogramSpec& hs = histogram_;
  hs.observable = 0;
  hs.bins = 60;
  const double mid = minima_.size() > 1 ? barrier_ : minima_.front();
  const double half = std::fmax(0.8 * (minima_.back() - minima_.front()), 1.0);
  hs.lo = mid - half;
  hs.hi = mid + half;
  hs.split = mid;
  const double v = static_cast<double>(vol);
  double umin = 0;
  for (double m : minima_) umin = std::fmin(umin, u(m));
  const double w = (hs.hi - hs.lo) / hs.bins;
  constexpr int panels = 32;
  double total = 0;
  for (int k = 0; k < hs.bins; ++k) {
    const double x0 = hs.lo + k * w, dx = w / panels;
    double s = 0;
    for (int q = 0; q <= panels; ++q)
      s += ((q == 0 || q == panels) ? 1.0 : (q % 2 ? 4.0 : 2.0)) * std::exp(-v * (u(x0 + q * dx) - umin));
    hs.reference.push_back(s * dx / 3.0);
    total += hs.reference.back();
  }
  for (double& r : hs.reference) r /= total;
  hs.reference_name = "Eq. 21 (constant fields: density of the mean field exp(-V u(phi_bar)))";
}

void Phi4::assign_modes(const ConstMatrix<double>& x, const Vector<int>& mode) const {
  if (minima_.size() < 2) {
    Kokkos::deep_copy(mode, 0);
    return;
  }
  const double barrier = barrier_;
  const std::int64_t d = kernel_.volume;
  Kokkos::parallel_for(
      "bf::phi4_assign_modes", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        const double* xi = row(x, i);
        double s = 0.0;
        for (std::int64_t j = 0; j < d; ++j) s += xi[j];
        mode(i) = s / static_cast<double>(d) < barrier ? 0 : 1;
      });
}

void Phi4::observables(const ConstMatrix<double>& x, const Matrix<double>& o) const {
  const std::int64_t d = kernel_.volume;
  Kokkos::parallel_for(
      "bf::phi4_observables", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        double s = 0.0;
        for (std::int64_t j = 0; j < d; ++j) s += x(i, j);
        s /= static_cast<double>(d);
        o(i, 0) = s;
        o(i, 1) = kmath::fabs(s);
      });
}

// Primaries: φ̄, |φ̄|, φ̄², S/V, then C(t) = (1/V) Σ_y φ_y φ_{y + t ê₀} for t < L₀.
Distribution::Estimators Phi4::estimators() const {
  Estimators e;
  const int L0 = kernel_.extent[0];
  const double V = static_cast<double>(kernel_.volume);
  e.primaries = {"mean_field", "abs_mean_field", "mean_field^2", "action_density"};
  e.figures = {"mean_field", "abs_mean_field", "chi2", "chi2_abs", "action_density"};
  for (int t = 0; t < L0; ++t) e.primaries.push_back("C(" + std::to_string(t) + ")");
  for (int t = 0; t <= L0 / 2; ++t) e.figures.push_back("G(" + std::to_string(t) + ")");  // G(L0 - t) = G(t)
  e.exact.assign(e.figures.size(), std::numeric_limits<double>::quiet_NaN());
  e.derive = [L0, V](const std::vector<double>& m) {
    std::vector<double> f{m[0], m[1], V * (m[2] - m[0] * m[0]), V * (m[2] - m[1] * m[1]), m[3]};
    for (int t = 0; t <= L0 / 2; ++t) f.push_back(m[4 + t] - m[0] * m[0]);
    return f;
  };
  return e;
}

void Phi4::estimator_primaries(const ConstMatrix<double>& x, const Matrix<double>& a) const {
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  Vector<double> s("phi4_action", n);
  energy(x, s);
  const Phi4Kernel k = kernel_;
  const std::int64_t V = k.volume;
  const int L0 = k.extent[0];
  Kokkos::parallel_for(
      "bf::phi4_estimator_primaries", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        double m = 0.0;
        for (std::int64_t y = 0; y < V; ++y) m += x(i, y);
        m /= static_cast<double>(V);
        a(i, 0) = m;
        a(i, 1) = kmath::fabs(m);
        a(i, 2) = m * m;
        a(i, 3) = s(i) / static_cast<double>(V);
        for (int t = 0; t < L0; ++t) a(i, 4 + t) = 0.0;
        for (std::int64_t y = 0; y < V; ++y) {
          std::int64_t z = y;
          for (int t = 0; t < L0; ++t) {
            a(i, 4 + t) += x(i, y) * x(i, z);
            z = k.forward(z, 0);
          }
        }
        for (int t = 0; t < L0; ++t) a(i, 4 + t) /= static_cast<double>(V);
      });
}

std::string Phi4::description() const {
  std::ostringstream os;
  os << params_.preset << ": phi^4 on a periodic lattice, shape=";
  for (std::size_t d = 0; d < params_.shape.size(); ++d) os << (d ? "x" : "") << params_.shape[d];
  if (params_.preset == "phi4")
    os << " (Mate Eq. 19) m=" << fmt_num(params_.m) << " lambda=" << fmt_num(params_.lambda)
       << " alpha=" << fmt_num(params_.alpha);
  else if (params_.preset == "phi4-dw")
    os << " (double well, authors' code) m=" << fmt_num(params_.m) << " lambda=" << fmt_num(params_.lambda)
       << " T=" << fmt_num(params_.time_extent);
  os << "; general form kappa=" << fmt_num(kernel_.kappa) << " mu2=" << fmt_num(kernel_.mu2)
     << " lambda4=" << fmt_num(kernel_.lambda4) << " alpha=" << fmt_num(kernel_.alpha) << "; minima";
  for (double a : minima_) os << " " << fmt_num(a);
  return os.str();
}

}  // namespace bf
