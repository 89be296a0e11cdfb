//! Log-likelihood of given continuations after given prompts (teacher forcing, batched forwards).
//!
//! For a pair (prompt p, continuation c) of lengths P and C, the model reads p ++ c[..C−1] and the
//! logits at the last C positions predict c₀ … c_{C−1}:
//!   log p(cᵢ | p, c<ᵢ) = zᵢ[cᵢ] − log Σᵥ exp zᵢ[v],   zᵢ = logits at position P − 1 + i.
//! The lm_head runs only on those C positions of each pair.
//!
//! Work is shared the way multiple-choice suites need it: the prefix common to all prompts (the
//! chat template's system prompt) is computed once, each distinct prompt once (all choices of a
//! question share it), and each pair then reads only its continuation. A cached prefix equals a
//! recomputed one bit for bit and rows do not depend on the batch, so the numbers are those of one
//! plain forward per pair.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::generate::shared_prefix_len;
use crate::model::kv_cache::KvCache;
use crate::model::llama::{Logits, SeqInput};
use crate::model::Llama;
use crate::model::Weights;

/// Teacher-forced logits of a batch of pairs: row 0 of a pair comes from its prompt's last position,
/// rows 1.. from its continuation.
struct PairLogits {
    /// One row per distinct prompt (its last position).
    prompts: Logits,
    /// C − 1 rows per pair with C ≥ 2.
    continuations: Logits,
    /// Per pair: `None` for an empty continuation, else (distinct prompt, continuation sequence).
    index: Vec<Option<(usize, Option<usize>)>>,
}

impl PairLogits {
    /// Logits predicting continuation token `i` of `pair`.
    fn row(&self, pair: usize, i: usize) -> &[f32] {
        let (p, c) = self.index[pair].expect("a pair with a continuation");
        match (i, c) {
            (0, _) => self.prompts.row(p, 0),
            (_, Some(c)) => self.continuations.row(c, i - 1),
            (_, None) => unreachable!("a one-token continuation has a single row"),
        }
    }
}

/// Runs the teacher-forced forward of every pair with a non-empty continuation (inputs are checked
/// up front, so every error names the pair).
fn forward_pairs(llama: &Llama, params: &dyn Weights, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<PairLogits> {
    let (max, vocab) = (llama.config.context, llama.config.vocab);
    let mut distinct: Vec<Vec<u32>> = Vec::new();
    let mut seen: HashMap<&[u32], usize> = HashMap::new();
    let mut prompt_of = Vec::with_capacity(pairs.len());
    for (i, (p, c)) in pairs.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::EmptyPrompt { index: i });
        }
        if c.is_empty() {
            prompt_of.push(None);
            continue;
        }
        if let Some(&t) = p.iter().chain(c).find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { index: i, token: t, vocab });
        }
        let len = p.len() + c.len() - 1;
        if len > max {
            return Err(Error::ContextOverflow { index: i, len, max });
        }
        let at = *seen.entry(p.as_slice()).or_insert_with(|| {
            distinct.push(p.clone());
            distinct.len() - 1
        });
        prompt_of.push(Some(at));
    }

    // 1. The prefix common to all distinct prompts, once.
    let shared = shared_prefix_len(&distinct);
    let mut prefix = KvCache::with_capacity(&llama.config, shared);
    if shared > 0 {
        llama.forward(params, &mut [SeqInput { tokens: &distinct[0][..shared], cache: &mut prefix, logits: 0 }])?;
    }
    // 2. Each distinct prompt once, logits at its last position.
    // (Each continuation forks its own copy with room for itself, so these hold only the prompt.)
    let prefix = Arc::new(prefix);
    let mut prompt_caches: Vec<KvCache> = distinct.iter().map(|p| KvCache::after(&prefix, p.len())).collect();
    let prompts = {
        let mut seqs: Vec<SeqInput> = distinct
            .iter()
            .zip(prompt_caches.iter_mut())
            .map(|(p, cache)| SeqInput { tokens: &p[shared..], cache, logits: 1 })
            .collect();
        forward_some(llama, params, &mut seqs)?
    };
    // 3. Each continuation after its prompt's cache, logits at every position it feeds.
    let mut index = Vec::with_capacity(pairs.len());
    let mut fed: Vec<(usize, usize)> = Vec::new(); // (pair, distinct prompt) of each continuation sequence
    for (i, ((_, c), p)) in pairs.iter().zip(&prompt_of).enumerate() {
        index.push(p.map(|p| {
            if c.len() >= 2 {
                fed.push((i, p));
                (p, Some(fed.len() - 1))
            } else {
                (p, None)
            }
        }));
    }
    let mut caches: Vec<KvCache> =
        fed.iter().map(|&(i, p)| prompt_caches[p].fork(pairs[i].0.len() + pairs[i].1.len() - 1)).collect();
    drop(prompt_caches);
    let continuations = {
        let mut seqs: Vec<SeqInput> = fed
            .iter()
            .zip(caches.iter_mut())
            .map(|(&(i, _), cache)| {
                let c = &pairs[i].1;
                SeqInput { tokens: &c[..c.len() - 1], cache, logits: c.len() - 1 }
            })
            .collect();
        forward_some(llama, params, &mut seqs)?
    };
    Ok(PairLogits { prompts, continuations, index })
}

