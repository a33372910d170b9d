#include "flows/nn/time_mixture.hpp"

#include "flows/elementwise.hpp"

#include <stdexcept>

namespace bf {

template <class T>
TimeMixture<T>::TimeMixture(const std::string& name, const TimeMixtureSpec& spec, ParameterLayout& layout)
    : spec_(spec), width_(1.0 / std::max(1, spec.kernels)) {
  if (spec.kernels < 1) throw std::invalid_argument(name + ": needs at least one time kernel");
  if (spec.space_dim < 0 || spec.outputs < 1) throw std::invalid_argument(name + ": bad dimensions");
  if (spec.space_dim == 0 && !spec.time_input)
    throw std::invalid_argument(name + ": a network of t alone needs t as its input");
  MlpSpec ms;
  ms.widths.push_back(spec.space_dim + (spec.time_input ? 1 : 0));
  for (int h : spec.hidden) ms.widths.push_back(h);
  ms.widths.push_back(spec.outputs);
  ms.activation = spec.activation;
  ms.output_gain = spec.output_gain;
  for (int k = 0; k < spec.kernels; ++k) nets_.emplace_back(name + ".k" + std::to_string(k), ms, layout);
}

template <class T>
typename TimeMixture<T>::Workspace TimeMixture<T>::workspace(int max_rows) const {
  Workspace ws;
  ws.max_rows = max_rows;
  for (const auto& n : nets_) ws.nets.push_back(n.workspace(max_rows));
  if (!spec_.time_input) ws.space_in = Matrix<T>("tm_space_in", max_rows, spec_.space_dim);
  ws.out = Matrix<T>("tm_out", max_rows, spec_.outputs);
  ws.adj_k = Matrix<T>("tm_adj_k", max_rows, spec_.outputs);
  ws.adj_in_k = Matrix<T>("tm_adj_in_k", max_rows, nets_[0].inputs());
  ws.rho = Matrix<T>("tm_rho", max_rows, spec_.kernels);
  ws.drho = Matrix<T>("tm_drho", max_rows, spec_.kernels);
  return ws;
}

template <class T>
Rows<T> TimeMixture<T>::forward(const Vector<T>& params, Workspace& ws, int batch, int k,
                                const Rows<const T>& in, bool keep) const {
  const int rows = (1 + k) * batch, D = spec_.space_dim, K = spec_.kernels, n_out = spec_.outputs;
  if (rows > ws.max_rows) throw std::logic_error("time mixture forward: workspace too small");
  if (static_cast<int>(in.extent(1)) != D + 1) throw std::logic_error("time mixture forward: rows need D + 1 columns");
  ws.input = in;
  ws.batch = batch;
  ws.k = k;
  // Kernel weights and their time derivatives per sample.
  const double w2 = width_ * width_;
  const Matrix<T> rho = ws.rho, drho = ws.drho;
  Kokkos::parallel_for(
      "bf::tm_rho", Policy(0, batch), KOKKOS_LAMBDA(const std::int64_t i) {
        const T t = in(row_of(i, 0, k), D);
        T mx = T(0);
        for (int c = 0; c < K; ++c) {
          const T center = K > 1 ? T(c) / T(K - 1) : T(0.5);
          const T l = -(t - center) * (t - center) / T(2 * w2);
          mx = c == 0 || l > mx ? l : mx;
        }
        T s = T(0), su = T(0);
        for (int c = 0; c < K; ++c) {
          const T center = K > 1 ? T(c) / T(K - 1) : T(0.5);
          const T e = kmath::exp(-(t - center) * (t - center) / T(2 * w2) - mx);
          rho(i, c) = e;
          s += e;
          su += e * (-(t - center) / T(w2));
        }
        for (int c = 0; c < K; ++c) {
          const T center = K > 1 ? T(c) / T(K - 1) : T(0.5);
          rho(i, c) /= s;
          drho(i, c) = rho(i, c) * (-(t - center) / T(w2) - su / s);
        }
      });
  Rows<const T> net_in = in;
  if (!spec_.time_input) {
    const Matrix<T> sp = ws.space_in;
    for_each_element("bf::tm_space_in", rows, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t j) {
      sp(r, j) = in(r, j);
    });
    net_in = rows_of<const T>(sp, 0, rows);
  }
  const Matrix<T> out = ws.out;
  for (int c = 0; c < K; ++c) {
    const Rows<T> y = nets_[c].forward(params, ws.nets[c], batch, k, net_in, keep);
    const bool first = c == 0;
    for_each_element("bf::tm_combine", batch, n_out, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      const std::int64_t r0 = row_of(i, 0, k);
      const T r = rho(i, c), dr = drho(i, c), yv = y(r0, j);
      out(r0, j) = (first ? T(0) : out(r0, j)) + r * yv;
      for (int t = 1; t <= k; ++t) {
        const std::int64_t q = r0 + t;
        out(q, j) = (first ? T(0) : out(q, j)) + r * y(q, j) + dr * in(q, D) * yv;
      }
    });
  }
  return rows_of<T>(out, 0, rows);
}

template <class T>
void TimeMixture<T>::reverse(const Vector<T>& params, const Vector<T>& grad, Workspace& ws,
                             const Rows<const T>& adj_out, const Rows<T>& adj_x) const {
  const int batch = ws.batch, k = ws.k, rows = (1 + k) * batch, D = spec_.space_dim, K = spec_.kernels,
            n_out = spec_.outputs;
  const Rows<const T> in = ws.input;
  const Matrix<T> rho = ws.rho, drho = ws.drho, gk = ws.adj_k, ak = ws.adj_in_k;
  const bool want_in = adj_x.data() != nullptr && D > 0;
  for (int c = 0; c < K; ++c) {
    // Adjoints of MLP_c's outputs: ρ_c Ḡ on every row, plus ρ'_c ṫ Ḡ_tangent on the value rows.
    for_each_element("bf::tm_adjoint_split", batch, n_out, KOKKOS_LAMBDA(const std::int64_t i, const std::int64_t j) {
      const std::int64_t r0 = row_of(i, 0, k);
      const T r = rho(i, c), dr = drho(i, c);
      T v = r * adj_out(r0, j);
      for (int t = 1; t <= k; ++t) {
        const std::int64_t q = r0 + t;
        v += dr * in(q, D) * adj_out(q, j);
        gk(q, j) = r * adj_out(q, j);
      }
      gk(r0, j) = v;
    });
    const Rows<T> adj_in_net = want_in ? rows_of<T>(ak, 0, rows) : Rows<T>();
    nets_[c].reverse(params, grad, ws.nets[c], rows_of<const T>(gk, 0, rows), adj_in_net);
    if (want_in) {
      const bool first = c == 0;
      for_each_element("bf::tm_adjoint_in", rows, D, KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t j) {
        adj_x(r, j) = (first ? T(0) : adj_x(r, j)) + ak(r, j);
      });
    }
  }
}

template <class T>
double TimeMixture<T>::forward_flops(double rows) const {
  return nets_.size() * nets_[0].forward_flops(rows);
}
template <class T>
double TimeMixture<T>::forward_reverse_flops(double rows, bool input_adjoints) const {
  return nets_.size() * nets_[0].forward_reverse_flops(rows, input_adjoints);
}

template class TimeMixture<float>;
template class TimeMixture<double>;

}  // namespace bf
