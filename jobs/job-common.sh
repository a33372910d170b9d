# Shared by the SLURM job scripts (sourced, not run). Finds the boltzflow
# program, sets the environment a rank needs, launches ranks, and trains a
# run directory idempotently: resume when a checkpoint exists, requeue (or
# resubmit) when the runner stops with exit code 3 after SIGUSR1/SIGTERM.

# The repository: $BOLTZFLOW_HOME, else the directory the job was submitted from.
BOLTZFLOW_HOME=${BOLTZFLOW_HOME:-${SLURM_SUBMIT_DIR:-$(pwd)}}
# The program: $BOLTZFLOW, else the build in the repository, else the PATH.
if [ -z "${BOLTZFLOW:-}" ]; then
  if [ -x "$BOLTZFLOW_HOME/build/boltzflow" ]; then BOLTZFLOW=$BOLTZFLOW_HOME/build/boltzflow
  else BOLTZFLOW=$(command -v boltzflow || echo boltzflow); fi
fi

# One rank per task; threads per rank from --cpus-per-task.
export KOKKOS_NUM_THREADS=${KOKKOS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}   # Kokkos OpenMP threads per rank
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$KOKKOS_NUM_THREADS}
export OMP_PROC_BIND=${OMP_PROC_BIND:-spread}                                # Kokkos' advice for OpenMP
export OMP_PLACES=${OMP_PLACES:-threads}
# BLAS threads: the default (blas) GEMM backend keeps OpenBLAS at one thread itself
# and shares each pass over the Kokkos threads; this only matters for builds with
# BOLTZFLOW_HOST_GEMM=kokkos, where KokkosBlas calls a threaded BLAS whole.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$KOKKOS_NUM_THREADS}
# Parallel file systems (Lustre, GPFS, NFS) often refuse HDF5's file locks.
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}

# Launcher: srun (default; --mpi=pmix matches Debian's OpenMPI, set
# BOLTZFLOW_SRUN_MPI=pmi2 or none for other MPIs), or mpirun, which finds the
# SLURM allocation itself (BOLTZFLOW_LAUNCHER=mpirun).
bf_launch() {
  if [ "${BOLTZFLOW_LAUNCHER:-srun}" = mpirun ]; then
    mpirun "$@"
  else
    srun --mpi="${BOLTZFLOW_SRUN_MPI:-pmix}" "$@"
  fi
}

bf_step() { "$BOLTZFLOW" inspect --step "$1/checkpoint.h5" 2>/dev/null || echo -1; }
# bf_setting RUN_DIR SECTION KEY: a value of the configuration saved in the checkpoint.
bf_setting() {
  "$BOLTZFLOW" inspect "$1/checkpoint.h5" 2>/dev/null |
    sed -n "/^\[$2\]/,/^\[/s/^$3 = \([^ ]*\).*/\1/p" | head -n 1
}

# bf_train CONFIG RUN_DIR [overrides...]: one segment of a training run.
# Exit status: the runner's (0 done or at run.stop_at, 2 bad input, 3 stopped
# and checkpointed), 4 when a stopped segment made no progress (a time limit
# shorter than the --signal lead time would otherwise requeue forever), or 5
# when the launcher exited 0 but the checkpoint is short of train.steps and
# run.stop_at (the ranks never ran: a failed step launch).
bf_train() {
  local config=$1 run_dir=$2
  shift 2
  local resume=() before=-1
  if [ -f "$run_dir/checkpoint.h5" ]; then
    resume=(--resume)
    before=$(bf_step "$run_dir")
  fi
  echo "boltzflow job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}): $BOLTZFLOW train --config $config --out $run_dir ${resume[*]} $*"
  bf_launch "$BOLTZFLOW" train --config "$config" --out "$run_dir" "${resume[@]}" "$@"
  local code=$?
  if [ "$code" -eq 0 ]; then
    # A launcher can exit 0 when its tasks never started (srun does, after a
    # failed step launch): believe the checkpoint, not the exit status.
    local after steps stop_at
    after=$(bf_step "$run_dir")
    steps=$(bf_setting "$run_dir" train steps)
    stop_at=$(bf_setting "$run_dir" run stop_at)
    if [ "$after" -lt 0 ] || [ -z "$steps" ] ||
       { [ "$after" -lt "$steps" ] && { [ "${stop_at:-0}" -le 0 ] || [ "$after" -lt "$stop_at" ]; }; }; then
      local where="there is no $run_dir/checkpoint.h5"
      [ "$after" -ge 0 ] && where="$run_dir/checkpoint.h5 is at step $after of ${steps:-?}"
      echo "the launcher exited 0 but $where: the ranks did not run" \
           "(see the launcher's errors above); not treating this as done" >&2
      return 5
    fi
  fi
  if [ "$code" -eq 3 ] && [ "$before" -ge 0 ] && [ "$(bf_step "$run_dir")" -le "$before" ]; then
    echo "no progress since step $before in this segment: the signal came too early for the time limit" \
         "(raise --time or lower the --signal lead time); not requeueing" >&2
    return 4
  fi
  return $code
}

# After exit code 3: put this job back in the queue; where requeueing is not
# allowed, submit the same script again, to start after this job ends.
bf_requeue() {
  echo "checkpointed before the time limit: requeueing job $SLURM_JOB_ID"
  if scontrol requeue "$SLURM_JOB_ID"; then
    sleep 60  # the requeue ends this job; do not exit first (that would end it as completed)
    return 0
  fi
  local script
  script=$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
  echo "requeue refused; resubmitting $script after job $SLURM_JOB_ID"
  sbatch --dependency="afterany:$SLURM_JOB_ID" "$script" "$@"
}
