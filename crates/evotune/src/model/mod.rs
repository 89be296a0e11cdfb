//! Llama-family models: loading, the forward pass, generation and scoring.
//!
//! Names used throughout (llm.c-style legend):
//! `B` sequences in a batch, `T` tokens, `D` hidden, `H`/`Hkv` query/key-value heads, `Dh` head dim,
//! `F` MLP inner size, `V` vocab, `L` layers.
//!
//! The weights live in a [`Params`] arena (f32, HF names); the model structure ([`Llama`]) holds only
//! tensor ids, so one `Llama` runs any number of arenas (θ, or a member's θ + σε) without copying.

pub mod backprop;
// Both need candle: only with the `bench` feature.
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "bench")]
pub mod candle_ref;
pub mod config;
pub mod delta;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod gguf_write;
pub mod kv_cache;
pub mod llama;
pub mod loader;
pub mod params;
pub mod quant;
pub mod safetensors;
pub mod score;
pub mod theta_source;
pub mod weights;

pub use config::{ModelConfig, RopeScaling};
pub use generate::{GenerateOptions, Sampling};
pub use llama::Llama;
pub use loader::{load, load_weights, LoadedWeights, Model, ModelFormat};
pub use params::{Layout, Params, TensorInfo, TensorKind};
pub use theta_source::ThetaSource;
pub use weights::{QuantizedParams, WeightFormat, Weights};
