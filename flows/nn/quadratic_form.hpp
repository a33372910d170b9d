// A trained positive-definite quadratic form E(x) = ½ xᵀ M x, M = L Lᵀ with L
// lower-triangular D x D, stored in one slice of the flat buffer with the
// diagonal as log L_ii (zero: M = I), so M is positive definite for every value
// of the parameters. The NHF's fixed kinetic energy K(p) = ½ pᵀ M p and the HSM's
// quadratic potential U(x) = ½ xᵀ A x are this form.
//   ∇E = M x = L (Lᵀ x),   H u = M u,
//   ∂(uᵀ M x)/∂L_rc = u_r (Lᵀ x)_c + x_r (Lᵀ u)_c, times L_rr on the log diagonal.
#pragma once

#include <vector>

#include "flows/elementwise.hpp"
#include "flows/nn/mlp.hpp"

namespace bf {

/// Registers the form's slice "<name>" [D x D] (zero: M = I) and returns it.
inline ParamSlice add_quadratic_form(ParameterLayout& layout, const std::string& name, int dim) {
  layout.add(name, {dim, dim}, ParamInit{});
  return layout.slice(name);
}

/// g = M x at n rows.
template <class T>
void quadratic_form_gradient(const Vector<T>& params, const ParamSlice& slice, int n, const Rows<const T>& x,
                             const Rows<T>& g) {
  const int D = slice.shape.at(0);
  const Rows<const T> L = slice_matrix(params, slice);
  Kokkos::parallel_for(
      "bf::quadratic_form_gradient", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        for (int r = 0; r < D; ++r) {
          T s = T(0);
          for (int c = 0; c <= r; ++c) {
            T w = T(0);  // (Lᵀ x)_c = Σ_{k ≥ c} L_kc x_k
            for (int k = c; k < D; ++k) w += (k == c ? kmath::exp(L(k, k)) : L(k, c)) * x(i, k);
            s += (r == c ? kmath::exp(L(r, r)) : L(r, c)) * w;
          }
          g(i, r) = s;
        }
      });
}

/// hu += c M u and grad += c ∂(Σ_i u_iᵀ M x_i)/∂L at n rows; tmp holds n rows of D.
template <class T>
void quadratic_form_hvp(const Vector<T>& params, const Vector<T>& grad, const ParamSlice& slice, int n, T c,
                        const Rows<const T>& x, const Rows<const T>& u, const Matrix<T>& tmp, const Rows<T>& hu) {
  const int D = slice.shape.at(0);
  const Rows<T> w = head_rows(tmp, n);
  quadratic_form_gradient<T>(params, slice, n, u, w);  // w = M u
  for_each_element("bf::quadratic_form_hvp", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    hu(i, j) += c * w(i, j);
  });
  if (grad.extent(0) == 0) return;
  const Rows<const T> L = slice_matrix(params, slice);
  const Rows<T> dL = slice_matrix(grad, slice);
  for_each_element("bf::quadratic_form_grad", D, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t col) {
    if (col > r) return;
    T s = T(0);
    for (int i = 0; i < n; ++i) {
      T ltx = T(0), ltu = T(0);
      for (std::int64_t k = col; k < D; ++k) {
        const T lk = k == col ? kmath::exp(L(k, k)) : L(k, col);
        ltx += lk * x(i, k);
        ltu += lk * u(i, k);
      }
      s += u(i, r) * ltx + x(i, r) * ltu;
    }
    dL(r, col) += c * s * (r == col ? kmath::exp(L(r, r)) : T(1));
  });
}

/// M, row-major D x D, from the parameters (host).
template <class T>
std::vector<double> quadratic_form_matrix(const Vector<T>& params, const ParamSlice& slice) {
  const int D = slice.shape.at(0);
  auto hp = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), params);
  auto Lh = [&](int r, int c) -> double {
    if (c > r) return 0.0;
    const double v = static_cast<double>(hp(slice.offset + static_cast<std::size_t>(r) * D + c));
    return r == c ? std::exp(v) : v;
  };
  std::vector<double> M(static_cast<std::size_t>(D) * D, 0.0);
  for (int r = 0; r < D; ++r)
    for (int c = 0; c < D; ++c)
      for (int k = 0; k < D; ++k) M[r * D + c] += Lh(r, k) * Lh(c, k);
  return M;
}

}  // namespace bf
