//! `evotune train`: a new run from a TOML file and flags, or `--resume RUN`.

use anyhow::Context;
use evotune::run::comm::{Comm, SingleProcess};
use evotune::run::config::PartialConfig;
use evotune::run::train::{train_with, Silent, Start};
use evotune::run::Progress;

use crate::args::{Preset, TrainArgs};
use crate::progress::{eval_summary, Terminal};

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let flags = a.settings.to_partial()?;
    let base = match a.preset {
        Some(Preset::Paper) => PartialConfig::paper(),
        None => PartialConfig::default(),
    };
    let file = match &a.config {
        Some(p) => PartialConfig::from_file(p)?,
        None => PartialConfig::default(),
    };
    let given = base.overlay(file).overlay(flags);
    let comm = communicator();
    // Only the root process shows progress (and writes the run directory).
    let mut terminal = Terminal::new(a.quiet);
    let mut silent = Silent;
    let progress: &mut dyn Progress = if comm.is_root() { &mut terminal } else { &mut silent };
    let result = match a.resume {
        Some(run) => {
            if let Some(out) = &given.out {
                anyhow::ensure!(out == &run, "--out {} differs from --resume {}", out.display(), run.display());
            }
            let cfg = PartialConfig { out: Some(run.clone()), ..given.clone() }.resolve()?;
            train_with(cfg, Start::Resume { given }, progress, comm.as_ref())
                .with_context(|| format!("resuming {}", run.display()))
        }
        None => {
            let cfg = given.resolve()?;
            let out = cfg.out.clone();
            train_with(cfg, Start::New, progress, comm.as_ref())
                .with_context(|| format!("training into {}", out.display()))
        }
    };
    // A failed rank takes the whole job down instead of leaving the others in a collective.
    let summary = match result {
        Err(e) if comm.size() > 1 => {
            eprintln!("error (rank {} of {}): {e:#}", comm.rank(), comm.size());
            comm.abort(1)
        }
        r => r?,
    };
    if !comm.is_root() {
        return Ok(());
    }
    println!(
        "run: {} ({} iterations, θ checksum {:016x})",
        summary.dir.display(),
        summary.iterations,
        summary.checksum
    );
    if let (Some(first), Some(last)) = (&summary.first_eval, &summary.last_eval) {
        println!("first {}", eval_summary(first));
        println!("last  {}", eval_summary(last));
    }
    Ok(())
}

/// MPI when built with the `mpi` feature (a process started without `mpirun` is a world of one),
/// otherwise a single process.
fn communicator() -> Box<dyn Comm> {
    #[cfg(feature = "mpi")]
    if let Some(c) = evotune::run::comm::mpi::MpiComm::init() {
        return Box::new(c);
    }
    Box::new(SingleProcess)
}
