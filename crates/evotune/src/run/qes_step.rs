//! One QES iteration on a quantized store, and its replay from the record.
//!
//! ```text
//! members  = population(N, mirrored, t)                 the same ask as ES
//! moves    = CodePopulation(store, noise(seed, t), σ)   sparse integer noise, gated at the range
//! rewards  = mean task reward of every member's greedy completions, all members × prompts in
//!            one batch over the shared store (each member's rows add d·u·x after the product)
//! c        = shape(rewards)                             z-score or centred rank, as ES
//! apply      codes, e ← QES step (error feedback)       es::qes::apply
//! ```
//!
//! The record is ES's [`StepRecord`] (members, rewards, coefficients); the moves are a function of
//! (seed, t, member, tensor) and of the codes at t, so [`replay_step`] rebuilds the codes and the
//! residual bit for bit from the same records.

use crate::error::Result;
use crate::es::code_population::CodePopulation;
use crate::es::noise::{IterationNoise, NoiseMode};
use crate::es::population;
use crate::es::qes::{self, QesParams, QesStats, Residual};
use crate::es::shaping::{self, NonFinitePolicy, Shaping};
use crate::es::StepRecord;
use crate::model::delta::Deltas;
use crate::model::generate::GenerateStats;
use crate::model::{Model, QuantizedParams};
use crate::tasks::{eval, Item, Task};

/// What a QES run fixes besides the update's [`QesParams`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QesRun {
    pub population: usize,
    pub mirrored: bool,
    pub shaping: Shaping,
    pub nonfinite: NonFinitePolicy,
    pub seed: u64,
    pub noise: NoiseMode,
    pub update: QesParams,
}

impl QesRun {
    /// The QES settings of a run's config.
    pub fn from_config(c: &crate::run::RunConfig) -> QesRun {
        QesRun {
            population: c.population,
            mirrored: c.mirrored,
            shaping: c.shaping,
            nonfinite: c.nonfinite_reward,
            seed: c.seed,
            noise: c.noise,
            update: c.qes_params(),
        }
    }

    fn noise(&self, iteration: u64) -> IterationNoise {
        IterationNoise { seed: self.seed, iteration, mode: self.noise }
    }
}

/// Runs iteration `iteration` on `items` of `task`: evaluates the members in one batch, shapes
/// their rewards and moves the codes. Returns the record, what the update did and the seconds the
/// update took.
#[allow(clippy::too_many_arguments)]
pub fn qes_step(
    model: &Model,
    store: &mut QuantizedParams,
    residual: &mut Residual,
    run: &QesRun,
    iteration: u64,
    task: &dyn Task,
    items: &[&Item],
    stats: &mut GenerateStats,
) -> Result<(StepRecord, QesStats, f64)> {
    let members = population::members(run.population, run.mirrored, iteration).members;
    let pop = CodePopulation::new(store, &run.noise(iteration), &members, run.update.sigma);
    // A task whose reward ignores the model (`random`) generates nothing.
    let free: Option<Vec<f32>> = members.iter().map(|m| task.reward_without_model(iteration, m.index)).collect();
    let rewards = match free {
        Some(r) => r,
        None => batch_rewards(model, store, &pop, &members, task, items, stats)?,
    };
    let coefficients = shaping::shape(run.shaping, run.nonfinite, &rewards)?;
    let t = std::time::Instant::now();
    let moves = pop.into_moves();
    let st = qes::apply(store, residual, &moves, &coefficients, &run.update);
    Ok((StepRecord { iteration, members, rewards, coefficients }, st, t.elapsed().as_secs_f64()))
}

/// Every member's mean reward, all members × prompts in one batch.
fn batch_rewards(
    model: &Model,
    store: &QuantizedParams,
    pop: &CodePopulation<'_>,
    members: &[crate::es::Member],
    task: &dyn Task,
    items: &[&Item],
    stats: &mut GenerateStats,
) -> Result<Vec<f32>> {
    let ids: Vec<Vec<u32>> =
        items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let all: Vec<Vec<u32>> = members.iter().flat_map(|_| ids.iter().cloned()).collect();
    let group_of: Vec<usize> = (0..members.len()).flat_map(|g| std::iter::repeat_n(g, ids.len())).collect();
    let deltas = Deltas { delta: pop, group_of: &group_of };
    let completions = eval::complete_ids(model, store, Some(deltas), &all, task.max_new_tokens(), stats)?;
    let mut rewards = Vec::with_capacity(members.len());
    for c in completions.chunks(ids.len().max(1)) {
        let r = task.rewards(items, c)?;
        rewards.push(r.iter().map(|r| r.value).sum::<f32>() / r.len().max(1) as f32);
    }
    rewards.resize(members.len(), 0.0); // no prompts: every member 0
    Ok(rewards)
}

/// Applies a recorded step again (resume, replay): the same moves, drawn against the same codes.
pub fn replay_step(
    store: &mut QuantizedParams,
    residual: &mut Residual,
    run: &QesRun,
    record: &StepRecord,
) -> QesStats {
    let moves =
        CodePopulation::new(store, &run.noise(record.iteration), &record.members, run.update.sigma).into_moves();
    qes::apply(store, residual, &moves, &record.coefficients, &run.update)
}
