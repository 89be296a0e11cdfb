//! `evotune demo`: the main job for a newcomer. Fetches the default model, fine-tunes it with ES
//! on `arith` twice — without AWD and with AWD-l2 — tracking prior tasks, then writes the report.
//! Sized to finish within 20 minutes on a 2-core machine. Re-running resumes unfinished runs.

use anyhow::Context;
use evotune::es::AwdKind;
use evotune::run::config::PartialConfig;
use evotune::run::train::{train, Start};

use crate::args::DemoArgs;
use crate::progress::{eval_summary, Terminal};

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let model = evotune::model::fetch::fetch_default_model().context("fetching the default model")?;
    eprintln!("model: {}", model.display());
    if a.fresh && a.out.exists() {
        std::fs::remove_dir_all(&a.out).with_context(|| format!("removing {}", a.out.display()))?;
    }
    let mut runs = Vec::new();
    for (name, awd) in [("es", AwdKind::None), ("es-awd-l2", AwdKind::L2)] {
        let out = a.out.join(name);
        let mut table = toml::Table::new();
        table.insert("train_size".into(), toml::Value::Integer(16));
        table.insert("test_size".into(), toml::Value::Integer(48));
        table.insert("kl_prompts".into(), toml::Value::Integer(8));
        let partial = PartialConfig {
            model: Some(model.display().to_string()),
            task: Some("arith".into()),
            priors: Some(vec!["capitals".into(), "opposites".into(), "science".into(), "kl".into()]),
            prior_limit: Some(40),
            population: Some(8),
            // The papers' σ = 1e-3 leaves the greedy answers of this 135M model on 16 prompts
            // unchanged for most members (equal rewards, no signal), and their α = σ/2 moves θ
            // too little to matter in 16 iterations. σ = 3e-3 with α = 2σ raised the population
            // reward from 0.11 to 0.28 in 12 iterations here (seed 7).
            sigma: Some(3e-3),
            alpha: Some(6e-3),
            iterations: Some(a.iterations),
            seed: Some(7),
            awd: Some(awd),
            awd_lambda: if awd == AwdKind::L2 { Some(10.0) } else { None },
            eval_every: Some((a.iterations / 2).max(1)),
            threads: Some(a.threads),
            out: Some(out.clone()),
            task_options: Some(table),
            ..Default::default()
        };
        let cfg = partial.clone().resolve()?;
        eprintln!(
            "\n== run {name}: {} iterations, N = {}, σ = {}, α = {}, AWD {:?} ==",
            cfg.iterations, cfg.population, cfg.sigma, cfg.alpha, cfg.awd
        );
        let start = if out.join("config.toml").exists() { Start::Resume { given: partial } } else { Start::New };
        let summary =
            train(cfg, start, &mut Terminal::new(false)).with_context(|| format!("demo run {}", out.display()))?;
        if let (Some(f), Some(l)) = (&summary.first_eval, &summary.last_eval) {
            eprintln!("first {}\nlast  {}", eval_summary(f), eval_summary(l));
        }
        runs.push(out);
    }
    let report = a.out.join("report");
    let series = runs.iter().map(|r| evotune::run::report::RunSeries::read(r)).collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&report)?;
    super::report::write_report(&series, &report)?;
    println!("\nreport: {}/summary.md (plots in {})", report.display(), report.display());
    Ok(())
}
