#include "src/run/potential_map.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "src/io/hdf5_util.hpp"

namespace bf {

std::string PotentialSummary::text() const {
  if (!written) return "";
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "learned potential V: %d local minima on the grid (%d of %d modes have one within %.2f), %d local maxima "
                "(%d of %d modes)",
                minima, modes_with_minimum, modes, radius, maxima, modes_with_maximum, modes);
  std::string s = buf;
  if (mass_matrix.size() == 4) {
    std::snprintf(buf, sizeof buf, "; mass matrix M = [[%.4g, %.4g], [%.4g, %.4g]]", mass_matrix[0], mass_matrix[1],
                  mass_matrix[2], mass_matrix[3]);
    s += buf;
  }
  return s;
}

std::vector<double> grid_extrema(const std::vector<double>& v, const std::vector<double>& xs,
                                 const std::vector<double>& ys, int sign) {
  const std::size_t nx = xs.size(), ny = ys.size();
  if (v.size() != nx * ny) throw std::invalid_argument("grid_extrema: values do not match the grid");
  std::vector<double> at;
  for (std::size_t i = 1; i + 1 < nx; ++i)
    for (std::size_t j = 1; j + 1 < ny; ++j) {
      const double c = sign * v[i * ny + j];
      bool strict = true;
      for (int di = -1; di <= 1 && strict; ++di)
        for (int dj = -1; dj <= 1 && strict; ++dj)
          strict = !(di || dj) || sign * v[(i + di) * ny + j + dj] > c;
      if (strict) at.push_back(xs[i]), at.push_back(ys[j]);
    }
  return at;
}

template <class T>
PotentialSummary write_potential_map(Model<T>& model, const Vector<T>& params, const Distribution& target,
                                     const std::string& path, int grid) {
  PotentialSummary out;
  LearnedPotential<T>* nhf = model.learned_potential();
  if (!nhf || target.dim() != 2) return out;
  const auto& means = target.modes().means;
  double lo[2] = {1e300, 1e300}, hi[2] = {-1e300, -1e300};
  for (const auto& m : means)
    for (int j = 0; j < 2; ++j) lo[j] = std::min(lo[j], m[j]), hi[j] = std::max(hi[j], m[j]);
  double min_sep = std::numeric_limits<double>::infinity();
  for (std::size_t a = 0; a < means.size(); ++a)
    for (std::size_t b = a + 1; b < means.size(); ++b)
      min_sep = std::min(min_sep, std::hypot(means[a][0] - means[b][0], means[a][1] - means[b][1]));
  const double pad = std::max(1.5, 0.25 * std::max(hi[0] - lo[0], hi[1] - lo[1]));
  std::vector<double> xs(grid), ys(grid), pts;
  for (int i = 0; i < grid; ++i) {
    xs[i] = lo[0] - pad + (hi[0] - lo[0] + 2 * pad) * i / (grid - 1);
    ys[i] = lo[1] - pad + (hi[1] - lo[1] + 2 * pad) * i / (grid - 1);
  }
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) pts.push_back(xs[i]), pts.push_back(ys[j]);
  const std::vector<double> v = nhf->potential(params, pts);  // v[i * grid + j] = V(x_i, y_j)
  const std::vector<double> minima = grid_extrema(v, xs, ys, +1), maxima = grid_extrema(v, xs, ys, -1);
  out.written = true;
  out.minima = static_cast<int>(minima.size() / 2);
  out.maxima = static_cast<int>(maxima.size() / 2);
  out.modes = static_cast<int>(means.size());
  out.radius = std::isfinite(min_sep) ? 0.25 * min_sep : 0.5;
  auto modes_near = [&](const std::vector<double>& at) {
    int n = 0;
    for (const auto& m : means) {
      bool found = false;
      for (std::size_t k = 0; k < at.size(); k += 2)
        found = found || std::hypot(at[k] - m[0], at[k + 1] - m[1]) <= out.radius;
      n += found ? 1 : 0;
    }
    return n;
  };
  out.modes_with_minimum = modes_near(minima);
  out.modes_with_maximum = modes_near(maxima);
  out.mass_matrix = nhf->mass_matrix(params);
  std::vector<double> mm;
  for (const auto& m : means) mm.insert(mm.end(), m.begin(), m.end());
  const std::string tmp = path + ".tmp";
  {
    h5::Handle f = h5::create_file(tmp);
    h5::write_string(f, "format", "boltzflow-potential");
    h5::write_matrix(f, "potential", v, grid, grid);
    h5::write_array(f, "x", xs, false);
    h5::write_array(f, "y", ys, false);
    h5::write_matrix(f, "modes", mm, means.size(), 2);
    h5::write_matrix(f, "minima", minima, minima.size() / 2, 2);
    h5::write_matrix(f, "maxima", maxima, maxima.size() / 2, 2);
    if (!out.mass_matrix.empty()) h5::write_matrix(f, "mass_matrix", out.mass_matrix, 2, 2);
    h5::write_string(f, "summary", out.text());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
  return out;
}

template PotentialSummary write_potential_map<float>(Model<float>&, const Vector<float>&, const Distribution&,
                                                     const std::string&, int);
template PotentialSummary write_potential_map<double>(Model<double>&, const Vector<double>&, const Distribution&,
                                                      const std::string&, int);

}  // namespace bf
