//! `evotune bench generate|es|es-iteration|grpo`: benchmarks that print figures (never pass/fail).

use std::process::Command;

use anyhow::{bail, Context};
use evotune::es::Perturbation;
use evotune::kernels::{simd_level, Level};
use evotune::model::WeightFormat;
use evotune::run::bench::{
    bench_es_iteration, reference_items, torch_isa_cap, IterationBench, IterationBenchOptions, IterationLine,
};
use evotune::run::Method;

use crate::args::{BenchArgs, BenchWhich};

/// The PyTorch reference loop, shipped inside the binary so `--vs-torch` works from any directory.
const TORCH_SCRIPT: &str = include_str!("../../../../scripts/torch_es_iteration.py");

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.which {
        BenchWhich::Generate { model, json, weights } => bench_generate(&model, weights, Text { json })?,
        BenchWhich::Grpo { model, prompts, group, micro_batch, steps, threads, json, vs_candle } => {
            let text = Text { json };
            let (m, theta) = evotune::model::load(&model).with_context(|| format!("loading model {model}"))?;
            let p = evotune::rl::GrpoParams { group, micro_batch, ..Default::default() };
            p.check()?;
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
            let r = pool.install(|| evotune::run::bench_grpo::bench_grpo_step(&m, theta, &p, prompts, steps))?;
            text.line(format_args!("{r}"));
            if json {
                println!("{}", serde_json::to_string(&r)?);
            }
            if vs_candle {
                backward_vs_candle(&pool, &model, micro_batch, text)?;
            }
        }
        BenchWhich::EsIteration {
            model,
            perturbation,
            rank,
            population,
            iterations,
            threads,
            vs_torch,
            json,
            method,
            residual,
            member_batch,
        } => {
            let text = Text { json };
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
                // A fresh load per mode: θ0 becomes the run's θ, as in `evotune train`; the
                // memory the last mode freed is given back and the peak RSS reset first, so each
                // mode reports its own.
                evotune::run::memory::give_back_free_memory();
                evotune::run::bench::reset_peak_rss();
                let (m, theta) = evotune::model::load(&model).with_context(|| format!("loading model {model}"))?;
                path = m.path.clone();
                let opts = IterationBenchOptions { perturbation: mode, population, iterations, ..Default::default() };
                let r = pool.install(|| bench_es_iteration(&m, theta, &opts))?;
                text.line(format_args!("{r}\n"));
                results.push(r);
            }
            let qes = if method == Method::Qes {
                evotune::run::memory::give_back_free_memory();
                evotune::run::bench::reset_peak_rss();
                let (m, w, _) = evotune::model::load_weights(&model, WeightFormat::Quantized)
                    .with_context(|| format!("loading model {model} (quantized)"))?;
                let evotune::model::LoadedWeights::Quantized(store) = w else { unreachable!("quantized weights") };
                let r = pool.install(|| {
                    evotune::run::bench_qes::bench_qes_iteration(
                        &m,
                        store,
                        population,
                        residual,
                        member_batch,
                        iterations,
                    )
                })?;
                text.line(format_args!("{r}\n"));
                Some(r)
            } else {
                None
            };
            let full = results.iter().find(|r| r.perturbation == Perturbation::Full);
            let low = results.iter().find(|r| r.perturbation != Perturbation::Full);
            if let (Some(f), Some(l)) = (full, low) {
                text.line(format_args!(
                    "low rank vs full rank: {:.2}× the iteration speed at equal N",
                    f.seconds_per_iteration / l.seconds_per_iteration
                ));
            }
            let torch = if vs_torch {
                let cap = torch_isa_cap(simd_level(), Level::Avx512.supported());
                if let Some((isa, env)) = cap {
                    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    text.line(format_args!(
                        "our kernels are capped at {isa} on a CPU with AVX-512: running the PyTorch reference at \
                         {isa} too ({})",
                        vars.join(" ")
                    ));
                }
                let torch = run_torch(&path, population, iterations, pool.current_num_threads(), cap.map(|c| c.1))?;
                let t = torch.seconds_per_iteration;
                text.line(format_args!(
                    "PyTorch reference loop: {t:.2} s/iteration ({:.3} s per member){}",
                    t / population as f64,
                    match &torch.cpu_capability {
                        Some(c) => format!(", ATen CPU capability {c}"),
                        None => String::new(),
                    }
                ));
                if let Some(q) = &qes {
                    text.line(format_args!("  evotune QES: {:.1}× faster", t / q.s_per_iteration));
                }
                for r in &results {
                    text.line(format_args!(
                        "  evotune {:?}: {:.1}× faster",
                        r.perturbation,
                        t / r.seconds_per_iteration
                    ));
                    if let (Some(flops), Some(lower)) = (r.fma_bound_seconds(), r.lower_bound_seconds()) {
                        text.line(format_args!(
                            "    at most {:.1}× even at the FMA peak, and {:.1}× counting one read of the weights \
                             per forward (evaluation at its bound, update as measured)",
                            t / (flops + r.update_seconds),
                            t / (lower + r.update_seconds)
                        ));
                    }
                }
                Some((torch, cap.map(|c| c.0)))
            } else {
                None
            };
            if let (Some(q), Some(f)) = (&qes, full) {
                text.line(format_args!(
                    "QES vs f32 full rank: {:.2}× the iteration speed at equal N",
                    f.seconds_per_iteration / q.s_per_iteration
                ));
            }
            if json {
                if let Some(q) = &qes {
                    let line = QesJson {
                        bench: q,
                        iterations,
                        torch_s_per_iteration: torch.as_ref().map(|t| t.0.seconds_per_iteration),
                    };
                    println!("{}", serde_json::to_string(&line)?);
                }
                for r in &results {
                    let line = IterationJson {
                        bench: r.json_line(),
                        iterations,
                        torch_s_per_iteration: torch.as_ref().map(|t| t.0.seconds_per_iteration),
                        torch_isa_cap: torch.as_ref().and_then(|t| t.1),
                        torch_cpu_capability: torch.as_ref().and_then(|t| t.0.cpu_capability.as_deref()),
                    };
                    println!("{}", serde_json::to_string(&line)?);
                }
            }
        }
        BenchWhich::Es { dim, population, json } => {
            let report = evotune::es::bench::bench_es(dim, population)?;
            Text { json }.line(&report);
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
        }
    }
    Ok(())
}

