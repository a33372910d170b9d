// The training loop (parameters in one flat buffer, Adam, data parallelism
// over MPI ranks, exact checkpoints). One step s:
//   1. stop_policy: run.stop_at, or a pending SIGTERM/SIGUSR1 on any rank
//      (allreduce): checkpoint, exit 0 or 3;
//   2. at evaluation steps, the metric suite on θ_s (common random numbers);
//   3. train_step: each rank computes Σ ℓ_i and Σ ∇ℓ_i over its share of the
//      global batch (noise by global sample index), one MPI_Allreduce over the
//      flat gradient buffer, division by the global batch;
//   4. a non-finite loss or gradient: roll_back to the last in-memory snapshot
//      with a lower learning rate; otherwise one Adam kernel updates θ (one per
//      parameter group updated at s, for models trained min-max: GroupedAdam);
//   5. the RunLog (src/run/run_log.hpp) writes the rows and the progress.
// finish() evaluates θ_steps, checkpoints, writes the model's artifacts and
// prints the summary. Row `step = s` of metrics.jsonl is the loss at θ_s and
// the learning rate of update s; the checkpoint at step s holds θ_s and rows
// < s, so a resumed run rewrites nothing and duplicates nothing. Fault
// injection (tests) comes in as a FaultPlan (src/run/faults.hpp).
#include "src/run/trainer.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "src/io/collective_mpi.hpp"
#include "src/run/evaluation.hpp"
#include "src/io/json.hpp"
#include "src/io/metrics_mpi.hpp"
#include "src/run/model_config.hpp"
#include "src/run/potential_map.hpp"
#include "src/run/run_dir.hpp"
#include "src/run/run_log.hpp"
#include "src/run/signals.hpp"
#include "src/run/target_config.hpp"
#include "src/run/train_state.hpp"
#include "src/version.hpp"

namespace bf {

bool is_resumable_key(const std::string& key) {
  static const char* keys[] = {"run.out",         "run.checkpoint_every", "run.eval_every", "run.log_every", "run.stop_at", "run.progress",
                               "train.steps",     "train.nan_max_retries", "eval.samples",  "eval.batch",
                               "eval.forward",    "eval.momentum_samples"};
  for (const char* k : keys)
    if (key == k) return true;
  return false;
}

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

template <class T>
class Trainer {
 public:
  Trainer(Environment& env, Config cfg, std::unique_ptr<Distribution> target, const TrainState* resume_from,
          FaultPlan faults)
      : env_(env), cfg_(std::move(cfg)), st_(Settings::from(cfg_)), target_(std::move(target)), coll_(env.comm()),
        faults_(faults), paths_{st_.run.out},
        log_(env, paths_, st_.run.progress, st_.run.log_every) {
    seed_ = static_cast<std::uint32_t>(st_.run.seed);
    batch_ = st_.train.batch;
    steps_ = st_.train.steps;
    mine_ = split_range(batch_, env.rank(), env.size());
    const long long eval_batch = st_.eval.batch;
    const int max_batch = static_cast<int>(std::max<long long>({mine_.count(), eval_batch, 1}));
    model_ = make_model<T>(st_, *target_, max_batch, static_cast<int>(std::max<long long>(mine_.count(), 1)));
    const std::size_t n = model_->layout().size();
    params_ = Vector<T>("params", n);
    grad_ = Vector<T>("grad", n);
    snap_params_ = Vector<T>("snapshot_params", n);
    snap_m_ = Vector<T>("snapshot_m", n);
    snap_v_ = Vector<T>("snapshot_v", n);
    host_params_ = Kokkos::create_mirror_view(params_);
    host_grad_ = Kokkos::create_mirror_view(grad_);
    AdamConfig ac;
    ac.beta1 = st_.train.beta1;
    ac.beta2 = st_.train.beta2;
    ac.eps = st_.train.eps;
    ac.clip_norm = st_.train.clip_norm;
    adam_ = std::make_unique<GroupedAdam<T>>(n, ac, model_->parameter_groups());
    sched_.kind = st_.train.schedule == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
    sched_.lr = st_.train.lr;
    sched_.final_fraction = st_.train.final_lr_fraction;
    sched_.total_steps = steps_;
    sched_.warmup_steps = st_.train.warmup_steps;
    snap_every_ = st_.train.snapshot_every;
    nan_factor_ = st_.train.nan_lr_factor;
    max_retries_ = st_.train.nan_max_retries;
    stop_at_ = st_.run.stop_at;

    if (resume_from) {
      restore(*resume_from);
    } else {
      model_->initialize(params_, seed_);
      broadcast_params();
    }
  }

