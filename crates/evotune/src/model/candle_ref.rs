//! The reference implementation: candle's `models::llama` (candle 0.11.1) built on the same
//! weights as our [`Llama`](crate::model::Llama), for tests and the benchmark.
//!
//! candle's model is independent code (its own RoPE tables, mask, GQA `repeat_kv`, softmax and
//! gemm-backed matmuls), so agreement with it checks our forward end to end. It supports the
//! llama architecture without q/k/v bias and with Dh = D / H; other configs are refused.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as cl;

use crate::error::{Error, Result};
use crate::model::{ModelConfig, Params};

fn cerr(e: candle_core::Error) -> Error {
    Error::CandleRef { problem: e.to_string() }
}

/// An error unless candle's plain llama can run this model (no q/k/v bias, q/k norms, RoPE scaling,
/// window or Gemma block; Dh = D / H), and the names and shapes of `params` fit it.
fn check_supported(config: &ModelConfig, params: &Params) -> Result<()> {
    if config.qkv_bias {
        return Err(Error::CandleRef {
            problem: "candle's llama has no q/k/v bias (qwen2 is not supported here)".into(),
        });
    }
    if config.qk_norm || config.rope_scaling.is_some() || config.sliding_window.is_some() || config.gemma.is_some() {
        return Err(Error::CandleRef {
            problem:
                "this comparison builds candle's plain llama: no q/k norms, RoPE scaling, sliding window or Gemma block"
                    .into(),
        });
    }
    if config.head_dim * config.heads != config.hidden {
        return Err(Error::CandleRef {
            problem: format!(
                "candle's llama needs head_dim = hidden / heads, got {} ≠ {} / {}",
                config.head_dim, config.hidden, config.heads
            ),
        });
    }
    // Validate names and shapes first: candle's loader unwraps per block.
    crate::model::Llama::new(config.clone(), params.layout())?;
    Ok(())
}

/// candle's config of the same model.
fn candle_config(config: &ModelConfig) -> cl::Config {
    cl::Config {
        hidden_size: config.hidden,
        intermediate_size: config.ffn,
        vocab_size: config.vocab,
        num_hidden_layers: config.layers,
        num_attention_heads: config.heads,
        num_key_value_heads: config.kv_heads,
        use_flash_attn: false,
        rms_norm_eps: config.rms_eps as f64,
        rope_theta: config.rope_theta,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: config.context,
        tie_word_embeddings: config.tied_embeddings,
    }
}

/// candle's autograd on the same model and weights (held as candle `Var`s):
/// ∂(Σ_b log softmax(logits_b)[targets_b])/∂θ for equal-length `rows` (candle's llama gives each
/// row's last-position logits), flat in `params`' layout, with the seconds of the forward and
/// backward. The reference for our hand-written backward (`evotune bench grpo --vs-candle`).
pub fn logprob_gradient(
    config: &ModelConfig,
    params: &Params,
    rows: &[Vec<u32>],
    targets: &[u32],
) -> Result<(Vec<f32>, f64)> {
    check_supported(config, params)?;
    let (b, t) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    if b == 0 || t == 0 || rows.iter().any(|r| r.len() != t) || targets.len() != b {
        return Err(Error::CandleRef { problem: "rows must be non-empty, of equal length, one target each".into() });
    }
    let device = Device::Cpu;
    let varmap = candle_nn::VarMap::new();
    let mut vars = Vec::new();
    {
        let mut data = varmap.data().lock().expect("a fresh VarMap");
        for (id, info) in params.layout().tensors().iter().enumerate() {
            let tensor = Tensor::from_slice(params.tensor(id), info.shape.as_slice(), &device).map_err(cerr)?;
            let var = candle_core::Var::from_tensor(&tensor).map_err(cerr)?;
            vars.push(var.as_tensor().clone());
            data.insert(info.name.clone(), var);
        }
    }
    let cfg = candle_config(config);
    let model = cl::Llama::load(VarBuilder::from_varmap(&varmap, DType::F32, &device), &cfg).map_err(cerr)?;
    let start = std::time::Instant::now();
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    let input = Tensor::from_vec(flat, (b, t), &device).map_err(cerr)?;
    let mut cache = cl::Cache::new(false, DType::F32, &cfg, &device).map_err(cerr)?;
    let logits = model.forward(&input, 0, &mut cache).map_err(cerr)?; // (B, V)
    let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).map_err(cerr)?;
    let tgt = Tensor::from_vec(targets.to_vec(), (b, 1), &device).map_err(cerr)?;
    let loss = logp.gather(&tgt, 1).and_then(|x| x.sum_all()).map_err(cerr)?;
    let grads = loss.backward().map_err(cerr)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(params.layout().total());
    for (var, info) in vars.iter().zip(params.layout().tensors()) {
        match grads.get(var) {
            Some(g) => out.extend(g.flatten_all().and_then(|g| g.to_vec1::<f32>()).map_err(cerr)?),
            None => out.extend(std::iter::repeat_n(0.0, info.len)),
        }
    }
    Ok((out, seconds))
}

