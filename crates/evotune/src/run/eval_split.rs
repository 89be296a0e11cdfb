//! One evaluation of θ shared by the ranks of a distributed run.
//!
//! Every task's units — the target's test items, a multiple-choice prior's items, a generation
//! prior's test items, the KL probe's continuations — are split by the balanced [`comm::share`], so
//! each rank evaluates its share of every task. Only per-unit numbers go to the root (f64):
//!
//! ```text
//! generation item        → (correct ∈ {0, 1}, reward)          2 numbers
//! multiple-choice item   → ℓ_c = Σ log p(choice c | question)   one per choice
//! KL continuation        → (Σ_t KL_t, positions)                2 numbers
//! ```
//!
//! The root reassembles them in unit order and scores them with the same functions as a single
//! process ([`eval::rewards_score`], [`eval::logliks_score`], [`kl_from_pairs`]). A unit's numbers
//! do not depend on the batch it was computed in (the forward is batch-invariant), so the scores
//! are bit-identical to a single process's for any number of ranks.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::model::{Model, Weights};
use crate::run::comm::{self, Comm};
use crate::tasks::eval::{self, TaskScore};
use crate::tasks::kl_probe::{kl_from_pairs, KlProbe, PairKl};
use crate::tasks::multiple_choice::McItem;
use crate::tasks::{Item, PriorTask, Reward, Task};

/// One task of an evaluation, as a list of units.
enum Job<'a> {
    Rewards(&'a dyn Task),
    Logliks(&'a str, &'a [McItem]),
    Kl(&'a KlProbe),
}

impl Job<'_> {
    fn name(&self) -> &str {
        match self {
            Job::Rewards(task) => task.name(),
            Job::Logliks(name, _) => name,
            Job::Kl(probe) => probe.name(),
        }
    }

    fn units(&self) -> usize {
        match self {
            Job::Rewards(task) => task.test().len(),
            Job::Logliks(_, items) => items.len(),
            Job::Kl(probe) => probe.pairs(),
        }
    }

    /// Numbers on the wire for unit `i`.
    fn width(&self, i: usize) -> usize {
        match self {
            Job::Logliks(_, items) => items[i].choices.len(),
            Job::Rewards(_) | Job::Kl(_) => 2,
        }
    }

    /// This rank's numbers for units `range`, appended to `out`.
    fn evaluate(&self, model: &Model, params: &dyn Weights, range: Range<usize>, out: &mut Vec<f64>) -> Result<()> {
        match self {
            Job::Rewards(task) => {
                let items: Vec<&Item> = task.test()[range].iter().collect();
                for r in eval::target_rewards(model, params, *task, &items)? {
                    out.extend([f64::from(u8::from(r.correct)), f64::from(r.value)]);
                }
            }
            Job::Logliks(_, items) => {
                if !range.is_empty() {
                    out.extend(eval::choice_logliks(model, params, &items[range])?.into_iter().flatten());
                }
            }
            Job::Kl(probe) => {
                for p in probe.pair_kls(model, params, range)? {
                    out.extend([p.sum, p.tokens as f64]);
                }
            }
        }
        Ok(())
    }

    /// The task's score from every unit's numbers, in unit order.
    fn score(&self, units: &[&[f64]]) -> TaskScore {
        match self {
            Job::Rewards(task) => {
                let rewards: Vec<Reward> =
                    units.iter().map(|u| Reward { correct: u[0] != 0.0, value: u[1] as f32 }).collect();
                eval::rewards_score(task.name(), &rewards)
            }
            Job::Logliks(name, items) => {
                let lls: Vec<Vec<f64>> = units.iter().map(|u| u.to_vec()).collect();
                eval::logliks_score(name, items, &lls)
            }
            Job::Kl(probe) => {
                let pairs: Vec<PairKl> = units.iter().map(|u| PairKl { sum: u[0], tokens: u[1] as usize }).collect();
                eval::kl_score(probe.name(), &kl_from_pairs(&pairs))
            }
        }
    }
}

/// Scores the target's test split and every prior on `params`, the work split across `comm`'s
/// ranks. Every rank must call it; the root gets `Some((target, priors))`, the others `None`.
/// `iteration` only labels errors.
pub fn evaluate_split(
    model: &Model,
    params: &dyn Weights,
    target: &dyn Task,
    priors: &[PriorTask],
    comm: &dyn Comm,
    iteration: u64,
) -> Result<Option<(TaskScore, Vec<TaskScore>)>> {
    let mut jobs = vec![Job::Rewards(target)];
    for p in priors {
        jobs.push(match p {
            PriorTask::MultipleChoice { name, items } => Job::Logliks(name, items),
            PriorTask::Generation(task) => Job::Rewards(task.as_ref()),
            PriorTask::Kl(probe) => Job::Kl(probe),
        });
    }
    // Same check as a single process, on every rank (no rank waits for one that stopped). A task
    // that needs no model (`random`) has nothing to answer: it scores NaN with 0 items.
    for job in &jobs {
        if let Job::Rewards(task) = job {
            if task.test().is_empty() && task.reward_without_model(0, 0).is_none() {
                return Err(Error::Task { task: task.name().into(), problem: "has no test items to evaluate".into() });
            }
        }
    }
    let (rank, size) = (comm.rank(), comm.size());
    let mut local = Vec::new();
    for job in &jobs {
        job.evaluate(model, params, comm::share(job.units(), rank, size), &mut local)?;
    }
    let gathered = comm.gather_f64(&local);
    if !comm.is_root() {
        return Ok(None);
    }
    // Rank r's vector holds, job after job, its share of each job's units.
    let mut cursor = vec![0usize; size];
    let mut scores = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let mut units: Vec<&[f64]> = Vec::with_capacity(job.units());
        for (r, theirs) in gathered.iter().enumerate() {
            let range = comm::share(job.units(), r, size);
            let expected: usize = range.clone().map(|i| job.width(i)).sum();
            let got = theirs.len().saturating_sub(cursor[r]).min(expected);
            if got < expected {
                return Err(Error::RankResults { iteration, rank: r, task: job.name().into(), got, expected });
            }
            for i in range {
                let w = job.width(i);
                units.push(&theirs[cursor[r]..cursor[r] + w]);
                cursor[r] += w;
            }
        }
        scores.push(job.score(&units));
    }
    for (r, theirs) in gathered.iter().enumerate() {
        if theirs.len() != cursor[r] {
            let task = "the whole evaluation".to_string();
            return Err(Error::RankResults { iteration, rank: r, task, got: theirs.len(), expected: cursor[r] });
        }
    }
    let mut scores = scores.into_iter();
    let target = scores.next().expect("the target job comes first");
    Ok(Some((target, scores.collect())))
}
