#include "flows/nn/parameters.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "physics/rng.hpp"

namespace bf {

std::size_t ParameterLayout::add(const std::string& name, std::vector<int> shape, ParamInit init) {
  for (const auto& s : slices_)
    if (s.name == name) throw std::logic_error("parameter slice '" + name + "' declared twice");
  std::size_t n = 1;
  for (int d : shape) {
    if (d < 1) throw std::invalid_argument("parameter slice '" + name + "' has an empty dimension");
    n *= static_cast<std::size_t>(d);
  }
  ParamSlice s;
  s.name = name;
  s.offset = size_;
  s.size = n;
  s.shape = std::move(shape);
  s.init = init;
  slices_.push_back(s);
  size_ += (n + kAlign - 1) / kAlign * kAlign;
  return s.offset;
}

std::size_t ParameterLayout::count() const {
  std::size_t n = 0;
  for (const auto& s : slices_) n += s.size;
  return n;
}

const ParamSlice& ParameterLayout::slice(const std::string& name) const {
  for (const auto& s : slices_)
    if (s.name == name) return s;
  throw std::logic_error("no parameter slice '" + name + "'");
}

std::string ParameterLayout::signature() const {
  std::ostringstream os;
  for (const auto& s : slices_) {
    os << s.name << "[";
    for (std::size_t i = 0; i < s.shape.size(); ++i) os << (i ? "x" : "") << s.shape[i];
    os << "]@" << s.offset << ";";
  }
  return os.str();
}

template <class T>
void initialize_parameters(const ParameterLayout& layout, const Vector<T>& values, std::uint32_t seed) {
  if (values.extent(0) != layout.size()) throw std::logic_error("initialize_parameters: buffer size mismatch");
  Kokkos::deep_copy(values, T(0));
  for (const auto& s : layout.slices()) {
    const std::size_t off = s.offset;
    const double value = s.init.value;
    const double sd = s.init.gain / std::sqrt(static_cast<double>(s.init.fan_in));
    const int kind = s.init.kind;
    Kokkos::parallel_for(
        "bf::init_params", Policy(0, s.size), KOKKOS_LAMBDA(const std::int64_t i) {
          const std::uint64_t idx = off + static_cast<std::uint64_t>(i);
          if (kind == ParamInit::normal) {
            const RngStream r(seed, Purpose::init, 0, idx);
            values(idx) = static_cast<T>(sd * r.normal(0));
          } else if (kind == ParamInit::constant) {
            values(idx) = static_cast<T>(value);
          } else {
            values(idx) = T(0);
          }
        });
  }
}

double LrSchedule::at(std::int64_t step) const {
  double f = 1.0;
  if (kind == cosine && total_steps > 0) {
    const double x = std::fmin(1.0, static_cast<double>(step) / static_cast<double>(total_steps));
    f = final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + std::cos(kPi * x));
  }
  if (warmup_steps > 0 && step < warmup_steps) f *= static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  return lr * f;
}

template <class T>
Adam<T>::Adam(std::size_t n, AdamConfig cfg) : cfg_(cfg), m_("adam_m", n), v_("adam_v", n) {}

template <class T>
Adam<T>::Adam(Vector<T> m, Vector<T> v, AdamConfig cfg) : cfg_(cfg), m_(std::move(m)), v_(std::move(v)) {}

template <class T>
GroupedAdam<T>::GroupedAdam(std::size_t n, AdamConfig cfg, std::vector<ParameterGroup> groups)
    : groups_(std::move(groups)), m_("adam_m", n), v_("adam_v", n) {
  if (groups_.empty()) groups_.push_back(ParameterGroup{0, n});
  std::size_t at = 0;
  for (const ParameterGroup& g : groups_) {
    if (g.begin != at || g.end < g.begin || g.cycle < 1 || g.first < 0 || g.count < 1 || g.first + g.count > g.cycle)
      throw std::logic_error("parameter groups must tile the buffer in order, each updated in its cycle");
    at = g.end;
    const auto part = std::make_pair(g.begin, g.end);
    parts_.emplace_back(Vector<T>(Kokkos::subview(m_, part)), Vector<T>(Kokkos::subview(v_, part)), cfg);
  }
  if (at != n) throw std::logic_error("parameter groups must cover the parameter buffer");
}

