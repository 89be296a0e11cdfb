//! Run configuration: what the user wrote (TOML file and flags, every field optional) and the
//! resolved [`RunConfig`] with every default spelled out, which is what `RUN/config.toml` holds.
//!
//! Each setting has one type (the library's: [`AwdKind`], [`Shaping`], … parse from the same
//! spelling in TOML and on the command line), one default (ES hyperparameters from
//! [`EsParams::default`], the rest in [`PartialConfig::resolve`]) and one check
//! ([`EsParams::check`] for the ES hyperparameters, [`RunConfig::validate`] for the rest).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::es::lowrank::DEFAULT_RANK;
use crate::es::{
    Awd, AwdKind, DriftBudget, EsParams, NoiseMode, NonFinitePolicy, Perturbation, PerturbationKind, Shaping,
};
use crate::rl::GrpoParams;

/// Training prompts per member and iteration when the config does not say (`task_options.minibatch`;
/// the papers evaluate every training prompt, `minibatch = 0`). 16 prompts keep one member's
/// evaluation to about a second on a 2-core machine and are what the demo trains on.
pub const DEFAULT_MINIBATCH: i64 = 16;

fn default_rank() -> usize {
    DEFAULT_RANK
}

fn default_residual_decay() -> f32 {
    0.9
}

fn default_true() -> bool {
    true
}

fn default_replay_window() -> usize {
    crate::es::qes::DEFAULT_REPLAY_WINDOW
}

/// The codes a QES run trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codes {
    /// The GGUF's own Q8_0/Q4_0/Q4_1 codes (other types converted to Q8_0).
    #[default]
    Native,
    /// Every matrix as Q8_0 (8-bit codes), converted at load.
    Q8_0,
}

from_str_by_serde!(Codes);

impl Codes {
    /// The weight format the quantized loader reads for these codes.
    pub fn weight_format(self) -> crate::model::WeightFormat {
        match self {
            Codes::Native => crate::model::WeightFormat::Quantized,
            Codes::Q8_0 => crate::model::WeightFormat::Q8_0,
        }
    }
}

/// What a run trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ES on f32 master weights (the papers' method).
    #[default]
    Es,
    /// QES: ES on the integer codes of the GGUF's Q8_0/Q4_0/Q4_1 matrices, with error feedback
    /// (σ in code units; see `crate::es::qes`).
    Qes,
    /// GRPO by backpropagation on f32 weights (the RL baseline; see `crate::rl`), settings in
    /// `[grpo]`.
    Grpo,
}

from_str_by_serde!(Method);