/// candle's llama on a copy of an arena's weights.
pub struct CandleLlama {
    model: cl::Llama,
    config: cl::Config,
    device: Device,
}

impl CandleLlama {
    /// Builds candle's model from `params` (HF names; lm_head = embedding when tied). The weights
    /// are copied into candle tensors.
    pub fn new(config: &ModelConfig, params: &Params) -> Result<Self> {
        check_supported(config, params)?;
        let device = Device::Cpu;
        let mut map = HashMap::new();
        for (id, t) in params.layout().tensors().iter().enumerate() {
            let tensor = Tensor::from_slice(params.tensor(id), t.shape.as_slice(), &device).map_err(cerr)?;
            map.insert(t.name.clone(), tensor);
        }
        let vb = VarBuilder::from_tensors(map, DType::F32, &device);
        let cfg = candle_config(config);
        let model = cl::Llama::load(vb, &cfg).map_err(cerr)?;
        Ok(CandleLlama { model, config: cfg, device })
    }

    /// A fresh candle cache (KV cache on).
    pub fn new_cache(&self) -> Result<cl::Cache> {
        cl::Cache::new(true, DType::F32, &self.config, &self.device).map_err(cerr)
    }

    /// Runs a batch of equal-length token rows at position `index_pos` and returns the logits of
    /// each row's last position: (B, V) flattened.
    pub fn forward(&self, rows: &[Vec<u32>], index_pos: usize, cache: &mut cl::Cache) -> Result<Vec<f32>> {
        let b = rows.len();
        let t = rows.first().map_or(0, |r| r.len());
        if b == 0 || t == 0 || rows.iter().any(|r| r.len() != t) {
            return Err(Error::CandleRef { problem: "rows must be non-empty and of equal length".into() });
        }
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (b, t), &self.device).map_err(cerr)?; // (B, T)
        let logits = self.model.forward(&input, index_pos, cache).map_err(cerr)?; // (B, V)
        logits.flatten_all().and_then(|l| l.to_vec1::<f32>()).map_err(cerr)
    }

    /// Logits at the last position of `tokens`, from one full (uncached) prefill: length V.
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut cache = self.new_cache()?;
        self.forward(&[tokens.to_vec()], 0, &mut cache)
    }

    /// Logits at every position of `tokens`, feeding one token at a time through candle's KV
    /// cache (candle's forward returns only the last position): (T, V) as rows.
    pub fn logits_each(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut cache = self.new_cache()?;
        tokens.iter().enumerate().map(|(i, &t)| self.forward(&[vec![t]], i, &mut cache)).collect()
    }

    /// Greedy decoding of one batch of equal-length prompts for exactly `n` new tokens (no stop
    /// tokens): candle's own cached loop, the baseline for the benchmark and the greedy check.
    pub fn generate_greedy(&self, prompts: &[Vec<u32>], n: usize) -> Result<Vec<Vec<u32>>> {
        let mut cache = self.new_cache()?;
        let v = self.config.vocab_size;
        let mut out = vec![Vec::with_capacity(n); prompts.len()];
        if n == 0 {
            return Ok(out);
        }
        let mut logits = self.forward(prompts, 0, &mut cache)?;
        for (step, pos) in (0..n).zip(prompts[0].len()..) {
            let next: Vec<Vec<u32>> = logits.chunks(v).map(|row| vec![crate::model::generate::argmax(row)]).collect();
            for (o, t) in out.iter_mut().zip(&next) {
                o.push(t[0]);
            }
            if step + 1 == n {
                break;
            }
            logits = self.forward(&next, pos, &mut cache)?;
        }
        Ok(out)
    }
}
