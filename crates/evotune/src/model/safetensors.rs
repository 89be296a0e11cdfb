//! HF model directories in (config.json + *.safetensors) and safetensors checkpoints out.
//!
//! Tensors keep their HF names (`model.layers.3.self_attn.q_proj.weight`) and HF layout (matrices
//! (out, in), row-major; Q/K rows in HF's rotate-half order), which is also the arena's layout, so
//! no tensor is permuted on the way in or out. F32, F16 and BF16 files are read (to f32); files are
//! written as F32, the master precision.
//!
//! Writes are atomic: the bytes go to a temporary file in the target's directory, which is fsynced
//! and renamed over the target, so a reader (or a resumed run) never sees half a checkpoint.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoResultExt, Result};
use crate::files::write_atomic;
use crate::model::config::unsupported_architecture;
use crate::model::config::Gemma;
use crate::model::{Layout, ModelConfig, Params, RopeScaling};
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// `config.json` as HF writes it for llama-family models; every field optional until
/// [`HfConfig::resolve`] fills in HF's defaults.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: Option<usize>,
    pub max_position_embeddings: Option<usize>,
    pub rope_theta: Option<f64>,
    pub rms_norm_eps: Option<f64>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub hidden_act: Option<String>,
    /// transformers 4.x: `{"rope_type" | "type": …, parameters}` or null.
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5: `{"rope_type": …, "rope_theta": …, parameters}`.
    pub rope_parameters: Option<serde_json::Value>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub layer_types: Option<Vec<String>>,
    pub mlp_bias: Option<bool>,
    // Gemma 3 (`gemma3_text`).
    pub hidden_activation: Option<String>,
    pub query_pre_attn_scalar: Option<f64>,
    pub rope_local_base_freq: Option<f64>,
    pub sliding_window_pattern: Option<usize>,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub use_bidirectional_attention: Option<bool>,
    /// Gemma 3's multimodal checkpoints (`model_type: gemma3`): the language model's config.
    pub text_config: Option<Box<HfConfig>>,
}

/// The text model's name of a stored tensor: a multimodal checkpoint's language model
/// (`language_model.model.…`, transformers 4; `model.language_model.…`, transformers 5) read as a
/// plain decoder's `model.…`; `None` for the vision tower and projector, which the text model
/// does not use. Other names are kept.
pub fn text_model_name(stored: &str) -> Option<String> {
    let vision = ["vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."];
    if vision.iter().any(|p| stored.starts_with(p)) {
        return None;
    }
    if let Some(rest) = stored.strip_prefix("language_model.model.").or(stored.strip_prefix("model.language_model.")) {
        return Some(format!("model.{rest}"));
    }
    Some(stored.strip_prefix("language_model.").unwrap_or(stored).to_string())
}

impl HfConfig {
    /// Reads and parses `path` (a `config.json`).
    pub fn read(path: &Path) -> Result<HfConfig> {
        let text = std::fs::read_to_string(path).with_path(path)?;
        serde_json::from_str(&text).map_err(|e| Error::CorruptModel {
            path: path.to_path_buf(),
            problem: format!("config.json is not valid: {e}"),
        })
    }

