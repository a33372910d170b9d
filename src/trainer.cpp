// The training loop (parameters in one flat buffer, Adam, data parallelism
// over MPI ranks, exact checkpoints). One step s:
//   1. ranks agree on a pending SIGTERM/SIGUSR1 (allreduce): checkpoint, exit 3;
//   2. at evaluation steps, the metric suite on θ_s (common random numbers);
//   3. each rank computes Σ ℓ_i and Σ ∇ℓ_i over its share of the global batch
//      (noise by global sample index), one MPI_Allreduce over the flat
//      gradient buffer, division by the global batch;
//   4. a non-finite loss or gradient rolls back to the last in-memory snapshot
//      and lowers the learning rate; otherwise one Adam kernel updates θ.
// Row `step = s` of metrics.jsonl is the loss at θ_s and the learning rate of
// update s; the checkpoint at step s holds θ_s and rows < s, so a resumed run
// rewrites nothing and duplicates nothing.
#include "src/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <sstream>

#include "src/collective_mpi.hpp"
#include "src/evaluation.hpp"
#include "src/json.hpp"
#include "src/metrics_mpi.hpp"
#include "src/model_config.hpp"
#include "src/potential_map.hpp"
#include "src/run_dir.hpp"
#include "src/signals.hpp"
#include "src/target_config.hpp"
#include "src/train_state.hpp"
#include "src/version.hpp"

namespace bf {

bool is_resumable_key(const std::string& key) {
  static const char* keys[] = {"run.out",         "run.checkpoint_every", "run.eval_every", "run.log_every", "run.stop_at", "run.progress",
                               "train.steps",     "train.nan_max_retries", "eval.samples",  "eval.batch",
                               "eval.forward"};
  for (const char* k : keys)
    if (key == k) return true;
  return false;
}

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
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

void add_metrics(Json& row, const Metrics& m) { row.update(to_json(m)); }

template <class T>
class Trainer {
 public:
  Trainer(Environment& env, Config cfg, std::unique_ptr<Distribution> target, const TrainState* resume_from,
          FaultPlan faults)
      : env_(env), cfg_(std::move(cfg)), target_(std::move(target)), coll_(env.comm()), faults_(faults) {
    paths_.dir = cfg_.get_string("run.out");
    seed_ = static_cast<std::uint32_t>(cfg_.get_int("run.seed"));
    batch_ = cfg_.get_int("train.batch");
    steps_ = cfg_.get_int("train.steps");
    mine_ = split_range(batch_, env.rank(), env.size());
    const long long eval_batch = cfg_.get_int("eval.batch");
    const int max_batch = static_cast<int>(std::max<long long>({mine_.count(), eval_batch, 1}));
    model_ = make_model<T>(cfg_, *target_, max_batch, static_cast<int>(std::max<long long>(mine_.count(), 1)));
    const std::size_t n = model_->layout().size();
    params_ = Vector<T>("params", n);
    grad_ = Vector<T>("grad", n);
    snap_params_ = Vector<T>("snapshot_params", n);
    snap_m_ = Vector<T>("snapshot_m", n);
    snap_v_ = Vector<T>("snapshot_v", n);
    host_params_ = Kokkos::create_mirror_view(params_);
    host_grad_ = Kokkos::create_mirror_view(grad_);
    AdamConfig ac;
    ac.beta1 = cfg_.get_real("train.beta1");
    ac.beta2 = cfg_.get_real("train.beta2");
    ac.eps = cfg_.get_real("train.eps");
    ac.clip_norm = cfg_.get_real("train.clip_norm");
    adam_ = std::make_unique<Adam<T>>(n, ac);
    sched_.kind = cfg_.get_string("train.schedule") == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
    sched_.lr = cfg_.get_real("train.lr");
    sched_.final_fraction = cfg_.get_real("train.final_lr_fraction");
    sched_.total_steps = steps_;
    sched_.warmup_steps = cfg_.get_int("train.warmup_steps");

    if (resume_from) {
      restore(*resume_from);
    } else {
      model_->initialize(params_, seed_);
      broadcast_params();
      history_.clear();
    }
  }

