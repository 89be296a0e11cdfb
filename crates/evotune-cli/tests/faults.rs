//! Faults a user causes by accident, on the real binary and the real default model: a second
//! process on a run directory that is being written, and Ctrl-C (a real SIGINT) during training.
//! The `random` task keeps each iteration to a second or two (no generation).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{evotune, model};

/// A long `random` run into `out`, started in the background.
fn start_long_run(model: &Path, out: &Path) -> Child {
    evotune()
        .args(["train", "--quiet", "--task", "random", "--population", "4", "--iterations", "500"])
        .args(["--eval-every", "0", "--threads", "1", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evotune train")
}

/// Complete lines of the run's trajectory (and whether the file ends with a newline).
fn trajectory(out: &Path) -> (Vec<serde_json::Value>, bool) {
    let text = std::fs::read_to_string(out.join("trajectory.jsonl")).unwrap_or_default();
    let lines = text.lines().map(|l| serde_json::from_str(l).expect("a complete JSON line")).collect();
    (lines, text.is_empty() || text.ends_with('\n'))
}

fn wait_for_iterations(out: &Path, n: usize, child: &mut Child) {
    let t = Instant::now();
    while trajectory(out).0.len() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended early with {status}");
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no iteration {n} after 300 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_writer_is_refused_and_ctrl_c_stops_cleanly() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut first = start_long_run(&model, &out);
    wait_for_iterations(&out, 1, &mut first);

    // A second writer on the same directory stops at once, naming the directory and the holder.
    let second = evotune().args(["train", "--quiet", "--resume"]).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("process {}", first.id())), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    // So does a new run into it (it already holds a run, and it is locked).
    let third = evotune().args(["train", "--quiet", "--task", "random", "--out"]).arg(&out).output().unwrap();
    assert_eq!(third.status.code(), Some(1));

    // Ctrl-C: the run finishes its iteration, writes nothing partial, says how to resume, exits 130.
    let status = Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap();
    assert!(status.success());
    let done = wait_with_timeout(first, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume") && err.contains(&out.display().to_string()), "{err}");
    let (steps, complete) = trajectory(&out);
    assert!(complete, "the trajectory ends in a partial line");
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["iteration"].as_u64(), Some(i as u64));
    }
    let k = steps.len();
    assert!(k < 500, "the run was not stopped");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.ends_with('\n'));
    let iteration_lines = metrics
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"] == "iteration")
        .count();
    assert_eq!(iteration_lines, k);

    // The lock went with the process: the run resumes and extends.
    let resumed = evotune()
        .args(["train", "--quiet", "--resume"])
        .arg(&out)
        .args(["--iterations", &(k + 1).to_string()])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(trajectory(&out).0.len(), k + 1);
}

#[test]
fn a_member_with_non_finite_logits_follows_the_nonfinite_reward_policy() {
    // σ = 1e10 makes every perturbed weight ~1e10: the activations overflow and each member's
    // logits are NaN from the first step. (A far larger σ overflows the RMSNorm scale to zero instead.)
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &str, policy: &str| {
        let perturbation = if out.starts_with("lowrank") { "lowrank" } else { "full" };
        evotune()
            .args(["train", "--quiet", "--task", "arith", "--population", "2", "--sigma", "1e10"])
            .args(["--perturbation", perturbation])
            .args(["--iterations", "1", "--eval-every", "0", "--task-opt", "train_size=1", "--threads", "1"])
            .args(["--nonfinite-reward", policy, "--model"])
            .arg(&model)
            .arg("--out")
            .arg(tmp.path().join(out))
            .output()
            .unwrap()
    };
    let stopped = run("error", "error");
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(1), "{err}");
    assert!(err.contains("member 0") && err.contains("non-finite") && err.contains("worst"), "{err}");

    // Full rank (one member at a time) and low rank (the population in one batch, which is run
    // again without each member that diverges).
    for out in ["worst", "lowrank-worst"] {
        let ranked = run(out, "worst");
        let err = String::from_utf8_lossy(&ranked.stderr);
        assert!(ranked.status.success(), "{out}: {err}");
        assert!(err.contains("member 0") && err.contains("member 1") && err.contains("ranked worst"), "{out}: {err}");
        // No reward was finite, so the step moved nothing: coefficients are all zero.
        let line = std::fs::read_to_string(tmp.path().join(out).join("trajectory.jsonl")).unwrap();
        let step: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(step["coefficients"], serde_json::json!([0.0, 0.0]), "{line}");
        assert_eq!(step["rewards"], serde_json::json!(["NaN", "NaN"]), "{line}");
    }
}
