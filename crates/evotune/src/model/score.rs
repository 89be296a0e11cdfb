//! Log-likelihood of given continuations after given prompts (teacher forcing, one batched forward).
//!
//! STUB: filled in by the forward work.

use crate::error::Result;
use crate::model::{Llama, Params};

/// For each (prompt, continuation) pair, log p(continuation token | everything before) for every
/// continuation token, in nats.
pub fn score(llama: &Llama, params: &Params, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
    let _ = (llama, params, pairs);
    todo!("forward")
}

/// Like [`score`] but returns the full log-softmax row (length V) at every continuation position:
/// the input of the KL(base‖current) probe.
pub fn log_distributions(llama: &Llama, params: &Params, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<Vec<f32>>>> {
    let _ = (llama, params, pairs);
    todo!("forward")
}
