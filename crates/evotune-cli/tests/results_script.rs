//! `scripts/results.py --quick` end to end: the results page script runs every part on tiny real
//! runs of the default model, renders the page and its plots, and its drift-law table holds.
//! Keeps the script from rotting; takes two to three minutes on 2 cores.

use std::path::{Path, PathBuf};
use std::process::Command;

fn evotune() -> &'static str {
    env!("CARGO_BIN_EXE_evotune")
}

/// The default model: $EVOTUNE_MODEL, else fetched into the cache by `evotune fetch-model`.
fn model() -> PathBuf {
    if let Ok(p) = std::env::var("EVOTUNE_MODEL") {
        return PathBuf::from(p);
    }
    let out = Command::new(evotune()).arg("fetch-model").output().expect("run evotune fetch-model");
    assert!(out.status.success(), "fetch-model failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The rows of the first Markdown table after `heading`, as cells.
fn table_after(page: &str, heading: &str) -> Vec<Vec<String>> {
    let start = page.find(heading).unwrap_or_else(|| panic!("no `{heading}` in the page"));
    page[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| "))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|---"))
        .skip(1)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn quick_mode_runs_every_part_and_the_drift_law_holds() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(repo.join("scripts/results.py"))
        .args(["--quick", "--threads", "2", "--evotune", evotune(), "--model"])
        .arg(model())
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run python3 scripts/results.py");
    assert!(status.success(), "results.py --quick failed: {status}");
    let page = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    for heading in [
        "## 1. Drift law",
        "## 2. Target learning",
        "## 3. Forgetting",
        "## 4. λ sweep",
        "## 5. Findings",
        "## 6. QES",
        "## 7. Drift budget",
        "## 9. GRPO",
    ] {
        assert!(page.contains(heading), "the page lacks `{heading}`");
    }
    // Part 1: columns N | run | seed | T | predicted | stationary | measured | ratio. Random rewards make
    // ‖θ_T−θ0‖ a sum of d ≈ 1.3e8 independent squares: measured/predicted is 1 within ~1e-4 (closed
    // forms for ES and AWD-l2, an exact-threshold grid for AWD-l1).
    let rows = table_after(&page, "## 1. Drift law");
    assert_eq!(rows.len(), 9, "3 runs × T ∈ {{1, 2, 3}}: {rows:?}");
    for r in &rows {
        let ratio: f64 = r[7].parse().unwrap();
        assert!((ratio - 1.0).abs() < 1e-3, "drift law off: {r:?}");
    }
    // Part 4's table has a row per λ (0, each kind's default, and the sweep's extra one of each).
    assert_eq!(table_after(&page, "## 4. λ sweep").len(), 5);
    // Part 6: f32 full and low rank, QES with and without feedback, 8-bit QES; the codes-moved column
    // is a percentage for the QES rows only.
    let rows = table_after(&page, "## 6. QES");
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in &rows {
        let is_qes = r[0].starts_with("QES");
        assert_eq!(r[8].parse::<f64>().is_ok(), is_qes, "{r:?}");
    }
    // Part 7: the budget run (its λ_T a number) and the fixed λ (no λ_T).
    let rows = table_after(&page, "## 7. Drift budget");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0][0].starts_with("budget kl=") && rows[0][7].parse::<f64>().is_ok(), "{rows:?}");
    assert_eq!(rows[1][7], "–", "{rows:?}");
    // Part 9: ES, ES + AWD-l2 and GRPO at the end of their runs; GRPO moved fewer weights than all
    // and its drift is a number (the density column is a fraction).
    let rows = table_after(&page, "## 9. GRPO");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[2][0].starts_with("GRPO"), "{rows:?}");
    for r in &rows {
        let moved: f64 = r[10].parse().unwrap_or_else(|_| panic!("{r:?}"));
        assert!((0.0..=1.0).contains(&moved), "{r:?}");
    }
    assert!(rows[2][9].parse::<f64>().unwrap() > 0.0, "GRPO did not move θ: {rows:?}");
    for png in ["p1/drift.png", "p2-s1/target_reward.png", "p2-s1/prior_capitals.png"] {
        let p = out.path().join("results").join(png);
        assert!(std::fs::metadata(&p).map(|m| m.len() > 1000).unwrap_or(false), "missing plot {}", p.display());
    }
}
