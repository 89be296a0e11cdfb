//! The drift budget: AWD's λ set online so that the drift stays at a bound the user chose.
//!
//! `--drift-budget norm=B` bounds ‖θ−θ0‖₂; `--drift-budget kl=B` bounds the KL probe's mean
//! per-token KL(base‖current). KL is converted to a norm target with the measured constant
//! ĉ = KL/‖θ−θ0‖² (KL is quadratic in a small drift): B_n = √(B/(ĉ·ρ)). ĉ is measured once before
//! the run (the KL of θ0 + σε) and again at every evaluation. KL is known only at evaluations, and
//! ĉ moves between them (the signal's direction costs KL per unit of norm unlike noise; the probe
//! has few prompts), so the target keeps a headroom ρ ≥ 1: the largest factor, up or down, by
//! which ĉ has changed from one measurement to the next so far. Holding the KL at B/ρ, a next
//! change no larger than those seen lands it at or below B.
//!
//! **Start (theory).** The noise part of an ES step is a random walk: per element
//! N(0, α²s/N) with s = E[Σcₙ²]/N (1 for z-scores). Under AWD-l2 (retention ρ = 1 − αλ) its
//! stationary norm² is ≈ α·d·s/(2λN), so λ₀ = α·d·s/(2N·B_n²). Under AWD-l1 (a pull of αλ per
//! step toward θ0) each |δ| is stationary with an exponential law, ‖δ‖² ≈ d·v²/(2(αλ)²) with
//! v = α²s/N, so λ₀ = α·s·√(d/2)/(N·B_n).
//!
//! **Controller (on log λ), every iteration.** The update pass measures ‖δ‖ before the step
//! (m₀), after the ES step (m₁) and after the decay (m₂). From these, the step injected
//! q = m₁² − m₀² (noise and signal together) and the decay kept a = m₂²/m₁² of ‖δ‖². The
//! injection of one step is noisy (tied rewards give q = 0, a strong signal a spike), so the
//! controller uses its running mean q̄ ← (1 − w)·q̄ + w·q, w = 0.3. A drift that injects q̄ and
//! keeps a per step settles at v∞ = a·q̄/(1 − a). Then
//!
//!   log λ ← log λ + κ·e,   e = clamp(log(√v∞ / B_n), ±log 4),   κ = γ/p,  γ = ½
//!
//! where p is the exponent of the stationary law √v∞ ∝ λ^(−p) (½ for l2, 1 for l1); e = 0 (λ
//! held) while q̄ ≤ 0, when the drift is shrinking anyway.
//!
//! **Guard (l2).** λ is then raised, if needed, so that the next step stays at the bound if it
//! injects as much as the larger of q̄ and the last q (a signal tends to persist for a few
//! steps): (1 − αλ)²·(m₂² + q_g) ≤ B_n², i.e. αλ ≥ 1 − B_n/√(m₂² + q_g), q_g = max(q̄, q). The
//! guard only binds near or above B_n, and pulls an overshoot back in one step.
//!
//! **Why it is stable.** The error is measured on the drift's *stationary prediction*, not on the
//! current norm, so the plant from log λ to e has no lag: one correction changes e by −p·κ·e, so
//! e shrinks by the factor 1 − γ = ½ per iteration (stable for any 0 < γ < 2; γ = 1 would be
//! deadbeat, γ = ½ also averages the step-to-step noise of q). Predicting the stationary level
//! rather than integrating the gap to B also avoids wind-up: while the drift is still rising
//! toward B, e is already ≈ 0 and λ does not collapse, so the norm approaches B from below with
//! the Ornstein–Uhlenbeck time constant 1/(2αλ) instead of overshooting. In a steady state
//! (m₂ = m₀) v∞ = m₂² exactly, so the fixed point is the measured norm at B_n.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::es::awd::AwdKind;
use crate::es::shaping::Shaping;

/// A bound on the drift: `kl=B` (mean per-token KL on the KL probe) or `norm=B` (‖θ−θ0‖₂).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DriftBudget {
    Kl(f64),
    Norm(f64),
}

impl DriftBudget {
    pub fn bound(self) -> f64 {
        match self {
            DriftBudget::Kl(b) | DriftBudget::Norm(b) => b,
        }
    }
}

impl FromStr for DriftBudget {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected kl=B or norm=B"))?;
        let b: f64 = value.trim().parse().map_err(|_| format!("`{s}`: `{value}` is not a number"))?;
        if !(b.is_finite() && b > 0.0) {
            return Err(format!("`{s}`: the bound must be a finite number > 0"));
        }
        match kind.trim() {
            "kl" => Ok(DriftBudget::Kl(b)),
            "norm" => Ok(DriftBudget::Norm(b)),
            other => Err(format!("`{s}`: unknown measure `{other}` (expected kl or norm)")),
        }
    }
}

impl fmt::Display for DriftBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftBudget::Kl(b) => write!(f, "kl={b}"),
            DriftBudget::Norm(b) => write!(f, "norm={b}"),
        }
    }
}

