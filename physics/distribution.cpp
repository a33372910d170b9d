#include "physics/distribution.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace bf {

std::string fmt_num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

void Distribution::sample(std::uint32_t, Purpose, std::uint32_t, std::uint64_t,
                          const Matrix<double>&) const {
  throw std::logic_error("distribution '" + name() + "' has no exact sampler");
}

void Distribution::log_density(const ConstMatrix<double>& x, const Vector<double>& out) const {
  const double lz = log_z();
  if (!std::isfinite(lz)) {
    throw std::logic_error("distribution '" + name() + "' has no known normaliser");
  }
  energy(x, out);
  Kokkos::parallel_for(
      "bf::log_density", Policy(0, out.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t i) { out(i) = -out(i) - lz; });
}

void Distribution::assign_modes(const ConstMatrix<double>& x, const Vector<int>& mode) const {
  const int n_modes = static_cast<int>(modes_.means.size());
  const int d = dim();
  HostMatrix<double> h_means("mode_means", n_modes, d);
  for (int k = 0; k < n_modes; ++k)
    for (int j = 0; j < d; ++j) h_means(k, j) = modes_.means[k][j];
  Matrix<double> means("mode_means", n_modes, d);
  Kokkos::deep_copy(means, h_means);
  Kokkos::parallel_for(
      "bf::assign_modes_nearest", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        const double* xi = row(x, i);
        int best = 0;
        double best_d2 = 0.0;
        for (int k = 0; k < n_modes; ++k) {
          double d2 = 0.0;
          for (int j = 0; j < d; ++j) {
            const double t = xi[j] - means(k, j);
            d2 += t * t;
          }
          if (k == 0 || d2 < best_d2) {
            best = k;
            best_d2 = d2;
          }
        }
        mode(i) = best;
      });
}

namespace {
// The observables the default estimators cover, of `total`.
std::vector<int> estimated(const Distribution& d, int total) {
  std::vector<int> idx = d.estimated_observables();
  if (idx.empty())
    for (int c = 0; c < total; ++c) idx.push_back(c);
  for (int c : idx)
    if (c < 0 || c >= total) throw std::logic_error("estimated_observables: index out of range");
  return idx;
}
}  // namespace

Distribution::Estimators Distribution::estimators() const {
  Estimators e;
  const auto names = observable_names();
  const auto means = observable_means(), sds = observable_sds();
  const std::vector<int> idx = estimated(*this, static_cast<int>(names.size()));
  const std::size_t k = idx.size();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int c : idx) e.primaries.push_back(names[c]);
  for (int c : idx) e.primaries.push_back(names[c] + "^2");
  for (int c : idx) {
    e.figures.push_back("mean " + names[c]);
    e.exact.push_back(static_cast<std::size_t>(c) < means.size() ? means[c] : nan);
  }
  for (int c : idx) {
    e.figures.push_back("sd " + names[c]);
    e.exact.push_back(static_cast<std::size_t>(c) < sds.size() ? sds[c] : nan);
  }
  e.derive = [k](const std::vector<double>& m) {
    std::vector<double> f(2 * k);
    for (std::size_t c = 0; c < k; ++c) {
      f[c] = m[c];
      f[k + c] = std::sqrt(std::fmax(0.0, m[k + c] - m[c] * m[c]));
    }
    return f;
  };
  return e;
}

void Distribution::estimator_primaries(const ConstMatrix<double>& x, const Matrix<double>& a) const {
  const int total = static_cast<int>(observable_names().size());
  if (total == 0) return;
  const std::vector<int> idx = estimated(*this, total);
  const int k = static_cast<int>(idx.size());
  const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
  Matrix<double> o("estimator_observables", n, total);
  observables(x, o);
  Kokkos::View<int*> which("estimator_columns", k);
  const auto hw = Kokkos::create_mirror_view(which);
  for (int c = 0; c < k; ++c) hw(c) = idx[c];
  Kokkos::deep_copy(which, hw);
  Kokkos::parallel_for(
      "bf::estimator_moments", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        for (int c = 0; c < k; ++c) {
          const double v = o(i, which(c));
          a(i, c) = v;
          a(i, k + c) = v * v;
        }
      });
}

}  // namespace bf
