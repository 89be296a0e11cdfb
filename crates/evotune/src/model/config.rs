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
    /// Per-head RMSNorm on q and k before RoPE (Qwen3): weights `self_attn.{q,k}_norm.weight` (Dh).
    #[serde(default)]
    pub qk_norm: bool,
    /// RoPE frequency scaling (Llama 3.x); `None` is plain RoPE.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Each position attends to at most this many positions, itself included (Mistral's
    /// `sliding_window`); `None` is full causal attention.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Gemma 3's block where it departs from llama's; `None` for every other family.
    #[serde(default)]
    pub gemma: Option<Gemma>,
}

/// Gemma 3: x₀ = embed·√D; every RMSNorm (q/k norms too) multiplies by (1 + w); the MLP is GeGLU,
/// gelu_tanh(x·Wgateᵀ) ⊙ x·Wupᵀ; the attention and MLP outputs are RMS-normalised before their
/// residual adds (two more norms per block); scores are q·k·s with s = query_pre_attn_scalar^(−½);
/// sliding-window layers attend through `sliding_window` with their own unscaled RoPE base, the
/// others attend globally with `rope_theta` and `rope_scaling`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gemma {
    pub query_pre_attn_scalar: f32,
    /// RoPE base of the sliding-window layers.
    pub local_rope_theta: f32,
    /// Per layer: attends through the sliding window (else globally).
    pub sliding_layers: Vec<bool>,
}

/// How RoPE's inverse frequencies ωᵢ = θ^(−2i/Dh) are rescaled for long contexts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RopeScaling {
    /// Llama 3.x (`rope_type: llama3` in HF): with wavelength λᵢ = 2π/ωᵢ, context C₀, factor s,
    /// low/high frequency factors l, h:
    /// ```text
    /// ωᵢ' = ωᵢ                          λᵢ < C₀/h       (high frequencies kept)
    /// ωᵢ' = ωᵢ / s                      λᵢ > C₀/l       (low frequencies stretched)
    /// ωᵢ' = (1 − m)·ωᵢ/s + m·ωᵢ         otherwise, m = (C₀/λᵢ − l)/(h − l)
    /// ```
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context: usize },
    /// Linear position interpolation (HF `rope_type: linear`, GGUF `rope.scaling.type = linear`):
    /// ωᵢ' = ωᵢ / factor.
    Linear { factor: f32 },
    /// Per-frequency divisors ωᵢ' = ωᵢ / fᵢ, as a GGUF stores them (`rope_freqs.weight`, which
    /// llama.cpp's converter computes from the Llama-3 parameters above; those are not kept).
    FreqFactors(Vec<f32>),
}

/// Where a Llama-3 frequency ω falls, with λ = 2π/ω (in f32, as HF and llama.cpp compute it).
enum Llama3Band {
    /// λ < C₀/h: kept.
    Kept,
    /// λ > C₀/l: divided by the factor.
    Stretched,
    /// Between: blended with weight m = (C₀/λ − l)/(h − l).
    Smoothed(f32),
}

fn llama3_band(w: f32, l: f32, h: f32, original_context: usize) -> Llama3Band {
    let c0 = original_context as f32;
    let wavelen = 2.0 * std::f32::consts::PI / w;
    if wavelen < c0 / h {
        Llama3Band::Kept
    } else if wavelen > c0 / l {
        Llama3Band::Stretched
    } else {
        Llama3Band::Smoothed((c0 / wavelen - l) / (h - l))
    }
}

impl RopeScaling {
    /// The divisors fᵢ (ωᵢ' = ωᵢ/fᵢ) for the inverse frequencies `inv_freq`, computed in f32 the
    /// way llama.cpp's converter writes `rope_freqs.weight`.
    pub fn freq_factors(&self, inv_freq: &[f32]) -> Vec<f32> {
        match self {
            RopeScaling::FreqFactors(f) => f.clone(),
            &RopeScaling::Linear { factor } => vec![factor; inv_freq.len()],
            &RopeScaling::Llama3 { factor, low_freq_factor: l, high_freq_factor: h, original_context } => inv_freq
                .iter()
                .map(|&w| match llama3_band(w, l, h, original_context) {
                    Llama3Band::Kept => 1.0,
                    Llama3Band::Stretched => factor,
                    Llama3Band::Smoothed(m) => 1.0 / ((1.0 - m) / factor + m),
                })
                .collect(),
        }
    }
}