  int run() {
    if (env_.root()) {
      write_text_atomic(paths_.config(), cfg_.to_ini());
      std::cout << build_description() << "\n"
                << "run " << paths_.dir << ": " << (start_step_ > 0 ? "resuming at step " : "starting at step ")
                << start_step_ << " of " << steps_ << " on " << env_.size() << " rank(s)\n"
                << "  target: " << target_->description() << "\n  model:  " << model_->description() << " ("
                << model_->layout().count() << " parameters, " << st_.model.precision << ")\n"
                << "  loss " << st_.train.loss << ", batch " << batch_ << ", lr "
                << fmt_num(sched_.lr) << " (" << st_.train.schedule << ")\n"
                << std::flush;
    }
    log_.open(start_history_, start_rank_history_);
    if (start_step_ == 0) write_checkpoint_now(0);
    if (start_step_ >= steps_ && final_done_) {
      if (env_.root()) std::cout << "run already complete at step " << steps_ << "\n";
      return kExitOk;
    }
    const long long eval_every = st_.run.eval_every;
    const long long ckpt_every = st_.run.checkpoint_every;

    take_snapshot(start_step_);
    segment_start_ = now_seconds();
    log_.begin(start_step_);
    std::int64_t s = start_step_;
    while (s < steps_) {
      if (const int code = stop_policy(s); code >= 0) return code;
      if (s % snap_every_ == 0 && s != snap_step_) take_snapshot(s);
      Json row = Json::object(), rank_row = Json::object();
      row["step"] = static_cast<long long>(s);
      rank_row["step"] = static_cast<long long>(s);
      if (eval_every > 0 && s % eval_every == 0) evaluate_into(row, rank_row);  // the metrics of θ_s
      const StepResult r = train_step(s);
      const double lr = sched_.at(s) * lr_factor_;
      if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
        s = roll_back(s, r);
        continue;
      }
      adam_->step(params_, grad_, lr, 1.0 / static_cast<double>(batch_), r.grad_norm);
      if (s > recover_until_) failures_ = 0;
      row["time"] = wall_time();
      row["loss"] = r.loss;
      row["lr"] = lr;
      row["grad_norm"] = r.grad_norm;
      for (const auto& [name, value] : model_->step_figures()) row[name] = value;  // what step s measured and used
      model_->end_step();
      rank_row["loss"] = mine_.count() > 0 ? r.local_loss / static_cast<double>(mine_.count()) : std::nan("");
      log_.append(row, rank_row);
      ++s;
      if (s % ckpt_every == 0 && s < steps_) write_checkpoint_now(s);
      log_.progress(s, steps_, r.loss, last_ess_);
    }
    return finish();
  }

 private:
  struct StepResult {
    double local_loss = 0, loss = 0, grad_norm = 0;  // this rank's Σ ℓ_i; the global mean loss and gradient norm
  };

  /// The step's loss and gradient at θ_s: each rank's Σ ℓ_i and Σ ∇ℓ_i over its
  /// share of the global batch (noise by global sample index), one allreduce
  /// over the flat gradient, the global mean and its norm. θ is not updated.
  StepResult train_step(std::int64_t s) {
    Kokkos::deep_copy(grad_, T(0));
    BatchRef b;
    b.seed = seed_;
    b.step = s;
    b.first = static_cast<std::uint64_t>(mine_.begin);
    b.count = static_cast<int>(mine_.count());
    b.global = batch_;
    StepResult r;
    r.local_loss = model_->loss_and_grad(params_, grad_, b, coll_);  // count ≥ 1 on every rank (run_training)
    allreduce_sum(env_.comm(), grad_, host_grad_);
    r.loss = r.local_loss;
    MPI_Allreduce(MPI_IN_PLACE, &r.loss, 1, MPI_DOUBLE, MPI_SUM, env_.comm());
    r.loss /= static_cast<double>(batch_);
    if (s == faults_.nan_at_step && !fault_fired_) {
      r.loss = std::nan("");
      fault_fired_ = true;
    }
    r.grad_norm = Adam<T>::norm(grad_) * (1.0 / static_cast<double>(batch_));
    return r;
  }

