//! `evotune export RUN [--iter K] --format safetensors|gguf --out PATH`.

use anyhow::{bail, Context};
use evotune::model::gguf_write::{write_gguf, ExportType};

use crate::args::{ExportArgs, ExportFormat};
use crate::cmd::with_threads;

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let w = with_threads(a.threads, || evotune::run::replay::weights_at(&a.run, a.iter))?
        .with_context(|| format!("replaying {}", a.run.display()))?;
    match a.format {
        ExportFormat::Safetensors => {
            if a.dtype != ExportType::F32 {
                bail!("safetensors export is f32 only (the master weights); use --format gguf for f16 / q8_0");
            }
            evotune::model::safetensors::write(&a.out, &w.theta, w.model.config.tied_embeddings)
        }
        ExportFormat::Gguf => {
            let dtype = a.dtype;
            let empty = Default::default();
            let metadata = w.model.theta0.gguf().map(|g| &g.metadata).unwrap_or(&empty);
            write_gguf(&a.out, &w.theta, &w.model.config, metadata, dtype)
        }
    }
    .with_context(|| format!("writing {}", a.out.display()))?;
    println!("θ_{} of {} → {}", w.iteration, a.run.display(), a.out.display());
    Ok(())
}
