//! The trajectory log: one [`StepRecord`] per iteration as a JSON line, and replay.
//!
//! θ_K is a pure function of (θ0, ES parameters, records 0..K): [`replay_onto`] calls
//! [`Strategy::apply`], the code path training uses, so it reproduces θ_K bit for bit. It reads
//! only members and coefficients, never rewards. Training resumes, `evotune replay` / `export` /
//! `eval --run` rebuild θ_K, and the tests check both, all through this one reader and this one
//! replay.
//!
//! Reading follows the log rules of [`crate::files`]: a partial last line (a kill mid-write) is not
//! a record; a complete line that does not parse, or whose iteration is not the next one, is an
//! error naming the file and the line.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::es::step::StepRecord;
use crate::es::strategy::{EsState, Strategy};
use crate::files;
use crate::model::Params;

/// One record as one JSON line (no trailing newline).
pub fn to_line(record: &StepRecord) -> String {
    serde_json::to_string(record).expect("a StepRecord always serialises")
}

/// Parses line `line` (1-based) of `path`.
pub fn parse_line(path: &Path, line: usize, text: &str) -> Result<StepRecord> {
    serde_json::from_str(text).map_err(|e| Error::Trajectory { path: path.to_path_buf(), line, problem: e.to_string() })
}

/// Reads every record of a trajectory log (blank lines are skipped, a partial last line is not a
/// record); iterations must run 0, 1, 2, … without gaps. A missing file holds no records.
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    let mut out: Vec<StepRecord> = Vec::new();
    for (line, text) in files::complete_lines(path)? {
        let record = parse_line(path, line, &text)?;
        let expected = out.len() as u64;
        if record.iteration != expected {
            return Err(Error::Trajectory {
                path: path.to_path_buf(),
                line,
                problem: format!(
                    "iteration {}, expected {expected} (records must be consecutive from 0)",
                    record.iteration
                ),
            });
        }
        out.push(record);
    }
    Ok(out)
}

/// Writes `records` to `w`, one JSON line each.
pub fn write(mut w: impl Write, records: &[StepRecord]) -> std::io::Result<()> {
    for r in records {
        writeln!(w, "{}", to_line(r))?;
    }
    Ok(())
}

/// θ after applying the records of iterations `0..upto` to θ0 (all of them if fewer).
pub fn replay(strategy: &Strategy, theta0: Params, records: &[StepRecord], upto: u64) -> Result<EsState> {
    let mut state = EsState::new(theta0);
    replay_onto(strategy, &mut state, records, upto)?;
    Ok(state)
}

/// Applies the records with `state.iteration ≤ iteration < upto` to `state`, in order: the one
/// replay loop (resume, `replay`, `export`, `eval --run`).
pub fn replay_onto(strategy: &Strategy, state: &mut EsState, records: &[StepRecord], upto: u64) -> Result<()> {
    for r in records {
        if r.iteration >= upto {
            break;
        }
        if r.iteration < state.iteration {
            continue;
        }
        strategy.apply(state, r)?;
    }
    Ok(())
}
