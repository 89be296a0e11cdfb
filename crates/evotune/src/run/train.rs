//! The training loop: ask → evaluate members → tell → log, with evaluation, checkpoints and resume.
//!
//! One iteration t reads top to bottom:
//! ```text
//! pop      = es.ask(state)                      seeds + signs, a pure function of (seed, t)
//! rewards  = mean task reward of θ+σεₙ           forward passes only; θ untouched
//! step     = es.tell(state, pop, rewards)       shape → θ += α/N Σ cₙεₙ → AWD
//! log        trajectory line, then metrics line (each fsynced)
//! ```
//! The trajectory line is the checkpoint: on resume, θ_K is rebuilt by replaying the logged
//! coefficients (the same `Strategy::apply` as training), so a run killed at any moment continues
//! the same trajectory bit for bit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::es::{Anchor, EsState, StepRecord, Strategy};
use crate::model::generate::GenerateStats;
use crate::model::{self, Params};
use crate::run::comm::{self, Comm, SingleProcess};
use crate::run::config::{PartialConfig, RunConfig};
use crate::run::dir::{self, RunDir};
use crate::run::eval_split::evaluate_split;
use crate::run::metrics::{EvalLine, IterationLine, MetricsLine};
use crate::run::population;
use crate::tasks::{self, PriorTask, Task, TaskOptions};

/// Callbacks for the CLI's progress display; every method has a silent default.
pub trait Progress: Send {
    fn start(&mut self, _cfg: &RunConfig, _start_iteration: u64) {}
    fn iteration(&mut self, _line: &IterationLine) {}
    fn eval(&mut self, _line: &EvalLine) {}
    fn message(&mut self, _text: &str) {}
    fn finish(&mut self) {}
}

/// A `Progress` that shows nothing.
pub struct Silent;
impl Progress for Silent {}

/// What a finished run hands back.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub iterations: u64,
    pub first_eval: Option<EvalLine>,
    pub last_eval: Option<EvalLine>,
    /// Checksum of the final θ's bits (identical for identical trajectories).
    pub checksum: u64,
}

/// How to start: a fresh run, or continue the one in `cfg.out` (flags given on resume are
/// checked against the stored config).
pub enum Start {
    New,
    Resume { given: PartialConfig },
}

/// Runs (or resumes) training to `cfg.iterations` in this process alone.
pub fn train(cfg: RunConfig, start: Start, progress: &mut dyn Progress) -> Result<RunSummary> {
    train_with(cfg, start, progress, &SingleProcess)
}

/// Runs (or resumes) training as one of `comm.size()` processes: this one evaluates its share of
/// every population, the rewards are all-gathered, and every process applies the same update.
/// Only the root process writes the run directory.
pub fn train_with(cfg: RunConfig, start: Start, progress: &mut dyn Progress, comm: &dyn Comm) -> Result<RunSummary> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| Error::EsConfig { field: "threads", problem: e.to_string() })?;
    pool.install(|| train_in_pool(cfg, start, progress, comm))
}

