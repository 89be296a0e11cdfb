//! Run configuration: what the user wrote (TOML file and flags, every field optional) and the
//! resolved [`RunConfig`] with every default spelled out, which is what `RUN/config.toml` holds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::es::{Awd, EsParams, NoiseMode, NonFinitePolicy, Perturbation, Shaping};

/// Which anchored weight decay to apply after each ES step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwdKind {
    None,
    L2,
    L1,
}

impl std::str::FromStr for AwdKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AwdKind::None),
            "l2" => Ok(AwdKind::L2),
            "l1" => Ok(AwdKind::L1),
            _ => Err(format!("`{s}` is not an AWD kind (none, l2, l1)")),
        }
    }
}

/// How members perturb matrices: full-rank noise, or rank-r products (EGGROLL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerturbationKind {
    #[default]
    Full,
    Lowrank,
}

impl std::str::FromStr for PerturbationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(PerturbationKind::Full),
            "lowrank" => Ok(PerturbationKind::Lowrank),
            _ => Err(format!("`{s}` is not a perturbation kind (full, lowrank)")),
        }
    }
}

fn default_rank() -> usize {
    1
}

/// The paper defaults for λ (Schweighofer et al.): l2 → 10, l1 → 0.01.
pub fn default_lambda(kind: AwdKind) -> f32 {
    match kind {
        AwdKind::L2 => 10.0,
        AwdKind::L1 => 0.01,
        AwdKind::None => 0.0,
    }
}

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
}

impl PartialConfig {
    /// Reads a TOML file; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), problem: e.to_string() })
    }

    /// `self` with every field that `over` sets replaced (flags win over the file).
    pub fn overlay(mut self, over: PartialConfig) -> Self {
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
            task_options
        );
        self
    }

    /// Fills every unset field with its default and validates the result.
    pub fn resolve(self) -> Result<RunConfig> {
        let awd = self.awd.unwrap_or(AwdKind::None);
        let cfg = RunConfig {
            model: self.model.unwrap_or_else(|| crate::model::fetch::DEFAULT_MODEL.to_string()),
            task: self.task.unwrap_or_else(|| "arith".into()),
            priors: self.priors.unwrap_or_default(),
            population: self.population.unwrap_or(30),
            sigma: self.sigma.unwrap_or(1e-3),
            alpha: self.alpha.unwrap_or(5e-4),
            iterations: self.iterations.unwrap_or(100),
            seed: self.seed.unwrap_or(0),
            noise: self.noise.unwrap_or(NoiseMode::Iid),
            mirrored: self.mirrored.unwrap_or(false),
            shaping: self.shaping.unwrap_or(Shaping::Zscore),
            awd,
            awd_lambda: self.awd_lambda.unwrap_or(default_lambda(awd)),
            nonfinite_reward: self.nonfinite_reward.unwrap_or(NonFinitePolicy::Error),
            perturbation: self.perturbation.unwrap_or_default(),
            rank: self.rank.unwrap_or(default_rank()),
            eval_every: self.eval_every.unwrap_or(10),
            prior_limit: self.prior_limit.unwrap_or(0),
            checkpoint_every: self.checkpoint_every.unwrap_or(0),
            threads: self.threads.unwrap_or(0),
            checksum_every: self.checksum_every.unwrap_or(1),
            out: self.out.unwrap_or_else(|| PathBuf::from("runs/latest")),
            task_options: self.task_options.unwrap_or_default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl RunConfig {
    fn bad(field: &'static str, problem: impl Into<String>) -> Error {
        Error::EsConfig { field, problem: problem.into() }
    }

    /// Checks ranges that would otherwise fail deep inside the run.
    pub fn validate(&self) -> Result<()> {
        if self.population < 2 {
            return Err(Self::bad("population", format!("{} (need at least 2 members)", self.population)));
        }
        if self.mirrored && self.population % 2 != 0 {
            return Err(Self::bad(
                "population",
                format!("{} is odd; mirrored sampling needs ± pairs", self.population),
            ));
        }
        if self.perturbation == PerturbationKind::Lowrank && self.rank == 0 {
            return Err(Self::bad("rank", "0 (the low-rank perturbation needs rank ≥ 1)"));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Self::bad("sigma", format!("{} (must be > 0)", self.sigma)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Self::bad("alpha", format!("{} (must be > 0)", self.alpha)));
        }
        if self.awd != AwdKind::None && !(self.awd_lambda.is_finite() && self.awd_lambda >= 0.0) {
            return Err(Self::bad("awd_lambda", format!("{} (must be ≥ 0)", self.awd_lambda)));
        }
        if self.awd == AwdKind::L2 && self.alpha * self.awd_lambda >= 1.0 {
            return Err(Self::bad(
                "awd_lambda",
                format!("α·λ = {} ≥ 1 would flip the sign of θ−θ0", self.alpha * self.awd_lambda),
            ));
        }
        Ok(())
    }

    /// The ES hyper-parameters of this run.
    pub fn es_params(&self) -> EsParams {
        let awd = match self.awd {
            AwdKind::None => Awd::None,
            AwdKind::L2 => Awd::L2 { lambda: self.awd_lambda },
            AwdKind::L1 => Awd::L1 { lambda: self.awd_lambda },
        };
        EsParams {
            population: self.population,
            sigma: self.sigma,
            alpha: self.alpha,
            mirrored: self.mirrored,
            shaping: self.shaping,
            awd,
            noise: self.noise,
            nonfinite: self.nonfinite_reward,
            seed: self.seed,
            perturbation: match self.perturbation {
                PerturbationKind::Full => Perturbation::Full,
                PerturbationKind::Lowrank => Perturbation::LowRank { rank: self.rank },
            },
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serialises")
    }

    /// Fields that may differ between a run and its resumption: they do not change the trajectory.
    const RESUMABLE_CHANGES: &'static [&'static str] =
        &["iterations", "threads", "out", "eval_every", "checkpoint_every", "checksum_every"];

    /// Compares a stored run config with the one given on resume; names every field that differs
    /// in a way that would change the trajectory.
    pub fn check_resume(&self, given: &PartialConfig) -> std::result::Result<(), Vec<String>> {
        let stored = toml::Table::try_from(self).expect("serialises");
        let given = toml::Table::try_from(given).expect("serialises");
        let mut diffs = Vec::new();
        for (key, value) in &given {
            if Self::RESUMABLE_CHANGES.contains(&key.as_str()) {
                continue;
            }
            match stored.get(key) {
                Some(v) if v == value => {}
                Some(v) => diffs.push(format!("{key}: run has {v}, flags say {value}")),
                None => diffs.push(format!("{key}: not a setting of the stored run")),
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_and_round_trip() {
        let cfg = PartialConfig::default().resolve().unwrap();
        assert_eq!(cfg.population, 30);
        assert_eq!(cfg.sigma, 1e-3);
        assert_eq!(cfg.alpha, 5e-4);
        let back: RunConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
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
    }
}
