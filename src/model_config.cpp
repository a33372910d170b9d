#include "src/model_config.hpp"

#include "flows/affine.hpp"

namespace bf {

template <class T>
std::unique_ptr<Model<T>> make_model(Config& cfg, const Distribution& target, int max_batch) {
  const std::string kind = cfg.get_string("model.kind");
  const std::string loss = cfg.get_string("train.loss");
  try {
    if (kind == "affine") {
      if (loss != "reverse_kl")
        throw InputError("train.loss = " + loss + " is not available for model.kind = affine (use reverse_kl)");
      return std::make_unique<AffineFlow<T>>(target, max_batch);
    }
  } catch (const std::invalid_argument& e) {
    throw InputError(std::string("model: ") + e.what());
  }
  throw InputError("model.kind = " + kind + " is not available");
}

template std::unique_ptr<Model<float>> make_model<float>(Config&, const Distribution&, int);
template std::unique_ptr<Model<double>> make_model<double>(Config&, const Distribution&, int);

}  // namespace bf
