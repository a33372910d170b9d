#include "src/model_config.hpp"

#include "flows/affine.hpp"
#include "flows/cnf.hpp"
#include "flows/nhf.hpp"
#include "physics/targets.hpp"

namespace bf {

std::shared_ptr<const Distribution> make_base(const Config& cfg, int dim) {
  BaseSpec b;
  b.kind = cfg.get_string("base.kind");
  b.sigma = cfg.get_real("base.sigma");
  b.power = cfg.get_real("base.power");
  b.scale = cfg.get_real("base.scale");
  b.half_width = cfg.get_real("base.half_width");
  b.beta = cfg.get_real("base.beta");
  try {
    return std::shared_ptr<const Distribution>(bf::make_base(b, dim));
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("base: ") + e.what());
  }
}

namespace {
std::vector<int> widths(const Config& cfg, const std::string& key) {
  std::vector<int> w;
  for (long long v : cfg.get_ints(key)) w.push_back(static_cast<int>(v));
  if (w.empty()) throw InputError(key + ": needs at least one hidden width");
  return w;
}
}  // namespace

template <class T>
std::unique_ptr<Model<T>> make_model(Config& cfg, const Distribution& target, int max_batch, int train_batch) {
  const std::string kind = cfg.get_string("model.kind");
  const std::string loss = cfg.get_string("train.loss");
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
      s.kernels = static_cast<int>(cfg.get_int("model.kernels"));
      s.hidden = widths(cfg, "model.hidden");
      s.activation = parse_activation(cfg.get_string("model.activation"));
      s.time_input = cfg.get_bool("model.time_input");
      s.trainable = cfg.get_string("model.interpolation") == "trainable";
      s.g_hidden = cfg.is_set("model.g_hidden") ? widths(cfg, "model.g_hidden") : s.hidden;
      s.c_hidden = widths(cfg, "model.c_hidden");
      s.steps = static_cast<int>(cfg.get_int("model.integration_steps"));
      s.deformation = loss == "deformation";
      s.importance_weights = cfg.get_string("model.trajectory_weights") == "importance";
      s.time_chunk = static_cast<int>(cfg.get_int("model.time_chunk"));
      s.output_gain = cfg.get_real("model.output_gain");
      s.train_batch = std::max(1, train_batch);
      if (!s.deformation && s.trainable)
        throw InputError("model.interpolation = trainable needs train.loss = deformation");
      return std::make_unique<CnfFlow<T>>(target, make_base(cfg, target.dim()), s, max_batch);
    }
    if (kind == "nhf") {
      if (loss != "elbo" && loss != "reverse_kl")
        throw InputError("train.loss = " + loss + " is not available for model.kind = nhf (elbo or reverse_kl)");
      NhfSpec s;
      s.hidden = widths(cfg, "model.hidden");
      s.activation = parse_activation(cfg.get_string("model.activation"));
      s.fixed_kinetic = cfg.get_string("model.kinetic") == "fixed";
      s.steps = static_cast<int>(cfg.get_int("model.leapfrog_steps"));
      s.time = cfg.get_real("model.time");
      s.elbo = loss == "elbo";
      s.dataset_size = static_cast<int>(cfg.get_int("train.dataset_size"));
      s.epochs = cfg.get_string("train.minibatch") == "epochs";
      if (s.elbo && s.epochs && cfg.get_int("train.batch") > s.dataset_size)
        throw InputError("train.minibatch = epochs needs train.batch (" + cfg.raw("train.batch") +
                         ") at most train.dataset_size (" + cfg.raw("train.dataset_size") + ")");
      return std::make_unique<NhfFlow<T>>(target, make_base(cfg, target.dim()), s, max_batch,
                                          static_cast<std::uint32_t>(cfg.get_int("run.seed")));
    }
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("model: ") + e.what());
  }
  throw InputError("model.kind = " + kind + " is not available");
}

template std::unique_ptr<Model<float>> make_model<float>(Config&, const Distribution&, int, int);
template std::unique_ptr<Model<double>> make_model<double>(Config&, const Distribution&, int, int);

}  // namespace bf
