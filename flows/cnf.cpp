#include "flows/cnf.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace bf {

namespace {

// Network input rows for n samples: value row [x_i, t_i], tangent τ = 1..D the
// axis e_{τ−1} (time component 0), and with `time_tangent` one more tangent [0, 1].
template <class T>
void fill_rows(int n, int d, const Rows<const T>& x, const Span<const T>& t, bool time_tangent, const Rows<T>& rows) {
  const int k = d + (time_tangent ? 1 : 0);
  Kokkos::parallel_for(
      "bf::cnf_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, k);
        for (int j = 0; j < d; ++j) rows(r0, j) = x(i, j);
        rows(r0, d) = t(i);
        for (int tau = 1; tau <= k; ++tau)
          for (int j = 0; j <= d; ++j) rows(r0 + tau, j) = (j == tau - 1) ? T(1) : T(0);
      });
}

// Rows of g for n samples carrying one tangent: value row [x_i, t_i], tangent
// row the flow direction [V(x_i, t_i), 1] read from V's value rows (vo, with
// k_v tangents per sample). g's tangent output is then ∂_t g + ⟨∇g, V⟩, all
// that the deformation error needs of g's derivatives.
template <class T>
void fill_flow_rows(int n, int d, const Rows<const T>& x, const Span<const T>& t, const Rows<const T>& vo, int k_v,
                    const Rows<T>& rows) {
  Kokkos::parallel_for(
      "bf::cnf_flow_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, 1), rv = row_of(i, 0, k_v);
        for (int j = 0; j < d; ++j) {
          rows(r0, j) = x(i, j);
          rows(r0 + 1, j) = vo(rv, j);
        }
        rows(r0, d) = t(i);
        rows(r0 + 1, d) = T(1);
      });
}

template <class T>
void fill_time_rows(int n, const Span<const T>& t, const Rows<T>& rows) {
  Kokkos::parallel_for(
      "bf::cnf_time_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { rows(i, 0) = t(i); });
}

template <class T>
void fill_value(const Span<T>& v, int n, T value) {
  Kokkos::parallel_for(
      "bf::cnf_fill", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { v(i) = value; });
}

template <class T>
Span<T> first(const Vector<T>& v, int n) {
  return Span<T>(v.data(), static_cast<std::size_t>(n));
}

}  // namespace

