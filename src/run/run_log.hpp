// What a training run writes as it goes: metrics.jsonl (root: one row per
// step, events), metrics.rank<r>.jsonl (every rank: its own rows), the
// progress line or lines on stdout, the notes (stop, rollback) and the final
// summary. The history (the rows written so far) is kept in memory for the
// checkpoint, so a resumed or rolled-back run rewrites the files from it.
#pragma once

#include <cstdint>
#include <string>

#include "physics/metrics.hpp"
#include "src/io/json.hpp"
#include "src/io/mpi_env.hpp"
#include "src/run/run_dir.hpp"

namespace bf {

class RunLog {
 public:
  /// progress: "line" (a live line), "plain" (lines every log_every steps) or "auto"
  /// (live on a terminal not started by a launcher, plain otherwise).
  RunLog(Environment& env, RunPaths paths, const std::string& progress, long long log_every);

  /// Opens the files with the given histories as their content (fresh: empty).
  void open(const std::string& history, const std::string& rank_history);
  void append(const Json& row, const Json& rank_row);
  /// Drops rows with step > last_step (files and history) and appends `event` (root).
  void rewind(std::int64_t last_step, const Json& event);
  /// An event row written and flushed at once (root), outside the history.
  void event(const Json& ev);
  void flush();

  /// A note on stdout (root), on a line of its own also under a live progress line.
  void note(const std::string& text);
  /// Starts the steps/s clock at step s.
  void begin(std::int64_t s);
  /// The progress after step s of `steps` (root; throttled).
  void progress(std::int64_t s, std::int64_t steps, double loss, const std::string& ess);
  /// Ends a live progress line before the summary.
  void end_progress();

  const std::string& history() const { return history_; }
  const std::string& rank_history() const { return rank_history_; }
  bool live() const { return tty_; }

 private:
  Environment& env_;
  RunPaths paths_;
  bool tty_ = false;
  long long log_every_ = 1;
  std::string history_, rank_history_;
  JsonlWriter metrics_, rank_metrics_;
  double last_print_ = 0, rate_t0_ = 0;
  std::int64_t rate_s0_ = 0;
};

/// Seconds on a steady clock; "H:MM:SS" or "M:SS" ("--:--" if not finite).
double now_seconds();
std::string format_duration(double seconds);

/// The end-of-run summary (root prints it): final metrics with their error bars, observables,
/// the potential map's and the histogram's lines when written.
std::string run_summary(const Metrics& m, long long steps, double wall, long long samples,
                        const std::string& potential, const std::string& histogram_path, const std::string& dir);

}  // namespace bf
