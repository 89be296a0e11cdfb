//! What the CLI test files share: the binary under test and the default model.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `evotune` binary built for these tests.
pub fn evotune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evotune"))
}

/// The default model: $EVOTUNE_MODEL, else fetched into the cache by `evotune fetch-model`.
pub fn model() -> PathBuf {
    if let Ok(p) = std::env::var("EVOTUNE_MODEL") {
        return PathBuf::from(p);
    }
    let out = evotune().arg("fetch-model").output().expect("run evotune fetch-model");
    assert!(out.status.success(), "fetch-model failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Runs `cmd` and returns its output; a failure shows its status, stdout and stderr.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn evotune");
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
