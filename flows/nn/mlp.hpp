// A multilayer perceptron that propagates a value and K tangent directions at
// once, and its reverse pass: derivatives written by hand, forward tangents for
// input derivatives and one reverse pass for everything else, no autograd.
// One layer, h its input, a its pre-activation, dots tangents,
// hats adjoints:
//   forward   a = W h + b,   ȧ_k = W ḣ_k,   h' = σ(a),   ḣ'_k = σ'(a) ⊙ ȧ_k
//   reverse   â = σ'(a) ⊙ ĥ' + Σ_k σ''(a) ⊙ ȧ_k ⊙ ḣ̂'_k,     ȧ̂_k = σ'(a) ⊙ ḣ̂'_k
//             Ŵ += â hᵀ + Σ_k ȧ̂_k ḣ_kᵀ,   b̂ += â,   ĥ = Wᵀ â,   ḣ̂_k = Wᵀ ȧ̂_k
// Rows are stacked sample-major: sample i owns the 1 + K consecutive rows
// [value; tangent 1; …; tangent K] (row_of(i, t, K) = i (1 + K) + t), so with
// R the input rows and Â the pre-activation adjoints the linear parts are one
// GEMM each: A = R Wᵀ, Ŵ += Âᵀ R, R̂ = Â W (flows/nn/gemm.hpp: the host BLAS or
// Eigen, cuBLAS on NVIDIA). The element-wise work is one fused kernel per layer;
// keeping a sample's value and tangents adjacent lets that kernel stream
// through memory. (Blocks of all values, then all tangents, were measured
// 1.5x slower per pass in `bench engine` at width 128, K = 17, on one core:
// the kernel then walks 17 memory streams at once.)
// Hidden layers use the activation, the output layer is linear.
//
// Parameters live in a model's flat buffer (ParameterLayout); workspaces are
// sized once for the largest row count, so nothing allocates in a step.
#pragma once

#include <string>
#include <vector>

#include "flows/nn/activation.hpp"
#include "flows/nn/gemm.hpp"
#include "flows/nn/parameters.hpp"

namespace bf {

struct MlpSpec {
  std::vector<int> widths;                 // {inputs, hidden..., outputs}
  Activation activation = Activation::swish;
  double output_gain = 1.0;                // init scale of the last layer (0: starts at zero output)
};

template <class T>
class Mlp {
 public:
  /// Registers the slices "<name>.W<l>" [n_{l+1} x n_l] and "<name>.b<l>".
  Mlp(const std::string& name, const MlpSpec& spec, ParameterLayout& layout);

  int inputs() const { return widths_.front(); }
  int outputs() const { return widths_.back(); }
  int layers() const { return static_cast<int>(widths_.size()) - 1; }
  const std::vector<int>& widths() const { return widths_; }
  Activation activation() const { return act_; }

  /// The cached activations of one forward pass, for its reverse pass.
  struct Workspace {
    int max_rows = 0;
    std::vector<Matrix<T>> pre;  // [l]: pre-activations of layer l (hidden value rows without the bias)
    std::vector<Matrix<T>> act;  // [l]: input rows of layer l, l >= 1
    std::vector<Matrix<T>> d1, d2;  // [l]: σ'(a), σ''(a) of hidden layer l's value rows
    Matrix<T> adj[2];            // ping-pong adjoint buffers
    Rows<const T> input;         // the caller's input rows of the last forward
    int batch = 0, k = 0;
    bool kept = false;  // the last forward cached what reverse needs
    int threads = 1;           // host threads sharing a pass's blocks of rows
    int block_rows = 0;        // adjoint rows per thread (adj holds threads x block_rows)
    std::size_t grad_offset = 0, grad_span = 0;  // this net's part of the flat buffer
    Vector<T> grad_acc;        // threads x grad_span: per-thread parameter gradients
  };
  Workspace workspace(int max_rows) const;

  /// Forward pass of `batch` samples with `k` tangent directions. `in` holds
  /// (1 + k) * batch rows, sample-major (row_of); it must stay alive and
  /// unchanged until reverse. Returns the output rows, a view into ws. With
  /// keep = false (inference: no reverse will follow) the activation
  /// derivatives are not cached, which saves memory traffic.
  Rows<T> forward(const Vector<T>& params, Workspace& ws, int batch, int k, const Rows<const T>& in,
                  bool keep = true) const;

  /// Reverse pass of the last forward. adj_out: adjoints of the output rows
  /// (value and tangent rows; not modified). Parameter gradients are
  /// accumulated into grad (same layout as params) unless grad is empty (then
  /// the weight-gradient GEMMs are skipped: input adjoints alone, as for ∇f by
  /// reverse mode). If adj_in is non-empty it receives the adjoints of all
  /// (1 + k) * batch input rows.
  void reverse(const Vector<T>& params, const Vector<T>& grad, Workspace& ws, const Rows<const T>& adj_out,
               const Rows<T>& adj_in) const;

  /// FLOPs of the GEMMs of a forward (and of forward + reverse) over `rows` rows.
  double forward_flops(double rows) const;
  double forward_reverse_flops(double rows, bool input_adjoints) const;

  const ParamSlice& weight(int l) const { return w_[l]; }
  const ParamSlice& bias(int l) const { return b_[l]; }

 private:
  std::vector<int> widths_;
  Activation act_;
  std::vector<ParamSlice> w_, b_;  // copies: the layout may grow after us
};

/// Row of tangent t (0: the value) of sample i when each sample carries k tangents.
KOKKOS_INLINE_FUNCTION std::int64_t row_of(std::int64_t i, int t, int k) { return i * (1 + k) + t; }

/// View of rows [r0, r0 + n) of a LayoutRight matrix.
template <class T, class V>
Rows<T> rows_of(const V& m, std::int64_t r0, std::int64_t n) {
  return Rows<T>(m.data() + r0 * static_cast<std::int64_t>(m.extent(1)), static_cast<std::size_t>(n), m.extent(1));
}

/// View of the first n rows of a LayoutRight matrix of T.
template <class T>
Rows<T> head_rows(const Matrix<T>& m, std::int64_t n) {
  return rows_of<T>(m, 0, n);
}

}  // namespace bf
