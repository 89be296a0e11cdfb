//! The files of a run directory that `--resume`, `replay`, `export` and `report` read back —
//! `config.toml`, `trajectory.jsonl`, `metrics.jsonl` — mutated the way disks and editors damage
//! files: truncated, bits flipped, bytes spliced in, lines duplicated, numbers made huge. Every
//! mutation must end in `Ok` or a clear `Err`, never a panic, and a partial last line is never an
//! error. `EVOTUNE_FUZZ_CASES` sets the number of cases per file (default 1000; the documented
//! longer run in docs/reliability.md uses 100000).

use std::path::Path;

use evotune::es::{trajectory, Drift, Member, StepDrift, StepRecord};
use evotune::run::report::RunSeries;
use evotune::run::{EvalLine, IterationLine, MetricsLine, PartialConfig, RunConfig, RunDir};
use evotune::tasks::TaskScore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("EVOTUNE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// A real run directory's files, as training writes them (3 iterations, an eval line).
fn seed_files() -> (String, String, String) {
    let cfg = PartialConfig {
        priors: Some(vec!["capitals".into(), "kl".into()]),
        out: Some("runs/x".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let steps: Vec<StepRecord> = (0..3)
        .map(|t| StepRecord {
            iteration: t,
            members: (0..8).map(|i| Member { index: i, noise_id: i as u32, sign: 1.0 }).collect(),
            rewards: vec![0.1, f32::NAN, 0.3, 0.25, 1e-7, 0.0, 0.5, f32::INFINITY],
            coefficients: vec![0.5, -1.25, 0.75, 0.1, -0.3, 0.2, 1.5, -0.1],
            // A drift-budgeted step's λ and measured drift (one line of the three).
            awd_lambda: (t == 1).then_some(8.25),
            drift: (t == 1).then_some(StepDrift { before: 1.5, stepped: 1.75, after: 1.625 }),
        })
        .collect();
    let mut traj = Vec::new();
    trajectory::write(&mut traj, &steps).unwrap();
    let score = |task: &str, accuracy: f64| TaskScore {
        task: task.into(),
        accuracy,
        mean_reward: accuracy,
        metrics: [("items".to_string(), 48.0)].into_iter().collect(),
    };
    let drift = Drift {
        total: 1.5,
        per_layer: vec![1.0, 0.5],
        outside_layers: 0.25,
        per_kind: [("q".to_string(), 1.0)].into_iter().collect(),
        per_tensor: vec![1.0, 0.5, 0.25],
        moved_fraction: Some(0.5),
    };
    let lines = [
        MetricsLine::Eval(EvalLine {
            iteration: 0,
            target: score("arith", 0.1),
            priors: vec![score("capitals", 0.7), score("kl", f64::NAN)],
            drift: drift.clone(),
            seconds: 1.5,
            codes_moved: None,
        }),
        MetricsLine::Iteration(IterationLine {
            iteration: 1,
            reward_mean: 0.1,
            reward_std: 0.05,
            reward_min: 0.0,
            reward_max: 0.3,
            drift: 12.5,
            eval_seconds: 1.0,
            update_seconds: 0.5,
            seconds: 1.6,
            codes_stepped: None,
            awd_lambda: Some(8.25),
            drift_target: Some(2.0),
            grpo: Some(evotune::run::metrics::GrpoLine {
                loss: 0.01,
                kl: 0.002,
                clip_fraction: 0.0,
                grad_norm: 0.7,
                completion_tokens: 300,
                train_tokens_per_second: 90.0,
                peak_rss_bytes: Some(3 << 30),
            }),
        }),
    ];
    let metrics: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    (cfg.to_toml(), String::from_utf8(traj).unwrap(), metrics)
}

/// One damaged copy of `bytes`.
fn mutation() -> impl Strategy<Value = (u8, usize, Vec<u8>)> {
    (0u8..6, any::<usize>(), proptest::collection::vec(any::<u8>(), 0..24))
}

fn mutate(bytes: &[u8], (kind, at, junk): &(u8, usize, Vec<u8>)) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = if b.is_empty() { 0 } else { at % b.len() };
    match kind {
        0 => b.truncate(at),
        1 => {
            if !b.is_empty() {
                b[at] ^= 1 << (junk.first().copied().unwrap_or(0) % 8);
            }
        }
        2 => {
            b.splice(at..at, junk.iter().copied());
        }
        3 => {
            // Duplicate a stretch (a line written twice, a block copied by a tool).
            let end = (at + 1 + junk.len() * 8).min(b.len());
            let copy = b[at..end].to_vec();
            b.splice(at..at, copy);
        }
        4 => {
            // A number made huge or negative, where a digit was.
            if let Some(p) = b[at..].iter().position(|c| c.is_ascii_digit()) {
                let huge: &[u8] = match junk.len() % 3 {
                    0 => b"99999999999999999999999",
                    1 => b"-1",
                    _ => b"1e400",
                };
                b.splice(at + p..at + p + 1, huge.iter().copied());
            }
        }
        _ => b = junk.clone(),
    }
    b
}

/// Reads the damaged run directory the way every command does; errors are fine, panics are not.
fn read_everything(dir: &Path) {
    let _ = RunConfig::from_file(&dir.join("config.toml"));
    let run = RunDir::at(dir);
    let _ = run.trajectory();
    let _ = run.read_lines("metrics.jsonl");
    let _ = RunSeries::read(dir);
}

fn fuzz(which: usize) {
    let seeds = seed_files();
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&mutation(), |m| {
            let files = [&seeds.0, &seeds.1, &seeds.2];
            for (i, (name, text)) in ["config.toml", "trajectory.jsonl", "metrics.jsonl"].iter().zip(files).enumerate()
            {
                let bytes = if i == which { mutate(text.as_bytes(), &m) } else { text.as_bytes().to_vec() };
                std::fs::write(tmp.path().join(name), bytes).unwrap();
            }
            read_everything(tmp.path());
            Ok(())
        })
        .unwrap();
}

#[test]
fn damaged_config_toml_never_panics() {
    fuzz(0);
}

#[test]
fn damaged_trajectory_never_panics() {
    fuzz(1);
}

#[test]
fn damaged_metrics_never_panics() {
    fuzz(2);
}

#[test]
fn the_seed_files_read_back_and_a_partial_last_line_is_dropped() {
    let (config, traj, metrics) = seed_files();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.toml"), &config).unwrap();
    std::fs::write(tmp.path().join("metrics.jsonl"), &metrics).unwrap();
    // Every cut inside the last line leaves the first two records; a cut inside an earlier line
    // (no newline after it) is not a partial *last* line of a complete log, so it reads fewer.
    let last_start = traj[..traj.len() - 1].rfind('\n').unwrap() + 1;
    for cut in last_start..traj.len() {
        std::fs::write(tmp.path().join("trajectory.jsonl"), &traj[..cut]).unwrap();
        let records = RunDir::at(tmp.path()).trajectory().unwrap();
        assert_eq!(records.len(), 2, "cut at byte {cut}");
    }
    std::fs::write(tmp.path().join("trajectory.jsonl"), &traj).unwrap();
    assert_eq!(RunDir::at(tmp.path()).trajectory().unwrap().len(), 3);
    let series = RunSeries::read(tmp.path()).unwrap();
    assert_eq!(series.reward_mean, vec![(1, 0.1)]);
    // A corrupt line in the middle is an error naming the file and the line.
    let bad = traj.replacen("\"iteration\":1", "\"iteration\":\"x\"", 1);
    std::fs::write(tmp.path().join("trajectory.jsonl"), bad).unwrap();
    let e = RunDir::at(tmp.path()).trajectory().unwrap_err().to_string();
    assert!(e.contains("trajectory.jsonl:2"), "{e}");
}