    /// Fills in HF's defaults (LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config,
    /// Gemma3TextConfig): `num_key_value_heads` = heads, `head_dim` = hidden / heads (Gemma 3:
    /// 256), `rope_theta` = 10000 (Gemma 3: 1e6 global, 1e4 local), `rms_norm_eps` = 1e-6, context
    /// 2048; Qwen2 has q/k/v biases, the others when `attention_bias`; Qwen3 and Gemma 3 normalise
    /// q and k per head; Mistral may have a `sliding_window`, Gemma 3 has one on its sliding layers.
    /// Gemma 3 sizes a config leaves out are Gemma3TextConfig's (hidden 2304, 26 layers, 8 heads, 4
    /// KV heads, FFN 9216, vocabulary 262208), and a multimodal `gemma3` config is read through its
    /// `text_config`. `has_lm_head` says whether the weights contain `lm_head.weight`: without it the head is tied
    /// to the embedding. A field that would change the maths in a way this forward does not
    /// compute is an error naming it.
    pub fn resolve(&self, path: &Path, has_lm_head: bool) -> Result<ModelConfig> {
        if let (Some("gemma3"), Some(text)) = (self.model_type.as_deref(), &self.text_config) {
            // Gemma 3 4B+ checkpoints: the language model of a multimodal one (its tensors are
            // renamed by `text_model_name`, the vision tower is not read).
            let mut text = (**text).clone();
            text.model_type = Some("gemma3_text".into());
            return text.resolve(path, has_lm_head);
        }
        let model_type = self.model_type.clone().unwrap_or_else(|| "llama".to_string());
        if !["llama", "mistral", "qwen2", "qwen3", "gemma3_text"].contains(&model_type.as_str()) {
            return Err(unsupported_architecture(path, &model_type));
        }
        let is_gemma = model_type == "gemma3_text";
        let bad =
            |key: &str, problem: String| Error::BadMetadata { path: path.to_path_buf(), key: key.into(), problem };
        let (act_key, act, want) = match is_gemma {
            false => ("hidden_act", &self.hidden_act, "silu"),
            true => ("hidden_activation", &self.hidden_activation, "gelu_pytorch_tanh"),
        };
        if let Some(a) = act.as_deref().filter(|a| *a != want) {
            return Err(bad(act_key, format!("`{a}`: only `{want}` is supported for {model_type}")));
        }
        if self.mlp_bias == Some(true) {
            return Err(bad("mlp_bias", "true: MLP biases are not supported".into()));
        }
        for (key, v) in [
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
        ] {
            if let Some(v) = v {
                return Err(bad(key, format!("{v}: logit soft-capping is not supported")));
            }
        }
        if self.use_bidirectional_attention == Some(true) {
            return Err(bad("use_bidirectional_attention", "true: only causal attention is supported".into()));
        }
        let need = |v: Option<usize>, key: &str| v.filter(|&x| x > 0).ok_or_else(|| bad(key, "missing or zero".into()));
        // Gemma3TextConfig's defaults (the Gemma 3 4B+ checkpoints leave these out).
        let gemma_default = |v: Option<usize>, d: usize| if is_gemma { v.or(Some(d)) } else { v };
        let hidden = need(gemma_default(self.hidden_size, 2304), "hidden_size")?;
        let heads = need(gemma_default(self.num_attention_heads, 8), "num_attention_heads")?;
        let layers = need(gemma_default(self.num_hidden_layers, 26), "num_hidden_layers")?;
        let kv_heads = gemma_default(self.num_key_value_heads, 4).unwrap_or(heads);
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!("{kv_heads} does not divide num_attention_heads = {heads}"),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if is_gemma => 256,
            None if hidden % heads == 0 => hidden / heads,
            None => {
                return Err(bad(
                    "head_dim",
                    format!("missing, and hidden_size {hidden} is not a multiple of {heads} heads"),
                ))
            }
        };
        let (rope_theta, rope_scaling, gemma) = if is_gemma {
            let (global, local) = self.gemma_rope(path)?;
            let sliding_layers = self.gemma_sliding_layers(path, layers)?;
            let query_pre_attn_scalar = self.query_pre_attn_scalar.unwrap_or(256.0);
            if !(query_pre_attn_scalar.is_finite() && query_pre_attn_scalar > 0.0) {
                return Err(bad(
                    "query_pre_attn_scalar",
                    format!("{query_pre_attn_scalar}, expected a positive number"),
                ));
            }
            let gemma =
                Gemma { query_pre_attn_scalar: query_pre_attn_scalar as f32, local_rope_theta: local, sliding_layers };
            (global.0, global.1, Some(gemma))
        } else {
            let (theta, scaling) = self.rope(path)?;
            (theta, scaling, None)
        };
        let sliding_window = match model_type.as_str() {
            "mistral" => self.sliding_window,
            "gemma3_text" => Some(self.sliding_window.unwrap_or(4096)),
            _ if self.use_sliding_window == Some(true) => {
                return Err(bad(
                    "use_sliding_window",
                    "true: sliding-window layers are supported for Mistral and Gemma 3 only".into(),
                ))
            }
            _ => None,
        };
        if !is_gemma && sliding_window.is_none() {
            if let Some(t) = self.layer_types.iter().flatten().find(|t| *t != "full_attention") {
                return Err(bad("layer_types", format!("`{t}`: only `full_attention` layers are supported here")));
            }
        }
        if sliding_window == Some(0) {
            return Err(bad("sliding_window", "0: a window must hold at least the position itself".into()));
        }
        let qkv_bias = model_type == "qwen2" || self.attention_bias.unwrap_or(false);
        if is_gemma && qkv_bias {
            return Err(bad("attention_bias", "true: Gemma 3 with attention biases is not supported".into()));
        }
        let qk_norm = model_type == "qwen3" || is_gemma;
        Ok(ModelConfig {
            architecture: model_type,
            hidden,
            ffn: need(gemma_default(self.intermediate_size, 9216), "intermediate_size")?,
            layers,
            heads,
            kv_heads,
            head_dim,
            vocab: need(gemma_default(self.vocab_size, 262_208), "vocab_size")?,
            context: self.max_position_embeddings.unwrap_or(if is_gemma { 131_072 } else { 2048 }),
            rope_theta,
            rms_eps: self.rms_norm_eps.unwrap_or(1e-6) as f32,
            tied_embeddings: !has_lm_head
                || self.tie_word_embeddings == Some(true)
                || (is_gemma && self.tie_word_embeddings.is_none()),
            qkv_bias,
            qk_norm,
            rope_scaling,
            sliding_window,
            gemma,
        })
    }

    /// RoPE base and scaling from either spelling: transformers 4.x (`rope_theta`, `rope_scaling`)
    /// or 5 (`rope_parameters` holding both).
    fn rope(&self, path: &Path) -> Result<(f32, Option<RopeScaling>)> {
        let (key, block) = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) if !p.is_null() => ("rope_parameters", Some(p)),
            (_, Some(s)) if !s.is_null() => ("rope_scaling", Some(s)),
            _ => ("rope_scaling", None),
        };
        rope_block(path, key, block, self.rope_theta.unwrap_or(10_000.0))
    }

    /// Gemma 3's two RoPEs: the global layers' (base, scaling) and the sliding layers' base.
    /// transformers 5 keeps them in `rope_parameters.{full,sliding}_attention`; 4.x in
    /// `rope_theta` + `rope_scaling` (global) and `rope_local_base_freq`. A scaled local RoPE is
    /// refused.
    fn gemma_rope(&self, path: &Path) -> Result<((f32, Option<RopeScaling>), f32)> {
        let per_type = self.rope_parameters.as_ref().filter(|p| p.get("full_attention").is_some());
        let (global, local) = match per_type {
            Some(p) => (
                rope_block(path, "rope_parameters.full_attention", p.get("full_attention"), 1e6)?,
                rope_block(path, "rope_parameters.sliding_attention", p.get("sliding_attention"), 1e4)?,
            ),
            None => {
                let scaling = self.rope_scaling.as_ref().filter(|v| !v.is_null());
                let global = rope_block(path, "rope_scaling", scaling, self.rope_theta.unwrap_or(1e6))?;
                (global, (self.rope_local_base_freq.unwrap_or(1e4) as f32, None))
            }
        };
        if local.1.is_some() || !(local.0.is_finite() && local.0 > 0.0) {
            return Err(Error::BadMetadata {
                path: path.to_path_buf(),
                key: "rope_parameters.sliding_attention".into(),
                problem: "the sliding layers' RoPE must be unscaled with a positive base".into(),
            });
        }
        Ok((global, local.0))
    }

    /// Which of Gemma 3's layers are sliding: `layer_types`, else the older
    /// `sliding_window_pattern` (default 6; layer i is global iff (i + 1) % pattern = 0).
    fn gemma_sliding_layers(&self, path: &Path, layers: usize) -> Result<Vec<bool>> {
        let bad =
            |key: &str, problem: String| Error::BadMetadata { path: path.to_path_buf(), key: key.into(), problem };
        match &self.layer_types {
            Some(types) => {
                if types.len() != layers {
                    return Err(bad("layer_types", format!("{} entries for {layers} layers", types.len())));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        other => Err(bad("layer_types", format!("`{other}` is not a layer type of Gemma 3"))),
                    })
                    .collect()
            }
            // A layer list longer than any model's (a corrupt count) is not built.
            None if layers > 1 << 16 => Err(bad("num_hidden_layers", format!("{layers} layers"))),
            None => {
                let p = self.sliding_window_pattern.unwrap_or(6);
                if p == 0 {
                    return Err(bad("sliding_window_pattern", "is 0".into()));
                }
                Ok((0..layers).map(|i| (i + 1) % p != 0).collect())
            }
        }
    }
}

