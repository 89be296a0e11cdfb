//! `evotune bench` refuses bad arguments with an error (exit status 1), never a panic, and
//! `--json` prints only JSON lines on stdout. No model file needed.

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

/// `bench es --json` at a small d (well under a second): stdout is one JSON object with the machine
/// and the figures, the human text goes to stderr.
#[test]
fn bench_es_json_prints_one_object_with_the_machine_and_the_figures() {
    let out = evotune().args(["bench", "es", "--dim", "100000", "--population", "2", "--json"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(["Avx512", "Avx2Fma", "Portable"].contains(&v["simd"].as_str().unwrap_or_default()), "{v}");
    assert!(v["threads"].as_u64().is_some_and(|t| t >= 1), "{v}");
    assert_eq!(v["d"], 100000);
    assert_eq!(v["population"], 2);
    for key in ["noise_gnps_1thread", "noise_gnps_all", "noise_pass_s", "update_s", "update_vs_n_passes"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    assert!(v["noise_gnps_by_level"]["Portable"].as_f64().is_some(), "{v}");
    // The human text, machine line included, is on stderr.
    assert!(err.contains("ES engine") && err.contains("CPU: ") && err.contains("SIMD: "), "{err}");
}

/// With `EVOTUNE_SIMD=portable` the JSON and the header say so.
#[test]
fn bench_es_json_reports_the_capped_level() {
    let out = evotune()
        .args(["bench", "es", "--dim", "100000", "--population", "2", "--json"])
        .env("EVOTUNE_SIMD", "portable")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["simd"], "Portable", "{v}");
    assert_eq!(v["simd_cap"], "portable", "{v}");
    assert!(err.contains("SIMD: Portable (EVOTUNE_SIMD=portable)"), "{err}");
}
