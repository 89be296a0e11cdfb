//! The KL(base‖current) probe: the finest drift signal.
//!
//! Once, on θ0: each probe prompt gets a continuation of up to `tokens` tokens from the base model
//! (seeded sampling at temperature 1, as the reference's probe, or greedy), and the base model's
//! full log-distribution at every continuation position is kept in memory
//! (`prompts × tokens × V` f32: 16 × 32 × 49,152 × 4 B ≈ 100 MB for SmolLM2).
//!
//! Then, for any θ: with p = base and q = current next-token distributions at position t,
//!
//!   KL_t = Σ_v p_v (log p_v − log q_v)    (summed in f64),
//!   kl(θ) = (1/|T|) Σ_t KL_t               over all continuation positions of all prompts
//!
//! (token-weighted mean). This is exact per position, not the reference's one-sample Monte-Carlo
//! estimate log p(x_t) − log q(x_t); both have the same expectation.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::generate::generate;
use crate::model::score::log_distributions;
use crate::model::Weights;
use crate::model::{GenerateOptions, Model, Sampling};
use crate::tokenizer::Prompt;

/// Per-position KL(p‖q) from two log-softmax rows: Σ_v exp(lp_v)·(lp_v − lq_v), in f64. Terms with
/// p_v = 0 contribute 0.
pub fn kl_row(log_p: &[f32], log_q: &[f32]) -> f64 {
    log_p
        .iter()
        .zip(log_q)
        .map(|(&lp, &lq)| {
            let p = (lp as f64).exp();
            if p == 0.0 {
                0.0
            } else {
                p * (lp as f64 - lq as f64)
            }
        })
        .sum()
}

/// What the base model produced for the probe prompts.
struct Base {
    /// (prompt ids, continuation ids) of every prompt with a non-empty continuation.
    pairs: Vec<(Vec<u32>, Vec<u32>)>,
    /// Base log-distributions: `[pair][position][V]`.
    dists: Vec<Vec<Vec<f32>>>,
}

pub struct KlProbe {
    name: String,
    prompts: Vec<Prompt>,
    tokens: usize,
    sampling: Sampling,
    base: Option<Base>,
}

/// The result of one probe evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct KlStats {
    /// Token-weighted mean KL(base‖current) in nats per token.
    pub kl: f64,
    /// Largest per-prompt mean KL.
    pub max_prompt_kl: f64,
    /// Continuation positions averaged over.
    pub tokens: usize,
}

impl KlProbe {
    /// A probe over `prompts`; `sample` draws base continuations at temperature 1 with `seed`,
    /// otherwise greedily.
    pub fn new(name: &str, prompts: Vec<Prompt>, tokens: usize, sample: bool, seed: u64) -> Result<KlProbe> {
        if prompts.is_empty() || tokens == 0 {
            return Err(Error::Task {
                task: name.into(),
                problem: format!(
                    "KL probe needs prompts and tokens > 0 (got {} prompts, {tokens} tokens)",
                    prompts.len()
                ),
            });
        }
        let sampling = if sample { Sampling::Sample { temperature: 1.0, top_p: 1.0, seed } } else { Sampling::Greedy };
        Ok(KlProbe { name: name.to_string(), prompts, tokens, sampling, base: None })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_prepared(&self) -> bool {
        self.base.is_some()
    }

    /// Samples the continuations from the base weights `theta0` and caches their
    /// log-distributions. Must run once before [`KlProbe::kl`].
    pub fn prepare(&mut self, model: &Model, theta0: &dyn Weights) -> Result<()> {
        let prompt_ids: Vec<Vec<u32>> =
            self.prompts.iter().map(|p| model.encode_prompt(p, "")).collect::<Result<_>>()?;
        let opts = GenerateOptions {
            max_new_tokens: self.tokens,
            sampling: self.sampling.clone(),
            stop_tokens: model.tokenizer.stop_tokens.clone(),
        };
        let conts = generate(&model.llama, theta0, &prompt_ids, &opts)?;
        let pairs: Vec<(Vec<u32>, Vec<u32>)> =
            prompt_ids.into_iter().zip(conts).filter(|(_, c)| !c.is_empty()).collect();
        if pairs.is_empty() {
            return Err(Error::Task {
                task: self.name.clone(),
                problem: "the base model stopped at once on every probe prompt; no tokens to compare".into(),
            });
        }
        let dists = log_distributions(&model.llama, theta0, &pairs)?;
        self.base = Some(Base { pairs, dists });
        Ok(())
    }

    /// KL(base‖current) of `params` on the cached continuations.
    pub fn kl(&self, model: &Model, params: &dyn Weights) -> Result<KlStats> {
        Ok(kl_from_pairs(&self.pair_kls(model, params, 0..self.pairs())?))
    }

    /// Number of cached continuations (0 before [`KlProbe::prepare`]).
    pub fn pairs(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.pairs.len())
    }

