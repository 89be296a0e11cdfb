//! Training progress on the terminal: an indicatif bar, or one plain line per evaluation (--quiet).

use indicatif::{ProgressBar, ProgressStyle};

use evotune::run::{EvalLine, IterationLine, Progress, RunConfig};

pub struct Terminal {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_accuracy: Option<f64>,
    last: Option<IterationLine>,
}

impl Terminal {
    pub fn new(quiet: bool) -> Self {
        Terminal { bar: None, quiet, last_accuracy: None, last: None }
    }

    fn say(&self, text: &str) {
        // A hidden bar (stderr is not a terminal) would swallow `println`.
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn refresh(&self) {
        if let (Some(bar), Some(l)) = (&self.bar, &self.last) {
            let acc = self.last_accuracy.map(|a| format!("{:.1}%", 100.0 * a)).unwrap_or_else(|| "–".into());
            let budget = match (l.awd_lambda, l.drift_target) {
                (Some(lambda), Some(target)) => format!("  (target {target:.3}, λ {lambda:.3})"),
                _ => String::new(),
            };
            let grpo = l.grpo.as_ref().map_or(String::new(), |g| {
                let rss = g.peak_rss_bytes.map_or(String::new(), |b| format!("  peak RSS {:.0} MB", b as f64 / 1e6));
                format!("  KL {:.4}  ‖g‖ {:.3}  {:.0} train tok/s{rss}", g.kl, g.grad_norm, g.train_tokens_per_second)
            });
            bar.set_message(format!(
                "reward {:.3}  acc {acc}  ‖θ−θ0‖ {:.3}{budget}{grpo}  {:.1}s/it",
                l.reward_mean, l.drift, l.seconds
            ));
        }
    }
}

/// "arith 12.5% | capitals 93.0% | kl 0.0012"
pub fn eval_summary(line: &EvalLine) -> String {
    let mut parts = vec![format!(
        "{} {:.1}% (reward {:.3})",
        line.target.task,
        100.0 * line.target.accuracy,
        line.target.mean_reward
    )];
    for p in &line.priors {
        match p.metrics.get("kl") {
            Some(kl) => parts.push(format!("{} {:.5}", p.task, kl)),
            None => parts.push(format!("{} {:.1}%", p.task, 100.0 * p.accuracy)),
        }
    }
    let codes = line
        .codes_moved
        .map_or(String::new(), |c| format!(" | codes moved {} of {} ({:.4}%)", c.changed, c.total, 100.0 * c.fraction));
    let moved = line.drift.moved_fraction.map_or(String::new(), |f| format!(" (moved {:.2}%)", 100.0 * f));
    format!("eval @ {:>4}: {} | ‖θ−θ0‖ {:.4}{moved}{codes}", line.iteration, parts.join(" | "), line.drift.total)
}

impl Progress for Terminal {
    fn start(&mut self, cfg: &RunConfig, start_iteration: u64) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(cfg.iterations);
        bar.set_style(
            ProgressStyle::with_template("{spinner} it {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
                .expect("valid template"),
        );
        bar.set_position(start_iteration);
        self.bar = Some(bar);
    }
    fn iteration(&mut self, line: &IterationLine) {
        self.last = Some(line.clone());
        if let Some(bar) = &self.bar {
            bar.set_position(line.iteration);
        }
        self.refresh();
    }
    fn eval(&mut self, line: &EvalLine) {
        self.last_accuracy = Some(line.target.accuracy);
        self.say(&eval_summary(line));
        self.refresh();
    }
    fn stop_requested(&self) -> bool {
        crate::interrupt::requested()
    }
    fn message(&mut self, text: &str) {
        self.say(text);
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
