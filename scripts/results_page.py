"""The page of scripts/results.py: docs/results.md rendered from finished `evotune train` run
directories (their metrics.jsonl), with the drift predictions of results_theory. Reads runs and
formats Markdown; trains and plots nothing (results.py runs evotune)."""

import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

from results_theory import (
    drift_ratio_spread,
    implied_parameter_count,
    predicted_drift,
    predicted_drift_active,
    stationary_l2,
)

# ---------------------------------------------------------------------------------------------
# reading runs

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


def awd_label(awd, lam):
    return "ES" if awd == "none" else f"AWD-{awd} λ={lam:g}"


# ---------------------------------------------------------------------------------------------
# part 1


def part1(sc, runs, d):
    """Section 1 from the `random`-reward runs ((N, awd, λ, seed), run dir): measured drift against
    predicted_drift at checkpoints and at every iteration, and the population scaling."""
    lines = ["## 1. Drift law on the real model\n"]
    if not runs:
        return "\n".join(lines) + "\nNot run.\n"
    a = sc.alpha
    T = sc.p1_iterations
    implied = [implied_parameter_count(n, a, metrics(r)[0][0]["drift"]) for (n, awd, _, _), r in runs if awd == "none"]
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
    for (n, awd, lam, seed), r in runs:
        its, _ = metrics(r)
        drift = {m["iteration"]: m["drift"] for m in its}
        for t in checkpoints:
            if t in drift:
                pred = predicted_drift(a, n, d, t, awd, lam)
                stat = fmt(stationary_l2(a, n, d, lam), 2) if awd == "l2" else ""
                rows.append([n, awd_label(awd, lam), seed, t, fmt(pred, 2), stat, fmt(drift[t], 2), fmt(drift[t] / pred, 5)])
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
        f"the ratio's sampling spread is about 1/√(2d) = {drift_ratio_spread(d):.1e}; the l1 prediction also carries "
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
    lines.append("\n![drift against prediction](results/p1/drift.png)\n")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# parts 2 and 3


def seeds_of(sc, runs, key):
    return [s for s in sc.p2_seeds if (key, s) in runs]


def present(sc, runs):
    return [c for c in sc.p2_configs() if seeds_of(sc, runs, c[0])]


def part2(sc, runs, d):
    """Section 2 from part 2's runs {(configuration key, seed): run dir}: target accuracy, reward and
    drift against predicted_drift_active per configuration."""
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


def part3(sc, runs):
    """Section 3 from part 2's runs: every prior task (and the KL probe) at each evaluation, and how
    each dipped and recovered."""
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


def part4(sc, entries):
    """Section 4 from the λ sweep's (awd, λ, run dir) entries (part 2's runs among them)."""
    seed = sc.p2_seeds[0]
    lines = ["## 4. λ sweep (seed %d, %d iterations)\n" % (seed, sc.p2_iterations)]
    lines.append(
        "λ = 0 and the default λ of each kind are part 2's seed runs; the other λ are evaluated at 0 and at the end "
        "only. Δ = value at T minus value at 0; prior accuracy is the mean over the multiple-choice suites.\n"
    )
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
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# part 5


def findings(sc, runs, p2runs, p4, d):
    """Plain statements computed from the runs (no judgement; the discussion below interprets them):
    part 1's `runs`, part 2's `p2runs` and part 4's entries `p4`, each None where not run."""
    out = ["## 5. Findings computed from these runs\n"]
    if runs:
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


# ---------------------------------------------------------------------------------------------
# the page


# ---------------------------------------------------------------------------------------------
# part 6: QES

P6_HEADING = "## 6. QES"