/// Every setting of a run, resolved. Field names are the TOML keys; flags use the same names
/// with dashes (`awd_lambda` ↔ `--awd-lambda`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// GGUF path, HF directory, or `smollm2-135m`.
    pub model: String,
    /// Target task: built-in name or JSONL path.
    pub task: String,
    /// Prior tasks (evaluated only): built-in suite names, JSONL paths, or `kl`.
    pub priors: Vec<String>,
    /// N, members per iteration.
    pub population: usize,
    /// σ, noise scale.
    pub sigma: f32,
    /// α, learning rate (1/σ folded in, as in the papers).
    pub alpha: f32,
    /// Total iterations T of the run.
    pub iterations: u64,
    pub seed: u64,
    pub noise: NoiseMode,
    pub mirrored: bool,
    pub shaping: Shaping,
    pub awd: AwdKind,
    /// λ of the AWD (ignored for `none`).
    pub awd_lambda: f32,
    /// What a NaN/inf reward does: `error` stops the run, `worst` ranks the member last.
    pub nonfinite_reward: NonFinitePolicy,
    /// `full` (ε per weight) or `lowrank` (σ/√r·A·Bᵀ per matrix, the population in one batch).
    #[serde(default)]
    pub perturbation: PerturbationKind,
    /// r of the low-rank perturbation (ignored for `full`).
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Evaluate target test accuracy and prior tasks every k iterations (and at 0 and the end); 0 = never.
    pub eval_every: u64,
    /// Evaluate only the first k items of each multiple-choice prior suite (0 = all).
    pub prior_limit: usize,
    /// Write a safetensors snapshot every k iterations (and at the end); 0 = never.
    pub checkpoint_every: u64,
    /// Worker threads (0 = all cores). Does not change the results.
    pub threads: usize,
    /// Under MPI, compare a checksum of θ across ranks every k iterations (0 = never).
    pub checksum_every: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Options of the target task (and of built-in priors): see `evotune::tasks::TaskOptions`.
    pub task_options: toml::Table,
    /// `es` (f32 master weights) or `qes` (the quantized codes).
    #[serde(default)]
    pub method: Method,
    /// QES: β, the decay of the error-feedback residual.
    #[serde(default = "default_residual_decay")]
    pub residual_decay: f32,
    /// QES: carry the residual (true) or round α·ĝ alone (false, the vanishing update).
    #[serde(default = "default_true")]
    pub error_feedback: bool,
    /// QES: `stored` (int8 per code) or `replay` (rebuilt from the last `residual_window` steps).
    #[serde(default)]
    pub residual: crate::es::qes::ResidualKind,
    /// QES: K, the steps a replayed residual is rebuilt from.
    #[serde(default = "default_replay_window")]
    pub residual_window: usize,
    /// QES: `native` (the file's own code types) or `q8_0` (8-bit codes).
    #[serde(default)]
    pub codes: Codes,
    /// QES: members evaluated per batch (0 = the whole population in one batch). Smaller batches
    /// hold fewer KV caches at once; the results do not change.
    #[serde(default)]
    pub member_batch: usize,
    /// Variables for the model's chat template (`--chat-template-arg KEY=VALUE`), e.g. Qwen3's
    /// `enable_thinking = true`; they change the prompts, so they are part of the run.
    #[serde(default)]
    pub chat_template_args: toml::Table,
    /// `kl=B` or `norm=B`: AWD's λ is set online to hold the drift at B (`awd_lambda` is then
    /// unused; see `evotune::es::budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_budget: Option<DriftBudget>,
    /// GRPO's settings (`--method grpo`).
    #[serde(default)]
    pub grpo: GrpoParams,
}

/// What the user wrote: every field optional. Used for the TOML file and for the flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    pub model: Option<String>,
    pub task: Option<String>,
    pub priors: Option<Vec<String>>,
    pub population: Option<usize>,
    pub sigma: Option<f32>,
    pub alpha: Option<f32>,
    pub iterations: Option<u64>,
    pub seed: Option<u64>,
    pub noise: Option<NoiseMode>,
    pub mirrored: Option<bool>,
    pub shaping: Option<Shaping>,
    pub awd: Option<AwdKind>,
    pub awd_lambda: Option<f32>,
    pub nonfinite_reward: Option<NonFinitePolicy>,
    pub perturbation: Option<PerturbationKind>,
    pub rank: Option<usize>,
    pub eval_every: Option<u64>,
    pub prior_limit: Option<usize>,
    pub checkpoint_every: Option<u64>,
    pub threads: Option<usize>,
    pub checksum_every: Option<u64>,
    pub out: Option<PathBuf>,
    pub task_options: Option<toml::Table>,
    pub method: Option<Method>,
    pub residual_decay: Option<f32>,
    pub error_feedback: Option<bool>,
    pub residual: Option<crate::es::qes::ResidualKind>,
    pub residual_window: Option<usize>,
    pub codes: Option<Codes>,
    pub member_batch: Option<usize>,
    pub chat_template_args: Option<toml::Table>,
    pub drift_budget: Option<DriftBudget>,
    /// GRPO's settings, key by key (merged like `task_options`).
    pub grpo: Option<toml::Table>,
}

