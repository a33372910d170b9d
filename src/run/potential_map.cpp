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
                "learned potential: %d local minima on the grid (%d of %d modes have one within %.2f), %d local maxima "
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

namespace {
// A square grid over the target's modes with a margin: axes xs, ys and the
// points (x_i, y_j) row-major (i slow).
struct Grid {
  std::vector<double> xs, ys, pts;
};
Grid mode_grid(const Distribution& target, int grid) {
  const auto& means = target.modes().means;
  double lo[2] = {1e300, 1e300}, hi[2] = {-1e300, -1e300};
  for (const auto& m : means)
    for (int j = 0; j < 2; ++j) lo[j] = std::min(lo[j], m[j]), hi[j] = std::max(hi[j], m[j]);
  const double pad = std::max(1.5, 0.25 * std::max(hi[0] - lo[0], hi[1] - lo[1]));
  Grid g;
  g.xs.resize(grid);
  g.ys.resize(grid);
  for (int i = 0; i < grid; ++i) {
    g.xs[i] = lo[0] - pad + (hi[0] - lo[0] + 2 * pad) * i / (grid - 1);
    g.ys[i] = lo[1] - pad + (hi[1] - lo[1] + 2 * pad) * i / (grid - 1);
  }
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) g.pts.push_back(g.xs[i]), g.pts.push_back(g.ys[j]);
  return g;
}
std::vector<double> flat_modes(const Distribution& target) {
  std::vector<double> mm;
  for (const auto& m : target.modes().means) mm.insert(mm.end(), m.begin(), m.end());
  return mm;
}
}  // namespace

template <class T>
PotentialSummary write_potential_map(Model<T>& model, const Vector<T>& params, const Distribution& target,
                                     const std::string& path, int grid) {
  PotentialSummary out;
  LearnedPotential<T>* nhf = model.learned_potential();
  if (!nhf || target.dim() != 2) return out;
  const auto& means = target.modes().means;
  double min_sep = std::numeric_limits<double>::infinity();
  for (std::size_t a = 0; a < means.size(); ++a)
    for (std::size_t b = a + 1; b < means.size(); ++b)
      min_sep = std::min(min_sep, std::hypot(means[a][0] - means[b][0], means[a][1] - means[b][1]));
  const Grid gr = mode_grid(target, grid);
  const std::vector<double>&xs = gr.xs, &ys = gr.ys, &pts = gr.pts;
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
  const std::vector<double> mm = flat_modes(target);
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

template <class T>
bool write_density_map(Model<T>& model, const Vector<T>& params, const Distribution& target, std::uint32_t seed,
                       const std::string& path, int samples, int grid) {
  if (target.dim() != 2 || !model.has_sampler()) return false;
  const Grid gr = mode_grid(target, grid);
  const int n_grid = grid * grid;
  Matrix<double> g("density_grid", n_grid, 2);
  {
    auto h = Kokkos::create_mirror_view(g);
    for (int i = 0; i < n_grid; ++i) h(i, 0) = gr.pts[2 * i], h(i, 1) = gr.pts[2 * i + 1];
    Kokkos::deep_copy(g, h);
  }
  Vector<double> e("density_energy", n_grid);
  target.energy(g, e);
  const double lz = std::isfinite(target.log_z()) ? target.log_z() : 0.0;
  std::vector<double> logp(n_grid);
  {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), e);
    for (int i = 0; i < n_grid; ++i) logp[i] = -h(i) - lz;
  }
  // The flow's samples: the evaluation's stream, in chunks of the model's batch.
  std::vector<double> xs;
  const int chunk = std::max(1, model.max_batch());
  for (int c0 = 0; c0 < samples; c0 += chunk) {
    const int n = std::min(chunk, samples - c0);
    Matrix<double> x("density_samples", n, 2);
    Vector<double> lq("density_log_q", n);
    model.sample(params, seed, Purpose::eval, 0, static_cast<std::uint64_t>(c0), x, lq);
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    for (int i = 0; i < n; ++i) xs.push_back(h(i, 0)), xs.push_back(h(i, 1));
  }
  const std::vector<double> mm = flat_modes(target);
  const std::string tmp = path + ".tmp";
  {
    h5::Handle f = h5::create_file(tmp);
    h5::write_string(f, "format", "boltzflow-density");
    h5::write_string(f, "target", target.description());
    h5::write_matrix(f, "log_density", logp, grid, grid);
    h5::write_int(f, "normalised", std::isfinite(target.log_z()) ? 1 : 0);
    h5::write_array(f, "x", gr.xs, false);
    h5::write_array(f, "y", gr.ys, false);
    h5::write_matrix(f, "samples", xs, xs.size() / 2, 2);
    h5::write_matrix(f, "modes", mm, mm.size() / 2, 2);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
  return true;
}

template bool write_density_map<float>(Model<float>&, const Vector<float>&, const Distribution&, std::uint32_t,
                                       const std::string&, int, int);
template bool write_density_map<double>(Model<double>&, const Vector<double>&, const Distribution&, std::uint32_t,
                                        const std::string&, int, int);

template PotentialSummary write_potential_map<float>(Model<float>&, const Vector<float>&, const Distribution&,
                                                     const std::string&, int);
template PotentialSummary write_potential_map<double>(Model<double>&, const Vector<double>&, const Distribution&,
                                                      const std::string&, int);

}  // namespace bf