def part6(sc, runs, configs, sweep, provenance=""):
    """Section 6 from part 6's runs {(key, seed): run dir}: QES on the codes against f32 ES and low rank
    (`configs`: (key, label, options, seeds)), and the α sweep (`sweep`: (key, codes, σ, α, β))."""
    lines = [f"{P6_HEADING}: fine-tuning the quantized codes (issue #19)\n"]
    if provenance:
        lines.append(provenance)
    have = [c for c in configs if any((c[0], s) in runs for s in c[3])]
    if not have:
        return "\n".join(lines) + "\nNot run.\n"
    lines.append(
        f"`arith` as in part 2 ({sc.train_size} training prompts per iteration, {sc.test_size} test items, "
        f"N = {sc.p2_population}, the same priors), {sc.p6_iterations} iterations, evaluated every "
        f"{sc.p6_eval_every}. QES trains the GGUF's own codes (Q4_1 matrices and the Q8_0 tied embedding for "
        f"\"4-bit\"; every matrix converted to Q8_0 for \"8-bit\"), σ in code steps; the f32 rows train f32 master "
        f"weights. Test accuracy @0 differs because QES evaluates the quantized forward, ES the f32 one. "
        f"‖θ_T−θ0‖ is in real units for both (a moved code moves its weight by the block scale). Cells are mean ± "
        f"sample sd over the seeds listed.\n"
    )
    rows = []
    for key, label, _, seeds in have:
        done = [s for s in seeds if (key, s) in runs]
        acc0, acc1, r1, rT, kl, drift, moved, spi, wall = ([] for _ in range(9))
        for seed in done:
            its, evs = metrics(runs[(key, seed)])
            acc0.append(evs[0]["target"]["accuracy"])
            acc1.append(evs[-1]["target"]["accuracy"])
            r1.append(its[0]["reward_mean"])
            rT.append(its[-1]["reward_mean"])
            kl.append(prior_score(evs[-1], "kl") if "kl" in sc.priors else float("nan"))
            drift.append(evs[-1]["drift"]["total"])
            if evs[-1].get("codes_moved"):
                moved.append(100.0 * evs[-1]["codes_moved"]["fraction"])
            spi.append(statistics.mean(m["seconds"] for m in its))
            wall.append(sum(m["seconds"] for m in its) + sum(e["seconds"] for e in evs))
        rows.append([label, ", ".join(map(str, done)), mean_spread(acc0), mean_spread(acc1), mean_spread(r1),
                     mean_spread(rT), mean_spread(kl, 4), mean_spread(drift, 2),
                     mean_spread(moved, 4) if moved else "–", mean_spread(spi, 1), fmt(statistics.mean(wall), 0)])
    lines.append(table(["configuration", "seeds", "test acc. @0", "test acc. @T", "pop. reward @1", "pop. reward @T",
                        "KL @T", "‖θ_T−θ0‖", "codes moved @T (%)", "s/iteration", "wall s (mean)"], rows))
    priors = [p for p in sc.priors if not p.startswith("kl")]
    if priors:
        lines.append("\nPrior suites, accuracy at 0 → at T (mean over seeds):\n\n")
        rows = []
        for key, label, _, seeds in have:
            row = [label]
            for p in priors:
                a0, aT = [], []
                for seed in [s for s in seeds if (key, s) in runs]:
                    _, evs = metrics(runs[(key, seed)])
                    a0.append(prior_score(evs[0], p))
                    aT.append(prior_score(evs[-1], p))
                row.append(f"{fmt(statistics.mean(a0))} → {fmt(statistics.mean(aT))}")
            rows.append(row)
        lines.append(table(["configuration"] + priors, rows))
    lines.append("\nPopulation mean reward over iterations (mean over seeds):\n\n")
    rows = []
    for t in range(1, sc.p6_iterations + 1):
        row = [t]
        for key, _, _, seeds in have:
            vals = [m["reward_mean"] for s in seeds if (key, s) in runs for m in metrics(runs[(key, s)])[0]
                    if m["iteration"] == t]
            row.append(mean_spread(vals) if vals else "")
        rows.append(row)
    lines.append(table(["iteration"] + [c[1] for c in have], rows))
    sw = [(k, codes, sg, a, b) for k, codes, sg, a, b in sweep if (k, sc.p6_seeds[0]) in runs]
    if sw:
        lines.append(
            f"\nσ/α sweep, seed {sc.p6_seeds[0]}, target only (no priors), evaluated at 0 and {sc.p6_iterations}; "
            f"\"codes stepped\" is the number of codes the update moved at each iteration (first, mean of the rest):\n\n")
        rows = []
        for k, codes, sg, a, b in sw:
            its, evs = metrics(runs[(k, sc.p6_seeds[0])])
            stepped = [m.get("codes_stepped") for m in its if m.get("codes_stepped") is not None]
            rest = f"{statistics.mean(stepped[1:]):.0f}" if len(stepped) > 1 else "–"
            rows.append([("4-bit" if codes == "native" else "8-bit"), f"{sg:g}", f"{a:g}", f"{b:g}",
                         fmt(evs[0]["target"]["accuracy"]), fmt(evs[-1]["target"]["accuracy"]),
                         fmt(its[0]["reward_mean"]), fmt(its[-1]["reward_mean"]), fmt(evs[-1]["drift"]["total"], 2),
                         fmt(100.0 * evs[-1]["codes_moved"]["fraction"], 4) if evs[-1].get("codes_moved") else "–",
                         f"{stepped[0]}" if stepped else "–", rest])
        lines.append(table(["codes", "σ", "α", "β", "test acc. @0", "test acc. @T", "pop. reward @1", "pop. reward @T",
                            "‖θ_T−θ0‖", "codes moved @T (%)", "codes stepped @1", "codes stepped, mean of the rest"],
                           rows))
    notes = Path(__file__).resolve().parent.parent / "docs" / "results_qes.md"
    if sc.name != "quick" and notes.exists():
        lines.append("\n" + notes.read_text())
    return "\n".join(lines)