template <class T>
CnfFlow<T>::CnfFlow(const Distribution& target, std::shared_ptr<const Distribution> base_ptr, const CnfSpec& spec,
                    int max_batch)
    : target_(target), base_ptr_(std::move(base_ptr)), base_(*base_ptr_), spec_(spec), dim_(target.dim()),
      max_batch_(max_batch) {
  const Distribution& base = base_;
  if (base.dim() != dim_) throw std::invalid_argument("cnf: base and target dimensions differ");
  if (!std::isfinite(base.log_z()) || !base.has_sampler())
    throw std::invalid_argument("cnf: the base needs an exact sampler and a known normaliser");
  if (spec.steps < 1) throw std::invalid_argument("cnf: integration steps must be at least 1");
  if (spec.time_chunk < 1) throw std::invalid_argument("cnf: time chunk must be at least 1");
  if (max_batch < 1) throw std::invalid_argument("cnf: batch must be at least 1");
  const int D = dim_, B = max_batch, N = spec.steps, C = std::min(spec.time_chunk, N + 1);
  spec_.time_chunk = C;
  TimeMixtureSpec vs;
  vs.kernels = spec.kernels;
  vs.space_dim = D;
  vs.outputs = D;
  vs.hidden = spec.hidden;
  vs.activation = spec.activation;
  vs.time_input = spec.time_input;
  vs.output_gain = spec.output_gain;
  v_ = std::make_unique<TimeMixture<T>>("V", vs, layout_);
  const bool deform = spec.deformation;
  if (deform) {
    TimeMixtureSpec cs = vs;
    cs.space_dim = 0;
    cs.outputs = 1;
    cs.hidden = spec.c_hidden;
    cs.time_input = true;
    cs.output_gain = 1.0;
    c_ = std::make_unique<TimeMixture<T>>("C", cs, layout_);
    if (spec.trainable) {
      TimeMixtureSpec gs = vs;
      gs.outputs = 1;
      gs.hidden = spec.g_hidden;
      gs.output_gain = 0.0;  // g starts at 0: the linear interpolation
      g_ = std::make_unique<TimeMixture<T>>("g", gs, layout_);
    }
  }
  // Workspaces. Sampling and log q integrate up to B points, one velocity
  // evaluation at a time: (1 + D) B rows. The loss handles up to Bt points
  // (the training batch per rank): the deformation loss C trajectory points
  // at once, (1 + D) Bt C rows, the reverse-KL adjoint (1 + D) Bt rows. Sizing
  // the loss buffers by the evaluation batch instead costs gigabytes for the
  // paper's phi^4 network.
  const int Bt = spec.train_batch > 0 ? std::min(spec.train_batch, B) : B;
  train_batch_ = Bt;
  const int lrows = (1 + D) * Bt * (deform ? C : 1);
  const int vrows = std::max((1 + D) * B, lrows);
  wv_ = v_->workspace(vrows);
  vrows_ = Matrix<T>("cnf_vrows", vrows, D + 1);
  adj_v_ = Matrix<T>("cnf_adj_v", lrows, D);
  zd_ = Matrix<double>("cnf_z", B, D);
  x_ = Matrix<T>("cnf_x", B, D);
  xs_ = Matrix<T>("cnf_xs", B, D);
  k_ = Matrix<T>("cnf_k", B, D);
  acc_ = Matrix<T>("cnf_acc", B, D);
  div_ = Vector<T>("cnf_div", B);
  dacc_ = Vector<T>("cnf_dacc", B);
  divint_ = Vector<T>("cnf_divint", B);
  t_ = Vector<T>("cnf_t", std::max(B, Bt * C));
  w_ = Vector<T>("cnf_w", Bt);
  lq0_ = Vector<T>("cnf_lq0", B);
  if (deform) {
    traj_ = Matrix<T>("cnf_traj", static_cast<std::size_t>(N + 1) * Bt, D);
    wc_ = c_->workspace(Bt * C);
    crows_ = Matrix<T>("cnf_crows", Bt * C, 1);
    adj_c_ = Matrix<T>("cnf_adj_c", Bt * C, 1);
    grad0_ = Matrix<T>("cnf_grad0", Bt * C, D);
    grad1_ = Matrix<T>("cnf_grad1", Bt * C, D);
    e0_ = Vector<T>("cnf_e0", Bt * C);
    e1_ = Vector<T>("cnf_e1", Bt * C);
    if (g_) {
      // g carries one tangent, the flow direction (V, 1): 2 rows per point.
      wg_ = g_->workspace(2 * Bt * C);
      grows_ = Matrix<T>("cnf_grows", 2 * Bt * C, D + 1);
      adj_g_ = Matrix<T>("cnf_adj_g", 2 * Bt * C, 1);
      adj_gx_ = Matrix<T>("cnf_adj_gx", 2 * Bt * C, D);
    }
  } else {
    adj_in_ = Matrix<T>("cnf_adj_in", (1 + D) * Bt, D);
    stages_ = Matrix<T>("cnf_stages", static_cast<std::size_t>(4) * N * Bt, D);
    lam_ = Matrix<T>("cnf_lambda", Bt, D);
    lam_new_ = Matrix<T>("cnf_lambda_new", Bt, D);
    kbar_ = Matrix<T>("cnf_kbar", Bt, D);
    grad1_ = Matrix<T>("cnf_grad1", Bt, D);
    e1_ = Vector<T>("cnf_e1", Bt);
  }
}

template <class T>
std::string CnfFlow<T>::description() const {
  std::ostringstream os;
  auto widths = [](const std::vector<int>& h) {
    std::string s;
    for (std::size_t i = 0; i < h.size(); ++i) s += (i ? "x" : "") + std::to_string(h[i]);
    return s;
  };
  os << "cnf: V_t = " << spec_.kernels << " RBF time kernels x MLP(" << widths(spec_.hidden) << ", "
     << activation_name(spec_.activation) << (spec_.time_input ? ", t input" : "") << "), RK4 " << spec_.steps
     << " steps, base " << base_.description() << "; loss "
     << (spec_.deformation ? std::string("deformation, ") + (spec_.trainable ? "trainable" : "linear") +
                                 " interpolation" + (spec_.importance_weights ? ", Eq. 9 weights" : ", w = 1")
                           : std::string("reverse KL"));
  return os.str();
}