impl serde::Serialize for DriftBudget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DriftBudget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// ‖θ−θ0‖₂ around one update: before the step, after the ES step (before the decay), and after
/// the decay. Measured by the update pass; the controller's input.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepDrift {
    pub before: f64,
    pub stepped: f64,
    pub after: f64,
}

impl StepDrift {
    /// q = m₁² − m₀², the norm² this step added before the decay.
    pub fn injection(&self) -> f64 {
        self.stepped * self.stepped - self.before * self.before
    }

    /// a = m₂²/m₁², the fraction of ‖δ‖² the decay kept (`None` when δ was 0 after the step).
    pub fn retention(&self) -> Option<f64> {
        (self.stepped > 0.0).then(|| (self.after * self.after) / (self.stepped * self.stepped))
    }
}

/// v∞ = a·q̄/(1 − a): the norm² a drift injecting q̄ and keeping a per step settles at (∞ when
/// nothing decays).
pub fn stationary_norm2(injection: f64, retention: f64) -> f64 {
    if retention >= 1.0 {
        return f64::INFINITY;
    }
    retention * injection / (1.0 - retention)
}

/// q̄ after `step`: the running mean of the injections (the first step's own).
pub fn mean_injection(previous: Option<f64>, step: &StepDrift) -> f64 {
    match previous {
        None => step.injection(),
        Some(q) => (1.0 - INJECTION_WEIGHT) * q + INJECTION_WEIGHT * step.injection(),
    }
}

/// Largest αλ the controller sets (the l2 rule needs αλ < 1).
const MAX_ALPHA_LAMBDA: f64 = 0.5;
/// Smallest αλ the controller sets (λ > 0 keeps log λ finite).
const MIN_ALPHA_LAMBDA: f64 = 1e-9;
/// γ: the fraction of the log error corrected per iteration.
const GAIN: f64 = 0.5;
/// w: the weight of the newest step in the mean injection q̄.
pub const INJECTION_WEIGHT: f64 = 0.3;
/// |e| is clamped to log 4: one iteration changes λ by at most 4^κ.
const MAX_LOG_ERROR: f64 = std::f64::consts::LN_2 * 2.0;

/// The λ controller of one run (see the module doc).
#[derive(Clone, Debug)]
pub struct BudgetController {
    budget: DriftBudget,
    kind: AwdKind,
    alpha: f64,
    /// ĉ = KL/‖θ−θ0‖² from the latest measurement (KL budgets).
    kl_per_norm2: Option<f64>,
    /// ρ, the largest factor by which ĉ has changed between measurements (≥ 1).
    headroom: f64,
}

impl BudgetController {
    /// A controller for `budget` under AWD `kind` (l2 or l1) with learning rate α.
    pub fn new(budget: DriftBudget, kind: AwdKind, alpha: f32) -> Result<Self> {
        if kind == AwdKind::None {
            return Err(Error::EsConfig { field: "drift_budget", problem: "needs AWD (l2 or l1)".into() });
        }
        Ok(BudgetController { budget, kind, alpha: alpha as f64, kl_per_norm2: None, headroom: 1.0 })
    }

    pub fn budget(&self) -> DriftBudget {
        self.budget
    }

    /// Records a KL measured at drift ‖θ−θ0‖ = `norm` (ignored unless both are finite and > 0):
    /// the new ĉ, and ρ.
    pub fn observe_kl(&mut self, kl: f64, norm: f64) {
        if kl.is_finite() && kl > 0.0 && norm.is_finite() && norm > 0.0 {
            let c = kl / (norm * norm);
            if let Some(previous) = self.kl_per_norm2 {
                self.headroom = self.headroom.max(c / previous).max(previous / c);
            }
            self.kl_per_norm2 = Some(c);
        }
    }

    /// ĉ, once measured.
    pub fn kl_per_norm2(&self) -> Option<f64> {
        self.kl_per_norm2
    }

    /// B_n, the norm the controller holds ‖θ−θ0‖ at: B itself, or √(B/(ĉ·ρ)) for a KL budget
    /// (`None` until ĉ is measured).
    pub fn norm_target(&self) -> Option<f64> {
        match self.budget {
            DriftBudget::Norm(b) => Some(b),
            DriftBudget::Kl(b) => self.kl_per_norm2.map(|c| (b / (c * self.headroom)).sqrt()),
        }
    }

    /// p in √v∞ ∝ λ^(−p).
    fn exponent(&self) -> f64 {
        if self.kind == AwdKind::L1 {
            1.0
        } else {
            0.5
        }
    }

    fn clamp(&self, lambda: f64) -> f32 {
        lambda.clamp(MIN_ALPHA_LAMBDA / self.alpha, MAX_ALPHA_LAMBDA / self.alpha) as f32
    }

    /// λ₀ from the random-walk law for d parameters, N members and `shaping`.
    pub fn initial_lambda(&self, d: usize, population: usize, shaping: Shaping) -> Result<f32> {
        let b = self.norm_target().ok_or_else(|| Error::EsConfig {
            field: "drift_budget",
            problem: "the KL constant is not measured yet".into(),
        })?;
        let (d, n, a) = (d as f64, population as f64, self.alpha);
        let s = match shaping {
            Shaping::Zscore => 1.0,
            Shaping::CentredRank => (n + 1.0) / (12.0 * (n - 1.0)),
        };
        let lambda = match self.kind {
            AwdKind::L1 => a * s * (d / 2.0).sqrt() / (n * b),
            _ => a * d * s / (2.0 * n * b * b),
        };
        Ok(self.clamp(lambda))
    }