use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;
use crate::model::TensorKind;

/// Architectures whose GGUF this loader understands, and whether llama.cpp's converter permuted
/// their Q/K rows for interleaved RoPE (see [`crate::model::loader`]).
/// Mistral files are `llama` in GGUF.
pub const GGUF_ARCHITECTURES: &[(&str, bool)] =
    &[("llama", true), ("qwen2", false), ("qwen3", false), ("gemma3", false)];

/// Gemma 3's settings from a GGUF. llama.cpp hard-codes three of them, which this reader takes
/// from keys when a file has them: the sliding-window pattern (`attention.sliding_window_pattern`,
/// else 6: layer i is global iff (i + 1) % 6 = 0), the sliding layers' RoPE base
/// (`rope.freq_base_swa`, else 10000) and the score scale (`attention.scale`, else Dh^(−½), or
/// (D/H)^(−½) for the 62-layer 27B model).
fn gemma_from_gguf(g: &GgufFile, layers: usize, hidden: usize, heads: usize, head_dim: usize) -> Result<Gemma> {
    let key = |k: &str| format!("gemma3.{k}");
    let pattern = match g.get(&key("attention.sliding_window_pattern")) {
        None => 6,
        Some(_) => g.get_usize(&key("attention.sliding_window_pattern"))?,
    };
    if pattern == 0 {
        return Err(Error::BadMetadata {
            path: g.path.clone(),
            key: key("attention.sliding_window_pattern"),
            problem: "is 0".into(),
        });
    }
    let local_rope_theta =
        if g.get(&key("rope.freq_base_swa")).is_some() { g.get_f32(&key("rope.freq_base_swa"))? } else { 10_000.0 };
    let query_pre_attn_scalar = match g.get(&key("attention.scale")) {
        Some(_) => {
            let s = g.get_f32(&key("attention.scale"))? as f64;
            let q = 1.0 / (s * s);
            (if (q - q.round()).abs() < 1e-3 { q.round() } else { q }) as f32
        }
        None if layers == 62 => (hidden / heads) as f32,
        None => head_dim as f32,
    };
    if !(local_rope_theta.is_finite() && local_rope_theta > 0.0 && query_pre_attn_scalar.is_finite()) {
        return Err(Error::BadMetadata {
            path: g.path.clone(),
            key: key("rope.freq_base_swa"),
            problem: format!("base {local_rope_theta} / score scalar {query_pre_attn_scalar} must be positive"),
        });
    }
    Ok(Gemma {
        query_pre_attn_scalar,
        local_rope_theta,
        sliding_layers: (0..layers).map(|i| (i + 1) % pattern != 0).collect(),
    })
}

/// θ^(−2i/Dh), i < Dh/2, in f32: the inverse first, then one product with the position, as HF
/// and candle compute it.
fn inv_freq(theta: f32, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2).map(|i| 1.0f32 / theta.powf((2 * i) as f32 / head_dim as f32)).collect()
}

/// The error for an architecture this forward does not compute, with the reason where a family
/// is known and close enough that a user may expect it to work.
pub fn unsupported_architecture(path: &std::path::Path, found: &str) -> Error {
    let why = match found {
        "gemma3" => ": a multimodal Gemma 3 config is read through its `text_config`, which this one lacks",
        "gemma" | "gemma2" | "gemma3n" => {
            ": of the Gemma family only Gemma 3 text models (`gemma3_text`) are supported"
        }
        _ => "",
    };
    Error::UnsupportedArchitecture { path: path.to_path_buf(), found: found.to_string(), why: why.to_string() }
}

