//! STUB
//!
//! PLACEHOLDER (wt-io branch only): the signature `model::loader` calls. The tokenizer/safetensors
//! branch's real file replaces this one at merge.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{Layout, ModelConfig};

/// PLACEHOLDER: HF directory → (config, HF-ordered layout, f32 arena).
pub fn read_dir(dir: &Path) -> Result<(ModelConfig, Layout, Vec<f32>)> {
    Err(Error::CorruptModel { path: dir.to_path_buf(), problem: "placeholder: safetensors reader not merged in this branch".into() })
}
