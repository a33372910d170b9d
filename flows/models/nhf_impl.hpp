// NhfFlow's inside (internal: included by nhf.cpp only).
// A struct at namespace scope with public members, because CUDA allows device
// lambdas only in functions it can name from outside; the public class holds
// it privately.
#pragma once

#include "flows/nn/derivatives.hpp"
#include "flows/nn/quadratic_form.hpp"
#include "flows/integrators/leapfrog.hpp"
#include "flows/models/nhf.hpp"
#include "flows/training_set.hpp"

namespace bf::detail {

template <class T>
struct NhfImpl {
  NhfImpl(const Distribution& target, std::shared_ptr<const Distribution> prior, const NhfSpec& spec, int max_batch,
          std::uint32_t seed);

  const Distribution& target;
  std::shared_ptr<const Distribution> prior;
  NhfSpec spec;
  int dim, max_batch;
  ParameterLayout layout;
  std::unique_ptr<Mlp<T>> v, k, mu, sig;
  ParamSlice mass;  // fixed kinetic: L (D x D, lower triangle, log diagonal)
  typename Mlp<T>::Workspace wv, wk, wmu, wsig;
  Leapfrog<T> leapfrog;
  TrainingSet data;  // elbo: the exact samples and each batch's rows of them
  Matrix<double> zd;
  Matrix<T> vrows, krows, vadj, kadj, vin, kin;  // network rows and adjoints (HVPs: 2 B rows)
  Matrix<T> q, p, a, b, tmp, mu_v, sig_v, eps, enc_in, mu_bar;
  Vector<T> e, e2;
  Vector<double> term;  // marginal estimate: one term log M/r per (sample, momentum) pair
  // The symmetry constraint: generators (K x D rows of D), the bracket's momenta, ∇V, ∇K,
  // the HVP directions and a scratch H u; c per sample and generator; λ on the device.
  int ngen = 0;
  Matrix<T> gen, spm, sgv, sgk, suq, sup, shu, sc, spq;
  GroupAction orbit;  // SymmetryPoints::orbit: the group's action on the start positions
  Vector<T> lam;
  typename Vector<T>::HostMirror lam_host;
  std::vector<double> lambda, cma, pending;  // GECO state; pending: the last batch's Ĉ
  bool started = false, has_pending = false;
  std::int64_t pending_step = 0;  // the training step of `pending`

  /// c(i, k) = {g_k, H}(q_i, p_i) into sc for n rows of q with the momenta in spm; with
  /// grad non-empty also adds Σ_i Σ_k 2 λ_k c_ik ∂c_ik/∂θ (λ from lam). csum[k] += Σ_i c_ik².
  void bracket(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<const T>& q, double* csum);

  /// Encoder at rows x: μ and σ into mu_out, sigma_out (the input copied: the reverse needs it).
  void encode(const Vector<T>& params, int n, const Rows<const T>& x, const Rows<T>& mu_out, const Rows<T>& sigma_out);
  /// Encoder reverse: adjoints of μ and σ (σ̄ overwritten) → parameter gradients.
  void encode_reverse(const Vector<T>& params, const Vector<T>& grad, int n, const Rows<T>& mu_adj,
                      const Rows<T>& sigma_adj);
  /// q (n rows) := the prior's samples of the batch, cast to T.
  void draw_prior(std::uint32_t seed, Purpose purpose, std::int64_t step, std::uint64_t first, int n);
};

/// H(q, p) = V(q) + K(p) as the Leapfrog's Hamiltonian: V an MLP, K an MLP or
/// ½ pᵀ M p with M = L Lᵀ. Parameter adjoints of the HVPs go to grad.
template <class T>
struct NhfHamiltonian {
  NhfImpl<T>& m;
  const Vector<T>& params;
  Vector<T> grad;

  void grad_v(int n, const Rows<const T>& x, const Rows<T>& g) {
    gradient_by_reverse<T>(*m.v, m.wv, params, n, x, m.vadj, g);
  }
  void hvp_v(int n, T c, const Rows<const T>& x, const Rows<const T>& u, const Rows<T>& hu) {
    hessian_vector_product<T>(*m.v, m.wv, params, grad, n, m.dim, c, x, u, m.vrows, m.vadj, m.vin, hu);
  }

  void grad_k(int n, const Rows<const T>& x, const Rows<T>& g) {
    if (m.k) {
      gradient_by_reverse<T>(*m.k, m.wk, params, n, x, m.kadj, g);
      return;
    }
    quadratic_form_gradient<T>(params, m.mass, n, x, g);
  }

  void hvp_k(int n, T c, const Rows<const T>& x, const Rows<const T>& u, const Rows<T>& hu) {
    if (m.k) {
      hessian_vector_product<T>(*m.k, m.wk, params, grad, n, m.dim, c, x, u, m.krows, m.kadj, m.kin, hu);
      return;
    }
    quadratic_form_hvp<T>(params, grad, m.mass, n, c, x, u, m.tmp, hu);
  }
};

}  // namespace bf::detail
