#include "src/run/model_config.hpp"

#include "flows/models/affine.hpp"
#include "flows/models/cnf.hpp"
#include "flows/models/hgf.hpp"
#include "flows/models/hsm.hpp"
#include "flows/models/nhf.hpp"
#include "physics/targets.hpp"

namespace bf {

std::shared_ptr<const Distribution> make_base(const BaseSettings& base, int dim) {
  BaseSpec b;
  b.kind = base.kind;
  b.sigma = base.sigma;
  b.power = base.power;
  b.scale = base.scale;
  b.half_width = base.half_width;
  b.beta = base.beta;
  try {
    return std::shared_ptr<const Distribution>(bf::make_base(b, dim));
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("base: ") + e.what());
  }
}

namespace {
std::vector<int> widths(const std::vector<long long>& list, const std::string& key) {
  std::vector<int> w;
  for (long long v : list) w.push_back(static_cast<int>(v));
  if (w.empty()) throw InputError(key + ": needs at least one hidden width");
  return w;
}

/// train.minibatch = epochs (every point of the data set once per epoch) needs, where the
/// model learns from a data set (`uses_data`), a global batch no larger than the set.
bool epoch_minibatches(const Settings& cfg, bool uses_data) {
  const bool epochs = cfg.train.minibatch == "epochs";
  if (uses_data && epochs && cfg.train.batch > cfg.train.dataset_size)
    throw InputError("train.minibatch = epochs needs train.batch (" + std::to_string(cfg.train.batch) +
                     ") at most train.dataset_size (" + std::to_string(cfg.train.dataset_size) + ")");
  return epochs;
}
}  // namespace

template <class T>
std::unique_ptr<Model<T>> make_model(const Settings& cfg, const Distribution& target, int max_batch, int train_batch) {
  const ModelSettings& m = cfg.model;
  const std::string& kind = m.kind;
  const std::string& loss = cfg.train.loss;
  if (kind != "nhf" && m.symmetry != "none")
    throw InputError("model.symmetry = " + m.symmetry + " needs model.kind = nhf (the constraint is on its Hamiltonian)");
  try {
    if (kind == "affine") {
      if (loss != "reverse_kl")
        throw InputError("train.loss = " + loss + " is not available for model.kind = affine (use reverse_kl)");
      return std::make_unique<AffineFlow<T>>(target, max_batch);
    }
    if (kind == "cnf") {
      if (loss != "deformation" && loss != "reverse_kl")
        throw InputError("train.loss = " + loss + " is not available for model.kind = cnf (deformation or reverse_kl)");
      CnfSpec s;
      s.kernels = static_cast<int>(m.kernels);
      s.hidden = widths(m.hidden, "model.hidden");
      s.activation = parse_activation(m.activation);
      s.time_input = m.time_input;
      s.trainable = m.interpolation == "trainable";
      s.g_hidden = m.g_hidden.empty() ? s.hidden : widths(m.g_hidden, "model.g_hidden");
      s.c_hidden = widths(m.c_hidden, "model.c_hidden");
      s.steps = static_cast<int>(m.integration_steps);
      s.deformation = loss == "deformation";
      s.importance_weights = m.trajectory_weights == "importance";
      s.time_chunk = static_cast<int>(m.time_chunk);
      s.output_gain = m.output_gain;
      s.train_batch = std::max(1, train_batch);
      if (!s.deformation && s.trainable)
        throw InputError("model.interpolation = trainable needs train.loss = deformation");
      return std::make_unique<CnfFlow<T>>(target, make_base(cfg.base, target.dim()), s, max_batch);
    }
    if (kind == "nhf") {
      if (loss != "elbo" && loss != "reverse_kl")
        throw InputError("train.loss = " + loss + " is not available for model.kind = nhf (elbo or reverse_kl)");
      NhfSpec s;
      s.hidden = widths(m.hidden, "model.hidden");
      s.activation = parse_activation(m.activation);
      s.fixed_kinetic = m.kinetic == "fixed";
      s.steps = static_cast<int>(m.leapfrog_steps);
      s.time = m.time;
      s.elbo = loss == "elbo";
      s.dataset_size = static_cast<int>(cfg.train.dataset_size);
      s.epochs = epoch_minibatches(cfg, s.elbo);
      s.symmetry = make_generators(m.symmetry, target.dim());
      s.symmetry_tolerance = m.symmetry_tolerance;
      s.symmetry_rate = m.symmetry_rate;
      s.symmetry_warmup = m.symmetry_warmup;
      s.symmetry_points = m.symmetry_points == "prior"   ? SymmetryPoints::prior
                          : m.symmetry_points == "orbit" ? SymmetryPoints::orbit
                                                         : SymmetryPoints::start;
      return std::make_unique<NhfFlow<T>>(target, make_base(cfg.base, target.dim()), s, max_batch,
                                          static_cast<std::uint32_t>(cfg.run.seed));
    }
    if (kind == "hgf") {
      if (loss != "velocity_matching")
        throw InputError("train.loss = " + loss + " is not available for model.kind = hgf (velocity_matching)");
      HgfSpec s;
      s.path.kind = parse_path(m.path);
      s.path.omega = m.omega;
      s.path.sigma_v = m.sigma_v;
      s.path.time = m.path_time;
      s.exact_velocity = m.velocity == "exact";
      s.kernels = static_cast<int>(m.kernels);
      s.hidden = widths(m.hidden, "model.hidden");
      s.activation = parse_activation(m.activation);
      s.time_input = m.time_input;
      s.output_gain = m.output_gain;
      s.steps = static_cast<int>(m.integration_steps);
      s.dataset_size = static_cast<int>(cfg.train.dataset_size);
      s.epochs = epoch_minibatches(cfg, true);
      return std::make_unique<HgfFlow<T>>(target, s, max_batch, static_cast<std::uint32_t>(cfg.run.seed));
    }
    if (kind == "hsm") {
      if (loss != "hsm" && loss != "dsm")
        throw InputError("train.loss = " + loss + " is not available for model.kind = hsm (hsm or dsm)");
      HsmSpec s;
      s.quadratic_potential = m.potential == "quadratic";
      s.hidden = widths(m.hidden, "model.hidden");
      s.activation = parse_activation(m.activation);
      s.kernels = static_cast<int>(m.kernels);
      s.time_input = m.time_input;
      s.output_gain = m.output_gain;
      s.steps = static_cast<int>(m.leapfrog_steps);
      s.time = m.time;
      s.dsm = loss == "dsm";
      s.dsm_sigma = cfg.train.dsm_sigma;
      s.inner_steps = static_cast<int>(cfg.train.inner_steps);
      s.inner_lr_scale = cfg.train.inner_lr_scale;
      s.dataset_size = static_cast<int>(cfg.train.dataset_size);
      s.epochs = epoch_minibatches(cfg, true);
      return std::make_unique<HsmModel<T>>(target, s, max_batch, static_cast<std::uint32_t>(cfg.run.seed));
    }
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("model: ") + e.what());
  }
  throw InputError("model.kind = " + kind + " is not available");
}

template std::unique_ptr<Model<float>> make_model<float>(const Settings&, const Distribution&, int, int);
template std::unique_ptr<Model<double>> make_model<double>(const Settings&, const Distribution&, int, int);

}  // namespace bf
