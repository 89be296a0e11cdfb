//! Evolution Strategies: counter-based noise, population, fitness shaping, the update, Anchored
//! Weight Decay, drift diagnostics and the trajectory log.
//!
//! Legend: `N` population, `d` parameters, `σ` noise scale, `α` learning rate, `λ` AWD strength,
//! `ε_n` member n's standard-normal noise (regenerated from a counter RNG, never stored),
//! `cₙ` member n's shaped fitness (the update coefficient).
//!
//! Data flow of one iteration (see [`strategy`]):
//! ```text
//! ask → members (noise id, sign) → perturb_into: θ + σ·sign·ε (noise) → rewards
//!     → tell: shaping → StepRecord → apply: update (θ += α/N Σ c ε) + awd → trajectory line
//! ```
//! - [`noise`]: ε = f(seed, iteration, noise id, tensor, element), vectorised Box–Muller.
//! - [`population`]: members and mirrored pairs; noise passes of the update.
//! - [`shaping`]: z-score and centred rank, non-finite reward policy.
//! - [`update`]: the fused perturb and update passes over θ.
//! - [`lowrank`]: low-rank (EGGROLL) perturbations, evaluated as one batch.
//! - [`awd`], [`anchor`]: decay toward θ0, and where θ0 comes from.
//! - [`drift`]: ‖θ − θ0‖ total, per layer, per kind.
//! - [`trajectory`]: JSON-lines log and bit-exact replay.
//! - [`bench`]: throughput figures (`evotune bench es`).

pub mod anchor;
pub mod awd;
pub mod bench;
pub mod drift;
pub mod lowrank;
pub mod noise;
pub mod population;
pub mod shaping;
pub mod strategy;
pub mod trajectory;
pub mod update;

pub use drift::Drift;
pub use strategy::{
    Anchor, Awd, EsParams, EsState, Member, NoiseMode, NonFinitePolicy, Perturbation, Population, Shaping, StepRecord,
    Strategy, ThetaSource,
};
pub use trajectory::replay;
