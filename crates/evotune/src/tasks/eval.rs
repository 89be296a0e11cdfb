//! Running a model over tasks: completions → rewards, test-split scores, prior-task scores.
//!
//! Generation is one batched greedy `generate` call per evaluation (render the chat prompt, append
//! the task's response prefix, encode, generate up to the task's `max_new_tokens`, stop at the
//! tokenizer's stop tokens, decode without special tokens). Multiple choice by log-likelihood is
//! one batched `score` call over every (question, choice) pair.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::model::delta::Deltas;
use crate::model::generate::{generate_with, GenerateStats};
use crate::model::score::score;
use crate::model::Weights;
use crate::model::{GenerateOptions, Model, Sampling};
use crate::tasks::kl_probe::KlStats;
use crate::tasks::multiple_choice::{loglik_stats, McItem};
use crate::tasks::registry::EvalTask;
use crate::tasks::{Item, PriorTask, Reward, Task};
use crate::tokenizer::Prompt;

/// One task's evaluation, as written to `metrics.jsonl`.
///
/// `accuracy` and `mean_reward` are NaN where they do not apply (the KL probe); JSON writes NaN as
/// `null` and reading `null` gives NaN back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    /// Fraction of items answered correctly.
    #[serde(deserialize_with = "nan_from_null")]
    pub accuracy: f64,
    /// Mean reward (generation tasks); equals `accuracy` for log-likelihood multiple choice.
    #[serde(deserialize_with = "nan_from_null")]
    pub mean_reward: f64,
    /// Further signals: `items`, `logprob_margin`, `answer_logprob`, `kl`, `kl_max_prompt`, `kl_tokens`.
    pub metrics: BTreeMap<String, f64>,
}

fn nan_from_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Greedy completions of `prompts` (each followed by `prefix`), decoded without special tokens.
pub fn complete(
    model: &Model,
    params: &dyn Weights,
    prompts: &[&Prompt],
    prefix: &str,
    max_new_tokens: usize,
) -> Result<Vec<String>> {
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| model.encode_prompt(p, prefix)).collect::<Result<_>>()?;
    complete_ids(model, params, None, &ids, max_new_tokens, &mut GenerateStats::default())
}

/// Greedy completions of encoded prompts, prompt i with the weights of its group in `deltas`,
/// decoded without special tokens; adds what it computed to `stats`.
pub fn complete_ids(
    model: &Model,
    params: &dyn Weights,
    deltas: Option<Deltas<'_>>,
    ids: &[Vec<u32>],
    max_new_tokens: usize,
    stats: &mut GenerateStats,
) -> Result<Vec<String>> {
    let opts = GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        stop_tokens: model.tokenizer.stop_tokens.clone(),
    };
    let out = generate_with(&model.llama, params, deltas, ids, &opts, stats)?;
    out.iter().map(|t| model.tokenizer.decode(t, true)).collect()
}

/// Rewards of the model's greedy completions of `items` (the ES fitness of one member is their mean).
pub fn target_rewards(model: &Model, params: &dyn Weights, task: &dyn Task, items: &[&Item]) -> Result<Vec<Reward>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let prompts: Vec<&Prompt> = items.iter().map(|i| &i.prompt).collect();
    let completions = complete(model, params, &prompts, task.response_prefix(), task.max_new_tokens())?;
    task.rewards(items, &completions)
}

/// Accuracy and mean reward over `items`.
fn score_items(model: &Model, params: &dyn Weights, task: &dyn Task, items: &[Item]) -> Result<TaskScore> {
    if items.is_empty() {
        return Err(Error::Task { task: task.name().into(), problem: "has no test items to evaluate".into() });
    }
    let refs: Vec<&Item> = items.iter().collect();
    let rewards = target_rewards(model, params, task, &refs)?;
    Ok(rewards_score(task.name(), &rewards))
}

/// A generation task's score from its items' rewards, in item order: accuracy = #correct / n,
/// mean reward = (Σ value, summed in f64 in item order) / n.
pub fn rewards_score(name: &str, rewards: &[Reward]) -> TaskScore {
    let n = rewards.len() as f64;
    let accuracy = rewards.iter().filter(|r| r.correct).count() as f64 / n;
    let mean_reward = rewards.iter().map(|r| r.value as f64).sum::<f64>() / n;
    TaskScore { task: name.to_string(), accuracy, mean_reward, metrics: BTreeMap::from([("items".to_string(), n)]) }
}