  /// The stop policy, at the boundary before step s: run.stop_at, or a stop
  /// signal on any rank (one allreduce, so every rank stops at the same step).
  /// Checkpoints and returns the exit code, or −1 to go on.
  int stop_policy(std::int64_t s) {
    if (stop_at_ > 0 && s >= stop_at_) {
      write_checkpoint_now(s);
      log_.note("stopped at step " + std::to_string(s) + " (run.stop_at); resume with --resume");
      return kExitOk;
    }
    int sig = stop_signal();
    MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, env_.comm());
    if (sig) {
      write_checkpoint_now(s);
      log_.note("received signal " + std::to_string(sig) + ": checkpointed at step " + std::to_string(s) +
                ", exiting with code 3");
      return kExitSignal;
    }
    return -1;
  }

  /// The non-finite policy: back to the last in-memory snapshot with a lower
  /// learning rate (an event row in metrics.jsonl), or, after too many
  /// consecutive failures, stop with the last checkpoint intact. Returns the step to go on from.
  std::int64_t roll_back(std::int64_t s, const StepResult& r) {
    ++failures_;
    const double old_factor = lr_factor_;
    lr_factor_ *= nan_factor_;
    Json ev = Json::object();
    ev["event"] = "nonfinite";
    ev["at_step"] = static_cast<long long>(s);
    ev["loss"] = r.loss;
    ev["grad_norm"] = r.grad_norm;
    ev["rolled_back_to"] = static_cast<long long>(snap_step_);
    ev["lr_factor"] = lr_factor_;
    ev["consecutive"] = static_cast<long long>(failures_);
    log_.note("step " + std::to_string(s) + ": non-finite " + (std::isfinite(r.loss) ? "gradient" : "loss") +
              "; rolling back to step " + std::to_string(snap_step_) + " and lowering the learning rate by " +
              fmt_num(nan_factor_) + " (failure " + std::to_string(failures_) + " of at most " +
              std::to_string(max_retries_) + ")");
    if (failures_ > max_retries_) {
      lr_factor_ = old_factor;
      log_.event(ev);
      throw RunError("stopping after " + std::to_string(failures_) + " consecutive non-finite steps (step " +
                     std::to_string(s) + "); the last good checkpoint " + paths_.checkpoint() +
                     " is intact. Lower train.lr or enable train.clip_norm.");
    }
    restore_snapshot();
    log_.rewind(snap_step_ - 1, ev);
    recover_until_ = s;
    return snap_step_;
  }

  /// The end: evaluate θ_steps, checkpoint, the model's artifacts, the summary.
  int finish() {
    Json row = Json::object(), rank_row = Json::object();
    row["step"] = static_cast<long long>(steps_);
    rank_row["step"] = static_cast<long long>(steps_);
    evaluate_into(row, rank_row);
    row["time"] = wall_time();
    log_.append(row, rank_row);
    final_done_ = true;
    write_checkpoint_now(steps_);
    std::string potential, histogram;
    root_agreed(env_, [&] {
      potential = write_potential_map<T>(*model_, params_, *target_, paths_.dir + "/potential.h5").text();
      write_density_map<T>(*model_, params_, *target_, seed_, paths_.dir + "/density.h5");
      // The target's histogram (φ⁴: the mean field against Eq. 21), as HDF5 in the run directory.
      if (!last_eval_.histogram.empty()) {
        histogram = paths_.dir + "/" + last_eval_.histogram.observable + ".h5";
        write_histogram(last_eval_.histogram, histogram);
      }
    });
    log_.end_progress();
    if (env_.root())
      std::cout << run_summary(last_eval_, steps_, wall_time(), st_.eval.samples, potential, histogram,
                               paths_.dir)
                << std::flush;
    return kExitOk;
  }

  void broadcast_params() {
    Kokkos::fence();
    Kokkos::deep_copy(host_params_, params_);
    MPI_Bcast(host_params_.data(), static_cast<int>(host_params_.extent(0)), mpi_type<T>(), 0, env_.comm());
    Kokkos::deep_copy(params_, host_params_);
  }

  double wall_time() const { return wall_offset_ + (now_seconds() - segment_start_); }

  void evaluate_into(Json& row, Json& rank_row) {
    const Evaluation ev = evaluate_model(env_, *model_, params_, *target_, seed_, st_.eval.samples,
                                         st_.eval.forward, static_cast<int>(st_.eval.momentum_samples));
    row.update(to_json(ev.global));
    rank_row.update(to_json(ev.local));
    last_eval_ = ev.global;
    if (ev.global.score_model) {  // no ESS: the score error, to 3 digits
      char buf[64];
      std::snprintf(buf, sizeof buf, "n/a (score error %.3g)", ev.global.score_error);
      last_ess_ = buf;
    } else {
      last_ess_ = fmt_num(std::round(ev.global.reverse_ess * 1e4) / 1e4);
    }
  }

  void take_snapshot(std::int64_t s) {
    Kokkos::deep_copy(snap_params_, params_);
    Kokkos::deep_copy(snap_m_, adam_->first_moment());
    Kokkos::deep_copy(snap_v_, adam_->second_moment());
    snap_adam_ = adam_->steps();
    snap_model_state_ = model_->state();
    snap_step_ = s;
  }

  /// Every rank holds the same snapshot (parameters are identical across ranks after every step).
  void restore_snapshot() {
    Kokkos::deep_copy(params_, snap_params_);
    Kokkos::deep_copy(adam_->first_moment(), snap_m_);
    Kokkos::deep_copy(adam_->second_moment(), snap_v_);
    adam_->set_steps(snap_adam_);
    model_->set_state(snap_model_state_);
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
    c.model_state = model_->state();
    c.step = s;
    c.adam_steps = adam_->steps();
    c.lr_factor = lr_factor_;
    c.seed = seed_;
    c.consecutive_failures = failures_;
    c.wall_time = s == start_step_ ? wall_offset_ : wall_time();
    c.config = cfg_.to_ini();
    c.metrics = log_.history();
    c.program_version = program_version();
    c.backend = kokkos_backend();
    c.precision = st_.model.precision;
    c.model_kind = model_->kind();
    c.layout_signature = model_->layout().signature();
    c.created = utc_now();
    c.ranks = env_.size();
    log_.flush();
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
    try {
      model_->set_state(c.model_state);
    } catch (const std::invalid_argument& e) {
      throw InputError("checkpoint " + paths_.checkpoint() + ": " + e.what());
    }
    start_step_ = c.step;
    lr_factor_ = c.lr_factor;
    failures_ = c.consecutive_failures;
    wall_offset_ = c.wall_time;
    start_history_ = rows_up_to(c.metrics, c.step - 1);
    final_done_ = false;
    // A checkpoint at the final step already holds the final evaluation row.
    if (c.step >= steps_) {
      start_history_ = rows_up_to(c.metrics, c.step);
      final_done_ = has_step_row(c.metrics, c.step);
    }
    // This rank's own rows, cut back to the checkpoint.
    start_rank_history_ = file_exists(paths_.rank_metrics(env_.rank()))
                        ? rows_up_to(read_text(paths_.rank_metrics(env_.rank())), final_done_ ? c.step : c.step - 1)
                        : std::string();
  }

  Environment& env_;
  Config cfg_;     // the resolved configuration, as config.ini and the checkpoint record it
  Settings st_;    // its typed values
  std::unique_ptr<Distribution> target_;
  MpiCollective coll_;
  FaultPlan faults_;
  RunPaths paths_;
  RunLog log_;
  long long checkpoint_writes_ = 0;
  bool fault_fired_ = false;
  std::uint32_t seed_ = 0;
  long long batch_ = 0, steps_ = 0, snap_every_ = 1, max_retries_ = 0, stop_at_ = 0;
  double nan_factor_ = 0.5;
  Slice mine_;
  std::unique_ptr<Model<T>> model_;
  Vector<T> params_, grad_, snap_params_, snap_m_, snap_v_;
  typename Vector<T>::HostMirror host_params_, host_grad_;
  std::unique_ptr<GroupedAdam<T>> adam_;
  LrSchedule sched_;
  std::int64_t start_step_ = 0, snap_step_ = -1, snap_adam_ = 0, failures_ = 0, recover_until_ = -1;
  std::vector<double> snap_model_state_;
  double lr_factor_ = 1.0, wall_offset_ = 0, segment_start_ = 0;
  bool final_done_ = false;
  std::string start_history_, start_rank_history_, last_ess_ = "-";
  Metrics last_eval_;
};

}  // namespace

