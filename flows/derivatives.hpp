// The quantities the flows take from a network carrying tangents, each as a
// small kernel over the network's rows ((1 + K) B rows, sample-major: row
// row_of(i, τ, K) is tangent τ of sample i, τ = 0 its value). With tangent τ
// set to the unit vector e_{first + τ − 1}:
//   input gradient of a scalar network   ∇f(x_i)_j   = out(row_of(i, 1 + j), 0)
//   divergence of a vector network      ∇·V(x_i)     = Σ_j out(row_of(i, 1 + j), j)
//   time derivative (tangent [0, 1])    ∂_t F(x_i)   = out(row_of(i, 1), :)
//   Jacobian-vector product (tangent v) J v          = out(row_of(i, 1), :)
// and their parameter gradients come from one reverse pass whose tangent-row
// adjoints are the upstream adjoints: ĝ_j on tangent j for ∇f, d̂ e_j on
// tangent j for the divergence. The Hessian-vector product of a scalar network
// is the value-row input adjoint of that reverse pass: ∂/∂x (u · ∇f) = H u.
#pragma once

#include "flows/mlp.hpp"

namespace bf {

/// Tangent rows τ = 1..K of `rows` become e_{first + τ − 1} (columns of rows).
template <class T>
void set_axis_tangents(const Rows<T>& rows, int batch, int k, int first) {
  const int c = static_cast<int>(rows.extent(1));
  Kokkos::parallel_for(
      "bf::axis_tangents", Policy(0, static_cast<std::int64_t>(k) * batch), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / k;
        const int tau = static_cast<int>(e - i * k) + 1;
        const std::int64_t r = row_of(i, tau, k);
        for (int j = 0; j < c; ++j) rows(r, j) = j == first + tau - 1 ? T(1) : T(0);
      });
}

/// div(i) = Σ_{j<D} out(row_of(i, 1 + j, k), j): tangents 1..D along the first D axes (k ≥ D tangents in all).
template <class T>
void divergence(const Rows<const T>& out, int batch, int dim, int k, const Span<T>& div) {
  Kokkos::parallel_for(
      "bf::divergence", Policy(0, batch), KOKKOS_LAMBDA(const std::int64_t i) {
        T s = T(0);
        for (int j = 0; j < dim; ++j) s += out(row_of(i, 1 + j, k), j);
        div(i) = s;
      });
}

/// g(i, j) = out(row_of(i, 1 + j, k), 0): input gradient of a scalar network.
template <class T>
void scalar_gradient(const Rows<const T>& out, int batch, int dim, int k, const Rows<T>& g) {
  Kokkos::parallel_for(
      "bf::scalar_gradient", Policy(0, static_cast<std::int64_t>(batch) * dim), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / dim;
        const int j = static_cast<int>(e - i * dim);
        g(i, j) = out(row_of(i, 1 + j, k), 0);
      });
}

}  // namespace bf
