#!/usr/bin/env bash
# Soak: a 2-rank training SIGKILLed at random moments KILLS times (every rank at
# once, as a node failure or `scancel -s KILL` does), each time continued with
# --resume from whatever checkpoint survived (or started again when the kill came
# before the first one); the final parameters and Adam moments are bitwise those
# of the uninterrupted run.
# usage: soak_sigkill.sh BOLTZFLOW_BINARY [KILLS (default 50)] [SEED (default 1)]
set -euo pipefail
bin=$(readlink -f "$1") kills=${2:-50} seed=${3:-1}
work=$(mktemp -d /tmp/boltzflow-soak-XXXXXX)
trap 'rc=$?; [ "$rc" -eq 0 ] && [ -z "${BOLTZFLOW_KEEP_TEST_DIRS:-}" ] && rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$work"
RANDOM=$seed
steps=${BOLTZFLOW_SOAK_STEPS:-60000}  # ~1 ms per step here: a minute uninterrupted
run=(train --model.kind nhf --train.loss elbo --target.name gmm9 --model.hidden 32 --model.leapfrog_steps 4
     --model.precision double --train.dataset_size 1000 --train.batch 256 --train.steps "$steps"
     --train.schedule cosine --run.checkpoint_every 200 --run.eval_every 0 --eval.samples 256 --run.progress plain)
mpirun -np 2 "$bin" "${run[@]}" --out ref > ref.log 2>&1 || fail "reference run: $(tail -5 ref.log)"
killed=0 resumed=0 restarted=0 start=$SECONDS
while [ "$killed" -lt "$kills" ]; do
  if [ -f soak/checkpoint.h5 ]; then
    args=(--out soak --resume); resumed=$((resumed + 1))
  else
    rm -rf soak; args=(--out soak); restarted=$((restarted + 1))
  fi
  { setsid mpirun -np 2 "$bin" "${run[@]}" "${args[@]}" >> soak.log 2>&1 & } 2>/dev/null
  pid=$!
  # A random moment in 0.3 .. 2.3 s: start-up, training, checkpoint writes alike.
  sleep "$(printf '0.%03d' $((RANDOM % 1000)))"; sleep "0.3"; [ $((RANDOM % 2)) -eq 0 ] && sleep 1
  if kill -0 "$pid" 2>/dev/null; then
    # Every process of the job's session: mpirun and the ranks (Open MPI gives
    # the ranks process groups of their own, so a group kill would orphan them).
    pkill -KILL -s "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true
    while pgrep -s "$pid" > /dev/null; do sleep 0.05; done
    killed=$((killed + 1))
  else
    wait "$pid" || fail "a run exited on its own with an error: $(tail -5 soak.log)"
    break  # finished before the kills ran out
  fi
  sleep 0.1
done
mpirun -np 2 "$bin" "${run[@]}" --out soak --resume >> soak.log 2>&1 || fail "final resume: $(tail -5 soak.log)"
grep -q "done: $steps steps\|run already complete at step $steps" soak.log || fail "the soaked run did not finish: $(tail -5 soak.log)"
for ds in /parameters /optimizer/m /optimizer/v /state/adam_steps /state/lr_factor; do
  h5diff ref/checkpoint.h5 soak/checkpoint.h5 "$ds" "$ds" > /dev/null || fail "$ds differs from the uninterrupted run"
done
echo "soak: $killed SIGKILLs ($resumed resumes, $restarted fresh starts) in $((SECONDS - start)) s; final state bitwise equal"
