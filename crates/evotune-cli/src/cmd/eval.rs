//! `evotune eval --model M --task T`: score a model (or a run's weights) on target or prior tasks.

use anyhow::Context;
use evotune::tasks::{evaluate_prior, evaluate_target, prior_task, target_task, PriorTask, TaskOptions, TaskScore};

use crate::args::EvalArgs;
use crate::cmd::with_threads;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let (model, theta0) = evotune::model::load(&a.model).with_context(|| format!("loading model {}", a.model))?;
    let theta = match &a.run {
        Some(run) => evotune::run::replay::weights_at(run, a.iter)?.1,
        None => theta0.clone(),
    };
    let opts: TaskOptions = crate::args::task_opts_table(&a.task_opts)?.try_into().context("--task-opt")?;
    for spec in &a.task {
        let score: TaskScore = with_threads(a.threads, || -> anyhow::Result<TaskScore> {
            // Built-in targets are scored on their test split; anything else as a prior task.
            if matches!(spec.as_str(), "arith" | "countdown" | "conciseness") {
                let task = target_task(spec, &opts)?;
                Ok(evaluate_target(&model, &theta, task.as_ref())?)
            } else {
                let mut prior = prior_task(spec, &opts)?;
                if let PriorTask::MultipleChoice { items, .. } = &mut prior {
                    if a.limit > 0 {
                        items.truncate(a.limit);
                    }
                }
                prior.prepare(&model, &theta0)?;
                Ok(evaluate_prior(&model, &theta, &prior)?)
            }
        })?
        .with_context(|| format!("evaluating {spec}"))?;
        let extra: Vec<String> = score.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!(
            "{}: accuracy {:.1}%  mean reward {:.4}  {}",
            score.task,
            100.0 * score.accuracy,
            score.mean_reward,
            extra.join("  ")
        );
    }
    Ok(())
}
