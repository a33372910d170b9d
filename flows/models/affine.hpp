// The affine flow: x = μ + L z with z ~ N(0, I) and L lower-triangular with a
// positive diagonal (stored as its logarithm), so
//   log q(x) = log N(z; 0, I) − Σ_i log L_ii.
// Trained by reverse KL, ℓ(z) = log q(x) + f(x), whose reparameterised
// gradients are
//   ∂ℓ/∂μ = ∇f(x),   ∂ℓ/∂L_ij = ∇f(x)_i z_j (i > j),   ∂ℓ/∂log L_ii = ∇f(x)_i z_i L_ii − 1.
// On a Gaussian target N(m, Σ) the optimum is exact (μ = m, L Lᵀ = Σ), which
// makes it the runner's end-to-end test model (model.kind = affine).
#pragma once

#include "flows/model.hpp"

namespace bf {

template <class T>
class AffineFlow final : public Model<T> {
 public:
  AffineFlow(const Distribution& target, int max_batch);

  std::string kind() const override { return "affine"; }
  std::string description() const override;
  const ParameterLayout& layout() const override { return layout_; }
  int dim() const override { return dim_; }
  int max_batch() const override { return max_batch_; }

  double loss_and_grad(const Vector<T>& params, const Vector<T>& grad, const BatchRef& batch,
                       const Collective& coll) override;
  void sample(const Vector<T>& params, std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first,
              const Matrix<double>& x, const Vector<double>& log_q) override;
  bool has_log_density() const override { return true; }
  void log_density(const Vector<T>& params, const ConstMatrix<double>& x, const Vector<double>& log_q) override;

 private:
  const Distribution& target_;
  int dim_, max_batch_;
  ParameterLayout layout_;
  ParamSlice mu_, L_;
  Matrix<T> z_, x_, g_;
  Vector<T> e_;
};

}  // namespace bf