P7_HEADING = "## 7. Drift budget"


def part7(sc, runs, configs, provenance=""):
    """Section 7 from part 7's runs {(key, seed): run dir}: KL budgets against fixed AWD-l2 λ
    (`configs`: (key, label, options)) — final KL, target gain, drift and the last λ; then, per
    budget, the comparison at equal final KL with the best fixed λ, computed from the table."""
    lines = [f"{P7_HEADING}: λ set online against fixed λ (issue #20)\n"]
    if provenance:
        lines.append(provenance)
    have = [c for c in configs if any((c[0], s) in runs for s in sc.p7_seeds)]
    if not have:
        return "\n".join(lines) + "\nNot run.\n"
    lines.append(
        f"`arith` as in part 2 ({sc.train_size} training prompts per iteration, {sc.test_size} test items, "
        f"N = {sc.p2_population}, σ = {sc.sigma:g}, α = {sc.alpha:g}, the same priors), {sc.p7_iterations} "
        f"iterations, evaluated every {sc.p7_eval_every}. A budget run holds the KL probe's mean KL at B with AWD-l2, "
        f"λ set every iteration by the controller of `crates/evotune/src/es/budget.rs` (docs/architecture.md, "
        f"\"Drift budget\"); KL is measured at the evaluations only. Gain = test accuracy @T − @0. Cells are "
        f"mean ± sample sd over the seeds listed.\n"
    )
    rows, summary = [], {}
    for key, label, _ in have:
        done = [s for s in sc.p7_seeds if (key, s) in runs]
        kl, gain, acc, drift, lam, klmax = ([] for _ in range(6))
        for seed in done:
            its, evs = metrics(runs[(key, seed)])
            kls = [prior_score(e, "kl") for e in evs]
            kl.append(kls[-1])
            klmax.append(max(k for k in kls if k is not None))
            acc.append(evs[-1]["target"]["accuracy"])
            gain.append(evs[-1]["target"]["accuracy"] - evs[0]["target"]["accuracy"])
            drift.append(evs[-1]["drift"]["total"])
            lam.append(its[-1].get("awd_lambda") if its[-1].get("awd_lambda") is not None else float("nan"))
        summary[key] = (label, statistics.mean(kl), statistics.mean(gain))
        rows.append([label, ", ".join(map(str, done)), mean_spread(kl, 4), mean_spread(klmax, 4), mean_spread(acc),
                     mean_spread(gain), mean_spread(drift, 2),
                     mean_spread(lam, 2) if key.startswith("budget") else "–"])
    lines.append(table(["configuration", "seeds", "KL @T", "max KL over evals", "test acc. @T", "gain",
                        "‖θ_T−θ0‖", "λ_T"], rows))
    fixed = [(k, v) for k, v in summary.items() if not k.startswith("budget")]
    verdicts = []
    for key, (label, kl, gain) in summary.items():
        if not key.startswith("budget"):
            continue
        bound = float(key[len("budget-kl"):])
        within = [(k, v) for k, v in fixed if v[1] <= 1.1 * bound]
        text = f"- {label}: mean final KL {fmt(kl, 4)} ({fmt(kl / bound, 2)}·B), gain {fmt(gain)}. "
        if within:
            bk, (bl, bkl, bg) = max(within, key=lambda kv: kv[1][2])
            text += (f"The best fixed λ whose final KL is within 1.1·B is {bl} (KL {fmt(bkl, 4)}, gain {fmt(bg)}): "
                     f"the budget's gain is {'≥' if gain >= bg else '<'} it by {fmt(abs(gain - bg))}.")
        else:
            text += "No fixed λ of the grid ends within 1.1·B."
        verdicts.append(text)
    lines.append("\nAt equal final KL (a fixed λ counts when its mean final KL is ≤ 1.1·B):\n\n" + "\n".join(verdicts) + "\n")
    notes = Path(__file__).resolve().parent.parent / "docs" / "results_budget.md"
    if sc.name != "quick" and notes.exists():
        lines.append("\n" + notes.read_text())
    return "\n".join(lines)


