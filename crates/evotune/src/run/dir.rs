//! The run directory: its paths, its stored config and trajectory, and the lock of the one process
//! that writes it.
//!
//! Whole files are written atomically and the two logs are append-only, with the rules of
//! [`crate::files`]: a killed run leaves at most one partial last line, which readers ignore and
//! [`RunDir::drop_partial_lines`] removes on resume.
//!
//! A process that writes a run ([`RunDir::create`], [`RunDir::resume`]) holds an exclusive advisory
//! lock on `RUN/.lock` (as cargo locks its build directory) until its `RunDir` is dropped; the lock
//! file holds the writer's pid. A second writer stops at once with an error naming the directory
//! and that pid. The kernel releases the lock when the process dies, however it dies, so a killed
//! run never leaves a stale lock. Readers (`replay`, `export`, `report`, `eval --run`) take no lock.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoResultExt, Result};
use crate::es::{trajectory, StepRecord};
use crate::files;
use crate::run::config::RunConfig;

pub const CONFIG: &str = "config.toml";
pub const TRAJECTORY: &str = "trajectory.jsonl";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINTS: &str = "checkpoints";
pub const LOCK: &str = ".lock";

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    /// The writer's lock, held as long as any clone of this handle lives.
    _lock: Option<Arc<File>>,
}

impl RunDir {
    /// Creates a new run directory and locks it; refuses one that already holds a run.
    pub fn create(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).with_path(root)?;
        let lock = lock(root)?;
        if root.join(CONFIG).exists() || root.join(TRAJECTORY).exists() {
            return Err(Error::RunDir {
                path: root.to_owned(),
                problem: "already holds a run; continue it with `--resume` or choose another `--out`".into(),
            });
        }
        Ok(RunDir { root: root.to_owned(), _lock: Some(Arc::new(lock)) })
    }

    /// Opens an existing run directory to continue writing it, and locks it.
    pub fn resume(root: &Path) -> Result<Self> {
        let dir = Self::open(root)?;
        let lock = lock(root)?;
        Ok(RunDir { _lock: Some(Arc::new(lock)), ..dir })
    }

    /// A handle on `root` that neither creates, checks nor locks anything (for ranks that only read).
    pub fn at(root: &Path) -> Self {
        RunDir { root: root.to_owned(), _lock: None }
    }

    /// Opens an existing run directory to read it (replay, export, report).
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join(CONFIG).is_file() {
            return Err(Error::RunDir { path: root.to_owned(), problem: format!("no {CONFIG}: not a run directory") });
        }
        Ok(Self::at(root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn checkpoint_path(&self, iteration: u64) -> PathBuf {
        self.root.join(CHECKPOINTS).join(format!("iter-{iteration:06}.safetensors"))
    }

    /// The run's stored, resolved configuration.
    pub fn config(&self) -> Result<RunConfig> {
        RunConfig::from_file(&self.path(CONFIG))
    }

    /// The run's trajectory: every complete record, from iteration 0 (see [`trajectory::read`]).
    pub fn trajectory(&self) -> Result<Vec<StepRecord>> {
        trajectory::read(&self.path(TRAJECTORY))
    }

    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_path(parent)?;
        }
        files::write_atomic_bytes(&path, bytes)
    }

    /// Appends one JSON line to a log (one write, fsynced).
    pub fn append_line<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        files::append_line(&self.path(name), value)
    }

    /// Complete lines of a log, each with its 1-based line number (see [`files::complete_lines`]).
    pub fn read_lines(&self, name: &str) -> Result<Vec<(usize, String)>> {
        files::complete_lines(&self.path(name))
    }

    /// Rewrites a log keeping only the complete lines `keep` accepts (atomically).
    pub fn drop_partial_lines(&self, name: &str, keep: impl Fn(&str) -> bool) -> Result<()> {
        files::rewrite_lines(&self.path(name), keep)
    }
}

/// Takes the exclusive lock of the run directory `root` and writes this process's pid into it.
fn lock(root: &Path) -> Result<File> {
    let path = root.join(LOCK);
    let mut file =
        fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).with_path(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
            return Err(Error::RunDir {
                path: root.to_owned(),
                problem: format!("{who} is writing this run (it holds {LOCK}); wait for it to finish or stop it first"),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.set_len(0).with_path(&path)?;
    file.rewind().with_path(&path)?;
    write!(file, "{}", std::process::id()).with_path(&path)?;
    file.sync_data().with_path(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_existing_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path()).unwrap();
        dir.write_file(CONFIG, b"x = 1\n").unwrap();
        drop(dir);
        let e = RunDir::create(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        assert!(RunDir::open(tmp.path()).is_ok());
    }

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path()).unwrap();
        dir.write_file(CONFIG, b"x = 1\n").unwrap();
        let e = RunDir::resume(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("process {}", std::process::id())), "{e}");
        assert!(e.contains(&tmp.path().display().to_string()), "{e}");
        // Readers need no lock; the lock goes with the writer.
        assert!(RunDir::open(tmp.path()).is_ok());
        drop(dir);
        assert!(RunDir::resume(tmp.path()).is_ok());
    }
}