  int run() {
    const std::string progress = cfg_.get_string("run.progress");
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") ||
                          std::getenv("PMIX_RANK") || std::getenv("SLURM_STEP_ID");
    const bool tty = env_.root() && (progress == "line" || (progress == "auto" && isatty(STDOUT_FILENO) && !launched));
    if (env_.root()) {
      write_text_atomic(paths_.config(), cfg_.to_ini());
      metrics_.open(paths_.metrics(), history_);
      std::cout << build_description() << "\n"
                << "run " << paths_.dir << ": " << (start_step_ > 0 ? "resuming at step " : "starting at step ")
                << start_step_ << " of " << steps_ << " on " << env_.size() << " rank(s)\n"
                << "  target: " << target_->description() << "\n  model:  " << model_->description() << " ("
                << model_->layout().count() << " parameters, " << cfg_.get_string("model.precision") << ")\n"
                << "  loss " << cfg_.get_string("train.loss") << ", batch " << batch_ << ", lr "
                << fmt_num(sched_.lr) << " (" << cfg_.get_string("train.schedule") << ")\n"
                << std::flush;
    }
    rank_metrics_.open(paths_.rank_metrics(env_.rank()), rank_history_);
    if (start_step_ == 0) write_checkpoint_now(0);
    if (start_step_ >= steps_ && final_done_) {
      if (env_.root()) std::cout << "run already complete at step " << steps_ << "\n";
      return kExitOk;
    }
    const long long eval_every = cfg_.get_int("run.eval_every");
    const long long ckpt_every = cfg_.get_int("run.checkpoint_every");
    const long long snap_every = cfg_.get_int("train.snapshot_every");
    const long long log_every = cfg_.get_int("run.log_every");
    const long long max_retries = cfg_.get_int("train.nan_max_retries");
    const long long stop_at = cfg_.get_int("run.stop_at");
    const double nan_factor = cfg_.get_real("train.nan_lr_factor");
    bool fault_fired = false;

    take_snapshot(start_step_);
    segment_start_ = now_seconds();
    double last_print = 0, rate_t0 = now_seconds();
    long long rate_s0 = start_step_, recover_until = -1;
    std::int64_t s = start_step_;
    while (s < steps_) {
      if (stop_at > 0 && s >= stop_at) {
        write_checkpoint_now(s);
        if (env_.root())
          std::cout << (tty ? "\n" : "") << "stopped at step " << s << " (run.stop_at); resume with --resume\n"
                    << std::flush;
        return kExitOk;
      }
      // 1. a stop signal on any rank stops every rank at this boundary.
      int sig = stop_signal();
      MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, env_.comm());
      if (sig) {
        write_checkpoint_now(s);
        if (env_.root())
          std::cout << (tty ? "\n" : "") << "received signal " << sig << ": checkpointed at step " << s
                    << ", exiting with code 3\n"
                    << std::flush;
        return kExitSignal;
      }
      if (s % snap_every == 0 && s != snap_step_) take_snapshot(s);
      Json row = Json::object(), rank_row = Json::object();
      row["step"] = static_cast<long long>(s);
      rank_row["step"] = static_cast<long long>(s);
      // 2. evaluation of θ_s.
      if (eval_every > 0 && s % eval_every == 0) evaluate_into(row, rank_row);
      // 3. the step.
      Kokkos::deep_copy(grad_, T(0));
      BatchRef b;
      b.seed = seed_;
      b.step = s;
      b.first = static_cast<std::uint64_t>(mine_.begin);
      b.count = static_cast<int>(mine_.count());
      b.global = batch_;
      const double local_loss = mine_.count() > 0 ? model_->loss_and_grad(params_, grad_, b, coll_) : 0.0;
      allreduce_grad();
      double loss = local_loss;
      MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, env_.comm());
      loss /= static_cast<double>(batch_);
      if (s == faults_.nan_at_step && !fault_fired) {
        loss = std::nan("");
        fault_fired = true;
      }
      const double scale = 1.0 / static_cast<double>(batch_);
      const double gnorm = Adam<T>::norm(grad_) * scale;
      const double lr = sched_.at(s) * lr_factor_;
      // 4. non-finite: roll back.
      if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
        ++failures_;
        const double old_factor = lr_factor_;
        lr_factor_ *= nan_factor;
        Json ev = Json::object();
        ev["event"] = "nonfinite";
        ev["at_step"] = static_cast<long long>(s);
        ev["loss"] = loss;
        ev["grad_norm"] = gnorm;
        ev["rolled_back_to"] = static_cast<long long>(snap_step_);
        ev["lr_factor"] = lr_factor_;
        ev["consecutive"] = static_cast<long long>(failures_);
        if (env_.root())
          std::cout << (tty ? "\n" : "") << "step " << s << ": non-finite " << (std::isfinite(loss) ? "gradient" : "loss")
                    << "; rolling back to step " << snap_step_ << " and lowering the learning rate by "
                    << fmt_num(nan_factor) << " (failure " << failures_ << " of at most " << max_retries << ")\n"
                    << std::flush;
        if (failures_ > max_retries) {
          lr_factor_ = old_factor;
          if (env_.root()) {
            metrics_.write(ev.dump());
            metrics_.flush();
          }
          throw RunError("stopping after " + std::to_string(failures_) + " consecutive non-finite steps (step " +
                         std::to_string(s) + "); the last good checkpoint " + paths_.checkpoint() +
                         " is intact. Lower train.lr or enable train.clip_norm.");
        }
        restore_snapshot();
        rewind_history(snap_step_ - 1, ev);
        recover_until = s;
        s = snap_step_;
        continue;
      }
      adam_->step(params_, grad_, lr, scale, gnorm);
      if (s > recover_until) failures_ = 0;
      row["time"] = wall_time();
      row["loss"] = loss;
      row["lr"] = lr;
      row["grad_norm"] = gnorm;
      rank_row["loss"] = mine_.count() > 0 ? local_loss / static_cast<double>(mine_.count()) : std::nan("");
      append_rows(row, rank_row);
      ++s;
      if (s % ckpt_every == 0 && s < steps_) write_checkpoint_now(s);
      // Progress: a live line on a terminal, plain lines otherwise.
      if (env_.root()) {
        const double t = now_seconds();
        const double rate = (s - rate_s0) / std::max(1e-9, t - rate_t0);
        if ((tty && t - last_print > 0.25) || (!tty && (s % log_every == 0 || s == steps_))) {
          char buf[256];
          std::snprintf(buf, sizeof buf, "step %lld/%lld  loss %.6g  ESS %s  %.3g steps/s  ETA %s", static_cast<long long>(s),
                        static_cast<long long>(steps_), loss, last_ess_.c_str(), rate,
                        format_duration((steps_ - s) / rate).c_str());
          std::cout << (tty ? "\r" : "") << buf << (tty ? "   " : "\n") << std::flush;
          last_print = t;
        }
        if (t - rate_t0 > 30) rate_t0 = t, rate_s0 = s;
      }
    }
    // The end: evaluate θ_steps, checkpoint.
    Json row = Json::object(), rank_row = Json::object();
    row["step"] = static_cast<long long>(steps_);
    rank_row["step"] = static_cast<long long>(steps_);
    evaluate_into(row, rank_row);
    row["time"] = wall_time();
    append_rows(row, rank_row);
    final_done_ = true;
    write_checkpoint_now(steps_);
    // NHF on a 2-D target: the learned potential against the modes.
    std::string potential, histogram;
    root_agreed(env_, [&] {
      potential = write_potential_map<T>(*model_, params_, *target_, paths_.dir + "/potential.h5").text();
      // The target's histogram (φ⁴: the mean field against Eq. 21), as HDF5 in the run directory.
      if (!last_eval_.histogram.empty()) {
        histogram = paths_.dir + "/" + last_eval_.histogram.observable + ".h5";
        write_histogram(last_eval_.histogram, histogram);
      }
    });
    if (env_.root()) {
      if (tty) std::cout << "\n";
      std::cout << "done: " << steps_ << " steps in " << format_duration(wall_time()) << "; final metrics ("
                << cfg_.get_int("eval.samples") << " samples):\n"
                << "  reverse_kl " << fmt_num(last_eval_.reverse_kl) << "  reverse_ess "
                << fmt_num(last_eval_.reverse_ess) << "  log_z " << fmt_num(last_eval_.log_z) << " +- "
                << fmt_num(last_eval_.log_z_stderr) << "\n  hausdorff " << fmt_num(last_eval_.hausdorff)
                << "  mode_coverage_tv " << fmt_num(last_eval_.mode_coverage_tv);
      if (last_eval_.has_forward)
        std::cout << "  forward_kl " << fmt_num(last_eval_.forward_kl) << "  forward_ess "
                  << fmt_num(last_eval_.forward_ess);
      std::cout << "\n  mode fractions:";
      for (std::size_t k = 0; k < last_eval_.mode_fractions.size(); ++k)
        std::cout << " " << fmt_num(std::round(last_eval_.mode_fractions[k] * 1e4) / 1e4);
      std::cout << "\n";
      if (!last_eval_.observables.empty()) std::cout << "  observables:\n" << observables_text(last_eval_);
      if (!potential.empty()) std::cout << "  " << potential << " (" << paths_.dir << "/potential.h5)\n";
      if (!histogram.empty())
        std::cout << "  histogram (" << histogram << "; '|' " << last_eval_.histogram.reference_name << "):\n  "
                  << last_eval_.histogram.text();
      std::cout << "  run directory: " << paths_.dir << "\n" << std::flush;
    }
    return kExitOk;
  }

 private:
  void broadcast_params() {
    Kokkos::fence();
    Kokkos::deep_copy(host_params_, params_);
    MPI_Bcast(host_params_.data(), static_cast<int>(host_params_.extent(0)), mpi_type<T>(), 0, env_.comm());
    Kokkos::deep_copy(params_, host_params_);
  }

  void allreduce_grad() { allreduce_sum(env_.comm(), grad_, host_grad_); }

  double wall_time() const { return wall_offset_ + (now_seconds() - segment_start_); }

  void evaluate_into(Json& row, Json& rank_row) {
    const Evaluation ev = evaluate_model(env_, *model_, params_, *target_, seed_, cfg_.get_int("eval.samples"),
                                         cfg_.get_bool("eval.forward"));
    add_metrics(row, ev.global);
    add_metrics(rank_row, ev.local);
    last_eval_ = ev.global;
    last_ess_ = fmt_num(std::round(ev.global.reverse_ess * 1e4) / 1e4);
  }

  void append_rows(const Json& row, const Json& rank_row) {
    if (env_.root()) {
      const std::string line = row.dump();
      history_ += line + "\n";
      metrics_.write(line);
    }
    const std::string rl = rank_row.dump();
    rank_history_ += rl + "\n";
    rank_metrics_.write(rl);
  }

  /// Drops rows with step > last_step (files and history) and records an event.
  void rewind_history(std::int64_t last_step, const Json& event) {
    if (env_.root()) {
      history_ = rows_up_to(history_, last_step) + event.dump() + "\n";
      metrics_.open(paths_.metrics(), history_);
    }
    rank_history_ = rows_up_to(rank_history_, last_step);
    rank_metrics_.open(paths_.rank_metrics(env_.rank()), rank_history_);
  }

  void take_snapshot(std::int64_t s) {
    Kokkos::deep_copy(snap_params_, params_);
    Kokkos::deep_copy(snap_m_, adam_->first_moment());
    Kokkos::deep_copy(snap_v_, adam_->second_moment());
    snap_adam_ = adam_->steps();
    snap_step_ = s;
  }

  void restore_snapshot() {
    Kokkos::deep_copy(params_, snap_params_);
    Kokkos::deep_copy(adam_->first_moment(), snap_m_);
    Kokkos::deep_copy(adam_->second_moment(), snap_v_);
    adam_->set_steps(snap_adam_);
    broadcast_params();
  }

  static void to_host(const Vector<T>& d, std::vector<double>& out) {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d);
    out.resize(d.extent(0));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(h(i));
  }
  static void from_host(const std::vector<double>& in, const Vector<T>& d) {
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < in.size(); ++i) h(i) = static_cast<T>(in[i]);
    Kokkos::deep_copy(d, h);
  }

  void write_checkpoint_now(std::int64_t s) {
    TrainState c;
    Kokkos::fence();
    if (env_.root()) {
      to_host(params_, c.parameters);
      to_host(adam_->first_moment(), c.adam_m);
      to_host(adam_->second_moment(), c.adam_v);
    }
    c.step = s;
    c.adam_steps = adam_->steps();
    c.lr_factor = lr_factor_;
    c.seed = seed_;
    c.consecutive_failures = failures_;
    c.wall_time = s == start_step_ ? wall_offset_ : wall_time();
    c.config = cfg_.to_ini();
    c.metrics = history_;
    c.program_version = program_version();
    c.backend = kokkos_backend();
    c.precision = cfg_.get_string("model.precision");
    c.model_kind = model_->kind();
    c.layout_signature = model_->layout().signature();
    c.created = utc_now();
    c.ranks = env_.size();
    if (env_.root()) metrics_.flush();
    rank_metrics_.flush();
    ++checkpoint_writes_;
    root_agreed(env_, [&] {
      save_state(paths_.checkpoint(), c, [&] {
        if (checkpoint_writes_ == faults_.kill_in_checkpoint_write) std::_Exit(9);  // the .tmp torn, the old file intact
      });
    });
  }

  /// `c` is the same on every rank (broadcast_state), so nothing is broadcast here.
  void restore(const TrainState& c) {
    if (c.layout_signature != model_->layout().signature())
      throw InputError("checkpoint " + paths_.checkpoint() + " was written by a different model (" + c.model_kind +
                       ", parameter layout differs)");
    if (c.parameters.size() != model_->layout().size())
      throw InputError("checkpoint " + paths_.checkpoint() + " has " + std::to_string(c.parameters.size()) +
                       " parameters, the model " + std::to_string(model_->layout().size()));
    from_host(c.parameters, params_);
    from_host(c.adam_m, adam_->first_moment());
    from_host(c.adam_v, adam_->second_moment());
    adam_->set_steps(c.adam_steps);
    start_step_ = c.step;
    lr_factor_ = c.lr_factor;
    failures_ = c.consecutive_failures;
    wall_offset_ = c.wall_time;
    history_ = rows_up_to(c.metrics, c.step - 1);
    final_done_ = false;
    // A checkpoint at the final step already holds the final evaluation row.
    if (c.step >= steps_) {
      history_ = rows_up_to(c.metrics, c.step);
      final_done_ = has_step_row(c.metrics, c.step);
    }
    // This rank's own rows, cut back to the checkpoint.
    rank_history_ = file_exists(paths_.rank_metrics(env_.rank()))
                        ? rows_up_to(read_text(paths_.rank_metrics(env_.rank())), final_done_ ? c.step : c.step - 1)
                        : std::string();
  }

  Environment& env_;
  Config cfg_;
  std::unique_ptr<Distribution> target_;
  MpiCollective coll_;
  FaultPlan faults_;
  long long checkpoint_writes_ = 0;
  RunPaths paths_;
  std::uint32_t seed_ = 0;
  long long batch_ = 0, steps_ = 0;
  Slice mine_;
  std::unique_ptr<Model<T>> model_;
  Vector<T> params_, grad_, snap_params_, snap_m_, snap_v_;
  typename Vector<T>::HostMirror host_params_, host_grad_;
  std::unique_ptr<Adam<T>> adam_;
  LrSchedule sched_;
  std::int64_t start_step_ = 0, snap_step_ = -1, snap_adam_ = 0, failures_ = 0;
  double lr_factor_ = 1.0, wall_offset_ = 0, segment_start_ = 0;
  bool final_done_ = false;
  std::string history_, rank_history_, last_ess_ = "-";
  Metrics last_eval_;
  JsonlWriter metrics_, rank_metrics_;
};

}  // namespace

