//! `evotune eval --model M --task T`: score a model (or a run's weights) on target or prior tasks.

use anyhow::Context;
use evotune::tasks::eval::{evaluate_prior, evaluate_target, prior_task, TaskScore};
use evotune::tasks::{target_task, TaskOptions};

use crate::args::EvalArgs;
use crate::cmd::with_threads;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let (model, theta0) = evotune::model::load(&a.model).with_context(|| format!("loading model {}", a.model))?;
    let theta = match &a.run {
        Some(run) => evotune::run::replay::weights_at(run, a.iter)?.1,
        None => theta0.clone(),
    };
    let opts = TaskOptions::default();
    for spec in &a.task {
        let score: TaskScore = with_threads(a.threads, || -> anyhow::Result<TaskScore> {
            if evotune::tasks::is_target_task(spec) {
                let task = target_task(spec, &opts)?;
                Ok(evaluate_target(&model, &theta, task.as_ref())?)
            } else {
                let prior = prior_task(spec, &model, &theta0, &opts)?;
                Ok(evaluate_prior(&model, &theta, &prior)?)
            }
        })?
        .with_context(|| format!("evaluating {spec}"))?;
        let extra: Vec<String> = score.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!("{}: accuracy {:.1}%  mean reward {:.4}  {}", score.task, 100.0 * score.accuracy, score.mean_reward, extra.join("  "));
    }
    Ok(())
}