template <class T>
void CnfFlow<T>::initialize(const Vector<T>& params, std::uint32_t seed) const {
  initialize_parameters(layout_, params, seed);
}

template <class T>
void CnfFlow<T>::eval_velocity(const Vector<T>& params, int n, const Rows<const T>& x, const Span<const T>& t,
                               const Rows<T>& out_v, const Span<T>& out_div, bool with_div) {
  const int D = dim_, k = with_div ? D : 0;
  if (with_div) {
    fill_rows<T>(n, D, x, t, false, rows_of<T>(vrows_, 0, (1 + D) * n));
  } else {
    const Rows<T> rows = rows_of<T>(vrows_, 0, n);  // value rows only: [x, t]
    Kokkos::parallel_for(
        "bf::cnf_value_rows", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          for (int j = 0; j < D; ++j) rows(i, j) = x(i, j);
          rows(i, D) = t(i);
        });
  }
  // Inference: the integrators never run V backwards from here (the reverse-KL
  // sweep re-runs each stage with its cache kept).
  const Rows<T> out = v_->forward(params, wv_, n, k, rows_of<const T>(vrows_, 0, (1 + k) * n), false);
  Kokkos::parallel_for(
      "bf::cnf_velocity", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r0 = row_of(i, 0, k);
        T div = T(0);
        for (int j = 0; j < D; ++j) {
          out_v(i, j) = out(r0, j);
          if (k > 0) div += out(r0 + 1 + j, j);
        }
        out_div(i) = div;
      });
}

template <class T>
void CnfFlow<T>::rk4(const Vector<T>& params, int n, const Rows<T>& x, const Span<T>& div_int, double t0, double h,
                     bool with_div, bool store_traj, bool store_stages) {
  const int D = dim_, N = spec_.steps;
  const Rows<T> xs = head_rows(xs_, n), k = head_rows(k_, n), acc = head_rows(acc_, n);
  const Span<T> div = first(div_, n), dacc = first(dacc_, n), t = first(t_, n);
  const Matrix<T> traj = traj_, stages = stages_;
  const T hh = static_cast<T>(h);
  // Stage weights c_i and the offsets a_i of the next stage's point.
  const T cw[4] = {T(1), T(2), T(2), T(1)};
  const T next[4] = {T(0.5), T(0.5), T(1), T(0)};
  const double toff[4] = {0.0, 0.5, 0.5, 1.0};
  for (int s = 0; s < N; ++s) {
    const double ts = t0 + s * h;
    Kokkos::parallel_for(
        "bf::rk4_begin", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          xs(i, j) = x(i, j);
          acc(i, j) = T(0);
          if (j == 0) dacc(i) = T(0);
          if (store_traj) traj(static_cast<std::int64_t>(s) * n + i, j) = x(i, j);
        });
    for (int st = 0; st < 4; ++st) {
      fill_value<T>(t, n, static_cast<T>(ts + toff[st] * h));
      if (store_stages)
        Kokkos::parallel_for(
            "bf::rk4_store_stage", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
              const std::int64_t i = e / D;
              const int j = static_cast<int>(e - i * D);
              stages((static_cast<std::int64_t>(4) * s + st) * n + i, j) = xs(i, j);
            });
      eval_velocity(params, n, xs, t, k, div, with_div);
      const T c = cw[st], a = next[st] * hh;
      Kokkos::parallel_for(
          "bf::rk4_stage", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
            const std::int64_t i = e / D;
            const int j = static_cast<int>(e - i * D);
            acc(i, j) += c * k(i, j);
            if (j == 0) dacc(i) += c * div(i);
            xs(i, j) = x(i, j) + a * k(i, j);
          });
    }
    Kokkos::parallel_for(
        "bf::rk4_end", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          x(i, j) += hh / T(6) * acc(i, j);
          if (j == 0) div_int(i) += hh / T(6) * dacc(i);
        });
  }
  if (store_traj)
    Kokkos::parallel_for(
        "bf::rk4_last", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          traj(static_cast<std::int64_t>(N) * n + i, j) = x(i, j);
        });
}

