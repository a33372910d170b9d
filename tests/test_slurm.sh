#!/usr/bin/env bash
# The job scripts on a real single-node SLURM (slurmctld + slurmd + munged on
# localhost, started and stopped here, also when a check fails):
#   1. a job with a bad config fails fast with exit code 2 and a readable error;
#   2. a 4-task array sweep completes and the batch evaluation writes one row
#      per run with the right columns;
#   3. a job whose step fails to launch (srun exits 0) fails with exit code 5
#      instead of reporting a finished run;
#   4. a 2-task training job receives USR1 before its time limit, checkpoints,
#      requeues, resumes and completes with the same final parameters as an
#      uninterrupted run.
# usage: test_slurm.sh BOLTZFLOW_BINARY SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
work=$(mktemp -d /tmp/boltzflow-slurm-test-XXXXXX)
export BOLTZFLOW_SLURM_DIR=$work/cluster
export BOLTZFLOW_SLURM_CTLD_PORT=$((20000 + $$ % 20000)) BOLTZFLOW_SLURM_D_PORT=$((40001 + $$ % 20000))
export BOLTZFLOW=$bin BOLTZFLOW_HOME=$src
cluster=$src/jobs/local-cluster.sh
# Stop the cluster; remove the work directory when the test passed (kept for a look otherwise).
trap 'rc=$?; "$cluster" stop || true; [ "$rc" -eq 0 ] && [ -z "${BOLTZFLOW_KEEP_TEST_DIRS:-}" ] && rm -rf "$work"' EXIT
"$cluster" start
eval "$("$cluster" env)"
cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait_done JOB SECONDS: until the job is COMPLETED, FAILED, CANCELLED, TIMEOUT or gone.
wait_done() {
  local t=0 s
  while [ "$t" -lt "$2" ]; do
    s=$(state "$1")
    case "$s" in COMPLETED|FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|"") echo "$s"; return 0 ;; esac
    sleep 2; t=$((t + 2))
  done
  fail "job $1 still $(state "$1") after $2 s"
}

echo "== 1. a bad config fails fast with exit code 2"
printf '[train]\nstesp = 10\n' > bad.ini
job=$(sbatch --parsable -o bad-%j.out "$src/jobs/train.sbatch" bad.ini "$work/bad_run")
s=$(wait_done "$job" 120)
[ "$s" = FAILED ] || fail "bad-config job ended $s"
scontrol show job "$job" | grep -q "ExitCode=2:0" || fail "bad-config job exit code: $(scontrol show job "$job" | grep -o 'ExitCode=[^ ]*')"
grep -q "unknown config key 'train.stesp' (did you mean 'train.steps'?)" bad-"$job".out || { cat bad-"$job".out; fail "no readable error"; }
[ ! -e "$work/bad_run/checkpoint.h5" ] || fail "the bad job wrote a checkpoint"

echo "== 2. a 4-task array sweep and its batch evaluation"
cat > tiny.ini <<'INI'
[train]
steps = 20
batch = 64
lr = 0.02
loss = reverse_kl
[model]
kind = affine
precision = double
[target]
name = phi4
[eval]
samples = 256
INI
cat > sweep.txt <<'SWEEP'
config = tiny.ini   # relative to this file
target.m   run.seed
0.25       1
0.5        1
0.5        2
1.0        1
SWEEP
out=$(sbatch --wait -o launcher-%j.out "$src/jobs/sweep.sbatch" sweep.txt "$work/sweep" 2>&1) || { cat launcher-*.out; fail "sweep launcher: $out"; }
cat launcher-*.out
eval_job=$(sed -n 's/.*evaluation job \([0-9]*\).*/\1/p' launcher-*.out)
[ -n "$eval_job" ] || fail "no evaluation job submitted"
s=$(wait_done "$eval_job" 600)
[ "$s" = COMPLETED ] || { cat boltzflow-evaluate-*.out 2>/dev/null; fail "evaluation job ended $s"; }
table=$work/sweep/table.csv
[ -f "$table" ] || fail "no $table"
[ -f "$work/sweep/table.h5" ] || fail "no HDF5 table"
h5dump -H "$work/sweep/table.h5" > /dev/null || fail "table.h5 unreadable"
rows=$(($(wc -l < "$table") - 1))
[ "$rows" -eq 4 ] || { cat "$table"; fail "$rows rows, expected 4"; }
head -1 "$table" | grep -q "^run,status,step,samples,reverse_kl,reverse_ess,log_z,log_z_stderr,forward_kl,forward_ess,hausdorff,mode_coverage_tv,non_finite_samples,reverse_n_eff,pareto_k,log_z_stderr_reliable,phase_space_reverse_kl,phase_space_reverse_ess,momentum_samples,marginal_reverse_kl,marginal_reverse_ess,marginal_forward_kl,marginal_forward_ess,test_log_likelihood,test_log_likelihood_stderr,angular_tv,symmetry_constraint,symmetry_constraint_stderr,score_error,score_error_stderr,mode_fractions,estimators,run.seed," || fail "columns: $(head -1 "$table")"
head -1 "$table" | grep -q ",target.m," || fail "no config columns"
[ "$(grep -c ',ok,20,256,' "$table")" -eq 4 ] || { cat "$table"; fail "not every run evaluated at step 20"; }
for d in "target.m=0.25_run.seed=1" "target.m=0.5_run.seed=1" "target.m=0.5_run.seed=2" "target.m=1.0_run.seed=1"; do
  grep -q "^$work/sweep/$d,ok," "$table" || fail "no row for $d"
