//! GRPO (Shao et al. 2024, DeepSeekMath §4.1): the objective and its gradient with respect to each
//! sampled token's log-probability. The gradient through the model is [`crate::model::backprop`]'s.
//!
//! For a prompt, G completions oᵢ with rewards rᵢ; advantages Âᵢ = (rᵢ − mean r)/(std r + ε)
//! (the group's sample std, as TRL computes it). Per token t of oᵢ, with ρ = π_θ/π_old:
//! ```text
//! ℓ_t = −min(ρ·Â, clip(ρ, 1 − ε_c, 1 + ε_c)·Â) + β·k3,   k3 = e^(ref − logp) − (ref − logp) − 1
//! L   = (1/Σ_groups G) Σᵢ (1/|oᵢ|) Σ_t ℓ_t                  (per-sequence mean, then the batch mean)
//! ∂ℓ_t/∂logp = −ρ·Â (0 where the clip is active) + β·(1 − e^(ref − logp))
//! ```
//! k3 is the unbiased, non-negative KL(π_θ‖π_ref) estimator of DeepSeekMath and TRL; π_old is the
//! policy that sampled (ρ = 1 on the first update of a batch, so the clip only acts from the second
//! of `updates` passes).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The ε of the advantage's denominator (TRL's).
pub const ADVANTAGE_EPS: f64 = 1e-4;

/// GRPO's settings (`[grpo]` in a run's config; each is also a `train` flag).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoParams {
    /// G, completions sampled per prompt.
    pub group: usize,
    /// Sampling temperature; the policy's log-probabilities are those of logits / temperature.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// AdamW learning rate.
    pub lr: f32,
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_eps: f32,
    pub weight_decay: f32,
    /// Clip of the gradient's global norm (0 = none).
    pub grad_clip: f32,
    /// β of the KL penalty toward the base model (0 = no reference pass).
    pub kl_beta: f32,
    /// ε_c of the ratio clip.
    pub clip_eps: f32,
    /// Sequences per forward/backward pass: bounds the activations kept for the backward.
    pub micro_batch: usize,
    /// Optimiser steps on each sampled batch (μ).
    pub updates: usize,
}

impl Default for GrpoParams {
    /// Defaults that learn on the default model (SmolLM2-135M-Instruct, `arith`: 7.5% → 18% in 6
    /// steps of 8 prompts; at temperature 1 its samples earn no reward at all, so no advantage);
    /// the rest are TRL's and DeepSeekMath's (β = 0.04, ε_c = 0.2, AdamW's betas).
    fn default() -> Self {
        GrpoParams {
            group: 4,
            temperature: 0.7,
            top_p: 1.0,
            lr: 1e-5,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
            kl_beta: 0.04,
            clip_eps: 0.2,
            micro_batch: 8,
            updates: 1,
        }
    }
}