int run_training(Environment& env, Config cfg, bool resume, const FaultPlan& faults) {
  // Presets resolved into cfg before anything is compared or written.
  auto target = make_target(cfg);
  const RunPaths paths{cfg.get_string("run.out")};
  if (paths.dir.empty()) throw InputError("run.out: the run directory must not be empty");
  TrainState ckpt;
  std::string cfg_text = cfg.to_ini();
  root_agreed(env, [&] {
    if (resume) {
      if (!file_exists(paths.checkpoint()))
        throw InputError("--resume: there is no checkpoint to resume in '" + paths.dir + "' (" + paths.checkpoint() +
                         " does not exist)");
      ckpt = load_state(paths.checkpoint());
      Config stored;
      stored.load_string(ckpt.config, paths.checkpoint() + ":/config");
      std::string bad;
      for (const auto& k : stored.differences(cfg))
        if (!is_resumable_key(k)) bad += (bad.empty() ? "" : ", ") + k + " (run: " + stored.raw(k) + ", now: " + cfg.raw(k) + ")";
      if (!bad.empty())
        throw InputError("--resume: the configuration differs from the run in '" + paths.dir + "' in " + bad +
                         "; only run.*, train.steps, train.nan_max_retries and eval.* may change");
      // The stored run, with the resumable overrides applied.
      for (const auto& k : stored.differences(cfg)) stored.set(k, cfg.raw(k), cfg.origin(k));
      cfg_text = stored.to_ini();
    } else {
      if (file_exists(paths.checkpoint()))
        throw InputError("'" + paths.dir + "' already holds a run (" + paths.checkpoint() +
                         "); use --resume to continue it, or choose another --out. Nothing was overwritten.");
      if (file_exists(paths.config())) {
        Config other;
        try {
          other.load_string(read_text(paths.config()), paths.config());
        } catch (const InputError&) {
          throw InputError("--out '" + paths.dir + "' holds a config.ini that is not this run's; choose another --out");
        }
        for (const auto& k : other.differences(cfg))
          if (!is_resumable_key(k))
            throw InputError("--out '" + paths.dir + "' points at a different run (" + k + " = " + other.raw(k) +
                             " there, " + cfg.raw(k) + " here); choose another --out. Nothing was overwritten.");
      }
      make_dirs(paths.dir);
    }
  });
  // The resolved configuration travels in the state's config field.
  ckpt.config = cfg_text;
  broadcast_state(env, ckpt);
  Config resolved;
  resolved.load_string(ckpt.config, "resolved configuration");
  auto resolved_target = make_target(resolved);
  return with_precision(resolved, [&](auto zero) {
    using T = decltype(zero);
    Trainer<T> trainer(env, resolved, std::move(resolved_target), resume ? &ckpt : nullptr, faults);
    return trainer.run();
  });
}

}  // namespace bf
