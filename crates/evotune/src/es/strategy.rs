//! The ES API: ask/tell with explicit state, as in evosax.
//!
//! [`Strategy`] holds what is fixed for a run (hyperparameters, θ0); [`EsState`] holds what
//! evolves (θ and the iteration counter). One iteration t:
//! ```text
//! pop     = es.ask(&state)                      // N members: noise ids and signs, pure f(seed, t)
//! rewards = evaluate(es.perturb_into(θ, t, m))  // θ + σ·sign·ε_m, θ untouched
//! record  = es.tell(&mut state, &pop, rewards)  // c = shape(rewards); apply(record)
//! apply:    θ ← θ + (α/N)·Σₙ cₙ·signₙ·ε_{id(n)};  AWD toward θ0;  t ← t + 1
//! ```
//! `apply` is the only code that moves θ, and it needs only the record's members and
//! coefficients, so replaying a trajectory log reproduces θ bit for bit
//! ([`crate::es::trajectory::replay_onto`]).

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::es::anchor::Anchor;
use crate::es::awd::{self, Awd};
use crate::es::budget::StepDrift;
use crate::es::drift::{self, Drift};
use crate::es::lowrank::{self, LowRankPopulation, Perturbation};
use crate::es::noise::{IterationNoise, NoiseMode};
use crate::es::population::{self, Member, Population};
use crate::es::shaping::{self, NonFinitePolicy, Shaping};
use crate::es::step::StepRecord;
use crate::es::update;
use crate::model::Params;

/// Hyperparameters, fixed for a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EsParams {
    /// N, the number of members per iteration (even when mirrored).
    pub population: usize,
    /// σ, the perturbation scale.
    pub sigma: f32,
    /// α, the learning rate (no 1/σ factor: the papers fold it into α).
    pub alpha: f32,
    /// Members in ± pairs sharing ε.
    pub mirrored: bool,
    pub shaping: Shaping,
    pub awd: Awd,
    pub noise: NoiseMode,
    pub nonfinite: NonFinitePolicy,
    /// The run seed, part of every noise key.
    pub seed: u64,
    /// Full-rank or low-rank perturbations of matrices.
    #[serde(default)]
    pub perturbation: Perturbation,
}

impl EsParams {
    /// The one check of the hyperparameters (run configs and [`Strategy::new`] both call it):
    /// N ≥ 2 (even when mirrored), σ and α finite and > 0, AWD λ finite and ≥ 0 with αλ < 1 for
    /// l2, and rank ≥ 1 for low-rank perturbations.
    pub fn check(&self) -> Result<()> {
        population::check_size(self.population, self.mirrored)?;
        for (field, v) in [("sigma", self.sigma), ("alpha", self.alpha)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::EsConfig { field, problem: format!("{v} (must be a finite number > 0)") });
            }
        }
        awd::check(self.awd, self.alpha)?;
        if self.perturbation.rank() == Some(0) {
            return Err(Error::EsConfig {
                field: "rank",
                problem: "0 (the low-rank perturbation needs rank ≥ 1)".into(),
            });
        }
        Ok(())
    }
}

impl EsParams {
    /// The papers' values (Qiu et al. 2025; Schweighofer et al. 2026): N = 30, σ = 1e-3,
    /// α = 5e-4, z-scores, no AWD, i.i.d. noise. `evotune train --preset paper`.
    pub fn paper() -> Self {
        EsParams { population: 30, sigma: 1e-3, alpha: 5e-4, ..EsParams::default() }
    }
}

impl Default for EsParams {
    /// Values a 2-core machine runs in minutes and that learn on a 135M model: N = 8, σ = 3e-3,
    /// α = 6e-3 (the demo's). The papers' σ = 1e-3 leaves the greedy answers of a small model
    /// unchanged for most members (equal rewards, no signal), and their α moves θ too little to
    /// matter in a few dozen iterations; see [`EsParams::paper`].
    fn default() -> Self {
        EsParams {
            population: 8,
            sigma: 3e-3,
            alpha: 6e-3,
            mirrored: false,
            shaping: Shaping::Zscore,
            awd: Awd::None,
            noise: NoiseMode::Iid,
            nonfinite: NonFinitePolicy::Error,
            seed: 0,
            perturbation: Perturbation::Full,
        }
    }
}

/// What evolves during a run: θ and the number of updates applied to it.
#[derive(Clone, Debug, PartialEq)]
pub struct EsState {
    pub theta: Params,
    /// The next iteration to run (0 for θ0).
    pub iteration: u64,
}

impl EsState {
    /// The state at iteration 0.
    pub fn new(theta0: Params) -> Self {
        EsState { theta: theta0, iteration: 0 }
    }
}

/// The ES engine for one run: hyperparameters and the anchor θ0.
pub struct Strategy {
    params: EsParams,
    anchor: Anchor,
    /// One θ0 tensor when the anchor is a source (reused across iterations).
    scratch: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategy").field("params", &self.params).field("anchor", &self.anchor).finish()
    }
}

impl Strategy {
    /// A strategy for `params` (checked by [`EsParams::check`]) anchored at `anchor`.
    pub fn new(params: EsParams, anchor: Anchor) -> Result<Self> {
        params.check()?;
        Ok(Strategy { params, anchor, scratch: Mutex::new(Vec::new()) })
    }

    pub fn params(&self) -> &EsParams {
        &self.params
    }

    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    fn noise(&self, iteration: u64) -> IterationNoise {
        IterationNoise { seed: self.params.seed, iteration, mode: self.params.noise }
    }

