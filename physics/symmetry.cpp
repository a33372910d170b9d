#include "physics/symmetry.hpp"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace bf {

namespace {
std::vector<double> rotation_blocks(int dim) {
  std::vector<double> b(static_cast<std::size_t>(dim) * dim, 0.0);
  for (int s = 0; 2 * s + 1 < dim; ++s) {
    b[static_cast<std::size_t>(2 * s) * dim + 2 * s + 1] = -1.0;
    b[static_cast<std::size_t>(2 * s + 1) * dim + 2 * s] = 1.0;
  }
  return b;
}
}  // namespace

Generators make_generators(const std::string& spec, int dim) {
  Generators g;
  g.dim = dim;
  g.name = spec;
  if (spec == "none" || spec.empty()) return Generators{dim, {}, "none"};
  if (spec == "so2") {
    if (dim != 2) throw std::invalid_argument("symmetry so2 needs a 2-dimensional target, not " + std::to_string(dim));
    g.b.push_back(rotation_blocks(2));
  } else if (spec == "o2_lattice") {
    if (dim < 2 || dim % 2 != 0)
      throw std::invalid_argument("symmetry o2_lattice needs a two-component field (an even dimension), not " +
                                  std::to_string(dim));
    g.b.push_back(rotation_blocks(dim));
  } else if (spec.rfind("matrix:", 0) == 0) {
    const std::string path = spec.substr(7);
    std::ifstream in(path);
    if (!in) throw std::invalid_argument("symmetry " + spec + ": cannot read '" + path + "'");
    std::vector<double> v;
    std::string tok;
    while (in >> tok) {
      std::size_t used = 0;
      double x = 0;
      try {
        x = std::stod(tok, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != tok.size() || !std::isfinite(x))
        throw std::invalid_argument("symmetry " + spec + ": '" + tok + "' is not a finite number");
      v.push_back(x);
    }
    const std::size_t d2 = static_cast<std::size_t>(dim) * dim;
    if (v.empty() || v.size() % d2 != 0)
      throw std::invalid_argument("symmetry " + spec + ": " + std::to_string(v.size()) +
                                  " numbers are not a whole number of " + std::to_string(dim) + " x " +
                                  std::to_string(dim) + " matrices");
    for (std::size_t k = 0; k < v.size() / d2; ++k) g.b.emplace_back(v.begin() + k * d2, v.begin() + (k + 1) * d2);
  } else {
    throw std::invalid_argument("unknown symmetry '" + spec + "' (known: none, so2, o2_lattice, matrix:FILE)");
  }
  for (int k = 0; k < g.count(); ++k) {
    double asym = 0, scale = 0;
    for (int i = 0; i < dim; ++i)
      for (int j = 0; j < dim; ++j) {
        asym = std::fmax(asym, std::fabs(g.b[k][i * dim + j] + g.b[k][j * dim + i]));
        scale = std::fmax(scale, std::fabs(g.b[k][i * dim + j]));
      }
    if (scale == 0) throw std::invalid_argument("symmetry " + spec + ": generator " + std::to_string(k) + " is zero");
    if (asym > 1e-12 * scale)
      throw std::invalid_argument("symmetry " + spec + ": generator " + std::to_string(k) +
                                  " is not antisymmetric (max |B + B^T| = " + fmt_num(asym) +
                                  "): only rotations leave the momentum distribution N(0, I) invariant");
  }
  return g;
}

double invariance_violation(const Distribution& d, const Generators& g, const ConstMatrix<double>& x) {
  const int n = static_cast<int>(x.extent(0)), D = d.dim();
  Vector<double> e("inv_e", n);
  Matrix<double> grad("inv_grad", n, D);
  d.energy_grad(x, e, grad);
  const auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  const auto hg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), grad);
  double worst = 0;
  for (const auto& B : g.b)
    for (int i = 0; i < n; ++i) {
      double dot = 0, nb = 0, ng = 0;
      for (int r = 0; r < D; ++r) {
        double bq = 0;
        for (int c = 0; c < D; ++c) bq += B[static_cast<std::size_t>(r) * D + c] * hx(i, c);
        dot += bq * hg(i, r);
        nb += bq * bq;
        ng += hg(i, r) * hg(i, r);
      }
      worst = std::fmax(worst, std::fabs(dot) / (std::sqrt(nb * ng) + 1e-300));
    }
  return worst;
}

