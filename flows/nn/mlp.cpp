#include "flows/nn/mlp.hpp"

#include <algorithm>
#include <stdexcept>
#include <type_traits>

namespace bf {

namespace {

// The element-wise kernels come in two shapes (see below); on host backends
// the passes also run in blocks of rows, in parallel over the host threads.
constexpr bool kHostKernels = std::is_same<ExecSpace::memory_space, Kokkos::HostSpace>::value;

// Rows per block of the passes on host backends: every layer runs on one block
// of samples before the next block starts, so a block's pre-activations,
// activations and adjoints go from one GEMM to the next kernel through the
// cache instead of memory (the element-wise kernels and the GEMMs' β passes
// are memory-bound at the engine's sizes). Measured with `bench train` on the
// paper's φ⁴ network (13056 rows per pass, one Zen 3 core): 14 s/step without
// blocks, 10.7 / 10.0 / 11.2 / 13 s with 512 / 1024 / 2048 / 4096 rows. GPU
// backends take all rows at once.
constexpr int kBlockRows = kHostKernels ? 1024 : (1 << 30);

// Threads that share a pass's blocks: the host threads where gemm can run a
// product inside a thread (the BLAS or Eigen backends), else 1.
int pass_threads() {
  if (!kHostKernels || gemm_backend() == "kokkos") return 1;
  return std::max(1, static_cast<int>(Kokkos::DefaultHostExecutionSpace().concurrency()));
}

// How a pass of `batch` samples with k tangents is cut: `size` samples per
// block, `count` blocks, thread t taking blocks [first(t), first(t + 1)).
// Enough blocks for every thread; a pure function of the shape and the thread
// count, so a run is bitwise reproducible at a fixed thread count.
struct Blocks {
  int size = 1, count = 0, threads = 1;
  Blocks(int batch, int k, int nthreads) : threads(nthreads) {
    size = std::max(1, kBlockRows / (1 + k));
    if (threads > 1) size = std::max(1, std::min(size, (batch + threads - 1) / threads));
    count = (batch + size - 1) / size;
    if (count < threads) threads = std::max(1, count);
  }
  int first(int t) const { return static_cast<int>(static_cast<std::int64_t>(count) * t / threads); }
};

// Runs f(block, thread) over every block: in order on one thread, or one
// contiguous range of blocks per host thread, each thread taking its blocks
// through every layer alone.
// Inside (ThreadBlock) gemm calls the BLAS whole and the element-wise
// kernels run inline (host_loop): no Kokkos dispatch happens in the region.
template <class F>
void for_blocks(const Blocks& b, F&& f) {
  if (b.threads <= 1) {
    for (int blk = 0; blk < b.count; ++blk) f(blk, 0);
    return;
  }
  Kokkos::parallel_for(
      "bf::mlp_blocks", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, b.threads), [&](const int t) {
        const ThreadBlock inside;
        for (int blk = b.first(t); blk < b.first(t + 1); ++blk) f(blk, t);
      });
  Kokkos::DefaultHostExecutionSpace().fence();
}

// A kernel over [0, n): a Kokkos dispatch, or (host backends, inside a
// ThreadBlock: the work is already this thread's share) a plain loop.
template <class F>
void host_loop(const char* name, std::int64_t n, const F& f) {
  if (in_thread_block()) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
  } else {
    Kokkos::parallel_for(name, Policy(0, n), f);
  }
}

}  // namespace

template <class T>
Mlp<T>::Mlp(const std::string& name, const MlpSpec& spec, ParameterLayout& layout)
    : widths_(spec.widths), act_(spec.activation) {
  if (widths_.size() < 2) throw std::invalid_argument("mlp '" + name + "': needs at least inputs and outputs");
  for (int w : widths_)
    if (w < 1) throw std::invalid_argument("mlp '" + name + "': every width must be at least 1");
  for (int l = 0; l < layers(); ++l) {
    ParamInit wi;
    wi.kind = ParamInit::normal;
    wi.fan_in = widths_[l];
    wi.gain = (l == layers() - 1) ? spec.output_gain : 1.0;
    if (wi.gain == 0.0) wi.kind = ParamInit::zero;
    const std::string ln = std::to_string(l);
    layout.add(name + ".W" + ln, {widths_[l + 1], widths_[l]}, wi);
    w_.push_back(layout.slice(name + ".W" + ln));
    layout.add(name + ".b" + ln, {widths_[l + 1]}, ParamInit{});
    b_.push_back(layout.slice(name + ".b" + ln));
  }
}

