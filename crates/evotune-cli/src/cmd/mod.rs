//! One file per subcommand.

mod attribute;
mod bench;
mod demo;
mod eval;
mod export;
mod fetch_model;
mod generate;
mod replay;
mod report;
mod train;

use crate::args::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::FetchModel => fetch_model::run(),
        Command::Generate(a) => generate::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Export(a) => export::run(a),
        Command::Attribute(a) => attribute::run(a),
        Command::Report(a) => report::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
    }
}

/// Runs `f` on a rayon pool of `threads` threads (0 = all cores).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    Ok(pool.install(f))
}
