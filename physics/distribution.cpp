#include "physics/distribution.hpp"

#include <cstdio>
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

}  // namespace bf