done

echo "== 3. a step whose ranks never start fails the job (srun itself exits 0)"
# PMIx refuses to launch a step whose directory exists already (what a cluster
# killed mid-step leaves behind): make one for the next job's first step.
job=$(sbatch --parsable --hold -o nolaunch-%j.out "$src/jobs/train.sbatch" tiny.ini "$work/nolaunch")
mkdir -p "$BOLTZFLOW_SLURM_DIR/pmix/spmix_appdir_$(id -u)_$job.0"
scontrol release "$job"
s=$(wait_done "$job" 120)
cat nolaunch-"$job".out
[ "$s" = FAILED ] || fail "a job whose step never launched ended $s"
scontrol show job "$job" | grep -q "ExitCode=5:0" || fail "exit code: $(scontrol show job "$job" | grep -o 'ExitCode=[^ ]*')"
grep -q "the ranks did not run" nolaunch-"$job".out || fail "no message naming the failed launch"
! grep -q "done at step" nolaunch-"$job".out || fail "reported as done"

echo "== 4. USR1 before the limit: checkpoint, requeue, resume, same result"
# SLURM checks time limits every ~30 s and may signal up to 60 s early: with a
# 2-minute limit and a 40 s lead the signal comes 20 to 110 s into a segment,
# so a training of a few minutes is interrupted at least once and every
# segment makes progress.
cat > long.ini <<'INI'
[run]
checkpoint_every = 100000
log_every = 500
[train]
steps = 7000
batch = 128
[model]
integration_steps = 20
INI
job=$(sbatch --parsable --time=2 --signal=USR1@40 -o long-%j.out "$src/jobs/train.sbatch" long.ini "$work/long")
s=$(wait_done "$job" 1200)
cat long-"$job".out | grep -v '^step ' || true
[ "$s" = COMPLETED ] || fail "training job ended $s"
restarts=$(scontrol show job "$job" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[ "${restarts:-0}" -ge 1 ] || fail "the job was never requeued (Restarts=$restarts)"
grep -q "received signal 10: checkpointed at step" long-"$job".out || fail "no USR1 checkpoint"
grep -q "resuming at step" long-"$job".out || fail "no resume"
mpirun --allow-run-as-root --oversubscribe -np 2 "$bin" train --config long.ini --out "$work/reference" > reference.out 2>&1 ||
  { cat reference.out; fail "reference run"; }
for d in parameters optimizer/m optimizer/v state/step; do
  a=$(h5dump -d "$d" "$work/long/checkpoint.h5" | sed -n '/DATA {/,$p')
  b=$(h5dump -d "$d" "$work/reference/checkpoint.h5" | sed -n '/DATA {/,$p')
  [ "$a" = "$b" ] || fail "$d differs from the uninterrupted run"
done
echo "requeued $restarts time(s); final state identical to the uninterrupted run"
echo "PASS"
