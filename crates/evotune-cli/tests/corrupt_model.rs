//! The real binary on a copy of the default model with 4 KB of random bytes (fixed seed) written
//! into the middle of its tensor data: `generate` and `eval` must fail (exit status 1) with an
//! error naming the file and the tensor, not print garbage and exit 0.
//!
//! The default model comes from `$EVOTUNE_MODEL` or `evotune fetch-model`. Without it the test is
//! skipped with a note, unless `CI` is set: then a missing model is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evotune::model::gguf::GgufFile;

fn evotune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evotune"))
}

fn model() -> Option<PathBuf> {
    let found = match std::env::var_os("EVOTUNE_MODEL") {
        Some(p) => Ok(PathBuf::from(p)),
        None => match evotune().arg("fetch-model").output() {
            Ok(out) if out.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
            Ok(out) => Err(format!("fetch-model failed: {}", String::from_utf8_lossy(&out.stderr))),
            Err(e) => Err(format!("cannot run evotune fetch-model: {e}")),
        },
    };
    match found {
        Ok(p) if p.is_file() => Some(p),
        Ok(p) => fail_or_skip(format!("{} is not a file", p.display())),
        Err(e) => fail_or_skip(e),
    }
}

fn fail_or_skip(why: String) -> Option<PathBuf> {
    if std::env::var_os("CI").is_some() {
        panic!("the default model is required when CI is set: {why}");
    }
    eprintln!("SKIP: default model unavailable: {why}");
    None
}

/// Copies `model` to `dir`, overwrites 4096 bytes in the middle of its tensor data with xorshift
/// bytes, and returns the copy and the names of the tensors whose data the bytes hit.
fn corrupt_copy(model: &Path, dir: &Path) -> (PathBuf, Vec<String>) {
    let copy = dir.join("corrupt.gguf");
    std::fs::copy(model, &copy).unwrap();
    let g = GgufFile::open(&copy).unwrap();
    let len = std::fs::metadata(&copy).unwrap().len() as usize;
    let start = g.data_offset + (len - g.data_offset) / 2 - 2048;
    let end = start + 4096;
    let hit: Vec<String> = g
        .tensors
        .iter()
        .filter(|t| {
            let a = g.data_offset + t.offset;
            a < end && a + t.n_bytes.unwrap_or(0) > start
        })
        .map(|t| t.name.clone())
        .collect();
    drop(g);
    let mut bytes = std::fs::read(&copy).unwrap();
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    for b in &mut bytes[start..end] {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = (s >> 32) as u8;
    }
    std::fs::write(&copy, bytes).unwrap();
    (copy, hit)
}

fn assert_fails_naming(out: &Output, file: &Path, tensors: &[String]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure; stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(&file.display().to_string()), "the error does not name the file: {err}");
    assert!(
        tensors.iter().any(|t| err.contains(&format!("tensor `{t}`"))),
        "the error names none of {tensors:?}: {err}"
    );
    assert!(err.contains("not finite") || err.contains("must be finite"), "{err}");
}

#[test]
fn random_bytes_in_tensor_data_fail_generate_and_eval_naming_file_and_tensor() {
    let Some(model) = model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (copy, hit) = corrupt_copy(&model, tmp.path());
    assert!(!hit.is_empty(), "the corrupted range lies in no tensor");

    let out = evotune()
        .args(["generate", "--prompt", "What is the capital of France?", "--model"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_fails_naming(&out, &copy, &hit);
    assert!(out.stdout.is_empty(), "generate printed output: {}", String::from_utf8_lossy(&out.stdout));

    let out = evotune().args(["eval", "--task", "capitals", "--limit", "8", "--model"]).arg(&copy).output().unwrap();
    assert_fails_naming(&out, &copy, &hit);
}
