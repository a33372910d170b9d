#!/usr/bin/python3
"""Plots of boltzflow runs (Debian's Python 3, /usr/bin/python3, with python3-h5py and python3-matplotlib).

  /usr/bin/python3 jobs/plot.py RUN_DIR [--out DIR] [--formats png,pdf]
      training.{png,pdf}   loss, ESS and KL against step (metrics.jsonl)
      samples.{png,pdf}    2-D targets: the flow's samples over the target's density (density.h5)
      <observable>.{png,pdf}  the histogram a target reports (phi4: the mean field against
                           Mate Eq. 21, mean_field.h5)
      potential.{png,pdf}  NHF on 2-D targets: the learned V with its extrema and the modes (potential.h5)
      symmetry.{png,pdf}   an equivariant NHF (model.symmetry): the constraint E[{g, H}^2] on the batches,
                           its moving average and at the evaluations against kappa, and the multiplier
                           lambda, against step (metrics.jsonl)

  /usr/bin/python3 jobs/plot.py --table FILE.csv --metric M --key K [--out DIR] [--formats png,pdf]
      M-vs-K.{png,pdf}     a metric of a batch table (boltzflow evaluate --runs) against a swept
                           configuration key, mean and standard deviation over the runs sharing a value
                           (the seeds)

Every file is written next to nothing it would replace: an existing output is an error (exit 2).
"""
import argparse
import csv
import json
import math
import os
import sys

try:
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as e:  # a clear message, not a traceback
    sys.exit(f"plot.py: {e.name} is missing; install python3-h5py and python3-matplotlib "
             "(bash cmake/install-deps.sh does)")


class InputError(Exception):
    pass


def save(fig, out, stem, formats, written):
    # Every plot says what it shows: each axes (colour bars aside) has both labels.
    for ax in fig.get_axes():
        if ax.get_label() == "<colorbar>":
            continue
        if not ax.get_xlabel() or not ax.get_ylabel():
            raise RuntimeError(f"plot.py: {stem}: an axes without labels (a bug)")
    for ext in formats:
        path = os.path.join(out, f"{stem}.{ext}")
        if os.path.exists(path):
            raise InputError(f"'{path}' exists; it is not overwritten (choose another --out)")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)
    plt.close(fig)


def read_metrics(run):
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        raise InputError(f"'{run}' is not a run directory (no metrics.jsonl)")
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not JSON ({e})")
    return rows


def first_key(row, keys):
    for k in keys:
        if k in row and row[k] is not None:
            return k
    return None


def plot_training(run, out, formats, written):
    rows = read_metrics(run)
    loss = [(r["step"], r["loss"]) for r in rows if "step" in r and r.get("loss") is not None]
    scores = [r for r in rows if "step" in r and r.get("score_error") is not None]
    if scores:  # a score model (hsm): its loss and its score error, no sampler figures
        plot_score_training(run, loss, scores, out, formats, written)
        return
    evals = [r for r in rows if "step" in r and "log_z" in r]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    plot_loss(axes[0], loss, [(r["step"], r["loss"] - r["symmetry_penalty"]) for r in rows
                              if r.get("loss") is not None and r.get("symmetry_penalty") is not None])
    # ESS and KL: the CNF's exact figures, or an NHF's phase-space and marginal ones.
    for ax, names, label in (
            (axes[1], ("reverse_ess", "phase_space_reverse_ess", "marginal_reverse_ess", "forward_ess"), "ESS"),
            (axes[2], ("reverse_kl", "phase_space_reverse_kl", "marginal_reverse_kl", "forward_kl"),
             "KL (reverse: KL - log Z)")):
        for k in names:
            pts = [(r["step"], r[k]) for r in evals if r.get(k) is not None]
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, lw=1, label=k)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0] + " at evaluations")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if evals:
        last = evals[-1]
        z, dz = last.get("log_z"), last.get("log_z_stderr")
        flag = "" if last.get("log_z_stderr_reliable", True) else " (error bar unreliable)"
        if z is not None and dz is not None:
            fig.suptitle(f"{run}: step {last['step']}, log Z = {z:.4g} ± {dz:.2g}{flag}", fontsize=9)
    save(fig, out, "training", formats, written)


