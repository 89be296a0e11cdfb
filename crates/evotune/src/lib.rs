//! evotune: fine-tune LLMs with Evolution Strategies, forward passes only, and keep what the model
//! already knew.
//!
//! # Data flow
//! ```text
//! config → model (θ0, tokenizer, chat) → population (seeds) → rewards (forward passes on θ+σε)
//!        → update θ += α/N Σ zₙεₙ → AWD toward θ0 → log (trajectory, metrics, drift)
//! ```
//! - [`model`]: load GGUF / HF models into one f32 arena ([`model::Params`]), run the batched forward,
//!   generate and score.
//! - [`tokenizer`]: BPE tokenizer and chat template from the model file.
//! - [`es`]: noise, ask/tell, update, AWD, drift, trajectory and replay.
//! - [`tasks`]: target and prior tasks and their rewards, evaluation.
//! - [`run`]: the training loop and its run directory.
//! - [`files`]: atomic writes and append-only logs; [`error`]: the one error type.
//!
//! Layers (each imports only from those before it): error/files → kernels → tokenizer → model →
//! es, tasks → run → the CLI. See `docs/architecture.md`.

pub mod error;
pub mod es;
pub mod files;
pub mod kernels;
pub mod model;
pub mod run;
pub mod tasks;
pub mod tokenizer;

pub use error::{Error, Result};