    /// λ for the next iteration, from the λ the last one used, the drift it measured and the
    /// mean injection q̄ (see the module doc).
    pub fn next_lambda(&self, lambda: f32, step: &StepDrift, injection: f64) -> f32 {
        let Some(b) = self.norm_target() else { return lambda };
        let tau = self.alpha * lambda as f64;
        let retention = step.retention().unwrap_or((1.0 - tau) * (1.0 - tau));
        let e = if injection > 0.0 {
            let v = stationary_norm2(injection, retention);
            (0.5 * v.ln() - b.ln()).clamp(-MAX_LOG_ERROR, MAX_LOG_ERROR)
        } else {
            0.0
        };
        let mut next = ((lambda as f64).ln() + GAIN / self.exponent() * e).exp();
        if self.kind == AwdKind::L2 {
            let reach = (step.after * step.after + injection.max(step.injection()).max(0.0)).sqrt();
            if reach > b {
                next = next.max((1.0 - b / reach) / self.alpha);
            }
        }
        self.clamp(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("kl=0.05".parse::<DriftBudget>(), Ok(DriftBudget::Kl(0.05)));
        assert_eq!("norm=40".parse::<DriftBudget>().unwrap().to_string(), "norm=40");
        for bad in ["kl", "kl=-1", "kl=x", "size=3", "norm=inf"] {
            assert!(bad.parse::<DriftBudget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn steady_state_predicts_the_measured_norm() {
        // m₂ = m₀: the prediction is the current norm.
        let s = StepDrift { before: 3.0, stepped: 3.5, after: 3.0 };
        assert!((stationary_norm2(s.injection(), s.retention().unwrap()) - 9.0).abs() < 1e-12);
        assert_eq!(stationary_norm2(1.0, 1.0), f64::INFINITY);
        assert_eq!(StepDrift { before: 0.0, stepped: 0.0, after: 0.0 }.retention(), None);
        assert!((mean_injection(Some(1.0), &StepDrift { before: 0.0, stepped: 2.0, after: 1.0 }) - 1.9).abs() < 1e-12);
    }

    /// The controller on the exact l2 recursion E‖δ‖²: v ← ρ²(v + q), ρ = 1 − αλ. It settles at
    /// B without overshoot, from the theory start and from a start 100× off.
    #[test]
    fn settles_on_the_l2_recursion() {
        let (alpha, q, b) = (0.01f64, 4.0f64, 10.0f64);
        let c = BudgetController::new(DriftBudget::Norm(b), AwdKind::L2, alpha as f32).unwrap();
        for start in [None, Some(1e-3f32)] {
            // d with α²d/N = q: the theory start for this injection.
            let d = (q / (alpha * alpha)) as usize;
            let mut lambda = start.unwrap_or_else(|| c.initial_lambda(d, 1, Shaping::Zscore).unwrap());
            let (mut v, mut max, mut mean) = (0.0f64, 0.0f64, None);
            for _ in 0..2000 {
                let rho = 1.0 - alpha * lambda as f64;
                let stepped = v + q;
                let after = rho * rho * stepped;
                let step = StepDrift { before: v.sqrt(), stepped: stepped.sqrt(), after: after.sqrt() };
                v = after;
                max = max.max(v.sqrt());
                mean = Some(mean_injection(mean, &step));
                lambda = c.next_lambda(lambda, &step, mean.unwrap());
            }
            assert!((v.sqrt() / b - 1.0).abs() < 1e-3, "start {start:?}: settled at {}", v.sqrt());
            assert!(max <= b * 1.01, "start {start:?}: overshoot to {max}");
        }
    }

    #[test]
    fn kl_budget_waits_for_the_constant() {
        let mut c = BudgetController::new(DriftBudget::Kl(0.02), AwdKind::L2, 0.01).unwrap();
        assert_eq!(c.norm_target(), None);
        assert!(c.initial_lambda(100, 8, Shaping::Zscore).is_err());
        c.observe_kl(0.08, 20.0);
        // ĉ = 0.08/400 = 2e-4, B_n = √(0.02/2e-4) = 10.
        assert!((c.norm_target().unwrap() - 10.0).abs() < 1e-9);
        // Then ĉ 2.5e-4 (a factor 1.25), 2e-4 (1/1.25), 1.8e-4 (1/1.11): ρ stays 1.25.
        c.observe_kl(0.1, 20.0);
        c.observe_kl(0.08, 20.0);
        c.observe_kl(0.072, 20.0);
        assert!((c.norm_target().unwrap() - (0.02f64 / (1.8e-4 * 1.25)).sqrt()).abs() < 1e-9);
        assert!(BudgetController::new(DriftBudget::Kl(0.02), AwdKind::None, 0.01).is_err());
    }
}