impl ModelConfig {
    /// RoPE's inverse frequencies ωᵢ = θ^(−2i/Dh), i < Dh/2, after [`RopeScaling`]. The plain
    /// ones are computed in f32 as HF and candle do (inverse first, then one product with the
    /// position); the Llama-3 rule follows HF's `_compute_llama3_parameters` operation by operation.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let plain = self.rope_inv_freq_unscaled();
        match &self.rope_scaling {
            None => plain,
            Some(RopeScaling::FreqFactors(f)) => plain.iter().zip(f).map(|(&w, &f)| w / f).collect(),
            &Some(RopeScaling::Linear { factor }) => plain.iter().map(|&w| w / factor).collect(),
            &Some(RopeScaling::Llama3 { factor, low_freq_factor: l, high_freq_factor: h, original_context }) => plain
                .iter()
                .map(|&w| match llama3_band(w, l, h, original_context) {
                    Llama3Band::Kept => w,
                    Llama3Band::Stretched => w / factor,
                    Llama3Band::Smoothed(m) => (1.0 - m) * w / factor + m * w,
                })
                .collect(),
        }
    }

    /// RoPE's plain inverse frequencies θ^(−2i/Dh), i < Dh/2, in f32.
    pub fn rope_inv_freq_unscaled(&self) -> Vec<f32> {
        inv_freq(self.rope_theta, self.head_dim)
    }

    /// The kind of the tensor named `name` in this model ([`TensorKind::from_hf_name`], with
    /// Gemma's `post_attention_layernorm` being the attention output's norm).
    pub fn tensor_kind(&self, name: &str) -> TensorKind {
        match TensorKind::from_hf_name(name) {
            TensorKind::MlpNorm if self.gemma.is_some() && name.contains("post_attention_layernorm") => {
                TensorKind::PostAttnNorm
            }
            k => k,
        }
    }

    /// Whether a GGUF stores this tensor as (1 + w) rather than w: llama.cpp's converter adds the
    /// 1 of Gemma's RMSNorm into every norm weight.
    pub fn gguf_norm_shifted(&self, name: &str) -> bool {
        self.gemma.is_some() && name.ends_with("norm.weight")
    }

    /// Whether layer `l` attends through the sliding window (Gemma: its sliding layers only).
    pub fn is_sliding_layer(&self, l: usize) -> bool {
        self.sliding_window.is_some() && self.gemma.as_ref().is_none_or(|g| g.sliding_layers[l])
    }

    /// Layer `l`'s inverse RoPE frequencies: a Gemma sliding layer's from its own base, unscaled;
    /// every other layer's [`ModelConfig::rope_inv_freq`].
    pub fn layer_inv_freq(&self, l: usize) -> Vec<f32> {
        match &self.gemma {
            Some(g) if g.sliding_layers[l] => inv_freq(g.local_rope_theta, self.head_dim),
            _ => self.rope_inv_freq(),
        }
    }

    /// The factor s of the attention scores q·k·s: Dh^(−½), or Gemma's query_pre_attn_scalar^(−½)
    /// (computed in f64 and rounded, as transformers' Python float is).
    pub fn attention_scale(&self) -> f32 {
        match &self.gemma {
            Some(g) => (g.query_pre_attn_scalar as f64).powf(-0.5) as f32,
            None => 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    /// Reads the config from GGUF metadata (`{arch}.*` keys) and the tensor index:
    /// `tied_embeddings` ⇔ no `output.weight`; `qkv_bias` ⇔ `blk.0.attn_q.bias` exists;
    /// `vocab` = length of `tokenizer.ggml.tokens` (or the embedding's row count without one).
    /// Optional keys and their llama.cpp defaults: `head_count_kv` = heads, `rope.freq_base` =
    /// 10000, `attention.key_length` = hidden / heads.
    pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig> {
        let arch = g.architecture()?.to_string();
        if !GGUF_ARCHITECTURES.iter().any(|(a, _)| *a == arch) {
            return Err(unsupported_architecture(&g.path, &arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let positive = |k: &str| -> Result<usize> {
            let v = g.get_usize(&key(k))?;
            if v == 0 {
                return Err(Error::BadMetadata { path: g.path.clone(), key: key(k), problem: "is 0".into() });
            }
            Ok(v)
        };
        let hidden = positive("embedding_length")?;
        let ffn = positive("feed_forward_length")?;
        let layers = positive("block_count")?;
        let heads = positive("attention.head_count")?;
        let kv_heads =
            if g.get(&key("attention.head_count_kv")).is_some() { positive("attention.head_count_kv")? } else { heads };
        if heads % kv_heads != 0 {
            return Err(Error::BadMetadata {
                path: g.path.clone(),
                key: key("attention.head_count_kv"),
                problem: format!("{kv_heads} does not divide the {heads} query heads"),
            });
        }
        let head_dim = if g.get(&key("attention.key_length")).is_some() {
            positive("attention.key_length")?
        } else {
            if hidden % heads != 0 {
                return Err(Error::BadMetadata {
                    path: g.path.clone(),
                    key: key("embedding_length"),
                    problem: format!("{hidden} is not divisible by the {heads} heads"),
                });
            }
            hidden / heads
        };
        if head_dim % 2 != 0 {
            return Err(Error::BadMetadata {
                path: g.path.clone(),
                key: key("attention.key_length"),
                problem: format!("head dim {head_dim} is odd; RoPE needs pairs"),
            });
        }
        for k in ["attention.value_length", "rope.dimension_count"] {
            if g.get(&key(k)).is_some() && g.get_usize(&key(k))? != head_dim {
                return Err(Error::BadMetadata {
                    path: g.path.clone(),
                    key: key(k),
                    problem: format!(
                        "{}, expected the head dim {head_dim} (partial RoPE / distinct V size are not supported)",
                        g.get_usize(&key(k))?
                    ),
                });
            }
        }
        // Llama-3.x frequency scaling ships as a `rope_freqs.weight` tensor of divisors (one per
        // frequency); linear scaling as `rope.scaling.type` + `.factor`; other types are refused.
        let linear = match g.get(&key("rope.scaling.type")) {
            None => None,
            Some(_) => match g.get_str(&key("rope.scaling.type"))? {
                "none" => None,
                "linear" => {
                    let factor = g.get_f32(&key("rope.scaling.factor"))?;
                    if !(factor.is_finite() && factor > 0.0) {
                        return Err(Error::BadMetadata {
                            path: g.path.clone(),
                            key: key("rope.scaling.factor"),
                            problem: format!("{factor}, expected a positive number"),
                        });
                    }
                    Some(RopeScaling::Linear { factor })
                }
                t => {
                    return Err(Error::BadMetadata {
                        path: g.path.clone(),
                        key: key("rope.scaling.type"),
                        problem: format!("`{t}`: only linear and Llama-3 (`rope_freqs.weight`) scaling are supported"),
                    })
                }
            },
        };
        let rope_scaling = match g.tensor("rope_freqs.weight") {
            None => linear,
            Some(t) => {
                let bad = |problem: String| Error::BadMetadata {
                    path: g.path.clone(),
                    key: "rope_freqs.weight".into(),
                    problem,
                };
                if t.shape() != [head_dim / 2] {
                    return Err(bad(format!("shape {:?}, expected [{}] (head dim / 2)", t.shape(), head_dim / 2)));
                }
                let factors = g.dequantize("rope_freqs.weight")?;
                if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                    return Err(bad(format!("factor {f}, expected positive numbers")));
                }
                Some(RopeScaling::FreqFactors(factors))
            }
        };
        let sliding_window = match g.get(&key("attention.sliding_window")) {
            None => None,
            Some(_) => Some(positive("attention.sliding_window")?),
        };
        let qk_norm = g.tensor("blk.0.attn_q_norm.weight").is_some();
        let context = positive("context_length")?;
        let rope_theta =
            if g.get(&key("rope.freq_base")).is_some() { g.get_f32(&key("rope.freq_base"))? } else { 10_000.0 };
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(Error::BadMetadata {
                path: g.path.clone(),
                key: key("rope.freq_base"),
                problem: format!("{rope_theta}, expected a positive number"),
            });
        }
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(Error::BadMetadata {
                path: g.path.clone(),
                key: key("attention.layer_norm_rms_epsilon"),
                problem: format!("{rms_eps}, expected a positive number"),
            });
        }
        let vocab = if g.get("tokenizer.ggml.tokens").is_some() {
            g.get_array("tokenizer.ggml.tokens")?.len()
        } else {
            let embd = g
                .tensor("token_embd.weight")
                .ok_or_else(|| Error::MissingTensor { path: g.path.clone(), tensor: "token_embd.weight".into() })?;
            embd.shape()[0]
        };
        let block_count_key = key("block_count");
        let mut config = ModelConfig {
            architecture: arch,
            hidden,
            ffn,
            layers,
            heads,
            kv_heads,
            head_dim,
            vocab,
            context,
            rope_theta,
            rms_eps,
            tied_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm,
            rope_scaling,
            sliding_window,
            gemma: None,
        };
        // No ggml type stores a weight in less than a bit, so a config describing more than 8
        // weights per byte of the file cannot be this file's (and its sizes may overflow).
        let file_bytes = g.file_len();
        if config.checked_weight_count().is_none_or(|n| n / 8 > file_bytes) {
            return Err(Error::BadMetadata {
                path: g.path.clone(),
                key: block_count_key,
                problem: format!(
                    "{layers} layers of hidden size {hidden}, FFN {ffn}, {heads}×{head_dim} query and {kv_heads} KV heads, \
                     vocabulary {vocab}: more weights than a {file_bytes}-byte file can hold"
                ),
            });
        }
        // After the size check: Gemma's per-layer list is as long as the (now bounded) layer count.
        if config.architecture == "gemma3" {
            config.gemma = Some(gemma_from_gguf(g, layers, hidden, heads, head_dim)?);
        }
        Ok(config)
    }

    /// The number of weights this config describes (every tensor of the HF layout), or `None` when
    /// a tensor's size or the total overflows `usize`. File readers check it before building a
    /// layout, so that a corrupt header (a layer count or a hidden size of 2⁶⁰) is an error instead
    /// of an overflow or an absurd allocation.
    pub fn checked_weight_count(&self) -> Option<usize> {
        let (d, f, v) = (self.hidden, self.ffn, self.vocab);
        let q = self.heads.checked_mul(self.head_dim)?;
        let kv = self.kv_heads.checked_mul(self.head_dim)?;
        let bias = if self.qkv_bias { q.checked_add(kv.checked_mul(2)?)? } else { 0 };
        let qk_norm = if self.qk_norm { self.head_dim.checked_mul(2)? } else { 0 };
        let gemma_norms = if self.gemma.is_some() { d.checked_mul(2)? } else { 0 };
        let per_layer = [
            qk_norm,
            gemma_norms,
            d.checked_mul(2)?,                  // the two norms
            q.checked_mul(d)?.checked_mul(2)?,  // q and o
            kv.checked_mul(d)?.checked_mul(2)?, // k and v
            f.checked_mul(d)?.checked_mul(3)?,  // gate, up, down
            bias,
        ]
        .into_iter()
        .try_fold(0usize, |a, x| a.checked_add(x))?;
        let embed = v.checked_mul(d)?;
        let head = if self.tied_embeddings { 0 } else { embed };
        per_layer.checked_mul(self.layers)?.checked_add(embed)?.checked_add(head)?.checked_add(d)
    }

    /// The architecture name llama.cpp gives this model (Mistral is `llama` there).
    pub fn gguf_architecture(&self) -> &str {
        match self.architecture.as_str() {
            "mistral" => "llama",
            "gemma3_text" => "gemma3",
            a => a,
        }
    }

    /// The `model_type` transformers gives this model: Gemma 3's text model is `gemma3_text`
    /// (`gemma3` there is the multimodal one); a `llama` with a sliding window is a Mistral.
    pub fn hf_model_type(&self) -> &str {
        match self.architecture.as_str() {
            "gemma3" => "gemma3_text",
            "llama" if self.sliding_window.is_some() => "mistral",
            a => a,
        }
    }

    /// Whether this architecture's GGUF Q/K rows are in llama.cpp's interleaved-RoPE order.
    pub fn gguf_qk_permuted(&self) -> bool {
        GGUF_ARCHITECTURES.iter().any(|&(a, p)| a == self.gguf_architecture() && p)
    }
}
