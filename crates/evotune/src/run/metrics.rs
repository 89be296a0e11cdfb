//! The lines of `metrics.jsonl`: one `iteration` line per ES step and one `eval` line per
//! evaluation (at iteration 0, every `eval_every`, and at the end).

use serde::{Deserialize, Serialize};

use crate::es::drift::Drift;
use crate::tasks::eval::TaskScore;

/// Summary of one ES iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationLine {
    /// Iteration number after the step (1-based: θ_t was produced by this step).
    pub iteration: u64,
    pub reward_mean: f64,
    pub reward_std: f64,
    pub reward_min: f64,
    pub reward_max: f64,
    /// ‖θ_t − θ0‖₂.
    pub drift: f64,
    /// Wall time of member evaluation, of the update (+AWD), and of the whole iteration.
    pub eval_seconds: f64,
    pub update_seconds: f64,
    pub seconds: f64,
    /// QES: codes this step moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codes_stepped: Option<u64>,
    /// Drift budget: λ_t this step used, and the ‖θ−θ0‖ the controller held it at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awd_lambda: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_target: Option<f64>,
    /// GRPO: what the step's objective and backward measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpo: Option<GrpoLine>,
}

/// A GRPO step's own figures (the rewards are the iteration line's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpoLine {
    /// The objective L of the first update on the batch.
    pub loss: f64,
    /// Mean k3 estimate of KL(π_θ‖π_ref) per completion token.
    pub kl: f64,
    /// Fraction of completion tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// ‖∇L‖₂ before clipping.
    pub grad_norm: f64,
    /// Completion tokens trained on; tokens through forward + backward per second (prompts
    /// included).
    pub completion_tokens: usize,
    pub train_tokens_per_second: f64,
    /// Peak resident set of the process so far (bytes), where the OS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

impl IterationLine {
    /// Mean, population std, min and max of the rewards (finite ones only).
    pub fn reward_stats(rewards: &[f32]) -> (f64, f64, f64, f64) {
        let finite: Vec<f64> = rewards.iter().filter(|r| r.is_finite()).map(|&r| r as f64).collect();
        if finite.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        }
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        let min = finite.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (mean, var.sqrt(), min, max)
    }
}

/// An evaluation of θ_t: target test score, every prior task, and the drift breakdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    pub iteration: u64,
    pub target: TaskScore,
    pub priors: Vec<TaskScore>,
    pub drift: Drift,
    pub seconds: f64,
    /// QES: how many codes differ from the base codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codes_moved: Option<CodesMoved>,
}

/// Codes that differ from the base, of how many, and the fraction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodesMoved {
    pub changed: u64,
    pub total: u64,
    pub fraction: f64,
}

impl CodesMoved {
    pub fn new(changed: u64, total: u64) -> CodesMoved {
        CodesMoved { changed, total, fraction: changed as f64 / total.max(1) as f64 }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricsLine {
    Iteration(IterationLine),
    Eval(EvalLine),
}

impl MetricsLine {
    pub fn iteration(&self) -> u64 {
        match self {
            MetricsLine::Iteration(l) => l.iteration,
            MetricsLine::Eval(l) => l.iteration,
        }
    }
}
