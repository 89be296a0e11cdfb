#!/usr/bin/env python3
"""Reproduce the seed paper's findings with evotune on the default model; regenerate docs/results.md.

Parts (issue #7):
  1. drift law: `random` rewards (independent of noise and model), ‖θ_T−θ0‖ against √(α²dT/N), and
     with AWD against its stationary value;
  2. target learning on `arith`: ES, ES+AWD-l2, ES+AWD-l1, and a 2× population at equal evaluations;
  3. forgetting as drift: every prior task (and the KL probe) over iterations, per task;
  4. λ sweep of AWD-l2 and AWD-l1 on one seed (reusing part 2's seed-1 runs as λ = 0 and the default λ);
  5. findings computed from the runs, followed by docs/results_discussion.md (hand-written prose).

Every run is an `evotune train` run directory under --runs; an existing directory is resumed, not
redone, so an interrupted invocation continues where it stopped and the page can be regenerated
from finished runs at no cost. Python 3 standard library only; plots are drawn by `evotune report`.

Usage:
  python3 scripts/results.py                        # --scale full (see SCALES for the measured time)
  python3 scripts/results.py --scale session        # the scale of the committed docs/results.md
  python3 scripts/results.py --quick --out /tmp/r   # CI: tiny runs in a temp dir, checks the page parses
  python3 scripts/results.py --parts 1,4            # a subset (the page keeps only those parts)
"""

import argparse
import json
import math
import os
import platform
import re
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRIORS = ["capitals", "opposites", "plurals", "science", "kl"]


@dataclass
class Scale:
    """Sizes of every part. σ, α and the arith setup are the demo's (see crates/evotune-cli/src/cmd/demo.rs)."""

    name: str
    sigma: float = 3e-3
    alpha: float = 6e-3
    # part 1
    p1_iterations: int = 60
    p1_runs: list = field(default_factory=list)  # (population, awd, lambda, seed)
    # parts 2 and 3
    p2_iterations: int = 12
    p2_eval_every: int = 4
    p2_seeds: list = field(default_factory=lambda: [1, 2, 3])
    p2_population: int = 8
    p2_big_population: int = 16
    l2_lambda: float = 10.0
    l1_lambda: float = 0.1
    train_size: int = 16
    test_size: int = 48
    prior_limit: int = 40
    priors: list = field(default_factory=lambda: list(PRIORS))
    task_opts: dict = field(default_factory=lambda: {"kl_prompts": 8})
    # part 4 (seed = p2_seeds[0], iterations = p2_iterations, evaluated at 0 and the end)
    p4_l2: list = field(default_factory=lambda: [1.0, 3.0, 30.0, 100.0])
    p4_l1: list = field(default_factory=lambda: [0.01, 0.03, 0.3, 1.0])
    estimate: str = ""


def p1_grid(pops, awds, seeds):
    return [(n, a, lam, s) for n in pops for (a, lam) in awds for s in seeds]


SCALES = {
    "full": Scale(
        name="full",
        p1_iterations=40,
        p1_runs=p1_grid([8], [("none", 0), ("l2", 10.0), ("l1", 0.1)], [1, 2, 3])
        + p1_grid([32], [("none", 0), ("l2", 10.0)], [1]),
        p2_iterations=12,
        p2_eval_every=2,
        p2_seeds=[1, 2, 3],
        p4_l2=[1.0, 100.0],
        p4_l1=[0.01, 1.0],
        estimate="1 h 45 min measured on the 2-core machine with --jobs 2 (6270 s; a full test suite shared the "
        "cores for 19 of those minutes): parts 2+3 ≈ 77 min (12 runs, ≈ 9.5 min per N = 8 run of 12 iterations "
        "and 7 evaluations with one thread), part 4 ≈ 17 min, part 1 ≈ 11 min",
    ),
    "session": Scale(
        name="session",
        p1_iterations=40,
        p1_runs=p1_grid([8], [("none", 0), ("l2", 10.0), ("l1", 0.1)], [1]) + p1_grid([32], [("none", 0), ("l2", 10.0)], [1]),
        p2_iterations=8,
        p2_eval_every=4,
        p2_seeds=[1],
        p4_l2=[30.0],
        p4_l1=[0.3],
        estimate="about 2 h of wall-clock time on this 2-core machine while two other engineers built and "
        "tested on it (load average 5–11), with up to four runs in parallel; the per-run times are below",
    ),
    "quick": Scale(
        name="quick",
        p1_iterations=3,
        p1_runs=p1_grid([4], [("none", 0), ("l2", 10.0), ("l1", 0.1)], [1]),
        p2_iterations=2,
        p2_eval_every=2,
        p2_seeds=[1],
        p2_population=2,
        p2_big_population=4,
        train_size=2,
        test_size=2,
        prior_limit=2,
        priors=["capitals", "kl"],
        task_opts={"kl_prompts": 1, "kl_tokens": 4, "max_new_tokens": 4},
        p4_l2=[30.0],
        p4_l1=[0.3],
        estimate="a few minutes (CI)",
    ),
}


# ---------------------------------------------------------------------------------------------
# running evotune


