//! Log-likelihood of given continuations after given prompts (teacher forcing, one batched forward).
//!
//! For a pair (prompt p, continuation c) of lengths P and C, the model reads p ++ c[..C−1] and the
//! logits at the last C positions predict c₀ … c_{C−1}:
//!   log p(cᵢ | p, c<ᵢ) = zᵢ[cᵢ] − log Σᵥ exp zᵢ[v],   zᵢ = logits at position P − 1 + i.
//! The lm_head runs only on those C positions of each pair.

use crate::error::{Error, Result};
use crate::model::kv_cache::KvCache;
use crate::model::llama::{Logits, SeqInput};
use crate::model::{Llama, Params};

/// Runs the teacher-forced forward of every pair with a non-empty continuation. Returns the logits
/// and, per pair, its sequence index in them (`None` for an empty continuation).
fn forward_pairs(
    llama: &Llama,
    params: &Params,
    pairs: &[(Vec<u32>, Vec<u32>)],
) -> Result<(Logits, Vec<Option<usize>>)> {
    let max = llama.config.context;
    let mut inputs: Vec<Vec<u32>> = Vec::new();
    let mut index = Vec::with_capacity(pairs.len());
    for (i, (p, c)) in pairs.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::EmptyPrompt { index: i });
        }
        if c.is_empty() {
            index.push(None);
            continue;
        }
        // The last continuation token is only looked up in the logits, never fed: check it here.
        let vocab = llama.config.vocab;
        if let Some(&t) = c.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { index: i, token: t, vocab });
        }
        let len = p.len() + c.len() - 1;
        if len > max {
            return Err(Error::ContextOverflow { index: i, len, max });
        }
        index.push(Some(inputs.len()));
        let mut t = p.clone();
        t.extend_from_slice(&c[..c.len() - 1]);
        inputs.push(t);
    }
    let mut caches: Vec<KvCache> = inputs.iter().map(|_| llama.new_cache()).collect();
    let mut seqs: Vec<SeqInput> = Vec::with_capacity(inputs.len());
    let mut ci = pairs.iter().filter(|(_, c)| !c.is_empty()).map(|(_, c)| c.len());
    for (t, cache) in inputs.iter().zip(caches.iter_mut()) {
        let n = ci.next().expect("one continuation length per input");
        seqs.push(SeqInput { tokens: t, cache, logits: n });
    }
    // A forward error names the position in `inputs`; map it back to the pair index.
    let logits = llama.forward(params, &mut seqs).map_err(|e| remap_index(e, &index))?;
    Ok((logits, index))
}

fn remap_index(e: Error, index: &[Option<usize>]) -> Error {
    let pair = |s: usize| index.iter().position(|&x| x == Some(s)).unwrap_or(s);
    match e {
        Error::TokenOutOfRange { index: s, token, vocab } => Error::TokenOutOfRange { index: pair(s), token, vocab },
        Error::ContextOverflow { index: s, len, max } => Error::ContextOverflow { index: pair(s), len, max },
        other => other,
    }
}

/// log Σᵥ exp z[v], with the max subtracted for stability and the sum in f64 (fixed order).
fn log_sum_exp(z: &[f32]) -> f32 {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    let s: f64 = z.iter().map(|&x| ((x - m) as f64).exp()).sum();
    m + s.ln() as f32
}

/// For each (prompt, continuation) pair, log p(continuation token | everything before) for every
/// continuation token, in nats. An empty continuation gives an empty vector.
pub fn score(llama: &Llama, params: &Params, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
    let (logits, index) = forward_pairs(llama, params, pairs)?;
    Ok(pairs
        .iter()
        .zip(&index)
        .map(|((_, c), idx)| match *idx {
            None => Vec::new(),
            Some(s) => c
                .iter()
                .enumerate()
                .map(|(i, &tok)| {
                    let z = logits.row(s, i);
                    z[tok as usize] - log_sum_exp(z)
                })
                .collect(),
        })
        .collect())
}

/// Like [`score`] but returns the full log-softmax row (length V) at every continuation position:
/// the input of the KL(base‖current) probe.
pub fn log_distributions(llama: &Llama, params: &Params, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<Vec<f32>>>> {
    let (logits, index) = forward_pairs(llama, params, pairs)?;
    Ok(pairs
        .iter()
        .zip(&index)
        .map(|((_, c), idx)| match *idx {
            None => Vec::new(),
            Some(s) => (0..c.len())
                .map(|i| {
                    let z = logits.row(s, i);
                    let lse = log_sum_exp(z);
                    z.iter().map(|&x| x - lse).collect()
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        let z = [1000.0f32, 1000.0];
        assert!((log_sum_exp(&z) - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert!((log_sum_exp(&[0.0, 0.0, 0.0, 0.0]) - 4f32.ln()).abs() < 1e-6);
    }
}
