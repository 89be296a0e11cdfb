//! Evolution Strategies: counter-based noise, population, fitness shaping, the update, Anchored
//! Weight Decay, drift diagnostics and the trajectory log.
//!
//! Legend: `N` population, `d` parameters, `σ` noise scale, `α` learning rate, `λ` AWD strength,
//! `ε_n` member n's standard-normal noise (regenerated from a counter RNG, never stored).
//!
//! STUB: filled in by the ES work. The public API below is the contract `run/train.rs` uses.

pub mod drift;
pub mod strategy;
pub mod trajectory;

pub use strategy::{Anchor, Awd, EsParams, EsState, Member, NoiseMode, NonFinitePolicy, Population, Shaping, StepRecord, Strategy, ThetaSource};