/// One RoPE block (`{"rope_type" | "type", "rope_theta"?, parameters}`, or none) → base and
/// scaling; `theta` is the base when the block has none. Types other than `default`, `linear` and
/// `llama3` change the maths in ways this forward does not compute, and are refused naming `key`.
fn rope_block(
    path: &Path,
    key: &str,
    block: Option<&serde_json::Value>,
    theta: f64,
) -> Result<(f32, Option<RopeScaling>)> {
    let bad = |problem: String| Error::BadMetadata { path: path.to_path_buf(), key: key.into(), problem };
    let field = |name: &str| block.and_then(|b| b.get(name)).filter(|v| !v.is_null());
    let number = |name: &str| -> Result<Option<f64>> {
        match field(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(bad(format!("`{name}` is {v}, expected a positive number"))),
            },
        }
    };
    let theta = number("rope_theta")?.unwrap_or(theta);
    if !(theta.is_finite() && theta > 0.0) {
        return Err(bad(format!("rope_theta {theta}, expected a positive number")));
    }
    let kind = field("rope_type").or(field("type")).map(|v| v.as_str().unwrap_or("?").to_string());
    let need = |name: &str| number(name)?.ok_or_else(|| bad(format!("{kind:?} scaling needs `{name}`")));
    let scaling = match kind.as_deref() {
        None | Some("default") => None,
        Some("linear") => Some(RopeScaling::Linear { factor: need("factor")? as f32 }),
        Some("llama3") => {
            let (factor, low, high) = (need("factor")?, need("low_freq_factor")?, need("high_freq_factor")?);
            let original = need("original_max_position_embeddings")?;
            if high <= low {
                return Err(bad(format!("high_freq_factor {high} must exceed low_freq_factor {low}")));
            }
            Some(RopeScaling::Llama3 {
                factor: factor as f32,
                low_freq_factor: low as f32,
                high_freq_factor: high as f32,
                original_context: original as usize,
            })
        }
        Some(t) => return Err(bad(format!("rope type `{t}` is not supported (default, linear and llama3 are)"))),
    };
    Ok((theta as f32, scaling))
}

