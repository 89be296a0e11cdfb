//! `evotune eval --model M --task T`: score a model (or a run's weights) on target or prior tasks.

use anyhow::{bail, Context};
use evotune::model::{LoadedWeights, QuantizedParams, WeightFormat};
use evotune::tasks::{eval_task, evaluate, TaskOptions, TaskScore};

use crate::args::EvalArgs;
use crate::cmd::with_threads;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    // A run's weights come with the run's own model, loaded once; the base weights θ0 (for the KL
    // probe) take the same form as the evaluated ones.
    let (model, theta0, theta) = match (&a.run, a.weights) {
        (Some(run), format) => {
            let mut w = with_threads(a.threads, || evotune::run::replay::weights_at(run, a.iter))?
                .with_context(|| format!("replaying {}", run.display()))?;
            if let Some(names) = &a.revert {
                evotune::run::attribution::revert_named(&mut w, names).context("--revert")?;
            }
            let qes_default = if w.codes.is_some() { WeightFormat::Quantized } else { WeightFormat::F32 };
            let format = format.unwrap_or(qes_default);
            let (theta0, theta) = match (format, w.codes) {
                // A QES run's own codes: the quantized forward exactly as the run evaluated them.
                (WeightFormat::Quantized, Some((base, codes))) => {
                    (LoadedWeights::Quantized(base), LoadedWeights::Quantized(codes))
                }
                (WeightFormat::F32, _) => (LoadedWeights::F32(w.theta0), LoadedWeights::F32(w.theta)),
                (WeightFormat::Q8_0, _) => (
                    LoadedWeights::Quantized(QuantizedParams::q8_0_from(&w.theta0).0),
                    LoadedWeights::Quantized(QuantizedParams::q8_0_from(&w.theta).0),
                ),
                (WeightFormat::Quantized, None) => {
                    bail!("an ES run's weights are f32, not blocks of the model file: use --weights q8_0 or f32")
                }
            };
            (w.model, theta0, Some(theta))
        }
        (None, format) => {
            let format = format.unwrap_or_default();
            let (mut model, weights, notes) = evotune::model::load_weights(&a.model, format)
                .with_context(|| format!("loading model {} (--weights {})", a.model, format.name()))?;
            model.chat.set_args(&crate::args::task_opts_table(&a.chat_template_args)?);
            for n in &notes {
                eprintln!("note: {n}");
            }
            (model, weights, None)
        }
    };
    let theta0 = theta0.weights();
    let theta = theta.as_ref().map_or(theta0, |t| t.weights());
    let opts: TaskOptions = crate::args::task_opts_table(&a.task_opts)?.try_into().context("--task-opt")?;
    for spec in &a.task {
        let score: TaskScore = with_threads(a.threads, || {
            let mut task = eval_task(spec, &opts, a.limit)?;
            evaluate(&model, theta, theta0, &mut task)
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
