//! Tokenizer (BPE from GGUF metadata or `tokenizer.json`, via the `tokenizers` crate).
//!
//! STUB: filled in by the tokenizer work. The signatures are the contract other modules use.

pub mod chat;

pub use chat::{ChatTemplate, Message, Prompt};

use crate::error::Result;

pub struct Tokenizer {
    /// Tokens that end a generated sequence (EOS, end-of-turn such as `<|im_end|>`).
    pub stop_tokens: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: u32,
}

impl Tokenizer {
    /// Text → ids. Special-token markup (`<|im_start|>`) in `text` is parsed as special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let _ = text;
        todo!("tokenizer")
    }
    /// Ids → text (special tokens skipped when `skip_special`).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let _ = (ids, skip_special);
        todo!("tokenizer")
    }
    pub fn vocab_size(&self) -> usize {
        todo!("tokenizer")
    }
}

// ---- PLACEHOLDER (wt-io branch only) ---------------------------------------------------------
// Added by the model-io work so that `model::loader` compiles and its tests run before the
// tokenizer branch lands. The tokenizer branch's real `from_gguf` / `from_file` replace this block
// at merge: keep theirs, drop this.
impl Tokenizer {
    /// PLACEHOLDER: special ids only, from `tokenizer.ggml.*` (no vocabulary yet).
    pub fn from_gguf(
        path: &std::path::Path,
        metadata: &std::collections::BTreeMap<String, crate::model::gguf::MetaValue>,
    ) -> Result<Tokenizer> {
        let id = |k: &str| match metadata.get(k) {
            Some(crate::model::gguf::MetaValue::U32(v)) => Some(*v),
            _ => None,
        };
        let eos = id("tokenizer.ggml.eos_token_id").ok_or_else(|| crate::Error::Tokenizer {
            path: path.to_path_buf(),
            problem: "no tokenizer.ggml.eos_token_id".into(),
        })?;
        Ok(Tokenizer { stop_tokens: vec![eos], bos: id("tokenizer.ggml.bos_token_id"), eos })
    }
    /// PLACEHOLDER: not implemented in this branch.
    pub fn from_file(tokenizer_json: &std::path::Path, config_dir: &std::path::Path) -> Result<Tokenizer> {
        let _ = config_dir;
        Err(crate::Error::Tokenizer { path: tokenizer_json.to_path_buf(), problem: "placeholder: tokenizer branch not merged".into() })
    }
}
