//! The run directory: paths, atomic writes, and append-only JSON-lines logs.
//!
//! Whole files (config, checkpoints, exports) are written atomically: temp file in the same
//! directory, fsync, rename. The two logs are append-only: each line goes out in one `write` and is
//! fsynced before the next iteration starts, so a killed run leaves at most one partial last line,
//! which [`RunDir::read_lines`] drops (and [`RunDir::truncate_log`] removes) on resume.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

pub const CONFIG: &str = "config.toml";
pub const TRAJECTORY: &str = "trajectory.jsonl";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINTS: &str = "checkpoints";
pub const PLOTS: &str = "plots";

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).with_path(&tmp)?;
        f.write_all(bytes).with_path(&tmp)?;
        f.sync_all().with_path(&tmp)?;
        fs::rename(&tmp, path).with_path(path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl RunDir {
    /// Creates a new run directory; refuses one that already holds a run.
    pub fn create(root: &Path) -> Result<Self> {
        if root.join(CONFIG).exists() || root.join(TRAJECTORY).exists() {
            return Err(Error::RunDir {
                path: root.to_owned(),
                problem: "already holds a run; continue it with `--resume` or choose another `--out`".into(),
            });
        }
        fs::create_dir_all(root).with_path(root)?;
        Ok(RunDir { root: root.to_owned() })
    }

    /// A handle on `root` that neither creates nor checks anything (for ranks that only read).
    pub fn at(root: &Path) -> Self {
        RunDir { root: root.to_owned() }
    }

    /// Opens an existing run directory (for resume, replay, export, report).
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join(CONFIG).is_file() {
            return Err(Error::RunDir { path: root.to_owned(), problem: format!("no {CONFIG}: not a run directory") });
        }
        Ok(RunDir { root: root.to_owned() })
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

    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_path(parent)?;
        }
        write_atomic(&path, bytes)
    }

    /// Appends one line (serialised value + '\n') in a single write, then fsyncs.
    pub fn append_line<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name);
        let mut line =
            serde_json::to_string(value).map_err(|e| Error::RunDir { path: path.clone(), problem: e.to_string() })?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(&path).with_path(&path)?;
        f.write_all(line.as_bytes()).with_path(&path)?;
        f.sync_data().with_path(&path)?;
        Ok(())
    }

    /// Complete lines of a log (a trailing partial line from a killed run is ignored), each with
    /// its 1-based line number. A missing file has no lines.
    pub fn read_lines(&self, name: &str) -> Result<Vec<(usize, String)>> {
        let path = self.path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        Ok(complete
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect())
    }

    /// Rewrites a log keeping only the lines `keep` accepts (atomically).
    pub fn truncate_log(&self, name: &str, keep: impl Fn(&str) -> bool) -> Result<()> {
        let lines = self.read_lines(name)?;
        let mut out = String::new();
        for (_, l) in lines.iter().filter(|(_, l)| keep(l)) {
            out.push_str(l);
            out.push('\n');
        }
        write_atomic(&self.path(name), out.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path()).unwrap();
        dir.append_line(METRICS, &serde_json::json!({"a": 1})).unwrap();
        dir.append_line(METRICS, &serde_json::json!({"a": 2})).unwrap();
        let mut f = OpenOptions::new().append(true).open(dir.path(METRICS)).unwrap();
        f.write_all(b"{\"a\": 3").unwrap();
        let lines = dir.read_lines(METRICS).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], (2, "{\"a\":2}".to_string()));
        dir.truncate_log(METRICS, |_| true).unwrap();
        assert_eq!(fs::read_to_string(dir.path(METRICS)).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn create_refuses_existing_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path()).unwrap();
        dir.write_file(CONFIG, b"x = 1\n").unwrap();
        let e = RunDir::create(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        assert!(RunDir::open(tmp.path()).is_ok());
    }
}
