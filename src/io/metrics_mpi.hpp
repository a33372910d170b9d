// Exact reduction of metric sums across MPI ranks, and their JSON form.
//
// Order of the reduction (physics/metrics.hpp): the largest log weight first
// (MPI_MAX), then every rank rescales its sums to it and they are added
// (MPI_SUM); minimum distances by MPI_MIN; counts as 64-bit integers.
#pragma once

#include <mpi.h>

#include <vector>

#include "physics/metrics.hpp"
#include "src/io/json.hpp"

namespace bf {

/// The global sums of every rank's sums (collective over comm).
MetricSums allreduce(const MetricSums& local, MPI_Comm comm);
/// Every rank's sums, on root only (collective over comm).
std::vector<MetricSums> gather_to_root(const MetricSums& local, MPI_Comm comm);

/// The metric keys of `evaluate --json` and `check --json`.
Json to_json(const Metrics& m);
/// The header and one row of the per-rank metrics table printed by check and evaluate.
std::string metrics_table_header(bool score_model = false);
std::string metrics_table_row(const std::string& who, const Metrics& m);
/// One line on how far the log Z error bar can be trusted: n_eff = ESS·n and
/// the Pareto k̂ of the weights against its threshold, and a warning when either fails.
std::string log_z_reliability(const Metrics& m);

/// A score model's figure, one line: the relative score error and its standard error; empty otherwise.
std::string score_text(const Metrics& m);

/// For a phase-space flow (NHF), what its reverse/forward figures are, and the
/// marginal estimate's figures with K; empty for other flows.
std::string phase_space_text(const Metrics& m);
/// The marginal estimate's line (and NOT CONVERGED when it is), or that it is off; empty for other flows.
std::string marginal_text(const Metrics& m);

/// The target's figures with jackknife errors, a table (empty if none).
std::string estimators_text(const Metrics& m);
/// The same as one batch-table cell: "name=reweighted+-error;..." (empty if none).
std::string estimators_cell(const Metrics& m);

/// Lines "  name  mean +- sd (reweighted ...; exact ...)" for the observables.
std::string observables_text(const Metrics& m);

/// The symmetry figures, a line each where present: the held-out log-likelihood, the
/// angular moments and the angle histogram's TV from the uniform (with their noise
/// levels), the constraint E[{g, H}²]. Empty if none applies.
std::string symmetry_text(const Metrics& m);

}  // namespace bf