template <class T>
typename Mlp<T>::Workspace Mlp<T>::workspace(int max_rows) const {
  Workspace ws;
  ws.max_rows = max_rows;
  int wmax = 0;
  for (int w : widths_) wmax = std::max(wmax, w);
  ws.act.resize(layers());
  ws.d1.resize(layers());
  ws.d2.resize(layers());
  for (int l = 0; l < layers(); ++l) {
    ws.pre.emplace_back("mlp_pre", max_rows, widths_[l + 1]);
    if (l > 0) ws.act[l] = Matrix<T>("mlp_act", max_rows, widths_[l]);
    if (l + 1 < layers()) {
      ws.d1[l] = Matrix<T>("mlp_d1", max_rows, widths_[l + 1]);
      ws.d2[l] = Matrix<T>("mlp_d2", max_rows, widths_[l + 1]);
    }
  }
  // Adjoints live one block at a time: a block-sized buffer per thread on host
  // backends, every row on GPUs.
  ws.threads = pass_threads();
  ws.block_rows = kHostKernels ? std::min(max_rows, kBlockRows) : max_rows;
  ws.adj[0] = Matrix<T>("mlp_adj0", static_cast<std::size_t>(ws.block_rows) * ws.threads, wmax);
  ws.adj[1] = Matrix<T>("mlp_adj1", static_cast<std::size_t>(ws.block_rows) * ws.threads, wmax);
  // Parameter gradients of each thread's blocks, summed in thread order after the pass.
  ws.grad_offset = w_.front().offset;
  ws.grad_span = b_.back().offset + b_.back().size - ws.grad_offset;
  if (ws.threads > 1) ws.grad_acc = Vector<T>("mlp_grad_acc", ws.grad_span * ws.threads);
  return ws;
}