/// Loads the stored config of a run directory.
pub fn stored_config(dir: &RunDir) -> Result<RunConfig> {
    let path = dir.path(dir::CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    toml::from_str(&text).map_err(|e| Error::Config { path, problem: e.to_string() })
}

/// Parses the complete lines of `trajectory.jsonl` (a partial last line from a kill is ignored);
/// iterations must run 0, 1, 2, … without gaps.
pub fn read_records(dir: &RunDir) -> Result<Vec<StepRecord>> {
    let path = dir.path(dir::TRAJECTORY);
    let mut records: Vec<StepRecord> = Vec::new();
    for (line_no, line) in dir.read_lines(dir::TRAJECTORY)? {
        let rec: StepRecord = serde_json::from_str(&line).map_err(|e| Error::Trajectory {
            path: path.clone(),
            line: line_no,
            problem: e.to_string(),
        })?;
        if rec.iteration != records.len() as u64 {
            return Err(Error::Trajectory {
                path: path.clone(),
                line: line_no,
                problem: format!("iteration {} where {} was expected", rec.iteration, records.len()),
            });
        }
        records.push(rec);
    }
    Ok(records)
}

/// The target task and its options as resolved for this run.
pub fn build_target(cfg: &RunConfig) -> Result<(Box<dyn Task>, TaskOptions)> {
    let opts: TaskOptions = cfg.task_options.clone().try_into().map_err(|e: toml::de::Error| Error::Config {
        path: cfg.out.join(dir::CONFIG),
        problem: format!("task_options: {e}"),
    })?;
    Ok((tasks::target_task(&cfg.task, &opts)?, opts))
}

fn is_due(every: u64, k: u64, last: u64) -> bool {
    every > 0 && (k % every == 0 || k == last)
}

fn train_in_pool(cfg: RunConfig, start: Start, progress: &mut dyn Progress, comm: &dyn Comm) -> Result<RunSummary> {
    let root = comm.is_root();
    // --- the run directory and the resolved config ---
    let (dir, cfg, records) = match start {
        Start::New => {
            let dir = if root { RunDir::create(&cfg.out)? } else { RunDir::at(&cfg.out) };
            if root {
                dir.write_file(dir::CONFIG, cfg.to_toml().as_bytes())?;
            }
            (dir, cfg, Vec::new())
        }
        Start::Resume { given } => {
            let dir = RunDir::open(&cfg.out)?;
            let stored = stored_config(&dir)?;
            stored.check_resume(&given).map_err(|diffs| Error::RunDir {
                path: dir.path(dir::CONFIG),
                problem: format!("the flags disagree with the stored run: {}", diffs.join("; ")),
            })?;
            let resumed = RunConfig {
                iterations: given.iterations.unwrap_or(stored.iterations),
                threads: given.threads.unwrap_or(stored.threads),
                eval_every: given.eval_every.unwrap_or(stored.eval_every),
                checkpoint_every: given.checkpoint_every.unwrap_or(stored.checkpoint_every),
                checksum_every: given.checksum_every.unwrap_or(stored.checksum_every),
                out: cfg.out.clone(),
                ..stored
            };
            let records = read_records(&dir)?;
            if root {
                dir.write_file(dir::CONFIG, resumed.to_toml().as_bytes())?;
            }
            (dir, resumed, records)
        }
    };
    let k0 = records.len() as u64;

    // --- model, tasks, strategy ---
    progress.message(&format!("loading model {}", cfg.model));
    let (model, theta0) = model::load(&cfg.model)?;
    let model = Arc::new(model);
    let (task, opts) = build_target(&cfg)?;
    let mut priors: Vec<PriorTask> = cfg.priors.iter().map(|p| tasks::prior_task(p, &opts)).collect::<Result<_>>()?;
    for p in &mut priors {
        if let PriorTask::MultipleChoice { items, .. } = p {
            if cfg.prior_limit > 0 {
                items.truncate(cfg.prior_limit);
            }
        }
        p.prepare(&model, &theta0)?;
    }
    // θ0 is re-derived tensor by tensor from the model file: AWD and drift (both through the
    // strategy's anchor and its reusable scratch) need no f32 copy.
    let anchor = Anchor::Source(model.theta0_source());
    let strategy = Strategy::new(cfg.es_params(), anchor)?;

    // --- θ_K: replay the logged steps (resume) ---
    let mut state = EsState { theta: theta0, iteration: 0 };
    for rec in &records {
        strategy.apply(&mut state, rec)?;
    }
    if k0 > 0 && root {
        // Drop log lines past the replayed state (a kill between the two appends).
        dir.truncate_log(dir::TRAJECTORY, |_| true)?;
        dir.truncate_log(dir::METRICS, |l| {
            serde_json::from_str::<MetricsLine>(l).map(|m| m.iteration() <= k0).unwrap_or(false)
        })?;
        progress.message(&format!("resumed {} at iteration {k0}", dir.root().display()));
    }
    let evaluated: Vec<u64> = if root { evaluated_iterations(&dir)? } else { Vec::new() };

    let mut first_eval = None;
    let mut last_eval = None;
    // Every rank evaluates its share (see `eval_split`); the root alone gets and writes the line.
    let run_eval = |state: &EsState, progress: &mut dyn Progress| -> Result<Option<EvalLine>> {
        let t = Instant::now();
        let Some((target, priors)) =
            evaluate_split(&model, &state.theta, task.as_ref(), &priors, comm, state.iteration)?
        else {
            return Ok(None);
        };
        let drift = strategy.drift(&state.theta)?;
        let line = EvalLine { iteration: state.iteration, target, priors, drift, seconds: t.elapsed().as_secs_f64() };
        dir.append_line(dir::METRICS, &MetricsLine::Eval(line.clone()))?;
        progress.eval(&line);
        Ok(Some(line))
    };
    let is_eval_due = |k: u64| is_due(cfg.eval_every, k, cfg.iterations);

    progress.start(&cfg, k0);
    // Only the root reads the metrics log: its answer holds for every rank.
    let first_due =
        cfg.eval_every > 0 && !evaluated.contains(&k0) && (k0 == 0 || is_due(cfg.eval_every, k0, cfg.iterations));
    if root_decides(comm, first_due) {
        if let Some(line) = run_eval(&state, progress)? {
            first_eval.get_or_insert(line.clone());
            last_eval = Some(line);
        }
    }

    // --- the ES loop ---
    // The full-rank member arena θ + σε: allocated by the first `perturb_into`, never in low-rank mode.
    let mut member_theta = Params::zeros(Arc::new(Default::default()));
    while state.iteration < cfg.iterations {
        let t_start = Instant::now();
        let t = state.iteration;
        let items = tasks::minibatch(task.train(), task.minibatch_size(), opts.seed, t);
        let pop = strategy.ask(&state);
        let mine = comm::share(pop.members.len(), comm.rank(), comm.size());
        let local = population::member_rewards(
            &model,
            &strategy,
            &state.theta,
            t,
            &pop.members[mine],
            task.as_ref(),
            &items,
            &mut member_theta,
            &mut GenerateStats::default(),
        )?;
        let rewards = comm.all_gather_f32(&local, &comm::counts(pop.members.len(), comm.size()));
        let eval_seconds = t_start.elapsed().as_secs_f64();
        let t_update = Instant::now();
        let step = strategy.tell(&mut state, &pop, &rewards)?;
        let update_seconds = t_update.elapsed().as_secs_f64();
        if comm.size() > 1 && cfg.checksum_every > 0 && state.iteration % cfg.checksum_every == 0 {
            check_replicas(comm, &state)?;
        }
        if !root {
            if is_eval_due(state.iteration) {
                run_eval(&state, progress)?;
            }
            continue;
        }
        dir.append_line(dir::TRAJECTORY, &step)?;

        let d = strategy.drift(&state.theta)?;
        let (reward_mean, reward_std, reward_min, reward_max) = IterationLine::reward_stats(&rewards);
        let line = IterationLine {
            iteration: state.iteration,
            reward_mean,
            reward_std,
            reward_min,
            reward_max,
            drift: d.total,
            eval_seconds,
            update_seconds,
            seconds: t_start.elapsed().as_secs_f64(),
        };
        dir.append_line(dir::METRICS, &MetricsLine::Iteration(line.clone()))?;
        progress.iteration(&line);

        let k = state.iteration;
        if is_due(cfg.checkpoint_every, k, cfg.iterations) {
            let path = dir.checkpoint_path(k);
            std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| Error::io(&path, e))?;
            model::safetensors::write(&path, &state.theta, model.config.tied_embeddings)?;
        }
        if is_eval_due(k) {
            if let Some(line) = run_eval(&state, progress)? {
                first_eval.get_or_insert(line.clone());
                last_eval = Some(line);
            }
        }
    }
    progress.finish();
    Ok(RunSummary {
        dir: dir.root().to_owned(),
        iterations: state.iteration,
        first_eval,
        last_eval,
        checksum: state.theta.checksum(),
    })
}

/// Iterations that already have an eval line in the run's metrics log.
fn evaluated_iterations(dir: &RunDir) -> Result<Vec<u64>> {
    Ok(dir
        .read_lines(dir::METRICS)?
        .iter()
        .filter_map(|(_, l)| match serde_json::from_str::<MetricsLine>(l) {
            Ok(MetricsLine::Eval(e)) => Some(e.iteration),
            _ => None,
        })
        .collect())
}

/// The root's `flag`, on every rank.
fn root_decides(comm: &dyn Comm, flag: bool) -> bool {
    comm.all_gather_u64(&[u64::from(flag)])[0][0] != 0
}

/// Compares every tensor's checksum with rank 0's; the first difference stops the run.
fn check_replicas(comm: &dyn Comm, state: &EsState) -> Result<()> {
    let sums = comm.all_gather_u64(&state.theta.tensor_checksums());
    for (rank, theirs) in sums.iter().enumerate().skip(1) {
        if let Some(id) = theirs.iter().zip(&sums[0]).position(|(a, b)| a != b) {
            return Err(Error::RankDivergence {
                iteration: state.iteration,
                rank,
                tensor: state.theta.layout().info(id).name.clone(),
            });
        }
    }
    Ok(())
}
