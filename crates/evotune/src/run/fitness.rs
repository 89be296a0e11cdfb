//! Evaluating one iteration's members on the target task: fitness fₙ = mean reward of the
//! greedy completions of θ + σ·signₙ·εₙ on the iteration's minibatch (or the task's own reward
//! when it needs no model, as `random` does).
//!
//! - Full rank: one member at a time, θ + σε materialised into one reusable arena (`scratch`), all
//!   prompts of the member in one batch.
//! - Low rank: every member × every prompt in one batch over the shared θ; each member's rows get
//!   its correction σ/√r·(x·B)·Aᵀ inside the forward ([`crate::es::lowrank`]). No arena per member.

use crate::error::Result;
use crate::es::{Member, Strategy};
use crate::model::delta::Deltas;
use crate::model::generate::GenerateStats;
use crate::model::{Model, Params};
use crate::tasks::{eval, Item, Task};

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
) -> Result<Vec<f32>> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    // A task whose reward ignores the model (`random`): nothing is perturbed or generated.
    let free: Option<Vec<f32>> = members.iter().map(|m| task.reward_without_model(iteration, m.index)).collect();
    if let Some(rewards) = free {
        return Ok(rewards);
    }
    let ids: Vec<Vec<u32>> =
        items.iter().map(|i| model.encode_prompt(&i.prompt, task.response_prefix())).collect::<Result<_>>()?;
    let mean = |items: &[&Item], completions: &[String]| -> Result<f32> {
        let r = task.rewards(items, completions)?;
        Ok(r.iter().map(|r| r.value).sum::<f32>() / r.len().max(1) as f32)
    };
    if items.is_empty() {
        return Ok(vec![0.0; members.len()]);
    }
    match strategy.low_rank_population(theta, iteration, members) {
        Some(pop) => {
            let all: Vec<Vec<u32>> = members.iter().flat_map(|_| ids.iter().cloned()).collect();
            let group_of: Vec<usize> = (0..members.len()).flat_map(|g| std::iter::repeat_n(g, ids.len())).collect();
            let deltas = Deltas { delta: &pop, group_of: &group_of };
            let completions = eval::complete_ids(model, theta, Some(deltas), &all, task.max_new_tokens(), stats)?;
            completions.chunks(ids.len()).map(|c| mean(items, c)).collect()
        }
        None => members
            .iter()
            .map(|m| {
                strategy.perturb_into(theta, iteration, m, scratch);
                let completions = eval::complete_ids(model, scratch, None, &ids, task.max_new_tokens(), stats)?;
                mean(items, &completions)
            })
            .collect(),
    }
}