namespace {

// The element-wise kernels come in two shapes. On host backends one
// iteration is a sample and its columns are plain contiguous loops over raw
// pointers, which the compiler vectorizes (the activations use vexp; measured
// 2.4x faster than a loop over (sample, column) pairs at width 64, K = 0).
// On GPU backends one thread is a (sample, column) pair, so a warp reads
// consecutive columns.

// Value rows: h = σ(a + b); tangent rows: ḣ_k = σ'(a + b) ⊙ ȧ_k. For a reverse
// pass (`keep`) σ' is cached, and σ'' too where there are tangents (the
// reverse of a value-only pass needs σ' alone); an inference pass (`keep`
// false, nothing will run backwards) stores neither: the kernel is memory-bound,
// so every stream it does not write is time saved. The bias-added value rows
// are not written back (nothing reads them).
template <Activation A, class T>
void hidden_forward(int batch, int k, bool keep, const Rows<T>& pre, const Span<const T>& bias, const Rows<T>& out,
                    const Rows<T>& d1s, const Rows<T>& d2s) {
  const int n = static_cast<int>(pre.extent(1));
  const bool keep_d2 = keep && k > 0;
  if constexpr (kHostKernels) {
    host_loop(
        "bf::mlp_hidden_forward", batch, KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t r0 = row_of(i, 0, k);
          const T* a = &pre(r0, 0);
          T* h = &out(r0, 0);
          const T* b = bias.data();
          if (keep) {
            T* D1 = &d1s(i, 0);
            T* D2 = keep_d2 ? &d2s(i, 0) : nullptr;
            if (keep_d2) {
              for (int j = 0; j < n; ++j) h[j] = activate_fixed<A>(a[j] + b[j], D1[j], D2[j]);
            } else {
              for (int j = 0; j < n; ++j) {
                T d2;
                h[j] = activate_fixed<A>(a[j] + b[j], D1[j], d2);
              }
            }
            for (int t = 1; t <= k; ++t) {
              const T* at = &pre(r0 + t, 0);
              T* ht = &out(r0 + t, 0);
              for (int j = 0; j < n; ++j) ht[j] = D1[j] * at[j];
            }
          } else {
            // σ' only for this sample's tangents, in a block on the stack.
            constexpr int kBlock = 64;
            T D1[kBlock];
            for (int j0 = 0; j0 < n; j0 += kBlock) {
              const int m = n - j0 < kBlock ? n - j0 : kBlock;
              for (int j = 0; j < m; ++j) {
                T d2;
                h[j0 + j] = activate_fixed<A>(a[j0 + j] + b[j0 + j], D1[j], d2);
              }
              for (int t = 1; t <= k; ++t) {
                const T* at = &pre(r0 + t, j0);
                T* ht = &out(r0 + t, j0);
                for (int j = 0; j < m; ++j) ht[j] = D1[j] * at[j];
              }
            }
          }
        });
  } else {
    Kokkos::parallel_for(
        "bf::mlp_hidden_forward", Policy(0, static_cast<std::int64_t>(batch) * n),
        KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / n;
          const int j = static_cast<int>(e - i * n);
          const std::int64_t r0 = row_of(i, 0, k);
          T d1, d2;
          out(r0, j) = activate_fixed<A>(pre(r0, j) + bias(j), d1, d2);
          if (keep) d1s(i, j) = d1;
          if (keep_d2) d2s(i, j) = d2;
          for (int t = 1; t <= k; ++t) out(r0 + t, j) = d1 * pre(r0 + t, j);
        });
  }
}

// Output layer (linear): bias on the value rows only.
template <class T>
void output_forward(int batch, int k, const Rows<T>& pre, const Span<const T>& bias) {
  const int n = static_cast<int>(pre.extent(1));
  host_loop(
      "bf::mlp_output_forward", static_cast<std::int64_t>(batch) * n, KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t i = e / n;
        const int j = static_cast<int>(e - i * n);
        pre(row_of(i, 0, k), j) += bias(j);
      });
}

// In place on the output adjoints g of a hidden layer, from the cached σ', σ'':
//   â = σ'(a) ĥ' + Σ_k σ''(a) ȧ_k ḣ̂'_k (value rows),  ȧ̂_k = σ'(a) ḣ̂'_k (tangent rows).
template <class T>
void hidden_reverse(int batch, int k, const Rows<const T>& pre, const Rows<T>& d1s, const Rows<T>& d2s,
                    const Rows<T>& g) {
  const int n = static_cast<int>(pre.extent(1));
  if constexpr (kHostKernels) {
    host_loop(
        "bf::mlp_hidden_reverse", batch, KOKKOS_LAMBDA(const std::int64_t i) {
          const std::int64_t r0 = row_of(i, 0, k);
          T* g0 = &g(r0, 0);
          const T* D1 = &d1s(i, 0);
          const T* D2 = &d2s(i, 0);
          for (int j = 0; j < n; ++j) g0[j] *= D1[j];
          for (int t = 1; t <= k; ++t) {
            T* gt = &g(r0 + t, 0);
            const T* at = &pre(r0 + t, 0);
            for (int j = 0; j < n; ++j) {
              g0[j] += D2[j] * at[j] * gt[j];
              gt[j] *= D1[j];
            }
          }
        });
  } else {
    Kokkos::parallel_for(
        "bf::mlp_hidden_reverse", Policy(0, static_cast<std::int64_t>(batch) * n),
        KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t i = e / n;
          const int j = static_cast<int>(e - i * n);
          const std::int64_t r0 = row_of(i, 0, k);
          const T d1 = d1s(i, j), d2 = d2s(i, j);
          T acc = d1 * g(r0, j);
          for (int t = 1; t <= k; ++t) {
            const T gt = g(r0 + t, j);
            acc += d2 * pre(r0 + t, j) * gt;
            g(r0 + t, j) = d1 * gt;
          }
          g(r0, j) = acc;
        });
  }
}

