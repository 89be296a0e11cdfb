//! `evotune bench grpo`: seconds per GRPO step on the reference workload (16 `arith` prompts, G
//! completions each, ≤ 16 new tokens), split into sampling, forwards, backwards and AdamW, with the
//! FLOPs of the training passes, the rate they ran at against the FMA peak, and the peak memory.

use std::fmt;

use serde::Serialize;

use crate::error::Result;
use crate::kernels::machine::Machine;
use crate::kernels::probe;
use crate::model::generate::GenerateStats;
use crate::model::{Model, Params};
use crate::rl::GrpoParams;
use crate::run::bench::{peak_rss_bytes, reference_items};
use crate::run::grpo_step::{GrpoState, GrpoStepStats};

/// One measured configuration (one JSON line with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct GrpoBench {
    #[serde(flatten)]
    pub machine: Machine,
    pub method: &'static str,
    pub prompts: usize,
    pub group: usize,
    pub micro_batch: usize,
    /// Timed steps (after one warm-up step), and the means over them.
    pub steps: usize,
    pub s_per_step: f64,
    pub sample_seconds: f64,
    pub forward_seconds: f64,
    pub reference_seconds: f64,
    pub backward_seconds: f64,
    pub optimizer_seconds: f64,
    /// Tokens through the training passes per step (prompts included) and completion tokens.
    pub train_tokens: f64,
    pub completion_tokens: f64,
    pub train_tokens_per_second: f64,
    /// FLOPs of a step's forwards, reference forward and backward, and their rate.
    pub train_flops: f64,
    pub train_gflops_per_second: f64,
    /// Register-only FMA peak of the pool (GFLOP/s) and the training passes' fraction of it.
    pub fma_peak_gflops: Option<f64>,
    pub fraction_of_peak: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// Runs `steps` + 1 GRPO steps from θ (the first is a warm-up) on the reference workload with
/// `p`'s settings; call it inside the rayon pool to measure.
pub fn bench_grpo_step(
    model: &Model,
    theta: Params,
    p: &GrpoParams,
    prompts: usize,
    steps: usize,
) -> Result<GrpoBench> {
    let (task, items) = reference_items(prompts, 16)?;
    let refs: Vec<&crate::tasks::Item> = items.iter().collect();
    let mut state = GrpoState::new(theta);
    let mut total = GrpoStepStats::default();
    let mut seconds = 0.0;
    for k in 0..=steps {
        let t = std::time::Instant::now();
        let s = state.step(model, p, 1, task.as_ref(), &refs, &mut GenerateStats::default())?;
        if k == 0 {
            continue;
        }
        seconds += t.elapsed().as_secs_f64();
        total.sample_seconds += s.sample_seconds;
        total.forward_seconds += s.forward_seconds;
        total.reference_seconds += s.reference_seconds;
        total.backward_seconds += s.backward_seconds;
        total.optimizer_seconds += s.optimizer_seconds;
        total.trained_tokens += s.trained_tokens;
        total.completion_tokens += s.completion_tokens;
        total.train_flops += s.train_flops;
    }
    let n = steps.max(1) as f64;
    let passes = total.forward_seconds + total.reference_seconds + total.backward_seconds;
    let gflops = total.train_flops / passes.max(1e-9) / 1e9;
    let peak = probe::fma_peak(3);
    Ok(GrpoBench {
        machine: Machine::current(),
        method: "grpo",
        prompts,
        group: p.group,
        micro_batch: p.micro_batch,
        steps,
        s_per_step: seconds / n,
        sample_seconds: total.sample_seconds / n,
        forward_seconds: total.forward_seconds / n,
        reference_seconds: total.reference_seconds / n,
        backward_seconds: total.backward_seconds / n,
        optimizer_seconds: total.optimizer_seconds / n,
        train_tokens: total.trained_tokens as f64 / n,
        completion_tokens: total.completion_tokens as f64 / n,
        train_tokens_per_second: total.trained_tokens as f64 / passes.max(1e-9),
        train_flops: total.train_flops / n,
        train_gflops_per_second: gflops,
        fma_peak_gflops: peak,
        fraction_of_peak: peak.map(|pk| gflops / pk),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

impl fmt::Display for GrpoBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.machine)?;
        writeln!(
            f,
            "GRPO step ({} prompts × G = {}, micro-batch {}): {:.2} s/step (mean of {})",
            self.prompts, self.group, self.micro_batch, self.s_per_step, self.steps
        )?;
        writeln!(
            f,
            "  sampling {:.2} s · forward with tape {:.2} s · reference forward {:.2} s · backward {:.2} s · AdamW {:.2} s",
            self.sample_seconds, self.forward_seconds, self.reference_seconds, self.backward_seconds, self.optimizer_seconds
        )?;
        writeln!(
            f,
            "  {:.0} tokens through the training passes ({:.0} completion tokens): {:.1} tok/s",
            self.train_tokens, self.completion_tokens, self.train_tokens_per_second
        )?;
        write!(
            f,
            "  {:.1} GFLOP per step in the passes: {:.1} GFLOP/s",
            self.train_flops / 1e9,
            self.train_gflops_per_second
        )?;
        if let (Some(pk), Some(fr)) = (self.fma_peak_gflops, self.fraction_of_peak) {
            write!(f, " = {:.0}% of the FMA peak ({pk:.1} GFLOP/s)", 100.0 * fr)?;
        }
        if let Some(b) = self.peak_rss_bytes {
            write!(f, "\n  peak RSS {:.0} MB", b as f64 / 1e6)?;
        }
        Ok(())
    }
}

