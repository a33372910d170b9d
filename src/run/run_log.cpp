#include "src/run/run_log.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "src/io/metrics_mpi.hpp"

namespace bf {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long long t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

RunLog::RunLog(Environment& env, RunPaths paths, const std::string& progress, long long log_every)
    : env_(env), paths_(std::move(paths)), log_every_(std::max(1LL, log_every)) {
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK") ||
                        std::getenv("SLURM_STEP_ID");
  tty_ = env_.root() && (progress == "line" || (progress == "auto" && isatty(STDOUT_FILENO) && !launched));
}

void RunLog::open(const std::string& history, const std::string& rank_history) {
  history_ = history;
  rank_history_ = rank_history;
  if (env_.root()) metrics_.open(paths_.metrics(), history_);
  rank_metrics_.open(paths_.rank_metrics(env_.rank()), rank_history_);
}

void RunLog::append(const Json& row, const Json& rank_row) {
  if (env_.root()) {
    const std::string line = row.dump();
    history_ += line + "\n";
    metrics_.write(line);
  }
  const std::string rl = rank_row.dump();
  rank_history_ += rl + "\n";
  rank_metrics_.write(rl);
}

void RunLog::rewind(std::int64_t last_step, const Json& event) {
  if (env_.root()) {
    history_ = rows_up_to(history_, last_step) + event.dump() + "\n";
    metrics_.open(paths_.metrics(), history_);
  }
  rank_history_ = rows_up_to(rank_history_, last_step);
  rank_metrics_.open(paths_.rank_metrics(env_.rank()), rank_history_);
}

void RunLog::event(const Json& ev) {
  if (!env_.root()) return;
  metrics_.write(ev.dump());
  metrics_.flush();
}

void RunLog::flush() {
  if (env_.root()) metrics_.flush();
  rank_metrics_.flush();
}

void RunLog::note(const std::string& text) {
  if (env_.root()) std::cout << (tty_ ? "\n" : "") << text << "\n" << std::flush;
}

void RunLog::begin(std::int64_t s) {
  rate_t0_ = now_seconds();
  rate_s0_ = s;
}

void RunLog::progress(std::int64_t s, std::int64_t steps, double loss, const std::string& ess) {
  if (!env_.root()) return;
  const double t = now_seconds();
  const double rate = static_cast<double>(s - rate_s0_) / std::max(1e-9, t - rate_t0_);
  if ((tty_ && t - last_print_ > 0.25) || (!tty_ && (s % log_every_ == 0 || s == steps))) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "step %lld/%lld  loss %.6g  ESS %s  %.3g steps/s  ETA %s", static_cast<long long>(s),
                  static_cast<long long>(steps), loss, ess.c_str(), rate,
                  format_duration(static_cast<double>(steps - s) / rate).c_str());
    std::cout << (tty_ ? "\r" : "") << buf << (tty_ ? "   " : "\n") << std::flush;
    last_print_ = t;
  }
  if (t - rate_t0_ > 30) rate_t0_ = t, rate_s0_ = s;
}

void RunLog::end_progress() {
  if (env_.root() && tty_) std::cout << "\n";
}

std::string run_summary(const Metrics& m, long long steps, double wall, long long samples,
                        const std::string& potential, const std::string& histogram_path, const std::string& dir) {
  std::ostringstream os;
  if (m.score_model) {
    os << "done: " << steps << " steps in " << format_duration(wall) << "; final metrics:\n  " << score_text(m);
    if (!potential.empty()) os << "  " << potential << " (" << dir << "/potential.h5)\n";
    os << "  run directory: " << dir << "\n";
    return os.str();
  }
  os << "done: " << steps << " steps in " << format_duration(wall) << "; final metrics (" << samples << " samples):\n"
     << (m.phase_space ? "  phase-space " : "  ") << "reverse_kl " << fmt_num(m.reverse_kl) << "  reverse_ess " << fmt_num(m.reverse_ess) << "  log_z "
     << fmt_num(m.log_z) << " +- " << fmt_num(m.log_z_stderr) << "\n  " << log_z_reliability(m)
     << "\n  hausdorff " << fmt_num(m.hausdorff)
     << "  mode_coverage_tv " << fmt_num(m.mode_coverage_tv);
  if (m.has_forward) os << "  forward_kl " << fmt_num(m.forward_kl) << "  forward_ess " << fmt_num(m.forward_ess);
  if (m.phase_space) {
    std::istringstream in(marginal_text(m));
    for (std::string line; std::getline(in, line);) os << "\n  " << line;
  }
  os << "\n  mode fractions:";
  for (double f : m.mode_fractions) os << " " << fmt_num(std::round(f * 1e4) / 1e4);
  os << " (of the finite samples; non-finite: " << m.non_finite_samples << ")\n";
  if (m.non_finite_samples > 0)
    os << "  WARNING: " << m.non_finite_samples << " of " << samples
       << " samples are NaN or infinite; hausdorff and mode coverage leave them out\n";
  if (!m.observables.empty()) os << "  observables:\n" << observables_text(m);
  {
    std::istringstream in(symmetry_text(m));
    for (std::string line; std::getline(in, line);) os << "  " << line << "\n";
  }
  if (!m.estimators.empty()) {
    std::istringstream in(estimators_text(m));
    for (std::string line; std::getline(in, line);) os << "  " << line << "\n";
  }
  if (!potential.empty()) os << "  " << potential << " (" << dir << "/potential.h5)\n";
  if (!histogram_path.empty())
    os << "  histogram (" << histogram_path << "; '|' " << m.histogram.reference_name << "):\n  " << m.histogram.text();
  os << "  run directory: " << dir << "\n";
  os << "  plots: /usr/bin/python3 " << BOLTZFLOW_PLOT_SCRIPT << " " << dir << "\n";
  return os.str();
}

}  // namespace bf