// b̂_j += Σ_i â(value row of i, j). On host backends row by row (contiguous,
// vectorized; a sum down each column strides through memory one element per
// cache line: measured 40% of a reverse pass at width 64 on one Zen 3 core), on
// GPU backends one thread per column.
template <class T>
void bias_gradient(int batch, int k, const Rows<const T>& g, const Span<T>& db) {
  const int n = static_cast<int>(g.extent(1));
  if constexpr (kHostKernels) {
    T* d = db.data();
    for (std::int64_t i = 0; i < batch; ++i) {
      const T* gi = &g(row_of(i, 0, k), 0);
      for (int j = 0; j < n; ++j) d[j] += gi[j];
    }
    return;
  }
  host_loop(
      "bf::mlp_bias_gradient", n, KOKKOS_LAMBDA(const std::int64_t j) {
        T s = T(0);
        for (std::int64_t i = 0; i < batch; ++i) s += g(row_of(i, 0, k), j);
        db(j) += s;
      });
}

}  // namespace

template <class T>
Rows<T> Mlp<T>::forward(const Vector<T>& params, Workspace& ws, int batch, int k, const Rows<const T>& in,
                        bool keep) const {
  const int rows = (1 + k) * batch;
  if (rows > ws.max_rows) throw std::logic_error("mlp forward: workspace too small");
  if (static_cast<int>(in.extent(1)) != inputs() || static_cast<int>(in.extent(0)) < rows)
    throw std::logic_error("mlp forward: input shape mismatch");
  ws.input = in;
  ws.batch = batch;
  ws.k = k;
  ws.kept = keep;
  const Blocks blocks(batch, k, ws.threads);
  for_blocks(blocks, [&](int blk, int) {
    const int s0 = blk * blocks.size, nb = std::min(blocks.size, batch - s0);
    const std::int64_t r0 = static_cast<std::int64_t>(s0) * (1 + k), nr = static_cast<std::int64_t>(nb) * (1 + k);
    Rows<const T> x = rows_of<const T>(in, r0, nr);
    for (int l = 0; l < layers(); ++l) {
      const Rows<T> pre = rows_of<T>(ws.pre[l], r0, nr);
      gemm<T>("N", "T", T(1), x, slice_matrix(params, w_[l]), T(0), pre);
      const Span<const T> bias = slice_vector(params, b_[l]);
      if (l + 1 < layers()) {
        const Rows<T> out = rows_of<T>(ws.act[l + 1], r0, nr);
        const Rows<T> d1 = rows_of<T>(ws.d1[l], s0, nb), d2 = rows_of<T>(ws.d2[l], s0, nb);
        with_activation(act_, [&](auto a) { hidden_forward<decltype(a)::value, T>(nb, k, keep, pre, bias, out, d1, d2); });
        x = out;
      } else {
        output_forward<T>(nb, k, pre, bias);
      }
    }
  });
  return rows_of<T>(ws.pre[layers() - 1], 0, rows);
}

