// From the settings to a flow model.
#pragma once

#include <memory>

#include "flows/model.hpp"
#include "src/run/settings.hpp"

namespace bf {

/// The model cfg describes for `target`, with workspaces to sample `max_batch`
/// points per rank at once and to take the loss of `train_batch` (1 where the
/// model only samples). Throws InputError naming the key on impossible values.
template <class T>
std::unique_ptr<Model<T>> make_model(const Settings& cfg, const Distribution& target, int max_batch, int train_batch);

/// The base distribution (cnf) or prior (nhf) of the [base] settings in dimension dim.
std::shared_ptr<const Distribution> make_base(const BaseSettings& base, int dim);

/// Calls f(float{}) or f(double{}) as model.precision says.
template <class F>
auto with_precision(const Settings& cfg, F&& f) {
  if (cfg.model.precision == "float") return f(float{});
  return f(double{});
}

}  // namespace bf
