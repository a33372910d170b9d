// The configuration as typed structs, one per concern, each with the one
// declaration of its keys: `fields` lists member, key, type, default, help,
// choices and range once, and that list generates the key registry (so
// --help, INI parsing, --section.key overrides, the resolved config.ini and
// resume's difference check, src/run/config.hpp), and reads a validated
// Config into the struct. Code reads settings.train.lr, never a key by name:
// a misspelt key does not compile. Adding a key is one member and one line of
// its struct's `fields`.
//
// The defaults are a complete, short run: the deformation-trajectory CNF on
// the gmm4 mixture (Mate & Fleuret's architecture and learning rate, 10^3
// steps at a constant rate, float), about a minute on 2 cores. The configs in
// jobs/configs/ set the papers' full settings (10^4 steps, cosine decay).
// Keys whose default is "" are unset until given (std::optional, or an empty list).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "src/run/config.hpp"

namespace bf {

/// [run] the run: seed, directory, checkpoints, evaluations, output.
struct RunSettings {
  long long seed{};
  std::string out{};
  long long checkpoint_every{};
  long long eval_every{};
  long long stop_at{};
  std::string progress{};
  long long log_every{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&RunSettings::seed, "run.seed", K::Int, "1", "seed of every random stream (Philox key); 0 to 2^32-1", {}, 0, 4294967295.0);
    v(&RunSettings::out, "run.out", K::String, "run", "run directory (checkpoint.h5, config.ini, metrics.jsonl); --out overrides");
    v(&RunSettings::checkpoint_every, "run.checkpoint_every", K::Int, "1000", "steps between checkpoints (one is also written at the start and end)",
       {}, 1, 1e12);
    v(&RunSettings::eval_every, "run.eval_every", K::Int, "0", "steps between evaluations on eval.samples samples (0: only at the end)",
       {}, 0, 1e12);
    v(&RunSettings::stop_at, "run.stop_at", K::Int, "0",
       "stop with a checkpoint (exit 0) on reaching this step; 0: run to train.steps. Resume to go on.", {}, 0,
       1e12);
    v(&RunSettings::progress, "run.progress", K::Choice, "auto",
       "rank 0 output: a live progress line (line), periodic log lines (plain), or auto: line when stdout is a "
       "terminal and the program was not started by mpirun/srun (their ranks' stdout looks like one)",
       {"auto", "line", "plain"});
    v(&RunSettings::log_every, "run.log_every", K::Int, "100", "steps between log lines when stdout is not a terminal", {}, 1, 1e12);
  }
};

