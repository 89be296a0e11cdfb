//! A drift budget inside the training loop: the controller's state, the KL constant's first
//! measurement, and λ_t shared by every rank.
//!
//! Only the root holds a controller; it computes λ_t before iteration t and every rank receives
//! it, so MPI runs apply the same update. λ_t and the drift the update measured are written in
//! trajectory line t, which makes the state after a resume a function of the logs:
//! - the last step's (λ, drift) is the last trajectory line;
//! - ĉ = KL/‖θ−θ0‖² and its headroom come from the KL of θ0 + σε (a direction drawn from the
//!   counter RNG at an iteration no run reaches, measured again on every open: the same bits every
//!   time), then the logged evaluations in order (an evaluation due at the resumed iteration and
//!   not yet logged runs before the next λ is computed, as it would have without the kill).

use crate::error::{Error, Result};
use crate::es::budget::mean_injection;
use crate::es::{BudgetController, DriftBudget, EsState, Member, StepDrift, StepRecord, Strategy};
use crate::model::{Model, Params};
use crate::run::comm::Comm;
use crate::run::config::RunConfig;
use crate::run::dir::{self, RunDir};
use crate::run::metrics::{EvalLine, MetricsLine};
use crate::tasks::PriorTask;

/// The noise iteration of the calibration direction (never a training iteration).
const CALIBRATION_ITERATION: u64 = u64::MAX;

/// The root's controller and the last step it saw.
pub struct BudgetRun {
    controller: BudgetController,
    /// λ and measured drift of the last step (`None` before the first).
    last: Option<(f32, StepDrift)>,
    /// q̄, the mean injection of the steps so far.
    injection: Option<f64>,
    params: usize,
    population: usize,
    shaping: crate::es::Shaping,
}

impl BudgetRun {
    /// The controller of `cfg`'s budget (root only), resumed from the logged `records` and metrics.
    /// `state` must still be θ0 (not yet replayed): a KL budget with no measured constant measures
    /// it on θ0 + σε.
    pub fn open(
        cfg: &RunConfig,
        dir: &RunDir,
        records: &[StepRecord],
        model: &Model,
        strategy: &Strategy,
        state: &EsState,
        priors: &[PriorTask],
    ) -> Result<Self> {
        let budget = cfg.drift_budget.expect("a budgeted run");
        let mut controller = BudgetController::new(budget, cfg.awd, cfg.alpha)?;
        let resumed_at = records.len() as u64;
        if let DriftBudget::Kl(_) = budget {
            let (kl, norm) = calibrate(model, strategy, &state.theta, priors)?;
            controller.observe_kl(kl, norm);
            if controller.kl_per_norm2().is_none() {
                return Err(Error::EsConfig {
                    field: "drift_budget",
                    problem: format!("{budget}: KL {kl} at ‖θ−θ0‖ = {norm} on θ0 + σε: no constant to start from"),
                });
            }
            for line in evals_with_drift(dir, resumed_at)? {
                observe(&mut controller, &line);
            }
        }
        let mut run = BudgetRun {
            controller,
            last: None,
            injection: None,
            params: state.theta.layout().total(),
            population: cfg.population,
            shaping: cfg.shaping,
        };
        for (line, r) in records.iter().enumerate() {
            if r.awd_lambda.is_none() || r.drift.is_none() {
                return Err(Error::Trajectory {
                    path: dir.path(dir::TRAJECTORY),
                    line: line + 1,
                    problem: "a drift-budgeted run's line has no `awd_lambda` and `drift`".into(),
                });
            }
            run.stepped(r);
        }
        Ok(run)
    }

    /// λ for the next iteration: λ₀ from theory, then the controller's correction of the last λ.
    pub fn lambda(&self) -> Result<f32> {
        match &self.last {
            None => self.controller.initial_lambda(self.params, self.population, self.shaping),
            Some((lambda, drift)) => Ok(self.controller.next_lambda(*lambda, drift, self.injection.unwrap_or(0.0))),
        }
    }

    /// The norm the controller holds ‖θ−θ0‖ at.
    pub fn norm_target(&self) -> Option<f64> {
        self.controller.norm_target()
    }

    /// Takes in the step just applied.
    pub fn stepped(&mut self, record: &StepRecord) {
        if let (Some(l), Some(d)) = (record.awd_lambda, record.drift) {
            self.last = Some((l, d));
            self.injection = Some(mean_injection(self.injection, &d));
        }
    }

    /// Takes in an evaluation (a KL budget's new ĉ).
    pub fn evaluated(&mut self, line: &EvalLine) {
        if let DriftBudget::Kl(_) = self.controller.budget() {
            observe(&mut self.controller, line);
        }
    }
}

/// The root's λ on every rank.
pub fn share_lambda(comm: &dyn Comm, root_lambda: f32) -> f32 {
    f32::from_bits(comm.all_gather_u64(&[u64::from(root_lambda.to_bits())])[0][0] as u32)
}

/// The KL probe's mean KL in an evaluation, with its drift.
fn observe(controller: &mut BudgetController, line: &EvalLine) {
    if let Some(kl) = line.priors.iter().find_map(|p| p.metrics.get("kl")) {
        controller.observe_kl(*kl, line.drift.total);
    }
}

/// The evaluations logged at or before `iteration` whose drift is not zero, in order.
fn evals_with_drift(dir: &RunDir, iteration: u64) -> Result<Vec<EvalLine>> {
    let mut out = Vec::new();
    for (_, text) in dir.read_lines(dir::METRICS)? {
        if let Ok(MetricsLine::Eval(e)) = serde_json::from_str::<MetricsLine>(&text) {
            if e.iteration <= iteration && e.drift.total > 0.0 {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// (KL, ‖δ‖) of the KL probe at θ0 + σε, ε a standard-normal direction: ES drift is mostly such
/// a random walk, so KL/‖δ‖² there is the constant the first evaluations then refine.
fn calibrate(model: &Model, strategy: &Strategy, theta0: &Params, priors: &[PriorTask]) -> Result<(f64, f64)> {
    let probe = priors
        .iter()
        .find_map(|p| match p {
            PriorTask::Kl(probe) => Some(probe),
            _ => None,
        })
        .ok_or_else(|| Error::EsConfig { field: "drift_budget", problem: "a KL budget needs `--prior kl`".into() })?;
    let member = Member { index: 0, noise_id: 0, sign: 1.0 };
    let mut shifted = Params::zeros(theta0.layout().clone());
    strategy.perturb_into(theta0, CALIBRATION_ITERATION, &member, &mut shifted);
    let norm = strategy.drift(&shifted)?.total;
    Ok((probe.kl(model, &shifted)?.kl, norm))
}
