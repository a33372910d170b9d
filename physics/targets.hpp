// Construction of targets and base distributions by name.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "physics/base_distributions.hpp"
#include "physics/distribution.hpp"
#include "physics/gaussian_mixture.hpp"
#include "physics/o2_phi4.hpp"
#include "physics/phi4.hpp"
#include "physics/rings.hpp"
#include "physics/supernova.hpp"

namespace bf {

struct TargetSpec {
  /// gmm4 | gmm2asym | gmm9 | gmm | phi4 | phi4-dw | phi4-general | supernova | ring | o2-phi4
  std::string name = "gmm4";
  // name = gmm: a mixture given in full.
  int dim = 0;
  std::vector<double> weights;  // K
  std::vector<double> means;    // K * dim, component-major
  std::vector<double> widths;   // K (gmm, ring)
  // name = ring: concentric rings (weights and widths as gmm's; weights empty: equal).
  std::vector<double> radii;
  // φ⁴ presets; o2-phi4 takes shape, m and lambda from here.
  Phi4Params phi4;
  // supernova: points per axis of the moment quadrature.
  int quadrature_grid = 2000;
};

/// Every accepted target name.
const std::vector<std::string>& target_names();
/// Builds a target; throws std::invalid_argument naming the problem.
std::unique_ptr<Distribution> make_target(const TargetSpec& spec);

struct BaseSpec {
  std::string kind = "gengauss";  // gengauss | gauss | softuniform
  double sigma = 1.0;             // gengauss: σ
  double power = 2.0;             // gengauss: p
  double scale = 1.0;             // gauss: standard deviation s
  double half_width = 3.0;        // softuniform: a
  double beta = 1.0;              // softuniform: β
};

const std::vector<std::string>& base_names();
std::unique_ptr<Distribution> make_base(const BaseSpec& spec, int dim);

}  // namespace bf
