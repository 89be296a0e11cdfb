//! `evotune bench generate|es|es-iteration`: benchmarks that print figures (never pass/fail).

use std::process::Command;

use anyhow::{bail, Context};
use evotune::es::Perturbation;
use evotune::run::bench::{bench_es_iteration, reference_items, IterationBench, IterationBenchOptions};

use crate::args::{BenchArgs, BenchWhich};

/// The PyTorch reference loop, shipped inside the binary so `--vs-torch` works from any directory.
const TORCH_SCRIPT: &str = include_str!("../../../../scripts/torch_es_iteration.py");

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.which {
        BenchWhich::Generate { model } => bench_generate(&model)?,
        BenchWhich::EsIteration { model, perturbation, rank, population, iterations, threads, vs_torch } => {
            let modes = match perturbation.as_str() {
                "full" => vec![Perturbation::Full],
                "lowrank" => vec![Perturbation::LowRank { rank }],
                "both" => vec![Perturbation::Full, Perturbation::LowRank { rank }],
                other => bail!("--perturbation `{other}`: expected full, lowrank or both"),
            };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
            let mut results: Vec<IterationBench> = Vec::new();
            let mut path = std::path::PathBuf::new();
            for mode in modes {
                // A fresh load per mode: θ0 becomes the run's θ, as in `evotune train`; the peak
                // RSS is reset first, so each mode reports its own.
                evotune::run::bench::reset_peak_rss();
                let (m, theta) = evotune::model::load(&model).with_context(|| format!("loading model {model}"))?;
                path = m.path.clone();
                let opts = IterationBenchOptions { perturbation: mode, population, iterations, ..Default::default() };
                let r = pool.install(|| bench_es_iteration(&m, theta, &opts))?;
                println!("{r}\n");
                results.push(r);
            }
            let full = results.iter().find(|r| r.perturbation == Perturbation::Full);
            let low = results.iter().find(|r| r.perturbation != Perturbation::Full);
            if let (Some(f), Some(l)) = (full, low) {
                println!(
                    "low rank vs full rank: {:.2}× the iteration speed at equal N",
                    f.seconds_per_iteration / l.seconds_per_iteration
                );
            }
            if vs_torch {
                let torch = run_torch(&path, population, iterations, pool.current_num_threads())?;
                println!(
                    "PyTorch reference loop: {torch:.2} s/iteration ({:.3} s per member)",
                    torch / population as f64
                );
                for r in &results {
                    println!("  evotune {:?}: {:.1}× faster", r.perturbation, torch / r.seconds_per_iteration);
                    if let (Some(flops), Some(lower)) = (r.fma_bound_seconds(), r.lower_bound_seconds()) {
                        println!(
                            "    at most {:.1}× even at the FMA peak, and {:.1}× counting one read of the weights \
                             per forward (evaluation at its bound, update as measured)",
                            torch / (flops + r.update_seconds),
                            torch / (lower + r.update_seconds)
                        );
                    }
                }
            }
        }
        BenchWhich::Es { dim, population } => {
            let report = evotune::es::bench::bench_es(dim, population)?;
            println!("{report}");
        }
    }
    Ok(())
}

/// Prefill and decode throughput, ours vs candle's llama on the same weights.
#[cfg(feature = "bench")]
fn bench_generate(model: &str) -> anyhow::Result<()> {
    let (m, theta) = evotune::model::load(model).with_context(|| format!("loading model {model}"))?;
    let opts = evotune::model::bench::BenchOptions::default();
    let report = evotune::model::bench::bench_generate(&m.llama, &theta, &opts)?;
    println!("{report}");
    Ok(())
}

/// Without the `bench` feature candle is not compiled in, so there is nothing to compare against.
#[cfg(not(feature = "bench"))]
fn bench_generate(_model: &str) -> anyhow::Result<()> {
    bail!(
        "`bench generate` compares against candle, which this build leaves out; rebuild with \
         `--features bench` (e.g. `cargo run --release --features bench -- bench generate`)"
    )
}

/// Seconds per iteration of the PyTorch reference loop on the same prompts and model file.
fn run_torch(model: &std::path::Path, population: usize, iterations: usize, threads: usize) -> anyhow::Result<f64> {
    let (_, items) = reference_items(16, 16)?;
    let questions: Vec<String> = items.iter().map(|i| i.prompt.text().to_string()).collect();
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("torch_es_iteration.py");
    std::fs::write(&script, TORCH_SCRIPT)?;
    let prompts = dir.path().join("prompts.json");
    std::fs::write(&prompts, serde_json::to_string(&questions)?)?;
    eprintln!("running the PyTorch reference loop ({iterations} timed iterations, {threads} threads)…");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--model")
        .arg(model)
        .arg("--prompts")
        .arg(&prompts)
        .args(["--population", &population.to_string(), "--iterations", &iterations.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .context("running python3 (is it installed?)")?;
    if !out.status.success() {
        bail!("the PyTorch reference failed (needs torch and transformers):\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).with_context(|| format!("parsing `{last}`"))?;
    v["seconds_per_iteration"].as_f64().context("no seconds_per_iteration in the reference's output")
}
