//! `evotune train`: a new run from a TOML file and flags, or `--resume RUN`.

use anyhow::Context;
use evotune::run::config::PartialConfig;
use evotune::run::train::{train, Start};

use crate::args::TrainArgs;
use crate::progress::{eval_summary, Terminal};

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let flags = a.settings.to_partial()?;
    let file = match &a.config {
        Some(p) => PartialConfig::from_file(p)?,
        None => PartialConfig::default(),
    };
    let given = file.overlay(flags);
    let mut progress = Terminal::new(a.quiet);
    let summary = match a.resume {
        Some(run) => {
            if let Some(out) = &given.out {
                anyhow::ensure!(out == &run, "--out {} differs from --resume {}", out.display(), run.display());
            }
            let cfg = PartialConfig { out: Some(run.clone()), ..given.clone() }.resolve()?;
            train(cfg, Start::Resume { given }, &mut progress).with_context(|| format!("resuming {}", run.display()))?
        }
        None => {
            let cfg = given.resolve()?;
            let out = cfg.out.clone();
            train(cfg, Start::New, &mut progress).with_context(|| format!("training into {}", out.display()))?
        }
    };
    println!("run: {} ({} iterations, θ checksum {:016x})", summary.dir.display(), summary.iterations, summary.checksum);
    if let (Some(first), Some(last)) = (&summary.first_eval, &summary.last_eval) {
        println!("first {}", eval_summary(first));
        println!("last  {}", eval_summary(last));
    }
    Ok(())
}
