// From the target settings to physics objects.
#pragma once

#include <memory>

#include "physics/targets.hpp"
#include "src/run/settings.hpp"

namespace bf {

/// `cfg` with the values the target's preset uses for the keys it leaves unset
/// (phi4: target.m 0.5, target.lambda 1/16, target.alpha 0.01; phi4-dw: m 3,
/// lambda 1; phi4-general: alpha 0), each with the origin "preset NAME", so the
/// resolved config records them. A pure function of its argument.
Config with_presets(Config cfg);

/// The target of preset-resolved settings (with_presets). Built once per
/// command: the supernova's moment quadrature is not cheap. Throws InputError
/// naming the key on impossible values.
std::unique_ptr<Distribution> make_target(const TargetSettings& t);

}  // namespace bf
