//! `evotune bench es-iteration`: seconds per ES iteration on the reference workload, with the
//! figures that say where the time goes and how far it is from the machine's limits.
//!
//! Reference workload (the issue's, fixed): the default model with f32 weights; 16 prompts
//! "What is A + B? Answer with only the number." (A, B uniform in 10..99, seed 0) in the model's
//! chat template with only a user message; greedy; up to 16 new tokens, stop at end-of-turn;
//! N = 8 i.i.d. Gaussian members, σ = 1e-3, α = 5e-4. One iteration = evaluating every member
//! (the same code path as `evotune train`, [`crate::run::population`]) + the update.
//!
//! FLOPs counted: 2 per weight of every block matrix per forward token, plus 2·V·D per row that
//! gets logits; attention scores (≈ 2% here) are not counted. Fraction of peak = achieved
//! prefill FLOP/s ÷ the GEMM probe's best ([`crate::kernels::probe`]), in the same process.

use std::time::Instant;

use crate::error::Result;
use crate::es::{Anchor, EsParams, EsState, Perturbation, Strategy};
use crate::kernels::machine::Machine;
use crate::kernels::probe::{fma_peak, gemm_peak, stream_seconds, GemmPeak};
use crate::model::generate::GenerateStats;
use crate::model::{Model, Params};
use crate::run::fitness::member_rewards;
use crate::tasks::{self, Item, TaskOptions};

#[derive(Clone, Debug, PartialEq)]
pub struct IterationBenchOptions {
    pub perturbation: Perturbation,
    pub population: usize,
    pub prompts: usize,
    pub max_new_tokens: usize,
    pub sigma: f32,
    pub alpha: f32,
    /// Timed iterations (after one untimed warm-up iteration).
    pub iterations: usize,
}

impl Default for IterationBenchOptions {
    fn default() -> Self {
        IterationBenchOptions {
            perturbation: Perturbation::Full,
            population: 8,
            prompts: 16,
            max_new_tokens: 16,
            sigma: 1e-3,
            alpha: 5e-4,
            iterations: 2,
        }
    }
}

/// Figures of one mode, averaged over the timed iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct IterationBench {
    pub perturbation: Perturbation,
    /// CPU, the kernels' SIMD level and the threads of the pool the iterations ran in.
    pub machine: Machine,
    pub seconds_per_iteration: f64,
    pub eval_seconds: f64,
    pub update_seconds: f64,
    pub stats: GenerateStats,
    pub prefill_gflop: f64,
    pub decode_gflop: f64,
    pub peak: GemmPeak,
    /// Register-only FMA GFLOP/s on all threads ([`fma_peak`]): the ceiling of any kernel.
    pub fma_peak: Option<f64>,
    /// Seconds to read the f32 weights once from memory ([`stream_seconds`]).
    pub stream_seconds: f64,
    /// Peak resident set of the process so far (VmHWM), bytes.
    pub peak_rss: Option<u64>,
    /// f32 size of the model's parameters, bytes.
    pub model_bytes: u64,
    pub mean_reward: f32,
    pub members: usize,
}

impl IterationBench {
    pub fn per_member(&self) -> f64 {
        self.seconds_per_iteration / self.members as f64
    }

    /// Seconds the evaluation's matrix FLOPs need at the register-only FMA peak: no kernel on this
    /// machine can evaluate the population faster.
    pub fn fma_bound_seconds(&self) -> Option<f64> {
        self.fma_peak.map(|p| (self.prefill_gflop + self.decode_gflop) / p)
    }

    /// Seconds the evaluation needs at least when, besides its FLOPs, every forward reads the
    /// weights once: Σ over prefill and decode of max(forwards × one read of the weights, FLOPs at
    /// the FMA peak). Full rank reads each member's own weights at every decode step; low rank
    /// reads the shared θ once per step for the whole population.
    pub fn lower_bound_seconds(&self) -> Option<f64> {
        let s = &self.stats;
        let forwards = (s.prefill_forwards, s.decode_forwards);
        self.fma_peak.map(|p| eval_bound(forwards, (self.prefill_gflop, self.decode_gflop), p, self.stream_seconds))
    }
}