P9_HEADING = "## 9. GRPO"


def cum_seconds(its, k):
    """Training seconds (iteration lines only) up to iteration k."""
    return sum(m["seconds"] for m in its if m["iteration"] <= k)


def prior_delta(ev0, ev):
    """Mean change of the multiple-choice priors' accuracy from ev0 to ev (the KL probe excluded)."""
    deltas = [prior_score(ev, p["task"]) - p["accuracy"] for p in ev0["priors"]
              if not p["task"].startswith("kl") and p["accuracy"] is not None and prior_score(ev, p["task"]) is not None]
    return statistics.mean(deltas) if deltas else float("nan")


def point(its, evs, ev):
    """(step, train s, gain, KL, ‖θ−θ0‖, Δ priors) of one evaluation of a run."""
    return (ev["iteration"], cum_seconds(its, ev["iteration"]), ev["target"]["accuracy"] - evs[0]["target"]["accuracy"],
            prior_score(ev, "kl"), ev["drift"]["total"], prior_delta(evs[0], ev))


def part9(sc, runs, configs, density, provenance=""):
    """Section 9 from part 9's runs {(key, seed): run dir} (`configs`: (key, label, …)) and each run's
    update density {(key, seed): fraction}: the end of every run, then the methods matched by
    wall-clock (the ES run's training seconds) and by target gain (ES's best evaluated gain)."""
    lines = [f"{P9_HEADING} by backpropagation next to ES (issue #21)\n"]
    if provenance:
        lines.append(provenance)
    have = [c for c in configs if any((c[0], s) in runs for s in sc.p9_seeds)]
    if not have or "grpo" not in [c[0] for c in have]:
        return "\n".join(lines) + "\nNot run.\n"
    lines.append(
        f"`arith` as in parts 6 and 7 ({sc.train_size} training prompts per step, {sc.test_size} test items, the same "
        f"priors; the page head gives each run's command and threads). ES and ES + AWD-l2 are part 6's and part 7's runs ({sc.p6_iterations} "
        f"iterations of N = {sc.p2_population}); GRPO samples G = 4 completions of each of the step's prompts "
        f"(temperature 0.7), trains on them by backpropagation with AdamW and a k3 KL penalty to θ0, "
        f"{sc.p9_iterations} steps, evaluated every {sc.p9_eval_every} (crates/evotune/src/rl, "
        f"crates/evotune/src/model/backprop). Gain = test accuracy − its value at 0; Δ priors = mean change of the "
        f"four multiple-choice priors' accuracy; KL = the KL probe's mean per-token KL(base‖θ); moved = fraction of "
        f"the {134515008:,} parameters with |θ − θ0| > 1e-5. Cells are mean ± sample sd over the seeds listed.\n")
    label = {c[0]: c[1] for c in configs}
    seeds = {key: [s for s in sc.p9_seeds if (key, s) in runs] for key, *_ in have}
    data = {k: metrics(r) for k, r in runs.items()}

    rows = []
    for key, *_ in have:
        cols = [[] for _ in range(9)]
        for s in seeds[key]:
            its, evs = data[(key, s)]
            step, secs, gain, kl, drift, dprior = point(its, evs, evs[-1])
            for c, v in zip(cols, [secs, secs / max(1, len(its)), evs[0]["target"]["accuracy"],
                                   evs[-1]["target"]["accuracy"], gain, kl, drift, density.get((key, s)), dprior]):
                c.append(v)
        rows.append([label[key], ", ".join(map(str, seeds[key])), str(len(data[(key, seeds[key][0])][0])),
                     mean_spread(cols[0], 0), mean_spread(cols[1], 1), mean_spread(cols[2]), mean_spread(cols[3]),
                     mean_spread(cols[4]), mean_spread(cols[5], 4), mean_spread(cols[6], 3), mean_spread(cols[7], 4),
                     mean_spread(cols[8])])
    lines.append("At the end of each run:\n")
    lines.append(table(["method", "seeds", "steps", "train s", "s / step", "test acc. @0", "@T", "gain", "KL",
                        "‖θ−θ0‖", "moved", "Δ priors"], rows))

    def matched(pick):
        rows = []
        for key, *_ in have:
            cols = [[] for _ in range(6)]
            marks = 0
            for s in seeds[key]:
                if ("es", s) not in data:
                    continue
                ev, mark = pick(key, s)
                its, evs = data[(key, s)]
                for c, v in zip(cols, point(its, evs, ev)):
                    c.append(v)
                marks += mark
            if cols[0]:
                rows.append([label[key] + (" †" * (marks > 0)), mean_spread(cols[0], 1), mean_spread(cols[1], 0),
                             mean_spread(cols[2]), mean_spread(cols[3], 4), mean_spread(cols[4], 3),
                             mean_spread(cols[5])])
        return table(["method", "at step", "train s", "gain", "KL", "‖θ−θ0‖", "Δ priors"], rows)

    def by_time(key, s):
        """The last evaluation within the ES run's training seconds (the first one after 0 if none is)."""
        es_its, _ = data[("es", s)]
        budget = cum_seconds(es_its, es_its[-1]["iteration"])
        its, evs = data[(key, s)]
        within = [e for e in evs if cum_seconds(its, e["iteration"]) <= budget * 1.05]
        return (within[-1] if len(within) > 1 else evs[min(1, len(evs) - 1)]), False

    def by_gain(key, s):
        """The first evaluation reaching ES's best evaluated gain (else the best one, marked †)."""
        _, es_evs = data[("es", s)]
        target = max(e["target"]["accuracy"] - es_evs[0]["target"]["accuracy"] for e in es_evs[1:])
        its, evs = data[(key, s)]
        for e in evs[1:]:
            if e["target"]["accuracy"] - evs[0]["target"]["accuracy"] >= target - 1e-9:
                return e, False
        return max(evs[1:], key=lambda e: e["target"]["accuracy"]), True

    lines.append("\nMatched by wall-clock: each run at its last evaluation within the ES run's training time "
                 "(the sum of its iteration seconds; same seed, 5% slack):\n")
    lines.append(matched(by_time))
    lines.append("\nMatched by target gain: each run at its first evaluation whose gain reaches the best gain "
                 "ES evaluated (same seed); † where a run never reached it in some seed (its best evaluation is "
                 "used there):\n")
    lines.append(matched(by_gain))
    notes = Path(__file__).resolve().parent.parent / "docs" / "results_grpo.md"
    if sc.name != "quick" and notes.exists():
        lines.append("\n" + notes.read_text())
    return "\n".join(lines)