impl PartialConfig {
    /// Reads a TOML file; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), problem: e.to_string() })
    }

    /// The papers' settings (`evotune train --preset paper`): N = 30, σ = 1e-3, α = 5e-4
    /// ([`EsParams::paper`]) and every training prompt in every iteration (`minibatch = 0`).
    pub fn paper() -> Self {
        let es = EsParams::paper();
        let mut task_options = toml::Table::new();
        task_options.insert("minibatch".into(), toml::Value::Integer(0));
        PartialConfig {
            population: Some(es.population),
            sigma: Some(es.sigma),
            alpha: Some(es.alpha),
            task_options: Some(task_options),
            ..Default::default()
        }
    }

    /// `self` with every field that `over` sets replaced (flags win over the file); task options
    /// are merged key by key.
    pub fn overlay(mut self, mut over: PartialConfig) -> Self {
        for (mine, theirs) in [(&self.task_options, &mut over.task_options), (&self.grpo, &mut over.grpo)] {
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                let mut merged = mine.clone();
                merged.extend(std::mem::take(theirs));
                *theirs = merged;
            }
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            model,
            task,
            priors,
            population,
            sigma,
            alpha,
            iterations,
            seed,
            noise,
            mirrored,
            shaping,
            awd,
            awd_lambda,
            nonfinite_reward,
            perturbation,
            rank,
            eval_every,
            prior_limit,
            checkpoint_every,
            threads,
            checksum_every,
            out,
            task_options,
            method,
            residual_decay,
            error_feedback,
            residual,
            residual_window,
            codes,
            member_batch,
            chat_template_args,
            drift_budget,
            grpo
        );
        self
    }

    /// Fills every unset field with its default and validates the result.
    pub fn resolve(self) -> Result<RunConfig> {
        let mut es = EsParams::default();
        if self.method == Some(Method::Qes) {
            // The QES paper's 4-bit values: σ in code steps, α per code step.
            (es.sigma, es.alpha) = (0.01, 5e-4);
        }
        // A drift budget sets λ by AWD-l2 unless the user chose l1.
        let awd = match (self.awd, self.drift_budget) {
            (None, Some(_)) => AwdKind::L2,
            (awd, _) => awd.unwrap_or_default(),
        };
        let cfg = RunConfig {
            model: self.model.unwrap_or_else(|| crate::model::fetch::DEFAULT_MODEL.to_string()),
            task: self.task.unwrap_or_else(|| "arith".into()),
            priors: self.priors.unwrap_or_default(),
            population: self.population.unwrap_or(es.population),
            sigma: self.sigma.unwrap_or(es.sigma),
            alpha: self.alpha.unwrap_or(es.alpha),
            iterations: self.iterations.unwrap_or(30),
            seed: self.seed.unwrap_or(es.seed),
            noise: self.noise.unwrap_or(es.noise),
            mirrored: self.mirrored.unwrap_or(es.mirrored),
            shaping: self.shaping.unwrap_or(es.shaping),
            awd,
            awd_lambda: self.awd_lambda.unwrap_or(awd.default_lambda()),
            nonfinite_reward: self.nonfinite_reward.unwrap_or(es.nonfinite),
            perturbation: self.perturbation.unwrap_or_default(),
            rank: self.rank.unwrap_or(DEFAULT_RANK),
            eval_every: self.eval_every.unwrap_or(10),
            prior_limit: self.prior_limit.unwrap_or(0),
            checkpoint_every: self.checkpoint_every.unwrap_or(0),
            threads: self.threads.unwrap_or(0),
            checksum_every: self.checksum_every.unwrap_or(1),
            out: self.out.unwrap_or_else(|| PathBuf::from("runs/latest")),
            task_options: {
                let mut t = self.task_options.unwrap_or_default();
                t.entry("minibatch").or_insert(toml::Value::Integer(DEFAULT_MINIBATCH));
                t
            },
            method: self.method.unwrap_or_default(),
            residual_decay: self.residual_decay.unwrap_or_else(default_residual_decay),
            error_feedback: self.error_feedback.unwrap_or(true),
            residual: self.residual.unwrap_or_default(),
            residual_window: self.residual_window.unwrap_or_else(default_replay_window),
            codes: self.codes.unwrap_or_default(),
            member_batch: self.member_batch.unwrap_or(0),
            chat_template_args: self.chat_template_args.unwrap_or_default(),
            drift_budget: self.drift_budget,
            grpo: match self.grpo {
                None => GrpoParams::default(),
                Some(t) => t.try_into().map_err(|e: toml::de::Error| Error::EsConfig {
                    field: "grpo",
                    problem: e.message().to_string(),
                })?,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl RunConfig {
    /// Checks the settings: the ES hyperparameters by [`EsParams::check`], the check the strategy
    /// itself makes, and for QES its own limits.
    pub fn validate(&self) -> Result<()> {
        self.es_params().check()?;
        if let Some(budget) = self.drift_budget {
            let bad = |problem: String| Err(Error::EsConfig { field: "drift_budget", problem });
            if self.method != Method::Es {
                return bad(format!("{budget}: a drift budget works with `--method es`"));
            }
            if self.awd == AwdKind::None {
                return bad(format!("{budget}: needs AWD (`--awd l2` or `l1`), not `none`"));
            }
            if let DriftBudget::Kl(_) = budget {
                if !self.priors.iter().any(|p| p == "kl" || p.starts_with("kl:")) {
                    return bad(format!("{budget}: a KL budget needs the KL probe (`--prior kl`)"));
                }
                if self.eval_every == 0 {
                    return bad(format!("{budget}: a KL budget is measured at evaluations; `eval_every` is 0"));
                }
            }
        }
        if self.method == Method::Grpo {
            self.grpo.check()?;
            let bad = |field, problem: String| Err(Error::EsConfig { field, problem });
            if self.awd != AwdKind::None {
                return bad("awd", "AWD is an ES update; GRPO's pull toward θ0 is `kl_beta` (use `--awd none`)".into());
            }
            if self.perturbation != PerturbationKind::Full {
                return bad("perturbation", "GRPO perturbs nothing; leave it at `full`".into());
            }
        }
        if self.method == Method::Qes {
            let bad = |field, problem: String| Err(Error::EsConfig { field, problem });
            let sigma_ok = self.sigma as f64 <= crate::es::code_noise::MAX_SIGMA; // NaN fails it
            if !sigma_ok {
                return bad(
                    "sigma",
                    format!(
                        "{} code steps: QES draws moves of one code, exact for σ ≤ {} (the paper uses 0.01 for \
                         4-bit codes, 0.001 for 8-bit)",
                        self.sigma,
                        crate::es::code_noise::MAX_SIGMA
                    ),
                );
            }
            if !(self.residual_decay.is_finite() && (0.0..=1.0).contains(&self.residual_decay)) {
                return bad("residual_decay", format!("{} (must be in [0, 1])", self.residual_decay));
            }
            if self.perturbation != PerturbationKind::Full {
                return bad("perturbation", "QES perturbs the codes themselves; use the default `full`".into());
            }
            if self.residual_window == 0 {
                return bad("residual_window", "0 (a replayed residual needs at least one step)".into());
            }
        }
        Ok(())
    }

    /// The QES update's hyperparameters of this run.
    pub fn qes_params(&self) -> crate::es::qes::QesParams {
        crate::es::qes::QesParams {
            sigma: self.sigma as f64,
            alpha: self.alpha,
            beta: self.residual_decay,
            feedback: self.error_feedback,
            awd: Awd::new(self.awd, self.awd_lambda),
        }
    }

    /// The ES hyperparameters of this run.
    pub fn es_params(&self) -> EsParams {
        EsParams {
            population: self.population,
            sigma: self.sigma,
            alpha: self.alpha,
            mirrored: self.mirrored,
            shaping: self.shaping,
            awd: Awd::new(self.awd, self.awd_lambda),
            noise: self.noise,
            nonfinite: self.nonfinite_reward,
            seed: self.seed,
            perturbation: Perturbation::new(self.perturbation, self.rank),
        }
    }

    /// Reads a stored `config.toml`; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), problem: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serialises")
    }

    /// Settings that may differ between a run and its resumption: they do not change the
    /// trajectory (except `eval_every` under a KL budget, checked in [`RunConfig::resumed_with`]).
    /// The one list of them.
    const RESUMABLE_CHANGES: &'static [&'static str] =
        &["iterations", "threads", "out", "eval_every", "checkpoint_every", "checksum_every", "member_batch"];

    /// Compares a stored run config with the one given on resume; names every field that differs
    /// in a way that would change the trajectory.
    pub fn check_resume(&self, given: &PartialConfig) -> std::result::Result<(), Vec<String>> {
        self.resumed_with(given).map(|_| ())
    }

    /// The stored config with the resumable settings that `given` sets taken from it, or every
    /// other setting of `given` that differs from the stored run.
    pub fn resumed_with(&self, given: &PartialConfig) -> std::result::Result<RunConfig, Vec<String>> {
        let mut stored = toml::Table::try_from(self).expect("a RunConfig always serialises");
        let given = toml::Table::try_from(given).expect("a PartialConfig always serialises");
        let mut diffs = Vec::new();
        // A KL budget reads the KL at the evaluations: their schedule shapes λ_t.
        let kl_budget = matches!(self.drift_budget, Some(DriftBudget::Kl(_)));
        for (key, value) in given {
            if Self::RESUMABLE_CHANGES.contains(&key.as_str()) && !(kl_budget && key == "eval_every") {
                stored.insert(key, value);
                continue;
            }
            // Task options are compared key by key: a key not given keeps the stored value.
            if let (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) = (stored.get(&key), &value) {
                for (k, v) in theirs {
                    match mine.get(k) {
                        Some(m) if m == v => {}
                        Some(m) => diffs.push(format!("{key}.{k}: run has {m}, flags say {v}")),
                        None => diffs.push(format!("{key}.{k}: run has the default, flags say {v}")),
                    }
                }
                continue;
            }
            match stored.get(&key) {
                Some(v) if *v == value => {}
                Some(v) => diffs.push(format!("{key}: run has {v}, flags say {value}")),
                None => diffs.push(format!("{key}: not a setting of the stored run")),
            }
        }
        if !diffs.is_empty() {
            return Err(diffs);
        }
        Ok(stored.try_into().expect("a stored config with resumable settings changed is a config"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_and_round_trip() {
        let cfg = PartialConfig::default().resolve().unwrap();
        assert_eq!((cfg.population, cfg.sigma, cfg.alpha, cfg.iterations), (8, 3e-3, 6e-3, 30));
        assert_eq!(cfg.task_options["minibatch"].as_integer(), Some(16));
        let back: RunConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
        // The papers' settings are one flag away, and flags still win over the preset.
        let paper = PartialConfig::paper().resolve().unwrap();
        assert_eq!((paper.population, paper.sigma, paper.alpha), (30, 1e-3, 5e-4));
        assert_eq!(paper.task_options["minibatch"].as_integer(), Some(0));
        let mut opts = toml::Table::new();
        opts.insert("seed".into(), toml::Value::Integer(3));
        let flags = PartialConfig { population: Some(12), task_options: Some(opts), ..Default::default() };
        let mixed = PartialConfig::paper().overlay(flags).resolve().unwrap();
        assert_eq!((mixed.population, mixed.sigma), (12, 1e-3));
        assert_eq!(mixed.task_options["minibatch"].as_integer(), Some(0));
        assert_eq!(mixed.task_options["seed"].as_integer(), Some(3));
    }

    #[test]
    fn flags_win_and_lambda_follows_kind() {
        let file = PartialConfig { population: Some(8), awd: Some(AwdKind::L1), ..Default::default() };
        let flags = PartialConfig { population: Some(4), ..Default::default() };
        let cfg = file.overlay(flags).resolve().unwrap();
        assert_eq!(cfg.population, 4);
        assert_eq!(cfg.awd_lambda, 0.01);
    }

    #[test]
    fn invalid_settings_are_named() {
        let e =
            PartialConfig { mirrored: Some(true), population: Some(5), ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().contains("population"), "{e}");
        let e = PartialConfig { awd: Some(AwdKind::L2), awd_lambda: Some(5000.0), ..Default::default() }
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("awd_lambda"), "{e}");
    }

    #[test]
    fn resume_mismatch_lists_fields() {
        let cfg = PartialConfig::default().resolve().unwrap();
        let ok = PartialConfig { iterations: Some(500), threads: Some(1), ..Default::default() };
        assert!(cfg.check_resume(&ok).is_ok());
        let bad = PartialConfig { sigma: Some(2e-3), ..Default::default() };
        let diffs = cfg.check_resume(&bad).unwrap_err();
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].starts_with("sigma"));
        // Task options given on resume are checked key by key against the stored ones.
        let mut opts = toml::Table::new();
        opts.insert("minibatch".into(), toml::Value::Integer(16));
        assert!(cfg.check_resume(&PartialConfig { task_options: Some(opts.clone()), ..Default::default() }).is_ok());
        opts.insert("seed".into(), toml::Value::Integer(5));
        let diffs = cfg.check_resume(&PartialConfig { task_options: Some(opts), ..Default::default() }).unwrap_err();
        assert_eq!(diffs, vec!["task_options.seed: run has the default, flags say 5".to_string()]);
    }
}
