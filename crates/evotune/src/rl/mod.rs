//! The reinforcement-learning baseline: GRPO with gradients by backpropagation
//! ([`crate::model::backprop`]), for side-by-side comparisons with ES on the same model, tasks and
//! evaluations.
//!
//! - [`grpo`]: the hyperparameters, group-normalised advantages and the per-token objective's
//!   gradient with respect to each token's log-probability.
//! - [`adamw`]: AdamW with global-norm gradient clipping.

pub mod adamw;
pub mod grpo;

pub use adamw::AdamW;
pub use grpo::{advantages, GrpoParams, TokenObjective};
