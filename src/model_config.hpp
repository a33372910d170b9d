// From configuration keys to a flow model.
#pragma once

#include <memory>

#include "flows/model.hpp"
#include "src/config.hpp"

namespace bf {

/// The model cfg describes for `target`, with workspaces to sample `max_batch`
/// points per rank at once and to take the loss of `train_batch` (1 where the
/// model only samples). Throws InputError naming the key on impossible values.
template <class T>
std::unique_ptr<Model<T>> make_model(Config& cfg, const Distribution& target, int max_batch, int train_batch);

/// The base distribution (cnf) or prior (nhf) of the [base] keys in dimension dim.
std::shared_ptr<const Distribution> make_base(const Config& cfg, int dim);

/// Calls f(float{}) or f(double{}) as model.precision says.
template <class F>
auto with_precision(const Config& cfg, F&& f) {
  if (cfg.get_string("model.precision") == "float") return f(float{});
  return f(double{});
}

}  // namespace bf
