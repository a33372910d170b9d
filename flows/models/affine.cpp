#include "flows/models/affine.hpp"

#include "flows/noise.hpp"

#include <stdexcept>

namespace bf {

template <class T>
AffineFlow<T>::AffineFlow(const Distribution& target, int max_batch)
    : target_(target), dim_(target.dim()), max_batch_(max_batch) {
  if (max_batch < 1) throw std::invalid_argument("affine flow: batch must be at least 1");
  layout_.add("affine.mu", {dim_}, ParamInit{});
  layout_.add("affine.L", {dim_, dim_}, ParamInit{});  // zero: L = I
  mu_ = layout_.slice("affine.mu");
  L_ = layout_.slice("affine.L");
  z_ = Matrix<T>("affine_z", max_batch, dim_);
  x_ = Matrix<T>("affine_x", max_batch, dim_);
  g_ = Matrix<T>("affine_g", max_batch, dim_);
  e_ = Vector<T>("affine_e", max_batch);
}

template <class T>
std::string AffineFlow<T>::description() const {
  return "affine: x = mu + L z, z ~ N(0, I), L lower-triangular (D = " + std::to_string(dim_) + ")";
}

namespace {

// x = μ + L z and log q = log N(z) − Σ log L_ii for rows [0, n); L_ii = exp(stored).
template <class T, class Z, class X, class LQ>
void affine_push(int n, int d, const Span<const T>& mu, const Rows<const T>& L, const Z& z, const X& x,
                 const LQ& log_q) {
  Kokkos::parallel_for(
      "bf::affine_push", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t r) {
        T lq = T(0), logdet = T(0);
        for (int i = 0; i < d; ++i) {
          T s = mu(i) + kmath::exp(L(i, i)) * z(r, i);
          for (int j = 0; j < i; ++j) s += L(i, j) * z(r, j);
          x(r, i) = s;
          lq -= T(0.5) * z(r, i) * z(r, i);
          logdet += L(i, i);
        }
        log_q(r) = static_cast<double>(lq - T(0.5 * kLog2Pi) * T(d) - logdet);
      });
}

}  // namespace

template <class T>
double AffineFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& b,
                                    const Collective&) {
  const int n = b.count, d = dim_;
  if (n > max_batch_) throw std::logic_error("affine flow: batch larger than the workspace");
  const Span<const T> mu = slice_vector(params, mu_);
  const Rows<const T> L = slice_matrix(params, L_);
  const Matrix<T> z = z_, x = x_, g = g_;
  const Vector<T> e = e_;
  standard_normals<T>(b.seed, Purpose::base_sample, b.step, b.first, n, d, z);
  Kokkos::parallel_for(
      "bf::affine_x", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t r) {
        for (int i = 0; i < d; ++i) {
          T s = mu(i) + kmath::exp(L(i, i)) * z(r, i);
          for (int j = 0; j < i; ++j) s += L(i, j) * z(r, j);
          x(r, i) = s;
        }
      });
  const auto xs = Kokkos::subview(x, std::make_pair(0, n), Kokkos::ALL());
  const auto gs = Kokkos::subview(g, std::make_pair(0, n), Kokkos::ALL());
  const auto es = Kokkos::subview(e, std::make_pair(0, n));
  target_.energy_grad(Matrix<const T>(xs), Vector<T>(es), Matrix<T>(gs));
  double loss = 0;
  Kokkos::parallel_reduce(
      "bf::affine_loss", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t r, double& acc) {
        T l = e(r) - T(0.5 * kLog2Pi) * T(d);
        for (int i = 0; i < d; ++i) l += -T(0.5) * z(r, i) * z(r, i) - L(i, i);
        acc += static_cast<double>(l);
      },
      loss);
  const Span<T> dmu = slice_vector(grad, mu_);
  const Rows<T> dL = slice_matrix(grad, L_);
  Kokkos::parallel_for(
      "bf::affine_grad", Policy(0, static_cast<std::int64_t>(d) * (d + 1)), KOKKOS_LAMBDA(const std::int64_t q) {
        if (q < d) {
          T s = T(0);
          for (int r = 0; r < n; ++r) s += g(r, q);
          dmu(q) += s;
          return;
        }
        const int i = static_cast<int>((q - d) / d), j = static_cast<int>((q - d) % d);
        if (j > i) return;
        T s = T(0);
        if (j < i) {
          for (int r = 0; r < n; ++r) s += g(r, i) * z(r, j);
        } else {
          const T lii = kmath::exp(L(i, i));
          for (int r = 0; r < n; ++r) s += g(r, i) * z(r, i) * lii - T(1);
        }
        dL(i, j) += s;
      });
  return loss;
}

template <class T>
void AffineFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                           std::uint64_t first, const Matrix<double>& x, const Vector<double>& log_q) {
  const int d = dim_;
  const int total = static_cast<int>(x.extent(0));
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    standard_normals<T>(seed, purpose, step, first + static_cast<std::uint64_t>(c0), n, d, z_);
    const auto xs = Kokkos::subview(x, std::make_pair(c0, c0 + n), Kokkos::ALL());
    const auto ls = Kokkos::subview(log_q, std::make_pair(c0, c0 + n));
    affine_push<T>(n, d, slice_vector(params, mu_), slice_matrix(params, L_), z_, xs, ls);
  }
}

template <class T>
void AffineFlow<T>::log_density(const Vector<T>& params, const ConstMatrix<double>& x, const Vector<double>& log_q) {
  const int d = dim_;
  const Span<const T> mu = slice_vector(params, mu_);
  const Rows<const T> L = slice_matrix(params, L_);
  const Matrix<T> zb = z_;
  const int total = static_cast<int>(x.extent(0));
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    Kokkos::parallel_for(
        "bf::affine_log_density", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t r) {
          // z = L⁻¹ (x − μ) by forward substitution.
          T lq = T(0);
          for (int i = 0; i < d; ++i) {
            T s = static_cast<T>(x(c0 + r, i)) - mu(i);
            for (int j = 0; j < i; ++j) s -= L(i, j) * zb(r, j);
            zb(r, i) = s / kmath::exp(L(i, i));
            lq -= T(0.5) * zb(r, i) * zb(r, i) + L(i, i);
          }
          log_q(c0 + r) = static_cast<double>(lq - T(0.5 * kLog2Pi) * T(d));
        });
  }
}

template class AffineFlow<float>;
template class AffineFlow<double>;

}  // namespace bf
