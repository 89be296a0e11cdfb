//! The training loop: ask → evaluate members → tell → log, with evaluation, checkpoints and resume.
//!
//! One iteration t reads top to bottom ([`Trainer::iteration`]):
//! ```text
//! pop      = es.ask(state)                      seeds + signs, a pure function of (seed, t)
//! rewards  = mean task reward of θ+σεₙ           forward passes only; θ untouched
//! step     = es.tell(state, pop, rewards)       shape → θ += α/N Σ cₙεₙ → AWD
//! log        trajectory line, then metrics line (each fsynced)
//! ```
//! The trajectory line is the checkpoint: on resume, θ_K is rebuilt by replaying the logged
//! coefficients ([`crate::es::replay_onto`], the same `Strategy::apply` as training), so a run
//! killed at any moment continues the same trajectory bit for bit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::es::{drift, replay_onto, Anchor, Drift, EsState, StepRecord, Strategy};
use crate::model::generate::GenerateStats;
use crate::model::{self, Model, Params, Weights};
use crate::run::comm::{self, Comm, SingleProcess};
use crate::run::config::{Method, PartialConfig, RunConfig};
use crate::run::dir::{self, RunDir};
use crate::run::drift_budget::{share_lambda, BudgetRun};
use crate::run::eval_split::evaluate_split;
use crate::run::fitness::member_rewards;
use crate::run::grpo_step::{self, GrpoState};
use crate::run::metrics::{CodesMoved, EvalLine, GrpoLine, IterationLine, MetricsLine};
use crate::run::qes_step::{FileCodes, QesRun, QesState};
use crate::tasks::{self, PriorTask, Task, TaskOptions};

/// Callbacks for the CLI's progress display; every method has a silent default.
pub trait Progress: Send {
    fn start(&mut self, _cfg: &RunConfig, _start_iteration: u64) {}
    fn iteration(&mut self, _line: &IterationLine) {}
    fn eval(&mut self, _line: &EvalLine) {}
    fn message(&mut self, _text: &str) {}
    fn finish(&mut self) {}
    /// Whether the user asked the run to stop (Ctrl-C): checked before each iteration, so the run
    /// stops between iterations with everything it wrote complete ([`Error::Interrupted`]).
    fn stop_requested(&self) -> bool {
        false
    }
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
#[allow(clippy::large_enum_variant)] // one value per run
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
/// Only the root process writes (and locks) the run directory.
pub fn train_with(cfg: RunConfig, start: Start, progress: &mut dyn Progress, comm: &dyn Comm) -> Result<RunSummary> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| Error::EsConfig { field: "threads", problem: e.to_string() })?;
    pool.install(|| Trainer::open(cfg, start, progress, comm)?.run(progress))
}

/// The target task and its options as resolved for this run.
pub fn build_target(cfg: &RunConfig) -> Result<(Box<dyn Task>, TaskOptions)> {
    let opts: TaskOptions = cfg.task_options.clone().try_into().map_err(|e: toml::de::Error| Error::Config {
        path: cfg.out.join(dir::CONFIG),
        problem: format!("task_options: {e}"),
    })?;
    Ok((tasks::target_task(&cfg.task, &opts)?, opts))
}

/// A run's directory, resolved config and logged steps: a new directory with the config written
/// out, or an existing one whose stored config the flags given on resume must agree with.
fn open_or_resume(cfg: RunConfig, start: Start, root: bool) -> Result<(RunDir, RunConfig, Vec<StepRecord>)> {
    match start {
        Start::New => {
            let dir = if root { RunDir::create(&cfg.out)? } else { RunDir::at(&cfg.out) };
            if root {
                dir.write_file(dir::CONFIG, cfg.to_toml().as_bytes())?;
            }
            Ok((dir, cfg, Vec::new()))
        }
        Start::Resume { given } => {
            let dir = if root { RunDir::resume(&cfg.out)? } else { RunDir::open(&cfg.out)? };
            let given = PartialConfig { out: Some(cfg.out.clone()), ..given };
            let resumed = dir.config()?.resumed_with(&given).map_err(|diffs| Error::RunDir {
                path: dir.path(dir::CONFIG),
                problem: format!("the flags disagree with the stored run: {}", diffs.join("; ")),
            })?;
            resumed.validate()?;
            let records = dir.trajectory()?;
            if root {
                dir.write_file(dir::CONFIG, resumed.to_toml().as_bytes())?;
            }
            Ok((dir, resumed, records))
        }
    }
}

