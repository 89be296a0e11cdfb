//! `random`: a target whose rewards are independent of the noise and of the model — the drift
//! probe of the papers' random-walk argument (reference/papers.md §7).
//!
//! Member n of iteration t gets r = u(seed, t, n) ∈ [0, 1), a SplitMix64 hash of the task seed,
//! the iteration and the member index. The model is never run: the training loop asks
//! [`Task::reward_without_model`] first and skips perturbing and generating, so an iteration costs
//! only the update (N noise passes) and the drift measurement.
//!
//! Because the z-scored rewards satisfy Σ zₙ² = N and are independent of ε, the per-element step
//! (α/N) Σ zₙ εₙ is exactly N(0, α²/N): ‖θ_T − θ0‖² has mean α²dT/N without AWD, and with AWD-l2
//! (ρ = 1 − αλ, applied after the step) ρ²(α²d/N)(1 − ρ^{2T})/(1 − ρ²) ≈ αd/(2λN) at stationarity.
//!
//! The task has no items: its test score is NaN (nothing to answer), and it cannot be a prior.

use crate::error::Result;
use crate::tasks::rng::mix64;
use crate::tasks::{Item, Reward, Task, TaskOptions};

/// The `random` target task.
pub struct RandomReward {
    seed: u64,
}

impl RandomReward {
    pub fn new(opts: &TaskOptions) -> RandomReward {
        RandomReward { seed: opts.seed }
    }

    /// u(seed, t, n) ∈ [0, 1): 24 bits of mix64(mix64(mix64(seed) ^ t) ^ n), exact in f32.
    pub fn reward(&self, iteration: u64, member: usize) -> f32 {
        let h = mix64(mix64(mix64(self.seed ^ 0x7261_6e64_6f6d) ^ iteration) ^ member as u64);
        (h >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl Task for RandomReward {
    fn name(&self) -> &str {
        "random"
    }
    fn max_new_tokens(&self) -> usize {
        0
    }
    fn train(&self) -> &[Item] {
        &[]
    }
    fn test(&self) -> &[Item] {
        &[]
    }
    fn rewards(&self, items: &[&Item], _completions: &[String]) -> Result<Vec<Reward>> {
        // No items exist, so nothing can be asked; an empty batch gets an empty answer.
        Ok(items.iter().map(|_| Reward { value: 0.0, correct: false }).collect())
    }
    fn reward_without_model(&self, iteration: u64, member: usize) -> Option<f32> {
        Some(self.reward(iteration, member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_are_seeded_uniform_and_vary_with_every_key_part() {
        let a = RandomReward::new(&TaskOptions::default());
        let b = RandomReward::new(&TaskOptions { seed: 1, ..Default::default() });
        assert_eq!(a.reward(3, 5), a.reward(3, 5));
        assert_ne!(a.reward(3, 5), a.reward(4, 5));
        assert_ne!(a.reward(3, 5), a.reward(3, 6));
        assert_ne!(a.reward(3, 5), b.reward(3, 5));
        // Mean and variance of 20,000 draws against U(0, 1): 1/2 and 1/12 (4σ bands).
        let xs: Vec<f64> =
            (0..2000u64).flat_map(|t| (0..10).map(move |n| (t, n))).map(|(t, n)| a.reward(t, n) as f64).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert!((mean - 0.5).abs() < 4.0 * (1.0f64 / 12.0 / n).sqrt(), "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.004, "variance {var}");
    }
}