    /// Per-continuation KL of `params` on the cached continuations `range` (the probe's work can be
    /// split by continuation: a continuation's rows do not depend on the rest of the batch).
    pub fn pair_kls(&self, model: &Model, params: &dyn Weights, range: Range<usize>) -> Result<Vec<PairKl>> {
        let base = self.base.as_ref().ok_or_else(|| Error::Task {
            task: self.name.clone(),
            problem: "KL probe not prepared: call PriorTask::prepare with θ0 before evaluating".into(),
        })?;
        if range.end > base.pairs.len() || range.start > range.end {
            return Err(Error::Task {
                task: self.name.clone(),
                problem: format!("continuations {range:?} asked of {}", base.pairs.len()),
            });
        }
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let current = log_distributions(&model.llama, params, &base.pairs[range.clone()])?;
        pair_kls(&self.name, &base.dists[range], &current)
    }
}

/// One continuation's KL: `sum` = Σ_t KL_t over its `tokens` positions (rows summed in order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairKl {
    pub sum: f64,
    pub tokens: usize,
}

/// Per-continuation KL from base and current log-distributions (`[pair][position][V]`). Each row's
/// sum runs in order on one thread and rows are added in index order, so the result does not
/// depend on the thread count.
pub fn pair_kls(name: &str, base: &[Vec<Vec<f32>>], current: &[Vec<Vec<f32>>]) -> Result<Vec<PairKl>> {
    let shape_err = |what: String| Error::Task { task: name.into(), problem: format!("KL probe: {what}") };
    if base.len() != current.len() {
        return Err(shape_err(format!("{} current sequences for {} base ones", current.len(), base.len())));
    }
    let mut out = Vec::with_capacity(base.len());
    for (i, (b, c)) in base.iter().zip(current).enumerate() {
        if b.len() != c.len() || b.iter().zip(c).any(|(x, y)| x.len() != y.len()) {
            return Err(shape_err(format!("sequence {i}: current distributions do not match the base ones in shape")));
        }
        let rows: Vec<f64> = b.par_iter().zip(c.par_iter()).map(|(p, q)| kl_row(p, q)).collect();
        out.push(PairKl { sum: rows.iter().sum(), tokens: rows.len() });
    }
    Ok(out)
}

/// Token-weighted KL from the per-continuation sums, added in continuation order:
/// kl = Σ sum / Σ tokens, max_prompt_kl = max over continuations of sum / tokens.
pub fn kl_from_pairs(pairs: &[PairKl]) -> KlStats {
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut max_prompt_kl = 0.0f64;
    for p in pairs {
        total += p.sum;
        count += p.tokens;
        max_prompt_kl = max_prompt_kl.max(if p.tokens == 0 { 0.0 } else { p.sum / p.tokens as f64 });
    }
    KlStats { kl: if count == 0 { 0.0 } else { total / count as f64 }, max_prompt_kl, tokens: count }
}

/// Token-weighted KL from base and current log-distributions (`[pair][position][V]`).
pub fn kl_stats(name: &str, base: &[Vec<Vec<f32>>], current: &[Vec<Vec<f32>>]) -> Result<KlStats> {
    Ok(kl_from_pairs(&pair_kls(name, base, current)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_softmax(x: &[f64]) -> Vec<f32> {
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = x.iter().map(|v| (v - m).exp()).sum();
        x.iter().map(|v| (v - m - z.ln()) as f32).collect()
    }

    #[test]
    fn kl_of_identical_is_zero_and_known_value() {
        let p = log_softmax(&[1.0, 2.0, 3.0]);
        assert_eq!(kl_row(&p, &p), 0.0);
        // p = (0.5, 0.5), q = (0.9, 0.1): KL = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5108256
        let p = [0.5f32.ln(), 0.5f32.ln()];
        let q = [0.9f32.ln(), 0.1f32.ln()];
        assert!((kl_row(&p, &q) - 0.510_825_6).abs() < 1e-6);
        let s = kl_stats("t", &[vec![p.to_vec(), p.to_vec()]], &[vec![q.to_vec(), p.to_vec()]]).unwrap();
        assert_eq!(s.tokens, 2);
        assert!((s.kl - 0.255_412_8).abs() < 1e-6);
    }
}