def plot_loss(ax, loss, penalty=None):
    if loss:
        ax.plot([s for s, _ in loss], [v for _, v in loss], lw=0.8, label="loss" if penalty else None)
    if penalty:  # an equivariant NHF: the loss includes the constraint's penalty
        ax.plot([s for s, _ in penalty], [v for _, v in penalty], lw=0.8, label="loss - symmetry penalty")
        ax.legend(fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss")


def plot_score_training(run, loss, scores, out, formats, written):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    plot_loss(axes[0], loss)
    ax = axes[1]
    steps = [r["step"] for r in scores]
    err = [r["score_error"] for r in scores]
    se = [r.get("score_error_stderr") or 0.0 for r in scores]
    ax.errorbar(steps, err, yerr=se, marker="o", ms=3, lw=1, capsize=2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("relative score error")
    ax.set_title("score error at evaluations")
    last = scores[-1]
    fig.suptitle(f"{run}: step {last['step']}, score error = {last['score_error']:.3g} ± "
                 f"{last.get('score_error_stderr') or float('nan'):.2g}", fontsize=9)
    save(fig, out, "training", formats, written)


def config_value(run, section, key):
    """A key of the run's config.ini ([section] key = value), or None."""
    path, current = os.path.join(run, "config.ini"), None
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
            elif current == section and "=" in line:
                k, v = (t.strip() for t in line.split("=", 1))
                if k == key:
                    return v
    return None


def plot_symmetry(run, out, formats, written):
    rows = read_metrics(run)
    steps = [r for r in rows if "step" in r and any(k.startswith("symmetry_lambda") for k in r)]
    if not steps:
        return
    gens = sorted(k[len("symmetry_lambda"):] for k in steps[0] if k.startswith("symmetry_lambda"))
    evals = [r for r in rows if "step" in r and "samples" in r and r.get("symmetry_constraint") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    fig.subplots_adjust(wspace=0.35)
    ax = axes[0]
    for g in gens:
        tag = f" (generator {g[1:]})" if g else ""
        pts = [(r["step"], r.get("symmetry_constraint" + g)) for r in steps]
        ax.plot([s for s, _ in pts], [v for _, v in pts], lw=0.5, alpha=0.5, label="batch" + tag)
        pts = [(r["step"], r.get("symmetry_constraint_ma" + g)) for r in steps]
        ax.plot([s for s, _ in pts], [v for _, v in pts], lw=1.2, label="moving average" + tag)
    if evals:
        ax.errorbar([r["step"] for r in evals], [r["symmetry_constraint"] for r in evals],
                    yerr=[r.get("symmetry_constraint_stderr") or 0.0 for r in evals], fmt="o", ms=4, capsize=2,
                    c="k", label="at the target's samples (evaluations)")
    kappa = config_value(run, "model", "symmetry_tolerance")
    try:
        ax.axhline(float(kappa), c="tab:red", ls="--", lw=1, label=f"kappa = {kappa}")
    except (TypeError, ValueError):
        pass
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("E[{g, H}^2]")
    ax.set_title("symmetry constraint", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    for g in gens:
        ax.plot([r["step"] for r in steps], [r["symmetry_lambda" + g] for r in steps], lw=1,
                label=f"generator {g[1:]}" if g else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("lambda (GECO multiplier)")
    ax.set_title("multiplier", fontsize=9)
    if gens != [""]:
        ax.legend(fontsize=7)
    save(fig, out, "symmetry", formats, written)


def plot_samples(run, out, formats, written):
    path = os.path.join(run, "density.h5")
    if not os.path.exists(path):
        return
    with h5py.File(path, "r") as f:
        x, y, logp = f["x"][:], f["y"][:], f["log_density"][:]
        s, modes = f["samples"][:], f["modes"][:]
        target = f["target"][()]
        target = target.decode() if isinstance(target, bytes) else str(target)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    # log_density[i, j] is at (x_i, y_j): transpose for contour's (row = y) convention.
    p = [[math.exp(v - logp.max()) for v in row] for row in logp.T]
    ax.contourf(x, y, p, levels=12, cmap="Blues")
    ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:red", alpha=0.4, label=f"flow ({len(s)} samples)")
    ax.scatter(modes[:, 0], modes[:, 1], marker="x", c="k", s=30, label="modes")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(target[:60], fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    save(fig, out, "samples", formats, written)


def plot_histograms(run, out, formats, written):
    for name in sorted(os.listdir(run)):
        if not name.endswith(".h5") or name in ("checkpoint.h5", "density.h5", "potential.h5"):
            continue
        path = os.path.join(run, name)
        with h5py.File(path, "r") as f:
            fmt = f["format"][()] if "format" in f else b""
            if (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != "boltzflow-histogram":
                continue
            edges, flow, rew, ref = f["edges"][:], f["flow"][:], f["reweighted"][:], f["reference"][:]
            obs = f["observable"][()]
            refname = f["reference_name"][()]
        obs = obs.decode() if isinstance(obs, bytes) else str(obs)
        refname = refname.decode() if isinstance(refname, bytes) else str(refname)
        width = [edges[i + 1] - edges[i] for i in range(len(flow))]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.stairs([v / w for v, w in zip(flow, width)], edges, label="flow", lw=1.2)
        ax.stairs([v / w for v, w in zip(rew, width)], edges, label="reweighted", lw=1.2)
        if len(ref):
            ax.stairs([v / w for v, w in zip(ref, width)], edges, label=refname[:50], lw=1, ls="--", color="k")
        ax.set_xlabel(obs)
        ax.set_ylabel("density")
        ax.set_title(f"{obs}: flow against {refname[:40]}", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, out, obs, formats, written)


def plot_potential(run, out, formats, written):
    path = os.path.join(run, "potential.h5")
    if not os.path.exists(path):
        return
    with h5py.File(path, "r") as f:
        x, y, v = f["x"][:], f["y"][:], f["potential"][:]
        modes, mins, maxs = f["modes"][:], f["minima"][:], f["maxima"][:]
        summary = f["summary"][()]
    summary = summary.decode() if isinstance(summary, bytes) else str(summary)
    fig, ax = plt.subplots(figsize=(5.6, 5))
    c = ax.contourf(x, y, v.T, levels=20, cmap="viridis")
    fig.colorbar(c, ax=ax, label="V")
    ax.scatter(modes[:, 0], modes[:, 1], marker="x", c="w", s=40, label="modes")
    if len(mins):
        ax.scatter(mins[:, 0], mins[:, 1], marker="v", c="tab:red", s=25, label="minima of V")
    if len(maxs):
        ax.scatter(maxs[:, 0], maxs[:, 1], marker="^", c="tab:orange", s=25, label="maxima of V")
    ax.set_xlabel("q1")
    ax.set_ylabel("q2")
    ax.set_title("learned potential (V of an NHF, U of hsm)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.text(0.02, -0.02, summary[:150], fontsize=6)
    save(fig, out, "potential", formats, written)


def plot_table(table, metric, key, out, formats, written):
    if not os.path.exists(table):
        raise InputError(f"--table '{table}' does not exist")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"'{table}' has no rows")
    for col in (metric, key):
        if col not in rows[0]:
            raise InputError(f"'{table}' has no column '{col}'")
    groups = {}
    for r in rows:
        if r.get("status", "ok") != "ok":
            continue
        try:
            v = float(r[metric])
        except ValueError:
            continue
        if math.isfinite(v):
            groups.setdefault(r[key], []).append(v)
    if not groups:
        raise InputError(f"no finite '{metric}' in '{table}'")

    def order(k):
        try:
            return (0, float(k), k)
        except ValueError:
            return (1, 0.0, k)

    keys = sorted(groups, key=order)
    numeric = all(order(k)[0] == 0 for k in keys)
    xs = [float(k) for k in keys] if numeric else list(range(len(keys)))
    means = [sum(groups[k]) / len(groups[k]) for k in keys]
    sds = [math.sqrt(sum((v - m) ** 2 for v in groups[k]) / (len(groups[k]) - 1)) if len(groups[k]) > 1 else 0.0
           for k, m in zip(keys, means)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3)
    for x0, k in zip(xs, keys):
        ax.scatter([x0] * len(groups[k]), groups[k], s=8, c="gray", alpha=0.6)
    if not numeric:
        ax.set_xticks(xs)
        ax.set_xticklabels(keys, rotation=30, fontsize=7)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (mean ± sd over runs)")
    ax.set_title(f"{metric} against {key} ({len(rows)} runs)", fontsize=9)
    save(fig, out, f"{metric}-vs-{key}", formats, written)


def main():
    ap = argparse.ArgumentParser(description="Plots of a boltzflow run directory or batch table.")
    ap.add_argument("run", nargs="?", help="run directory")
    ap.add_argument("--out", help="directory for the plots (default: RUN_DIR/plots, or the table's directory)")
    ap.add_argument("--formats", default="png,pdf", help="comma-separated: png, pdf, svg (default png,pdf)")
    ap.add_argument("--table", help="batch table (boltzflow evaluate --runs ... --table FILE.csv)")
    ap.add_argument("--metric", help="with --table: the metric column, e.g. reverse_ess")
    ap.add_argument("--key", help="with --table: the swept configuration key, e.g. train.lr")
    a = ap.parse_args()
    try:
        formats = [f for f in a.formats.split(",") if f]
        for f in formats:
            if f not in ("png", "pdf", "svg"):
                raise InputError(f"--formats: '{f}' is not png, pdf or svg")
        written = []
        if a.table:
            if a.run or not a.metric or not a.key:
                raise InputError("--table needs --metric and --key, and no run directory")
            out = a.out or os.path.dirname(os.path.abspath(a.table))
            os.makedirs(out, exist_ok=True)
            plot_table(a.table, a.metric, a.key, out, formats, written)
        else:
            if not a.run:
                raise InputError("give a run directory, or --table FILE.csv --metric M --key K")
            if not os.path.isdir(a.run):
                raise InputError(f"'{a.run}' is not a directory")
            out = a.out or os.path.join(a.run, "plots")
            os.makedirs(out, exist_ok=True)
            plot_training(a.run, out, formats, written)
            plot_samples(a.run, out, formats, written)
            plot_histograms(a.run, out, formats, written)
            plot_potential(a.run, out, formats, written)
            plot_symmetry(a.run, out, formats, written)
        for p in written:
            print(f"wrote {p}")
    except InputError as e:
        print(f"plot.py: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
