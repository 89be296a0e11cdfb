//! `evotune`: the command-line tool. `main` parses the flags, runs one command and turns its
//! result into an exit code: 0 on success, 1 on an error (printed as one line with its causes),
//! 2 for bad usage (clap's own exit).

mod args;
mod cmd;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
