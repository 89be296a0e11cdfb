//! `evotune replay RUN --to K --out model.safetensors`.

use anyhow::Context;

use crate::args::ReplayArgs;
use crate::cmd::with_threads;

pub fn run(a: ReplayArgs) -> anyhow::Result<()> {
    let (model, theta, k) = with_threads(a.threads, || evotune::run::replay::weights_at(&a.run, a.to))?
        .with_context(|| format!("replaying {}", a.run.display()))?;
    evotune::model::safetensors::write(&a.out, &theta, model.config.tied_embeddings)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("θ_{k} of {} → {} (checksum {:016x})", a.run.display(), a.out.display(), theta.checksum());
    Ok(())
}
