#!/usr/bin/env python3
"""Reproduce the seed paper's findings with evotune on the default model; regenerate docs/results.md.

Parts (issue #7):
  1. drift law: `random` rewards (independent of noise and model), ‖θ_T−θ0‖ against √(α²dT/N), and
     with AWD against its stationary value;
  2. target learning on `arith`: ES, ES+AWD-l2, ES+AWD-l1, and a 2× population at equal evaluations;
  3. forgetting as drift: every prior task (and the KL probe) over iterations, per task;
  4. λ sweep of AWD-l2 and AWD-l1 on one seed (reusing part 2's seed-1 runs as λ = 0 and the default λ);
  5. findings computed from the runs, followed by docs/results_discussion.md (hand-written prose);
  6. QES (issue #19): ES on the GGUF's own 4-bit codes with error feedback against f32 ES and low
     rank on `arith`, without feedback, with 8-bit codes, and an α sweep on one seed;
  7. drift budget (issue #20): `--drift-budget kl=B` for two budgets against fixed AWD-l2 λ on
     `arith`, final KL and target gain.
  9. GRPO (issue #21): GRPO by backpropagation next to part 6's ES and part 7's ES + AWD-l2 runs on
     `arith`, matched by wall-clock and by target gain: accuracy, KL, ‖θ−θ0‖, update density, priors.

Every run is an `evotune train` run directory under --runs; an existing directory is resumed, not
redone, so an interrupted invocation continues where it stopped and the page can be regenerated
from finished runs at no cost. A run directory that another process is writing (it holds the run's
lock, RUN/.lock, as `evotune train` does) is waited for, then resumed or found finished. Python 3
standard library only; plots are drawn by `evotune report`.

This file defines the scales and runs the experiments; results_theory.py holds the drift theory and
results_page.py renders the page from the finished runs.

Usage:
  python3 scripts/results.py                        # --scale full (see SCALES for the measured time)
  python3 scripts/results.py --scale session        # the scale of the committed docs/results.md
  python3 scripts/results.py --quick --out /tmp/r   # CI: tiny runs in a temp dir, checks the page parses
  python3 scripts/results.py --parts 1,4            # a subset (the page keeps only those parts)
  python3 scripts/results.py --parts 6              # part 6 alone: its section replaces the page's own
  python3 scripts/results.py --parts 7              # part 7 alone, likewise
  python3 scripts/results.py --parts 9              # part 9 alone, likewise
"""

import argparse
import fcntl
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from results_page import (P6_HEADING, P7_HEADING, P9_HEADING, awd_label, check_page, last_iteration, metrics,
                          page, part6, part7, part9, provenance, sections, splice_section)
