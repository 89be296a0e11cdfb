//! The trajectory log: one [`StepRecord`] per iteration as a JSON line, and replay.
//!
//! θ_K is a pure function of (θ0, ES parameters, records 0..K): [`replay`] calls
//! [`Strategy::apply`], the code path training uses, so it reproduces θ_K bit for bit. It reads
//! only members and coefficients, never rewards.
//!
//! Floats round-trip exactly: serde_json writes an f32 as its shortest decimal form and reads it
//! back to the same f32 (checked by a test). JSON has no NaN or infinity, so non-finite rewards
//! are written as the strings `"NaN"`, `"inf"` and `"-inf"`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{Error, IoResultExt, Result};
use crate::es::strategy::{EsState, StepRecord, Strategy};
use crate::model::Params;

/// One record as one JSON line (no trailing newline).
pub fn to_line(record: &StepRecord) -> String {
    serde_json::to_string(record).expect("a StepRecord always serialises")
}

/// Parses line `line` (1-based) of `path`.
pub fn parse_line(path: &Path, line: usize, text: &str) -> Result<StepRecord> {
    serde_json::from_str(text).map_err(|e| Error::Trajectory { path: path.to_path_buf(), line, problem: e.to_string() })
}

/// Reads every record of a JSON-lines file (blank lines are skipped); checks that iterations
/// run 0, 1, 2, … without gaps.
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    let file = std::fs::File::open(path).with_path(path)?;
    let mut out: Vec<StepRecord> = Vec::new();
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let text = text.with_path(path)?;
        if text.trim().is_empty() {
            continue;
        }
        let record = parse_line(path, i + 1, &text)?;
        let expected = out.len() as u64;
        if record.iteration != expected {
            return Err(Error::Trajectory {
                path: path.to_path_buf(),
                line: i + 1,
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

/// Applies the records with `state.iteration ≤ iteration < upto` to `state` (for resuming).
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

/// serde helpers: `Vec<f32>` with non-finite values as strings (JSON has no NaN/inf).
pub mod lossless_f32s {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum F32OrText {
        Num(f32),
        Text(String),
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|&x| {
            if x.is_finite() {
                F32OrText::Num(x)
            } else if x.is_nan() {
                F32OrText::Text("NaN".into())
            } else if x > 0.0 {
                F32OrText::Text("inf".into())
            } else {
                F32OrText::Text("-inf".into())
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let raw = Vec::<F32OrText>::deserialize(d)?;
        raw.into_iter()
            .map(|x| match x {
                F32OrText::Num(v) => Ok(v),
                F32OrText::Text(t) => match t.as_str() {
                    "NaN" => Ok(f32::NAN),
                    "inf" => Ok(f32::INFINITY),
                    "-inf" => Ok(f32::NEG_INFINITY),
                    other => Err(serde::de::Error::custom(format!(
                        "reward `{other}`: expected a number, \"NaN\", \"inf\" or \"-inf\""
                    ))),
                },
            })
            .collect()
    }
}