/// Where the human-readable text goes: stdout, or stderr when stdout carries JSON lines (`--json`).
#[derive(Clone, Copy)]
struct Text {
    json: bool,
}

impl Text {
    fn line(self, s: impl std::fmt::Display) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

#[cfg(feature = "bench")]
fn backward_vs_candle(pool: &rayon::ThreadPool, model: &str, rows: usize, text: Text) -> anyhow::Result<()> {
    let (m, theta) = evotune::model::load(model).with_context(|| format!("loading model {model}"))?;
    let r = pool.install(|| evotune::run::bench_grpo::backward_vs_candle(&m, &theta, rows))?;
    text.line(format_args!("{r}"));
    if text.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

#[cfg(not(feature = "bench"))]
fn backward_vs_candle(_pool: &rayon::ThreadPool, _model: &str, _rows: usize, _text: Text) -> anyhow::Result<()> {
    bail!("--vs-candle needs a build with `--features bench` (candle is not compiled in otherwise)")
}

/// One line of `bench es-iteration --json`: a mode's figures and the PyTorch reference's.
#[derive(serde::Serialize)]
struct IterationJson<'a> {
    #[serde(flatten)]
    bench: IterationLine<'a>,
    /// Timed iterations the figures average over.
    iterations: usize,
    /// The PyTorch loop's seconds per iteration with `--vs-torch`, else null.
    torch_s_per_iteration: Option<f64>,
    /// The ISA the PyTorch loop was capped at (`avx2`), or null when it ran uncapped or not at all.
    torch_isa_cap: Option<&'static str>,
    /// What `torch.backends.cpu.get_cpu_capability()` reported in the reference run.
    torch_cpu_capability: Option<&'a str>,
}

/// The `bench es-iteration --json` line of the QES mode.
#[derive(serde::Serialize)]
struct QesJson<'a> {
    #[serde(flatten)]
    bench: &'a evotune::run::bench_qes::QesIterationBench,
    iterations: usize,
    torch_s_per_iteration: Option<f64>,
}

/// Prefill and decode throughput, ours vs candle's llama on the same weights.
#[cfg(feature = "bench")]
fn bench_generate(model: &str, weights: WeightFormat, text: Text) -> anyhow::Result<()> {
    let (m, theta) = evotune::model::load(model).with_context(|| format!("loading model {model}"))?;
    let opts = evotune::model::bench::BenchOptions::default();
    let report = if weights == WeightFormat::F32 {
        evotune::model::bench::bench_generate(&m.llama, &[("f32", &theta)], Some(&theta), &opts)?
    } else {
        let (_, q, notes) = evotune::model::load_weights(model, weights)
            .with_context(|| format!("loading model {model} (--weights {})", weights.name()))?;
        for n in &notes {
            text.line(format_args!("note: {n}"));
        }
        text.line(format_args!("{} weights: {}", weights.name(), q.summary()));
        let ours: [(&'static str, &dyn evotune::model::Weights); 2] = [(weights.name(), q.weights()), ("f32", &theta)];
        let opts = evotune::model::bench::BenchOptions { candle: false, ..opts };
        evotune::model::bench::bench_generate(&m.llama, &ours, None, &opts)?
    };
    text.line(&report);
    if text.json {
        for line in report.json_lines() {
            println!("{}", serde_json::to_string(&line)?);
        }
    }
    Ok(())
}

/// Without the `bench` feature candle is not compiled in, so there is nothing to compare against.
#[cfg(not(feature = "bench"))]
fn bench_generate(_model: &str, _weights: WeightFormat, _text: Text) -> anyhow::Result<()> {
    bail!(
        "`bench generate` compares against candle, which this build leaves out; rebuild with \
         `--features bench` (e.g. `cargo run --release --features bench -- bench generate`)"
    )
}

/// What the PyTorch reference run reported.
struct TorchRun {
    seconds_per_iteration: f64,
    /// `torch.backends.cpu.get_cpu_capability()`, when the script reports it.
    cpu_capability: Option<String>,
}

/// Seconds per iteration of the PyTorch reference loop on the same prompts and model file, with
/// `env` (an ISA cap, [`torch_isa_cap`]) in its environment.
fn run_torch(
    model: &std::path::Path,
    population: usize,
    iterations: usize,
    threads: usize,
    env: Option<&[(&str, &str)]>,
) -> anyhow::Result<TorchRun> {
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
        .envs(env.unwrap_or_default().iter().copied())
        .output()
        .context("running python3 (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed (needs torch, transformers, accelerate and gguf):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).with_context(|| format!("parsing `{last}`"))?;
    Ok(TorchRun {
        seconds_per_iteration: v["seconds_per_iteration"]
            .as_f64()
            .context("no seconds_per_iteration in the reference's output")?,
        cpu_capability: v["cpu_capability"].as_str().map(str::to_string),
    })
}