class Runner:
    def __init__(self, evotune, runs_dir, threads, model=None, report_only=False, planning=False):
        self.evotune = evotune
        self.model = model
        self.report_only = report_only
        # planning: train nothing, collect in `plan` the (name, command) of every run not finished yet
        self.planning = planning
        self.plan = []
        self.status = {}  # run dir -> (iterations done, iterations planned)
        self.runs = Path(runs_dir)
        self.threads = threads
        self.commands = {}  # run dir -> command line (as a fresh run)

    def train(self, name, args, iterations, eval_every):
        out = self.runs / name
        cmd = [self.evotune, "train", "--quiet", *args, "--iterations", str(iterations), "--eval-every", str(eval_every)]
        cmd += ["--out", str(out)]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if self.model:
            cmd += ["--model", self.model]
        if self.report_only:
            if not (out / "metrics.jsonl").exists() or last_iteration(out) == 0:
                log(f"  {name}: not run (--report-only)")
                self.status[str(out)] = (0, iterations)
                return None
            self.commands[str(out)] = shown(cmd)
            self.status[str(out)] = (last_iteration(out), iterations)
            log(f"  {name}: {last_iteration(out)} of {iterations} iterations (--report-only)")
            return out
        self.commands[str(out)] = shown(cmd)
        self.status[str(out)] = (iterations, iterations)
        if (out / "config.toml").exists():
            last = last_iteration(out)
            if last >= iterations:
                if not self.planning:
                    log(f"  {name}: done ({last} iterations)")
                return out
            cmd = [self.evotune, "train", "--quiet", "--resume", str(out), "--iterations", str(iterations)]
            cmd += ["--eval-every", str(eval_every)]
            cmd += ["--threads", str(self.threads)] if self.threads else []
            what = f"resuming at iteration {last}"
        else:
            what = " ".join(cmd[2:])
        if self.planning:
            self.plan.append((name, cmd))
            return None
        log(f"  {name}: {what}")
        t0 = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            sys.exit(f"evotune failed for {name} (status {proc.returncode}):\n{proc.stdout}")
        log(f"  {name}: finished in {time.time() - t0:.0f} s")
        return out

    def report(self, runs, out, references=()):
        if self.planning:
            return
        cmd = [self.evotune, "report", *map(str, runs), "--out", str(out)]
        for label, path in references:
            cmd += ["--drift-reference", f"{label}={path}"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            sys.exit(f"evotune report failed:\n{proc.stdout}")


def run_plan(plan, jobs, threads):
    """Runs the planned commands `jobs` at a time, each with `threads` threads (the arith runs of part
    2 first, seed by seed, then part 4, then part 1: the most wanted results finish first). Stops
    with the failures listed after every job has ended."""
    rank = {"p2": 0, "p4": 1, "p1": 2}

    def key(entry):
        i, (name, _) = entry
        seed = re.search(r"-s(\d+)$", name)
        return (rank.get(name.split("/")[0], 3), int(seed.group(1)) if seed else 0, i)

    ordered = [e for _, e in sorted(enumerate(plan), key=key)]
    log(f"running {len(ordered)} runs, {jobs} at a time with {threads} thread(s) each")
    started, failures = time.time(), []

    def one(k, name, cmd):
        cmd = list(cmd)
        if "--threads" in cmd:
            i = cmd.index("--threads")
            cmd[i + 1] = str(threads)
        else:
            cmd += ["--threads", str(threads)]
        t0 = time.time()
        log(f"  [{k + 1}/{len(ordered)}] {name}: started")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            failures.append(f"{name} (status {proc.returncode}):\n{proc.stdout}")
            log(f"  [{k + 1}/{len(ordered)}] {name}: FAILED after {time.time() - t0:.0f} s")
        else:
            log(f"  [{k + 1}/{len(ordered)}] {name}: finished in {time.time() - t0:.0f} s "
                f"({time.time() - started:.0f} s since the start)")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for k, (name, cmd) in enumerate(ordered):
            pool.submit(one, k, name, cmd)
    if failures:
        sys.exit("evotune failed for:\n" + "\n".join(failures))


def shown(cmd):
    """A command line as the page shows it: `evotune …`, paths inside the repository made relative."""
    def rel(c):
        try:
            return os.path.relpath(c, REPO) if os.path.isabs(c) and Path(c).resolve().is_relative_to(REPO) else c
        except ValueError:
            return c
    return " ".join(shlex.quote(rel(c)) for c in ["evotune", *cmd[1:]])


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def metrics(run):
    """(iteration lines, eval lines) of a run's metrics.jsonl (a partial last line is skipped)."""
    its, evals = [], []
    with open(Path(run) / "metrics.jsonl") as f:
        for line in f:
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue
            (its if m["type"] == "iteration" else evals).append(m)
    return its, evals


def last_iteration(run):
    try:
        its, _ = metrics(run)
    except FileNotFoundError:
        return 0
    return its[-1]["iteration"] if its else 0


def awd_args(awd, lam):
    return ["--awd", awd] + (["--awd-lambda", repr(lam)] if awd != "none" else [])


def awd_label(awd, lam):
    return "ES" if awd == "none" else f"AWD-{awd} λ={lam:g}"


# ---------------------------------------------------------------------------------------------
# the parameter count d, read from the GGUF header (independent of evotune's loader)

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_parameter_count(path):
    """Σ over tensors of Π dims, from the tensor infos of a GGUF v2/v3 file."""
    with open(path, "rb") as f:

        def read(fmt):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def read_str():
            return f.read(read("Q"))

        def skip_value(kind):
            if kind in GGUF_SCALAR:
                read(GGUF_SCALAR[kind])
            elif kind == 8:
                read_str()
            elif kind == 9:
                inner, count = read("I"), read("Q")
                if inner in GGUF_SCALAR:
                    f.seek(struct.calcsize("<" + GGUF_SCALAR[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip_value(inner)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = read("I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = read("Q"), read("Q")
        for _ in range(n_kv):
            read_str()
            skip_value(read("I"))
        total = 0
        for _ in range(n_tensors):
            read_str()
            dims = [read("Q") for _ in range(read("I"))]
            read("I")
            read("Q")
            total += math.prod(dims)
        return total


# ---------------------------------------------------------------------------------------------
# drift predictions (reference/papers.md §7): per-element step ~ N(0, s²), s² = α²/N, exactly, when
# the z-scored rewards are independent of ε (Σ z² = N)


def predicted_drift(alpha, n, d, t, awd, lam):
    """E‖θ_t − θ0‖² under independent rewards, as a norm (√ of the expectation)."""
    s2 = alpha * alpha / n
    if awd == "none":
        return math.sqrt(d * s2 * t)
    if awd == "l2":
        rho = 1.0 - alpha * lam  # δ ← ρ(δ + step): V_t = ρ²(V_{t−1} + s²)
        return math.sqrt(d * s2 * rho * rho * (1 - rho ** (2 * t)) / (1 - rho * rho))
    return math.sqrt(d * l1_second_moment(math.sqrt(s2), alpha * lam, t))


def predicted_drift_active(alpha, n, d, active, awd, lam):
    """As [`predicted_drift`] for a run whose iteration t made a step only where active[t] (z-scored
    rewards with Σz² = N; an iteration whose rewards all tie has z = 0 and no step, but AWD still
    decays δ)."""
    s2 = alpha * alpha / n
    if awd == "none":
        return math.sqrt(d * s2 * sum(active))
    if awd == "l2":
        rho, v = 1.0 - alpha * lam, 0.0
        for a in active:
            v = rho * rho * (v + (s2 if a else 0.0))
        return math.sqrt(d * v)
    return math.sqrt(d * l1_chain(math.sqrt(s2), alpha * lam, active))


def l1_chain(s, tau, active):
    """E δ² after the AWD-l1 chain with steps where `active` (see [`l1_second_moment`]): a fresh grid,
    evolved step by step; inactive iterations only soft-threshold."""
    _L1_CACHE.pop((s, tau), None)
    l1_second_moment(s, tau, 0)
    xs, kernel, kh, half, k_tau, p, moments = _L1_CACHE.pop((s, tau))
    m = len(xs)
    for a in active:
        conv = p
        if a:
            conv = [0.0] * m
            for i, pi in enumerate(p):
                if pi < 1e-15:
                    continue
                for j in range(max(0, i - kh), min(m - 1, i + kh) + 1):
                    conv[j] += pi * kernel[j - i + kh]
        q = [0.0] * m
        for j, pj in enumerate(conv):
            off = j - half
            if abs(off) <= k_tau:
                q[half] += pj
            else:
                q[j - k_tau if off > 0 else j + k_tau] += pj
        p = q
    return sum(pi * x * x for pi, x in zip(p, xs))


def stationary_l2(alpha, n, d, lam):
    """The papers' approximation √(αd/(2λN)) of the AWD-l2 stationary norm."""
    return math.sqrt(alpha * d / (2 * lam * n))


_L1_CACHE = {}


def l1_second_moment(s, tau, t):
    """E δ_t² of the chain δ ← sign(x)·max(|x| − τ, 0), x = δ + s·ξ, δ_0 = 0, by evolving its
    probability mass on a grid of spacing h = τ/k ≤ s/8: the threshold is a whole number of cells, so
    soft-thresholding moves mass exactly from cell to cell, and the sampled Gaussian kernel's variance
    is s² up to terms of order exp(−2π²s²/h²)."""
    key = (s, tau)
    if key not in _L1_CACHE:
        k_tau = max(1, math.ceil(8 * tau / s))
        h = tau / k_tau
        stationary_rms = s * s / (math.sqrt(2) * tau)
        half = int(math.ceil((10 * max(stationary_rms, s) + 6 * s) / h))
        xs = [(i - half) * h for i in range(2 * half + 1)]
        p = [0.0] * len(xs)
        p[half] = 1.0
        moments = [0.0]
        kernel_half = int(math.ceil(6 * s / h))
        kernel = [math.exp(-0.5 * (k * h / s) ** 2) for k in range(-kernel_half, kernel_half + 1)]
        ksum = sum(kernel)
        kernel = [k / ksum for k in kernel]
        _L1_CACHE[key] = (xs, kernel, kernel_half, half, k_tau, p, moments)
    xs, kernel, kh, half, k_tau, p, moments = _L1_CACHE[key]
    m = len(xs)
    while len(moments) <= t:
        conv = [0.0] * m
        for i, pi in enumerate(p):
            if pi < 1e-15:
                continue
            lo, hi = max(0, i - kh), min(m - 1, i + kh)
            for j in range(lo, hi + 1):
                conv[j] += pi * kernel[j - i + kh]
        q = [0.0] * m
        for j, pj in enumerate(conv):
            off = j - half  # x = off·h; soft-thresholding by τ = k_tau·h moves it to off ∓ k_tau
            if abs(off) <= k_tau:
                q[half] += pj
            else:
                q[j - k_tau if off > 0 else j + k_tau] += pj
        p[:] = q
        moments.append(sum(pi * x * x for pi, x in zip(p, xs)))
    return moments[t]


# ---------------------------------------------------------------------------------------------
# formatting


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.{digits}f}"


def mean_spread(values, digits=3):
    """'mean ± sd (n)' over seeds (sample sd; n = 1 gives the value alone)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "nan"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(statistics.mean(values), digits)} ± {fmt(statistics.stdev(values), digits)}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def prior_score(ev, task):
    """Accuracy of a multiple-choice prior, or the KL of the probe."""
    for p in ev["priors"]:
        if p["task"] == task:
            if task.startswith("kl"):
                return p["metrics"].get("kl")
            return p["accuracy"]
    return None


def prior_metric(ev, task, key):
    for p in ev["priors"]:
        if p["task"] == task:
            return p["metrics"].get(key)
    return None


# ---------------------------------------------------------------------------------------------
# part 1


def part1(sc, runner, docs, d_gguf):
    log(f"part 1: drift law, {len(sc.p1_runs)} runs of {sc.p1_iterations} iterations on `random` rewards")
    runs = []
    for n, awd, lam, seed in sc.p1_runs:
        name = f"p1/{'es' if awd == 'none' else 'awd-' + awd}-n{n}-s{seed}"
        args = ["--task", "random", "--population", str(n), "--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
        args += ["--seed", str(seed), *awd_args(awd, lam)]
        out = runner.train(name, args, sc.p1_iterations, 0)
        if out:
            runs.append(((n, awd, lam, seed), out))
    a = sc.alpha
    T = sc.p1_iterations
    # d implied by the first step of the plain-ES runs: ‖Δθ_1‖² = α²d/N·(1 ± √(2/d))
    implied = [n * (metrics(r)[0][0]["drift"] / a) ** 2 for (n, awd, _, _), r in runs if awd == "none"]
    d = d_gguf
    lines = ["## 1. Drift law on the real model\n"]
    lines.append(
        f"Target `random`: member n of iteration t is rewarded u(seed, t, n) ∈ [0, 1), a hash that ignores the "
        f"model, so the z-scored rewards are independent of the noise and each step (α/N)Σzₙεₙ is "
        f"N(0, α²/N) per element. Predicted E‖θ_T−θ0‖² = α²dT/N without AWD; with AWD-l2 "
        f"(ρ = 1 − αλ, applied after the step) ρ²(α²d/N)(1 − ρ^2T)/(1 − ρ²), whose limit is ≈ √(αd/(2λN)) "
        f"(the papers' formula, also listed); with AWD-l1 the per-element chain δ ← soft(δ + N(0, α²/N), αλ) "
        f"is evolved numerically on a grid (no closed form). α = {a:g}, d = {d:,} (summed over the GGUF's "
        f"tensor shapes by this script)"
        + (f"; d implied by the first step of the ES runs: {', '.join(f'{x:,.0f}' for x in implied)}." if implied else ".")
        + "\n"
    )
    checkpoints = sorted({t for t in (1, 2, 5, 10, 20, 40, 60, 100, T) if t <= T})
    rows = []
    refs = []
    for (n, awd, lam, seed), r in runs:
        its, _ = metrics(r)
        drift = {m["iteration"]: m["drift"] for m in its}
        for t in checkpoints:
            if t in drift:
                pred = predicted_drift(a, n, d, t, awd, lam)
                stat = fmt(stationary_l2(a, n, d, lam), 2) if awd == "l2" else ""
                rows.append([n, awd_label(awd, lam), seed, t, fmt(pred, 2), stat, fmt(drift[t], 2), fmt(drift[t] / pred, 5)])
        path = Path(r) / "predicted_drift.txt"
        with open(path, "w") as f:
            f.write(f"# predicted ‖θ_t−θ0‖, N={n}, {awd_label(awd, lam)}, alpha={a}, d={d}\n")
            for t in range(0, T + 1):
                f.write(f"{t} {predicted_drift(a, n, d, t, awd, lam) if t else 0.0:.6f}\n")
        if seed == min(s for (nn, aw, lm, s), _ in runs if (nn, aw, lm) == (n, awd, lam)):
            refs.append((f"predicted N={n} {awd_label(awd, lam)}", path))
    lines.append(
        table(["N", "run", "seed", "T", "predicted ‖θ_T−θ0‖", "stationary √(αd/(2λN))", "measured", "measured / predicted"], rows)
    )
    # √T law across the whole run: the ratio measured/predicted at every iteration
    ratios = []
    for (n, awd, lam, seed), r in runs:
        its, _ = metrics(r)
        rs = [m["drift"] / predicted_drift(a, n, d, m["iteration"], awd, lam) for m in its]
        ratios.append([n, awd_label(awd, lam), seed, len(rs), fmt(min(rs), 5), fmt(max(rs), 5), fmt(statistics.mean(rs), 5)])
    lines.append(
        f"\nmeasured / predicted over every iteration 1…T of each run (‖θ_T−θ0‖² sums d independent terms, so "
        f"the ratio's sampling spread is about 1/√(2d) = {1 / math.sqrt(2 * d):.1e}; the l1 prediction also carries "
        f"the grid's discretisation error):\n\n"
    )
    lines.append(table(["N", "run", "seed", "iterations", "min", "max", "mean"], ratios))
    # population scaling at equal T
    by = {}
    t_common = min(last_iteration(r) for _, r in runs) if runs else 0
    for (n, awd, lam, seed), r in runs:
        its, _ = metrics(r)
        by.setdefault((awd, lam), {}).setdefault(n, []).extend(m["drift"] for m in its if m["iteration"] == t_common)
    pops = sorted({n for (n, _, _, _), _ in runs})
    if len(pops) >= 2:
        rows = []
        lo, hi = pops[0], pops[-1]
        for (awd, lam), v in by.items():
            if v.get(lo) and v.get(hi):
                meas = statistics.mean(v[lo]) / statistics.mean(v[hi])
                pred = predicted_drift(a, lo, d, t_common, awd, lam) / predicted_drift(a, hi, d, t_common, awd, lam)
                rows.append([awd_label(awd, lam), f"N={lo} / N={hi}", fmt(pred, 3), fmt(meas, 3)])
        lines.append(f"\nPopulation scaling at T = {t_common} (the random walk predicts a ratio √(N₂/N₁) without AWD; "
                     f"the AWD rows use the finite-T predictions above):\n\n")
        lines.append(table(["run", "ratio of ‖θ_T−θ0‖", "predicted", "measured"], rows))
    out = docs / "p1"
    runner.report([r for _, r in runs], out, refs)
    lines.append(f"\n![drift against prediction](results/p1/drift.png)\n")
    return "\n".join(lines), runs, implied


# ---------------------------------------------------------------------------------------------
# parts 2 and 3


def p2_configs(sc):
    """(key, label, population, iterations, awd, λ): the big population runs half the iterations
    (equal evaluations N·T)."""
    big_t = max(1, sc.p2_iterations * sc.p2_population // sc.p2_big_population)
    return [
        ("es-n%d" % sc.p2_population, f"ES N={sc.p2_population}", sc.p2_population, sc.p2_iterations, "none", 0.0),
        ("awd-l2-n%d" % sc.p2_population, f"ES N={sc.p2_population} + AWD-l2 λ={sc.l2_lambda:g}", sc.p2_population, sc.p2_iterations, "l2", sc.l2_lambda),
        ("awd-l1-n%d" % sc.p2_population, f"ES N={sc.p2_population} + AWD-l1 λ={sc.l1_lambda:g}", sc.p2_population, sc.p2_iterations, "l1", sc.l1_lambda),
        ("es-n%d" % sc.p2_big_population, f"ES N={sc.p2_big_population} (equal evaluations)", sc.p2_big_population, big_t, "none", 0.0),
    ]


def arith_args(sc, n, seed, awd, lam):
    args = ["--task", "arith", "--population", str(n), "--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
    args += ["--seed", str(seed), *awd_args(awd, lam), "--prior-limit", str(sc.prior_limit)]
    for p in sc.priors:
        args += ["--prior", p]
    opts = {"train_size": sc.train_size, "test_size": sc.test_size, **sc.task_opts}
    for k, v in opts.items():
        args += ["--task-opt", f"{k}={v}"]
    return args


def run_p2(sc, runner):
    runs = {}
    for key, label, n, iters, awd, lam in p2_configs(sc):
        for seed in sc.p2_seeds:
            name = f"p2/{key}-s{seed}"
            eval_every = sc.p2_eval_every
            out = runner.train(name, arith_args(sc, n, seed, awd, lam), iters, eval_every)
            if out:
                runs[(key, seed)] = out
    return runs


def seeds_of(sc, runs, key):
    return [s for s in sc.p2_seeds if (key, s) in runs]


def present(sc, runs):
    return [c for c in p2_configs(sc) if seeds_of(sc, runs, c[0])]


def part2(sc, runner, docs, runs, d):
    lines = ["## 2. Target learning on `arith`\n"]
    if not present(sc, runs):
        return "\n".join(lines) + "\nNot run.\n"
    lines.append(
        f"`arith` (\"What is A + B? Answer with only the number.\", reward 0.1·format + 1·answer), "
        f"{sc.train_size} training prompts per iteration, {sc.test_size} held-out test items; σ = {sc.sigma:g}, "
        f"α = {sc.alpha:g}, seeds {', '.join(map(str, sc.p2_seeds))}. The N = {sc.p2_big_population} runs have half "
        f"the iterations, so every configuration spends the same number of member evaluations (N·T). "
        f"Cells are mean ± sample sd over seeds (one seed: the value). The random-walk prediction is part 1's law "
        f"applied to the run's own iterations: an iteration whose member rewards all tie (\"tied iterations\", "
        f"summed over seeds) has z = 0 and makes no step, though AWD still pulls θ back.\n"
    )
    rows = []
    for key, label, n, iters, awd, lam in present(sc, runs):
        acc0, acc1, r_first, r_last, drift, kl, secs = [], [], [], [], [], [], []
        for seed in seeds_of(sc, runs, key):
            its, evs = metrics(runs[(key, seed)])
            acc0.append(evs[0]["target"]["accuracy"])
            acc1.append(evs[-1]["target"]["accuracy"])
            r_first.append(its[0]["reward_mean"])
            r_last.append(its[-1]["reward_mean"])
            drift.append(its[-1]["drift"])
            kl.append(prior_score(evs[-1], "kl") if "kl" in sc.priors else float("nan"))
            secs.append(sum(m["seconds"] for m in its) + sum(e["seconds"] for e in evs))
        iters = max(metrics(runs[(key, s)])[0][-1]["iteration"] for s in seeds_of(sc, runs, key))
        walk, tied = [], []
        for seed in seeds_of(sc, runs, key):
            active = [m["reward_std"] > 0 for m in metrics(runs[(key, seed)])[0]]
            walk.append(predicted_drift_active(sc.alpha, n, d, active, awd, lam))
            tied.append(len(active) - sum(active))
        rows.append(
            [label, iters, n * iters, mean_spread(acc0), mean_spread(acc1), mean_spread(r_first), mean_spread(r_last),
             mean_spread(drift, 2), mean_spread(walk, 2), sum(tied), mean_spread(kl, 4), fmt(statistics.mean(secs), 0)]
        )
    lines.append(
        table(["configuration", "T", "evaluations N·T", "test acc. @0", "test acc. @last eval", "pop. reward @1", "pop. reward @T",
               "‖θ_T−θ0‖", "random-walk prediction (part 1)", "tied iterations", "KL @last eval", "wall s (mean)"], rows)
    )
    # reward over iterations
    lines.append("\nPopulation mean reward over iterations (mean over seeds):\n\n")
    cfgs = present(sc, runs)
    T = max(c[3] for c in cfgs)
    rows = []
    for t in range(1, T + 1):
        row = [t]
        for key, label, n, iters, awd, lam in cfgs:
            vals = []
            for seed in seeds_of(sc, runs, key):
                its, _ = metrics(runs[(key, seed)])
                vals += [m["reward_mean"] for m in its if m["iteration"] == t]
            row.append(mean_spread(vals) if vals else "")
        rows.append(row)
    lines.append(table(["iteration"] + [c[1] for c in cfgs], rows))
    lines.append("\nTarget test accuracy at each evaluation:\n\n")
    lines.append(eval_table(sc, runs, lambda ev: ev["target"]["accuracy"]))
    for seed in sc.p2_seeds:
        have = [runs[(c[0], seed)] for c in cfgs if (c[0], seed) in runs]
        if have:
            runner.report(have, docs / f"p2-s{seed}")
    s0 = sc.p2_seeds[0]
    lines.append(
        f"\n![reward](results/p2-s{s0}/target_reward.png) ![accuracy](results/p2-s{s0}/target_accuracy.png)"
        f" ![drift](results/p2-s{s0}/drift.png)\n"
    )
    return "\n".join(lines)


def pattern(series):
    """Shape of a prior task's accuracy over the evaluations."""
    first, last = series[0], series[-1]
    if min(series) < min(first, last):
        return "dip and recover" if last >= first else "dip, partial recovery"
    if max(series) > max(first, last):
        return "rise and return" if last <= first else "rise, partial return"
    return "down" if last < first else ("up" if last > first else "flat")


def excursion(series):
    """(largest fall below the start, largest rise above it, change at the end)."""
    s0 = series[0]
    return s0 - min(series), max(series) - s0, series[-1] - s0


def dip_table(sc, runs):
    """Per (configuration, prior task), over seeds: how far accuracy (in items) and the log-prob margin
    fell below their start at the worst evaluation, rose above it at the best, and where they ended;
    and in how many seeds the accuracy dipped by ≥ 2 items and came back to within 1 item."""
    rows = []
    for c in present(sc, runs):
        for task in [p for p in sc.priors if p != "kl"]:
            fall, rise, end, mfall, mend, recovered, dipped = [], [], [], [], [], 0, 0
            for s in seeds_of(sc, runs, c[0]):
                evs = metrics(runs[(c[0], s)])[1]
                items = prior_metric(evs[0], task, "items") or 1
                f, r, e = excursion([prior_score(ev, task) * items for ev in evs])
                fall.append(f), rise.append(r), end.append(e)
                mf, _, me = excursion([prior_metric(ev, task, "logprob_margin") for ev in evs])
                mfall.append(mf), mend.append(me)
                if f >= 2 - 1e-9:
                    dipped += 1
                    recovered += e >= -1 - 1e-9
            rows.append([c[1], task, mean_spread(fall, 1), mean_spread(rise, 1), mean_spread(end, 1),
                         mean_spread(mfall), mean_spread(mend), f"{recovered} of {dipped}", len(fall)])
    return (
        "\nDip and recovery, per task and configuration (mean ± sd over seeds). Accuracy in items out of "
        f"{sc.prior_limit} (one item = {1 / sc.prior_limit:.3f}); \"worst fall\" is the start minus the lowest "
        "evaluation, \"best rise\" the highest minus the start, \"end\" the last evaluation minus the start; "
        "the same for the log-prob margin (nats). \"dips that recover\": seeds whose accuracy fell by ≥ 2 items "
        "at some evaluation and ended within 1 item of the start or above it.\n\n"
        + table(["configuration", "task", "worst fall (items)", "best rise (items)", "end (items)",
                 "margin: worst fall", "margin: end", "dips that recover", "seeds"], rows)
    )


def kl_per_drift_table(sc, runs):
    """KL(base‖current) per squared drift norm at every evaluation after 0: if forgetting is the walk,
    KL ≈ ½δᵀFδ grows with ‖δ‖² at one rate whatever the configuration."""
    rows = []
    for c in present(sc, runs):
        ratios, kls, drifts = [], [], []
        for s in seeds_of(sc, runs, c[0]):
            for ev in metrics(runs[(c[0], s)])[1]:
                kl, dr = prior_score(ev, "kl"), ev["drift"]["total"]
                if ev["iteration"] > 0 and kl is not None and dr > 0:
                    ratios.append(kl / dr ** 2 * 1e6)
                    kls.append(kl)
                    drifts.append(dr)
        if ratios:
            rows.append([c[1], len(ratios), mean_spread(ratios), fmt(min(ratios)), fmt(max(ratios)),
                         f"{fmt(min(drifts), 1)}–{fmt(max(drifts), 1)}", f"{fmt(min(kls), 4)}–{fmt(max(kls), 4)}"])
    return (
        "\nForgetting measured against drift: KL(base‖current) per token divided by ‖θ−θ0‖², at every "
        "evaluation after iteration 0 of every seed (×10⁶). For a random walk δ the KL is ≈ ½δᵀFδ "
        "(F the Fisher information), so the ratio would be the same for every configuration; a larger ratio "
        "means the update moved θ in directions the probe is more sensitive to.\n\n"
        + (table(["configuration", "evaluations", "KL / ‖θ−θ0‖² ×10⁶", "min", "max", "‖θ−θ0‖ range", "KL range"], rows)
           if rows else "No evaluation after θ moved.\n")
    )


def eval_table(sc, runs, pick, digits=3):
    cfgs = present(sc, runs)
    iters = sorted({e["iteration"] for c in cfgs for s in seeds_of(sc, runs, c[0]) for e in metrics(runs[(c[0], s)])[1]})
    rows = []
    for t in iters:
        row = [t]
        for c in cfgs:
            vals = []
            for s in seeds_of(sc, runs, c[0]):
                vals += [pick(e) for e in metrics(runs[(c[0], s)])[1] if e["iteration"] == t]
            row.append(mean_spread(vals, digits) if vals else "")
        rows.append(row)
    return table(["iteration"] + [c[1] for c in cfgs], rows)


def part3(sc, runner, docs, runs):
    lines = ["## 3. Forgetting as drift, per prior task\n"]
    if not present(sc, runs):
        return "\n".join(lines) + "\nNot run.\n"
    lines.append(
        f"Prior tasks are only evaluated, never trained on: the built-in multiple-choice suites scored by "
        f"log-likelihood on their first {sc.prior_limit} items (accuracy and the mean log-prob margin of the right "
        f"answer, the finer signal), and the KL(base‖current) probe per token. Mean ± sd over seeds "
        f"{', '.join(map(str, sc.p2_seeds))}.\n"
    )
    for task in sc.priors:
        if task == "kl":
            lines.append("\n### KL(base‖current) per token\n\n")
            lines.append(eval_table(sc, runs, lambda ev: prior_score(ev, "kl"), 4))
            continue
        lines.append(f"\n### {task}: accuracy\n\n")
        lines.append(eval_table(sc, runs, lambda ev, t=task: prior_score(ev, t)))
        lines.append(f"\n{task}: log-prob margin of the right answer\n\n")
        lines.append(eval_table(sc, runs, lambda ev, t=task: prior_metric(ev, t, "logprob_margin")))
    # dip-and-recover summary per (configuration, task)
    lines.append("\nPer task and configuration: accuracy at 0, its minimum and maximum over the evaluations, and at "
                 "the last evaluation (\"dip and recover\" = minimum below both ends; \"rise and return\" = maximum above "
                 "both ends):\n\n")
    rows = []
    for c in present(sc, runs):
        for task in [p for p in sc.priors if p != "kl"]:
            for s in seeds_of(sc, runs, c[0]):
                evs = metrics(runs[(c[0], s)])[1]
                acc = [prior_score(e, task) for e in evs]
                lo, hi = min(acc), max(acc)
                rows.append([c[1], task, s, fmt(acc[0]), fmt(lo), fmt(hi), fmt(acc[-1]), pattern(acc)])
    lines.append(table(["configuration", "task", "seed", "acc @0", "min", "max", "acc @T", "pattern"], rows))
    lines.append(dip_table(sc, runs))
    if "kl" in sc.priors:
        lines.append(kl_per_drift_table(sc, runs))
    s0 = sc.p2_seeds[0]
    plots = " ".join(f"![{t}](results/p2-s{s0}/prior_{t}.png)" for t in sc.priors if t != "kl")
    lines.append(f"\n{plots} ![kl](results/p2-s{s0}/metric_kl_kl.png)\n")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# part 4


def part4(sc, runner, docs, p2runs):
    seed = sc.p2_seeds[0]
    lines = ["## 4. λ sweep (seed %d, %d iterations)\n" % (seed, sc.p2_iterations)]
    lines.append(
        "λ = 0 and the default λ of each kind are part 2's seed runs; the other λ are evaluated at 0 and at the end "
        "only. Δ = value at T minus value at 0; prior accuracy is the mean over the multiple-choice suites.\n"
    )
    n = sc.p2_population
    entries = [(awd, lam, p2runs[(key, seed)]) for awd, lam, key in
               (("none", 0.0, f"es-n{n}"), ("l2", sc.l2_lambda, f"awd-l2-n{n}"), ("l1", sc.l1_lambda, f"awd-l1-n{n}"))
               if (key, seed) in p2runs]
    for awd, lams in (("l2", sc.p4_l2), ("l1", sc.p4_l1)):
        for lam in lams:
            name = f"p4/awd-{awd}-lambda{lam:g}-n{n}-s{seed}"
            out = runner.train(name, arith_args(sc, n, seed, awd, lam), sc.p2_iterations, sc.p2_iterations)
            if out:
                entries.append((awd, lam, out))
    mc = [p for p in sc.priors if p != "kl"]
    rows = []
    for awd, lam, r in sorted(entries, key=lambda e: ({"none": 0, "l2": 1, "l1": 2}[e[0]], e[1])):
        its, evs = metrics(r)
        e0, e1 = evs[0], evs[-1]
        if e1["iteration"] == 0:
            continue  # unfinished (--report-only): no evaluation after training yet
        prior0 = statistics.mean(prior_score(e0, t) for t in mc)
        prior1 = statistics.mean(prior_score(e1, t) for t in mc)
        per_task = ", ".join(f"{t} {prior_score(e1, t) - prior_score(e0, t):+.3f}" for t in mc)
        kl = fmt(prior_score(e1, "kl"), 4) if "kl" in sc.priors else "nan"
        rows.append([awd, f"{lam:g}", fmt(e1["target"]["accuracy"]), f"{e1['target']['accuracy'] - e0['target']['accuracy']:+.3f}",
                     f"{its[-1]['reward_mean'] - its[0]['reward_mean']:+.3f}", f"{prior1 - prior0:+.3f}", per_task, kl,
                     fmt(its[-1]["drift"], 1)])
    lines.append(table(["AWD", "λ", "test acc. @T", "Δ test acc.", "Δ pop. reward (T vs 1)", "Δ mean prior acc.",
                        "Δ per prior task", "KL @T", "‖θ_T−θ0‖"], rows))
    return "\n".join(lines), entries


# ---------------------------------------------------------------------------------------------
# part 5 and the page


def findings(sc, p1, p2runs, p4, d):
    """Plain statements computed from the runs (no judgement; the discussion below interprets them)."""
    out = ["## 5. Findings computed from these runs\n"]
    if p1 and p1[1]:
        _, runs, implied = p1
        worst = 0.0
        for (n, awd, lam, seed), r in runs:
            for m in metrics(r)[0]:
                worst = max(worst, abs(m["drift"] / predicted_drift(sc.alpha, n, d, m["iteration"], awd, lam) - 1))
        out.append(f"- Drift law (part 1): over every iteration of {len(runs)} `random`-reward runs, measured ‖θ_t−θ0‖ "
                   f"is within {worst:.1e} (relative) of the prediction.")
        for (n, awd, lam, seed), r in runs:
            m = metrics(r)[0][-1]
            pred = predicted_drift(sc.alpha, n, d, m["iteration"], awd, lam)
            extra = f"; papers' stationary approximation {stationary_l2(sc.alpha, n, d, lam):.2f}" if awd == "l2" else ""
            out.append(f"  - N={n} {awd_label(awd, lam)} (seed {seed}): ‖θ_{m['iteration']}−θ0‖ = {m['drift']:.2f}, "
                       f"predicted {pred:.2f}{extra}")
    if p2runs and present(sc, p2runs):
        mc = [p for p in sc.priors if p != "kl"]
        out.append("- Target and priors (parts 2-3), change from iteration 0 to the last evaluation, mean ± sd over seeds:")
        for key, label, *_ in present(sc, p2runs):
            acc, rew, prior, kl, per = [], [], [], [], {t: [] for t in mc}
            dips = 0
            total = 0
            for s in seeds_of(sc, p2runs, key):
                its, evs = metrics(p2runs[(key, s)])
                acc.append(evs[-1]["target"]["accuracy"] - evs[0]["target"]["accuracy"])
                rew.append(its[-1]["reward_mean"] - its[0]["reward_mean"])
                prior.append(statistics.mean(prior_score(evs[-1], t) - prior_score(evs[0], t) for t in mc))
                if "kl" in sc.priors:
                    kl.append(prior_score(evs[-1], "kl"))
                for t in mc:
                    series = [prior_score(e, t) for e in evs]
                    per[t].append(series[-1] - series[0])
                    total += 1
                    dips += pattern(series) not in ("down", "up", "flat")
            per_txt = ", ".join(f"{t} {mean_spread(v)}" for t, v in per.items())
            kl_txt = f", KL at the end {mean_spread(kl, 4)}" if kl else ""
            out.append(f"  - {label}: test accuracy {mean_spread(acc)}, population reward (last − first iteration) "
                       f"{mean_spread(rew)}, mean prior accuracy {mean_spread(prior)} ({per_txt}){kl_txt}; "
                       f"non-monotone (dip or rise, then back) in {dips} of {total} (task, seed) series")
    if p4:
        out.append(f"- λ sweep (part 4): {len(p4)} runs on seed {sc.p2_seeds[0]}, see the table in part 4.")
    return "\n".join(out) + "\n"


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu or platform.processor()}){mem}, {platform.system()} {platform.release()}"


def git_commit():
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def check_page(text):
    """Every table cell past the first column must be empty, text, or parse as numbers; returns the
    count of numeric cells. Raises on a cell that looks numeric but does not parse."""
    count = 0
    num = re.compile(r"^[+-]?(\d+(\.\d+)?|nan)( ± \d+(\.\d+)?)?$")
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        for cell in [c.strip() for c in line.strip("|").split("|")][1:]:
            if cell and (cell[0].isdigit() or cell[0] in "+-") and num.match(cell.replace(",", "")):
                for part in cell.replace(",", "").split(" ± "):
                    float(part)
                count += 1
    return count


def build_sections(sc, parts, runner, docs, d):
    """The page's sections of `parts`, training whatever `runner` has not finished (in order)."""
    sections, timings = [], []
    p1 = p2runs = p4 = None
    if 1 in parts:
        t0 = time.time()
        text, runs, implied = part1(sc, runner, docs, d)
        p1 = (text, runs, implied)
        sections.append(text)
        timings.append(("1 drift law", time.time() - t0))
    if parts & {2, 3, 4}:
        t0 = time.time()
        log(f"parts 2-3: {len(p2_configs(sc)) * len(sc.p2_seeds)} arith runs")
        p2runs = run_p2(sc, runner)
        if 2 in parts:
            sections.append(part2(sc, runner, docs, p2runs, d))
        if 3 in parts:
            sections.append(part3(sc, runner, docs, p2runs))
        timings.append(("2+3 arith runs and report", time.time() - t0))
    if 4 in parts:
        t0 = time.time()
        log(f"part 4: {len(sc.p4_l2) + len(sc.p4_l1)} λ-sweep runs")
        text, p4 = part4(sc, runner, docs, p2runs)
        sections.append(text)
        timings.append(("4 λ sweep", time.time() - t0))
    return sections, timings, p1, p2runs, p4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--quick", action="store_true", help="--scale quick, output in a temp dir unless --out is given")
    ap.add_argument("--parts", default="1,2,3,4", help="comma-separated subset of 1,2,3,4 (3 needs 2's runs; 4 uses them)")
    ap.add_argument("--evotune", default=str(REPO / "target" / "release" / "evotune"))
    ap.add_argument("--out", help="where results.md and results/ go (default: docs/)")
    ap.add_argument("--runs", help="run directories (default: runs/results, or OUT/runs with --quick)")
    ap.add_argument("--threads", type=int, default=0, help="evotune --threads (0 = all cores, or cores / jobs)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="runs trained at the same time, each with cores/jobs threads (default 2: two "
                    "single-threaded runs use 2 cores ~12%% better than one 2-thread run; see docs/mpi.md)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: build the page from the run directories as they are (unfinished runs are "
                    "reported at the iteration they reached, missing ones left out; the page lists which)")
    ap.add_argument("--model", default=os.environ.get("EVOTUNE_MODEL"),
                    help="GGUF of the default model (default: $EVOTUNE_MODEL, else `evotune fetch-model`)")
    a = ap.parse_args()
    sc = SCALES["quick" if a.quick else a.scale]
    parts = {int(p) for p in a.parts.split(",") if p.strip()}
    docs_root = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="evotune-results-")) if a.quick else REPO / "docs")
    runs_dir = Path(a.runs) if a.runs else (docs_root / "runs" if a.quick else REPO / "runs" / "results")
    docs = docs_root / "results"
    docs.mkdir(parents=True, exist_ok=True)
    runner = Runner(a.evotune, runs_dir, a.threads, a.model, a.report_only)
    version = subprocess.run([a.evotune, "--version"], capture_output=True, text=True).stdout.strip()
    if a.model:
        model_path = a.model
    else:
        model = subprocess.run([a.evotune, "fetch-model"], capture_output=True, text=True)
        if model.returncode != 0:
            sys.exit(f"evotune fetch-model failed:\n{model.stderr}")
        model_path = model.stdout.strip()
    d = gguf_parameter_count(model_path)
    log(f"scale {sc.name} ({sc.estimate}); parts {sorted(parts)}; runs in {runs_dir}; page in {docs_root}")
    started = time.time()
    if a.jobs > 1 and not a.report_only:
        # Plan every unfinished run, train them `jobs` at a time, then build the page from finished runs.
        planner = Runner(a.evotune, runs_dir, a.threads, a.model, planning=True)
        build_sections(sc, parts, planner, docs, d)
        cores = os.cpu_count() or 1
        run_plan(planner.plan, a.jobs, a.threads or max(1, cores // a.jobs))
    sections, timings, p1, p2runs, p4 = build_sections(sc, parts, runner, docs, d)
    sections.append(findings(sc, p1, p2runs, p4, d))
    discussion = REPO / "docs" / "results_discussion.md"
    if sc.name != "quick" and discussion.exists():
        sections.append(discussion.read_text())
    # the page
    cmdline = "python3 scripts/results.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    head = [
        "# Results: drift, forgetting and AWD with evotune on SmolLM2-135M\n",
        "Generated by `scripts/results.py` from the run directories below; do not edit by hand "
        "(rerun the script, which resumes finished runs at no cost).\n",
        f"- command: `{cmdline}` (scale `{sc.name}`: {sc.estimate})",
        f"- evotune: `{version}`, git commit {git_commit()}; model `{Path(model_path).name}` (d = {d:,} parameters, f32 master weights)",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall time of this invocation "
        f"{time.time() - started:.0f} s (finished runs are only read)",
        "- wall time of the runs themselves (sum of their logged iteration and evaluation seconds): "
        + ", ".join(f"{name} {secs:.0f} s" for name, secs in run_seconds(runner))
        + f" ({time_ranges(runner)})",
        "",
        "Runs planned at this scale and how far each got (iterations done / planned):\n",
        table(["run directory", "done", "planned"],
              [[os.path.relpath(k, runs_dir), d_, p_] for k, (d_, p_) in sorted(runner.status.items())]),
        f"(run directories under `{shown(['', str(runs_dir)])[len('evotune '):]}`)\n",
        "Exact commands, one per run (a rerun of the script resumes these directories):\n",
        "```",
        *[runner.commands[k] for k in sorted(runner.commands)],
        "```\n",
    ]
    page = "\n".join(head) + "\n" + "\n\n".join(sections)
    cells = check_page(page)
    path = docs_root / "results.md"
    path.write_text(page)
    log(f"wrote {path} ({cells} numeric cells) in {time.time() - started:.0f} s; part times: "
        + ", ".join(f"{n} {s:.0f} s" for n, s in timings))


def time_ranges(runner):
    """Seconds per iteration and per evaluation, min–max by part, as logged by the runs."""
    its, evs = {}, {}
    for out in runner.commands:
        part = Path(out).parent.name
        i, e = metrics(out)
        its.setdefault(part, []).extend(m["seconds"] for m in i)
        evs.setdefault(part, []).extend(m["seconds"] for m in e)
    out = []
    for part in sorted(its):
        text = f"{part}: {min(its[part]):.0f}–{max(its[part]):.0f} s per iteration" if its[part] else f"{part}:"
        if evs.get(part):
            text += f", {min(evs[part]):.0f}–{max(evs[part]):.0f} s per evaluation"
        out.append(text)
    return "; ".join(out)


def run_seconds(runner):
    groups = {}
    for out in runner.commands:
        part = Path(out).parent.name
        its, evs = metrics(out)
        groups[part] = groups.get(part, 0.0) + sum(m["seconds"] for m in its) + sum(e["seconds"] for e in evs)
    return sorted(groups.items())


if __name__ == "__main__":
    main()
