//! `evotune report RUN [RUN…] --out DIR`: PNG line plots against iteration (runs overlaid, with a
//! legend) and `summary.md` with start / end / min per task.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use evotune::run::report::{summary_table, RunSeries, Series};
use plotters::prelude::*;

use crate::args::ReportArgs;

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let runs: Vec<RunSeries> = a
        .runs
        .iter()
        .map(|r| RunSeries::read(r).with_context(|| format!("reading run {}", r.display())))
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let references = a.drift_reference.iter().map(|r| read_reference(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let written = write_report_with(&runs, &references, &a.out)?;
    for w in &written {
        println!("{}", w);
    }
    Ok(())
}

/// A `--drift-reference LABEL=FILE` curve: `iteration value` per line, `#` comments.
fn read_reference(spec: &str) -> anyhow::Result<(String, Series)> {
    let (label, file) =
        spec.rsplit_once('=').with_context(|| format!("--drift-reference `{spec}`: expected LABEL=FILE"))?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let mut series = Series::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let point = match (parts.next(), parts.next(), parts.next()) {
            (Some(x), Some(y), None) => x.parse::<u64>().ok().zip(y.parse::<f64>().ok()),
            _ => None,
        };
        let point =
            point.with_context(|| format!("{file} line {}: expected `iteration value`, found `{line}`", i + 1))?;
        series.push(point);
    }
    Ok((label.to_string(), series))
}

/// Writes every plot and the summary; returns the paths written.
pub fn write_report(runs: &[RunSeries], out: &Path) -> anyhow::Result<Vec<String>> {
    write_report_with(runs, &[], out)
}

/// [`write_report`] with extra labelled curves drawn on the drift plot (predictions).
pub fn write_report_with(
    runs: &[RunSeries],
    references: &[(String, Series)],
    out: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let mut drift_lines: Vec<(String, Series)> =
        runs.iter().map(|r| (r.label.clone(), r.drift.clone())).filter(|(_, s)| !s.is_empty()).collect();
    drift_lines.extend(references.iter().cloned());
    if !drift_lines.is_empty() {
        let path = out.join("drift.png");
        line_chart(&path, "‖θ − θ0‖₂", "L2 norm", &drift_lines, references.len())
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    let mut plot = |file: &str,
                    title: &str,
                    y: &str,
                    pick: &dyn Fn(&RunSeries) -> Option<Series>|
     -> anyhow::Result<()> {
        let lines: Vec<(String, Series)> =
            runs.iter().filter_map(|r| pick(r).map(|s| (r.label.clone(), s))).filter(|(_, s)| !s.is_empty()).collect();
        if lines.is_empty() {
            return Ok(());
        }
        let path = out.join(file);
        line_chart(&path, title, y, &lines, 0).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    let target = runs.first().map(|r| r.target_task.clone()).unwrap_or_default();
    plot("target_reward.png", &format!("{target}: population mean reward"), "reward", &|r| {
        Some(r.reward_mean.clone())
    })?;
    plot("target_accuracy.png", &format!("{target}: test accuracy"), "accuracy", &|r| Some(r.target_accuracy.clone()))?;
    plot("codes_moved.png", "QES: codes moved from the base", "percent of the codes", &|r| {
        Some(r.codes_moved.clone())
    })?;
    plot("awd_lambda.png", "drift budget: AWD λ_t", "λ", &|r| Some(r.awd_lambda.clone()))?;
    let priors: BTreeSet<String> = runs.iter().flat_map(|r| r.prior_accuracy.keys().cloned()).collect();
    for p in &priors {
        plot(&format!("prior_{}.png", sanitize(p)), &format!("prior task {p}: accuracy"), "accuracy", &|r| {
            r.prior_accuracy.get(p).cloned()
        })?;
    }
    let metrics: BTreeSet<String> = runs.iter().flat_map(|r| r.prior_metrics.keys().cloned()).collect();
    for m in &metrics {
        plot(&format!("metric_{}.png", sanitize(m)), &format!("prior {m}"), m.rsplit('/').next().unwrap_or(m), &|r| {
            r.prior_metrics.get(m).cloned()
        })?;
    }
    // Each budgeted run's measure against its bound B (dashed).
    for r in runs.iter().filter(|r| !r.budgeted.is_empty()) {
        let Some(budget) = r.budget else { continue };
        let last = r.budgeted.last().map_or(1, |p| p.0).max(1);
        let bound = vec![(0, budget.bound()), (last, budget.bound())];
        let lines = [(r.label.clone(), r.budgeted.clone()), (format!("bound {budget}"), bound)];
        let path = out.join(format!("budget_{}.png", sanitize(&r.label)));
        let what =
            if budget.to_string().starts_with("kl") { "KL probe, mean per token" } else { "‖θ − θ0‖₂" };
        line_chart(&path, &format!("drift budget {budget}"), what, &lines, 1)
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    let md = out.join("summary.md");
    let mut text = String::from("# evotune report\n\n");
    for r in runs {
        text.push_str(&format!("- {}\n", r.label));
    }
    text.push('\n');
    text.push_str(&summary_table(runs));
    for r in runs {
        if let Some(table) = &r.attribution {
            text.push_str(&format!("\n## Attribution: {}\n\n{table}", r.label));
        }
    }
    text.push_str("\nPlots: ");
    text.push_str(
        &written
            .iter()
            .map(|w| Path::new(w).file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push('\n');
    evotune::files::write_atomic_bytes(&md, text.as_bytes())?;
    written.push(md.display().to_string());
    Ok(written)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Draws `lines` against iteration; the last `dashed` of them (references such as predictions) are
/// thin black dashed lines without markers, so the measured points stay visible under them.
fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    lines: &[(String, Series)],
    dashed: usize,
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)).max().unwrap_or(1).max(1);
    let ys = lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).filter(|v| v.is_finite());
    let (mut lo, mut hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..x_max, lo..hi)?;
    chart.configure_mesh().x_desc("iteration").y_desc(y_label).draw()?;
    for (i, (label, series)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(u64, f64)> = series.iter().copied().filter(|p| p.1.is_finite()).collect();
        if i + dashed >= lines.len() {
            let style = BLACK.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