/// Seconds an evaluation needs at least: Σ over prefill and decode of max(its forwards × `read_s`,
/// one read of the weights each, and its G operations (`ops`) at `peak` G operations per second).
pub(crate) fn eval_bound(forwards: (usize, usize), ops: (f64, f64), peak: f64, read_s: f64) -> f64 {
    let phase = |n: usize, ops: f64| (n as f64 * read_s).max(ops / peak);
    phase(forwards.0, ops.0) + phase(forwards.1, ops.1)
}

/// The figures of one [`IterationBench`] as one flat JSON object (`bench es-iteration --json`):
/// seconds, GFLOP/s, tokens and bytes per iteration, named by their unit. `None` is `null`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterationLine<'a> {
    #[serde(flatten)]
    pub machine: &'a Machine,
    /// Always `es`.
    pub method: &'static str,
    /// `full` or `lowrank`.
    pub perturbation: &'static str,
    /// r in low-rank mode, `null` in full rank.
    pub rank: Option<usize>,
    pub population: usize,
    pub s_per_iteration: f64,
    pub s_per_member: f64,
    pub eval_s: f64,
    pub update_s: f64,
    pub prefill_s: f64,
    /// Prompt tokens of all members, shared prefixes included.
    pub prompt_tokens: usize,
    /// Prompt tokens run through the forward (shared prefixes once).
    pub prefill_tokens: usize,
    pub prefill_tok_s: f64,
    pub prefill_gflop_s: f64,
    /// prefill_gflop_s ÷ gemm_probe_gflop_s.
    pub prefill_fraction_of_gemm_probe: f64,
    /// The GEMM probe's best ([`GemmPeak::best`]) and each engine's reading.
    pub gemm_probe_gflop_s: f64,
    pub gemm_probe_ours_gflop_s: f64,
    pub gemm_probe_gemm_crate_gflop_s: Option<f64>,
    pub decode_s: f64,
    pub decode_tokens: usize,
    pub decode_gflop_s: f64,
    pub generated_tokens: usize,
    /// Generated tokens per second of evaluation.
    pub generated_tok_s: f64,
    pub prefill_forwards: usize,
    pub decode_forwards: usize,
    /// Seconds of evaluation at the GEMM probe's rate.
    pub flop_bound_probe_s: f64,
    pub fma_peak_gflop_s: Option<f64>,
    /// [`IterationBench::fma_bound_seconds`] and [`IterationBench::lower_bound_seconds`].
    pub flop_bound_fma_s: Option<f64>,
    pub lower_bound_s: Option<f64>,
    /// One read of the f32 weights from memory, and its rate.
    pub stream_s: f64,
    pub stream_gb_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub model_bytes: u64,
    pub mean_reward: f32,
}

impl IterationBench {
    /// This mode's [`IterationLine`].
    pub fn json_line(&self) -> IterationLine<'_> {
        let s = &self.stats;
        let prefill_gflop_s = self.prefill_gflop / s.prefill_seconds;
        IterationLine {
            machine: &self.machine,
            method: "es",
            perturbation: match self.perturbation {
                Perturbation::Full => "full",
                Perturbation::LowRank { .. } => "lowrank",
            },
            rank: self.perturbation.rank(),
            population: self.members,
            s_per_iteration: self.seconds_per_iteration,
            s_per_member: self.per_member(),
            eval_s: self.eval_seconds,
            update_s: self.update_seconds,
            prefill_s: s.prefill_seconds,
            prompt_tokens: s.prompt_tokens,
            prefill_tokens: s.prefill_tokens,
            prefill_tok_s: s.prefill_tokens as f64 / s.prefill_seconds,
            prefill_gflop_s,
            prefill_fraction_of_gemm_probe: prefill_gflop_s / self.peak.best(),
            gemm_probe_gflop_s: self.peak.best(),
            gemm_probe_ours_gflop_s: self.peak.ours,
            gemm_probe_gemm_crate_gflop_s: self.peak.gemm_crate,
            decode_s: s.decode_seconds,
            decode_tokens: s.decode_tokens,
            decode_gflop_s: self.decode_gflop / s.decode_seconds,
            generated_tokens: s.generated_tokens,
            generated_tok_s: s.generated_tokens as f64 / self.eval_seconds,
            prefill_forwards: s.prefill_forwards,
            decode_forwards: s.decode_forwards,
            flop_bound_probe_s: (self.prefill_gflop + self.decode_gflop) / self.peak.best(),
            fma_peak_gflop_s: self.fma_peak,
            flop_bound_fma_s: self.fma_bound_seconds(),
            lower_bound_s: self.lower_bound_seconds(),
            stream_s: self.stream_seconds,
            stream_gb_s: self.model_bytes as f64 / self.stream_seconds / 1e9,
            peak_rss_bytes: self.peak_rss,
            model_bytes: self.model_bytes,
            mean_reward: self.mean_reward,
        }
    }
}