// The deformation loss over the N + 1 trajectory points, `time_chunk` points
// at a time. With f_t = (1 − t) f0 + t f1 + t(1 − t) g and ġ = ∂_t g + ⟨∇g, V⟩
// (g's one tangent along (V, 1)),
//   E = f1 − f0 + (1 − 2t) g + t(1 − t) ġ + ⟨(1 − t)∇f0 + t ∇f1, V⟩ − ∇·V + C,
// so V runs first (g's tangent is V's value). The reverse pass takes
// ē = w/S · L'(E): g's value ē (1 − 2t), its tangent ē t(1 − t); C ē; V's
// tangent j (component j) −ē and V's value ē ((1 − t)∇f0 + t∇f1) plus the
// adjoint of g's tangent input, ē t(1 − t) ∇g, which g's reverse returns: so
// g's reverse runs before V's. (Axis tangents for g, D + 1 of them, would
// give ∇g and ∂_t g separately at (2 + D)/2 times the cost; `terms` does that,
// and the tests check the two against each other.)
template <class T>
double CnfFlow<T>::deformation_loss(const Vector<T>& params, const Vector<T>& grad, int n, const Span<const T>& weight) {
  const int D = dim_, N = spec_.steps, S = N + 1, C = spec_.time_chunk;
  const bool trainable = static_cast<bool>(g_);
  double total = 0.0;
  for (int n0 = 0; n0 < S; n0 += C) {
    const int c = std::min(C, S - n0), m = c * n;  // rows of this chunk: m = c n samples
    const Span<T> t = first(t_, m);
    Kokkos::parallel_for(
        "bf::cnf_chunk_times", Policy(0, m), KOKKOS_LAMBDA(const std::int64_t r) {
          t(r) = static_cast<T>(static_cast<double>(n0 + r / n) / N);
        });
    const Rows<const T> xc = rows_of<const T>(traj_, static_cast<std::int64_t>(n0) * n, m);
    const Vector<T> e0 = Kokkos::subview(e0_, std::make_pair(0, m)), e1 = Kokkos::subview(e1_, std::make_pair(0, m));
    const Matrix<T> g0 = Kokkos::subview(grad0_, std::make_pair(0, m), Kokkos::ALL());
    const Matrix<T> g1 = Kokkos::subview(grad1_, std::make_pair(0, m), Kokkos::ALL());
    base_.energy_grad(ConstMatrix<T>(xc), e0, g0);
    target_.energy_grad(ConstMatrix<T>(xc), e1, g1);
    fill_rows<T>(m, D, xc, t, false, rows_of<T>(vrows_, 0, (1 + D) * m));
    const Rows<const T> vo = v_->forward(params, wv_, m, D, rows_of<const T>(vrows_, 0, (1 + D) * m));
    fill_time_rows<T>(m, t, rows_of<T>(crows_, 0, m));
    const Rows<const T> co = c_->forward(params, wc_, m, 0, rows_of<const T>(crows_, 0, m));
    Rows<const T> go;
    if (trainable) {
      fill_flow_rows<T>(m, D, xc, t, vo, D, rows_of<T>(grows_, 0, 2 * m));
      go = g_->forward(params, wg_, m, 1, rows_of<const T>(grows_, 0, 2 * m));
    }
    const Rows<T> av = rows_of<T>(adj_v_, 0, (1 + D) * m), ac = rows_of<T>(adj_c_, 0, m);
    const Rows<T> ag = trainable ? rows_of<T>(adj_g_, 0, 2 * m) : Rows<T>();
    const T inv_s = T(1) / T(S);
    double part = 0.0;
    Kokkos::parallel_reduce(
        "bf::deformation_error", Policy(0, m),
        KOKKOS_LAMBDA(const std::int64_t r, double& loss) {
          const T tt = t(r), w = weight(r % n) * inv_s, tq = tt * (T(1) - tt);
          const std::int64_t rv = row_of(r, 0, D), rg = row_of(r, 0, 1);
          T E = e1(r) - e0(r) + co(r, 0);
          if (trainable) E += (T(1) - T(2) * tt) * go(rg, 0) + tq * go(rg + 1, 0);
          for (int j = 0; j < D; ++j) E += ((T(1) - tt) * g0(r, j) + tt * g1(r, j)) * vo(rv, j) - vo(rv + 1 + j, j);
          loss += static_cast<double>(w * (kmath::fabs(E) + E * E));
          const T eb = w * ((E > T(0) ? T(1) : (E < T(0) ? T(-1) : T(0))) + T(2) * E);
          for (int j = 0; j < D; ++j) {
            av(rv, j) = eb * ((T(1) - tt) * g0(r, j) + tt * g1(r, j));
            for (int q = 0; q < D; ++q) av(rv + 1 + j, q) = q == j ? -eb : T(0);
          }
          ac(r, 0) = eb;
          if (trainable) {
            ag(rg, 0) = eb * (T(1) - T(2) * tt);
            ag(rg + 1, 0) = eb * tq;
          }
        },
        part);
    total += part;
    if (trainable) {
      // g first: its tangent-input adjoint ē t(1 − t) ∇g joins V's value adjoint.
      const Rows<T> agx = rows_of<T>(adj_gx_, 0, 2 * m);
      g_->reverse(params, grad, wg_, ag, agx);
      Kokkos::parallel_for(
          "bf::cnf_g_to_v", Policy(0, static_cast<std::int64_t>(m) * D), KOKKOS_LAMBDA(const std::int64_t e) {
            const std::int64_t r = e / D;
            const int j = static_cast<int>(e - r * D);
            av(row_of(r, 0, D), j) += agx(row_of(r, 1, 1), j);
          });
    }
    v_->reverse(params, grad, wv_, av, Rows<T>());
    c_->reverse(params, grad, wc_, ac, Rows<T>());
  }
  return total;
}

