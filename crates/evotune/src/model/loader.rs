//! One entry point for every model source: a GGUF file, a HF directory, or a known name.
//!
//! STUB: filled in by the model-io work. The signatures below are the contract other modules use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::model::{Layout, Llama, ModelConfig, Params};
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// Where the weights came from; kept so θ0 can be re-derived from the file (the AWD anchor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    HfDir,
}

/// A loaded model: structure, tokenizer and chat template. The weights are returned separately
/// as the initial θ0 arena.
pub struct Model {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub config: ModelConfig,
    pub layout: Arc<Layout>,
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    pub chat: ChatTemplate,
}

/// Loads `spec`: a GGUF path, a HF model directory, or the name `smollm2-135m` (fetched on first use).
pub fn load(spec: &str) -> Result<(Model, Params)> {
    let _ = spec;
    todo!("model-io")
}

impl Model {
    /// Re-reads tensor `id` of θ0 from the source file into `out` (dequantizing if needed).
    pub fn read_theta0_tensor(&self, id: usize, out: &mut [f32]) -> Result<()> {
        let _ = (id, out);
        todo!("model-io")
    }
}

/// Loads only the model file at `path` (no name resolution).
pub fn load_path(path: &Path) -> Result<(Model, Params)> {
    let _ = path;
    todo!("model-io")
}
