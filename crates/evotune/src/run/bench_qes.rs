//! `evotune bench es-iteration --method qes`: seconds per QES iteration on the reference workload
//! (the same 16 prompts, N = 8 members in ± pairs, ≤ 16 new tokens; σ = 0.01 code steps,
//! α = 5e-4), every member × prompt in one batch over the shared quantized store
//! ([`crate::run::qes_step`]), and the quantized engine's own batched generation rate on the same
//! 128 sequences without perturbations, measured in the same run (EGGROLL reports 91% of it).
//!
//! The bound printed beside them: Σ over prefill and decode of max(forwards × one read of the
//! quantized matrices, the matrices' integer operations at the integer step's register-only peak).
//! Attention, norms and the members' corrections are not in it, so no run reaches it.

use std::time::Instant;

use crate::error::Result;
use crate::es::noise::NoiseMode;
use crate::es::qes::{QesParams, ResidualKind, DEFAULT_REPLAY_WINDOW};
use crate::es::shaping::{NonFinitePolicy, Shaping};
use crate::es::Awd;
use crate::kernels::machine::Machine;
use crate::kernels::probe::{int8_peak, stream_bytes_seconds};
use crate::model::generate::GenerateStats;
use crate::model::{Model, QuantizedParams, Weights};
use crate::run::bench::{eval_bound, flops_per_token, peak_rss_bytes, reference_items};
use crate::run::comm::SingleProcess;
use crate::run::qes_step::{FileCodes, QesRun, QesState};
use crate::tasks::{eval, Item};

/// Figures of the QES mode, averaged over the timed iterations.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QesIterationBench {
    #[serde(flatten)]
    pub machine: Machine,
    /// Always `qes`.
    pub method: &'static str,
    /// How e was held: `stored` or `replay` (window 50).
    pub residual: ResidualKind,
    pub population: usize,
    /// Members evaluated per batch (0: all in one).
    pub member_batch: usize,
    pub s_per_iteration: f64,
    pub eval_s: f64,
    pub update_s: f64,
    pub generated_tokens: usize,
    /// Generated tokens per second of the population's evaluation.
    pub generated_tok_s: f64,
    /// The same sequences generated on the plain store (no member moves), tokens per second.
    pub plain_generated_tok_s: f64,
    /// generated_tok_s ÷ plain_generated_tok_s.
    pub fraction_of_plain_generation: f64,
    /// Codes moved per iteration (mean).
    pub codes_moved: f64,
    pub store_bytes: u64,
    pub residual_bytes: u64,
    /// The model's parameters at f32 (4 bytes each), the yardstick of the peak RSS.
    pub f32_model_bytes: u64,
    pub peak_rss_bytes: Option<u64>,
    pub mean_reward: f32,
    /// Integer operations of the matrices per iteration (an 8-bit multiply-add counts 2; prefill
    /// includes one logits row per prompt).
    pub prefill_gop: f64,
    pub decode_gop: f64,
    /// Batched forwards per iteration.
    pub prefill_forwards: usize,
    pub decode_forwards: usize,
    /// The integer step's register-only peak on all threads ([`int8_peak`]); `None` for the
    /// portable kernel.
    pub int8_peak_gop_s: Option<f64>,
    /// Seconds to read the quantized matrices once from memory ([`stream_bytes_seconds`]).
    pub store_read_s: f64,
    /// The module doc's bound on the evaluation, seconds per iteration.
    pub eval_bound_s: Option<f64>,
}

