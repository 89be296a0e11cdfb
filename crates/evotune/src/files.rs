//! Files that must survive a kill at any moment: atomic whole-file writes and append-only
//! JSON-lines logs.
//!
//! - A whole file (config, checkpoint, export, report) is written to a temporary sibling, flushed,
//!   fsynced and renamed onto its path, so a reader sees the old file or the new one, never a mix.
//! - A log line goes out in one `write` and is fsynced before the caller goes on. A kill can
//!   therefore leave at most one partial last line, with no newline: [`complete_lines`] does not
//!   count it as a line, and [`rewrite_lines`] drops it for good. A line that ends in a newline is
//!   complete, and a complete line that does not parse is an error of the file (its reader says
//!   which line), never skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

/// Atomic file write: `fill` writes into `path`'s temporary sibling, which is flushed, fsynced
/// and renamed onto `path`; the directory is fsynced so the rename survives a crash. On any error
/// the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Best effort: not every platform lets a directory be opened and synced.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_path(path)
}

/// [`write_atomic`] of a byte string.
pub fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Appends `value` as one JSON line (one `write`), then fsyncs.
pub fn append_line<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut line =
        serde_json::to_string(value).map_err(|e| Error::RunDir { path: path.to_owned(), problem: e.to_string() })?;
    line.push('\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path).with_path(path)?;
    f.write_all(line.as_bytes()).with_path(path)?;
    f.sync_data().with_path(path)?;
    Ok(())
}

/// The complete, non-blank lines of a log with their 1-based line numbers; a partial last line
/// (no newline: a kill mid-write) is not one. A missing file has no lines.
pub fn complete_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => &text[..=i],
        None => &[][..],
    };
    let complete = std::str::from_utf8(complete).map_err(|e| Error::RunDir {
        path: path.to_owned(),
        problem: format!("not UTF-8 text (byte {})", e.valid_up_to()),
    })?;
    Ok(complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect())
}

/// Rewrites a log atomically with only the complete lines `keep` accepts.
pub fn rewrite_lines(path: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    let lines = complete_lines(path)?;
    write_atomic(path, |w| {
        for (_, l) in lines.iter().filter(|(_, l)| keep(l)) {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_not_a_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.jsonl");
        append_line(&path, &serde_json::json!({"a": 1})).unwrap();
        append_line(&path, &serde_json::json!({"a": 2})).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"a\": 3").unwrap();
        let lines = complete_lines(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], (2, "{\"a\":2}".to_string()));
        rewrite_lines(&path, |_| true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}
