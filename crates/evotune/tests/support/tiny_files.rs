//! Tiny but complete model files for the fault and fuzz tests: a GGUF (weights, tokenizer, chat
//! template) and a HF directory (config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json, generation_config.json), both written by evotune's own writers from one
//! deterministic θ. They load with `evotune::model::loader::load_path` and run a forward pass, and
//! are a few kilobytes, so thousands of mutated copies can be loaded in seconds.
//!
//! Shape: D = 32, F = 64, L = 1, H = 2, Hkv = 1, Dh = 16, V = 16, untied head. Rows of 32 let the
//! Q8_0 export quantize every matrix (the embedding and head included).
//!
//! Included with `#[path = "support/tiny_files.rs"] mod tiny_files;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evotune::model::gguf::MetaValue;
use evotune::model::gguf_write::{write_gguf, ExportType};
use evotune::model::safetensors::{hf_layout, write_hf_dir};
use evotune::model::{ModelConfig, Params};
use evotune::tokenizer::{ChatTemplate, Tokenizer};

/// The vocabulary: three control tokens, then byte-level BPE pieces (`Ġ` is a space, `Ċ` a newline).
pub const TOKENS: [&str; 16] = [
    "<|endoftext|>",
    "<|im_end|>",
    "<|im_start|>",
    "a",
    "b",
    "c",
    "Ġ",
    "Ċ",
    "1",
    "s",
    "u",
    "ab",
    "Ġa",
    "Ġab",
    "abc",
    "us",
];
pub const MERGES: [&str; 5] = ["Ġ a", "a b", "Ġa b", "ab c", "u s"];
/// ChatML, short.
pub const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                                 {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

pub fn config() -> ModelConfig {
    ModelConfig {
        architecture: "llama".into(),
        hidden: 32,
        ffn: 64,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        head_dim: 16,
        vocab: TOKENS.len(),
        context: 64,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    }
}

/// θ: norms near 1, other weights uniform in ±0.25 (xorshift, fixed seed).
pub fn params() -> Params {
    let layout = Arc::new(hf_layout(&config()));
    let mut params = Params::zeros(layout);
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for (info, t) in params.tensors_mut() {
        let norm = info.shape.len() == 1;
        for x in t.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            *x = if norm { 1.0 + 0.1 * r } else { 0.25 * r };
        }
    }
    params
}

/// The tokenizer and chat-template metadata a GGUF carries.
pub fn tokenizer_metadata() -> BTreeMap<String, MetaValue> {
    let s = |x: &str| MetaValue::String(x.to_string());
    let mut m = BTreeMap::new();
    m.insert("general.name".into(), s("evotune tiny test model"));
    m.insert("tokenizer.ggml.model".into(), s("gpt2"));
    m.insert("tokenizer.ggml.pre".into(), s("smollm"));
    m.insert("tokenizer.ggml.tokens".into(), MetaValue::Array(TOKENS.iter().map(|t| s(t)).collect()));
    let types = TOKENS.iter().enumerate().map(|(i, _)| MetaValue::I32(if i < 3 { 3 } else { 1 })).collect();
    m.insert("tokenizer.ggml.token_type".into(), MetaValue::Array(types));
    m.insert("tokenizer.ggml.merges".into(), MetaValue::Array(MERGES.iter().map(|t| s(t)).collect()));
    m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(0));
    m.insert("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(1));
    m.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(false));
    m.insert("tokenizer.chat_template".into(), s(CHAT_TEMPLATE));
    m
}

pub fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(Path::new("tiny.gguf"), &tokenizer_metadata()).expect("the tiny tokenizer builds")
}

pub fn chat() -> ChatTemplate {
    ChatTemplate::new(CHAT_TEMPLATE, "<|endoftext|>", "<|im_end|>").expect("the tiny template compiles")
}

/// Writes the tiny model as a GGUF at `path` (matrices in `dtype`, norms F32).
pub fn write_tiny_gguf(path: &Path, dtype: ExportType) {
    write_gguf(path, &params(), &config(), &tokenizer_metadata(), dtype).expect("the tiny GGUF is written");
}

/// The bytes of the tiny GGUF.
pub fn tiny_gguf_bytes(dtype: ExportType) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    write_tiny_gguf(&p, dtype);
    std::fs::read(p).unwrap()
}

/// Writes the tiny model as a HF directory into `dir` (created if needed); returns `dir`.
pub fn write_tiny_hf_dir(dir: &Path) -> PathBuf {
    write_hf_dir(dir, &params(), &config(), Some(&tokenizer()), Some(&chat())).expect("the tiny HF dir is written");
    dir.to_path_buf()
}
