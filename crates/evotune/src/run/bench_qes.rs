//! `evotune bench es-iteration --method qes`: seconds per QES iteration on the reference workload
//! (the same 16 prompts, N = 8 members in ± pairs, ≤ 16 new tokens; σ = 0.01 code steps,
//! α = 5e-4), every member × prompt in one batch over the shared quantized store
//! ([`crate::run::qes_step`]), and the quantized engine's own batched generation rate on the same
//! 128 sequences without perturbations, measured in the same run (EGGROLL reports 91% of it).

use std::time::Instant;

use crate::error::Result;
use crate::es::noise::NoiseMode;
use crate::es::qes::{QesParams, ResidualKind, DEFAULT_REPLAY_WINDOW};
use crate::es::shaping::{NonFinitePolicy, Shaping};
use crate::es::Awd;
use crate::kernels::machine::Machine;
use crate::model::generate::GenerateStats;
use crate::model::{Model, QuantizedParams};
use crate::run::bench::{peak_rss_bytes, reference_items};
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
    pub peak_rss_bytes: Option<u64>,
    pub mean_reward: f32,
}

impl std::fmt::Display for QesIterationBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.machine)?;
        writeln!(
            f,
            "QES (codes of the GGUF, N = {}, one batch, residual {:?}): {:.2} s/iteration (evaluation {:.2} s, update \
             {:.2} s), {:.0} codes moved per iteration",
            self.population, self.residual, self.s_per_iteration, self.eval_s, self.update_s, self.codes_moved
        )?;
        writeln!(
            f,
            "  generation {:.1} tok/s = {:.0}% of the quantized engine's own batched rate on the same sequences \
             ({:.1} tok/s)",
            self.generated_tok_s,
            100.0 * self.fraction_of_plain_generation,
            self.plain_generated_tok_s
        )?;
        let mb = |b: u64| b as f64 / 1e6;
        write!(
            f,
            "  memory: store {:.1} MB + residual {:.1} MB; peak RSS {}",
            mb(self.store_bytes),
            mb(self.residual_bytes),
            self.peak_rss_bytes.map_or("unknown".to_string(), |b| format!("{:.1} MB", mb(b)))
        )
    }
}

/// Runs 1 + `iterations` QES iterations of the reference workload on `store` and reports the timed
/// ones, then times one plain batched generation of the same sequences.
pub fn bench_qes_iteration(
    model: &Model,
    store: QuantizedParams,
    population: usize,
    residual: ResidualKind,
    iterations: usize,
) -> Result<QesIterationBench> {
    let (task, items) = reference_items(16, 16)?;
    let refs: Vec<&Item> = items.iter().collect();
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
        member_batch: 0,
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
    // The engine's own batched rate: the same member × prompt sequences, no member moves.
    let ids: Vec<Vec<u32>> =
        refs.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let all: Vec<Vec<u32>> = (0..population).flat_map(|_| ids.iter().cloned()).collect();
    let mut plain = GenerateStats::default();
    let t = Instant::now();
    eval::complete_ids(model, &state.store, None, &all, task.max_new_tokens(), &mut plain)?;
    let plain_s = t.elapsed().as_secs_f64();
    let generated_tok_s = stats.generated_tokens as f64 / eval_s;
    let plain_generated_tok_s = plain.generated_tokens as f64 / plain_s;
    Ok(QesIterationBench {
        machine: Machine::current(),
        method: "qes",
        residual,
        population,
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
        peak_rss_bytes: peak_rss_bytes(),
        mean_reward: reward / n as f32,
    })
}
