//! `evotune bench` refuses bad arguments with an error (exit status 1), never a panic. No model
//! file needed.

use std::process::Command;

fn evotune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evotune"))
}

#[test]
fn bench_es_with_a_population_of_one_is_an_error() {
    let out = evotune().args(["bench", "es", "--dim", "1024", "--population", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("population") && err.contains("1 members"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Without the `bench` feature candle is not compiled in: `bench generate` says how to get it.
#[cfg(not(feature = "bench"))]
#[test]
fn bench_generate_without_the_feature_says_to_rebuild() {
    let out = evotune().args(["bench", "generate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--features bench"), "{err}");
}
