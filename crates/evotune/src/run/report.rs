//! The data behind `evotune report`: series per run read from `metrics.jsonl`, and the Markdown
//! table of start / end / min values per task. Drawing is the CLI's job.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::es::DriftBudget;
use crate::run::dir::{self, RunDir};
use crate::run::metrics::MetricsLine;

/// The file `evotune attribute` writes in a run directory by default.
pub const ATTRIBUTION: &str = "attribution.jsonl";

/// (iteration, value) points.
pub type Series = Vec<(u64, f64)>;

/// Everything plotted for one run.
#[derive(Clone, Debug, Default)]
pub struct RunSeries {
    /// Legend label: the directory name and its AWD setting.
    pub label: String,
    pub target_task: String,
    pub reward_mean: Series,
    pub drift: Series,
    pub target_accuracy: Series,
    pub target_reward: Series,
    /// Prior task → accuracy over iterations.
    pub prior_accuracy: BTreeMap<String, Series>,
    /// "task/metric" → value (e.g. `kl/kl`, `capitals/logprob_margin`).
    pub prior_metrics: BTreeMap<String, Series>,
    /// QES: percent of the codes that differ from the base, at each evaluation.
    pub codes_moved: Series,
    /// Drift budget: the run's bound, λ_t at each iteration, and the budgeted measure over
    /// iterations (‖θ−θ0‖ every iteration, or the KL probe at the evaluations).
    pub budget: Option<DriftBudget>,
    pub awd_lambda: Series,
    pub budgeted: Series,
    /// `RUN/attribution.jsonl` as a Markdown table, when `evotune attribute` wrote one.
    pub attribution: Option<String>,
}

impl RunSeries {
    pub fn read(run: &Path) -> Result<Self> {
        let dir = RunDir::open(run)?;
        let cfg = dir.config()?;
        let name =
            run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run.display().to_string());
        let awd = match cfg.awd {
            crate::es::AwdKind::None => "no AWD".to_string(),
            kind => format!("AWD-{:?} λ={}", kind, cfg.awd_lambda).to_lowercase(),
        };
        let awd = match cfg.drift_budget {
            Some(b) => format!("AWD-{:?}, budget {b}", cfg.awd).to_lowercase(),
            None => awd,
        };
        let label = match cfg.method {
            crate::run::config::Method::Es => format!("{name} ({awd})"),
            crate::run::config::Method::Qes => format!("{name} (QES, {awd})"),
            crate::run::config::Method::Grpo => {
                let g = &cfg.grpo;
                format!("{name} (GRPO, G={} lr={} β={})", g.group, g.lr, g.kl_beta)
            }
        };
        let mut s = RunSeries { label, target_task: cfg.task.clone(), budget: cfg.drift_budget, ..Default::default() };
        let attribution = run.join(ATTRIBUTION);
        if attribution.exists() {
            let (header, rows) = crate::run::attribution::read_jsonl(&attribution)?;
            s.attribution = Some(format!(
                "θ_{} by {:?}, sorted by KL carried:\n\n{}",
                header.iteration,
                header.by,
                crate::run::attribution::table(&header.measures, &rows)
            ));
        }
        let path = dir.path(dir::METRICS);
        for (line_no, line) in dir.read_lines(dir::METRICS)? {
            let m: MetricsLine = serde_json::from_str(&line)
                .map_err(|e| Error::RunDir { path: path.clone(), problem: format!("line {line_no}: {e}") })?;
            match m {
                MetricsLine::Iteration(l) => {
                    s.reward_mean.push((l.iteration, l.reward_mean));
                    s.drift.push((l.iteration, l.drift));
                    if let Some(lambda) = l.awd_lambda {
                        s.awd_lambda.push((l.iteration, lambda as f64));
                    }
                    if let Some(DriftBudget::Norm(_)) = s.budget {
                        s.budgeted.push((l.iteration, l.drift));
                    }
                }
                MetricsLine::Eval(e) => {
                    s.target_accuracy.push((e.iteration, e.target.accuracy));
                    s.target_reward.push((e.iteration, e.target.mean_reward));
                    if e.iteration == 0 {
                        s.drift.insert(0, (0, e.drift.total));
                    }
                    if let Some(c) = e.codes_moved {
                        s.codes_moved.push((e.iteration, 100.0 * c.fraction));
                    }
                    if let Some(DriftBudget::Kl(_)) = s.budget {
                        if let Some(kl) = e.priors.iter().find_map(|p| p.metrics.get("kl")) {
                            s.budgeted.push((e.iteration, *kl));
                        }
                    }
                    for p in &e.priors {
                        if p.accuracy.is_finite() {
                            s.prior_accuracy.entry(p.task.clone()).or_default().push((e.iteration, p.accuracy));
                        }
                        // Counts (`items`, `kl_tokens`) describe the suite, not the model.
                        for (k, v) in p.metrics.iter().filter(|(k, _)| !is_count(k)) {
                            s.prior_metrics.entry(format!("{}/{k}", p.task)).or_default().push((e.iteration, *v));
                        }
                    }
                }
            }
        }
        Ok(s)
    }
}

fn is_count(metric: &str) -> bool {
    metric == "items" || metric.ends_with("_tokens")
}

fn start_end_min(series: &Series) -> Option<(f64, f64, f64)> {
    let first = series.first()?.1;
    let last = series.last()?.1;
    let min = series.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    Some((first, last, min))
}

/// Markdown: one row per (run, task) with the value at the start, at the end, and the minimum.
pub fn summary_table(runs: &[RunSeries]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| run | measure | start | end | min |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in runs {
        let mut rows: Vec<(String, &Series)> = vec![
            (format!("{} test accuracy", r.target_task), &r.target_accuracy),
            (format!("{} train reward (population mean)", r.target_task), &r.reward_mean),
            ("‖θ−θ0‖₂".to_string(), &r.drift),
            ("codes moved from the base (%)".to_string(), &r.codes_moved),
            ("AWD λ_t (drift budget)".to_string(), &r.awd_lambda),
        ];
        for (task, s) in &r.prior_accuracy {
            if !r.prior_metrics.contains_key(&format!("{task}/kl")) {
                rows.push((format!("prior {task} accuracy"), s));
            }
        }
        for (key, s) in &r.prior_metrics {
            rows.push((format!("prior {key}"), s));
        }
        for (measure, s) in rows {
            if let Some((a, b, m)) = start_end_min(s) {
                let _ = writeln!(out, "| {} | {measure} | {a:.4} | {b:.4} | {m:.4} |", r.label);
            }
        }
    }
    out
}
