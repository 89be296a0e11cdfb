//! Batched generation: prefill all prompts, then decode step by step with a per-sequence KV cache.
//!
//! STUB: filled in by the forward work.

use crate::error::Result;
use crate::model::{Llama, Params};

#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Temperature + nucleus sampling, seeded per sequence (deterministic).
    Sample { temperature: f32, top_p: f32, seed: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// A sequence stops after emitting any of these (the stop token is not returned).
    pub stop_tokens: Vec<u32>,
}

/// Generates continuations of every prompt in one batch. Returns the new tokens of each sequence
/// (without the stop token). A prompt's greedy output does not depend on the rest of the batch.
pub fn generate(llama: &Llama, params: &Params, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<Vec<Vec<u32>>> {
    let _ = (llama, params, prompts, opts);
    todo!("forward")
}