def provenance(cmdline, version, repo, runner):
    """How part 6 was made when its section is spliced into an existing page: command, version,
    machine, date, and its runs' commands."""
    out = [
        f"Generated by `{cmdline}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `{version}`, git commit "
        f"{git_commit(repo)}; {machine()}. The other sections are from the invocation in the page head. Commands "
        "of this part's runs:\n",
        "```",
        *[runner.commands[k] for k in sorted(runner.commands)],
        "```\n",
    ]
    return "\n".join(out)


def splice_section(text, heading, section):
    """The page `text` with the section under `heading` (up to the next numbered `## ` heading, or
    the end) replaced by `section`, or with `section` appended."""
    at = text.find(heading)
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    nxt = re.search(r"^## \d+\. ", text[at + len(heading):], flags=re.M)
    tail = text[at + len(heading) + nxt.start():] if nxt else ""
    return text[:at] + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")


def sections(sc, parts, d, p1runs, p2runs, p4, repo, p6=None, p6_configs=(), p6_sweep=(), p7=None, p7_configs=(),
             p9=None, p9_configs=(), density=None):
    """The page's sections after its head: those of `parts`, the findings, (except at the quick
    scale) docs/results_discussion.md of `repo`, parts 6 and 7, (except at the quick scale)
    docs/results_attribution.md, section 8, written by hand from `evotune attribute` runs, and part 9
    (`density`: each part 9 run's update density). Run arguments as for [`findings`]."""
    out = []
    if 1 in parts:
        out.append(part1(sc, p1runs, d))
    if 2 in parts:
        out.append(part2(sc, p2runs, d))
    if 3 in parts:
        out.append(part3(sc, p2runs))
    if 4 in parts:
        out.append(part4(sc, p4))
    out.append(findings(sc, p1runs, p2runs, p4, d))
    discussion = Path(repo) / "docs" / "results_discussion.md"
    if sc.name != "quick" and discussion.exists():
        out.append(discussion.read_text())
    if 6 in parts:
        out.append(part6(sc, p6, p6_configs, p6_sweep))
    if 7 in parts:
        out.append(part7(sc, p7, p7_configs))
    attribution = Path(repo) / "docs" / "results_attribution.md"
    if sc.name != "quick" and attribution.exists():
        out.append(attribution.read_text())
    if 9 in parts:
        out.append(part9(sc, p9, p9_configs, density or {}))
    return out