/// Environment that holds the PyTorch reference loop to AVX2 (ATen's kernels, oneDNN, MKL), so
/// that it compares like for like with our kernels capped at AVX2 on a CPU that has AVX-512.
pub const TORCH_AVX2_ENV: [(&str, &str); 3] =
    [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2")];

/// The ISA to cap PyTorch at, with its environment: AVX2 when our kernels run at `ours` =
/// [`Level::Avx2Fma`] although the CPU has AVX-512 (`EVOTUNE_SIMD=avx2`); `None` otherwise (torch
/// then uses the best it finds, as our kernels do).
///
/// [`Level::Avx2Fma`]: crate::kernels::Level::Avx2Fma
pub fn torch_isa_cap(
    ours: crate::kernels::Level,
    avx512_supported: bool,
) -> Option<(&'static str, &'static [(&'static str, &'static str)])> {
    (ours == crate::kernels::Level::Avx2Fma && avx512_supported).then_some(("avx2", &TORCH_AVX2_ENV[..]))
}

/// The 16 reference prompts (exposed so that a PyTorch reference can run the same ones).
pub fn reference_items(n: usize, max_new_tokens: usize) -> Result<(Box<dyn tasks::Task>, Vec<Item>)> {
    let opts = TaskOptions { train_size: n, test_size: 1, max_new_tokens, ..TaskOptions::default() };
    let task = tasks::target_task("arith", &opts)?;
    let items = task.train().to_vec();
    Ok((task, items))
}

/// Peak resident set size of this process (VmHWM in /proc/self/status), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set (VmHWM) to the current RSS, where Linux allows it (writing 5 to
/// /proc/self/clear_refs), so that a later [`peak_rss_bytes`] measures what came after.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Matrix FLOPs of one forward token through the blocks, and of one logits row.
pub(crate) fn flops_per_token(model: &Model) -> (f64, f64) {
    let c = &model.config;
    let (d, qd, kvd, f) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim, c.ffn);
    let block = d * qd + 2 * d * kvd + qd * d + 3 * d * f;
    (2.0 * (c.layers * block) as f64, 2.0 * (c.vocab * d) as f64)
}

