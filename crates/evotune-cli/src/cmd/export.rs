//! `evotune export RUN [--iter K] [--revert GROUPS] --format safetensors|hf|gguf --out PATH`.

use anyhow::{bail, Context};
use evotune::model::gguf_write::{write_gguf, ExportType};

use crate::args::{ExportArgs, ExportFormat};
use crate::cmd::with_threads;

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let mut w = with_threads(a.threads, || evotune::run::replay::weights_at(&a.run, a.iter))?
        .with_context(|| format!("replaying {}", a.run.display()))?;
    if let Some(names) = &a.revert {
        let n = evotune::run::attribution::revert_named(&mut w, names).context("--revert")?;
        eprintln!("reverted {n} tensors to θ0 ({names})");
    }
    if let (ExportFormat::Gguf, None, Some((base, codes))) = (a.format, a.dtype, &w.codes) {
        // A QES run: the source GGUF with the tuned codes written into its own blocks.
        let n = with_threads(a.threads, || w.model.theta0.write_with_codes(base, codes, &a.out))?
            .with_context(|| format!("writing {}", a.out.display()))?;
        println!(
            "θ_{} of {} → {} ({n} codes differ from the source file)",
            w.iteration,
            a.run.display(),
            a.out.display()
        );
        return Ok(());
    }
    match a.format {
        ExportFormat::Safetensors => {
            if a.dtype.unwrap_or(ExportType::F32) != ExportType::F32 {
                bail!("safetensors export is f32 only (the master weights); use --format gguf for f16 / q8_0");
            }
            evotune::model::safetensors::write(&a.out, &w.theta, w.model.config.tied_embeddings)
        }
        ExportFormat::Hf => {
            if a.dtype.unwrap_or(ExportType::F32) != ExportType::F32 {
                bail!("a HF directory export is f32 only (the master weights); use --format gguf for f16 / q8_0");
            }
            let m = &w.model;
            evotune::model::safetensors::write_hf_dir(&a.out, &w.theta, &m.config, Some(&m.tokenizer), Some(&m.chat))
        }
        ExportFormat::Gguf => {
            let dtype = a.dtype.unwrap_or(ExportType::F32);
            // A GGUF source's own metadata; a HF source's tokenizer written as llama.cpp reads it.
            let metadata = match w.model.theta0.gguf() {
                Some(g) => g.metadata.clone(),
                None => w.model.tokenizer.gguf_metadata(&w.model.chat).unwrap_or_else(|| {
                    eprintln!(
                        "note: this tokenizer's split has no llama.cpp name; the GGUF carries no tokenizer \
                         (export --format hf keeps it)"
                    );
                    Default::default()
                }),
            };
            write_gguf(&a.out, &w.theta, &w.model.config, &metadata, dtype)
        }
    }
    .with_context(|| format!("writing {}", a.out.display()))?;
    println!("θ_{} of {} → {}", w.iteration, a.run.display(), a.out.display());
    Ok(())
}