def page(sc, body, *, cmdline, version, repo, model_path, d, started, status, commands, runs_dir, runs_shown):
    """The whole page: its head (how it was made, on what, how long the runs took, every planned run
    with how far it got and its exact command), then the `body` sections. `status` maps each run
    directory to (iterations done, planned), `commands` to its command line; `runs_shown` is the runs
    folder as the page names it; `started` the time.time() at which the invocation began."""
    runs = list(commands)
    head = [
        "# Results: drift, forgetting and AWD with evotune on SmolLM2-135M\n",
        "Generated by `scripts/results.py` from the run directories below; do not edit by hand "
        "(rerun the script, which resumes finished runs at no cost).\n",
        f"- command: `{cmdline}` (scale `{sc.name}`: {sc.estimate})",
        f"- evotune: `{version}`, git commit {git_commit(repo)}; model `{Path(model_path).name}` "
        f"(d = {d:,} parameters, f32 master weights)",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall time of this invocation "
        f"{time.time() - started:.0f} s (finished runs are only read)",
        "- wall time of the runs themselves (sum of their logged iteration and evaluation seconds): "
        + ", ".join(f"{name} {secs:.0f} s" for name, secs in run_seconds(runs))
        + f" ({time_ranges(runs)})",
        "",
        "Runs planned at this scale and how far each got (iterations done / planned):\n",
        table(["run directory", "done", "planned"],
              [[os.path.relpath(k, runs_dir), done, planned] for k, (done, planned) in sorted(status.items())]),
        f"(run directories under `{runs_shown}`)\n",
        "Exact commands, one per run (a rerun of the script resumes these directories):\n",
        "```",
        *[commands[k] for k in sorted(commands)],
        "```\n",
    ]
    return "\n".join(head) + "\n" + "\n\n".join(body)


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


def git_commit(repo):
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()

        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
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


def time_ranges(runs):
    """Seconds per iteration and per evaluation, min–max by part, as logged by the runs."""
    its, evs = {}, {}
    for out in runs:
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


def run_seconds(runs):
    """(part, seconds) of the runs' logged iteration and evaluation seconds, summed by part."""
    groups = {}
    for out in runs:
        part = Path(out).parent.name
        its, evs = metrics(out)
        groups[part] = groups.get(part, 0.0) + sum(m["seconds"] for m in its) + sum(e["seconds"] for e in evs)
    return sorted(groups.items())


