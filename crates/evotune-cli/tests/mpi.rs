//! Distributed training under `mpirun` (built with `--features mpi`; needs OpenMPI's `mpirun`).
//!
//! Every run here is compared with one single-process reference run of the same config (N = 4,
//! 2 iterations, evaluations at 0, 1, 2 of the target's test split, a multiple-choice and a KL prior; the
//! rewards differ between members, so θ really moves):
//! - K ranks split the population and the evaluations; trajectory, checkpoints and the eval lines
//!   of `metrics.jsonl` (all but their `seconds`) equal the single process's byte for byte;
//! - a run started with 3 ranks (3 ∤ 4) and resumed by one process ends where the reference does;
//! - a rank killed with SIGKILL stops the job (mpirun exits non-zero, no hang), leaves a
//!   readable run directory, and `--resume` completes it with the reference's bytes.
//!
//! The runs are serialised (one lock): each one uses both cores.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const ITERATIONS: u64 = 2;

fn model() -> PathBuf {
    if let Ok(p) = std::env::var("EVOTUNE_MODEL") {
        return PathBuf::from(p);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_evotune")).arg("fetch-model").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A tiny real config: N = 4, 3 training prompts (one-digit sums) of ≤ 8 new tokens, evaluation and
/// checkpoint every iteration (5 test items, 5 capitals items, 3 KL prompts × 4 tokens).
fn train_args(model: &Path, out: &Path, iterations: u64) -> Vec<String> {
    let mut v = strings(&["train", "--quiet", "--task", "arith", "--population", "4", "--seed", "5", "--threads", "1"]);
    v.extend(strings(&["--sigma", "0.01", "--alpha", "0.005", "--eval-every", "1", "--checkpoint-every", "1"]));
    v.extend(strings(&["--prior", "capitals", "--prior", "kl", "--prior-limit", "5"]));
    for opt in ["train_size=3", "test_size=5", "max_new_tokens=8", "arith_min=1", "arith_max=9"] {
        v.extend(strings(&["--task-opt", opt]));
    }
    for opt in ["kl_prompts=3", "kl_tokens=4"] {
        v.extend(strings(&["--task-opt", opt]));
    }
    v.extend(["--iterations".into(), iterations.to_string(), "--model".into(), model.display().to_string()]);
    v.extend(["--out".into(), out.display().to_string()]);
    v
}

fn resume_args(out: &Path, iterations: u64) -> Vec<String> {
    let mut v = strings(&["train", "--quiet", "--resume"]);
    v.extend([out.display().to_string(), "--iterations".into(), iterations.to_string()]);
    v
}

fn evotune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evotune"))
}

fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_evotune"));
    c
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// One run at a time (each uses both cores); a failed test must not poison the others.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The single-process reference run, made once.
fn reference() -> &'static Path {
    static REF: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &REF.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("single");
        run(evotune().args(train_args(&model(), &dir, ITERATIONS)));
        // The members' rewards differ, so the update moves θ (equal bytes would prove little otherwise).
        let last = read_lines(&dir.join("metrics.jsonl")).into_iter().rfind(|l| l["type"] == "iteration").unwrap();
        assert!(last["drift"].as_f64().unwrap() > 0.0, "θ did not move: {last}");
        (tmp, dir)
    })
    .1
}

/// The eval lines of `metrics.jsonl` up to `iteration`, without their wall time.
fn eval_lines(run: &Path, upto: u64) -> Vec<serde_json::Value> {
    read_lines(&run.join("metrics.jsonl"))
        .into_iter()
        .filter(|l| l["type"] == "eval" && l["iteration"].as_u64().unwrap() <= upto)
        .map(|mut l| {
            l.as_object_mut().unwrap().remove("seconds");
            l
        })
        .collect()
}

/// Every line of a JSONL file, which must end with a complete line.
fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "{}: partial last line", path.display());
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display())))
        .collect()
}

fn trajectory(run: &Path, upto: usize) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("trajectory.jsonl")).unwrap();
    text.lines().take(upto).map(String::from).collect()
}

