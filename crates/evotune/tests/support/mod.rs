//! Test support: the default model's weights through candle's GGUF reader (stand-in for
//! `evotune::model::load` until the loader lands), a tiny random model, and the golden file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use evotune::model::{Layout, ModelConfig, Params};

/// The default model, from `EVOTUNE_MODEL` or the cache; `None` (with a printed note) if absent.
pub fn model_path() -> Option<PathBuf> {
    evotune::model::fetch::default_model_for_tests()
}

/// Loads a llama GGUF into an f32 arena with HF names, undoing llama.cpp's Q/K row permutation.
pub fn load_gguf(path: &std::path::Path) -> (ModelConfig, Params) {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let md = |k: &str| content.metadata.get(k).unwrap_or_else(|| panic!("metadata {k}"));
    let arch = md("general.architecture").to_string().unwrap().clone();
    let key = |s: &str| format!("{arch}.{s}");
    let u = |s: &str| md(&key(s)).to_u32().unwrap() as usize;
    let hidden = u("embedding_length");
    let heads = u("attention.head_count");
    let kv_heads = u("attention.head_count_kv");
    let layers = u("block_count");
    let emb_shape = content.tensor_infos["token_embd.weight"].shape.dims().to_vec();
    let config = ModelConfig {
        architecture: arch.clone(),
        hidden,
        ffn: u("feed_forward_length"),
        layers,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        vocab: emb_shape[0],
        context: u("context_length"),
        rope_theta: md(&key("rope.freq_base")).to_f32().unwrap(),
        rms_eps: md(&key("attention.layer_norm_rms_epsilon")).to_f32().unwrap(),
        tied_embeddings: !content.tensor_infos.contains_key("output.weight"),
        qkv_bias: false,
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    };
    let mut names: Vec<(String, String, usize)> =
        vec![("token_embd.weight".into(), "model.embed_tokens.weight".into(), 0)];
    for i in 0..layers {
        let b = |g: &str, h: &str, perm: usize| {
            (format!("blk.{i}.{g}.weight"), format!("model.layers.{i}.{h}.weight"), perm)
        };
        names.push(b("attn_norm", "input_layernorm", 0));
        names.push(b("attn_q", "self_attn.q_proj", heads));
        names.push(b("attn_k", "self_attn.k_proj", kv_heads));
        names.push(b("attn_v", "self_attn.v_proj", 0));
        names.push(b("attn_output", "self_attn.o_proj", 0));
        names.push(b("ffn_norm", "post_attention_layernorm", 0));
        names.push(b("ffn_gate", "mlp.gate_proj", 0));
        names.push(b("ffn_up", "mlp.up_proj", 0));
        names.push(b("ffn_down", "mlp.down_proj", 0));
    }
    names.push(("output_norm.weight".into(), "model.norm.weight".into(), 0));
    if !config.tied_embeddings {
        names.push(("output.weight".into(), "lm_head.weight".into(), 0));
    }
    let mut layout = Layout::new();
    let mut data = Vec::new();
    for (g, h, perm_heads) in names {
        let t = content.tensor(&mut f, &g, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        let shape = t.dims().to_vec();
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if perm_heads > 0 {
            v = unpermute(&v, perm_heads, shape[0] / perm_heads, shape[1]);
        }
        layout.push(h, shape);
        data.extend_from_slice(&v);
    }
    (config, Params::from_vec(Arc::new(layout), data))
}

/// llama.cpp stores Wq/Wk rows per head as (Dh/2, 2) (interleaved RoPE pairs); HF as (2, Dh/2).
/// Row h·Dh + 2i + j of the file becomes row h·Dh + j·Dh/2 + i.
fn unpermute(w: &[f32], heads: usize, dh: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..dh / 2 {
            for j in 0..2 {
                let src = h * dh + 2 * i + j;
                let dst = h * dh + j * (dh / 2) + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The default model, loaded once per test binary.
pub fn default_model() -> Option<&'static (ModelConfig, Params)> {
    static M: std::sync::OnceLock<Option<(ModelConfig, Params)>> = std::sync::OnceLock::new();
    M.get_or_init(|| model_path().map(|p| load_gguf(&p))).as_ref()
}

/// SmolLM2-135M's shape (for benchmarks with random weights where the file cannot travel).
pub fn smollm2_config() -> ModelConfig {
    ModelConfig {
        architecture: "llama".into(),
        hidden: 576,
        ffn: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 49152,
        context: 8192,
        rope_theta: 100000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    }
}

/// A tiny llama-shaped model with random weights (scale ~1/√fan_in) for tests without the file.
pub fn tiny_model(qkv_bias: bool, tied: bool) -> (ModelConfig, Params) {
    random_model(ModelConfig {
        architecture: "llama".into(),
        hidden: 48,
        ffn: 80,
        layers: 3,
        heads: 6,
        kv_heads: 2,
        head_dim: 8,
        vocab: 97,
        context: 64,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_embeddings: tied,
        qkv_bias,
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    })
}

/// Random weights (scale ~2/√fan_in, norms ≈ 1) for any llama config, HF names and order.
pub fn random_model(config: ModelConfig) -> (ModelConfig, Params) {
    let c = &config;
    let (d, f, qd, kvd, v) = (c.hidden, c.ffn, c.heads * c.head_dim, c.kv_heads * c.head_dim, c.vocab);
    let mut layout = Layout::new();
    layout.push("model.embed_tokens.weight", vec![v, d]);
    for i in 0..c.layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        layout.push(p("input_layernorm.weight"), vec![d]);
        layout.push(p("self_attn.q_proj.weight"), vec![qd, d]);
        layout.push(p("self_attn.k_proj.weight"), vec![kvd, d]);
        layout.push(p("self_attn.v_proj.weight"), vec![kvd, d]);
        if c.qkv_bias {
            layout.push(p("self_attn.q_proj.bias"), vec![qd]);
            layout.push(p("self_attn.k_proj.bias"), vec![kvd]);
            layout.push(p("self_attn.v_proj.bias"), vec![kvd]);
        }
        layout.push(p("self_attn.o_proj.weight"), vec![d, qd]);
        layout.push(p("post_attention_layernorm.weight"), vec![d]);
        layout.push(p("mlp.gate_proj.weight"), vec![f, d]);
        layout.push(p("mlp.up_proj.weight"), vec![f, d]);
        layout.push(p("mlp.down_proj.weight"), vec![d, f]);
    }
    layout.push("model.norm.weight", vec![d]);
    if !c.tied_embeddings {
        layout.push("lm_head.weight", vec![v, d]);
    }
    let layout = Arc::new(layout);
    let mut params = Params::zeros(layout.clone());
    let mut s: u64 = 0x1234_5678_9ABC_DEF1;
    for (info, t) in params.tensors_mut() {
        let is_norm = info.shape.len() == 1 && !info.name.ends_with("bias");
        let scale = if info.shape.len() == 2 { 2.0 / (info.shape[1] as f32).sqrt() } else { 0.2 };
        for x in t.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            *x = if is_norm { 1.0 + 0.3 * r } else { scale * r };
        }
    }
    (config, params)
}

/// One prompt of the golden file.
pub struct Golden {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub output_ids: Vec<u32>,
    pub margins: Vec<f32>,
    pub stopped: bool,
}

pub fn golden() -> Vec<Golden> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden_completions.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let ids =
        |x: &serde_json::Value| x.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect::<Vec<u32>>();
    v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Golden {
            text: p["text"].as_str().unwrap().to_string(),
            input_ids: ids(&p["input_ids"]),
            output_ids: ids(&p["output_ids"]),
            margins: p["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap() as f32).collect(),
            stopped: p["stopped"].as_bool().unwrap(),
        })
        .collect()
}

/// max |a − b| and max |b| over two equal-length slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0.0f32, 0.0f32), |(d, m), (x, y)| (d.max((x - y).abs()), m.max(y.abs())))
}

pub fn bit_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A tiny xorshift for rewards that are independent of the noise (the ES and QES law tests).
pub struct Rng(pub u64);
impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}