/// Every trainable tensor of `config` in the arena's canonical order, with HF names and shapes:
/// the embedding, then per block (norm, q, k, v, [q, k, v biases], [q, k norms], o, norm,
/// [Gemma: pre-MLP norm], gate, up, down, [Gemma: post-MLP norm]), the final norm, and
/// `lm_head.weight` unless tied. The GGUF loader (`model::loader`)
/// builds its layout from this list too, so a model has the same tensor ids whichever format it
/// came in.
pub fn hf_tensor_specs(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    hf_tensor_spec_iter(config).collect()
}

/// [`hf_tensor_specs`] one tensor at a time: a reader checking a file against it stops at the
/// first missing tensor without planning all of a corrupt header's layers.
pub fn hf_tensor_spec_iter(config: &ModelConfig) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
    let (d, f, v, dh) = (config.hidden, config.ffn, config.vocab, config.head_dim);
    let (q_rows, kv_rows) = (config.heads * dh, config.kv_heads * dh);
    let qkv = [("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)];
    let blocks = (0..config.layers).flat_map(move |l| {
        let p = format!("model.layers.{l}");
        let mut out = vec![(format!("{p}.input_layernorm.weight"), vec![d])];
        out.extend(qkv.map(|(name, rows)| (format!("{p}.self_attn.{name}.weight"), vec![rows, d])));
        if config.qkv_bias {
            out.extend(qkv.map(|(name, rows)| (format!("{p}.self_attn.{name}.bias"), vec![rows])));
        }
        if config.qk_norm {
            out.extend(["q_norm", "k_norm"].map(|name| (format!("{p}.self_attn.{name}.weight"), vec![dh])));
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q_rows]));
        // Llama's `post_attention_layernorm` is its MLP's input norm; Gemma's normalises the
        // attention output, and `pre_feedforward_layernorm` is the MLP's input norm.
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        if config.gemma.is_some() {
            out.push((format!("{p}.pre_feedforward_layernorm.weight"), vec![d]));
        }
        out.extend([
            (format!("{p}.mlp.gate_proj.weight"), vec![f, d]),
            (format!("{p}.mlp.up_proj.weight"), vec![f, d]),
            (format!("{p}.mlp.down_proj.weight"), vec![d, f]),
        ]);
        if config.gemma.is_some() {
            out.push((format!("{p}.post_feedforward_layernorm.weight"), vec![d]));
        }
        out
    });
    let head = (!config.tied_embeddings).then(|| ("lm_head.weight".to_string(), vec![v, d]));
    std::iter::once(("model.embed_tokens.weight".to_string(), vec![v, d]))
        .chain(blocks)
        .chain(std::iter::once(("model.norm.weight".to_string(), vec![d])))
        .chain(head)
}

/// The arena layout of `config` (see [`hf_tensor_specs`] for the order).
pub fn hf_layout(config: &ModelConfig) -> Layout {
    let mut layout = Layout::new();
    for (name, shape) in hf_tensor_specs(config) {
        let kind = config.tensor_kind(&name);
        layout.push_kind(name, shape, kind);
    }
    layout
}

