//! `evotune replay RUN --to K --out model.safetensors`.

use anyhow::Context;

use crate::args::ReplayArgs;
use crate::cmd::with_threads;

pub fn run(a: ReplayArgs) -> anyhow::Result<()> {
    let w = with_threads(a.threads, || evotune::run::replay::weights_at(&a.run, a.to))?
        .with_context(|| format!("replaying {}", a.run.display()))?;
    evotune::model::safetensors::write(&a.out, &w.theta, w.model.config.tied_embeddings)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("θ_{} of {} → {} (checksum {:016x})", w.iteration, a.run.display(), a.out.display(), w.theta.checksum());
    let anchor = evotune::es::Anchor::InMemory(std::sync::Arc::new(w.theta0));
    let d = with_threads(a.threads, || evotune::es::drift::drift(&w.theta, &anchor, &mut Vec::new()))??;
    println!(
        "‖θ−θ0‖ {:.6}  moved {:.4}% of {} parameters (|θ−θ0| > {:e})",
        d.total,
        100.0 * d.moved_fraction.unwrap_or(0.0),
        w.theta.data().len(),
        evotune::es::drift::MOVED_THRESHOLD
    );
    Ok(())
}