/// Runs 1 + `opts.iterations` iterations of the reference workload from θ0 and reports the
/// timed ones. The anchor is the model file and θ0 becomes θ (as in `evotune train`), so the
/// peak RSS is that of a training run.
pub fn bench_es_iteration(model: &Model, theta0: Params, opts: &IterationBenchOptions) -> Result<IterationBench> {
    let (task, items) = reference_items(opts.prompts, opts.max_new_tokens)?;
    // The machine's ceilings, probed before and after the timed iterations (the best of both: its
    // speed drifts with load and clock).
    let (peak_before, fma_before) = (gemm_peak(3), fma_peak(3));
    let stream = stream_seconds(theta0.data(), 3);
    let refs: Vec<&Item> = items.iter().collect();
    let params = EsParams {
        population: opts.population,
        sigma: opts.sigma,
        alpha: opts.alpha,
        perturbation: opts.perturbation,
        ..EsParams::paper()
    };
    let strategy = Strategy::new(params, Anchor::Source(model.theta0_source()))?;
    let model_bytes = 4 * theta0.layout().total() as u64;
    let mut state = EsState::new(theta0);
    // The full-rank member arena: allocated by the first `perturb_into`, never in low-rank mode.
    let mut scratch = Params::zeros(std::sync::Arc::new(Default::default()));
    let (mut eval_s, mut update_s) = (0.0, 0.0);
    let mut stats = GenerateStats::default();
    let mut reward_sum = 0.0;
    for it in 0..=opts.iterations {
        let timed = it > 0;
        let pop = strategy.ask(&state);
        let t = Instant::now();
        let mut s = GenerateStats::default();
        let rewards = member_rewards(
            model,
            &strategy,
            &state.theta,
            state.iteration,
            &pop.members,
            task.as_ref(),
            &refs,
            &mut scratch,
            &mut s,
        )?
        .rewards;
        let e = t.elapsed().as_secs_f64();
        let t = Instant::now();
        strategy.tell(&mut state, &pop, &rewards)?;
        let u = t.elapsed().as_secs_f64();
        if timed {
            eval_s += e;
            update_s += u;
            stats.add(&s);
            reward_sum += rewards.iter().sum::<f32>() / rewards.len() as f32;
        }
    }
    let n = opts.iterations.max(1) as f64;
    let (per_token, per_row) = flops_per_token(model);
    // Prefill: every forwarded prompt token through the blocks + one logits row per prompt.
    let prompts_run = (opts.prompts * opts.population * opts.iterations) as f64;
    let prefill_gflop = (stats.prefill_tokens as f64 * per_token + prompts_run * per_row) / 1e9 / n;
    let decode_gflop = stats.decode_tokens as f64 * (per_token + per_row) / 1e9 / n;
    let per_iter = |x: usize| (x as f64 / n).round() as usize;
    let stats = GenerateStats {
        prefill_tokens: per_iter(stats.prefill_tokens),
        prompt_tokens: per_iter(stats.prompt_tokens),
        decode_tokens: per_iter(stats.decode_tokens),
        prefill_forwards: per_iter(stats.prefill_forwards),
        decode_forwards: per_iter(stats.decode_forwards),
        generated_tokens: per_iter(stats.generated_tokens),
        prefill_seconds: stats.prefill_seconds / n,
        decode_seconds: stats.decode_seconds / n,
    };
    Ok(IterationBench {
        perturbation: opts.perturbation,
        machine: Machine::current(),
        seconds_per_iteration: (eval_s + update_s) / n,
        eval_seconds: eval_s / n,
        update_seconds: update_s / n,
        stats,
        prefill_gflop,
        decode_gflop,
        peak: gemm_peak(3).max(peak_before),
        fma_peak: fma_peak(3).zip(fma_before).map(|(a, b)| a.max(b)),
        stream_seconds: stream,
        peak_rss: peak_rss_bytes(),
        model_bytes,
        mean_reward: reward_sum / n as f32,
        members: opts.population,
    })
}