// Reverse KL through the trajectory: the exact discrete adjoint of RK4.
template <class T>
double CnfFlow<T>::reverse_kl_loss(const Vector<T>& params, const Vector<T>& grad, int n,
                                   const Span<const T>& log_q0) {
  const int D = dim_, N = spec_.steps;
  const double h = 1.0 / N;
  const Rows<T> x = head_rows(x_, n);
  const Span<T> dint = first(divint_, n);
  fill_value<T>(dint, n, T(0));
  // The forward pass needs no divergence: the adjoint sweep re-runs every
  // stage with the D tangents anyway (their adjoint is −c h), and sums
  // ∫ ∇·V dt from them. The forward is then one value row per sample.
  rk4(params, n, x, dint, 0.0, h, false, false, true);
  // λ = ∇f1(x_1); the loss Σ log p0(z) − ∫div + f1(x_1) once the sweep has ∫div.
  const Vector<T> e1 = Kokkos::subview(e1_, std::make_pair(0, n));
  const Matrix<T> lam = Kokkos::subview(lam_, std::make_pair(0, n), Kokkos::ALL());
  target_.energy_grad(ConstMatrix<T>(x), e1, lam);
  const Rows<T> lnew = head_rows(lam_new_, n), kb = head_rows(kbar_, n), xs = head_rows(xs_, n);
  const Rows<T> av = rows_of<T>(adj_v_, 0, (1 + D) * n), ain = rows_of<T>(adj_in_, 0, (1 + D) * n);
  const Span<T> t = first(t_, n);
  const Matrix<T> stages = stages_;
  const T hh = static_cast<T>(h);
  const T cw[4] = {T(1) / T(6), T(2) / T(6), T(2) / T(6), T(1) / T(6)};
  const T back[4] = {T(0), T(0.5), T(0.5), T(1)};  // stage st's point = x_s + back[st] h k_{st−1}
  const double toff[4] = {0.0, 0.5, 0.5, 1.0};
  for (int s = N - 1; s >= 0; --s) {
    // λ_new starts as λ (x_{s+1} = x_s + …); k̄ of the stage being processed.
    Kokkos::parallel_for(
        "bf::adjoint_begin", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          lnew(i, j) = lam(i, j);
          kb(i, j) = T(0);
        });
    for (int st = 3; st >= 0; --st) {
      // Re-run this stage's forward at its stored point to refill V's cache.
      Kokkos::parallel_for(
          "bf::adjoint_load_stage", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
            const std::int64_t i = e / D;
            const int j = static_cast<int>(e - i * D);
            xs(i, j) = stages((static_cast<std::int64_t>(4) * s + st) * n + i, j);
          });
      fill_value<T>(t, n, static_cast<T>((s + toff[st]) * h));
      fill_rows<T>(n, D, xs, t, false, rows_of<T>(vrows_, 0, (1 + D) * n));
      const Rows<const T> vo = v_->forward(params, wv_, n, D, rows_of<const T>(vrows_, 0, (1 + D) * n));
      // Output adjoints: value rows k̄ + c h λ, divergence −c h (μ = ∂L/∂log q = 1);
      // this stage's share c h ∇·V of ∫div.
      const T c = cw[st];
      Kokkos::parallel_for(
          "bf::adjoint_stage_out", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            const std::int64_t r0 = row_of(i, 0, D);
            T div = T(0);
            for (int j = 0; j < D; ++j) div += vo(r0 + 1 + j, j);
            dint(i) += c * hh * div;
            for (int j = 0; j < D; ++j) {
              av(r0, j) = kb(i, j) + c * hh * lam(i, j);
              for (int q = 0; q < D; ++q) av(r0 + 1 + j, q) = q == j ? -c * hh : T(0);
            }
          });
      v_->reverse(params, grad, wv_, av, ain);
      // x̄ of this stage's point flows to x_s and, scaled by back[st] h, to the previous stage's k.
      const T b = back[st] * hh;
      Kokkos::parallel_for(
          "bf::adjoint_stage_in", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
            const std::int64_t i = e / D;
            const int j = static_cast<int>(e - i * D);
            const T xb = ain(row_of(i, 0, D), j);
            lnew(i, j) += xb;
            kb(i, j) = b * xb;
          });
    }
    Kokkos::deep_copy(lam, Kokkos::subview(lam_new_, std::make_pair(0, n), Kokkos::ALL()));
  }
  double loss = 0.0;
  Kokkos::parallel_reduce(
      "bf::cnf_reverse_kl", Policy(0, n),
      KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += static_cast<double>(log_q0(i) - dint(i) + e1(i)); },
      loss);
  return loss;
}

