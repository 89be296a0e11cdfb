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
//! - [`strategy`]: hyperparameters, state, ask/tell/apply.
//! - [`population`]: members and mirrored pairs; noise passes of the update.
//! - [`shaping`]: z-score and centred rank, non-finite reward policy.
//! - [`update`]: the fused perturb and update passes over θ.
//! - [`lowrank`]: low-rank (EGGROLL) perturbations, evaluated as one batch.
//! - [`code_noise`], [`code_population`]: QES's sparse integer perturbations of quantized codes,
//!   and a population of them evaluated as one batch over the shared quantized store;
//!   [`qes`]: the QES update of the codes with error feedback.
//! - [`awd`], [`anchor`]: decay toward θ0, and where θ0 comes from.
//! - [`budget`]: a drift budget, AWD's λ set online by a controller on log λ.
//! - [`drift`]: ‖θ − θ0‖ total, per layer, per kind.
//! - [`step`]: one iteration's record (members, rewards, coefficients).
//! - [`trajectory`]: the JSON-lines log of records and bit-exact replay.
//! - [`bench`]: throughput figures (`evotune bench es`).

pub mod anchor;
pub mod awd;
pub mod bench;
pub mod budget;
pub mod code_noise;
pub mod code_population;
pub mod drift;
pub mod lowrank;
pub mod noise;
pub mod population;
pub mod qes;
pub mod shaping;
pub mod step;
pub mod strategy;
pub mod trajectory;
pub mod update;

pub use anchor::Anchor;
pub use awd::{Awd, AwdKind};
pub use budget::{BudgetController, DriftBudget, StepDrift};
pub use drift::Drift;
pub use lowrank::{Perturbation, PerturbationKind};
pub use noise::NoiseMode;
pub use population::{Member, Population};
pub use shaping::{NonFinitePolicy, Shaping};
pub use step::StepRecord;
pub use strategy::{EsParams, EsState, Strategy};
pub use trajectory::{replay, replay_onto};
