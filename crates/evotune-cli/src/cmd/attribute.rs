//! `evotune attribute RUN [--iter K] [--by block|layer|kind|tensor]`: revert each parameter group
//! to θ0, evaluate the run's target and priors, and print which groups carry the KL and the gain
//! (table on stdout, JSONL and a layer × part heat map of the KL carried next to it).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use evotune::run::attribution::{self, GroupEffect, Grouping, Header};
use evotune::run::train::prepare_tasks;
use plotters::prelude::*;

use crate::args::AttributeArgs;
use crate::cmd::with_threads;

pub fn run(a: AttributeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = a.out.clone().unwrap_or_else(|| a.run.join("attribution.jsonl"));
    let (header, rows) = with_threads(a.threads, || -> anyhow::Result<_> {
        let w = evotune::run::replay::weights_at(&a.run, a.iter)
            .with_context(|| format!("replaying {}", a.run.display()))?;
        let tasks = prepare_tasks(&w.config, &w.model, &w.theta0).context("preparing the run's tasks")?;
        eprintln!("attributing θ_{} of {} by {:?}", w.iteration, a.run.display(), a.by);
        let (measures, rows) = attribution::attribute(
            &w.model,
            &w.theta,
            &w.theta0,
            tasks.target.as_ref(),
            &tasks.priors,
            a.by,
            &mut |i, n, r: &GroupEffect| {
                let kl = r.carried.get("kl").map(|v| format!("  ΔKL {v:+.5}")).unwrap_or_default();
                let t = r.carried.get("target").copied().unwrap_or(f64::NAN);
                eprintln!("[{:>3}/{n}] {:<22} ‖δ‖ {:>9.3}{kl}  Δtarget {t:+.4}", i + 1, r.group, r.drift);
            },
        )?;
        Ok((Header { iteration: w.iteration, by: a.by, measures }, rows))
    })??;
    attribution::write_jsonl(&out, &header, &rows)?;
    print!("{}", attribution::table(&header.measures, &rows));
    println!("\nwritten: {}", out.display());
    if header.by == Grouping::Block {
        let png = out.with_extension("png");
        heat_map(&png, &rows).with_context(|| format!("drawing {}", png.display()))?;
        println!("written: {}", png.display());
    }
    println!("{} groups in {:.1} s", rows.len(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Layer × part (attn, mlp, norm) cells coloured by the KL each group carries (red: reverting it
/// lowers the KL; blue: raises it); the groups outside the blocks are listed under the map.
pub fn heat_map(path: &Path, rows: &[GroupEffect]) -> anyhow::Result<()> {
    const PARTS: [&str; 3] = ["attn", "mlp", "norm"];
    let cell = |r: &GroupEffect| -> Option<(usize, usize, f64)> {
        let rest = r.group.strip_prefix("layers.")?;
        let (layer, part) = rest.split_once('.')?;
        let col = PARTS.iter().position(|p| *p == part)?;
        Some((layer.parse().ok()?, col, r.carried.get("kl").copied()?))
    };
    let cells: Vec<(usize, usize, f64)> = rows.iter().filter_map(cell).collect();
    let layers = cells.iter().map(|c| c.0 + 1).max().unwrap_or(1);
    let scale = cells.iter().map(|c| c.2.abs()).fold(0.0f64, f64::max).max(1e-12);
    let root = BitMapBackend::new(path, (520, (160 + 18 * layers) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("KL carried per group (θ_K − reverted)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((0..PARTS.len() - 1).into_segmented(), (0..layers - 1).into_segmented())?;
    // n cells per axis are the segments of 0..n − 1 (its last end included); labels at their centres.
    let centre = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => Some(*i),
        _ => None,
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(PARTS.len())
        .y_labels(layers)
        .x_label_formatter(&|x| centre(x).and_then(|i| PARTS.get(i)).map(|s| s.to_string()).unwrap_or_default())
        .y_label_formatter(&|y| centre(y).map(|i| i.to_string()).unwrap_or_default())
        .y_desc("layer")
        .draw()?;
    chart.draw_series(cells.iter().map(|&(l, c, v)| {
        let t = (v / scale).clamp(-1.0, 1.0);
        let fade = |x: f64| (255.0 * (1.0 - x.abs())) as u8;
        let color = if t >= 0.0 { RGBColor(255, fade(t), fade(t)) } else { RGBColor(fade(t), fade(t), 255) };
        Rectangle::new(
            [
                (SegmentValue::Exact(c), SegmentValue::Exact(l)),
                (SegmentValue::Exact(c + 1), SegmentValue::Exact(l + 1)),
            ],
            color.filled(),
        )
    }))?;
    let outside: Vec<String> = rows
        .iter()
        .filter(|r| cell(r).is_none())
        .map(|r| format!("{} {:+.4}", r.group, r.carried.get("kl").copied().unwrap_or(f64::NAN)))
        .collect();
    root.draw(&Text::new(
        format!("max |ΔKL| {scale:.4}; outside the blocks: {}", outside.join(", ")),
        (10, (140 + 18 * layers) as i32),
        ("sans-serif", 13),
    ))?;
    root.present()?;
    Ok(())
}
