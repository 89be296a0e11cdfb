//! `evotune`: the command-line tool. `main` parses the flags, runs one command and turns its
//! result into an exit code: 0 on success, 1 on an error (printed as one line with its causes),
//! 2 for bad usage (clap's own exit), 130 when Ctrl-C stopped a run (the shell's code for SIGINT).

mod args;
mod cmd;
mod interrupt;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    interrupt::install();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let interrupted = err
                .chain()
                .any(|e| matches!(e.downcast_ref::<evotune::Error>(), Some(evotune::Error::Interrupted { .. })));
            if interrupted {
                eprintln!("stopped: {err:#}");
                return ExitCode::from(130);
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
