//! The llama-family forward pass.
//!
//! STUB: filled in by the forward work.

use crate::error::Result;
use crate::model::{Layout, ModelConfig};

/// The model structure: config plus tensor ids into a [`crate::model::Params`] arena. Weights are
/// never stored here, so one `Llama` serves every member's arena.
pub struct Llama {
    pub config: ModelConfig,
}

impl Llama {
    /// Resolves the tensor ids of every weight in `layout` (HF names); errors name a missing tensor.
    pub fn new(config: ModelConfig, layout: &Layout) -> Result<Self> {
        let _ = layout;
        Ok(Llama { config })
    }
}