/// The target task, its options and the prior tasks, prepared on θ0 (the KL probe's reference).
pub struct RunTasks {
    pub target: Box<dyn Task>,
    pub opts: TaskOptions,
    pub priors: Vec<PriorTask>,
}

/// The run's tasks as training evaluates them: the target, and the priors (limited to
/// `prior_limit` items) prepared on θ0.
pub fn prepare_tasks(cfg: &RunConfig, model: &Model, theta0: &dyn Weights) -> Result<RunTasks> {
    let (target, opts) = build_target(cfg)?;
    let mut priors: Vec<PriorTask> = cfg.priors.iter().map(|p| tasks::prior_task(p, &opts)).collect::<Result<_>>()?;
    for p in &mut priors {
        p.limit(cfg.prior_limit);
        p.prepare(model, theta0)?;
    }
    Ok(RunTasks { target, opts, priors })
}

/// What a run trains, and the state it keeps between iterations.
#[allow(clippy::large_enum_variant)] // one value per run
enum Learner {
    /// ES on the f32 θ.
    Es {
        strategy: Strategy,
        state: EsState,
        /// The drift budget's controller (root only; `None` without a budget).
        budget: Option<BudgetRun>,
        /// The full-rank member arena θ + σε: allocated by the first `perturb_into`, never in
        /// low-rank mode.
        member_theta: Params,
    },
    /// QES on the quantized codes ([`crate::run::qes_step`]).
    Qes(Box<QesLearner>),
    /// GRPO by backpropagation ([`crate::run::grpo_step`]).
    Grpo(Box<GrpoState>),
}

/// A QES run's settings and state.
struct QesLearner {
    run: QesRun,
    state: QesState,
}

impl Learner {
    fn iteration(&self) -> u64 {
        match self {
            Learner::Es { state, .. } => state.iteration,
            Learner::Qes(q) => q.state.iteration,
            Learner::Grpo(g) => g.step,
        }
    }

    /// The current weights, as the forward reads them.
    fn weights(&self) -> &dyn Weights {
        match self {
            Learner::Es { state, .. } => &state.theta,
            Learner::Qes(q) => &q.state.store,
            Learner::Grpo(g) => &g.theta,
        }
    }

    /// ‖θ − θ0‖ (real units for QES codes).
    fn drift(&self) -> Result<Drift> {
        match self {
            Learner::Es { strategy, state, .. } => strategy.drift(&state.theta),
            Learner::Qes(q) => Ok(q.state.drift()?.0),
            Learner::Grpo(g) => drift::drift(&g.theta, &Anchor::InMemory(g.theta0.clone()), &mut Vec::new()),
        }
    }

    fn checksum(&self) -> u64 {
        match self {
            Learner::Es { state, .. } => state.theta.checksum(),
            Learner::Qes(q) => q.state.store.checksum(),
            Learner::Grpo(g) => g.theta.checksum(),
        }
    }
}

/// Everything one training process holds between iterations.
struct Trainer<'c> {
    cfg: RunConfig,
    dir: RunDir,
    comm: &'c dyn Comm,
    model: Model,
    tasks: RunTasks,
    learner: Learner,
    first_eval: Option<EvalLine>,
    last_eval: Option<EvalLine>,
}

