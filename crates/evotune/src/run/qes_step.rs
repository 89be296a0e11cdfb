//! One QES iteration on a quantized store, and its replay from the record.
//!
//! ```text
//! members  = population(N, mirrored, t)                 the same ask as ES
//! moves    = CodePopulation(store, noise(seed, t), σ)   sparse integer noise, gated at the range
//! rewards  = mean task reward of every member's greedy completions, all of this process's
//!            members × prompts in one batch over the shared store (each member's rows add
//!            d·u·x after the product), all-gathered across MPI ranks
//! c        = shape(rewards)                             z-score or centred rank, as ES
//! apply      codes, e ← QES step (error feedback, AWD)  es::qes::apply
//! ```
//!
//! The record is ES's [`StepRecord`] (members, rewards, coefficients); the moves are a function of
//! (seed, t, member, tensor) and of the codes at t, so [`QesState::replay`] rebuilds the codes and
//! the residual bit for bit from the same records.

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::es::code_noise::CodeNoise;
use crate::es::code_population::{draw_moves, CodePopulation};
use crate::es::noise::{IterationNoise, NoiseMode};
use crate::es::population;
use crate::es::qes::{self, BaseCodes, QesParams, QesStats, Residual, ResidualKind, Step};
use crate::es::shaping::{self, NonFinitePolicy, Shaping};
use crate::es::StepRecord;
use crate::es::{Awd, Drift};
use crate::kernels::QMatrix;
use crate::model::delta::Deltas;
use crate::model::generate::GenerateStats;
use crate::model::loader::Theta0;
use crate::model::weights::Stored;
use crate::model::{Model, QuantizedParams, WeightFormat};
use crate::run::comm::{self, Comm};
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
    /// How e is held, and the replay window K (ignored when stored).
    pub residual: ResidualKind,
    pub window: usize,
    /// Members per evaluation batch (0 = all of this process's members at once).
    pub member_batch: usize,
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
            residual: c.residual,
            window: c.residual_window,
            member_batch: c.member_batch,
        }
    }

    fn noise(&self, iteration: u64) -> IterationNoise {
        IterationNoise { seed: self.seed, iteration, mode: self.noise }
    }
}

/// The codes being trained, the residual they carry, the codes they started from (the AWD
/// anchor and the drift's reference) and the next iteration.
pub struct QesState {
    pub store: QuantizedParams,
    pub residual: Residual,
    pub base: Box<dyn BaseCodes + Send>,
    pub iteration: u64,
}

/// The base codes re-read from the model file, a matrix at a time, exactly as the loader packed
/// them (training holds no second copy of the codes).
pub struct FileCodes {
    pub theta0: Arc<Theta0>,
    pub format: WeightFormat,
}

impl BaseCodes for FileCodes {
    fn matrix(&self, id: usize) -> Result<Cow<'_, QMatrix>> {
        match self.theta0.read_quantized_tensor(id, self.format)?.0 {
            Stored::Quant(q) => Ok(Cow::Owned(q)),
            Stored::F32(_) => panic!("base tensor {id} is not quantized"),
        }
    }
}

impl QesState {
    /// Iteration 0 of `run` on `store`, whose codes `base` gives again.
    pub fn new(store: QuantizedParams, base: Box<dyn BaseCodes + Send>, run: &QesRun) -> QesState {
        let residual = Residual::new(run.residual, run.window, &store, run.seed, run.noise, run.update.feedback);
        QesState { store, residual, base, iteration: 0 }
    }

    /// Applies the logged steps from the current iteration up to `upto` again (resume, replay):
    /// the same moves, drawn against the same codes.
    pub fn replay(&mut self, run: &QesRun, records: &[StepRecord], upto: u64) -> Result<()> {
        for r in records.iter().skip(self.iteration as usize).take(upto.saturating_sub(self.iteration) as usize) {
            if r.iteration != self.iteration {
                return Err(Error::StepOutOfOrder { expected: self.iteration, found: r.iteration });
            }
            let moves = draw_moves(&self.store, &run.noise(r.iteration), &r.members, run.update.sigma);
            self.apply(run, r, &moves)?;
        }
        Ok(())
    }

