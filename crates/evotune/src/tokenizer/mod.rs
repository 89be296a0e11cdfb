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