/// Our backward against candle's autograd on one workload (`--vs-candle`): B rows of L prompt
/// tokens, ∂ log π(last token | the rest)/∂θ summed over rows, forward + backward timed and their
/// memory measured as the peak RSS above the RSS before (the loaded model), each from a reset.
/// candle 0.11's llama is not differentiable end to end (see `candle_tensors_without_gradient`),
/// which is one reason the backward here is our own.
#[cfg(feature = "bench")]
#[derive(Clone, Debug, Serialize)]
pub struct BackwardVsCandle {
    #[serde(flatten)]
    pub machine: Machine,
    pub rows: usize,
    pub tokens_per_row: usize,
    pub ours_seconds: f64,
    pub candle_seconds: f64,
    pub ours_extra_rss_bytes: Option<u64>,
    pub candle_extra_rss_bytes: Option<u64>,
    /// Tensors candle's autograd gave no gradient (none, or all zero), of how many: candle_nn's
    /// fused `rms_norm` is `apply_op2_no_bwd`, so its backward stops at every RMSNorm.
    pub candle_tensors_without_gradient: usize,
    pub tensors: usize,
}

/// Runs [`BackwardVsCandle`] on the reference prompts cut to their common length.
#[cfg(feature = "bench")]
pub fn backward_vs_candle(model: &Model, theta: &Params, rows: usize) -> Result<BackwardVsCandle> {
    use crate::model::backprop::{self, TrainSeq};
    use crate::run::bench::reset_peak_rss;
    let (task, items) = reference_items(rows, 16)?;
    let mut ids: Vec<Vec<u32>> =
        items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let len = ids.iter().map(|r| r.len()).min().unwrap_or(0);
    ids.iter_mut().for_each(|r| r.truncate(len));
    let extra = |before: Option<u64>| peak_rss_bytes().zip(before).map(|(p, b)| p.saturating_sub(b));

    reset_peak_rss();
    let before = peak_rss_bytes();
    let t = std::time::Instant::now();
    let seqs: Vec<TrainSeq> = ids.iter().map(|r| TrainSeq { tokens: r, scored_from: len - 1 }).collect();
    let (logp, tape) = backprop::forward(&model.llama, theta.layout(), theta.data(), &seqs, 1.0, true)?;
    let mut ours = vec![0.0f32; theta.data().len()];
    backprop::backward(
        &model.llama,
        theta.layout(),
        theta.data(),
        tape.expect("kept"),
        &vec![1.0; logp.len()],
        &mut ours,
    );
    let ours_seconds = t.elapsed().as_secs_f64();
    let ours_extra = extra(before);

    reset_peak_rss();
    let before = peak_rss_bytes();
    let inputs: Vec<Vec<u32>> = ids.iter().map(|r| r[..len - 1].to_vec()).collect();
    let targets: Vec<u32> = ids.iter().map(|r| r[len - 1]).collect();
    let (theirs, candle_seconds) = crate::model::candle_ref::logprob_gradient(&model.config, theta, &inputs, &targets)?;
    let candle_extra = extra(before);
    let layout = theta.layout();
    let missing = layout.tensors().iter().filter(|t| theirs[t.range()].iter().all(|&g| g == 0.0)).count();
    debug_assert!(ours.iter().any(|&g| g != 0.0));
    Ok(BackwardVsCandle {
        machine: Machine::current(),
        rows,
        tokens_per_row: len,
        ours_seconds,
        candle_seconds,
        ours_extra_rss_bytes: ours_extra,
        candle_extra_rss_bytes: candle_extra,
        candle_tensors_without_gradient: missing,
        tensors: layout.len(),
    })
}

#[cfg(feature = "bench")]
impl fmt::Display for BackwardVsCandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: Option<u64>| b.map_or("?".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
        writeln!(f, "{}", self.machine)?;
        writeln!(
            f,
            "backward of log π(last token) over {} rows × {} tokens, every parameter:",
            self.rows, self.tokens_per_row
        )?;
        writeln!(
            f,
            "  evotune (hand-written, our kernels): {:.2} s, peak RSS +{}",
            self.ours_seconds,
            mb(self.ours_extra_rss_bytes)
        )?;
        writeln!(
            f,
            "  candle 0.11 autograd (Vars, gemm):   {:.2} s, peak RSS +{} (candle copies the weights into its tensors)",
            self.candle_seconds,
            mb(self.candle_extra_rss_bytes)
        )?;
        write!(
            f,
            "  candle's autograd gave no gradient to {} of the {} tensors (its fused rms_norm has no backward, so the \
             backward stops at every RMSNorm): its time and memory cover only that truncated backward, not a \
             training step",
            self.candle_tensors_without_gradient, self.tensors
        )
    }
}
