#!/usr/bin/env python3
"""Fuzz the command line through the real binary.

  python3 tests/fuzz_cli.py BOLTZFLOW_BINARY SOURCE_DIR [N (default 10000)] [SEED (default 1)] [JOBS (default 2)]

Mutates valid command lines of every command (train with the default config or a
shipped one, evaluate, batch evaluate, sample, MCMC, inspect, check, --help) —
arguments dropped, duplicated, swapped or cut, bytes flipped, option names
misspelt, values replaced by out-of-range, malformed or huge ones, junk added —
and runs each. Every one must exit 0, or 2 with a message naming the problem;
a crash (signal, exit 1 or anything else) or a hang fails. A mutation that is a
valid command which simply runs long (a huge train.steps, say) is stopped after
a time limit and counted as valid. Prints a summary; exit 1 on any failure,
with the command lines that failed.
"""
import concurrent.futures as cf
import os
import random
import shutil
import subprocess
import sys
import tempfile

BAD_VALUES = ["", "-1", "0", "1e400", "nan", "inf", "-inf", "1.5", "abc", "2147483648", "9223372036854775808",
              "99999999999", "1e-300", "0x10", "1,2", ",", "true", "FALSE", "yes", "\u00e9\u00e8", "-", "--",
              "64,,64", "8xx8", " ", "1 2", "/nonexistent/dir/x", "../", "'", '"', "\\", "%s%n", "a" * 5000]
JUNK = ["--", "-", "--=", "--train", "--train.", "--.steps", "---train.steps", "--help", "-h", "--version",
        "--kokkos-threads=1", "--resume", "--out", "x=y", "--train.steps=3", "\t", "\u2603"]


def bases(src, run, work):
    cfg = os.path.join(src, "jobs", "configs")
    tiny = ["--train.steps", "2", "--eval.samples", "64", "--train.batch", "16", "--run.progress", "plain"]
    return [
        ["train", "--out", "{out}"] + tiny,
        ["train", "--config", os.path.join(cfg, "gmm4-revkl.ini"), "--out", "{out}", "--train.steps", "1",
         "--train.batch", "8", "--eval.samples", "32", "--model.time_steps", "4"],
        ["train", "--config", os.path.join(cfg, "gmm9-nhf-fixed-gauss1.ini"), "--out", "{out}", "--train.steps",
         "1", "--train.batch", "8", "--eval.samples", "32", "--train.minibatch", "epochs"],
        ["train", "--out", "{out}", "--model.kind", "affine", "--train.loss", "reverse_kl", "--target.name", "phi4",
         "--target.shape", "4,4", "--train.steps", "2", "--eval.samples", "32"],
        ["evaluate", "--run", run, "--eval.samples", "64", "--json", "{out}.json"],
        ["evaluate", "--runs", run + "*", "--table", "{out}.csv", "--group-by", "run.seed"],
        ["sample", "--run", run, "--samples", "16", "--out", "{out}.h5"],
        ["sample", "--run", run, "--mcmc", "20", "--chains", "2", "--burn-in", "2", "--out", "{out}.h5"],
        ["inspect", run],
        ["inspect", os.path.join(run, "checkpoint.h5")],
        ["check", "--target.name", "gmm4", "--samples", "200"],
        ["train", "--help"],
        ["evaluate", "--help"],
    ]


