//! θ at any logged iteration of a run, rebuilt from the base model and the trajectory.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::es::{Anchor, EsState, Strategy};
use crate::model::{self, Model, Params};
use crate::run::dir::{self, RunDir};
use crate::run::train::{read_records, stored_config};

/// Loads the run's base model and replays its trajectory up to iteration `upto` (default: the
/// last logged one). Returns the model, θ_K and K. Bit-identical to the θ_K the run had.
pub fn weights_at(run: &Path, upto: Option<u64>) -> Result<(Model, Params, u64)> {
    let dir = RunDir::open(run)?;
    let cfg = stored_config(&dir)?;
    let records = read_records(&dir)?;
    let k = upto.unwrap_or(records.len() as u64);
    if k > records.len() as u64 {
        return Err(Error::RunDir {
            path: dir.path(dir::TRAJECTORY),
            problem: format!("iteration {k} requested, but the run has logged only {}", records.len()),
        });
    }
    let (model, theta0) = model::load(&cfg.model)?;
    let theta0 = Arc::new(theta0);
    let strategy = Strategy::new(cfg.es_params(), Anchor::InMemory(theta0.clone()))?;
    let mut state = EsState { theta: (*theta0).clone(), iteration: 0 };
    for rec in &records[..k as usize] {
        strategy.apply(&mut state, rec)?;
    }
    drop(strategy);
    Ok((model, state.theta, k))
}
