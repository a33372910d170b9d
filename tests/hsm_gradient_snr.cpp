// A study, not a test (built with the tests, run by hand; the README quotes it):
// the per-sample gradient signal-to-noise ratio of Hamiltonian score matching
// against denoising score matching at falling σ (the poster's Fig. 3c), at one
// force U (the shipped configs' MLP 64,64 at its initialisation, double), on
// the 1-D mixture 0.4 N(−2, 1) + 0.6 N(2, 1) and on gmm9. HSM's θ-gradient is
// taken with its velocity predictor first trained for that U (the force held).
//   hsm_gradient_snr [samples]      (default 20000 per figure)
#include <cstdio>
#include <cstdlib>

#include "flows/models/hsm.hpp"
#include "physics/targets.hpp"
#include "tests/score_study.hpp"

using namespace bf;

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  const int samples = argc > 1 ? std::atoi(argv[1]) : 20000;
  for (const std::string name : {"mixture1d", "gmm9"}) {
    TargetSpec ts;
    ts.name = name == "gmm9" ? "gmm9" : "gmm";
    if (name != "gmm9") ts.dim = 1, ts.weights = {0.4, 0.6}, ts.means = {-2.0, 2.0}, ts.widths = {1.0};
    const auto tgt = make_target(ts);
    HsmSpec sp;  // jobs/configs/hsm-mixture1d.ini and dsm-mixture1d.ini
    sp.hidden = {64, 64};
    sp.activation = Activation::swish;
    sp.kernels = 4;
    sp.time_input = true;
    sp.output_gain = 1.0;
    sp.steps = 10;
    sp.time = 1.0;
    sp.inner_steps = 5;
    sp.inner_lr_scale = 1.0;
    sp.dataset_size = 5000;
    std::printf("%s, U = MLP 64,64 swish at its initialisation (seed 1), %d samples per figure, +- jackknife:\n",
                name.c_str(), samples);
    for (double sigma : {1.0, 0.3, 0.1, 0.03, 0.01}) {
      HsmSpec d = sp;
      d.dsm = true;
      d.dsm_sigma = sigma;
      HsmModel<double> model(*tgt, d, 1, 1u);
      Vector<double> p("p", model.layout().size());
      model.initialize(p, 1u);
      const auto r = test::gradient_snr(model, p, 11u, 0, 0, model.layout().size(), samples);
      std::printf("  dsm sigma %-5g  SNR %.4f +- %.4f   |E g| %.4g   noise %.4g\n", sigma, r.snr, r.error, r.mean_norm,
                  r.noise);
    }
    HsmModel<double> model(*tgt, sp, 512, 1u);
    Vector<double> p("p", model.layout().size());
    model.initialize(p, 1u);
    test::train_groups(model, p, 3000, 512, 3e-3, true);  // V_φ for this U
    const ParameterGroup force = model.parameter_groups()[0];
    const auto r = test::gradient_snr(model, p, 11u, force.first, force.begin, force.end, samples);
    std::printf("  hsm (L 10, T 1)  SNR %.4f +- %.4f   |E g| %.4g   noise %.4g\n", r.snr, r.error, r.mean_norm, r.noise);
  }
  return 0;
}
