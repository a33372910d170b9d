// The JLA binned distance moduli (Betoule et al. 2014, Appendix F), compiled
// into the program from physics/jla/ by cmake/BoltzflowEmbedData.cmake.
#pragma once

namespace bf {
namespace jla {
extern const int n_bins;
extern const double redshift[];
extern const double distance_modulus[];
extern const double covariance[];  // n_bins x n_bins, row-major
}  // namespace jla
}  // namespace bf