/// The forward of `seqs`; no rows for an empty batch.
fn forward_some(llama: &Llama, params: &dyn Weights, seqs: &mut [SeqInput]) -> Result<Logits> {
    if seqs.is_empty() {
        return Ok(Logits { data: Vec::new(), vocab: llama.config.vocab, starts: vec![0] });
    }
    llama.forward(params, seqs)
}

/// log Σᵥ exp z[v], with the max subtracted for stability and the sum in f64 (fixed order);
/// `None` when a logit is NaN or infinite (checked in the pass that finds the max).
fn log_sum_exp(z: &[f32]) -> Option<f32> {
    let mut m = f32::NEG_INFINITY;
    let mut finite = true;
    for &x in z {
        finite &= x.is_finite();
        m = m.max(x);
    }
    if !finite {
        return None;
    }
    if m == f32::NEG_INFINITY {
        return Some(m);
    }
    let s: f64 = z.iter().map(|&x| ((x - m) as f64).exp()).sum();
    Some(m + s.ln() as f32)
}

/// For each (prompt, continuation) pair, log p(continuation token | everything before) for every
/// continuation token, in nats. An empty continuation gives an empty vector. Logits that are NaN or
/// infinite are an error ([`Error::NonFiniteLogits`] with the pair as `sequence` and the
/// continuation token as `step`), never a NaN score.
pub fn score(llama: &Llama, params: &dyn Weights, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
    let logits = forward_pairs(llama, params, pairs)?;
    pairs
        .iter()
        .enumerate()
        .map(|(s, (_, c))| match logits.index[s] {
            None => Ok(Vec::new()),
            Some(_) => c
                .iter()
                .enumerate()
                .map(|(i, &tok)| {
                    let z = logits.row(s, i);
                    let lse = log_sum_exp(z).ok_or(Error::NonFiniteLogits { step: i, sequence: s })?;
                    Ok(z[tok as usize] - lse)
                })
                .collect(),
        })
        .collect()
}

/// Like [`score`] but returns the full log-softmax row (length V) at every continuation position:
/// the input of the KL(base‖current) probe. Non-finite logits are an error, as in [`score`].
pub fn log_distributions(
    llama: &Llama,
    params: &dyn Weights,
    pairs: &[(Vec<u32>, Vec<u32>)],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let logits = forward_pairs(llama, params, pairs)?;
    pairs
        .iter()
        .enumerate()
        .map(|(s, (_, c))| match logits.index[s] {
            None => Ok(Vec::new()),
            Some(_) => (0..c.len())
                .map(|i| {
                    let z = logits.row(s, i);
                    let lse = log_sum_exp(z).ok_or(Error::NonFiniteLogits { step: i, sequence: s })?;
                    Ok(z.iter().map(|&x| x - lse).collect())
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        let z = [1000.0f32, 1000.0];
        assert!((log_sum_exp(&z).unwrap() - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert!((log_sum_exp(&[0.0, 0.0, 0.0, 0.0]).unwrap() - 4f32.ln()).abs() < 1e-6);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(log_sum_exp(&[0.0, bad, 1.0]), None);
        }
    }
}
