//! Evaluating one iteration's members on the target task: fitness fₙ = mean reward of the
//! greedy completions of θ + σ·signₙ·εₙ on the iteration's minibatch (or the task's own reward
//! when it needs no model, as `random` does).
//!
//! - Full rank: one member at a time, θ + σε materialised into one reusable arena (`scratch`), all
//!   prompts of the member in one batch.
//! - Low rank: every member × every prompt in one batch over the shared θ; each member's rows get
//!   its correction σ/√r·(x·B)·Aᵀ inside the forward ([`crate::es::lowrank`]). No arena per member.
//!
//! A member whose perturbed weights make the logits non-finite (NaN or infinity) has no reward:
//! under `nonfinite_reward = "error"` the iteration stops with [`Error::MemberDiverged`] naming the
//! member and the generation step; under `"worst"` its reward is NaN (ranked last by the shaping)
//! and [`Fitness::diverged`] says why. In low rank the batch is run again without that member.

use crate::error::{Error, Result};
use crate::es::{Member, NonFinitePolicy, Strategy};
use crate::model::delta::Deltas;
use crate::model::generate::GenerateStats;
use crate::model::{Model, Params};
use crate::tasks::{eval, Item, Task};

/// The fitness of one iteration's members (member order) and, for each member whose logits went
/// non-finite, a line saying so.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fitness {
    pub rewards: Vec<f32>,
    pub diverged: Vec<String>,
}

/// fₙ for each of `members` at iteration `iteration` around θ. `scratch` is the member arena of
/// the full-rank path (replaced if its layout differs); `stats` accumulates generation counts.
#[allow(clippy::too_many_arguments)]
pub fn member_rewards(
    model: &Model,
    strategy: &Strategy,
    theta: &Params,
    iteration: u64,
    members: &[Member],
    task: &dyn Task,
    items: &[&Item],
    scratch: &mut Params,
    stats: &mut GenerateStats,
) -> Result<Fitness> {
    let mut fitness = Fitness::default();
    if members.is_empty() {
        return Ok(fitness);
    }
    // A task whose reward ignores the model (`random`): nothing is perturbed or generated.
    let free: Option<Vec<f32>> = members.iter().map(|m| task.reward_without_model(iteration, m.index)).collect();
    if let Some(rewards) = free {
        fitness.rewards = rewards;
        return Ok(fitness);
    }
    if items.is_empty() {
        fitness.rewards = vec![0.0; members.len()];
        return Ok(fitness);
    }
    let ids: Vec<Vec<u32>> =
        items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let mean = |completions: &[String]| -> Result<f32> {
        let r = task.rewards(items, completions)?;
        Ok(r.iter().map(|r| r.value).sum::<f32>() / r.len().max(1) as f32)
    };
    // A member whose logits are not finite: stop (policy `error`) or a NaN reward and a note.
    let mut diverged = |member: &Member, step: usize, sequence: usize| -> Result<f32> {
        let why = format!(
            "the logits of its completion of prompt {} went non-finite at generation step {step}",
            sequence % ids.len()
        );
        if strategy.params().nonfinite == NonFinitePolicy::Error {
            return Err(Error::MemberDiverged { iteration, member: member.index, why });
        }
        fitness.diverged.push(format!("iteration {iteration}, member {}: {why}; ranked worst", member.index));
        Ok(f32::NAN)
    };
    let mut rewards = vec![0.0f32; members.len()];
    if strategy.params().perturbation.rank().is_some() {
        // Every member × prompt in one batch; a member that diverges leaves the batch.
        let mut alive: Vec<usize> = (0..members.len()).collect();
        while !alive.is_empty() {
            let group: Vec<Member> = alive.iter().map(|&a| members[a]).collect();
            let pop = strategy.low_rank_population(theta, iteration, &group).expect("low rank");
            let all: Vec<Vec<u32>> = group.iter().flat_map(|_| ids.iter().cloned()).collect();
            let group_of: Vec<usize> = (0..group.len()).flat_map(|g| std::iter::repeat_n(g, ids.len())).collect();
            let deltas = Deltas { delta: &pop, group_of: &group_of };
            match eval::complete_ids(model, theta, Some(deltas), &all, task.max_new_tokens(), stats) {
                Ok(completions) => {
                    for (&a, c) in alive.iter().zip(completions.chunks(ids.len())) {
                        rewards[a] = mean(c)?;
                    }
                    break;
                }
                Err(Error::NonFiniteLogits { step, sequence }) => {
                    let a = alive.remove(sequence / ids.len());
                    rewards[a] = diverged(&members[a], step, sequence)?;
                }
                Err(e) => return Err(e),
            }
        }
    } else {
        for (a, m) in members.iter().enumerate() {
            strategy.perturb_into(theta, iteration, m, scratch);
            rewards[a] = match eval::complete_ids(model, scratch, None, &ids, task.max_new_tokens(), stats) {
                Ok(completions) => mean(&completions)?,
                Err(Error::NonFiniteLogits { step, sequence }) => diverged(m, step, sequence)?,
                Err(e) => return Err(e),
            };
        }
    }
    fitness.rewards = rewards;
    Ok(fitness)
}
