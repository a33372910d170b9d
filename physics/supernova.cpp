#include "physics/supernova.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "physics/jla_data.hpp"

namespace bf {

Supernova::Supernova(int grid) {
  const int n = jla::n_bins;
  if (n > SupernovaKernel::max_bins) throw std::logic_error("supernova: too many bins");
  // Cholesky C = L Lᵀ (31 x 31, once, on the host), then C⁻¹ = L⁻ᵀ L⁻¹ column by column.
  std::vector<double> L(static_cast<std::size_t>(n) * n, 0.0), ci(static_cast<std::size_t>(n) * n, 0.0);
  for (int j = 0; j < n; ++j) {
    double d = jla::covariance[j * n + j];
    for (int k = 0; k < j; ++k) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0.0)) throw std::runtime_error("supernova: JLA covariance is not positive definite");
    L[j * n + j] = std::sqrt(d);
    for (int i = j + 1; i < n; ++i) {
      double s = jla::covariance[i * n + j];
      for (int k = 0; k < j; ++k) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / L[j * n + j];
    }
  }
  std::vector<double> y(n);
  for (int c = 0; c < n; ++c) {  // solve L y = e_c, then Lᵀ x = y
    for (int i = 0; i < n; ++i) {
      double s = i == c ? 1.0 : 0.0;
      for (int k = 0; k < i; ++k) s -= L[i * n + k] * y[k];
      y[i] = s / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; --i) {
      double s = y[i];
      for (int k = i + 1; k < n; ++k) s -= L[k * n + i] * ci[k * n + c];
      ci[i * n + c] = s / L[i * n + i];
    }
  }
  double logdet = 0.0;
  for (int i = 0; i < n; ++i) logdet += 2.0 * std::log(L[i * n + i]);

  kernel_.n_bins = n;
  kernel_.log_norm = -0.5 * (logdet + n * kLog2Pi);
  kernel_.z = to_device(std::vector<double>(jla::redshift, jla::redshift + n), "sn_z");
  kernel_.mu_data = to_device(std::vector<double>(jla::distance_modulus, jla::distance_modulus + n), "sn_mu");
  kernel_.cinv = Matrix<double>("sn_cinv", n, n);
  auto h = Kokkos::create_mirror_view(kernel_.cinv);
  cinv_host_.resize(static_cast<std::size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      // Symmetrise exactly so the quadratic form's gradient is C⁻¹ r.
      const double v = 0.5 * (ci[i * n + j] + ci[j * n + i]);
      h(i, j) = v;
      cinv_host_[static_cast<std::size_t>(i) * n + j] = v;
    }
  Kokkos::deep_copy(kernel_.cinv, h);

  moments_ = quadrature(grid);
  modes_.means = {{moments_.mean_q0, moments_.mean_q1}};
  modes_.weights = {1.0};
  modes_.weights_exact = true;
  modes_.rule = "single mode (posterior mean in q)";
}

void Supernova::observables(const ConstMatrix<double>& x, const Matrix<double>& o) const {
  Kokkos::parallel_for(
      "bf::supernova_observables", Policy(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        o(i, 0) = sigmoid(x(i, 0));
        o(i, 1) = sigmoid(x(i, 1));
      });
}

double Supernova::half_chi2(double omega_m, double h) const {
  const int n = kernel_.n_bins;
  const double q0 = std::log(omega_m / (1.0 - omega_m));
  std::vector<double> r(n);
  // Host copy of the kernel data: the kernel reads device views, so evaluate here.
  const double eta1 = pen_eta<double>(1.0, q0, nullptr);
  for (int k = 0; k < n; ++k) {
    const double z = jla::redshift[k];
    const double dl = 3000.0 * (1.0 + z) * (eta1 - pen_eta<double>(1.0 / (1.0 + z), q0, nullptr));
    r[k] = 25.0 - 5.0 * std::log10(h) + 5.0 * std::log10(dl) - jla::distance_modulus[k];
  }
  double chi2 = 0.0;
  for (int k = 0; k < n; ++k)
    for (int l = 0; l < n; ++l) chi2 += r[k] * cinv_host_[static_cast<std::size_t>(k) * n + l] * r[l];
  return 0.5 * chi2;
}