/// [train] the optimisation: steps, batch, loss, Adam and its schedule, the non-finite policy.
struct TrainSettings {
  long long steps{};
  long long batch{};
  double lr{};
  std::string loss{};
  std::string schedule{};
  double final_lr_fraction{};
  long long warmup_steps{};
  double clip_norm{};
  double beta1{};
  double beta2{};
  double eps{};
  long long dataset_size{};
  std::string minibatch{};
  long long inner_steps{};
  double inner_lr_scale{};
  double dsm_sigma{};
  long long snapshot_every{};
  double nan_lr_factor{};
  long long nan_max_retries{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&TrainSettings::steps, "train.steps", K::Int, "1000", "optimisation steps", {}, 0, 1e12);
    v(&TrainSettings::batch, "train.batch", K::Int, "256", "global batch size, split across MPI ranks", {}, 1, 1e9);
    v(&TrainSettings::lr, "train.lr", K::Real, "3e-3", "Adam learning rate (peak of the schedule)", {}, 1e-300, 1e300);
    v(&TrainSettings::loss, "train.loss", K::Choice, "deformation",
       "training loss: reverse_kl (cnf, nhf, affine), deformation (cnf), elbo (nhf density estimation from exact "
       "samples), velocity_matching (hgf: regression of V on the path's velocity, from exact samples), hsm (hsm: "
       "Hamiltonian score matching, from exact samples), dsm (hsm: denoising score matching, the baseline)",
       {"reverse_kl", "deformation", "elbo", "velocity_matching", "hsm", "dsm"});
    v(&TrainSettings::schedule, "train.schedule", K::Choice, "constant", "learning-rate schedule over train.steps", {"cosine", "constant"});
    v(&TrainSettings::final_lr_fraction, "train.final_lr_fraction", K::Real, "0", "cosine schedule: final lr as a fraction of train.lr", {}, 0, 1);
    v(&TrainSettings::warmup_steps, "train.warmup_steps", K::Int, "0", "linear learning-rate warm-up steps", {}, 0, 1e12);
    v(&TrainSettings::clip_norm, "train.clip_norm", K::Real, "0", "clip the global gradient norm to this value (0: no clipping)", {}, 0, 1e300);
    v(&TrainSettings::beta1, "train.beta1", K::Real, "0.9", "Adam beta1", {}, 0, 0.999999);
    v(&TrainSettings::beta2, "train.beta2", K::Real, "0.999", "Adam beta2", {}, 0, 0.99999999);
    v(&TrainSettings::eps, "train.eps", K::Real, "1e-8", "Adam epsilon", {}, 1e-300, 1);
    v(&TrainSettings::dataset_size, "train.dataset_size", K::Int, "5000",
       "elbo, velocity_matching, hsm, dsm: points drawn once from the target's exact sampler; minibatches of train.batch "
       "drawn from them", {}, 1,
       1e9);
    v(&TrainSettings::minibatch, "train.minibatch", K::Choice, "replacement",
       "elbo, velocity_matching, hsm, dsm: how minibatches take the data set's points: replacement (each uniformly, with replacement), or "
       "epochs (a fresh random order of the data set each epoch, every point once per epoch, as Souveton et al. "
       "train; train.batch at most train.dataset_size)",
       {"replacement", "epochs"});
    v(&TrainSettings::inner_steps, "train.inner_steps", K::Int, "1",
       "hsm: velocity-predictor (phi) steps per force (theta) step of the min-max training; a step is one of either",
       {}, 1, 1e6);
    v(&TrainSettings::inner_lr_scale, "train.inner_lr_scale", K::Real, "1",
       "hsm: the velocity predictor's learning rate as a multiple of train.lr (its own Adam)", {}, 1e-300, 1e300);
    v(&TrainSettings::dsm_sigma, "train.dsm_sigma", K::Real, "0.1", "dsm: standard deviation sigma of the denoising noise", {},
       1e-300, 1e300);
    v(&TrainSettings::snapshot_every, "train.snapshot_every", K::Int, "10", "steps between in-memory snapshots a non-finite step rolls back to", {},
       1, 1e12);
    v(&TrainSettings::nan_lr_factor, "train.nan_lr_factor", K::Real, "0.5", "learning-rate factor applied after each non-finite step", {}, 1e-6,
       1);
    v(&TrainSettings::nan_max_retries, "train.nan_max_retries", K::Int, "5", "consecutive non-finite steps tolerated before the run stops", {}, 0,
       1e6);
  }
};

