//! Tasks: what the model is asked, and how its answers are rewarded (higher is better).
//!
//! A run has one **target task** (its mean reward over the iteration's prompts is the ES fitness)
//! and any number of **prior tasks** (only evaluated, to watch forgetting).
//!
//! - Target tasks implement [`Task`]: [`countdown`], [`arith`], [`conciseness`] and user JSONL
//!   files ([`jsonl`]) scored by a [`reward_kind::RewardKind`] (exact, numeric, regex, contains,
//!   GSM8K-style `#### n`, or an external [`command`]). Built by [`target_task`]. [`random`]
//!   rewards members by a seeded hash, never running the model (the drift-law probe).
//! - Prior tasks are a [`PriorTask`] built by [`prior_task`]: multiple choice scored by
//!   log-likelihood or by generation ([`multiple_choice`]), generation tasks, or the
//!   KL(base‖current) probe ([`kl_probe`]). Built-in suites live in `data/` and are compiled into
//!   the binary ([`suites`]).
//! - [`eval`] runs a model over a task: rewards of completions, test-split scores, prior scores.
//!
//! Reward convention of the reference code (es-awd): target reward = 0.1·format + answer, and an
//! item counts as correct when its answer part is positive.

pub mod arith;
pub mod command;
pub mod conciseness;
pub mod countdown;
pub mod eval;
pub mod jsonl;
pub mod kl_probe;
pub mod multiple_choice;
pub mod numbers;
pub mod options;
pub mod random;
pub mod registry;
pub mod reward_kind;
pub mod rng;
pub mod split;
pub mod suites;

pub use eval::{evaluate, evaluate_prior, evaluate_target, target_rewards, TaskScore};
pub use options::{ArithOp, TaskOptions};
pub use registry::{eval_task, prior_task, target_task, EvalTask, PriorTask};
pub use split::minibatch;

use crate::error::Result;
use crate::tokenizer::Prompt;

/// One question of a generation task.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub prompt: Prompt,
    /// The reference answer as the task's reward function reads it.
    pub answer: String,
}

/// The reward for one completion.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reward {
    /// The ES fitness contribution.
    pub value: f32,
    /// Counted as correct for accuracy.
    pub correct: bool,
}

/// A generation task (target, or prior scored by generation).
pub trait Task: Send + Sync {
    fn name(&self) -> &str;
    /// Maximum new tokens a completion needs.
    fn max_new_tokens(&self) -> usize;
    fn train(&self) -> &[Item];
    fn test(&self) -> &[Item];
    /// Rewards a batch of completions (one per item). Batch-shaped so an external program can
    /// score many at once.
    fn rewards(&self, items: &[&Item], completions: &[String]) -> Result<Vec<Reward>>;
    /// Text appended after the rendered prompt, as the start of the model's reply (an assistant
    /// "prefill", e.g. Countdown's `Let me solve this step by step.\n<think>`). The completion
    /// passed to [`Task::rewards`] is what the model generated after it. Empty by default.
    fn response_prefix(&self) -> &str {
        ""
    }
    /// Items per ES iteration drawn from `train()` by [`minibatch`] (0 = all of them).
    fn minibatch_size(&self) -> usize {
        0
    }
    /// Member `member`'s fitness at iteration `iteration` when the task's reward does not depend on
    /// the model (the `random` drift probe): the training loop then neither perturbs nor runs the
    /// model. `None` (the default) for every real task.
    fn reward_without_model(&self, _iteration: u64, _member: usize) -> Option<f32> {
        None
    }
}

/// True for the names of built-in target tasks (`countdown`, `arith`, `conciseness`, `random`).
pub fn is_target_task(spec: &str) -> bool {
    matches!(spec, "arith" | "countdown" | "conciseness" | "random")
}
