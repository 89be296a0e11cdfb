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

/// `FromStr` for a unit-variant enum through its serde names (`"shared-shape"` → `SharedShape`),
/// so that flags, TOML keys and the library share one spelling and one error message.
macro_rules! from_str_by_serde {
    ($($t:ty),*) => {$(
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                use serde::de::IntoDeserializer;
                let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = s.into_deserializer();
                <$t as serde::Deserialize>::deserialize(de).map_err(|e| e.to_string())
            }
        }
    )*};
}

pub mod error;
pub mod es;
pub mod files;
pub mod kernels;
pub mod model;
pub mod rl;
pub mod run;
pub mod tasks;
pub mod tokenizer;

pub use error::{Error, Result};