from results_theory import gguf_parameter_count, predicted_drift

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
    # part 6 (QES): σ in code steps; the 4-bit and 8-bit values are the QES paper's
    p6_iterations: int = 12
    p6_eval_every: int = 4
    p6_seeds: list = field(default_factory=lambda: [1, 2, 3])
    p6_q4: tuple = (0.01, 5e-4)
    p6_q8: tuple = (1e-3, 1e-4)
    # the α sweep (seed 1, target only, evaluated at 0 and the end): (codes, σ, α, β)
    p6_sweep: list = field(default_factory=lambda: [
        ("native", 0.01, 1e-3, 0.9), ("native", 0.01, 2e-3, 0.9), ("native", 0.01, 5e-3, 0.9),
        ("native", 0.01, 1e-3, 1.0), ("q8_0", 1e-3, 5e-4, 0.9)])
    # part 7 (drift budget): KL budgets against fixed AWD-l2 λ, arith as in part 6
    p7_iterations: int = 12
    p7_eval_every: int = 4
    p7_seeds: list = field(default_factory=lambda: [1, 2, 3])
    p7_budgets: list = field(default_factory=lambda: [0.02, 0.05])
    p7_l2: list = field(default_factory=lambda: [10.0, 30.0, 100.0])
    # part 9 (GRPO): its steps and evaluations; ES and ES + AWD-l2 are part 6's and part 7's runs
    p9_iterations: int = 12
    p9_eval_every: int = 3
    p9_seeds: list = field(default_factory=lambda: [1, 2, 3])
    p9_awd_lambda: float = 22.0
    p9_lrs: list = field(default_factory=lambda: [(3e-6, [1, 2, 3])])  # (lr, seeds) of extra GRPO runs
    estimate: str = ""

    def p2_configs(self):
        """Part 2's configurations (key, label, population, iterations, awd, λ): the big population runs
        half the iterations (equal evaluations N·T)."""
        n, big = self.p2_population, self.p2_big_population
        big_t = max(1, self.p2_iterations * n // big)
        return [
            ("es-n%d" % n, f"ES N={n}", n, self.p2_iterations, "none", 0.0),
            ("awd-l2-n%d" % n, f"ES N={n} + AWD-l2 λ={self.l2_lambda:g}", n, self.p2_iterations, "l2", self.l2_lambda),
            ("awd-l1-n%d" % n, f"ES N={n} + AWD-l1 λ={self.l1_lambda:g}", n, self.p2_iterations, "l1", self.l1_lambda),
            ("es-n%d" % big, f"ES N={big} (equal evaluations)", big, big_t, "none", 0.0),
        ]


def p6_configs(sc):
    """Part 6's configurations (key, label, `evotune train` options besides the task's, seeds)."""
    es = ["--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
    (s4, a4), (s8, a8) = sc.p6_q4, sc.p6_q8
    q4 = ["--method", "qes", "--sigma", repr(s4), "--alpha", repr(a4)]
    one = sc.p6_seeds[:1]
    return [
        ("es", f"ES, f32, full rank (σ={sc.sigma:g}, α={sc.alpha:g})", es, sc.p6_seeds),
        ("lowrank", "ES, f32, low rank r=1 (same σ, α)", es + ["--perturbation", "lowrank", "--rank", "1"],
         sc.p6_seeds),
        ("qes", f"QES, 4-bit codes (σ={s4:g}, α={a4:g}, β=0.9)", q4, sc.p6_seeds),
        ("qes-nofb", "QES without error feedback (same σ, α)", q4 + ["--no-error-feedback"], one),
        ("qes-q8", f"QES, 8-bit codes (every matrix Q8_0; σ={s8:g}, α={a8:g})",
         ["--method", "qes", "--codes", "q8_0", "--sigma", repr(s8), "--alpha", repr(a8)], one),
    ]


def p7_configs(sc):
    """Part 7's configurations (key, label, `evotune train` options besides the task's)."""
    es = ["--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
    out = [(f"budget-kl{b:g}", f"budget kl={b:g}", es + ["--drift-budget", f"kl={b:g}"]) for b in sc.p7_budgets]
    out += [(f"l2-lambda{lam:g}", f"fixed AWD-l2 λ={lam:g}", es + awd_args("l2", lam)) for lam in sc.p7_l2]
    return out


def p6_sweep_key(codes, sigma, alpha, beta):
    return f"sweep-{codes}-sigma{sigma:g}-alpha{alpha:g}-beta{beta:g}"


def p6_sweep(sc):
    """The α sweep as (key, codes, σ, α, β)."""
    return [(p6_sweep_key(*x), *x) for x in sc.p6_sweep]


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
        p7_l2=[22.0, 30.0, 43.0, 100.0],
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
        p6_iterations=2,
        p6_eval_every=2,
        p6_seeds=[1],
        p6_sweep=[("native", 0.01, 2e-3, 0.9)],
        p7_iterations=2,
        p7_eval_every=2,
        p7_seeds=[1],
        p7_budgets=[0.05],
        p7_l2=[10.0],
        p9_iterations=2,
        p9_eval_every=1,
        p9_seeds=[1],
        p9_awd_lambda=10.0,
        p9_lrs=[],
        estimate="a few minutes (CI)",
    ),
}


# ---------------------------------------------------------------------------------------------
# running evotune

LOCK = ".lock"  # RUN/.lock: `evotune train` holds flock(LOCK_EX) on it while it writes RUN; it holds the pid
LOCK_HELD = f"(it holds {LOCK})"  # in evotune's error when another process holds the lock
LOCK_POLL_S = 5
LOCK_RACES = 3  # evotune runs that may lose the lock to another writer starting at the same moment


@dataclass
class Job:
    """A run to bring to `iterations`; `args` are its `evotune train` options as a fresh run."""

    name: str
    out: Path
    args: list
    iterations: int
    eval_every: int


class Runner:
    def __init__(self, evotune, runs_dir, threads, model=None, report_only=False, planning=False):
        self.evotune = evotune
        self.model = model
        self.report_only = report_only
        # planning: train nothing, collect in `plan` the Job of every run not finished yet
        self.planning = planning
        self.plan = []
        self.status = {}  # run dir -> (iterations done, iterations planned)
        self.runs = Path(runs_dir)
        self.threads = threads
        self.commands = {}  # run dir -> command line (as a fresh run)

    def train(self, name, args, iterations, eval_every):
        """Brings run `name` to `iterations` (or, planning, plans it); returns its directory, or None
        where it has not run (planned, or missing under --report-only)."""
        job = Job(name, self.runs / name, args, iterations, eval_every)
        out = job.out
        fresh = self.fresh_command(job, self.threads)
        if self.report_only:
            if not (out / "metrics.jsonl").exists() or last_iteration(out) == 0:
                log(f"  {name}: not run (--report-only)")
                self.status[str(out)] = (0, iterations)
                return None
            self.commands[str(out)] = shown(fresh)
            self.status[str(out)] = (last_iteration(out), iterations)
            log(f"  {name}: {last_iteration(out)} of {iterations} iterations (--report-only)")
            return out
        self.commands[str(out)] = shown(fresh)
        self.status[str(out)] = (iterations, iterations)
        if self.planning:
            if self.command(job, self.threads)[0] is None:
                return out
            self.plan.append(job)
            return None
        t0 = time.time()
        proc = self.execute(job, self.threads, f"  {name}", show_command=True)
        if proc is None:
            return out
        if proc.returncode != 0:
            sys.exit(f"evotune failed for {name} (status {proc.returncode}):\n{proc.stdout}")
        log(f"  {name}: finished in {time.time() - t0:.0f} s")
        return out

    def fresh_command(self, job, threads):
        cmd = [self.evotune, "train", "--quiet", *job.args, "--iterations", str(job.iterations)]
        cmd += ["--eval-every", str(job.eval_every), "--out", str(job.out)]
        if threads:
            cmd += ["--threads", str(threads)]
        if self.model:
            cmd += ["--model", self.model]
        return cmd

    def command(self, job, threads):
        """(the command that brings the job's run to its iterations from where it is now, what it
        does): a fresh run ("started"), a `--resume`, or (None, "done …") for a finished run."""
        if (job.out / "config.toml").exists():
            last = last_iteration(job.out)
            if last >= job.iterations:
                return None, f"done ({last} iterations)"
            cmd = [self.evotune, "train", "--quiet", "--resume", str(job.out), "--iterations", str(job.iterations)]
            cmd += ["--eval-every", str(job.eval_every)]
            cmd += ["--threads", str(threads)] if threads else []
            return cmd, f"resuming at iteration {last}"
        return self.fresh_command(job, threads), "started"

    def execute(self, job, threads, prefix, show_command=False):
        """Runs evotune until the job's run has its iterations: waits while another process writes the
        run (wait_for_writer), then starts it, resumes it or finds it finished. Starts again from the
        wait when evotune stops because another writer took the lock in between (up to LOCK_RACES
        times). Returns evotune's CompletedProcess (stdout and stderr in stdout), or None where nothing
        was left to run."""
        for race in range(LOCK_RACES):
            wait_for_writer(job.out, prefix)
            cmd, what = self.command(job, threads)
            if cmd is None:
                log(f"{prefix}: {what}")
                return None
            log(f"{prefix}: {' '.join(cmd[2:]) if show_command and what == 'started' else what}")
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode == 0 or LOCK_HELD not in proc.stdout or race == LOCK_RACES - 1:
                return proc
            log(f"{prefix}: another process took the run's lock first")

    def run_plan(self, jobs, threads):
        """Runs the planned jobs `jobs` at a time, each with `threads` threads (the arith runs of part 2
        first, seed by seed, then part 4, then part 1: the most wanted results finish first). Stops
        with the failures listed after every job has ended."""
        rank = {"p2": 0, "p6": 1, "p7": 1, "p9": 1, "p4": 2, "p1": 3}

        def key(entry):
            i, job = entry
            seed = re.search(r"-s(\d+)$", job.name)
            return (rank.get(job.name.split("/")[0], 3), int(seed.group(1)) if seed else 0, i)

        ordered = [job for _, job in sorted(enumerate(self.plan), key=key)]
        log(f"running {len(ordered)} runs, {jobs} at a time with {threads} thread(s) each")
        started, failures = time.time(), []

        def one(k, job):
            prefix = f"  [{k + 1}/{len(ordered)}] {job.name}"
            t0 = time.time()
            try:
                proc = self.execute(job, threads, prefix)
            except Exception as e:  # an exception in a pool thread would otherwise go unseen
                failures.append(f"{job.name}: {e!r}")
                log(f"{prefix}: FAILED ({e!r})")
                return
            if proc is None:
                return
            if proc.returncode != 0:
                failures.append(f"{job.name} (status {proc.returncode}):\n{proc.stdout}")
                log(f"{prefix}: FAILED after {time.time() - t0:.0f} s")
            else:
                log(f"{prefix}: finished in {time.time() - t0:.0f} s ({time.time() - started:.0f} s since the start)")

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for k, job in enumerate(ordered):
                pool.submit(one, k, job)
        if failures:
            sys.exit("evotune failed for:\n" + "\n".join(failures))

    def report(self, runs, out, references=()):
        cmd = [self.evotune, "report", *map(str, runs), "--out", str(out)]
        for label, path in references:
            cmd += ["--drift-reference", f"{label}={path}"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            sys.exit(f"evotune report failed:\n{proc.stdout}")


def wait_for_writer(run, prefix):
    """Returns once no process holds RUN/.lock, the lock a process writing the run holds (as
    `evotune train` does). Tests it with a non-blocking flock(LOCK_EX) released at once (closing the
    file releases it), so evotune can take it; while another process holds it, logs that process's pid
    (the file's content) once and polls every LOCK_POLL_S seconds. No lock file: nobody writes the run."""
    path = Path(run) / LOCK
    since = None
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if since is None:
                since = time.time()
                pid = os.read(fd, 64).decode(errors="replace").strip()
                log(f"{prefix}: process {pid or '(pid not written yet)'} is writing this run (it holds {LOCK}); "
                    f"waiting for it")
            time.sleep(LOCK_POLL_S)
            continue
        finally:
            os.close(fd)
        if since is not None:
            log(f"{prefix}: its writer released the lock after {time.time() - since:.0f} s")
        return


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


# ---------------------------------------------------------------------------------------------
# the runs of each part


def awd_args(awd, lam):
    return ["--awd", awd] + (["--awd-lambda", repr(lam)] if awd != "none" else [])


def arith_args(sc, n, seed, awd, lam):
    args = ["--task", "arith", "--population", str(n), "--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
    args += ["--seed", str(seed), *awd_args(awd, lam), "--prior-limit", str(sc.prior_limit)]
    for p in sc.priors:
        args += ["--prior", p]
    opts = {"train_size": sc.train_size, "test_size": sc.test_size, **sc.task_opts}
    for k, v in opts.items():
        args += ["--task-opt", f"{k}={v}"]
    return args


def run_p1(sc, runner):
    """Part 1: `random` rewards for each (N, awd, λ, seed) of the scale; ((N, awd, λ, seed), run dir) of
    the runs there are."""
    log(f"part 1: drift law, {len(sc.p1_runs)} runs of {sc.p1_iterations} iterations on `random` rewards")
    runs = []
    for n, awd, lam, seed in sc.p1_runs:
        name = f"p1/{'es' if awd == 'none' else 'awd-' + awd}-n{n}-s{seed}"
        args = ["--task", "random", "--population", str(n), "--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
        args += ["--seed", str(seed), *awd_args(awd, lam)]
        out = runner.train(name, args, sc.p1_iterations, 0)
        if out:
            runs.append(((n, awd, lam, seed), out))
    return runs


def run_p2(sc, runner):
    """Parts 2 and 3: `arith` for each configuration and seed; {(configuration key, seed): run dir}."""
    runs = {}
    for key, label, n, iters, awd, lam in sc.p2_configs():
        for seed in sc.p2_seeds:
            name = f"p2/{key}-s{seed}"
            eval_every = sc.p2_eval_every
            out = runner.train(name, arith_args(sc, n, seed, awd, lam), iters, eval_every)
            if out:
                runs[(key, seed)] = out
    return runs


def run_p4(sc, runner, p2runs):
    """Part 4: the λ sweep on the first seed, evaluated at 0 and the end; (awd, λ, run dir) entries,
    part 2's runs of that seed standing for λ = 0 and each kind's default λ."""
    seed = sc.p2_seeds[0]
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
    return entries


def task_args(sc, seed):
    """`arith` with part 2's data, priors and seed, without the method's own options."""
    args = ["--task", "arith", "--population", str(sc.p2_population), "--seed", str(seed)]
    args += ["--prior-limit", str(sc.prior_limit)]
    for p in sc.priors:
        args += ["--prior", p]
    for k, v in {"train_size": sc.train_size, "test_size": sc.test_size, **sc.task_opts}.items():
        args += ["--task-opt", f"{k}={v}"]
    return args


def run_p6(sc, runner):
    """Part 6: each configuration of p6_configs for its seeds, and the α sweep (target only, evaluated
    at 0 and the end); {(configuration key, seed): run dir}."""
    runs = {}
    for key, _, extra, seeds in p6_configs(sc):
        for seed in seeds:
            out = runner.train(f"p6/{key}-s{seed}", task_args(sc, seed) + extra, sc.p6_iterations, sc.p6_eval_every)
            if out:
                runs[(key, seed)] = out
    for codes, sigma, alpha, beta in sc.p6_sweep:
        key = p6_sweep_key(codes, sigma, alpha, beta)
        args = ["--method", "qes", "--task", "arith", "--population", str(sc.p2_population), "--sigma", repr(sigma)]
        args += ["--alpha", repr(alpha), "--seed", str(sc.p6_seeds[0]), "--residual-decay", repr(beta)]
        args += ["--codes", codes, "--task-opt", f"train_size={sc.train_size}", "--task-opt", f"test_size={sc.test_size}"]
        for k, v in sc.task_opts.items():
            args += ["--task-opt", f"{k}={v}"]
        out = runner.train(f"p6/{key}-s{sc.p6_seeds[0]}", args, sc.p6_iterations, sc.p6_iterations)
        if out:
            runs[(key, sc.p6_seeds[0])] = out
    return runs


def run_p7(sc, runner):
    """Part 7: each configuration of p7_configs for each seed; {(configuration key, seed): run dir}."""
    runs = {}
    for key, _, extra in p7_configs(sc):
        for seed in sc.p7_seeds:
            out = runner.train(f"p7/{key}-s{seed}", task_args(sc, seed) + extra, sc.p7_iterations, sc.p7_eval_every)
            if out:
                runs[(key, seed)] = out
    return runs


def p9_configs(sc):
    """Part 9's methods: (key, label, run name of a seed, options besides task_args, iterations, eval_every,
    seeds). ES and ES + AWD-l2 are the runs of parts 6 and 7 (brought to their length, or found finished)."""
    es = ["--sigma", repr(sc.sigma), "--alpha", repr(sc.alpha)]
    lam = sc.p9_awd_lambda
    grpo = ["--method", "grpo"]
    out = [
        ("es", f"ES (N={sc.p2_population}, σ={sc.sigma:g}, α={sc.alpha:g})", "p6/es-s{}", es,
         sc.p6_iterations, sc.p6_eval_every, sc.p9_seeds),
        ("awd", f"ES + AWD-l2 λ={lam:g}", f"p7/l2-lambda{lam:g}-s{{}}", es + awd_args("l2", lam),
         sc.p7_iterations, sc.p7_eval_every, sc.p9_seeds),
        ("grpo", "GRPO (G=4, T=0.7, lr 1e-5, β=0.04: the defaults)", "p9/grpo-s{}", grpo,
         sc.p9_iterations, sc.p9_eval_every, sc.p9_seeds),
    ]
    for lr, seeds in sc.p9_lrs:
        out.append((f"grpo-lr{lr:g}", f"GRPO, lr {lr:g}", f"p9/grpo-lr{lr:g}-s{{}}", grpo + ["--lr", repr(lr)],
                    sc.p9_iterations, sc.p9_eval_every, seeds))
    return out


def run_p9(sc, runner):
    """Part 9: GRPO and its ES references for each seed; {(key, seed): run dir}."""
    runs = {}
    for key, _, name, extra, iterations, eval_every, seeds in p9_configs(sc):
        for seed in seeds:
            out = runner.train(name.format(seed), task_args(sc, seed) + extra, iterations, eval_every)
            if out:
                runs[(key, seed)] = out
    return runs


def update_density(evotune, run):
    """Fraction of parameters with |θ_T − θ0| > 1e-5 of a run: from its last eval line, or (runs
    logged before eval lines carried it) by `evotune replay`, which prints it."""
    _, evs = metrics(run)
    if evs and evs[-1]["drift"].get("moved_fraction") is not None:
        return evs[-1]["drift"]["moved_fraction"]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([evotune, "replay", str(run), "--out", os.path.join(tmp, "theta.safetensors")],
                             capture_output=True, text=True)
    found = re.search(r"moved ([0-9.]+)%", out.stdout)
    if out.returncode != 0 or not found:
        sys.exit(f"evotune replay {run} failed:\n{out.stdout}{out.stderr}")
    return float(found.group(1)) / 100.0


def train_parts(sc, parts, runner):
    """Trains (or plans) the runs of `parts`, part by part; returns part 1's runs, part 2's runs, part
    4's entries, part 6's, 7's and 9's runs (each None where not needed) and (part, seconds) timings."""
    p1 = p2runs = p4 = p6 = p7 = p9 = None
    timings = []
    if 1 in parts:
        t0 = time.time()
        p1 = run_p1(sc, runner)
        timings.append(("1 drift law", time.time() - t0))
    if parts & {2, 3, 4}:
        t0 = time.time()
        log(f"parts 2-3: {len(sc.p2_configs()) * len(sc.p2_seeds)} arith runs")
        p2runs = run_p2(sc, runner)
        timings.append(("2+3 arith runs", time.time() - t0))
    if 4 in parts:
        t0 = time.time()
        log(f"part 4: {len(sc.p4_l2) + len(sc.p4_l1)} λ-sweep runs")
        p4 = run_p4(sc, runner, p2runs)
        timings.append(("4 λ sweep", time.time() - t0))
    if 6 in parts:
        t0 = time.time()
        log("part 6: QES against f32 ES and low rank on arith")
        p6 = run_p6(sc, runner)
        timings.append(("6 QES", time.time() - t0))
    if 7 in parts:
        t0 = time.time()
        log(f"part 7: drift budgets against fixed λ, {len(p7_configs(sc)) * len(sc.p7_seeds)} arith runs")
        p7 = run_p7(sc, runner)
        timings.append(("7 drift budget", time.time() - t0))
    if 9 in parts:
        t0 = time.time()
        log(f"part 9: GRPO against ES and ES + AWD-l2, {len(sc.p9_seeds)} seeds")
        p9 = run_p9(sc, runner)
        timings.append(("9 GRPO", time.time() - t0))
    return p1, p2runs, p4, p6, p7, p9, timings


def drift_references(sc, runs, d):
    """Writes RUN/predicted_drift.txt (t and predicted ‖θ_t−θ0‖ for t = 0…T) into each part 1 run;
    returns (label, path) of the lowest seed's file per (N, awd, λ), for `evotune report`."""
    a, T = sc.alpha, sc.p1_iterations
    refs = []
    for (n, awd, lam, seed), r in runs:
        path = Path(r) / "predicted_drift.txt"
        with open(path, "w") as f:
            f.write(f"# predicted ‖θ_t−θ0‖, N={n}, {awd_label(awd, lam)}, alpha={a}, d={d}\n")
            for t in range(0, T + 1):
                f.write(f"{t} {predicted_drift(a, n, d, t, awd, lam) if t else 0.0:.6f}\n")
        if seed == min(s for (nn, aw, lm, s), _ in runs if (nn, aw, lm) == (n, awd, lam)):
            refs.append((f"predicted N={n} {awd_label(awd, lam)}", path))
    return refs


def draw_plots(sc, parts, runner, docs, d, p1runs, p2runs):
    """The page's plots, by `evotune report`: part 1's drift against its prediction, and part 2's
    runs of each seed (part 3 uses their prior-task plots)."""
    if 1 in parts and p1runs:
        runner.report([r for _, r in p1runs], docs / "p1", drift_references(sc, p1runs, d))
    if 2 in parts:
        for seed in sc.p2_seeds:
            have = [p2runs[(c[0], seed)] for c in sc.p2_configs() if (c[0], seed) in p2runs]
            if have:
                runner.report(have, docs / f"p2-s{seed}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--quick", action="store_true", help="--scale quick, output in a temp dir unless --out is given")
    ap.add_argument("--parts", default="1,2,3,4,6,7,9",
                    help="comma-separated subset of 1,2,3,4,6,7,9 (3 needs 2's runs; 4 uses them; 6, 7 or 9 alone "
                    "replaces its section of the existing page)")
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
        train_parts(sc, parts, planner)
        cores = os.cpu_count() or 1
        planner.run_plan(a.jobs, a.threads or max(1, cores // a.jobs))
    p1runs, p2runs, p4, p6runs, p7runs, p9runs, timings = train_parts(sc, parts, runner)
    density = {k: update_density(a.evotune, r) for k, r in (p9runs or {}).items()}
    draw_plots(sc, parts, runner, docs, d, p1runs, p2runs)
    path = docs_root / "results.md"
    if parts in ({6}, {7}, {9}) and path.exists():
        # Part 6, 7 or 9 alone: its section, with its own provenance, replaces the page's (or is appended).
        cmdline = "python3 scripts/results.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
        prov = provenance(cmdline, version, REPO, runner)
        if parts == {6}:
            heading, section = P6_HEADING, part6(sc, p6runs, p6_configs(sc), p6_sweep(sc), provenance=prov)
        elif parts == {9}:
            heading, section = P9_HEADING, part9(sc, p9runs, p9_configs(sc), density, provenance=prov)
        else:
            heading, section = P7_HEADING, part7(sc, p7runs, p7_configs(sc), provenance=prov)
        text = splice_section(path.read_text(), heading, section)
        path.write_text(text)
        log(f"replaced part {min(parts)} of {path} ({check_page(text)} numeric cells) in {time.time() - started:.0f} s")
        return
    body = sections(sc, parts, d, p1runs, p2runs, p4, REPO, p6runs, p6_configs(sc), p6_sweep(sc),
                    p7runs, p7_configs(sc), p9runs, p9_configs(sc), density)
    text = page(
        sc, body,
        cmdline="python3 scripts/results.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        version=version, repo=REPO, model_path=model_path, d=d, started=started,
        status=runner.status, commands=runner.commands,
        runs_dir=runs_dir, runs_shown=shown(["", str(runs_dir)])[len("evotune "):],
    )
    cells = check_page(text)
    path.write_text(text)
    log(f"wrote {path} ({cells} numeric cells) in {time.time() - started:.0f} s; part times: "
        + ", ".join(f"{n} {s:.0f} s" for n, s in timings))


if __name__ == "__main__":
    main()