template <class T>
double CnfFlow<T>::loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& b,
                                 const Collective& coll) {
  const int n = b.count, D = dim_;
  if (n > train_batch_) throw std::logic_error("cnf: loss batch larger than the workspace");
  // z ~ p0 by global sample index; log p0(z).
  const Matrix<double> zd = Kokkos::subview(zd_, std::make_pair(0, n), Kokkos::ALL());
  base_.sample(b.seed, Purpose::base_sample, static_cast<std::uint32_t>(b.step), b.first, zd);
  const Rows<T> x = head_rows(x_, n);
  Kokkos::parallel_for(
      "bf::cnf_load_z", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / D;
        const int j = static_cast<int>(e - i * D);
        x(i, j) = static_cast<T>(zd(i, j));
      });
  Vector<T> lq0 = Kokkos::subview(lq0_, std::make_pair(0, n));
  base_.energy(ConstMatrix<T>(x), lq0);
  const T lz0 = static_cast<T>(base_.log_z());
  Kokkos::parallel_for(
      "bf::cnf_log_p0", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { lq0(i) = -lq0(i) - lz0; });
  if (!spec_.deformation) return reverse_kl_loss(params, grad, n, lq0);

  // Deformation loss: the trajectory without gradients, then the error at its points.
  const Span<T> dint = first(divint_, n), w = first(w_, n);
  fill_value<T>(dint, n, T(0));
  // The divergence is needed along the way only for the importance weights.
  rk4(params, n, x, dint, 0.0, 1.0 / spec_.steps, spec_.importance_weights, true, false);
  if (spec_.importance_weights) {
    // w_i = e^{−f1(x1) − log q(x1)}, normalised by the global batch mean (no gradient).
    const Vector<T> e1 = Kokkos::subview(e1_, std::make_pair(0, n));
    target_.energy(ConstMatrix<T>(x), e1);
    Kokkos::parallel_for(
        "bf::cnf_log_w", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) { w(i) = -e1(i) - (lq0(i) - dint(i)); });
    double mx = -1e300;
    Kokkos::parallel_reduce(
        "bf::cnf_log_w_max", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& m) { m = static_cast<double>(w(i)) > m ? static_cast<double>(w(i)) : m; },
        Kokkos::Max<double>(mx));
    coll.max(&mx, 1);
    double s = 0;
    Kokkos::parallel_reduce(
        "bf::cnf_w_sum", Policy(0, n),
        KOKKOS_LAMBDA(const std::int64_t i, double& a) { a += kmath::exp(static_cast<double>(w(i)) - mx); }, s);
    coll.sum(&s, 1);
    const double mean = s / static_cast<double>(b.global);
    Kokkos::parallel_for(
        "bf::cnf_w", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          w(i) = static_cast<T>(kmath::exp(static_cast<double>(w(i)) - mx) / mean);
        });
  } else {
    fill_value<T>(w, n, T(1));
  }
  last_count_ = n;
  return deformation_loss(params, grad, n, w);
}

