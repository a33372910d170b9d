// CnfFlow's inside (internal: included by cnf.cpp and cnf_deformation.cpp
// only). A struct at namespace scope with public members, because CUDA allows
// device lambdas only in functions it can name from outside; the public class
// holds it privately.
#pragma once

#include "flows/models/cnf.hpp"
#include "flows/nn/derivatives.hpp"
#include "flows/integrators/rk4.hpp"

namespace bf::detail {

template <class T>
void fill_value(const Span<T>& v, int n, T value) {
  Kokkos::parallel_for(
      "bf::cnf_fill", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { v(i) = value; });
}

template <class T>
Span<T> head(const Vector<T>& v, int n) {
  return Span<T>(v.data(), static_cast<std::size_t>(n));
}

template <class T>
struct CnfImpl {
  CnfImpl(const Distribution& target, std::shared_ptr<const Distribution> base, const CnfSpec& spec, int max_batch);

  const Distribution& target;
  std::shared_ptr<const Distribution> base_ptr;
  const Distribution& base;
  CnfSpec spec;
  int dim, max_batch, train_batch = 0;
  int last_count = 0;  // samples of the last deformation-loss call (their trajectory is in traj)
  ParameterLayout layout;
  std::unique_ptr<TimeMixture<T>> v, g, c;
  typename TimeMixture<T>::Workspace wv, wg, wc;
  Rk4<T> rk4;
  // buffers, sized once (B = max_batch, Bt = train_batch, C = time_chunk)
  Matrix<double> zd;                // base samples [B x D]
  Matrix<T> x;                      // the state [B x D]
  Matrix<T> traj;                   // trajectory points [(N + 1) Bt x D] (deformation loss)
  Matrix<T> stages;                 // stage points [4 N Bt x D] (reverse-KL adjoint)
  Matrix<T> vrows, grows, crows;    // network input rows [x, t] with tangents
  Matrix<T> adj_v, adj_g, adj_c;    // network output adjoints
  Matrix<T> adj_gx, adj_in;         // input adjoints of g's and V's rows
  Matrix<T> grad0, grad1;           // ∇f0, ∇f1 [C Bt x D]; grad1 [Bt x D] is λ for the reverse KL
  Vector<T> divint, t, e0, e1, w, lq0;

  /// x (n rows) := base samples of the batch, and lq0 := log p0(x).
  void draw_base(std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first, int n);
  double deformation_loss(const Vector<T>& params, const Vector<T>& grad, int n, const Span<const T>& weight);
  double reverse_kl_loss(const Vector<T>& params, const Vector<T>& grad, int n, const Span<const T>& log_q0);
  /// Trajectory weights w (n): 1, or Eq. 9's normalised importance weights from x_1 and ∫∇·V.
  void weights(int n, std::int64_t global, const Collective& coll);
};

/// V_t as Rk4's vector field: the time mixture V at rows [x, t], with D axis
/// tangents when the divergence is wanted. Parameter adjoints go to grad.
template <class T>
struct CnfVelocity {
  CnfImpl<T>& m;
  const Vector<T>& params;
  Vector<T> grad;

  void velocity(int n, const Rows<const T>& x, T t, const Rows<T>& out_v, const Span<T>& out_div, bool with_div) {
    const int D = m.dim, k = with_div ? D : 0;
    fill_value<T>(head(m.t, n), n, t);
    axis_tangent_rows<T>(n, D, x, head(m.t, n), k, rows_of<T>(m.vrows, 0, (1 + k) * n));
    // Inference: nothing runs V backwards from here (the adjoint re-runs each stage with its context kept).
    const Rows<const T> out = m.v->forward(params, m.wv, n, k, rows_of<const T>(m.vrows, 0, (1 + k) * n), false);
    for_each_element("bf::cnf_velocity", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      out_v(i, j) = out(row_of(i, 0, k), j);
    });
    if (with_div)
      divergence<T>(out, n, D, k, out_div);
    else
      fill_value<T>(out_div, n, T(0));
  }

  void forward(int n, const Rows<const T>& x, T t, const Span<T>& div) {
    const int D = m.dim;
    fill_value<T>(head(m.t, n), n, t);
    axis_tangent_rows<T>(n, D, x, head(m.t, n), D, rows_of<T>(m.vrows, 0, (1 + D) * n));
    const Rows<const T> out = m.v->forward(params, m.wv, n, D, rows_of<const T>(m.vrows, 0, (1 + D) * n));
    divergence<T>(out, n, D, D, div);
  }

  void reverse(int n, const Rows<const T>& v_bar, T div_bar, const Rows<T>& x_bar) {
    const int D = m.dim;
    const Rows<T> av = rows_of<T>(m.adj_v, 0, (1 + D) * n), ain = rows_of<T>(m.adj_in, 0, (1 + D) * n);
    Kokkos::parallel_for(
        "bf::cnf_velocity_adjoint", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t r0 = row_of(i, 0, D);
          for (int j = 0; j < D; ++j) {
            av(r0, j) = v_bar(i, j);
            for (int q = 0; q < D; ++q) av(r0 + 1 + j, q) = q == j ? div_bar : T(0);
          }
        });
    m.v->reverse(params, grad, m.wv, av, ain);
    for_each_element("bf::cnf_velocity_x_bar", n, D, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      x_bar(i, j) = ain(row_of(i, 0, D), j);
    });
  }
};

}  // namespace bf::detail
