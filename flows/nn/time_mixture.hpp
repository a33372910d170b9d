// Time mixtures of MLPs (Máté & Fleuret §5): every trained object of the
// deformation CNF is
//   F(x, t) = Σ_k ρ_k(t) MLP_k(x, t),   ρ_k(t) = softmax_k(−(t − c_k)² / 2w²),
// Gaussian RBF kernels evenly spaced on [0, 1] (c_k = k/(K−1)), width w = 1/K,
// normalised to sum 1, optionally with t as an extra network input.
//
// Rows carry the time as their last column: value rows [x, t], tangent rows
// directions [ẋ, ṫ] in (x, t) space. A tangent's output is then
//   Ḟ = Σ_k ρ_k(t) ṀLP_k + ρ'_k(t) ṫ MLP_k,   ρ'_k = ρ_k (u_k − Σ_j ρ_j u_j),  u_k = −(t − c_k)/w²,
// so ∂_t F is the tangent [0, 1] and the input gradient the tangents [e_i, 0].
// Input adjoints are returned for the x columns only (training never needs
// adjoints of the integration times).
#pragma once

#include "flows/nn/mlp.hpp"

namespace bf {

struct TimeMixtureSpec {
  int kernels = 4;
  int space_dim = 2;           // D (0: a network of t alone, which then needs time_input)
  int outputs = 2;
  std::vector<int> hidden{64, 64};
  Activation activation = Activation::swish;
  bool time_input = true;      // t as the last network input
  double output_gain = 1.0;
};

template <class T>
class TimeMixture {
 public:
  TimeMixture(const std::string& name, const TimeMixtureSpec& spec, ParameterLayout& layout);

  int space_dim() const { return spec_.space_dim; }
  int outputs() const { return spec_.outputs; }
  int kernels() const { return spec_.kernels; }
  double width() const { return width_; }
  const TimeMixtureSpec& spec() const { return spec_; }
  const std::vector<Mlp<T>>& nets() const { return nets_; }

  struct Workspace {
    int max_rows = 0;
    std::vector<typename Mlp<T>::Workspace> nets;
    Matrix<T> space_in;  // [x] rows when t is not a network input
    Matrix<T> out;       // mixture output rows
    Matrix<T> adj_k;     // output adjoints of one MLP
    Matrix<T> adj_in_k;  // input adjoints of one MLP
    Matrix<T> rho, drho; // [B x K]
    Rows<const T> input;
    int batch = 0, k = 0;
  };
  Workspace workspace(int max_rows) const;

  /// in: (1 + k) * batch rows of D + 1 columns ([x, t] / [ẋ, ṫ]), sample-major
  /// (row_of); must stay alive until reverse.
  /// keep = false: inference only (no reverse follows; see Mlp::forward).
  Rows<T> forward(const Vector<T>& params, Workspace& ws, int batch, int k, const Rows<const T>& in,
                  bool keep = true) const;
  /// Accumulates parameter gradients; adj_x (optional, D or more columns) receives
  /// the adjoints of the x columns of every input row.
  void reverse(const Vector<T>& params, const Vector<T>& grad, Workspace& ws, const Rows<const T>& adj_out,
               const Rows<T>& adj_x) const;

  double forward_flops(double rows) const;
  double forward_reverse_flops(double rows, bool input_adjoints) const;

 private:
  TimeMixtureSpec spec_;
  double width_;
  std::vector<Mlp<T>> nets_;
};

}  // namespace bf
