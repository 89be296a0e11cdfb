//! End-to-end tests of the real binary on the real default model, each in a temp directory.
//! Sizes are tiny (a few members, a few prompts, a few iterations) so the whole file runs in
//! minutes on 2 cores; what they check is exact: files, line counts, byte-identical weights.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{evotune, model, run_ok};

/// A small but real training configuration.
fn train_cmd(model: &Path, out: &Path, iterations: u64) -> Command {
    let mut c = evotune();
    c.args(["train", "--quiet", "--task", "arith", "--population", "4", "--sigma", "0.01", "--alpha", "0.005"])
        .args(["--seed", "11", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "2"])
        .args(["--prior", "capitals", "--prior", "kl"])
        .args([
            "--task-opt",
            "train_size=4",
            "--task-opt",
            "test_size=4",
            "--task-opt",
            "kl_prompts=2",
            "--prior-limit",
            "8",
        ])
        .arg("--iterations")
        .arg(iterations.to_string())
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out);
    c
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display())))
        .collect()
}

#[test]
fn train_writes_run_directory_and_replay_matches_checkpoint() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_ok(&mut train_cmd(&model, &run, 2));

    // Resolved config: every default spelled out.
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap();
    for key in
        ["population", "sigma", "alpha", "awd", "awd_lambda", "noise", "shaping", "mirrored", "seed", "task_options"]
    {
        assert!(cfg.contains_key(key), "config.toml lacks {key}");
    }
    assert_eq!(cfg["population"].as_integer(), Some(4));

    let traj = lines(&run.join("trajectory.jsonl"));
    assert_eq!(traj.len(), 2);
    for (i, rec) in traj.iter().enumerate() {
        assert_eq!(rec["iteration"].as_u64(), Some(i as u64));
        assert_eq!(rec["rewards"].as_array().unwrap().len(), 4);
        assert_eq!(rec["coefficients"].as_array().unwrap().len(), 4);
    }
    let metrics = lines(&run.join("metrics.jsonl"));
    let evals: Vec<_> = metrics.iter().filter(|m| m["type"] == "eval").collect();
    let iters: Vec<_> = metrics.iter().filter(|m| m["type"] == "iteration").collect();
    assert_eq!(iters.len(), 2);
    assert_eq!(evals.iter().map(|e| e["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2]);
    // At iteration 0 θ = θ0 exactly. A step moves θ exactly when its rewards differ (equal rewards
    // have z-scores 0).
    assert_eq!(evals[0]["drift"]["total"].as_f64(), Some(0.0));
    let rewards_differ = traj.iter().any(|r| {
        let rs: Vec<f64> = r["rewards"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        rs.iter().any(|&x| x != rs[0])
    });
    assert_eq!(iters[1]["drift"].as_f64().unwrap() > 0.0, rewards_differ, "{traj:?}");
    let priors: Vec<String> =
        evals[1]["priors"].as_array().unwrap().iter().map(|p| p["task"].as_str().unwrap().to_string()).collect();
    assert_eq!(priors.len(), 2, "{priors:?}");

    // Replay to 2 reproduces the checkpoint of iteration 2 byte for byte.
    let ckpt = run.join("checkpoints/iter-000002.safetensors");
    let replayed = tmp.path().join("replayed.safetensors");
    run_ok(evotune().arg("replay").arg(&run).args(["--to", "2", "--out"]).arg(&replayed));
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        std::fs::read(&replayed).unwrap(),
        "replay differs from the live checkpoint"
    );

    // Export θ0 (iteration 0) as F32 GGUF: llama.cpp's own Python reader must see the source
    // model's tensors exactly (checked when the `gguf` package is installed, as in CI).
    let gguf0 = tmp.path().join("theta0.gguf");
    run_ok(
        evotune()
            .arg("export")
            .arg(&run)
            .args(["--iter", "0", "--format", "gguf", "--dtype", "f32", "--out"])
            .arg(&gguf0),
    );
    let has_gguf_py =
        Command::new("python3").args(["-c", "import gguf, numpy"]).status().map(|s| s.success()).unwrap_or(false);
    if has_gguf_py {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_gguf_export.py");
        run_ok(Command::new("python3").arg(script).arg(&model).arg(&gguf0).arg("--exact"));
    } else {
        eprintln!("note: python3 `gguf` package not installed; skipping llama.cpp-reader check of the export");
    }
    // A Q8_0 export of the trained weights loads back and answers.
    let q8 = tmp.path().join("tuned-q8.gguf");
    run_ok(evotune().arg("export").arg(&run).args(["--format", "gguf", "--dtype", "q8_0", "--out"]).arg(&q8));
    let out = run_ok(evotune().args(["eval", "--task", "capitals", "--limit", "8", "--model"]).arg(&q8));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("capitals: accuracy"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The report draws PNGs and a summary table.
    let report = tmp.path().join("report");
    run_ok(evotune().arg("report").arg(&run).arg("--out").arg(&report));
    assert!(report.join("target_reward.png").metadata().unwrap().len() > 1000);
    let md = std::fs::read_to_string(report.join("summary.md")).unwrap();
    assert!(md.contains("arith test accuracy"), "{md}");
}

#[test]
fn killed_run_resumes_bit_identically() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    run_ok(&mut train_cmd(&model, &straight, 4));

    // Same run, killed with SIGKILL once it has logged at least one iteration, then resumed.
    let killed = tmp.path().join("killed");
    let mut child = train_cmd(&model, &killed, 4).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = std::fs::read_to_string(killed.join("trajectory.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if n >= 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let logged = std::fs::read_to_string(killed.join("trajectory.jsonl")).unwrap().lines().count();
    assert!(logged < 4, "the run finished before it could be killed");

    run_ok(evotune().args(["train", "--quiet", "--resume"]).arg(&killed));
    assert_eq!(
        std::fs::read_to_string(straight.join("trajectory.jsonl")).unwrap(),
        std::fs::read_to_string(killed.join("trajectory.jsonl")).unwrap(),
        "resumed trajectory differs"
    );
    for ckpt in ["iter-000002.safetensors", "iter-000004.safetensors"] {
        assert_eq!(
            std::fs::read(straight.join("checkpoints").join(ckpt)).unwrap(),
            std::fs::read(killed.join("checkpoints").join(ckpt)).unwrap(),
            "{ckpt} differs after resume"
        );
    }
}

#[test]
fn resume_with_conflicting_flags_is_refused() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_ok(&mut train_cmd(&model, &run, 1));
    let out = evotune().args(["train", "--resume"]).arg(&run).args(["--sigma", "0.002"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sigma") && err.contains("config.toml"), "{err}");
}

#[test]
fn corrupt_model_file_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00trunc").unwrap();
    let out = evotune().args(["generate", "--prompt", "hi", "--model"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.gguf"), "{err}");
}

#[test]
fn generate_answers_a_chat_prompt() {
    let model = model();
    let out = run_ok(
        evotune()
            .args(["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12", "--model"])
            .arg(&model),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Paris"), "{text}");
}

/// `--weights quantized` keeps the GGUF's blocks: the same answer, and the whole process (weights,
/// tokenizer, KV cache, mapped file pages) peaks within the file's size + 100 MB.
#[test]
fn generate_on_quantized_weights_stays_within_the_file_size() {
    let model = model();
    let out = run_ok(
        evotune()
            .args(["generate", "--prompt", "What is the capital of France? Answer briefly.", "--max-new-tokens", "12"])
            .args(["--weights", "quantized", "--model"])
            .arg(&model),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Paris"), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    let mb: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("peak RSS ")?.strip_suffix(" MB")?.parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS line in {err}"));
    let file_mb = std::fs::metadata(&model).unwrap().len() as f64 / 1e6;
    assert!(mb <= file_mb + 100.0, "peak RSS {mb} MB for a {file_mb} MB file");
    assert!(err.contains("Q4_1 matrices"), "{err}");
}

#[test]
fn low_rank_run_replays_and_resumes_bit_identically() {
    // The low-rank population (all members in one batch) goes through the same trajectory,
    // replay and resume machinery as full rank: replay == live checkpoint, and a run resumed
    // after 1 iteration ends with the same bytes as an uninterrupted one.
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let low = |out: &Path, iterations: u64| {
        let mut c = evotune();
        c.args(["train", "--quiet", "--task", "arith", "--population", "4", "--sigma", "0.01", "--alpha", "0.005"])
            .args(["--seed", "11", "--eval-every", "0", "--checkpoint-every", "2", "--threads", "2", "--awd", "l2"])
            .args([
                "--perturbation",
                "lowrank",
                "--rank",
                "2",
                "--task-opt",
                "train_size=4",
                "--task-opt",
                "test_size=4",
            ])
            .arg("--iterations")
            .arg(iterations.to_string())
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(out);
        c
    };
    let run = tmp.path().join("low");
    run_ok(&mut low(&run, 2));
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(cfg.contains("perturbation = \"lowrank\"") && cfg.contains("rank = 2"), "{cfg}");
    let ckpt = std::fs::read(run.join("checkpoints/iter-000002.safetensors")).unwrap();
    let replayed = tmp.path().join("replayed.safetensors");
    run_ok(evotune().arg("replay").arg(&run).args(["--to", "2", "--out"]).arg(&replayed));
    assert_eq!(ckpt, std::fs::read(&replayed).unwrap(), "low-rank replay differs from the live checkpoint");

    let split = tmp.path().join("split");
    run_ok(&mut low(&split, 1));
    run_ok(evotune().args(["train", "--quiet", "--iterations", "2", "--resume"]).arg(&split));
    assert_eq!(ckpt, std::fs::read(split.join("checkpoints/iter-000002.safetensors")).unwrap());

    // The members really differ: with σ = 0.01 some iteration has unequal rewards.
    let traj = lines(&run.join("trajectory.jsonl"));
    let differ = traj.iter().any(|r| {
        let rs: Vec<f64> = r["rewards"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        rs.iter().any(|&x| x != rs[0])
    });
    assert!(differ, "all low-rank members scored the same: {traj:?}");
}

/// `--task random`: no generation, a NaN target score at evaluations (priors still scored), and the
/// random-walk law ‖θ_2−θ0‖² = 2‖θ_1−θ0‖² up to the sampling spread of a sum of d squares (~1e-4).
#[test]
fn random_task_needs_no_model_output_and_walks_like_the_law() {
    let dir = tempfile::tempdir().unwrap();
    let model = model();
    let random_run = |out: &Path, flags: &[&str]| {
        let mut c = evotune();
        c.args(["train", "--quiet", "--task", "random", "--population", "4", "--alpha", "0.006", "--iterations", "2"])
            .args(flags)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(out);
        run_ok(&mut c);
    };
    let out = dir.path().join("random");
    random_run(
        &out,
        &["--eval-every", "2", "--prior", "capitals", "--prior-limit", "4", "--seed", "3", "--threads", "2"],
    );
    let m = lines(&out.join("metrics.jsonl"));
    let drift: Vec<f64> = m.iter().filter(|l| l["type"] == "iteration").map(|l| l["drift"].as_f64().unwrap()).collect();
    assert_eq!(drift.len(), 2);
    let ratio = drift[1].powi(2) / (2.0 * drift[0].powi(2));
    assert!((ratio - 1.0).abs() < 1e-3, "‖θ2−θ0‖²/(2‖θ1−θ0‖²) = {ratio}");
    let evals: Vec<&serde_json::Value> = m.iter().filter(|l| l["type"] == "eval").collect();
    assert_eq!(evals.iter().map(|e| e["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 2]);
    for e in &evals {
        assert!(e["target"]["accuracy"].is_null(), "random has nothing to answer: {}", e["target"]);
        assert_eq!(e["target"]["metrics"]["items"].as_f64(), Some(0.0));
        assert_eq!(e["priors"][0]["metrics"]["items"].as_f64(), Some(4.0));
    }
    // The rewards ignore the model: the same seed gives the same rewards with another σ.
    let out2 = dir.path().join("random-sigma");
    random_run(&out2, &["--eval-every", "0", "--seed", "3", "--sigma", "0.5"]);
    let rewards = |p: &Path| -> Vec<serde_json::Value> {
        lines(&p.join("trajectory.jsonl")).into_iter().map(|l| l["rewards"].clone()).collect()
    };
    assert_eq!(rewards(&out), rewards(&out2));
    let report = dir.path().join("report");
    run_ok(evotune().arg("report").arg(&out).arg("--out").arg(&report));
    assert!(report.join("drift.png").exists());
}

/// `train --method qes`: the quantized codes trained with error feedback. Killed with SIGKILL and
/// resumed, and on one thread instead of two, the run logs the same trajectory and ends on the same
/// codes (the checksum of the stored blocks).
#[test]
fn qes_run_resumes_and_is_thread_independent_bit_for_bit() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let qes = |out: &Path, threads: &str| {
        let mut c = evotune();
        c.args(["train", "--method", "qes", "--task", "arith", "--population", "4", "--mirrored"])
            .args(["--seed", "5", "--eval-every", "0", "--iterations", "3", "--threads", threads])
            .args(["--task-opt", "train_size=4", "--task-opt", "test_size=4", "--model"])
            .arg(model.as_os_str())
            .arg("--out")
            .arg(out);
        c
    };
    let straight = tmp.path().join("straight");
    let a = theta_checksum(&run_ok(&mut qes(&straight, "2")));
    let one = tmp.path().join("one-thread");
    assert_eq!(theta_checksum(&run_ok(&mut qes(&one, "1"))), a, "1 vs 2 threads");

    let killed = tmp.path().join("killed");
    kill_after_first_iteration(qes(&killed, "2"), &killed, 3);
    let b = theta_checksum(&run_ok(evotune().args(["train", "--resume"]).arg(&killed)));
    assert_eq!(b, a, "resumed QES run ends on other codes");
    for dir in [&one, &killed] {
        assert_eq!(
            std::fs::read_to_string(straight.join("trajectory.jsonl")).unwrap(),
            std::fs::read_to_string(dir.join("trajectory.jsonl")).unwrap(),
            "{} differs",
            dir.display()
        );
    }

    // Export: the source GGUF with the tuned codes written into its own blocks.
    let out = tmp.path().join("tuned.gguf");
    let said = run_ok(evotune().args(["export"]).arg(&straight).args(["--format", "gguf", "--out"]).arg(&out));
    let said = String::from_utf8_lossy(&said.stdout).to_string();
    let n: usize = said.split(" codes differ").next().unwrap().rsplit('(').next().unwrap().parse().unwrap();
    let (src, tuned) = (std::fs::read(&model).unwrap(), std::fs::read(&out).unwrap());
    assert_eq!(src.len(), tuned.len());
    let bytes = src.iter().zip(&tuned).filter(|(a, b)| a != b).count();
    assert!(n > 0 && bytes > 0 && bytes <= n, "{bytes} bytes differ for {n} changed codes: {said}");
    // Evaluating the exported file on its blocks reproduces the run's own codes exactly.
    let eval = |args: &[&str], what: &Path| {
        let mut c = evotune();
        c.args(["eval", "--weights", "quantized", "--task", "arith", "--task-opt", "test_size=4"]).args(args).arg(what);
        String::from_utf8(run_ok(&mut c).stdout).unwrap()
    };
    let on_codes = eval(&["--run"], &straight);
    assert_eq!(eval(&["--model"], &out), on_codes);
    // `eval --run` of a QES run defaults to its codes.
    let mut c = evotune();
    c.args(["eval", "--task", "arith", "--task-opt", "test_size=4", "--run"]).arg(&straight);
    assert_eq!(String::from_utf8(run_ok(&mut c).stdout).unwrap(), on_codes);
    // llama.cpp's own reader (the `gguf` package) reads it.
    let py = Command::new("python3")
        .args(["-c", "import sys, gguf; r = gguf.GGUFReader(sys.argv[1]); print(len(r.tensors))"])
        .arg(&out)
        .output();
    match py {
        Ok(o) if o.status.success() => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "272"),
        _ => eprintln!("SKIP: python3 with the gguf package is not available"),
    }
}

/// QES with the replayed residual and AWD-l2 (the base codes re-read from the file at each update):
/// a run killed with SIGKILL after its first iteration and resumed ends on the same codes and
/// trajectory as one run straight through.
#[test]
fn qes_replay_with_awd_resumes_after_kill_bit_for_bit() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let qes = |out: &Path| {
        let mut c = evotune();
        // Conciseness: a graded reward (relative length error), so the members' rewards differ.
        c.args(["train", "--method", "qes", "--task", "conciseness", "--population", "4", "--mirrored", "--seed", "9"])
            .args(["--residual", "replay", "--residual-window", "2", "--alpha", "0.01", "--awd", "l2"])
            .args(["--eval-every", "0", "--iterations", "3", "--threads", "2"])
            .args(["--task-opt", "minibatch=4", "--task-opt", "max_new_tokens=12", "--model"])
            .arg(model.as_os_str())
            .arg("--out")
            .arg(out);
        c
    };
    let straight = tmp.path().join("straight");
    let a = theta_checksum(&run_ok(&mut qes(&straight)));
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    let stepped: u64 = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["codes_stepped"].as_u64())
        .sum();
    assert!(stepped > 0, "no code moved:\n{metrics}");
    let killed = tmp.path().join("killed");
    kill_after_first_iteration(qes(&killed), &killed, 3);
    assert_eq!(
        theta_checksum(&run_ok(evotune().args(["train", "--resume"]).arg(&killed))),
        a,
        "resumed run ends elsewhere"
    );
    assert_eq!(
        std::fs::read_to_string(straight.join("trajectory.jsonl")).unwrap(),
        std::fs::read_to_string(killed.join("trajectory.jsonl")).unwrap()
    );
}

/// The "θ checksum" a finished `train` prints.
fn theta_checksum(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.split("θ checksum ").nth(1).unwrap_or_else(|| panic!("no checksum in {text}"))[..16].to_string()
}

/// Starts `train`, kills it (SIGKILL) once `run` has logged its first iteration, and checks it had
/// not finished its `iterations`.
fn kill_after_first_iteration(mut train: Command, run: &Path, iterations: usize) {
    let logged = || std::fs::read_to_string(run.join("trajectory.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
    let mut child = train.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while logged() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(logged() < iterations, "the run finished before it could be killed");
}
