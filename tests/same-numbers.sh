#!/usr/bin/env bash
# The "no number changes" check for refactorings: every shipped config
# (jobs/configs/*.ini, or the configs named after the work directory) is
# trained for 20 steps by a reference binary and by a new one, and the two
# checkpoints must hold bitwise-identical parameters, Adam moments and state,
# and the two metrics.jsonl the same losses and gradient norms (as numbers).
#
#   tests/same-numbers.sh REF_BINARY NEW_BINARY WORKDIR [CONFIG.ini ...]
#
# Reference runs already in WORKDIR/ref/<config> are reused, so build the
# reference once (git worktree of the commit before the change), run this,
# and rerun it after each step of the change with only the new binary built.
# NP=<ranks> runs both under mpirun with that many ranks (default 1).
# Not part of ctest: the paper-size phi4 configs take minutes.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ref_bin=$(readlink -f "$1")
new_bin=$(readlink -f "$2")
work=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then configs=("$here"/jobs/configs/*.ini); fi
np=${NP:-1}
for b in "$ref_bin" "$new_bin"; do
  [ -x "$b" ] || { echo "same-numbers: '$b' is not an executable" >&2; exit 2; }
done
mkdir -p "$work/ref" "$work/new"

train() {  # binary, config, out
  local launch=()
  if [ "$np" -gt 1 ]; then launch=(mpirun -np "$np"); fi
  "${launch[@]}" "$1" train --config "$2" --train.steps 20 --run.eval_every 0 --run.checkpoint_every 20 \
    --run.log_every 20 --eval.samples 64 --out "$3" > "$3.log" 2>&1 ||
    { echo "same-numbers: training failed, see $3.log" >&2; tail -5 "$3.log" >&2; return 1; }
}

fail=0
for c in "${configs[@]}"; do
  name=$(basename "$c" .ini)
  ref="$work/ref/$name"
  new="$work/new/$name"
  if [ ! -f "$ref/checkpoint.h5" ]; then
    rm -rf "$ref"
    train "$ref_bin" "$c" "$ref"
  fi
  rm -rf "$new"
  train "$new_bin" "$c" "$new"
  bad=""
  for d in /parameters /optimizer/m /optimizer/v /state/step /state/adam_steps /state/lr_factor \
           /state/consecutive_failures; do
    if ! h5diff -q "$ref/checkpoint.h5" "$new/checkpoint.h5" "$d" "$d" > /dev/null 2>&1; then bad+=" $d"; fi
  done
  if ! python3 - "$ref/metrics.jsonl" "$new/metrics.jsonl" <<'EOF'
import json, sys
def rows(p):
    return [(r["step"], r.get("loss"), r.get("grad_norm")) for r in map(json.loads, open(p)) if "step" in r]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
sys.exit(0 if a == b and len(a) > 0 else 1)
EOF
  then bad+=" metrics.jsonl"; fi
  if [ -n "$bad" ]; then
    echo "DIFFERENT $name:$bad"
    fail=1
  else
    echo "identical $name"
  fi
done
exit $fail
