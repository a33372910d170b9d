// The registry of every configuration key: type, default, range and meaning.
// --help, INI parsing, command-line overrides and the resolved config.ini all
// come from this one table.
#include "src/config.hpp"

namespace bf {

const std::vector<KeyInfo>& config_registry() {
  using K = KeyType;
  static const std::vector<KeyInfo> keys{
      // ---- run
      {"run.seed", K::Int, "1", "seed of every random stream (Philox key); 0 to 2^32-1", {}, 0, 4294967295.0},

      // ---- target
      {"target.name", K::Choice, "gmm4",
       "target density: Gaussian mixture presets, a mixture given in full (gmm), phi^4 presets, the "
       "supernova posterior",
       {"gmm4", "gmm2asym", "gmm9", "gmm", "phi4", "phi4-dw", "phi4-general", "supernova"}},
      {"target.dim", K::Int, "", "gmm: dimension of the mixture", {}, 1, 1e6},
      {"target.weights", K::RealList, "", "gmm: component weights (normalised), e.g. '0.5, 0.5'", {}, 1e-300, 1e300},
      {"target.means", K::RealList, "", "gmm: component means, component after component (K x dim numbers)"},
      {"target.widths", K::RealList, "", "gmm: component standard deviations (one, or one per component)", {},
       1e-300, 1e300},
      {"target.shape", K::IntList, "16", "phi4*: periodic lattice extents, e.g. '16' or '8x8'", {}, 2, 1e6},
      {"target.m", K::Real, "",
       "phi4: mass parameter m of Mate Eq. 19 (unset: 0.5); phi4-dw: m of the double well (unset: 3)"},
      {"target.lambda", K::Real, "", "phi4: quartic coupling (unset: 1/16); phi4-dw: lambda (unset: 1)", {}, 1e-300,
       1e300},
      {"target.alpha", K::Real, "", "phi4: shift of the quartic term (unset: 0.01); phi4-general (unset: 0)"},
      {"target.time_extent", K::Real, "4", "phi4-dw: Euclidean time extent T (dT = T/N)", {}, 1e-300, 1e300},
      {"target.kappa", K::Real, "1", "phi4-general: hopping coupling kappa", {}, 0, 1e300},
      {"target.mu2", K::Real, "-0.5", "phi4-general: quadratic coupling mu2"},
      {"target.lambda4", K::Real, "0.0625", "phi4-general: quartic coupling lambda4", {}, 1e-300, 1e300},
      {"target.quadrature_grid", K::Int, "2000",
       "supernova: points per axis of the quadrature giving exact posterior moments", {}, 10, 100000},
  };
  return keys;
}

}  // namespace bf
