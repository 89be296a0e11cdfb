//! The resolved model configuration: every field filled in, no `Option`s after loading.
//!
//! Both readers (GGUF metadata and HF `config.json`) produce this one type.

/// Hyper-parameters of a llama-family decoder.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// `llama`, `qwen2`, … (as the file names it).
    pub architecture: String,
    /// D: hidden size.
    pub hidden: usize,
    /// F: MLP inner size.
    pub ffn: usize,
    /// L: number of blocks.
    pub layers: usize,
    /// H: query heads.
    pub heads: usize,
    /// Hkv: key/value heads (GQA when < heads).
    pub kv_heads: usize,
    /// Dh: head dimension (hidden / heads unless the file says otherwise).
    pub head_dim: usize,
    /// V: vocabulary size.
    pub vocab: usize,
    /// Maximum context length.
    pub context: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// lm_head shares the embedding matrix.
    pub tied_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub qkv_bias: bool,
}
