//! Distributed training under `mpirun` (built with `--features mpi`; needs OpenMPI's `mpirun`):
//! K ranks split the population, gather rewards and apply identical updates, and the weights they
//! end with are byte-identical to a single-process run of the same config — for K = 2 and for K = 3
//! with N = 8 (3 does not divide 8).
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn model() -> PathBuf {
    if let Ok(p) = std::env::var("EVOTUNE_MODEL") {
        return PathBuf::from(p);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_evotune")).arg("fetch-model").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn train_args(model: &Path, out: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        ["train", "--quiet", "--task", "arith", "--population", "8", "--iterations", "2", "--seed", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    v.extend(["--eval-every", "0", "--checkpoint-every", "2", "--threads", "1"].iter().map(|s| s.to_string()));
    v.extend(["--task-opt", "train_size=3", "--task-opt", "max_new_tokens=6"].iter().map(|s| s.to_string()));
    v.push("--model".into());
    v.push(model.display().to_string());
    v.push("--out".into());
    v.push(out.display().to_string());
    v
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ranks_match_a_single_process_bit_for_bit() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    run(Command::new(env!("CARGO_BIN_EXE_evotune")).args(train_args(&model, &single)));
    let reference = std::fs::read(single.join("checkpoints/iter-000002.safetensors")).unwrap();
    for ranks in [2, 3] {
        let out = tmp.path().join(format!("mpi{ranks}"));
        run(Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &ranks.to_string()])
            .arg(env!("CARGO_BIN_EXE_evotune"))
            .args(train_args(&model, &out)));
        assert_eq!(
            std::fs::read_to_string(single.join("trajectory.jsonl")).unwrap(),
            std::fs::read_to_string(out.join("trajectory.jsonl")).unwrap(),
            "{ranks} ranks: trajectory differs"
        );
        assert_eq!(
            reference,
            std::fs::read(out.join("checkpoints/iter-000002.safetensors")).unwrap(),
            "{ranks} ranks: weights differ"
        );
    }
}
