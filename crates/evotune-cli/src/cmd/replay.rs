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
    Ok(())
}
