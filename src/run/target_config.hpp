// From the target settings to physics objects.
#pragma once

#include <memory>

#include "physics/targets.hpp"
#include "src/run/settings.hpp"

namespace bf {

/// `cfg` with the values the target's preset uses (physics' phi4_preset) for the
/// keys it leaves unset (phi4: target.m, target.lambda, target.alpha; phi4-dw: m,
/// lambda; phi4-general: alpha), each with the origin "preset NAME", so the
/// resolved config records them. A pure function of its argument.
Config with_presets(Config cfg);

/// The target of preset-resolved settings (with_presets). Built once per
/// command: the supernova's moment quadrature is not cheap. Throws InputError
/// naming the key on impossible values.
std::unique_ptr<Distribution> make_target(const TargetSettings& t);

}  // namespace bf