void require_invariant_prior(const Distribution& prior, const Generators& g) {
  if (g.empty()) return;
  if (!prior.has_sampler()) throw std::invalid_argument("symmetry: the prior needs an exact sampler");
  Matrix<double> x("inv_x", 256, prior.dim());
  prior.sample(0x5eed, Purpose::invariance_check, 0, 0, x);
  const double v = invariance_violation(prior, g, x);
  if (v > 1e-9)
    throw std::invalid_argument("symmetry " + g.name + ": the prior " + prior.description() +
                                " is not invariant under the generators (relative (Bq).grad E up to " + fmt_num(v) +
                                "); use a rotation-invariant prior (base.kind = gauss, or gengauss with power 2)");
}

GroupAction::GroupAction(const Generators& g, int capacity) : dim_(g.dim), count_(g.count()) {
  if (count_ == 0) return;
  b_ = Matrix<double>("group_generators", static_cast<std::size_t>(count_) * dim_, dim_);
  const auto hb = Kokkos::create_mirror_view(b_);
  for (int k = 0; k < count_; ++k) {
    double norm = 0;
    for (int r = 0; r < dim_; ++r) {
      double row = 0;
      for (int c = 0; c < dim_; ++c) {
        const double v = g.b[k][static_cast<std::size_t>(r) * dim_ + c];
        hb(k * dim_ + r, c) = v;
        row += std::fabs(v);
      }
      norm = std::fmax(norm, row);
    }
    norm_.push_back(norm);
  }
  Kokkos::deep_copy(b_, hb);
  theta_ = Matrix<double>("group_angles", capacity, count_);
  t_ = Matrix<double>("group_term_a", capacity, dim_);
  u_ = Matrix<double>("group_term_b", capacity, dim_);
}

void GroupAction::apply(const ConstMatrix<double>& theta, const Matrix<double>& x) const {
  const int n = static_cast<int>(x.extent(0)), D = dim_;
  if (count_ == 0 || n == 0) return;
  if (n > static_cast<int>(t_.extent(0)) || static_cast<int>(x.extent(1)) != D ||
      static_cast<int>(theta.extent(0)) < n || static_cast<int>(theta.extent(1)) != count_)
    throw std::logic_error("GroupAction::apply: shapes do not match the action");
  const Matrix<double> B = b_, t = t_, u = u_;
  for (int k = 0; k < count_; ++k) {
    const double norm = norm_[k];
    Kokkos::parallel_for(
        "bf::group_action", Kokkos::RangePolicy<>(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          const double th = theta(i, k);
          const int sub = 1 + static_cast<int>(kmath::fabs(th) * norm);
          const double h = th / sub;
          for (int s = 0; s < sub; ++s) {
            // x ← Σ_m (hB)^m x / m!: the term alternates between t and u.
            double big = 0;
            for (int r = 0; r < D; ++r) {
              t(i, r) = x(i, r);
              big = kmath::fmax(big, kmath::fabs(x(i, r)));
            }
            for (int m = 1; m < 60; ++m) {
              const Matrix<double>& from = (m & 1) ? t : u;
              const Matrix<double>& to = (m & 1) ? u : t;
              double small = 0;
              for (int r = 0; r < D; ++r) {
                double v = 0;
                for (int c = 0; c < D; ++c) v += B(k * D + r, c) * from(i, c);
                v *= h / m;
                to(i, r) = v;
                x(i, r) += v;
                small = kmath::fmax(small, kmath::fabs(v));
              }
              if (!(small > 1e-17 * big)) break;
            }
          }
        });
  }
}

void GroupAction::apply_random(std::uint32_t seed, Purpose purpose, std::uint32_t step, std::uint64_t first,
                               const Matrix<double>& x) const {
  const int n = static_cast<int>(x.extent(0)), K = count_;
  if (K == 0 || n == 0) return;
  if (n > static_cast<int>(theta_.extent(0))) throw std::logic_error("GroupAction::apply_random: too many rows");
  const Matrix<double> th = theta_;
  Kokkos::parallel_for(
      "bf::group_angles", Kokkos::RangePolicy<>(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const RngStream rng(seed, purpose, step, first + static_cast<std::uint64_t>(i));
        for (int k = 0; k < K; ++k)
          th(i, k) = kPi * (2.0 * rng.uniform(static_cast<std::uint32_t>(k >> 1), k & 1) - 1.0);
      });
  apply(th, x);
}

}  // namespace bf