/// Reads a HF model directory: `config.json` → [`ModelConfig`], every `*.safetensors` file
/// (one file or shards) → one f32 arena in [`hf_layout`] order. Tensors the model does not use
/// (e.g. `rotary_emb.inv_freq`) are ignored; a missing one is an error, as is a shape that
/// disagrees with the config.
pub fn read_dir(dir: &Path) -> Result<(ModelConfig, Layout, Vec<f32>)> {
    let config_path = dir.join("config.json");
    let hf = HfConfig::read(&config_path)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_path(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::CorruptModel {
            path: dir.to_path_buf(),
            problem: "no *.safetensors file in this directory".into(),
        });
    }
    let maps = files
        .iter()
        .map(|p| {
            let file = File::open(p).with_path(p)?;
            // SAFETY: the map is read-only and lives only during this function; a file changed by
            // another process while we read it would give wrong numbers, not memory unsafety in Rust
            // terms beyond what every mmap-based reader accepts.
            unsafe { memmap2::Mmap::map(&file) }.with_path(p)
        })
        .collect::<Result<Vec<_>>>()?;
    let parsed = files
        .iter()
        .zip(&maps)
        .map(|(p, m)| {
            safetensors::SafeTensors::deserialize(m).map_err(|e| Error::CorruptModel {
                path: p.clone(),
                problem: format!("not a valid safetensors file: {e}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // name → (file index, view); a name in two shards is corrupt.
    let mut index: BTreeMap<String, (usize, safetensors::tensor::TensorView<'_>)> = BTreeMap::new();
    for (i, st) in parsed.iter().enumerate() {
        for (name, view) in st.iter() {
            let Some(name) = text_model_name(name) else { continue };
            if let Some((j, _)) = index.insert(name.clone(), (i, view)) {
                return Err(Error::CorruptModel {
                    path: files[i].clone(),
                    problem: format!("tensor `{name}` also appears in {}", files[j].display()),
                });
            }
        }
    }

    let config = hf.resolve(&config_path, index.contains_key("lm_head.weight"))?;
    // Before a layout is planned from the config: its sizes must not overflow, and it may not ask
    // for more layers than the files hold tensors (a layer count of 2⁴⁰ would otherwise plan 2⁴⁰
    // names). Every planned tensor is then found with its shape before the arena is allocated, so
    // the allocation is bounded by what the files hold.
    if config.checked_weight_count().is_none() {
        return Err(Error::BadMetadata {
            path: config_path,
            key: "hidden_size".into(),
            problem: format!(
                "the tensor sizes overflow: {} layers of hidden size {}, intermediate size {}, {}×{} query and {} KV \
                 heads, vocabulary {}",
                config.layers, config.hidden, config.ffn, config.heads, config.head_dim, config.kv_heads, config.vocab
            ),
        });
    }
    if config.layers > index.len() {
        return Err(Error::BadMetadata {
            path: config_path,
            key: "num_hidden_layers".into(),
            problem: format!(
                "{} layers, but the *.safetensors files hold only {} tensors in all",
                config.layers,
                index.len()
            ),
        });
    }
    let layout = hf_layout(&config);
    // Every tensor present with its shape, before the arena is allocated.
    let mut views = Vec::with_capacity(layout.len());
    for info in layout.tensors() {
        let Some((file, view)) = index.get(&info.name) else {
            return Err(Error::MissingTensor { path: dir.to_path_buf(), tensor: info.name.clone() });
        };
        let path = &files[*file];
        if view.shape() != info.shape.as_slice() {
            return Err(Error::TensorShape {
                path: path.clone(),
                tensor: info.name.clone(),
                expected: info.shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        views.push((path, view));
    }
    let mut data = vec![0f32; layout.total()];
    let mut rest: &mut [f32] = &mut data;
    for (info, (path, view)) in layout.tensors().iter().zip(views) {
        let (out, tail) = std::mem::take(&mut rest).split_at_mut(info.len);
        rest = tail;
        decode_into(path, &info.name, view, out)?;
    }
    Ok((config, layout, data))
}

/// Converts one stored tensor to f32 (little-endian F32, F16 or BF16) with the GGUF reader's
/// converters, which also reject NaN and infinite values ([`Error::NonFiniteWeight`]).
fn decode_into(path: &Path, name: &str, view: &safetensors::tensor::TensorView<'_>, out: &mut [f32]) -> Result<()> {
    use crate::model::quant::{self, GgmlType};
    use safetensors::Dtype;
    let ty = match view.dtype() {
        Dtype::F32 => GgmlType::F32,
        Dtype::F16 => GgmlType::F16,
        Dtype::BF16 => GgmlType::BF16,
        other => {
            return Err(Error::UnsupportedTensorType {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                found: format!("{other:?}"),
            })
        }
    };
    quant::dequantize(ty, view.data(), out, path, name)
}

/// Writes `params` as a safetensors file of F32 tensors with HF names and metadata
/// `{"format": "pt"}`; `lm_head.weight` is left out when `tied`. Tensors appear in arena order and
/// the header is built in that order too, so the same θ always gives the same bytes. Atomic.
pub fn write(path: &Path, params: &Params, tied: bool) -> Result<()> {
    let layout = params.layout();
    let tensors: Vec<usize> =
        (0..layout.len()).filter(|&id| !(tied && layout.info(id).name == "lm_head.weight")).collect();

    // Header: {"__metadata__":{"format":"pt"},"<name>":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},..}
    let mut header = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    let mut offset = 0usize;
    for &id in &tensors {
        let info = layout.info(id);
        let end = offset + 4 * info.len;
        let name = serde_json::to_string(&info.name).expect("a string serialises");
        let shape: Vec<String> = info.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            r#",{name}:{{"dtype":"F32","shape":[{}],"data_offsets":[{offset},{end}]}}"#,
            shape.join(",")
        ));
        offset = end;
    }
    header.push('}');
    // The data must start 8-byte aligned: pad the header with spaces.
    while header.len() % 8 != 0 {
        header.push(' ');
    }

    write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for &id in &tensors {
            write_f32_le(w, params.tensor(id))?;
        }
        Ok(())
    })
}

/// Writes `xs` as little-endian f32 bytes.
pub(crate) fn write_f32_le(w: &mut impl Write, xs: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4 * 8192);
    for chunk in xs.chunks(8192) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// `config.json` for `config`, as transformers' LlamaConfig, MistralConfig, Qwen2Config and
/// Qwen3Config read it (the 4.x spelling, `rope_theta` + `rope_scaling`, which 5.x reads too).
/// RoPE factors read from a GGUF (`RopeScaling::FreqFactors`) have no HF spelling: an error.
pub fn hf_config_json(config: &ModelConfig, bos: Option<u32>, eos: Option<u32>) -> Result<serde_json::Value> {
    let class = match config.hf_model_type() {
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        "mistral" => "MistralForCausalLM",
        "gemma3_text" => "Gemma3ForCausalLM",
        _ => "LlamaForCausalLM",
    };
    let rope_scaling = match &config.rope_scaling {
        None => serde_json::Value::Null,
        &Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context }) => {
            serde_json::json!({
                "rope_type": "llama3",
                "factor": factor as f64,
                "low_freq_factor": low_freq_factor as f64,
                "high_freq_factor": high_freq_factor as f64,
                "original_max_position_embeddings": original_context,
            })
        }
        &Some(RopeScaling::Linear { factor }) => serde_json::json!({"rope_type": "linear", "factor": factor as f64}),
        Some(RopeScaling::FreqFactors(_)) => {
            return Err(Error::BadModelConfig {
                field: "rope_scaling",
                problem: "the RoPE factors came from a GGUF `rope_freqs.weight`, which keeps no llama3 parameters \
                          for a HF config.json; export this model as GGUF instead"
                    .into(),
            })
        }
    };
    let mut v = serde_json::json!({
        "architectures": [class],
        "model_type": config.hf_model_type(),
        "hidden_size": config.hidden,
        "intermediate_size": config.ffn,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab,
        "max_position_embeddings": config.context,
        "rope_theta": config.rope_theta as f64,
        "rms_norm_eps": config.rms_eps as f64,
        "tie_word_embeddings": config.tied_embeddings,
        "torch_dtype": "float32",
        "rope_scaling": rope_scaling,
    });
    let obj = v.as_object_mut().expect("an object");
    if let Some(g) = &config.gemma {
        let types: Vec<&str> =
            g.sliding_layers.iter().map(|&s| if s { "sliding_attention" } else { "full_attention" }).collect();
        obj.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
        obj.insert("query_pre_attn_scalar".into(), (g.query_pre_attn_scalar as f64).into());
        obj.insert("rope_local_base_freq".into(), (g.local_rope_theta as f64).into());
        obj.insert("sliding_window".into(), config.sliding_window.into());
        obj.insert("layer_types".into(), types.into());
        obj.insert("attention_bias".into(), false.into());
    } else {
        obj.insert("hidden_act".into(), "silu".into());
    }
    match config.hf_model_type() {
        "gemma3_text" => {}
        "qwen2" | "qwen3" => {
            obj.insert("use_sliding_window".into(), false.into());
            if config.architecture == "qwen3" {
                obj.insert("attention_bias".into(), config.qkv_bias.into());
            }
        }
        "mistral" => {
            obj.insert("sliding_window".into(), config.sliding_window.into());
        }
        _ => {
            obj.insert("attention_bias".into(), config.qkv_bias.into());
            obj.insert("mlp_bias".into(), false.into());
        }
    }
    if let Some(b) = bos {
        obj.insert("bos_token_id".into(), b.into());
    }
    if let Some(e) = eos {
        obj.insert("eos_token_id".into(), e.into());
    }
    Ok(v)
}

/// Writes a directory that HF `transformers` loads with `from_pretrained(dir)`:
/// `model.safetensors` (F32), `config.json`, and, when given, `tokenizer.json`,
/// `tokenizer_config.json` (special tokens, `add_bos_token`, `chat_template`) and
/// `generation_config.json` (BOS/EOS, stop tokens as `eos_token_id`). Every file is written
/// atomically; the directory is created if needed.
pub fn write_hf_dir(
    dir: &Path,
    params: &Params,
    config: &ModelConfig,
    tokenizer: Option<&Tokenizer>,
    chat: Option<&ChatTemplate>,
) -> Result<()> {
    // Everything that can be refused is checked before the first byte is written.
    let (bos, eos) = tokenizer.map(|t| (t.bos, Some(t.eos))).unwrap_or((None, None));
    let config_json = hf_config_json(config, bos, eos)?;
    std::fs::create_dir_all(dir).with_path(dir)?;
    check_layout(dir, params.layout(), config)?;
    write(&dir.join("model.safetensors"), params, config.tied_embeddings)?;
    write_json(&dir.join("config.json"), &config_json)?;

    if let Some(tok) = tokenizer {
        let json = tok
            .hf()
            .to_string(false)
            .map_err(|e| Error::Tokenizer { path: dir.join("tokenizer.json"), problem: format!("serialising: {e}") })?;
        write_atomic(&dir.join("tokenizer.json"), |w| w.write_all(json.as_bytes()))?;

        let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
        let mut tc = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": tok.add_bos,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": config.context,
        });
        let obj = tc.as_object_mut().expect("an object");
        if let Some(b) = name(tok.bos) {
            obj.insert("bos_token".into(), b.into());
        }
        if let Some(e) = name(Some(tok.eos)) {
            obj.insert("eos_token".into(), e.clone().into());
            obj.insert("pad_token".into(), e.into());
        }
        if let Some(c) = chat {
            obj.insert("chat_template".into(), c.source.clone().into());
        }
        write_json(&dir.join("tokenizer_config.json"), &tc)?;

        let mut gc = serde_json::json!({ "eos_token_id": tok.stop_tokens, "pad_token_id": tok.eos });
        if let Some(b) = tok.bos {
            gc.as_object_mut().expect("an object").insert("bos_token_id".into(), b.into());
        }
        write_json(&dir.join("generation_config.json"), &gc)?;
    }
    Ok(())
}