    /// Members of `state.iteration`: noise ids and signs only, a pure function of (N, mirrored,
    /// iteration); the run seed enters through the noise key.
    pub fn ask(&self, state: &EsState) -> Population {
        population::members(self.params.population, self.params.mirrored, state.iteration)
    }

    /// out = θ + σ·sign·ε_member, materialised (out's previous contents are overwritten; θ is
    /// only read). In low-rank mode a matrix's ε is A·Bᵀ/√r. If `out` has another layout it is
    /// replaced by an arena of θ's layout.
    pub fn perturb_into(&self, theta: &Params, iteration: u64, member: &Member, out: &mut Params) {
        if !std::sync::Arc::ptr_eq(out.layout(), theta.layout()) && **out.layout() != **theta.layout() {
            *out = Params::zeros(theta.layout().clone());
        }
        let noise = self.noise(iteration);
        match self.params.perturbation {
            Perturbation::Full => update::perturb(theta, &noise, member.noise_id, self.params.sigma * member.sign, out),
            Perturbation::LowRank { rank } => {
                lowrank::perturb_dense(theta, &noise, member, self.params.sigma, rank, out)
            }
        }
    }

    /// The low-rank perturbations of `members` around θ, for one batched forward (group g =
    /// `members[g]`); `None` in full-rank mode.
    pub fn low_rank_population(&self, theta: &Params, iteration: u64, members: &[Member]) -> Option<LowRankPopulation> {
        let rank = self.params.perturbation.rank()?;
        Some(LowRankPopulation::new(theta, &self.noise(iteration), members, self.params.sigma, rank))
    }

    /// Shapes `rewards` (member order) into coefficients, builds the iteration's record and
    /// applies it. Errors on a reward count ≠ N, a population of another iteration, or a
    /// non-finite reward (unless the policy ranks it worst); θ is untouched on error.
    pub fn tell(&self, state: &mut EsState, pop: &Population, rewards: &[f32]) -> Result<StepRecord> {
        self.tell_with(state, pop, rewards, None)
    }

    /// [`Strategy::tell`] with this step's AWD λ set by a drift budget: the record keeps λ and the
    /// drift the update measured ([`crate::es::budget`]).
    pub fn tell_with(
        &self,
        state: &mut EsState,
        pop: &Population,
        rewards: &[f32],
        awd_lambda: Option<f32>,
    ) -> Result<StepRecord> {
        if pop.iteration != state.iteration {
            return Err(Error::StepOutOfOrder { expected: state.iteration, found: pop.iteration });
        }
        let n = self.params.population;
        if pop.members.len() != n {
            return Err(Error::BadStep {
                iteration: pop.iteration,
                problem: format!("population has {} members, expected {n}", pop.members.len()),
            });
        }
        if rewards.len() != n {
            return Err(Error::RewardCount { expected: n, got: rewards.len() });
        }
        let coefficients = shaping::shape(self.params.shaping, self.params.nonfinite, rewards)?;
        let mut record = StepRecord {
            iteration: pop.iteration,
            members: pop.members.clone(),
            rewards: rewards.to_vec(),
            coefficients,
            awd_lambda,
            drift: None,
        };
        record.drift = self.apply(state, &record)?;
        Ok(record)
    }

    /// θ ← θ + (α/N)·Σₙ cₙ·signₙ·ε_{id(n)}, then AWD toward θ0 (with the record's λ when it has
    /// one); iteration += 1. This is the only code that moves θ. Returns the drift the update
    /// measured when the record sets λ (a drift-budgeted step). The record must be the state's iteration, with N members and one finite
    /// coefficient per member; such errors leave θ untouched. An error from a θ0 source part-way through the
    /// AWD pass leaves θ partly updated (and the iteration unchanged): resume by replaying the
    /// trajectory.
    pub fn apply(&self, state: &mut EsState, step: &StepRecord) -> Result<Option<StepDrift>> {
        if step.iteration != state.iteration {
            return Err(Error::StepOutOfOrder { expected: state.iteration, found: step.iteration });
        }
        let bad = |problem: String| Err(Error::BadStep { iteration: step.iteration, problem });
        if step.members.len() != self.params.population {
            return bad(format!(
                "{} members, but this run's population is {}",
                step.members.len(),
                self.params.population
            ));
        }
        if step.members.len() != step.coefficients.len() {
            return bad(format!("{} members but {} coefficients", step.members.len(), step.coefficients.len()));
        }
        if let Some(n) = step.coefficients.iter().position(|c| !c.is_finite()) {
            return bad(format!("coefficient of member {n} is {}", step.coefficients[n]));
        }
        if let Some(m) = step.members.iter().find(|m| m.sign != 1.0 && m.sign != -1.0) {
            return bad(format!("member {} has sign {}, expected +1 or -1", m.index, m.sign));
        }
        let awd = match step.awd_lambda {
            Some(lambda) => self.params.awd.with_lambda(lambda),
            None => self.params.awd,
        };
        if let Err(e) = awd::check(awd, self.params.alpha) {
            return bad(format!("its AWD λ: {e}"));
        }
        let passes = population::passes(&step.members, &step.coefficients);
        let scale = self.params.alpha / self.params.population as f32;
        let rule = awd::Rule::new(awd, self.params.alpha);
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let drift = update::update(
            &mut state.theta,
            &self.noise(step.iteration),
            &passes,
            self.params.perturbation.rank(),
            scale,
            rule,
            &self.anchor,
            &mut scratch,
            step.awd_lambda.is_some(),
        )?;
        state.iteration += 1;
        Ok(drift)
    }

    /// ‖θ − θ0‖₂ in total, per layer, per tensor kind and per tensor.
    pub fn drift(&self, theta: &Params) -> Result<Drift> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        drift::drift(theta, &self.anchor, &mut scratch)
    }
}