impl std::fmt::Display for QesIterationBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.machine)?;
        writeln!(
            f,
            "QES (codes of the GGUF, N = {}, {}, residual {:?}): {:.2} s/iteration (evaluation {:.2} s, update \
             {:.2} s), {:.0} codes moved per iteration",
            self.population,
            match self.member_batch {
                0 => "one batch".to_string(),
                b => format!("batches of {b} members"),
            },
            self.residual,
            self.s_per_iteration,
            self.eval_s,
            self.update_s,
            self.codes_moved
        )?;
        writeln!(
            f,
            "  generation {:.1} tok/s = {:.0}% of the quantized engine's own batched rate on the same sequences \
             ({:.1} tok/s)",
            self.generated_tok_s,
            100.0 * self.fraction_of_plain_generation,
            self.plain_generated_tok_s
        )?;
        if let (Some(peak), Some(bound)) = (self.int8_peak_gop_s, self.eval_bound_s) {
            writeln!(
                f,
                "  bound: {:.2} s of evaluation = {:.0}% of the measured {:.2} s (matrices only: {:.0} GOP at the \
                 integer step's peak {:.0} GOP/s, or where more the store ({:.1} MB) read once per forward, \
                 {:.1} ms at {:.1} GB/s; {} + {} forwards)",
                bound,
                100.0 * bound / self.eval_s,
                self.eval_s,
                self.prefill_gop + self.decode_gop,
                peak,
                self.store_bytes as f64 / 1e6,
                1e3 * self.store_read_s,
                self.store_bytes as f64 / self.store_read_s / 1e9,
                self.prefill_forwards,
                self.decode_forwards
            )?;
        }
        let mb = |b: u64| b as f64 / 1e6;
        write!(
            f,
            "  memory: store {:.1} MB + residual {:.1} MB; peak RSS {}",
            mb(self.store_bytes),
            mb(self.residual_bytes),
            self.peak_rss_bytes.map_or("unknown".to_string(), |b| format!(
                "{:.1} MB = {:.2}× the f32 model ({:.0} MB)",
                mb(b),
                b as f64 / self.f32_model_bytes as f64,
                mb(self.f32_model_bytes)
            ))
        )
    }
}

