//! Tasks: what the model is asked, and how its answers are rewarded (higher is better).
//!
//! A run has one target task (its reward is the ES fitness) and any number of prior tasks (only
//! evaluated, to watch forgetting). STUB: filled in by the tasks work; the API below is the contract.

use crate::error::Result;
pub mod eval;

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
}

/// Options of the built-in tasks (STUB: the tasks work defines the real fields).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TaskOptions {
    pub seed: u64,
}

/// A target task from a built-in name or a JSONL path (STUB).
pub fn target_task(spec: &str, opts: &TaskOptions) -> Result<Box<dyn Task>> {
    let _ = (spec, opts);
    todo!("tasks")
}

/// True for the names of built-in target tasks (STUB).
pub fn is_target_task(spec: &str) -> bool {
    matches!(spec, "arith" | "countdown" | "conciseness")
}