template <class T>
void Mlp<T>::reverse(const Vector<T>& params, const Vector<T>& grad, Workspace& ws, const Rows<const T>& adj_out,
                     const Rows<T>& adj_in) const {
  const int batch = ws.batch, k = ws.k;
  if (!ws.kept) throw std::logic_error("mlp reverse: the last forward was an inference pass (keep = false)");
  const bool param_grad = grad.data() != nullptr;
  const Blocks blocks(batch, k, ws.threads);
  if (static_cast<std::int64_t>(std::min(blocks.size, batch)) * (1 + k) > ws.block_rows)
    throw std::logic_error("mlp reverse: a block does not fit the adjoint buffers");
  // One thread accumulates into grad directly; several into their own slices of grad_acc.
  const bool split = param_grad && blocks.threads > 1;
  if (split) Kokkos::deep_copy(ws.grad_acc, T(0));
  T* const acc = split ? ws.grad_acc.data() : nullptr;
  const std::size_t off0 = ws.grad_offset, span = ws.grad_span;
  auto dw = [&](int l, int t) {
    const ParamSlice& s = w_[l];
    return split ? Rows<T>(acc + t * span + (s.offset - off0), s.shape[0], s.shape[1]) : slice_matrix(grad, s);
  };
  auto db = [&](int l, int t) {
    const ParamSlice& s = b_[l];
    return split ? Span<T>(acc + t * span + (s.offset - off0), s.size) : slice_vector(grad, s);
  };
  for_blocks(blocks, [&](int blk, int t) {
    const int s0 = blk * blocks.size, nb = std::min(blocks.size, batch - s0);
    const std::int64_t r0 = static_cast<std::int64_t>(s0) * (1 + k), nr = static_cast<std::int64_t>(nb) * (1 + k);
    const std::int64_t a0 = static_cast<std::int64_t>(t) * ws.block_rows;  // this thread's adjoint rows
    Rows<const T> g = rows_of<const T>(adj_out, r0, nr);
    int cur = 0;
    for (int l = layers() - 1; l >= 0; --l) {
      const Rows<const T> x = l == 0 ? rows_of<const T>(ws.input, r0, nr) : rows_of<const T>(ws.act[l], r0, nr);
      // Ŵ += Âᵀ R over value and tangent rows; b̂ += Σ_i â_i over value rows.
      if (param_grad) {
        gemm<T>("T", "N", T(1), g, x, T(1), dw(l, t));
        bias_gradient<T>(nb, k, g, db(l, t));
      }
      if (l == 0) {
        // R̂ = Â W for the network's inputs, if asked for.
        if (adj_in.data() != nullptr)
          gemm<T>("N", "N", T(1), g, slice_matrix(params, w_[l]), T(0), rows_of<T>(adj_in, r0, nr));
        break;
      }
      // R̂ = Â W (this thread's block buffer), then back through the activation of the layer below.
      const Rows<T> gp(ws.adj[cur].data() + a0 * static_cast<std::int64_t>(ws.adj[cur].extent(1)), nr, widths_[l]);
      gemm<T>("N", "N", T(1), g, slice_matrix(params, w_[l]), T(0), gp);
      hidden_reverse<T>(nb, k, rows_of<const T>(ws.pre[l - 1], r0, nr), rows_of<T>(ws.d1[l - 1], s0, nb),
                        rows_of<T>(ws.d2[l - 1], s0, nb), gp);
      g = gp;
      cur ^= 1;
    }
  });
  if (split) {
    // Σ over threads in thread order: the same sum at a given thread count.
    const Span<T> out(grad.data() + off0, span);
    const Vector<T> a = ws.grad_acc;
    const int nt = blocks.threads;
    const std::int64_t sp = static_cast<std::int64_t>(span);
    Kokkos::parallel_for(
        "bf::mlp_grad_sum", Policy(0, sp), KOKKOS_LAMBDA(const std::int64_t i) {
          T s = T(0);
          for (int t = 0; t < nt; ++t) s += a(t * sp + i);
          out(i) += s;
        });
  }
}

template <class T>
double Mlp<T>::forward_flops(double rows) const {
  double f = 0;
  for (int l = 0; l < layers(); ++l) f += 2.0 * rows * widths_[l] * widths_[l + 1];
  return f;
}

template <class T>
double Mlp<T>::forward_reverse_flops(double rows, bool input_adjoints) const {
  double f = 3.0 * forward_flops(rows);
  if (!input_adjoints) f -= 2.0 * rows * widths_[0] * widths_[1];
  return f;
}

template class Mlp<float>;
template class Mlp<double>;

}  // namespace bf
