//! `evotune train --method grpo` on the tiny Llama 3 (untied head, rope scaling) and Qwen3 (q/k
//! norms, tied) models: it learns the conciseness reward, gives the same bytes for 1 and 2 threads
//! and at the portable SIMD level,
//! resumes (stopped or killed with SIGKILL) to the same bytes as an uninterrupted run, and its
//! weights export and generate. The gradients themselves are checked in the library
//! (`model::backprop` against finite differences, `tests/backprop_golden.rs` against PyTorch).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{evotune, run_ok};

fn tiny(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../evotune/tests/data/tiny").join(family).join("hf")
}

/// GRPO on conciseness prompts: 2 prompts × G = 4 completions of ≤ 6 tokens per step.
fn grpo(model: &Path, out: &Path, iterations: u64, extra: &[&str]) -> Command {
    let mut c = evotune();
    c.args(["train", "--quiet", "--method", "grpo", "--task", "conciseness", "--group", "4", "--lr", "0.01"])
        .args(["--task-opt", "minibatch=2", "--task-opt", "max_new_tokens=6", "--micro-batch", "3"])
        .args(["--iterations", &iterations.to_string(), "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn lines(run: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["type"] == kind)
        .collect()
}

fn state(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("grpo_state.bin")).unwrap()
}

#[test]
fn grpo_learns_is_thread_independent_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    for family in ["llama3", "qwen3"] {
        let run = tmp.path().join(family);
        run_ok(&mut grpo(&tiny(family), &run, 30, &["--eval-every", "30", "--prior", "kl", "--threads", "2"]));
        let steps = lines(&run, "iteration");
        assert_eq!(steps.len(), 30);
        let mean = |r: &[serde_json::Value]| r.iter().map(|l| l["reward_mean"].as_f64().unwrap()).sum::<f64>() / 5.0;
        let (first, last) = (mean(&steps[..5]), mean(&steps[25..]));
        assert!(last > first + 0.5, "{family}: conciseness reward {first:.3} → {last:.3} did not improve");
        let g = &steps[29]["grpo"];
        assert!(g["grad_norm"].as_f64().unwrap() > 0.0 && g["kl"].as_f64().unwrap() > 0.0, "{family}: {g}");
        assert!(g["peak_rss_bytes"].as_u64().unwrap() > 0 && g["completion_tokens"].as_u64().unwrap() > 0);
        let evals = lines(&run, "eval");
        let last_eval = evals.last().unwrap();
        assert_eq!(last_eval["iteration"], 30);
        assert!(last_eval["drift"]["total"].as_f64().unwrap() > 0.0);
        assert!(last_eval.to_string().contains("\"kl\""), "{last_eval}");
        if family == "qwen3" {
            assert!(last_eval["drift"]["per_kind"]["q_norm"].as_f64().unwrap() > 0.0, "{last_eval}");
        }

        // One thread: the same bytes (θ, moments, step).
        let one = tmp.path().join(format!("{family}-1"));
        run_ok(&mut grpo(&tiny(family), &one, 30, &["--eval-every", "30", "--prior", "kl", "--threads", "1"]));
        assert!(state(&run) == state(&one), "{family}: 1 and 2 threads differ");
        // The portable SIMD level: the same bytes again (every sum has the kernels' fixed order).
        let portable = tmp.path().join(format!("{family}-portable"));
        run_ok(
            grpo(&tiny(family), &portable, 30, &["--eval-every", "30", "--prior", "kl", "--threads", "2"])
                .env("EVOTUNE_SIMD", "portable"),
        );
        assert!(state(&run) == state(&portable), "{family}: the portable level differs");

        // The tuned weights export as a HF directory that loads and generates.
        let hf = tmp.path().join(format!("{family}-export"));
        run_ok(evotune().arg("export").arg(&run).args(["--format", "hf", "--out"]).arg(&hf));
        let out = run_ok(evotune().args(["generate", "--max-new-tokens", "4", "--prompt", "Hi", "--model"]).arg(&hf));
        assert!(!out.stdout.is_empty());
        // Only the last saved step is kept: another iteration is refused, naming it.
        let e = evotune().arg("export").arg(&run).args(["--iter", "3", "--out"]).arg(tmp.path().join("x")).output();
        let err = String::from_utf8_lossy(&e.unwrap().stderr).to_string();
        assert!(err.contains("last saved step, 30"), "{err}");
    }
}

#[test]
fn grpo_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny("llama3");
    let straight = tmp.path().join("straight");
    run_ok(&mut grpo(&model, &straight, 8, &["--eval-every", "0"]));

    // Stopped after 3 steps (its state saved at the end), then continued to 8.
    let stopped = tmp.path().join("stopped");
    run_ok(&mut grpo(&model, &stopped, 3, &["--eval-every", "0"]));
    run_ok(evotune().args(["train", "--quiet", "--iterations", "8", "--resume"]).arg(&stopped));
    assert!(state(&straight) == state(&stopped), "stopped and resumed run differs");
    assert_eq!(lines(&stopped, "iteration").len(), 8);

    // Killed with SIGKILL after it logged a few steps (a state every step), then resumed.
    let long = tmp.path().join("long");
    run_ok(&mut grpo(&model, &long, 400, &["--eval-every", "0", "--checkpoint-every", "1000"]));
    let killed = tmp.path().join("killed");
    let mut child = grpo(&model, &killed, 400, &["--eval-every", "0", "--checkpoint-every", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let n = std::fs::read_to_string(killed.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if n >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = lines(&killed, "iteration").len();
    assert!(logged < 400, "the run finished before it could be killed");
    run_ok(evotune().args(["train", "--quiet", "--checkpoint-every", "1000", "--resume"]).arg(&killed));
    assert!(state(&long) == state(&killed), "killed at step {logged} and resumed: differs");
    let steps = lines(&killed, "iteration");
    assert_eq!(steps.len(), 400, "one line per step after the resume");
    assert!(steps.iter().enumerate().all(|(i, l)| l["iteration"] == i as u64 + 1));
}

#[test]
fn grpo_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let gemma = grpo(&tiny("gemma3"), &tmp.path().join("g"), 1, &[]).output().unwrap();
    assert!(String::from_utf8_lossy(&gemma.stderr).contains("not Gemma 3"), "{gemma:?}");
    let awd = grpo(&tiny("llama3"), &tmp.path().join("a"), 1, &["--awd", "l2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&awd.stderr).contains("kl_beta"), "{awd:?}");
    let t0 = grpo(&tiny("llama3"), &tmp.path().join("b"), 1, &["--temperature", "0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&t0.stderr).contains("grpo.temperature"), "{t0:?}");
    // A corrupt state file is named on resume.
    let run = tmp.path().join("c");
    run_ok(&mut grpo(&tiny("llama3"), &run, 1, &["--eval-every", "0"]));
    let mut bytes = state(&run);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(run.join("grpo_state.bin"), bytes).unwrap();
    let out = evotune().args(["train", "--iterations", "2", "--resume"]).arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grpo_state.bin") && err.contains("corrupt"), "{err}");
}
