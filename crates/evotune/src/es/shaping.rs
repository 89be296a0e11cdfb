//! Fitness shaping: rewards (higher is better) → update coefficients c₁…c_N.
//!
//! - z-score: cₙ = (rₙ − μ)/(s + 1e-8), μ the mean and s the population std (ddof 0), both in f64.
//! - centred rank: cₙ = rankₙ/(N − 1) − ½ ∈ [−½, ½], ranks 0…N−1 ascending, tied rewards share
//!   the mean of their ranks.
//!
//! Non-finite rewards (NaN, ±inf) are an error ([`Error::NonFiniteReward`], the first such member)
//! unless the policy is [`NonFinitePolicy::Worst`], which ranks them strictly below every finite
//! reward and tied with each other:
//! - centred rank: the k non-finite members take ranks 0…k−1 (all k share their mean rank);
//! - z-score: each non-finite reward is replaced by `r_min − (r_max − r_min)` over the finite
//!   rewards, or by `r_min − 1` when those are all equal. Both rules commute with any affine
//!   rescaling of the rewards, so the z-scores do not depend on the reward's units.
//! - If no reward is finite, every coefficient is 0 (the step is skipped).

use crate::error::{Error, Result};

/// Rewards → coefficients: z-scores (the papers') or centred ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shaping {
    Zscore,
    CentredRank,
}

/// What a NaN or infinite reward does: fail the iteration, or rank that member worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonFinitePolicy {
    Error,
    Worst,
}
from_str_by_serde!(Shaping, NonFinitePolicy);

/// Added to the std before dividing (the papers' constant).
pub const ZSCORE_EPS: f64 = 1e-8;

/// Shapes `rewards` into coefficients under `shaping` and `policy`.
pub fn shape(shaping: Shaping, policy: NonFinitePolicy, rewards: &[f32]) -> Result<Vec<f32>> {
    let finite: Vec<bool> = rewards.iter().map(|r| r.is_finite()).collect();
    if let Some(member) = finite.iter().position(|&f| !f) {
        if policy == NonFinitePolicy::Error {
            return Err(Error::NonFiniteReward { member, value: rewards[member] });
        }
    }
    if !finite.iter().any(|&f| f) {
        return Ok(vec![0.0; rewards.len()]);
    }
    Ok(match shaping {
        Shaping::Zscore => zscore(&with_worst_substituted(rewards)),
        Shaping::CentredRank => centred_rank(rewards),
    })
}

/// Rewards as f64, non-finite ones replaced by the "worst" value (see the module doc).
fn with_worst_substituted(rewards: &[f32]) -> Vec<f64> {
    let fin = rewards.iter().filter(|r| r.is_finite()).map(|&r| r as f64);
    let (lo, hi) = fin.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let range = hi - lo;
    let worst = if range > 0.0 { lo - range } else { lo - 1.0 };
    rewards.iter().map(|&r| if r.is_finite() { r as f64 } else { worst }).collect()
}

/// z-scores: (r − mean)/(std + 1e-8), population std (ddof 0); all-equal rewards give zeros.
pub fn zscore(rewards: &[f64]) -> Vec<f32> {
    let n = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let var = rewards.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n;
    let denom = var.sqrt() + ZSCORE_EPS;
    rewards.iter().map(|r| ((r - mean) / denom) as f32).collect()
}