impl std::fmt::Display for IterationBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        let mode = match self.perturbation {
            Perturbation::Full => "full rank".to_string(),
            Perturbation::LowRank { rank } => format!("low rank (r = {rank})"),
        };
        writeln!(f, "{mode}, N = {}:", self.members)?;
        writeln!(f, "  {}", self.machine)?;
        writeln!(
            f,
            "  {:.2} s/iteration = {:.2} s evaluating + {:.2} s update; {:.3} s per member",
            self.seconds_per_iteration,
            self.eval_seconds,
            self.update_seconds,
            self.per_member()
        )?;
        writeln!(
            f,
            "  prefill {:.2} s: {} prompt tokens ({} through the forward after prefix sharing), {:.0} tok/s, \
             {:.1} GFLOP/s = {:.0}% of the GEMM probe ({:.1} GFLOP/s: ours {:.1}{})",
            s.prefill_seconds,
            s.prompt_tokens,
            s.prefill_tokens,
            s.prefill_tokens as f64 / s.prefill_seconds,
            self.prefill_gflop / s.prefill_seconds,
            100.0 * self.prefill_gflop / s.prefill_seconds / self.peak.best(),
            self.peak.best(),
            self.peak.ours,
            match self.peak.gemm_crate {
                Some(g) => format!(", gemm crate {g:.1}"),
                None => String::new(),
            }
        )?;
        writeln!(
            f,
            "  decode {:.2} s: {} tokens, {:.1} GFLOP/s; {} tokens generated, {:.0} generated tok/s overall",
            s.decode_seconds,
            s.decode_tokens,
            self.decode_gflop / s.decode_seconds,
            s.generated_tokens,
            s.generated_tokens as f64 / self.eval_seconds
        )?;
        let bound = (self.prefill_gflop + self.decode_gflop) / self.peak.best();
        writeln!(
            f,
            "  FLOP bound at the probe's peak: {:.2} s of evaluation ({:.0}% of the measured evaluation time)",
            bound,
            100.0 * bound / self.eval_seconds
        )?;
        if let Some(fma) = self.fma_peak {
            writeln!(
                f,
                "  FLOP bound at the FMA peak ({:.1} GFLOP/s, registers only): {:.2} s of evaluation",
                fma,
                self.fma_bound_seconds().unwrap_or(f64::NAN)
            )?;
        }
        writeln!(
            f,
            "  weights read once from memory: {:.1} ms ({:.1} GB/s); {} prefill and {} decode forwards",
            1e3 * self.stream_seconds,
            self.model_bytes as f64 / self.stream_seconds / 1e9,
            s.prefill_forwards,
            s.decode_forwards
        )?;
        if let Some(lb) = self.lower_bound_seconds() {
            writeln!(
                f,
                "  lower bound (FLOPs at the FMA peak, or the weight reads where more): {:.2} s of evaluation",
                lb
            )?;
        }
        if let Some(rss) = self.peak_rss {
            writeln!(
                f,
                "  peak RSS {:.0} MB = {:.2}× the f32 model ({:.0} MB)",
                rss as f64 / 1e6,
                rss as f64 / self.model_bytes as f64,
                self.model_bytes as f64 / 1e6
            )?;
        }
        write!(f, "  mean population reward {:.3}", self.mean_reward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Level;

    fn bench(perturbation: Perturbation) -> IterationBench {
        IterationBench {
            perturbation,
            machine: Machine {
                cpu: "cpu".into(),
                simd: "Avx512".into(),
                simd_cap: None,
                int8: "avx512-vnni (vpdpbusd)".into(),
                threads: 2,
            },
            seconds_per_iteration: 8.0,
            eval_seconds: 7.5,
            update_seconds: 0.5,
            stats: GenerateStats {
                prefill_tokens: 100,
                prompt_tokens: 400,
                decode_tokens: 50,
                prefill_forwards: 2,
                decode_forwards: 15,
                generated_tokens: 60,
                prefill_seconds: 2.0,
                decode_seconds: 5.0,
            },
            prefill_gflop: 100.0,
            decode_gflop: 50.0,
            peak: GemmPeak { ours: 200.0, gemm_crate: Some(100.0), shape: (1, 1, 1) },
            fma_peak: Some(300.0),
            stream_seconds: 0.03,
            peak_rss: Some(900_000_000),
            model_bytes: 540_000_000,
            mean_reward: 0.25,
            members: 8,
        }
    }

    #[test]
    fn json_line_names_mode_rank_and_figures() {
        let full = serde_json::to_value(bench(Perturbation::Full).json_line()).unwrap();
        assert_eq!(full["method"], "es");
        assert_eq!(full["perturbation"], "full");
        assert!(full["rank"].is_null());
        let low = serde_json::to_value(bench(Perturbation::LowRank { rank: 4 }).json_line()).unwrap();
        assert_eq!(low["perturbation"], "lowrank");
        assert_eq!(low["rank"], 4);
        for key in ["cpu", "simd", "threads", "population", "s_per_iteration", "peak_rss_bytes", "eval_s", "update_s"] {
            assert!(!low[key].is_null(), "{key}: {low}");
        }
        assert_eq!(low["population"], 8);
        assert_eq!(low["s_per_iteration"], 8.0);
        assert_eq!(low["s_per_member"], 1.0);
        assert_eq!(low["prefill_gflop_s"], 50.0);
        assert_eq!(low["prefill_fraction_of_gemm_probe"], 0.25);
        assert_eq!(low["gemm_probe_gflop_s"], 200.0);
        assert_eq!(low["gemm_probe_gemm_crate_gflop_s"], 100.0);
        assert_eq!(low["decode_gflop_s"], 10.0);
        assert_eq!(low["fma_peak_gflop_s"], 300.0);
        assert_eq!(low["flop_bound_fma_s"], 0.5);
        assert_eq!(low["peak_rss_bytes"], 900_000_000u64);
        assert_eq!(low["stream_s"], 0.03);
    }

    #[test]
    fn torch_is_capped_at_avx2_only_when_ours_is_capped_below_the_cpu() {
        let (isa, env) = torch_isa_cap(Level::Avx2Fma, true).unwrap();
        assert_eq!(isa, "avx2");
        assert!(env.contains(&("ATEN_CPU_CAPABILITY", "avx2")));
        assert!(env.contains(&("ONEDNN_MAX_CPU_ISA", "AVX2")));
        assert!(env.contains(&("MKL_ENABLE_INSTRUCTIONS", "AVX2")));
        assert_eq!(torch_isa_cap(Level::Avx2Fma, false), None);
        assert_eq!(torch_isa_cap(Level::Avx512, true), None);
    }
}