/// [model] the flow: kind, networks, integrator.
struct ModelSettings {
  std::string kind{};
  long long kernels{};
  std::vector<long long> hidden{};
  std::string activation{};
  bool time_input{};
  std::string interpolation{};
  std::vector<long long> g_hidden{};
  std::vector<long long> c_hidden{};
  long long integration_steps{};
  std::string trajectory_weights{};
  long long time_chunk{};
  std::string kinetic{};
  long long leapfrog_steps{};
  double time{};
  double output_gain{};
  std::string path{};
  std::string velocity{};
  double omega{};
  double sigma_v{};
  double path_time{};
  std::string potential{};
  std::string symmetry{};
  double symmetry_tolerance{};
  double symmetry_rate{};
  long long symmetry_warmup{};
  std::string symmetry_points{};
  std::string precision{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&ModelSettings::kind, "model.kind", K::Choice, "cnf",
       "flow: cnf (deformation-trajectory CNF, Mate & Fleuret), nhf (Neural Hamiltonian Flow, Souveton et al.), "
       "hgf (Hamiltonian generative flow, Holderrieth et al.: V learned by velocity regression along a path), "
       "hsm (a force F = -grad U learned by Hamiltonian or denoising score matching; no sampler: evaluated by its "
       "score error), affine (x = mu + L z; tests and baselines)",
       {"cnf", "nhf", "hgf", "hsm", "affine"});
    v(&ModelSettings::kernels, "model.kernels", K::Int, "4", "cnf, hgf, hsm: RBF time kernels (one MLP each) of V_t (and g_t, C_t)", {}, 1, 1024);
    v(&ModelSettings::hidden, "model.hidden", K::IntList, "64,64",
       "hidden widths: each MLP of V_t, g_t (cnf, hgf, hsm); V, K and the encoder's mu and sigma (nhf); U (hsm)", {}, 1, 1e6);
    v(&ModelSettings::activation, "model.activation", K::Choice, "swish", "hidden activation", {"swish", "softplus", "tanh"});
    v(&ModelSettings::time_input, "model.time_input", K::Bool, "true", "cnf, hgf, hsm: t is an input of every MLP as well as the kernel weight");
    v(&ModelSettings::interpolation, "model.interpolation", K::Choice, "linear",
       "cnf: f_t = (1-t) f0 + t f1 (linear) or + t(1-t) g_t (trainable)", {"linear", "trainable"});
    v(&ModelSettings::g_hidden, "model.g_hidden", K::IntList, "", "cnf: hidden widths of g_t (unset: model.hidden)", {}, 1, 1e6);
    v(&ModelSettings::c_hidden, "model.c_hidden", K::IntList, "32", "cnf: hidden widths of C_t, a network of t alone", {}, 1, 1e6);
    v(&ModelSettings::integration_steps, "model.integration_steps", K::Int, "50", "cnf: RK4 steps from t = 0 to 1 (steps + 1 trajectory points); hgf: from the path's end T to 0", {},
       1, 100000);
    v(&ModelSettings::trajectory_weights, "model.trajectory_weights", K::Choice, "none",
       "cnf deformation loss: none (w = 1, the authors' code) or importance (Mate Eq. 9, per-batch normalised)",
       {"none", "importance"});
    v(&ModelSettings::time_chunk, "model.time_chunk", K::Int, "1",
       "cnf deformation loss: trajectory points evaluated in one network pass (memory vs. GEMM size)", {}, 1,
       100000);
    v(&ModelSettings::kinetic, "model.kinetic", K::Choice, "mlp", "nhf: kinetic energy, an MLP or fixed 1/2 p^T M p with M = L L^T trained",
       {"mlp", "fixed"});
    v(&ModelSettings::leapfrog_steps, "model.leapfrog_steps", K::Int, "10", "nhf, hsm: leapfrog steps L", {}, 1, 100000);
    v(&ModelSettings::time, "model.time", K::Real, "1", "nhf, hsm: integration time T = L dt", {}, 1e-300, 1e300);
    v(&ModelSettings::output_gain, "model.output_gain", K::Real, "1", "initial scale of the last layer of V_t (0: V starts at zero)", {}, 0,
       1e6);
    v(&ModelSettings::path, "model.path", K::Choice, "flow_matching",
       "hgf: the path x_t = alpha x0 + beta eps: flow_matching (alpha = 1 - t, beta = t, T = 1), oscillation "
       "(F = -omega^2 x: alpha = cos omega t, beta = sigma_v/omega sin omega t, T = pi/(2 omega)), diffusion "
       "(alpha = 1, beta = t, T = model.path_time; x_T only approximately Gaussian)",
       {"flow_matching", "oscillation", "diffusion"});
    v(&ModelSettings::velocity, "model.velocity", K::Choice, "network",
       "hgf: V learned (network) or the closed-form E[v_t | x_t] of a Gaussian-mixture target (exact; no "
       "parameters, for checks)",
       {"network", "exact"});
    v(&ModelSettings::omega, "model.omega", K::Real, "1", "hgf oscillation: frequency omega of the force -omega^2 x", {}, 1e-300, 1e300);
    v(&ModelSettings::sigma_v, "model.sigma_v", K::Real, "1", "hgf oscillation: standard deviation of the initial velocity", {}, 1e-300,
       1e300);
    v(&ModelSettings::path_time, "model.path_time", K::Real, "3", "hgf diffusion: end time T of the path", {}, 1e-300, 1e300);
    v(&ModelSettings::potential, "model.potential", K::Choice, "network",
       "hsm: the potential U of the force F = -grad U: an MLP (network) or 1/2 x^T A x with A = L L^T trained "
       "(quadratic; Gaussian targets)",
       {"network", "quadratic"});
    v(&ModelSettings::symmetry, "model.symmetry", K::String, "none",
       "nhf: a symmetry the Hamiltonian is constrained to commute with (Rezende et al.'s equivariant Hamiltonian "
       "flows): none, so2 (rotations of the plane), o2_lattice (the global rotation of a two-component field, "
       "coordinates interleaved per site), or matrix:FILE (antisymmetric D x D generators B, row-major, "
       "whitespace-separated; g = p^T B q). The prior must be invariant (base.kind = gauss, or gengauss with power 2)");
    v(&ModelSettings::symmetry_tolerance, "model.symmetry_tolerance", K::Real, "0.01",
       "nhf symmetry: kappa, the constraint E[{g, H}^2] <= kappa", {}, 0, 1e300);
    v(&ModelSettings::symmetry_rate, "model.symmetry_rate", K::Real, "1",
       "nhf symmetry: eta of the GECO multiplier update lambda <- lambda exp(eta C_ma), C_ma the moving average of "
       "E[{g, H}^2] - kappa (at most a factor e^0.1 per step)", {}, 0, 1e6);
    v(&ModelSettings::symmetry_warmup, "model.symmetry_warmup", K::Int, "1000",
       "nhf symmetry: the multipliers lambda stay at 1 for the training steps before this one (the moving average "
       "C_ma runs), so that it forgets the first steps' large violations before lambda follows it", {}, 0, 1e15);
    v(&ModelSettings::symmetry_points, "model.symmetry_points", K::Choice, "start",
       "nhf symmetry: where the constraint's positions come from: the batch's start positions (start: the data "
       "for elbo, the prior's draws for reverse_kl), fresh draws of the prior (prior), or the start positions each "
       "moved along its orbit by a random group element (orbit: exp(theta B) with theta uniform on [-pi, pi) per "
       "generator; for an invariant target these are more of its samples)",
       {"start", "prior", "orbit"});
    v(&ModelSettings::precision, "model.precision", K::Choice, "float", "floating-point precision of parameters and networks",
       {"double", "float"});
  }
};