int run_training(Environment& env, Config given, bool resume, const FaultPlan& faults) {
  // Presets resolved into the configuration before anything is compared or
  // written; the target built once (the keys it depends on cannot change on resume).
  const Config cfg = with_presets(std::move(given));
  const Settings settings = Settings::from(cfg);
  auto target = make_target(settings.target);
  const RunPaths paths{settings.run.out};
  if (paths.dir.empty()) throw InputError("run.out: the run directory must not be empty");
  // Every rank holds at least one sample of the global batch, so every rank
  // makes the same collective calls inside the loss (importance weights reduce
  // over ranks) and in the step.
  if (settings.train.batch < env.size())
    throw InputError("train.batch = " + std::to_string(settings.train.batch) + " is smaller than the number of ranks (" +
                     std::to_string(env.size()) + "): every rank needs at least one sample of the global batch; use " +
                     "a larger batch or at most " + std::to_string(settings.train.batch) + " ranks");
  TrainState ckpt;
  std::string cfg_text = cfg.to_ini();
  RunLock lock;  // rank 0's, held until the run ends
  root_agreed(env, [&] {
    if (resume) {
      if (!dir_exists(paths.dir))
        throw InputError("--resume: there is no checkpoint to resume in '" + paths.dir + "' (no such directory)");
      lock = RunLock(paths.dir);
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
      make_dirs(paths.dir);
      lock = RunLock(paths.dir);
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
    }
  });
  // The resolved configuration travels in the state's config field.
  ckpt.config = cfg_text;
  broadcast_state(env, ckpt);
  Config resolved;
  resolved.load_string(ckpt.config, "resolved configuration");
  return with_precision(Settings::from(resolved), [&](auto zero) {
    using T = decltype(zero);
    Trainer<T> trainer(env, resolved, std::move(target), resume ? &ckpt : nullptr, faults);
    return trainer.run();
  });
}

}  // namespace bf
