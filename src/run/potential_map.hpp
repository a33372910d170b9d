// Maps for 2-D targets beside a run's checkpoint.
//
// What the fixed-kinetic NHF paper is about: the learned potential V on a
// grid, its local minima against the target's modes, and the learned mass
// matrix. Written as HDF5 (/potential [N x N], /x, /y, /modes, /minima,
// /maxima, /mass_matrix) for 2-D targets.
#pragma once

#include <string>
#include <vector>

#include "flows/model.hpp"

namespace bf {

struct PotentialSummary {
  bool written = false;
  int minima = 0;             // local minima of V on the grid
  int modes_with_minimum = 0;  // modes with a local minimum within `radius`
  int maxima = 0;              // local maxima of V on the grid (the MLP kinetic's V may peak at modes)
  int modes_with_maximum = 0;  // modes with a local maximum within `radius`
  int modes = 0;
  double radius = 0;
  std::vector<double> mass_matrix;  // fixed kinetic
  std::string text() const;
};

/// Strict local extrema of v[i * ys.size() + j] = V(xs[i], ys[j]) over the 8 neighbours of each interior
/// point: minima for sign = +1, maxima for sign = -1; returned as (x, y) pairs.
std::vector<double> grid_extrema(const std::vector<double>& v, const std::vector<double>& xs,
                                 const std::vector<double>& ys, int sign);

/// For models with a learned potential (Model::learned_potential: NHF) on 2-D targets: evaluates V
/// and writes `path`; otherwise returns written = false.
template <class T>
PotentialSummary write_potential_map(Model<T>& model, const Vector<T>& params, const Distribution& target,
                                     const std::string& path, int grid = 161);

/// For 2-D targets: the target's log density on a grid over its modes (/log_density [N x N] at
/// (/x_i, /y_j), normalised where log Z is known: /normalised) and `samples` samples of the flow
/// (/samples, the evaluation's stream), with /modes, for plots (jobs/plot.py). False otherwise,
/// and for a model without a sampler (a score model).
template <class T>
bool write_density_map(Model<T>& model, const Vector<T>& params, const Distribution& target, std::uint32_t seed,
                       const std::string& path, int samples = 2000, int grid = 121);

}  // namespace bf