    /// Runs iteration `self.iteration` on `items` of `task`: this process evaluates its share of
    /// the members in one batch, the rewards are all-gathered, and every process shapes them
    /// and moves its codes alike. Returns the record, what the update did and the seconds the
    /// update took.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        model: &Model,
        run: &QesRun,
        task: &dyn Task,
        items: &[&Item],
        stats: &mut GenerateStats,
        comm: &dyn Comm,
    ) -> Result<(StepRecord, QesStats, f64)> {
        let iteration = self.iteration;
        let members = population::members(run.population, run.mirrored, iteration).members;
        let pop = CodePopulation::new(&self.store, &run.noise(iteration), &members, run.update.sigma);
        // A task whose reward ignores the model (`random`) generates nothing.
        let free: Option<Vec<f32>> = members.iter().map(|m| task.reward_without_model(iteration, m.index)).collect();
        let rewards = match free {
            Some(r) => r,
            None => {
                let mine = comm::share(members.len(), comm.rank(), comm.size());
                let wave = if run.member_batch == 0 { mine.len().max(1) } else { run.member_batch };
                let mut local = Vec::with_capacity(mine.len());
                for start in mine.clone().step_by(wave) {
                    let batch = start..(start + wave).min(mine.end);
                    local.extend(batch_rewards(model, &self.store, &pop, batch, task, items, stats)?);
                }
                comm.all_gather_f32(&local, &comm::counts(members.len(), comm.size()))
            }
        };
        let coefficients = shaping::shape(run.shaping, run.nonfinite, &rewards)?;
        let t = std::time::Instant::now();
        let moves = pop.into_moves();
        let record = StepRecord { iteration, members, rewards, coefficients, awd_lambda: None, drift: None };
        let st = self.apply(run, &record, &moves)?;
        drop(moves);
        crate::run::memory::give_back_free_memory();
        Ok((record, st, t.elapsed().as_secs_f64()))
    }

    fn apply(&mut self, run: &QesRun, r: &StepRecord, moves: &[Vec<CodeNoise>]) -> Result<QesStats> {
        let step = Step { iteration: r.iteration, members: &r.members, coefficients: &r.coefficients, moves };
        let anchor = (run.update.awd != Awd::None).then_some(self.base.as_ref() as &dyn BaseCodes);
        let st = qes::apply(&mut self.store, &mut self.residual, anchor, &step, &run.update)?;
        self.iteration += 1;
        Ok(st)
    }

    /// ‖θ − θ0‖ in real units (per layer, kind, tensor), the codes that differ from the base, and
    /// the codes there are.
    pub fn drift(&self) -> Result<(Drift, u64, u64)> {
        qes::code_drift(&self.store, self.base.as_ref())
    }
}

/// The mean reward of members `mine` (indices into the population `pop` was drawn for), all
/// their prompts in one batch.
fn batch_rewards(
    model: &Model,
    store: &QuantizedParams,
    pop: &CodePopulation<'_>,
    mine: std::ops::Range<usize>,
    task: &dyn Task,
    items: &[&Item],
    stats: &mut GenerateStats,
) -> Result<Vec<f32>> {
    let ids: Vec<Vec<u32>> =
        items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let all: Vec<Vec<u32>> = mine.clone().flat_map(|_| ids.iter().cloned()).collect();
    let group_of: Vec<usize> = mine.clone().flat_map(|g| std::iter::repeat_n(g, ids.len())).collect();
    let deltas = Deltas { delta: pop, group_of: &group_of };
    let completions = eval::complete_ids(model, store, Some(deltas), &all, task.max_new_tokens(), stats)?;
    let mut rewards = Vec::with_capacity(mine.len());
    for c in completions.chunks(ids.len().max(1)) {
        let r = task.rewards(items, c)?;
        rewards.push(r.iter().map(|r| r.value).sum::<f32>() / r.len().max(1) as f32);
    }
    rewards.resize(mine.len(), 0.0); // no prompts: every member 0
    Ok(rewards)
}