impl<'c> Trainer<'c> {
    /// Opens or resumes the run, loads the model and tasks, and replays the logged steps to θ_K.
    fn open(cfg: RunConfig, start: Start, progress: &mut dyn Progress, comm: &'c dyn Comm) -> Result<Self> {
        let root = comm.is_root();
        let (dir, cfg, records) = open_or_resume(cfg, start, root)?;
        progress.message(&format!("loading model {}", cfg.model));
        let (model, tasks, learner) = match cfg.method {
            Method::Es => {
                let (mut model, theta0) = model::load(&cfg.model)?;
                model.chat.set_args(&cfg.chat_template_args);
                let tasks = prepare_tasks(&cfg, &model, &theta0)?;
                // θ0 is re-derived tensor by tensor from the model file: AWD and drift (both
                // through the strategy's anchor and its reusable scratch) need no f32 copy.
                let strategy = Strategy::new(cfg.es_params(), Anchor::Source(model.theta0_source()))?;
                let mut state = EsState::new(theta0);
                let budget = match cfg.drift_budget {
                    Some(_) if root => {
                        Some(BudgetRun::open(&cfg, &dir, &records, &model, &strategy, &state, &tasks.priors)?)
                    }
                    _ => None,
                };
                replay_onto(&strategy, &mut state, &records, u64::MAX)?;
                let member_theta = Params::zeros(Arc::new(Default::default()));
                (model, tasks, Learner::Es { strategy, state, budget, member_theta })
            }
            Method::Qes => {
                let (mut model, weights, notes) = model::load_weights(&cfg.model, cfg.codes.weight_format())?;
                model.chat.set_args(&cfg.chat_template_args);
                for n in &notes {
                    progress.message(&format!("note: {n}"));
                }
                let model::LoadedWeights::Quantized(base) = weights else { unreachable!("quantized weights") };
                let tasks = prepare_tasks(&cfg, &model, &base)?;
                let run = QesRun::from_config(&cfg);
                let file = FileCodes { theta0: model.theta0.clone(), format: cfg.codes.weight_format() };
                let mut state = QesState::new(base, Box::new(file), &run);
                state.replay(&run, &records, u64::MAX)?;
                (model, tasks, Learner::Qes(Box::new(QesLearner { run, state })))
            }
            Method::Grpo => {
                if comm.size() > 1 {
                    return Err(Error::EsConfig {
                        field: "method",
                        problem: "GRPO runs in one process, not under MPI".into(),
                    });
                }
                let (mut model, theta0) = model::load(&cfg.model)?;
                model.chat.set_args(&cfg.chat_template_args);
                crate::model::backprop::check_supported(&model.llama)?;
                let tasks = prepare_tasks(&cfg, &model, &theta0)?;
                let state_path = dir.path(grpo_step::STATE_FILE);
                let state =
                    if state_path.exists() { GrpoState::load(&state_path, theta0)? } else { GrpoState::new(theta0) };
                (model, tasks, Learner::Grpo(Box::new(state)))
            }
        };
        let k0 = learner.iteration();
        let grpo = matches!(learner, Learner::Grpo(_));
        if (k0 > 0 || grpo) && root && dir.path(dir::METRICS).exists() {
            // Drop log lines past the replayed state (a kill between the two appends; for GRPO, the
            // steps after its last saved state, which are recomputed).
            if !grpo {
                dir.drop_partial_lines(dir::TRAJECTORY, |_| true)?;
            }
            dir.drop_partial_lines(dir::METRICS, |l| {
                serde_json::from_str::<MetricsLine>(l).map(|m| m.iteration() <= k0).unwrap_or(false)
            })?;
            progress.message(&format!("resumed {} at iteration {k0}", dir.root().display()));
        }
        Ok(Trainer { cfg, dir, comm, model, tasks, learner, first_eval: None, last_eval: None })
    }

    fn run(mut self, progress: &mut dyn Progress) -> Result<RunSummary> {
        let k0 = self.learner.iteration();
        // Only the root reads the metrics log: its answer holds for every rank.
        let evaluated: Vec<u64> = if self.comm.is_root() { evaluated_iterations(&self.dir)? } else { Vec::new() };
        progress.start(&self.cfg, k0);
        let first_due = self.cfg.eval_every > 0
            && !evaluated.contains(&k0)
            && (k0 == 0 || is_due(self.cfg.eval_every, k0, self.cfg.iterations));
        if root_decides(self.comm, first_due) {
            self.evaluate(progress)?;
        }
        while self.learner.iteration() < self.cfg.iterations {
            if root_decides(self.comm, progress.stop_requested()) {
                // GRPO: keep the steps taken (ES and QES keep them in the trajectory).
                if let Learner::Grpo(g) = &self.learner {
                    g.save(&self.dir.path(grpo_step::STATE_FILE))?;
                }
                return Err(Error::Interrupted {
                    dir: self.dir.root().to_owned(),
                    iteration: self.learner.iteration(),
                });
            }
            self.iteration(progress)?;
        }
        progress.finish();
        Ok(RunSummary {
            dir: self.dir.root().to_owned(),
            iterations: self.learner.iteration(),
            first_eval: self.first_eval,
            last_eval: self.last_eval,
            checksum: self.learner.checksum(),
        })
    }