fn checkpoint(run: &Path, k: u64) -> Vec<u8> {
    let path = run.join(format!("checkpoints/iter-{k:06}.safetensors"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `run` holds exactly the reference's first `k` iterations: trajectory, checkpoint k, eval lines.
fn assert_matches_reference(run: &Path, k: u64, what: &str) {
    let reference = reference();
    let lines = trajectory(run, usize::MAX);
    assert_eq!(lines.len() as u64, k, "{what}: trajectory length");
    assert_eq!(lines, trajectory(reference, k as usize), "{what}: trajectory differs");
    assert!(checkpoint(run, k) == checkpoint(reference, k), "{what}: weights at iteration {k} differ");
    let evals = eval_lines(run, k);
    assert_eq!(evals.len() as u64, k + 1, "{what}: eval lines");
    assert_eq!(evals, eval_lines(reference, k), "{what}: eval lines differ");
}

#[test]
fn ranks_match_a_single_process_bit_for_bit() {
    let _serial = serial();
    let model = model();
    reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mpi2");
    run(mpirun(2).args(train_args(&model, &out, ITERATIONS)));
    assert_matches_reference(&out, ITERATIONS, "2 ranks");
    // The evaluation was really split and scored: 5 test items, 5 capitals, 3 KL continuations.
    let last = eval_lines(&out, ITERATIONS).pop().unwrap();
    assert_eq!(last["target"]["metrics"]["items"], 5.0, "{last}");
    assert_eq!(last["priors"][0]["metrics"]["items"], 5.0, "{last}");
    assert!(last["priors"][1]["metrics"]["kl"].as_f64().unwrap() > 0.0, "{last}");
}

#[test]
fn resume_with_another_rank_count() {
    let _serial = serial();
    let model = model();
    reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("k3then1");
    run(mpirun(3).args(train_args(&model, &out, 1)));
    assert_matches_reference(&out, 1, "3 ranks, 1 iteration");
    run(evotune().args(resume_args(&out, ITERATIONS)));
    assert_matches_reference(&out, ITERATIONS, "3 ranks, then 1 process");
}

/// Children of `parent` whose environment says they are MPI rank `rank`.
fn rank_pids(parent: u32, rank: usize) -> Vec<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid …: the comm may hold spaces, so read after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_killed_rank_stops_the_job_and_resume_completes_it() {
    let _serial = serial();
    let model = model();
    reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("killed");
    let log = std::fs::File::create(tmp.path().join("mpirun.log")).unwrap();
    let mut job = mpirun(2)
        .args(train_args(&model, &out, ITERATIONS))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mpirun");
    // Mid-run: once iteration 1 is logged, kill rank 1 (a child of mpirun, not mpirun itself).
    let deadline = Instant::now() + Duration::from_secs(300);
    while trajectory_len(&out) < 1 {
        assert!(job.try_wait().unwrap().is_none(), "the job ended before iteration 1");
        assert!(Instant::now() < deadline, "no iteration logged in 300 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let victims = rank_pids(job.id(), 1);
    assert_eq!(victims.len(), 1, "rank 1 among mpirun's children: {victims:?}");
    let killed = Command::new("kill").args(["-KILL", &victims[0].to_string()]).status().unwrap();
    assert!(killed.success());
    let kill_time = Instant::now();
    let deadline = kill_time + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            job.kill().ok();
            panic!("mpirun still running 60 s after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(tmp.path().join("mpirun.log")).unwrap();
    assert!(!status.success(), "mpirun exited with {status} after a rank was killed\n{log}");
    eprintln!("mpirun exited ({status}) {:.1} s after rank 1 was killed:\n{log}", kill_time.elapsed().as_secs_f64());
    // The run directory is intact: config, complete log lines, iterations 1, 2, … in order.
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("population = 4"), "{config}");
    let steps = read_lines(&out.join("trajectory.jsonl"));
    assert!(!steps.is_empty() && (steps.len() as u64) < ITERATIONS, "{} steps logged", steps.len());
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["iteration"], i as u64, "trajectory line {i}");
    }
    read_lines(&out.join("metrics.jsonl"));
    // Resumed by 2 ranks again, it ends with the uninterrupted run's bytes.
    run(mpirun(2).args(resume_args(&out, ITERATIONS)));
    assert_matches_reference(&out, ITERATIONS, "killed at iteration 1, resumed");
}

fn trajectory_len(run: &Path) -> usize {
    std::fs::read_to_string(run.join("trajectory.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

/// QES (codes of the GGUF, AWD-l2 so the base codes are read too): 2 ranks, and 3 ranks then one
/// process, give the single process's trajectory, checkpoints (the decoded codes) and eval lines.
#[test]
fn qes_ranks_match_a_single_process_bit_for_bit() {
    let _serial = serial();
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let qes = |out: &Path, iterations: u64| {
        let mut v = train_args(&model, out, iterations);
        v.extend(strings(&["--method", "qes", "--awd", "l2", "--awd-lambda", "10"]));
        v
    };
    let single = tmp.path().join("single");
    run(evotune().args(qes(&single, ITERATIONS)));
    let last = read_lines(&single.join("metrics.jsonl")).into_iter().rfind(|l| l["type"] == "iteration").unwrap();
    assert!(last["drift"].as_f64().unwrap() > 0.0, "the codes did not move: {last}");
    let same = |run: &Path, k: u64, what: &str| {
        assert_eq!(trajectory(run, usize::MAX), trajectory(&single, k as usize), "{what}: trajectory");
        assert!(checkpoint(run, k) == checkpoint(&single, k), "{what}: codes at iteration {k} differ");
        assert_eq!(eval_lines(run, k), eval_lines(&single, k), "{what}: eval lines");
    };
    let two = tmp.path().join("mpi2");
    run(mpirun(2).args(qes(&two, ITERATIONS)));
    same(&two, ITERATIONS, "2 ranks");
    let three = tmp.path().join("k3then1");
    run(mpirun(3).args(qes(&three, 1)));
    same(&three, 1, "3 ranks, 1 iteration");
    run(evotune().args(resume_args(&three, ITERATIONS)));
    same(&three, ITERATIONS, "3 ranks, then 1 process");
}

/// A KL drift budget: λ_t is computed on the root and shared, so 2 ranks write the single
/// process's trajectory (λ_t and the measured drift in every line) and eval lines.
#[test]
fn a_drift_budget_under_ranks_matches_a_single_process() {
    let _serial = serial();
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let budget = |out: &Path| {
        let mut v = train_args(&model, out, ITERATIONS);
        v.extend(strings(&["--drift-budget", "kl=0.0001"]));
        v
    };
    let single = tmp.path().join("single");
    run(evotune().args(budget(&single)));
    let lines = read_lines(&single.join("trajectory.jsonl"));
    assert!(lines.iter().all(|l| l["awd_lambda"].as_f64().unwrap() > 0.0), "{lines:?}");
    let two = tmp.path().join("mpi2");
    run(mpirun(2).args(budget(&two)));
    assert_eq!(trajectory(&two, usize::MAX), trajectory(&single, usize::MAX), "trajectory");
    assert_eq!(eval_lines(&two, ITERATIONS), eval_lines(&single, ITERATIONS), "eval lines");
}
