#!/usr/bin/env bash
# jobs/plot.py on short real runs: an NHF on gmm9 (training curves, samples over
# the density, the learned potential), an equivariant NHF on the ring (its
# constraint and multiplier), a score model (its loss and score error,
# the learned U), an affine flow on the φ⁴ ring (the mean
# field against Eq. 21) and a batch table over two learning rates and two
# seeds (a metric against the swept key). Every expected file is written, each
# PNG has content (not one colour), each PDF is a PDF; plot.py refuses to
# overwrite and names a bad argument with exit 2. (Axes labels are checked by
# plot.py itself before it saves a figure.)
# usage: test_plots.sh BOLTZFLOW_BINARY SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
py=/usr/bin/python3
plot="$py $src/jobs/plot.py"
work=$(mktemp -d /tmp/boltzflow-plots-test-XXXXXX)
trap 'rc=$?; [ "$rc" -eq 0 ] && [ -z "${BOLTZFLOW_KEEP_TEST_DIRS:-}" ] && rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$work"
"$bin" train --out nhf --model.kind nhf --train.loss elbo --target.name gmm9 --model.hidden 16 \
  --model.leapfrog_steps 4 --train.dataset_size 500 --train.batch 64 --train.steps 60 --run.eval_every 20 \
  --eval.samples 500 --run.progress plain > nhf.log 2>&1 || fail "nhf training: $(tail -5 nhf.log)"
grep -q "plots: $py $src/jobs/plot.py $work/nhf\|plots: $py $src/jobs/plot.py nhf" nhf.log || fail "no plot command: $(tail -3 nhf.log)"
"$bin" train --out ehf --model.kind nhf --train.loss elbo --target.name ring --model.symmetry so2 --model.hidden 8 \
  --model.leapfrog_steps 2 --train.dataset_size 64 --train.batch 32 --train.steps 60 --run.eval_every 30 \
  --eval.samples 256 --eval.momentum_samples 4 --run.progress plain > ehf.log 2>&1 || fail "equivariant nhf: $(tail -5 ehf.log)"
"$bin" train --out phi4 --model.kind affine --train.loss reverse_kl --target.name phi4 --train.steps 30 \
  --eval.samples 1000 --run.progress plain > phi4.log 2>&1 || fail "phi4 training"
"$bin" train --out hsm --model.kind hsm --train.loss hsm --target.name gmm9 --model.hidden 16 --model.kernels 2 \
  --model.leapfrog_steps 3 --train.dataset_size 500 --train.batch 64 --train.steps 40 --run.eval_every 20 \
  --eval.samples 500 --run.progress plain > hsm.log 2>&1 || fail "hsm training: $(tail -5 hsm.log)"
for lr in 0.01 0.03; do for s in 1 2; do
  "$bin" train --out "sweep/lr$lr-s$s" --model.kind affine --train.loss reverse_kl --target.name gmm2asym \
    --train.steps 20 --train.lr $lr --run.seed $s --eval.samples 256 --run.progress plain > /dev/null 2>&1 || fail "sweep run"
done; done
"$bin" evaluate --runs 'sweep/*' --table table.csv > /dev/null 2>&1 || fail "batch table"
$plot nhf > nhf-plot.log || fail "plot nhf: $(cat nhf-plot.log)"
$plot phi4 > /dev/null || fail "plot phi4"
$plot ehf > /dev/null || fail "plot an equivariant nhf"
[ ! -e nhf/plots/symmetry.png ] || fail "an unconstrained nhf has no symmetry plot"
$plot hsm > /dev/null || fail "plot hsm (a score model)"
[ ! -e hsm/plots/samples.png ] || fail "a score model has no samples to plot"
$plot --table table.csv --metric reverse_ess --key train.lr --out tableplots > /dev/null || fail "plot table"
$py - "$work" <<'PY' || fail "plot contents"
import os, sys
import matplotlib.image as mpimg
w = sys.argv[1]
want = ["nhf/plots/training", "nhf/plots/samples", "nhf/plots/potential", "phi4/plots/training",
        "phi4/plots/mean_field", "ehf/plots/symmetry", "ehf/plots/training", "tableplots/reverse_ess-vs-train.lr", "hsm/plots/training", "hsm/plots/potential"]
for stem in want:
    png, pdf = os.path.join(w, stem + ".png"), os.path.join(w, stem + ".pdf")
    assert os.path.getsize(png) > 5000, f"{png} is tiny"
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200, f"{png}: {img.shape}"
    assert img[..., :3].std() > 0.02, f"{png} is blank"
    with open(pdf, "rb") as f:
        assert f.read(5) == b"%PDF-", f"{pdf} is not a PDF"
print("plots ok:", len(want))
PY
# Refusals: an existing file is not overwritten; a bad argument exits 2 with a message.
set +e
$plot nhf > again.log 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "exists; it is not overwritten" again.log || fail "overwrite: rc $rc $(cat again.log)"
set +e
$plot --table table.csv --metric no_such --key train.lr --out t2 > bad.log 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "no column 'no_such'" bad.log || fail "bad column: rc $rc $(cat bad.log)"
echo "test_plots: ok"
