//! Anchored Weight Decay (paper 1), after the ES step, per element, with δ = θ − θ0:
//!   l2:  δ ← (1 − αλ)·δ                 requires αλ < 1 (checked by [`check`])
//!   l1:  δ ← sign(δ)·max(|δ| − αλ, 0)    proximal soft-threshold: exact zeros, never crosses 0
//! The decay is scaled by the learning rate α (decoupled, as AdamW's lr·wd) and anchored at θ0.
//!
//! In f32, with τ = αλ, the rules are evaluated as
//!   l2:  θ ← θ − τ·(θ − θ0)                          (the paper's θ − αλ·l′(θ − θ0), l′(x) = x)
//!   l1:  θ ← θ0 if |θ − θ0| ≤ τ, else θ − τ·sign(θ − θ0)
//! which equal the δ forms in exact arithmetic, make λ = 0 an exact no-op, put an l1-zeroed
//! element exactly on θ0, and never carry θ across θ0 (rounding is monotone).

use crate::error::{Error, Result};

/// Anchored Weight Decay of a run: the rule and its λ.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Awd {
    None,
    L2 { lambda: f32 },
    L1 { lambda: f32 },
}

/// The kind of [`Awd`], as a config key and flag (`awd = "l2"` with `awd_lambda = 10`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwdKind {
    #[default]
    None,
    L2,
    L1,
}
from_str_by_serde!(AwdKind);

impl AwdKind {
    /// The paper's λ for this kind (Schweighofer et al.): l2 → 10, l1 → 0.01.
    pub fn default_lambda(self) -> f32 {
        match self {
            AwdKind::L2 => 10.0,
            AwdKind::L1 => 0.01,
            AwdKind::None => 0.0,
        }
    }
}

impl Awd {
    /// The decay of `kind` with strength `lambda` (ignored for `none`).
    pub fn new(kind: AwdKind, lambda: f32) -> Self {
        match kind {
            AwdKind::None => Awd::None,
            AwdKind::L2 => Awd::L2 { lambda },
            AwdKind::L1 => Awd::L1 { lambda },
        }
    }

    /// The same rule with strength `lambda` (`none` stays `none`).
    pub fn with_lambda(self, lambda: f32) -> Self {
        match self {
            Awd::None => Awd::None,
            Awd::L2 { .. } => Awd::L2 { lambda },
            Awd::L1 { .. } => Awd::L1 { lambda },
        }
    }
}

/// Validates λ (finite, ≥ 0) and, for l2, αλ < 1.
pub fn check(awd: Awd, alpha: f32) -> Result<()> {
    let lambda = match awd {
        Awd::None => return Ok(()),
        Awd::L2 { lambda } | Awd::L1 { lambda } => lambda,
    };
    if !lambda.is_finite() || lambda < 0.0 {
        return Err(Error::EsConfig { field: "awd_lambda", problem: format!("{lambda} is not a finite number ≥ 0") });
    }
    if let Awd::L2 { .. } = awd {
        let alpha_lambda = alpha * lambda;
        if alpha_lambda.is_nan() || alpha_lambda >= 1.0 {
            return Err(Error::EsConfig {
                field: "awd_lambda",
                problem: format!("l2 decay needs α·λ < 1, found α·λ = {alpha}·{lambda} = {alpha_lambda}"),
            });
        }
    }
    Ok(())
}

/// The per-element rule, with its constant τ = αλ precomputed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    None,
    L2 { tau: f32 },
    L1 { tau: f32 },
}

impl Rule {
    pub fn new(awd: Awd, alpha: f32) -> Rule {
        match awd {
            Awd::None => Rule::None,
            Awd::L2 { lambda } => Rule::L2 { tau: alpha * lambda },
            Awd::L1 { lambda } => Rule::L1 { tau: alpha * lambda },
        }
    }

    /// θ after decay toward θ0.
    #[inline(always)]
    pub fn decay(self, theta: f32, theta0: f32) -> f32 {
        match self {
            Rule::None => theta,
            Rule::L2 { tau } => theta - tau * (theta - theta0),
            Rule::L1 { tau } => {
                let delta = theta - theta0;
                if delta.abs() <= tau {
                    theta0
                } else {
                    theta - tau.copysign(delta)
                }
            }
        }
    }
}

/// Applies AWD to a whole slice: θ ← θ0 + shrink(θ − θ0).
pub fn apply_awd(awd: Awd, alpha: f32, theta: &mut [f32], theta0: &[f32]) {
    let rule = Rule::new(awd, alpha);
    for (t, &t0) in theta.iter_mut().zip(theta0) {
        *t = rule.decay(*t, t0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn l2_needs_alpha_lambda_below_one() {
        assert!(check(Awd::L2 { lambda: 10.0 }, 5e-4).is_ok());
        assert!(check(Awd::L2 { lambda: 2000.0 }, 5e-4).is_err());
        assert!(check(Awd::L1 { lambda: -1.0 }, 5e-4).is_err());
        assert!(check(Awd::L1 { lambda: f32::NAN }, 5e-4).is_err());
    }

    #[test]
    fn by_hand() {
        // l2, αλ = 0.5: δ = 2 → 1 (θ = 3 − 0.5·2).
        assert_eq!(Rule::new(Awd::L2 { lambda: 5.0 }, 0.1).decay(3.0, 1.0), 2.0);
        // l1, αλ = 0.25: δ = 1 → 0.75, δ = −0.125 → 0 exactly.
        assert_eq!(Rule::new(Awd::L1 { lambda: 2.5 }, 0.1).decay(2.0, 1.0), 1.75);
        assert_eq!(Rule::new(Awd::L1 { lambda: 2.5 }, 0.1).decay(0.875, 1.0), 1.0);
    }

    proptest! {
        #[test]
        fn zero_lambda_is_a_no_op(t in -10f32..10.0, t0 in -10f32..10.0) {
            prop_assert_eq!(Rule::new(Awd::L2 { lambda: 0.0 }, 0.01).decay(t, t0).to_bits(), t.to_bits());
            prop_assert_eq!(Rule::new(Awd::L1 { lambda: 0.0 }, 0.01).decay(t, t0).to_bits(), t.to_bits());
        }

        #[test]
        fn l1_never_moves_delta_past_zero(t in -1f32..1.0, t0 in -1f32..1.0, lambda in 0f32..100.0) {
            let after = Rule::new(Awd::L1 { lambda }, 1e-3).decay(t, t0);
            let (d0, d1) = (t - t0, after - t0);
            prop_assert!(d1 == 0.0 || d1.signum() == d0.signum(), "δ {} → {}", d0, d1);
            // |δ| only shrinks (up to the rounding of θ0 + δ back into f32).
            prop_assert!(d1.abs() <= d0.abs() + f32::EPSILON * (t.abs() + t0.abs()));
        }
    }
}