template <class T>
std::vector<double> CnfFlow<T>::last_trajectory_point(int n) const {
  if (!spec_.deformation || last_count_ == 0) throw std::logic_error("cnf: no deformation trajectory stored");
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), traj_);
  std::vector<double> out;
  for (int i = 0; i < last_count_; ++i)
    for (int j = 0; j < dim_; ++j) out.push_back(static_cast<double>(h(static_cast<std::int64_t>(n) * last_count_ + i, j)));
  return out;
}

template <class T>
double CnfFlow<T>::deformation_loss_on_last_trajectory(const Vector<T>& params, const Vector<T>& grad) {
  if (!spec_.deformation || last_count_ == 0) throw std::logic_error("cnf: no deformation trajectory to reuse");
  return deformation_loss(params, grad, last_count_, first(w_, last_count_));
}

template <class T>
void CnfFlow<T>::sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step,
                        std::uint64_t first_index, const Matrix<double>& xout, const Vector<double>& log_q) {
  const int D = dim_, total = static_cast<int>(xout.extent(0));
  const T lz0 = static_cast<T>(base_.log_z());
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    const Matrix<double> zd = Kokkos::subview(zd_, std::make_pair(0, n), Kokkos::ALL());
    base_.sample(seed, purpose, static_cast<std::uint32_t>(step), first_index + static_cast<std::uint64_t>(c0), zd);
    const Rows<T> x = head_rows(x_, n);
    const Span<T> dint = first(divint_, n), lq0 = first(lq0_, n);
    Kokkos::parallel_for(
        "bf::cnf_sample_z", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          x(i, j) = static_cast<T>(zd(i, j));
          if (j == 0) dint(i) = T(0);
        });
    base_.energy(ConstMatrix<T>(x), Vector<T>(Kokkos::subview(lq0_, std::make_pair(0, n))));
    rk4(params, n, x, dint, 0.0, 1.0 / spec_.steps, true, false, false);
    Kokkos::parallel_for(
        "bf::cnf_sample_out", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          xout(c0 + i, j) = static_cast<double>(x(i, j));
          if (j == 0) log_q(c0 + i) = static_cast<double>(-lq0(i) - lz0 - dint(i));
        });
  }
}

template <class T>
void CnfFlow<T>::log_density(const Vector<T>& params, const ConstMatrix<double>& y, const Vector<double>& log_q) {
  // Backward from t = 1 to 0: x_0 and −∫ ∇·V dt; log q(y) = log p0(x_0) − ∫ ∇·V dt.
  const int D = dim_, total = static_cast<int>(y.extent(0));
  const T lz0 = static_cast<T>(base_.log_z());
  for (int c0 = 0; c0 < total; c0 += max_batch_) {
    const int n = std::min(max_batch_, total - c0);
    const Rows<T> x = head_rows(x_, n);
    const Span<T> dint = first(divint_, n), lq0 = first(lq0_, n);
    Kokkos::parallel_for(
        "bf::cnf_density_in", Policy(0, static_cast<std::int64_t>(n) * D), KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / D;
          const int j = static_cast<int>(e - i * D);
          x(i, j) = static_cast<T>(y(c0 + i, j));
          if (j == 0) dint(i) = T(0);
        });
    rk4(params, n, x, dint, 1.0, -1.0 / spec_.steps, true, false, false);
    base_.energy(ConstMatrix<T>(x), Vector<T>(Kokkos::subview(lq0_, std::make_pair(0, n))));
    Kokkos::parallel_for(
        "bf::cnf_density_out", Policy(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          log_q(c0 + i) = static_cast<double>(-lq0(i) - lz0 + dint(i));
        });
  }
}