/// Centred ranks in [−½, ½]; non-finite rewards rank below all finite ones, tied together.
pub fn centred_rank(rewards: &[f32]) -> Vec<f32> {
    let n = rewards.len();
    if n < 2 {
        return vec![0.0; n];
    }
    // Sort key: non-finite first (tied), then finite ascending.
    let key = |r: f32| if r.is_finite() { (1u8, r) } else { (0u8, 0.0) };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(rewards[a]).partial_cmp(&key(rewards[b])).expect("keys are finite"));
    let mut ranks = vec![0.0f64; n];
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && key(rewards[order[end]]) == key(rewards[order[start]]) {
            end += 1;
        }
        let mean_rank = (start + end - 1) as f64 / 2.0; // ties share the mean of ranks start..end-1
        for &i in &order[start..end] {
            ranks[i] = mean_rank;
        }
        start = end;
    }
    ranks.iter().map(|&r| (r / (n - 1) as f64 - 0.5) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const Z: Shaping = Shaping::Zscore;
    const R: Shaping = Shaping::CentredRank;
    const ERR: NonFinitePolicy = NonFinitePolicy::Error;
    const WORST: NonFinitePolicy = NonFinitePolicy::Worst;

    use std::f64::consts::{FRAC_1_SQRT_2 as H, SQRT_2 as S};

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn zscore_by_hand() {
        // r = [1, 2, 3]: mean 2, population std √(2/3) = 0.816497 → z = ∓1.224745, 0.
        let z = shape(Z, ERR, &[1.0, 2.0, 3.0]).unwrap();
        close(&z, &[-1.224_744_87, 0.0, 1.224_744_87]);
        // r = [0, 0, 3]: mean 1, std √2 → z = −1/√2, −1/√2, √2.
        let z = shape(Z, ERR, &[0.0, 0.0, 3.0]).unwrap();
        close(&z, &[-H, -H, S]);
    }

    #[test]
    fn centred_rank_by_hand() {
        close(&shape(R, ERR, &[10.0, -3.0, 7.0]).unwrap(), &[0.5, -0.5, 0.0]);
        // Ties: [1, 1, 5, 0] → ranks 1.5, 1.5, 3, 0 → /3 − ½.
        close(&shape(R, ERR, &[1.0, 1.0, 5.0, 0.0]).unwrap(), &[0.0, 0.0, 0.5, -0.5]);
    }

    #[test]
    fn all_equal_gives_zeros() {
        assert_eq!(shape(Z, ERR, &[0.3; 5]).unwrap(), vec![0.0; 5]);
        assert_eq!(shape(R, ERR, &[0.3; 5]).unwrap(), vec![0.0; 5]);
    }

    #[test]
    fn nan_is_an_error_by_default() {
        match shape(Z, ERR, &[1.0, f32::NAN, 2.0]) {
            Err(Error::NonFiniteReward { member: 1, .. }) => {}
            other => panic!("expected NonFiniteReward for member 1, got {other:?}"),
        }
        assert!(shape(R, ERR, &[f32::INFINITY, 1.0]).is_err());
    }

    #[test]
    fn nan_ranks_worst_when_asked() {
        // Ranks: NaN 0, 1.0 → 1, 2.0 → 2: centred −½, 0, ½.
        close(&shape(R, WORST, &[1.0, f32::NAN, 2.0]).unwrap(), &[0.0, -0.5, 0.5]);
        // z-score: NaN → 1 − (2 − 1) = 0, so the shaped vector is z([1, 0, 2]) = [0, −1.2247, 1.2247].
        close(&shape(Z, WORST, &[1.0, f32::NAN, 2.0]).unwrap(), &[0.0, -1.224_744_87, 1.224_744_87]);
        // +inf is a failure too, and two non-finite members tie: ranks 0.5, 0.5, 2 → /2 − ½.
        close(&shape(R, WORST, &[f32::INFINITY, 4.0, f32::NAN]).unwrap(), &[-0.25, 0.5, -0.25]);
        // All finite rewards equal: NaN → r − 1; z([3, 3, 2]) = [1/√2, 1/√2, −√2].
        close(&shape(Z, WORST, &[3.0, 3.0, f32::NAN]).unwrap(), &[H, H, -S]);
    }

    #[test]
    fn all_nan_gives_zeros() {
        assert_eq!(shape(Z, WORST, &[f32::NAN; 3]).unwrap(), vec![0.0; 3]);
        assert_eq!(shape(R, WORST, &[f32::NAN; 3]).unwrap(), vec![0.0; 3]);
    }

    proptest! {
        #[test]
        fn zscores_have_mean_zero_and_unit_std(r in prop::collection::vec(-1e3f32..1e3, 2..64)) {
            let lo = r.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            prop_assume!(hi - lo > 1e-2);
            let z = shape(Z, ERR, &r).unwrap();
            let n = z.len() as f64;
            let mean = z.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = z.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            prop_assert!(mean.abs() < 1e-5);
            prop_assert!((var.sqrt() - 1.0).abs() < 1e-4);
        }

        #[test]
        fn centred_ranks_are_invariant_to_monotone_transforms(r in prop::collection::vec(-10f32..10.0, 2..40)) {
            let t: Vec<f32> = r.iter().map(|&x| (x as f64 * 0.5).exp() as f32 * 3.0 - 7.0).collect();
            // exp is strictly increasing; f32 rounding could merge two distinct values, so compare
            // only when the transform kept every pair ordered the same way.
            let same_order = r.iter().zip(&t).all(|(a, ta)| r.iter().zip(&t).all(|(b, tb)| a.partial_cmp(b) == ta.partial_cmp(tb)));
            prop_assume!(same_order);
            prop_assert_eq!(shape(R, ERR, &r).unwrap(), shape(R, ERR, &t).unwrap());
        }
    }
}
