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

#include "flows/elementwise.hpp"
#include "flows/nn/mlp.hpp"

namespace bf {

/// Tangent rows τ = 1..K of `rows` become e_{first + τ − 1} (columns of rows).
template <class T>
void set_axis_tangents(const Rows<T>& rows, int batch, int k, int first) {
  const int c = static_cast<int>(rows.extent(1));
  for_each_element("bf::axis_tangents", batch, k, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t t) {
    const int tau = static_cast<int>(t) + 1;
    const std::int64_t r = row_of(i, tau, k);
    for (int j = 0; j < c; ++j) rows(r, j) = j == first + tau - 1 ? T(1) : T(0);
  });
}

/// The input rows of a network of (x, t) for n samples, in one kernel: value
/// row [x_i, t_i] (d + 1 columns), then k axis tangents e_0 … e_{k−1} (k = d:
/// the divergence; k = d + 1 adds the time tangent [0, …, 0, 1]).
template <class T>
void axis_tangent_rows(int n, int d, const Rows<const T>& x, const Span<const T>& t, int k, const Rows<T>& rows) {
  Kokkos::parallel_for(
      "bf::axis_tangent_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, k);
        for (int j = 0; j < d; ++j) rows(r0, j) = x(i, j);
        rows(r0, d) = t(i);
        for (int tau = 1; tau <= k; ++tau)
          for (int j = 0; j <= d; ++j) rows(r0 + tau, j) = (j == tau - 1) ? T(1) : T(0);
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
  for_each_element("bf::scalar_gradient", batch, dim, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    g(i, j) = out(row_of(i, 1 + static_cast<int>(j), k), 0);
  });
}

/// ∇E at rows x [n x D] of a scalar network E by reverse mode, into g: a
/// forward of the value rows, then a reverse pass with output adjoint 1 that
/// computes input adjoints only (no weight-gradient GEMMs): about two passes
/// of n rows, against one pass of (1 + D) n rows for D axis tangents.
/// adj_buf holds n rows of 1 column.
template <class T, class Net>
void gradient_by_reverse(const Net& net, typename Net::Workspace& ws, const Vector<T>& params, int n,
                         const Rows<const T>& x, const Matrix<T>& adj_buf, const Rows<T>& g) {
  net.forward(params, ws, n, 0, x);
  const Rows<T> adj = rows_of<T>(adj_buf, 0, n);
  Kokkos::parallel_for(
      "bf::unit_adjoint", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { adj(i, 0) = T(1); });
  net.reverse(params, Vector<T>(), ws, adj, g);
}

/// hu += c H u and grad += c ∂(u·∇E)/∂θ at rows x, for a scalar network E:
/// u·∇E(x) is E's tangent output along u, so one forward of [x; u] (one
/// tangent) and one reverse pass with adjoint c on the tangent output give
/// both: the parameter gradient, and H u as the value row's input adjoint.
/// Two rows per sample, whatever D; row_buf, adj_buf and in_buf hold 2 n rows.
template <class T, class Net>
void hessian_vector_product(const Net& net, typename Net::Workspace& ws, const Vector<T>& params,
                            const Vector<T>& grad, int n, int d, T c, const Rows<const T>& x, const Rows<const T>& u,
                            const Matrix<T>& row_buf, const Matrix<T>& adj_buf, const Matrix<T>& in_buf,
                            const Rows<T>& hu) {
  const Rows<T> rows = rows_of<T>(row_buf, 0, 2 * n), adj = rows_of<T>(adj_buf, 0, 2 * n),
                in = rows_of<T>(in_buf, 0, 2 * n);
  Kokkos::parallel_for(
      "bf::hvp_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, 1);
        for (int j = 0; j < d; ++j) {
          rows(r0, j) = x(i, j);
          rows(r0 + 1, j) = u(i, j);
        }
        adj(r0, 0) = T(0);
        adj(r0 + 1, 0) = c;
      });
  net.forward(params, ws, n, 1, rows);
  net.reverse(params, grad, ws, adj, in);
  for_each_element("bf::hvp", n, d, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
    hu(i, j) += in(row_of(i, 0, 1), j);
  });
}

}  // namespace bf