template <class T>
void CnfFlow<T>::integrate(const Vector<T>& params, std::vector<double>& xv, std::vector<double>& div_integral,
                           bool backward) {
  const int D = dim_, n = static_cast<int>(xv.size()) / D;
  if (n > max_batch_) throw std::logic_error("cnf integrate: too many points");
  auto hx = Kokkos::create_mirror_view(x_);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) hx(i, j) = static_cast<T>(xv[i * D + j]);
  Kokkos::deep_copy(x_, hx);
  const Span<T> dint = first(divint_, n);
  fill_value<T>(dint, n, T(0));
  rk4(params, n, head_rows(x_, n), dint, backward ? 1.0 : 0.0, (backward ? -1.0 : 1.0) / spec_.steps, true, false,
      false);
  Kokkos::deep_copy(hx, x_);
  auto hd = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), divint_);
  div_integral.assign(n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < D; ++j) xv[i * D + j] = static_cast<double>(hx(i, j));
    div_integral[i] = static_cast<double>(hd(i));
  }
}

template <class T>
DeformationTerms CnfFlow<T>::terms(const Vector<T>& params, const std::vector<double>& xv, double tv) {
  if (!spec_.deformation) throw std::logic_error("cnf terms: a deformation-loss model is needed");
  const int D = dim_, n = static_cast<int>(xv.size()) / D;
  auto hx = Kokkos::create_mirror_view(x_);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D; ++j) hx(i, j) = static_cast<T>(xv[i * D + j]);
  Kokkos::deep_copy(x_, hx);
  const Span<T> t = first(t_, n);
  fill_value<T>(t, n, static_cast<T>(tv));
  const Rows<const T> x = rows_of<const T>(x_, 0, n);
  const Vector<T> e0 = Kokkos::subview(e0_, std::make_pair(0, n)), e1 = Kokkos::subview(e1_, std::make_pair(0, n));
  const Matrix<T> g0 = Kokkos::subview(grad0_, std::make_pair(0, n), Kokkos::ALL());
  const Matrix<T> g1 = Kokkos::subview(grad1_, std::make_pair(0, n), Kokkos::ALL());
  base_.energy_grad(ConstMatrix<T>(x), e0, g0);
  target_.energy_grad(ConstMatrix<T>(x), e1, g1);
  fill_rows<T>(n, D, x, t, false, rows_of<T>(vrows_, 0, (1 + D) * n));
  auto vo = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                v_->forward(params, wv_, n, D, rows_of<const T>(vrows_, 0, (1 + D) * n)));
  fill_time_rows<T>(n, t, rows_of<T>(crows_, 0, n));
  auto co = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                c_->forward(params, wc_, n, 0, rows_of<const T>(crows_, 0, n)));
  typename Rows<T>::HostMirror go;
  if (g_) {
    // ∇g and ∂_t g separately, through D + 1 axis tangents (the loss needs only
    // their combination along (V, 1)): a workspace of its own, this is a diagnostic.
    auto wg = g_->workspace((2 + D) * n);
    Matrix<T> grows("cnf_terms_grows", (2 + D) * n, D + 1);
    fill_rows<T>(n, D, x, t, true, rows_of<T>(grows, 0, (2 + D) * n));
    go = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                             g_->forward(params, wg, n, D + 1, rows_of<const T>(grows, 0, (2 + D) * n)));
  }
  auto he0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), e0);
  auto he1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), e1);
  auto hg0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g0);
  auto hg1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g1);
  DeformationTerms r;
  const double tq = tv * (1 - tv);
  for (int i = 0; i < n; ++i) {
    const std::int64_t rv = row_of(i, 0, D), rg = row_of(i, 0, D + 1);
    double f = (1 - tv) * he0(i) + tv * he1(i), dtf = he1(i) - he0(i), gv = 0, div = 0;
    if (g_) {
      f += tq * go(rg, 0);
      dtf += (1 - 2 * tv) * go(rg, 0) + tq * go(rg + 1 + D, 0);
    }
    for (int j = 0; j < D; ++j) {
      double gf = (1 - tv) * hg0(i, j) + tv * hg1(i, j);
      if (g_) gf += tq * go(rg + 1 + j, 0);
      r.grad_f.push_back(gf);
      r.v.push_back(vo(rv, j));
      gv += gf * vo(rv, j);
      div += vo(rv + 1 + j, j);
    }
    r.f.push_back(f);
    r.dt_f.push_back(dtf);
    r.div_v.push_back(div);
    r.c.push_back(co(i, 0));
    r.e.push_back(dtf + gv - div + co(i, 0));
  }
  return r;
}

template class CnfFlow<float>;
template class CnfFlow<double>;

}  // namespace bf