    /// One ES (or QES) iteration, its log lines, and the checkpoint and evaluation that fall due
    /// after it.
    fn iteration(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let t_start = Instant::now();
        let t = self.learner.iteration();
        let target = self.tasks.target.as_ref();
        let items = tasks::minibatch(target.train(), target.minibatch_size(), self.tasks.opts.seed, t);
        let mut budget_line = None;
        let mut grpo_line = None;
        let (step, rewards, eval_seconds, update_seconds, codes_stepped) = match &mut self.learner {
            Learner::Es { strategy, state, budget, member_theta } => {
                // A drift budget's λ_t: computed on the root, used by every rank.
                let lambda = match (&self.cfg.drift_budget, budget.as_ref()) {
                    (None, _) => None,
                    (Some(_), Some(b)) => Some(share_lambda(self.comm, b.lambda()?)),
                    (Some(_), None) => Some(share_lambda(self.comm, 0.0)),
                };
                let pop = strategy.ask(state);
                let mine = comm::share(pop.members.len(), self.comm.rank(), self.comm.size());
                let fitness = member_rewards(
                    &self.model,
                    strategy,
                    &state.theta,
                    t,
                    &pop.members[mine],
                    target,
                    &items,
                    member_theta,
                    &mut GenerateStats::default(),
                )?;
                for note in &fitness.diverged {
                    progress.message(note);
                }
                let rewards =
                    self.comm.all_gather_f32(&fitness.rewards, &comm::counts(pop.members.len(), self.comm.size()));
                let eval_seconds = t_start.elapsed().as_secs_f64();
                let t_update = Instant::now();
                let step = strategy.tell_with(state, &pop, &rewards, lambda)?;
                let update_seconds = t_update.elapsed().as_secs_f64();
                if let Some(b) = budget {
                    budget_line = Some((step.awd_lambda, b.norm_target()));
                    b.stepped(&step);
                }
                if self.comm.size() > 1 && self.cfg.checksum_every > 0 && state.iteration % self.cfg.checksum_every == 0
                {
                    check_replicas(self.comm, state.iteration, &state.theta.tensor_checksums(), state.theta.layout())?;
                }
                (Some(step), rewards, eval_seconds, update_seconds, None)
            }
            Learner::Qes(q) => {
                let (step, stats, update_seconds) =
                    q.state.step(&self.model, &q.run, target, &items, &mut GenerateStats::default(), self.comm)?;
                if self.comm.size() > 1
                    && self.cfg.checksum_every > 0
                    && q.state.iteration % self.cfg.checksum_every == 0
                {
                    check_replicas(
                        self.comm,
                        q.state.iteration,
                        &q.state.store.tensor_checksums(),
                        q.state.store.layout(),
                    )?;
                }
                let rewards = step.rewards.clone();
                let eval_seconds = t_start.elapsed().as_secs_f64() - update_seconds;
                (Some(step), rewards, eval_seconds, update_seconds, Some(stats.moved))
            }
            Learner::Grpo(g) => {
                let st =
                    g.step(&self.model, &self.cfg.grpo, self.cfg.seed, target, &items, &mut GenerateStats::default())?;
                grpo_line = Some(GrpoLine {
                    loss: st.loss,
                    kl: st.kl,
                    clip_fraction: st.clip_fraction,
                    grad_norm: st.grad_norm,
                    completion_tokens: st.completion_tokens,
                    train_tokens_per_second: st.trained_tokens as f64 / st.update_seconds.max(1e-9),
                    peak_rss_bytes: crate::run::bench::peak_rss_bytes(),
                });
                (None, st.rewards, st.sample_seconds, st.update_seconds, None)
            }
        };
        let k = self.learner.iteration();
        if self.comm.is_root() {
            if let Some(step) = &step {
                self.dir.append_line(dir::TRAJECTORY, step)?;
            }
            let (reward_mean, reward_std, reward_min, reward_max) = IterationLine::reward_stats(&rewards);
            let line = IterationLine {
                iteration: k,
                reward_mean,
                reward_std,
                reward_min,
                reward_max,
                // A budgeted step measured ‖θ−θ0‖ in its update pass: no second pass over θ0.
                drift: match step.as_ref().and_then(|s| s.drift) {
                    Some(d) => d.after,
                    None => self.learner.drift()?.total,
                },
                eval_seconds,
                update_seconds,
                seconds: t_start.elapsed().as_secs_f64(),
                codes_stepped,
                awd_lambda: budget_line.and_then(|b| b.0),
                drift_target: budget_line.and_then(|b| b.1),
                grpo: grpo_line,
            };
            self.dir.append_line(dir::METRICS, &MetricsLine::Iteration(line.clone()))?;
            progress.iteration(&line);
            if is_due(self.cfg.checkpoint_every, k, self.cfg.iterations) {
                let path = self.dir.checkpoint_path(k);
                std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| Error::io(&path, e))?;
                let tied = self.model.config.tied_embeddings;
                match &self.learner {
                    Learner::Es { state, .. } => model::safetensors::write(&path, &state.theta, tied)?,
                    Learner::Grpo(g) => model::safetensors::write(&path, &g.theta, tied)?,
                    // The tuned codes decoded to f32 (the same values the forward runs on).
                    Learner::Qes(q) => model::safetensors::write(&path, &q.state.store.dequantize(), tied)?,
                }
            }
        }
        // GRPO's resume point: at every checkpoint and at the end.
        if let Learner::Grpo(g) = &self.learner {
            if self.comm.is_root()
                && (is_due(self.cfg.checkpoint_every, k, self.cfg.iterations) || k == self.cfg.iterations)
            {
                g.save(&self.dir.path(grpo_step::STATE_FILE))?;
            }
        }
        if is_due(self.cfg.eval_every, k, self.cfg.iterations) {
            self.evaluate(progress)?;
        }
        Ok(())
    }

    /// Evaluates the current θ: every rank scores its share (see `eval_split`); the root alone
    /// gets, writes and reports the line.
    fn evaluate(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let t = Instant::now();
        let Some((target, priors)) = evaluate_split(
            &self.model,
            self.learner.weights(),
            self.tasks.target.as_ref(),
            &self.tasks.priors,
            self.comm,
            self.learner.iteration(),
        )?
        else {
            return Ok(());
        };
        let (drift, codes_moved) = match &self.learner {
            // One pass over the codes gives both the drift and the count of moved codes.
            Learner::Qes(q) => {
                let (drift, changed, total) = q.state.drift()?;
                (drift, Some(CodesMoved::new(changed, total)))
            }
            Learner::Es { .. } | Learner::Grpo(_) => (self.learner.drift()?, None),
        };
        let line = EvalLine {
            iteration: self.learner.iteration(),
            target,
            priors,
            drift,
            seconds: t.elapsed().as_secs_f64(),
            codes_moved,
        };
        self.dir.append_line(dir::METRICS, &MetricsLine::Eval(line.clone()))?;
        if let Learner::Es { budget: Some(b), .. } = &mut self.learner {
            b.evaluated(&line);
        }
        progress.eval(&line);
        self.first_eval.get_or_insert(line.clone());
        self.last_eval = Some(line);
        Ok(())
    }
}

fn is_due(every: u64, k: u64, last: u64) -> bool {
    every > 0 && (k.is_multiple_of(every) || k == last)
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

/// Compares every tensor's checksum (`sums`, of the weights at `iteration`) with rank 0's; the
/// first difference stops the run.
fn check_replicas(comm: &dyn Comm, iteration: u64, sums: &[u64], layout: &model::Layout) -> Result<()> {
    let sums = comm.all_gather_u64(sums);
    for (rank, theirs) in sums.iter().enumerate().skip(1) {
        if let Some(id) = theirs.iter().zip(&sums[0]).position(|(a, b)| a != b) {
            return Err(Error::RankDivergence { iteration, rank, tensor: layout.info(id).name.clone() });
        }
    }
    Ok(())
}
