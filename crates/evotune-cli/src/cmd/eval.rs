//! `evotune eval --model M --task T`: score a model (or a run's weights) on target or prior tasks.

use anyhow::Context;
use evotune::tasks::{eval_task, evaluate, TaskOptions, TaskScore};

use crate::args::EvalArgs;
use crate::cmd::with_threads;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    // A run's weights come with the run's own model, loaded once.
    let (model, theta0, theta) = match &a.run {
        Some(run) => {
            let w = with_threads(a.threads, || evotune::run::replay::weights_at(run, a.iter))?
                .with_context(|| format!("replaying {}", run.display()))?;
            (w.model, w.theta0, w.theta)
        }
        None => {
            let (model, theta0) =
                evotune::model::load(&a.model).with_context(|| format!("loading model {}", a.model))?;
            let theta = theta0.clone();
            (model, theta0, theta)
        }
    };
    let opts: TaskOptions = crate::args::task_opts_table(&a.task_opts)?.try_into().context("--task-opt")?;
    for spec in &a.task {
        let score: TaskScore = with_threads(a.threads, || {
            let mut task = eval_task(spec, &opts, a.limit)?;
            evaluate(&model, &theta, &theta0, &mut task)
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