/// `params` must hold exactly the tensors [`hf_tensor_specs`] lists for `config` (any order).
fn check_layout(dir: &Path, layout: &Arc<Layout>, config: &ModelConfig) -> Result<()> {
    for (name, shape) in hf_tensor_specs(config) {
        let Some(id) = layout.id(&name) else {
            return Err(Error::MissingTensor { path: dir.to_path_buf(), tensor: name });
        };
        if layout.info(id).shape != shape {
            return Err(Error::TensorShape {
                path: dir.to_path_buf(),
                tensor: name,
                expected: shape,
                found: layout.info(id).shape.clone(),
            });
        }
    }
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    write_atomic(path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_config(tied: bool, bias: bool) -> ModelConfig {
        ModelConfig {
            architecture: if bias { "qwen2" } else { "llama" }.into(),
            hidden: 8,
            ffn: 12,
            layers: 2,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            vocab: 10,
            context: 64,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            tied_embeddings: tied,
            qkv_bias: bias,
            qk_norm: false,
            rope_scaling: None,
            sliding_window: None,
            gemma: None,
        }
    }

    fn filled(config: &ModelConfig) -> Params {
        let layout = Arc::new(hf_layout(config));
        let n = layout.total();
        Params::from_vec(layout, (0..n).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect())
    }

    #[test]
    fn write_then_read_round_trips_bit_exactly() {
        for (tied, bias) in [(true, false), (false, true)] {
            let config = tiny_config(tied, bias);
            let params = filled(&config);
            let dir = tempfile::tempdir().unwrap();
            write_hf_dir(dir.path(), &params, &config, None, None).unwrap();
            let (c2, l2, d2) = read_dir(dir.path()).unwrap();
            assert_eq!(c2, config);
            assert_eq!(&l2, params.layout().as_ref());
            assert_eq!(d2, params.data());
        }
    }

    #[test]
    fn same_params_same_bytes_and_header_is_aligned() {
        let config = tiny_config(false, false);
        let params = filled(&config);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        write(&a, &params, false).unwrap();
        write(&b, &params, false).unwrap();
        let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(ba, bb);
        let n = u64::from_le_bytes(ba[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert_eq!(ba.len(), 8 + n + 4 * params.layout().total());
        let st = safetensors::SafeTensors::deserialize(&ba).unwrap();
        assert_eq!(st.len(), params.layout().len());
        // Tied: the head is not written.
        write(&a, &params, true).unwrap();
        let ba = std::fs::read(&a).unwrap();
        let st = safetensors::SafeTensors::deserialize(&ba).unwrap();
        assert!(st.tensor("lm_head.weight").is_err());
        assert_eq!(st.len(), params.layout().len() - 1);
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn f16_and_bf16_shards_are_read_and_errors_name_the_tensor() {
        let config = tiny_config(true, false);
        let specs = hf_tensor_specs(&config);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), hf_config_json(&config, None, None).unwrap().to_string())
            .unwrap();
        // Two shards: the first half of the tensors in F16, the rest in BF16; value 0.25 · (i % 8).
        let value = |i: usize| 0.25 * (i % 8) as f32;
        let half_n = specs.len() / 2;
        let shard = |range: std::ops::Range<usize>, bf16: bool| -> Vec<u8> {
            let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = specs[range]
                .iter()
                .map(|(name, shape)| {
                    let n: usize = shape.iter().product();
                    let bytes = (0..n)
                        .flat_map(|i| {
                            if bf16 {
                                half::bf16::from_f32(value(i)).to_le_bytes()
                            } else {
                                half::f16::from_f32(value(i)).to_le_bytes()
                            }
                        })
                        .collect();
                    (name.clone(), shape.clone(), bytes)
                })
                .collect();
            let dtype = if bf16 { safetensors::Dtype::BF16 } else { safetensors::Dtype::F16 };
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
                .iter()
                .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()))
                .collect();
            safetensors::serialize(views, None).unwrap()
        };
        std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), shard(0..half_n, false)).unwrap();
        std::fs::write(dir.path().join("model-00002-of-00002.safetensors"), shard(half_n..specs.len(), true)).unwrap();
        let (c, layout, data) = read_dir(dir.path()).unwrap();
        assert!(c.tied_embeddings);
        for info in layout.tensors() {
            for (i, &x) in data[info.range()].iter().enumerate() {
                assert_eq!(x, value(i), "{}[{i}]", info.name);
            }
        }
        // Drop the second shard: a tensor goes missing, and the error names it.
        std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
        let e = read_dir(dir.path()).unwrap_err();
        assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    }

    #[test]
    fn config_defaults_and_rejections() {
        let p = Path::new("config.json");
        let hf: HfConfig = serde_json::from_str(
            r#"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,
                "num_attention_heads":9,"num_key_value_heads":3,"vocab_size":49152,"rope_theta":100000.0,
                "rms_norm_eps":1e-5,"max_position_embeddings":8192,"tie_word_embeddings":true}"#,
        )
        .unwrap();
        let c = hf.resolve(p, false).unwrap();
        assert_eq!((c.head_dim, c.kv_heads, c.context, c.qkv_bias, c.tied_embeddings), (64, 3, 8192, false, true));
        assert_eq!(c.rope_theta, 100000.0);
        let hf: HfConfig = serde_json::from_str(r#"{"model_type":"gpt_neox","hidden_size":8}"#).unwrap();
        assert!(matches!(hf.resolve(p, true), Err(Error::UnsupportedArchitecture { .. })));
        let hf: HfConfig = serde_json::from_str(r#"{"model_type":"llama","num_attention_heads":2}"#).unwrap();
        let e = hf.resolve(p, true).unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }

    /// RoPE and family fields in both transformers spellings; what this forward does not compute
    /// is refused, naming the field.
    #[test]
    fn rope_and_family_fields_are_read_or_refused_by_name() {
        let p = Path::new("config.json");
        let base =
            r#""hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":300"#;
        let resolve =
            |extra: &str| serde_json::from_str::<HfConfig>(&format!("{{{base},{extra}}}")).unwrap().resolve(p, true);
        let llama3 =
            RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192 };
        // transformers 4.x: rope_theta + rope_scaling.
        let c = resolve(
            r#""model_type":"llama","rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,
               "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        )
        .unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling.as_ref()), (500000.0, Some(&llama3)));
        // transformers 5: rope_parameters holding both.
        let c = resolve(
            r#""model_type":"llama","rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,
               "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        )
        .unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling.as_ref()), (500000.0, Some(&llama3)));
        let c =
            resolve(r#""model_type":"qwen3","rope_parameters":{"rope_type":"default","rope_theta":1e6},"head_dim":32"#)
                .unwrap();
        assert!(c.qk_norm && !c.qkv_bias && c.rope_scaling.is_none() && c.rope_theta == 1e6 && c.head_dim == 32);
        let c = resolve(r#""model_type":"mistral","sliding_window":4096"#).unwrap();
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(resolve(r#""model_type":"mistral","sliding_window":null"#).unwrap().sliding_window, None);
        // Refusals name the field.
        for (extra, field) in [
            (r#""model_type":"llama","rope_scaling":{"rope_type":"yarn","factor":4.0}"#, "rope_scaling"),
            (r#""model_type":"llama","rope_parameters":{"rope_type":"dynamic","factor":2.0}"#, "rope_parameters"),
            (r#""model_type":"gemma3_text","final_logit_softcapping":30.0"#, "final_logit_softcapping"),
            (r#""model_type":"gemma3_text","layer_types":["sliding_attention","chunked_attention"]"#, "layer_types"),
            (
                r#""model_type":"gemma3_text","rope_parameters":{"full_attention":{"rope_type":"default"},
                   "sliding_attention":{"rope_type":"linear","factor":2.0}}"#,
                "rope_parameters.sliding_attention",
            ),
            (r#""model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8.0}"#, "rope_scaling"),
            (r#""model_type":"qwen2","use_sliding_window":true,"sliding_window":4096"#, "use_sliding_window"),
            (r#""model_type":"qwen3","layer_types":["full_attention","sliding_attention"]"#, "layer_types"),
            (r#""model_type":"llama","mlp_bias":true"#, "mlp_bias"),
            (r#""model_type":"llama","hidden_act":"gelu_pytorch_tanh""#, "hidden_act"),
        ] {
            let e = resolve(extra).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{extra}: {e}");
        }
        let e = resolve(r#""model_type":"gemma3""#).unwrap_err().to_string();
        assert!(e.contains("multimodal") && e.contains("text_config"), "{e}");
        let c = resolve(r#""model_type":"llama","rope_scaling":{"type":"linear","factor":4.0}"#).unwrap();
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 4.0 }));
        // Gemma 3 as transformers 4.x wrote it: the pattern, two bases, global linear scaling.
        let c = resolve(
            r#""model_type":"gemma3_text","sliding_window_pattern":2,"rope_theta":1e6,
               "rope_local_base_freq":1e4,"rope_scaling":{"rope_type":"linear","factor":8.0},"sliding_window":512"#,
        )
        .unwrap();
        let g = c.gemma.as_ref().unwrap();
        assert_eq!(g.sliding_layers, [true, false]);
        assert_eq!((g.local_rope_theta, g.query_pre_attn_scalar, c.head_dim), (1e4, 256.0, 256));
        assert_eq!(
            (c.rope_theta, c.rope_scaling.clone(), c.sliding_window),
            (1e6, Some(RopeScaling::Linear { factor: 8.0 }), Some(512))
        );
    }
}