/// [base] the base distribution (cnf) or prior (nhf).
struct BaseSettings {
  std::string kind{};
  double sigma{};
  double power{};
  double scale{};
  double half_width{};
  double beta{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&BaseSettings::kind, "base.kind", K::Choice, "gengauss",
       "base (cnf) or prior (nhf): gengauss exp(-|x/sigma|^p), gauss N(0, scale^2), softuniform",
       {"gengauss", "gauss", "softuniform"});
    v(&BaseSettings::sigma, "base.sigma", K::Real, "1.4142135623730951", "gengauss: sigma (sqrt 2 with p = 2 is N(0, 1))", {}, 1e-300,
       1e300);
    v(&BaseSettings::power, "base.power", K::Real, "2", "gengauss: power p", {}, 1, 1e3);
    v(&BaseSettings::scale, "base.scale", K::Real, "1", "gauss: standard deviation", {}, 1e-300, 1e300);
    v(&BaseSettings::half_width, "base.half_width", K::Real, "3", "softuniform: half-width a", {}, 1e-300, 1e300);
    v(&BaseSettings::beta, "base.beta", K::Real, "1", "softuniform: steepness beta", {}, 1e-300, 1e300);
  }
};

/// [eval] the metric suite.
struct EvalSettings {
  long long samples{};
  long long batch{};
  bool forward{};
  long long momentum_samples{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&EvalSettings::samples, "eval.samples", K::Int, "4096", "global number of samples for each evaluation", {}, 1, 1e12);
    v(&EvalSettings::batch, "eval.batch", K::Int, "1024", "samples per rank evaluated at once (memory: the networks' caches scale with it)", {}, 1, 1e9);
    v(&EvalSettings::forward, "eval.forward", K::Bool, "true", "also measure forward KL/ESS on exact target samples where they exist");
    v(&EvalSettings::momentum_samples, "eval.momentum_samples", K::Int, "16", "nhf: momenta per sample K of the marginal estimate log q(x) ~ log mean_k M(x, p_k)/r(p_k|x) (0: only the phase-space figures)", {}, 0, 1e6);
  }
};