/// Runs 1 + `iterations` QES iterations of the reference workload on `store` and reports the timed
/// ones, then times two plain batched generations of the same sequences (the faster counts).
pub fn bench_qes_iteration(
    model: &Model,
    store: QuantizedParams,
    population: usize,
    residual: ResidualKind,
    member_batch: usize,
    iterations: usize,
) -> Result<QesIterationBench> {
    let (task, items) = reference_items(16, 16)?;
    let refs: Vec<&Item> = items.iter().collect();
    // The machine's ceilings, probed before and after the timed iterations (the best of both).
    let matrices: Vec<&[u8]> = store.matrices().map(|q| q.data()).collect();
    let (peak_before, read_before) = (int8_peak(3), stream_bytes_seconds(&matrices, 3));
    drop(matrices);
    let run = QesRun {
        population,
        mirrored: true,
        shaping: Shaping::Zscore,
        nonfinite: NonFinitePolicy::Worst,
        seed: 0,
        noise: NoiseMode::Iid,
        update: QesParams { sigma: 0.01, alpha: 5e-4, beta: 0.9, feedback: true, awd: Awd::None },
        residual,
        window: DEFAULT_REPLAY_WINDOW,
        member_batch,
    };
    let file = FileCodes { theta0: model.theta0.clone(), format: crate::model::WeightFormat::Quantized };
    let mut state = QesState::new(store, Box::new(file), &run);
    // A replayed residual is timed at steady state: its window already holds K steps (of other
    // iterations' noise; their cost does not depend on their coefficients).
    if let crate::es::qes::Residual::Replay { steps, window, .. } = &mut state.residual {
        for j in 0..*window as u64 {
            let members = crate::es::population::members(population, true, 1_000_000 + j).members;
            let coefficients = members.iter().map(|m| m.sign * 0.5).collect();
            steps.push_back(crate::es::qes::WindowStep { iteration: 1_000_000 + j, members, coefficients });
        }
    }
    let (mut total, mut eval_s, mut update_s, mut moved, mut reward) = (0.0, 0.0, 0.0, 0u64, 0.0f32);
    let mut stats = GenerateStats::default();
    for it in 0..=iterations {
        let t = Instant::now();
        let mut s = GenerateStats::default();
        let (rec, st, u) = state.step(model, &run, task.as_ref(), &refs, &mut s, &SingleProcess)?;
        let all = t.elapsed().as_secs_f64();
        if it > 0 {
            total += all;
            update_s += u;
            eval_s += all - u;
            moved += st.moved;
            reward += rec.rewards.iter().sum::<f32>() / rec.rewards.len() as f32;
            stats.add(&s);
        }
    }
    let n = iterations.max(1) as f64;
    // The iterations' peak, before the plain generations below allocate their own caches.
    let peak_rss = peak_rss_bytes();
    // The engine's own batched rate: the same member × prompt sequences, no member moves; the
    // better of two runs (a single one varied by a third between runs on a shared machine).
    let ids: Vec<Vec<u32>> =
        refs.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let all: Vec<Vec<u32>> = (0..population).flat_map(|_| ids.iter().cloned()).collect();
    let mut plain_generated_tok_s = 0.0f64;
    for _ in 0..2 {
        let mut plain = GenerateStats::default();
        let t = Instant::now();
        eval::complete_ids(model, &state.store, None, &all, task.max_new_tokens(), &mut plain)?;
        plain_generated_tok_s = plain_generated_tok_s.max(plain.generated_tokens as f64 / t.elapsed().as_secs_f64());
    }
    let generated_tok_s = stats.generated_tokens as f64 / eval_s;
    let matrices: Vec<&[u8]> = state.store.matrices().map(|q| q.data()).collect();
    let peak = int8_peak(3).zip(peak_before).map(|(a, b)| a.max(b));
    let store_read_s = stream_bytes_seconds(&matrices, 3).min(read_before);
    let (per_token, per_row) = flops_per_token(model);
    let prompts_run = (refs.len() * population) as f64;
    let gop = (
        (stats.prefill_tokens as f64 / n * per_token + prompts_run * per_row) / 1e9,
        stats.decode_tokens as f64 / n * (per_token + per_row) / 1e9,
    );
    let forwards =
        ((stats.prefill_forwards as f64 / n).round() as usize, (stats.decode_forwards as f64 / n).round() as usize);
    Ok(QesIterationBench {
        machine: Machine::current(),
        method: "qes",
        residual,
        population,
        member_batch,
        s_per_iteration: total / n,
        eval_s: eval_s / n,
        update_s: update_s / n,
        generated_tokens: (stats.generated_tokens as f64 / n).round() as usize,
        generated_tok_s,
        plain_generated_tok_s,
        fraction_of_plain_generation: generated_tok_s / plain_generated_tok_s,
        codes_moved: moved as f64 / n,
        store_bytes: state.store.bytes() as u64,
        residual_bytes: state.residual.bytes() as u64,
        f32_model_bytes: 4 * state.store.layout().total() as u64,
        peak_rss_bytes: peak_rss,
        mean_reward: reward / n as f32,
        prefill_gop: gop.0,
        decode_gop: gop.1,
        prefill_forwards: forwards.0,
        decode_forwards: forwards.1,
        int8_peak_gop_s: peak,
        store_read_s,
        eval_bound_s: peak.map(|p| eval_bound(forwards, gop, p, store_read_s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound takes, per phase, the larger of the store reads and the operations at the peak;
    /// the printed line and the JSON carry it.
    #[test]
    fn bound_is_the_slower_ceiling_of_each_phase() {
        let machine = Machine {
            cpu: "test".into(),
            simd: "Avx512".into(),
            simd_cap: None,
            int8: "avx512-vnni (vpdpbusd)".into(),
            threads: 2,
        };
        let mut b = QesIterationBench {
            machine,
            method: "qes",
            residual: ResidualKind::Stored,
            population: 8,
            member_batch: 0,
            s_per_iteration: 4.0,
            eval_s: 3.8,
            update_s: 0.2,
            generated_tokens: 1800,
            generated_tok_s: 470.0,
            plain_generated_tok_s: 600.0,
            fraction_of_plain_generation: 470.0 / 600.0,
            codes_moved: 25_000.0,
            store_bytes: 96_600_000,
            residual_bytes: 134_500_000,
            f32_model_bytes: 538_000_000,
            peak_rss_bytes: None,
            mean_reward: 0.1,
            // Prefill bound by operations (400 / 1000 = 0.4 s > 2 × 0.01 s), decode by reads
            // (15 × 0.01 = 0.15 s > 100 / 1000 s).
            prefill_gop: 400.0,
            decode_gop: 100.0,
            prefill_forwards: 2,
            decode_forwards: 15,
            int8_peak_gop_s: Some(1000.0),
            store_read_s: 0.01,
            eval_bound_s: None,
        };
        let bound = eval_bound((b.prefill_forwards, b.decode_forwards), (b.prefill_gop, b.decode_gop), 1000.0, 0.01);
        assert!((bound - 0.55).abs() < 1e-12, "{bound}");
        b.eval_bound_s = Some(bound);
        assert!(b.to_string().contains("bound: 0.55 s of evaluation = 14% of the measured 3.80 s"), "{b}");
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["eval_bound_s"], 0.55);
        assert_eq!(json["int8_peak_gop_s"], 1000.0);
        assert_eq!(json["cpu"], "test");
    }
}