def mutate(rng, args):
    a = list(args)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(10)
        i = rng.randrange(len(a)) if a else 0
        if op == 0 and a:
            del a[i]
        elif op == 1 and a:
            a.insert(i, a[i])
        elif op == 2 and len(a) > 1:
            j = rng.randrange(len(a))
            a[i], a[j] = a[j], a[i]
        elif op == 3 and a and a[i]:
            s = bytearray(a[i].encode("utf-8", "surrogateescape"))
            s[rng.randrange(len(s))] ^= 1 << rng.randrange(7)
            a[i] = s.replace(b"\0", b"0").decode("utf-8", "surrogateescape")
        elif op == 4 and a and a[i]:
            a[i] = a[i][: rng.randrange(len(a[i]))]
        elif op == 5 and a:
            # a value (an argument after an option) replaced by a bad one
            opts = [k for k in range(1, len(a)) if a[k - 1].startswith("--")]
            k = rng.choice(opts) if opts else i
            a[k] = rng.choice(BAD_VALUES)
        elif op == 6 and a:
            opts = [k for k in range(len(a)) if a[k].startswith("--") and len(a[k]) > 3]
            if opts:
                k = rng.choice(opts)
                s = list(a[k])
                p = rng.randrange(2, len(s))
                s[p] = rng.choice("abcdefghijklmnopqrstuvwxyz._")
                a[k] = "".join(s)
        elif op == 7:
            a.insert(i, rng.choice(JUNK))
        elif op == 8:
            a += ["--" + rng.choice(["train", "model", "eval", "run", "target", "base"]) + "." +
                  rng.choice(["steps", "batch", "lr", "hidden", "seed", "kind", "name", "samples", "shape", "m"]),
                  rng.choice(BAD_VALUES)]
        else:
            a += [rng.choice(JUNK)]
    return a


def huge_count(argv):
    """A valid request for 10^7 or more samples: it streams them in chunks and simply runs long."""
    for key, value in zip(argv, argv[1:]):
        if key in ("--samples", "--eval.samples") and value.isdigit() and int(value) >= 10**7:
            return True
    return False


def run_one(binary, work, case, args, limit):
    # Each case in a directory of its own (relative paths a mutation makes land there).
    cwd = os.path.join(work, f"w{case}")
    os.makedirs(cwd)
    out = os.path.join(cwd, "out")
    argv = [binary] + [x.replace("{out}", out) for x in args]
    env = dict(os.environ)
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=limit, env=env,
                           cwd=cwd)
        text = p.stdout.decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode("utf-8", "replace")
        # A valid command that runs long (it got past its checks and is working) is not a hang.
        started = "starting at step" in text or text.count("step ") > 1 or "mcmc" in text or huge_count(argv)
        return ("long" if started else "hang"), argv, text
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if rc == 0:
        return "ok", argv, text
    if rc == 2:
        return ("bad-input" if "error" in text.lower() else "silent-2"), argv, text
    return f"rc{rc}", argv, text


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    jobs = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    work = tempfile.mkdtemp(prefix="boltzflow-fuzz-cli-")
    run = os.path.join(work, "run")
    r = subprocess.run([binary, "train", "--out", run, "--train.steps", "3", "--eval.samples", "64",
                        "--run.progress", "plain"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work)
    if r.returncode != 0:
        sys.exit("fuzz_cli: the seed run failed:\n" + r.stdout.decode())
    rng = random.Random(seed)
    base = bases(src, run, work)
    cases = [mutate(rng, rng.choice(base)) for _ in range(n)]
    counts, failures = {}, []
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = [pool.submit(run_one, binary, work, i, c, 20) for i, c in enumerate(cases)]
        for f in cf.as_completed(futs):
            kind, argv, text = f.result()
            counts[kind] = counts.get(kind, 0) + 1
            if kind not in ("ok", "bad-input", "long"):
                failures.append((kind, argv, text[-600:]))
    # A timeout under load is not yet a hang: run those again alone with a longer limit.
    again = [f for f in failures if f[0] == "hang"]
    failures = [f for f in failures if f[0] != "hang"]
    for _, argv, _ in again:
        kind, argv2, text = run_one(binary, work, len(cases) + len(failures), [x for x in argv[1:]], 180)
        counts["hang"] -= 1
        counts[kind + " (slow under load)"] = counts.get(kind + " (slow under load)", 0) + 1
        if kind not in ("ok", "bad-input", "long"):
            failures.append((kind, argv2, text[-600:]))
    if counts.get("hang") == 0:
        del counts["hang"]
    # The seed run is untouched by all of it (no mutation may clobber another run's directory).
    if not os.path.exists(os.path.join(run, "checkpoint.h5")):
        failures.append(("clobbered", ["seed run"], "checkpoint.h5 is gone"))
    print(f"fuzz_cli: {n} mutated command lines (seed {seed}): " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for kind, argv, text in failures[:20]:
        print(f"FAIL ({kind}): {argv!r}\n{text}\n")
    if failures:
        print(f"fuzz_cli: {len(failures)} failures; work directory kept: {work}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