template <class T>
void GroupedAdam<T>::step(const Vector<T>& params, const Vector<T>& g, double lr, double grad_scale, double gnorm) {
  const std::int64_t s = t_++;
  if (groups_.size() == 1) {
    parts_[0].step(params, g, lr, grad_scale, gnorm);
    return;
  }
  for (std::size_t k = 0; k < groups_.size(); ++k) {
    const ParameterGroup& gr = groups_[k];
    if (!gr.updates_at(s)) continue;
    const auto part = std::make_pair(gr.begin, gr.end);
    const Vector<T> pk = Kokkos::subview(params, part), gk = Kokkos::subview(g, part);
    // The group's own norm, for clipping only (one reduction, skipped without clipping).
    const double norm = parts_[k].config().clip_norm > 0.0 ? Adam<T>::norm(gk) * std::fabs(grad_scale) : 0.0;
    parts_[k].step(pk, gk, lr * gr.lr_scale, grad_scale, norm);
  }
}

template <class T>
void GroupedAdam<T>::set_steps(std::int64_t t) {
  t_ = t;
  for (std::size_t k = 0; k < groups_.size(); ++k) parts_[k].set_steps(groups_[k].updates_before(t));
}

template <class T>
double Adam<T>::norm(const Kokkos::View<const T*, MemSpace>& g) {
  double s = 0;
  Kokkos::parallel_reduce(
      "bf::grad_norm", Policy(0, g.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t i, double& acc) { acc += static_cast<double>(g(i)) * static_cast<double>(g(i)); },
      s);
  return std::sqrt(s);
}

template <class T>
double Adam<T>::update(const Vector<T>& params, const Kokkos::View<const T*, MemSpace>& g, double lr,
                       double grad_scale) {
  const double gnorm = norm(g) * std::fabs(grad_scale);
  step(params, g, lr, grad_scale, gnorm);
  return gnorm;
}

template <class T>
void Adam<T>::step(const Vector<T>& params, const Kokkos::View<const T*, MemSpace>& g, double lr, double grad_scale,
                   double gnorm) {
  double scale = grad_scale;
  if (cfg_.clip_norm > 0.0 && gnorm > cfg_.clip_norm) scale *= cfg_.clip_norm / gnorm;
  ++t_;
  const T b1 = static_cast<T>(cfg_.beta1), b2 = static_cast<T>(cfg_.beta2), eps = static_cast<T>(cfg_.eps);
  // Bias corrections folded into the step size: θ −= lr √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε √(1−β₂ᵗ)).
  const double c1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t_));
  const T step_size = static_cast<T>(lr / c1);
  const T inv_sqrt_c2 = static_cast<T>(1.0 / std::sqrt(c2));
  const T sc = static_cast<T>(scale);
  const Vector<T> m = m_, v = v_;
  Kokkos::parallel_for(
      "bf::adam", Policy(0, params.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        const T gi = g(i) * sc;
        const T mi = b1 * m(i) + (T(1) - b1) * gi;
        const T vi = b2 * v(i) + (T(1) - b2) * gi * gi;
        m(i) = mi;
        v(i) = vi;
        params(i) -= step_size * mi / (kmath::sqrt(vi) * inv_sqrt_c2 + eps);
      });
}

template void initialize_parameters<float>(const ParameterLayout&, const Vector<float>&, std::uint32_t);
template void initialize_parameters<double>(const ParameterLayout&, const Vector<double>&, std::uint32_t);
template class Adam<float>;
template class Adam<double>;
template class GroupedAdam<float>;
template class GroupedAdam<double>;

}  // namespace bf
