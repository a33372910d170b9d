// From configuration keys to physics objects.
#pragma once

#include <memory>

#include "physics/targets.hpp"
#include "src/config.hpp"

namespace bf {

/// The target the config describes. Fills unset preset parameters of `cfg`
/// with the values actually used, so the resolved config records them.
/// Throws InputError naming the key on impossible values.
std::unique_ptr<Distribution> make_target(Config& cfg);

}  // namespace bf
