//! Tasks: what the model is asked, and how its answers are rewarded (higher is better).
//!
//! A run has one target task (its reward is the ES fitness) and any number of prior tasks (only
//! evaluated, to watch forgetting). STUB: filled in by the tasks work; the API below is the contract.

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
}