impl GrpoParams {
    /// An error naming the first setting out of range.
    pub fn check(&self) -> Result<()> {
        let bad = |field, problem: String| Err(Error::EsConfig { field, problem });
        if self.group < 2 {
            return bad("grpo.group", format!("{}: advantages need at least 2 completions per prompt", self.group));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("grpo.temperature", format!("{} (must be > 0: GRPO samples)", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("grpo.top_p", format!("{} (must be in (0, 1])", self.top_p));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("grpo.lr", format!("{} (must be > 0)", self.lr));
        }
        for (field, b) in [("grpo.adam_beta1", self.adam_beta1), ("grpo.adam_beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(field, format!("{b} (must be in [0, 1))"));
            }
        }
        for (field, x) in [
            ("grpo.adam_eps", self.adam_eps),
            ("grpo.weight_decay", self.weight_decay),
            ("grpo.grad_clip", self.grad_clip),
            ("grpo.kl_beta", self.kl_beta),
            ("grpo.clip_eps", self.clip_eps),
        ] {
            if !(x >= 0.0 && x.is_finite()) {
                return bad(field, format!("{x} (must be ≥ 0)"));
            }
        }
        if self.micro_batch == 0 || self.updates == 0 {
            return bad("grpo.micro_batch/updates", "must be ≥ 1".into());
        }
        Ok(())
    }

    /// The optimiser's settings.
    pub fn adamw(&self) -> super::adamw::AdamWParams {
        super::adamw::AdamWParams {
            lr: self.lr,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
            grad_clip: self.grad_clip,
        }
    }
}

/// Âᵢ = (rᵢ − mean)/(std + ε) within each consecutive group of `group` rewards (sample std; sums
/// in f64, in order).
pub fn advantages(rewards: &[f32], group: usize) -> Vec<f32> {
    assert!(group >= 2 && rewards.len().is_multiple_of(group), "rewards come in whole groups");
    rewards
        .chunks(group)
        .flat_map(|g| {
            let n = g.len() as f64;
            let mean = g.iter().map(|&r| r as f64).sum::<f64>() / n;
            let var = g.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let std = var.sqrt();
            g.iter().map(move |&r| ((r as f64 - mean) / (std + ADVANTAGE_EPS)) as f32)
        })
        .collect()
}

/// The objective of one completion's tokens: its gradient coefficients and what it adds to the
/// step's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenObjective {
    /// ∂L/∂logp of each token (the weight 1/(|o|·n_seq) included).
    pub coef: Vec<f32>,
    /// This completion's share of L.
    pub loss: f64,
    /// Σ k3 over its tokens (unweighted), and the tokens whose ratio was clipped.
    pub kl_sum: f64,
    pub clipped: usize,
}

impl TokenObjective {
    /// The objective of one completion: `logp`, `old` and `reference` (None when β = 0) are its
    /// tokens' log-probabilities under π_θ, π_old and π_ref; `weight` is 1/(|o|·n_seq).
    pub fn new(
        logp: &[f32],
        old: &[f32],
        reference: Option<&[f32]>,
        advantage: f32,
        weight: f64,
        p: &GrpoParams,
    ) -> Self {
        let (a, beta, eps) = (advantage as f64, p.kl_beta as f64, p.clip_eps as f64);
        let mut out = TokenObjective { coef: Vec::with_capacity(logp.len()), ..Default::default() };
        for (t, (&lp, &lo)) in logp.iter().zip(old).enumerate() {
            let (lp, lo) = (lp as f64, lo as f64);
            let rho = (lp - lo).exp();
            let clipped = (a >= 0.0 && rho > 1.0 + eps) || (a < 0.0 && rho < 1.0 - eps);
            let surrogate = (rho * a).min(rho.clamp(1.0 - eps, 1.0 + eps) * a);
            let mut grad = if clipped { 0.0 } else { -rho * a };
            let mut loss = -surrogate;
            if let Some(r) = reference {
                let diff = r[t] as f64 - lp;
                let k3 = diff.exp() - diff - 1.0;
                out.kl_sum += k3;
                loss += beta * k3;
                grad += beta * (1.0 - diff.exp());
            }
            out.clipped += usize::from(clipped);
            out.loss += weight * loss;
            out.coef.push((weight * grad) as f32);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_normalised_per_group() {
        let a = advantages(&[1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5], 4);
        // Group 1: mean 0.5, sample std √(1/3).
        let s = (1.0f64 / 3.0).sqrt();
        assert!((a[0] as f64 - 0.5 / (s + ADVANTAGE_EPS)).abs() < 1e-6);
        assert_eq!(a[0], -a[1]);
        // A group with equal rewards has no advantage.
        assert_eq!(&a[4..], &[0.0; 4]);
    }

    /// The coefficient is the derivative of the loss: finite differences in logp.
    #[test]
    fn coefficients_are_the_loss_gradient() {
        let p = GrpoParams { kl_beta: 0.1, clip_eps: 0.2, ..Default::default() };
        let old = [-1.0f32, -2.0, -0.5, -3.0];
        let reference = [-1.2f32, -1.5, -0.4, -2.0];
        for adv in [1.3f32, -0.7] {
            // Ratios e^0.1 (inside), e^0.5 (above 1.2), e^−0.5 (below 0.8), 1.
            let logp = [-0.9f32, -1.5, -1.0, -3.0];
            let obj = TokenObjective::new(&logp, &old, Some(&reference), adv, 0.25, &p);
            for t in 0..4 {
                let h = 1e-3f32;
                let at = |x: f32| {
                    let mut l = logp;
                    l[t] = x;
                    TokenObjective::new(&l, &old, Some(&reference), adv, 0.25, &p).loss
                };
                let fd = (at(logp[t] + h) - at(logp[t] - h)) / (2.0 * h as f64);
                assert!((fd - obj.coef[t] as f64).abs() < 1e-3, "adv {adv}, token {t}: {fd} vs {}", obj.coef[t]);
            }
            // Positive advantage: only the ratio above 1 + ε is clipped; negative: only below 1 − ε.
            assert_eq!(obj.clipped, 1);
        }
        // At the first update (π_old = π_θ) the coefficient is −Â·weight + β·(1 − e^(ref − logp))·weight.
        let obj = TokenObjective::new(&old, &old, Some(&old), 2.0, 0.5, &p);
        assert_eq!(obj.coef, vec![-1.0; 4]);
        assert_eq!(obj.kl_sum, 0.0);
    }
}