SupernovaMoments Supernova::quadrature(int grid) const {
  if (grid < 10) throw std::invalid_argument("supernova: quadrature grid must have at least 10 points");
  const int n = kernel_.n_bins;
  // Per h: δ = 5 log10 h; r = m − δ 1, χ² = C − 2δB + δ²A with A = 1ᵀC⁻¹1, B = 1ᵀC⁻¹m, C = mᵀC⁻¹m.
  double A = 0.0;
  std::vector<double> row_sum(n, 0.0);
  for (int k = 0; k < n; ++k)
    for (int l = 0; l < n; ++l) row_sum[k] += cinv_host_[static_cast<std::size_t>(k) * n + l];
  for (int k = 0; k < n; ++k) A += row_sum[k];
  const double du = 1.0 / grid;
  std::vector<double> delta(grid), hval(grid), qh(grid);
  for (int j = 0; j < grid; ++j) {
    hval[j] = (j + 0.5) * du;
    delta[j] = 5.0 * std::log10(hval[j]);
    qh[j] = std::log(hval[j] / (1.0 - hval[j]));
  }
  // Streaming log-sum-exp of the log likelihood with weighted moment sums.
  double lmax = -INFINITY, s0 = 0, so = 0, sh = 0, soo = 0, shh = 0, soh = 0, sq0 = 0, sq1 = 0;
  std::vector<double> m(n);
  for (int i = 0; i < grid; ++i) {
    const double om = (i + 0.5) * du;
    const double q0 = std::log(om / (1.0 - om));
    const double eta1 = pen_eta<double>(1.0, q0, nullptr);
    for (int k = 0; k < n; ++k) {
      const double z = jla::redshift[k];
      const double dl = 3000.0 * (1.0 + z) * (eta1 - pen_eta<double>(1.0 / (1.0 + z), q0, nullptr));
      m[k] = 25.0 + 5.0 * std::log10(dl) - jla::distance_modulus[k];
    }
    double B = 0.0, C = 0.0;
    for (int k = 0; k < n; ++k) {
      double cm = 0.0;
      for (int l = 0; l < n; ++l) cm += cinv_host_[static_cast<std::size_t>(k) * n + l] * m[l];
      B += row_sum[k] * m[k];
      C += m[k] * cm;
    }
    for (int j = 0; j < grid; ++j) {
      const double d = delta[j];
      const double ll = -0.5 * (C - 2.0 * d * B + d * d * A);
      if (ll > lmax) {
        const double sc = std::exp(lmax - ll);
        s0 *= sc; so *= sc; sh *= sc; soo *= sc; shh *= sc; soh *= sc; sq0 *= sc; sq1 *= sc;
        lmax = ll;
      }
      const double w = std::exp(ll - lmax);
      const double h = hval[j];
      s0 += w;
      so += w * om;
      sh += w * h;
      soo += w * om * om;
      shh += w * h * h;
      soh += w * om * h;
      sq0 += w * q0;
      sq1 += w * qh[j];
    }
  }
  SupernovaMoments r;
  r.grid = grid;
  r.log_z = lmax + std::log(s0 * du * du) + kernel_.log_norm;
  r.mean_omega = so / s0;
  r.mean_h = sh / s0;
  r.sd_omega = std::sqrt(std::max(0.0, soo / s0 - r.mean_omega * r.mean_omega));
  r.sd_h = std::sqrt(std::max(0.0, shh / s0 - r.mean_h * r.mean_h));
  r.corr = (soh / s0 - r.mean_omega * r.mean_h) / (r.sd_omega * r.sd_h);
  r.mean_q0 = sq0 / s0;
  r.mean_q1 = sq1 / s0;
  return r;
}

std::string Supernova::description() const {
  std::ostringstream os;
  os << "supernova: JLA binned type Ia posterior over (Omega_m, h) = sigmoid(q), " << kernel_.n_bins
     << " bins, uniform prior; quadrature (" << moments_.grid << "^2): Omega_m = " << fmt_num(moments_.mean_omega)
     << " +- " << fmt_num(moments_.sd_omega) << ", h = " << fmt_num(moments_.mean_h) << " +- "
     << fmt_num(moments_.sd_h) << ", log Z = " << fmt_num(moments_.log_z);
  return os.str();
}

}  // namespace bf
