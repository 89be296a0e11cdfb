//! θ at any logged iteration of a run, rebuilt from the base model and the trajectory.

use std::path::Path;

use crate::error::{Error, Result};
use crate::es::{replay_onto, Anchor, EsState, StepRecord, Strategy};
use crate::model::{self, Model, Params, QuantizedParams};
use crate::run::config::{Method, RunConfig};
use crate::run::dir::{self, RunDir};
use crate::run::grpo_step::{GrpoState, STATE_FILE};
use crate::run::qes_step::{QesRun, QesState};

/// A run's weights at one iteration, with the model they belong to.
pub struct RunWeights {
    pub config: RunConfig,
    pub model: Model,
    /// The base weights θ0, as loaded.
    pub theta0: Params,
    /// θ_K.
    pub theta: Params,
    /// K.
    pub iteration: u64,
    /// For a QES run: the base codes and the codes at K (θ0 and θ above are their decoded
    /// values), which the quantized forward runs on exactly as the run did.
    pub codes: Option<(QuantizedParams, QuantizedParams)>,
}

/// Loads the run's base model and replays its trajectory up to iteration `upto` (default: the
/// last logged one) through [`replay_onto`], anchored as in training (θ0 re-derived from the model
/// file), so θ_K is bit-identical to the θ_K the run had.
pub fn weights_at(run: &Path, upto: Option<u64>) -> Result<RunWeights> {
    let dir = RunDir::open(run)?;
    let config = dir.config()?;
    if config.method == Method::Grpo {
        return grpo_weights_at(&dir, config, upto);
    }
    let records = dir.trajectory()?;
    let k = upto.unwrap_or(records.len() as u64);
    if k > records.len() as u64 {
        return Err(Error::RunDir {
            path: dir.path(dir::TRAJECTORY),
            problem: format!("iteration {k} requested, but the run has logged only {}", records.len()),
        });
    }
    if config.method == Method::Qes {
        return qes_weights_at(config, &records, k);
    }
    let (mut model, theta0) = model::load(&config.model)?;
    model.chat.set_args(&config.chat_template_args);
    let strategy = Strategy::new(config.es_params(), Anchor::Source(model.theta0_source()))?;
    let mut state = EsState::new(theta0.clone());
    replay_onto(&strategy, &mut state, &records, k)?;
    Ok(RunWeights { config, model, theta0, theta: state.theta, iteration: k, codes: None })
}

/// [`weights_at`] of a GRPO run: θ of its state file (its last checkpoint, or the end), the only
/// iteration a GRPO run keeps (it has no seed trajectory to replay).
fn grpo_weights_at(dir: &RunDir, config: RunConfig, upto: Option<u64>) -> Result<RunWeights> {
    let path = dir.path(STATE_FILE);
    if !path.exists() {
        return Err(Error::RunDir { path, problem: "missing: the GRPO run saved no state yet".into() });
    }
    let (mut model, theta0) = model::load(&config.model)?;
    model.chat.set_args(&config.chat_template_args);
    let state = GrpoState::load(&path, theta0.clone())?;
    if let Some(k) = upto.filter(|&k| k != state.step) {
        return Err(Error::RunDir {
            path,
            problem: format!(
                "iteration {k} requested, but a GRPO run keeps θ only at its last saved step, {} (safetensors \
                 snapshots of `--checkpoint-every` are under checkpoints/)",
                state.step
            ),
        });
    }
    Ok(RunWeights { config, model, theta0, theta: state.theta, iteration: state.step, codes: None })
}

/// [`weights_at`] of a QES run: the codes replayed from the model file's own, step by step.
fn qes_weights_at(config: RunConfig, records: &[StepRecord], k: u64) -> Result<RunWeights> {
    let (mut model, weights, _) = model::load_weights(&config.model, config.codes.weight_format())?;
    model.chat.set_args(&config.chat_template_args);
    let model::LoadedWeights::Quantized(base) = weights else { unreachable!("quantized weights") };
    let run = QesRun::from_config(&config);
    let mut state = QesState::new(base.clone(), Box::new(base.clone()), &run);
    state.replay(&run, records, k)?;
    Ok(RunWeights {
        config,
        model,
        theta0: base.dequantize(),
        theta: state.store.dequantize(),
        iteration: k,
        codes: Some((base, state.store)),
    })
}