/// [target] the target density (presets resolved by with_presets).
struct TargetSettings {
  std::string name{};
  std::optional<long long> dim{};
  std::vector<double> weights{};
  std::vector<double> means{};
  std::vector<double> widths{};
  std::vector<double> radii{};
  std::vector<long long> shape{};
  std::optional<double> m{};
  std::optional<double> lambda{};
  std::optional<double> alpha{};
  double time_extent{};
  double kappa{};
  double mu2{};
  double lambda4{};
  long long quadrature_grid{};

  template <class V>
  static void fields(V& v) {
    using K = KeyType;
    v(&TargetSettings::name, "target.name", K::Choice, "gmm4",
       "target density: Gaussian mixture presets, a mixture given in full (gmm), phi^4 presets, the "
       "supernova posterior, concentric rings in the plane (ring: exp(-(|x| - R)^2 / 2 s^2), or a mixture), the "
       "two-component O(2) phi^4 field (o2-phi4)",
       {"gmm4", "gmm2asym", "gmm9", "gmm", "phi4", "phi4-dw", "phi4-general", "supernova", "ring", "o2-phi4"});
    v(&TargetSettings::dim, "target.dim", K::Int, "", "gmm: dimension of the mixture", {}, 1, 1e6);
    v(&TargetSettings::weights, "target.weights", K::RealList, "", "gmm, ring: component weights (normalised; ring unset: equal), e.g. '0.5, 0.5'", {}, 1e-300, 1e300);
    v(&TargetSettings::means, "target.means", K::RealList, "", "gmm: component means, component after component (K x dim numbers)");
    v(&TargetSettings::widths, "target.widths", K::RealList, "", "gmm: component standard deviations (one, or one per component); ring: the rings' widths s (unset: 0.5)", {},
       1e-300, 1e300);
    v(&TargetSettings::radii, "target.radii", K::RealList, "", "ring: the rings' radii R (unset: 2), one per ring", {}, 0, 1e300);
    v(&TargetSettings::shape, "target.shape", K::IntList, "16", "phi4*, o2-phi4: periodic lattice extents, e.g. '16' or '8x8'", {}, 2, 1e6);
    v(&TargetSettings::m, "target.m", K::Real, "",
       "phi4: mass parameter m of Mate Eq. 19 (unset: 0.5); phi4-dw: m of the double well (unset: 3); o2-phi4: -mu2 (unset: 0.5)");
    v(&TargetSettings::lambda, "target.lambda", K::Real, "", "phi4, o2-phi4: quartic coupling (unset: 1/16); phi4-dw: lambda (unset: 1)", {}, 1e-300,
       1e300);
    v(&TargetSettings::alpha, "target.alpha", K::Real, "", "phi4: shift of the quartic term (unset: 0.01); phi4-general (unset: 0)");
    v(&TargetSettings::time_extent, "target.time_extent", K::Real, "4", "phi4-dw: Euclidean time extent T (dT = T/N)", {}, 1e-300, 1e300);
    v(&TargetSettings::kappa, "target.kappa", K::Real, "1", "phi4-general: hopping coupling kappa", {}, 0, 1e300);
    v(&TargetSettings::mu2, "target.mu2", K::Real, "-0.5", "phi4-general: quadratic coupling mu2");
    v(&TargetSettings::lambda4, "target.lambda4", K::Real, "0.0625", "phi4-general: quartic coupling lambda4", {}, 1e-300, 1e300);
    v(&TargetSettings::quadrature_grid, "target.quadrature_grid", K::Int, "2000",
       "supernova: points per axis of the quadrature giving exact posterior moments", {}, 10, 100000);
  }
};

/// Every section, in the order of --help and config.ini.
struct Settings {
  RunSettings run;
  TrainSettings train;
  ModelSettings model;
  BaseSettings base;
  EvalSettings eval;
  TargetSettings target;

  template <class V>
  static void fields(V& v) {
    RunSettings::fields(v);
    TrainSettings::fields(v);
    ModelSettings::fields(v);
    BaseSettings::fields(v);
    EvalSettings::fields(v);
    TargetSettings::fields(v);
  }

  /// The typed values of a validated configuration.
  static Settings from(const Config& cfg);
};

}  // namespace bf
