//! STUB for the ES API (ask/tell with explicit state).

use std::sync::Arc;

use crate::error::Result;
use crate::model::Params;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseMode { Iid, SharedShape }

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shaping { Zscore, CentredRank }

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonFinitePolicy { Error, Worst }

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Awd { None, L2 { lambda: f32 }, L1 { lambda: f32 } }

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EsParams {
    pub population: usize,
    pub sigma: f32,
    pub alpha: f32,
    pub mirrored: bool,
    pub shaping: Shaping,
    pub awd: Awd,
    pub noise: NoiseMode,
    pub nonfinite: NonFinitePolicy,
    pub seed: u64,
}

/// Gives θ0 tensor by tensor (e.g. re-dequantized from the source file).
pub trait ThetaSource: Send + Sync {
    fn read_tensor(&self, id: usize, out: &mut [f32]) -> Result<()>;
}

/// θ0 for AWD and drift: kept in memory or re-derived from a source.
pub enum Anchor { InMemory(Arc<Params>), Source(Arc<dyn ThetaSource>) }

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member { pub index: usize, pub noise_id: u32, pub sign: f32 }

#[derive(Clone, Debug, PartialEq)]
pub struct Population { pub iteration: u64, pub members: Vec<Member> }

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord { pub iteration: u64, pub members: Vec<Member>, pub rewards: Vec<f32>, pub coefficients: Vec<f32> }

pub struct EsState { pub theta: Params, pub iteration: u64 }

pub struct Strategy;

impl Strategy {
    pub fn new(params: EsParams, anchor: Anchor) -> Result<Self> { let _ = (params, anchor); todo!("es") }
    pub fn params(&self) -> &EsParams { todo!("es") }
    pub fn ask(&self, state: &EsState) -> Population { let _ = state; todo!("es") }
    /// out = θ + σ·sign·ε_member (out's previous contents are overwritten).
    pub fn perturb_into(&self, theta: &Params, iteration: u64, member: &Member, out: &mut Params) { let _ = (theta, iteration, member, out); todo!("es") }
    pub fn tell(&self, state: &mut EsState, pop: &Population, rewards: &[f32]) -> Result<StepRecord> { let _ = (state, pop, rewards); todo!("es") }
    pub fn apply(&self, state: &mut EsState, step: &StepRecord) -> Result<()> { let _ = (state, step); todo!("es") }
}