/// A multiple-choice prior's score from its per-choice log-likelihoods ([`choice_logliks`]).
pub fn logliks_score(name: &str, items: &[McItem], lls: &[Vec<f64>]) -> TaskScore {
    let s = loglik_stats(items, lls);
    TaskScore {
        task: name.to_string(),
        accuracy: s.accuracy,
        mean_reward: s.accuracy,
        metrics: BTreeMap::from([
            ("items".to_string(), items.len() as f64),
            ("logprob_margin".to_string(), s.mean_margin),
            ("answer_logprob".to_string(), s.mean_answer_logprob),
        ]),
    }
}

/// The KL probe's score ([`KlStats`]): accuracy and mean reward do not apply (NaN).
pub fn kl_score(name: &str, s: &KlStats) -> TaskScore {
    TaskScore {
        task: name.to_string(),
        accuracy: f64::NAN,
        mean_reward: f64::NAN,
        metrics: BTreeMap::from([
            ("kl".to_string(), s.kl),
            ("kl_max_prompt".to_string(), s.max_prompt_kl),
            ("kl_tokens".to_string(), s.tokens as f64),
        ]),
    }
}

/// The task's score on its test split. A task rewarded without the model and without test items
/// (`random`) scores NaN with `items` = 0: there is nothing to answer.
pub fn evaluate_target(model: &Model, params: &dyn Weights, task: &dyn Task) -> Result<TaskScore> {
    if task.test().is_empty() && task.reward_without_model(0, 0).is_some() {
        return Ok(TaskScore {
            task: task.name().to_string(),
            accuracy: f64::NAN,
            mean_reward: f64::NAN,
            metrics: BTreeMap::from([("items".to_string(), 0.0)]),
        });
    }
    score_items(model, params, task, task.test())
}

/// Per-choice log-likelihoods ℓ[item][choice] = Σ log p(choice tokens | question), one batched
/// `score` call.
pub fn choice_logliks(model: &Model, params: &dyn Weights, items: &[McItem]) -> Result<Vec<Vec<f64>>> {
    let mut pairs = Vec::new();
    for item in items {
        let prompt = model.encode_prompt(&item.loglik_prompt(), "")?;
        for choice in &item.choices {
            let cont = model.encode_continuation(choice)?;
            if cont.is_empty() {
                return Err(Error::Task {
                    task: item.question.clone(),
                    problem: format!("choice `{choice}` encodes to no tokens"),
                });
            }
            pairs.push((prompt.clone(), cont));
        }
    }
    let logps = score(&model.llama, params, &pairs)?;
    if logps.len() != pairs.len() {
        return Err(Error::Task {
            task: "multiple choice".into(),
            problem: format!("score returned {} sequences for {} pairs", logps.len(), pairs.len()),
        });
    }
    let mut it = logps.into_iter();
    Ok(items
        .iter()
        .map(|item| {
            item.choices.iter().map(|_| it.next().unwrap_or_default().iter().map(|&v| v as f64).sum()).collect()
        })
        .collect())
}

/// Scores a prior task on `params`.
pub fn evaluate_prior(model: &Model, params: &dyn Weights, prior: &PriorTask) -> Result<TaskScore> {
    match prior {
        PriorTask::MultipleChoice { name, items } => {
            Ok(logliks_score(name, items, &choice_logliks(model, params, items)?))
        }
        PriorTask::Generation(task) => evaluate_target(model, params, task.as_ref()),
        PriorTask::Kl(probe) => Ok(kl_score(probe.name(), &probe.kl(model, params)?)),
    }
}

/// Scores an [`EvalTask`] on `params`: a target on its test split, a prior after preparing it on
/// the base weights `theta0` (the KL probe's reference).
pub fn evaluate(model: &Model, params: &dyn Weights, theta0: &dyn Weights, task: &mut EvalTask) -> Result<TaskScore> {
    match task {
        EvalTask::Target(task) => evaluate_target(model, params, task.as_ref()),
        EvalTask::Prior(prior) => {
            prior.prepare(model, theta0)?;
            evaluate_prior(model, params, prior)
        }
    }
}
