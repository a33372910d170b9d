// The signal-to-noise ratio of a model's per-sample parameter gradient, as the
// Hamiltonian score-matching poster compares it with denoising score matching
// (its Fig. 3c): at fixed parameters, over samples i of one step's noise,
//   SNR = ‖E g_i‖ / sqrt(E ‖g_i − E g‖²),
// g_i the gradient of sample i alone (its loss_and_grad with a batch of one),
// restricted to [begin, end) of the buffer (a parameter group); ‖E g‖² is
// estimated without the noise's share of ‖ḡ‖². The error is a jackknife over
// `blocks` blocks of samples. And the min-max training loop of the HSM tests and study.
#pragma once

#include <cmath>
#include <vector>

#include "flows/model.hpp"

namespace bf::test {

struct GradientSnr {
  double snr = 0, error = 0;
  double mean_norm = 0, noise = 0;  // ‖E g‖ and sqrt(E‖g − E g‖²)
};

template <class T>
GradientSnr gradient_snr(Model<T>& model, const Vector<T>& params, std::uint32_t seed, std::int64_t step,
                         std::size_t begin, std::size_t end, int samples, int blocks = 20) {
  const std::size_t P = model.layout().size(), n = end - begin;
  Vector<T> g("snr_g", P);
  std::vector<std::vector<double>> sum(blocks, std::vector<double>(n, 0.0));  // per block: Σ g, and Σ‖g‖²
  std::vector<double> sq(blocks, 0.0);
  std::vector<int> count(blocks, 0);
  for (int i = 0; i < samples; ++i) {
    Kokkos::deep_copy(g, T(0));
    model.loss_and_grad(params, g, BatchRef{seed, step, static_cast<std::uint64_t>(i), 1, 1}, LocalCollective());
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g);
    const int b = static_cast<int>(static_cast<long long>(i) * blocks / samples);
    for (std::size_t k = 0; k < n; ++k) {
      const double v = static_cast<double>(h(begin + k));
      sum[b][k] += v;
      sq[b] += v * v;
    }
    ++count[b];
  }
  // SNR from the samples of every block but `leave` (−1: all).
  auto snr_of = [&](int leave, double* mean_norm, double* noise) {
    std::vector<double> s(n, 0.0);
    double q = 0, m = 0;
    for (int b = 0; b < blocks; ++b) {
      if (b == leave) continue;
      for (std::size_t k = 0; k < n; ++k) s[k] += sum[b][k];
      q += sq[b];
      m += count[b];
    }
    double mn2 = 0;
    for (double v : s) mn2 += (v / m) * (v / m);
    const double var = std::max(0.0, q / m - mn2) * m / (m - 1);
    mn2 = std::max(0.0, mn2 - var / m);  // ‖ḡ‖² is ‖E g‖² + tr Cov / m on average
    if (mean_norm) *mean_norm = std::sqrt(mn2);
    if (noise) *noise = std::sqrt(var);
    return std::sqrt(mn2) / std::sqrt(var);
  };
  GradientSnr r;
  r.snr = snr_of(-1, &r.mean_norm, &r.noise);
  std::vector<double> loo(blocks);
  double mean = 0;
  for (int b = 0; b < blocks; ++b) mean += (loo[b] = snr_of(b, nullptr, nullptr)) / blocks;
  double v = 0;
  for (double x : loo) v += (x - mean) * (x - mean);
  r.error = std::sqrt(v * (blocks - 1) / blocks);
  return r;
}

/// Trains with the model's parameter groups (GroupedAdam) for `steps` steps of `batch`
/// samples, lr on a cosine to 0; with hold_first, not at the steps of the first group (a
/// min-max model's force), which then stays as it is.
template <class T>
void train_groups(Model<T>& model, const Vector<T>& p, int steps, int batch, double lr, bool hold_first,
                  std::uint32_t seed = 5u) {
  const std::size_t P = model.layout().size();
  const auto groups = model.parameter_groups();
  GroupedAdam<T> adam(P, AdamConfig{}, groups);
  Vector<T> g("g", P);
  const LrSchedule schedule{LrSchedule::cosine, lr, 0.0, steps, 0};
  for (int s = 0; s < steps; ++s) {
    Kokkos::deep_copy(g, T(0));
    if (!(hold_first && !groups.empty() && groups[0].updates_at(s)))
      model.loss_and_grad(p, g, BatchRef{seed, s, 0, batch, batch}, LocalCollective());
    adam.step(p, g, schedule.at(s), 1.0 / batch, Adam<T>::norm(g) / batch);
  }
}

}  // namespace bf::test
