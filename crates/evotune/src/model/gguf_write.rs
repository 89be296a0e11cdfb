//! GGUF writer: exports θ as a llama.cpp-loadable GGUF v3 file (F32, F16 or Q8_0).
//!
//! File layout (all little-endian):
//! ```text
//! "GGUF" u32:3  u64:n_tensors  u64:n_kv
//! n_kv ×      key: string, u32 type, value            (string = u64 len + UTF-8 bytes)
//! n_tensors × name: string, u32 n_dims, u64 ne[n_dims] (ne0 = innermost = HF `in`), u32 ggml type,
//!             u64 offset (from the data start, a multiple of 32)
//! zero padding to 32, then each tensor's bytes, each padded to 32
//! ```
//! Metadata is copied from the source model (tokenizer, chat template, general.*), the
//! architecture hyper-parameters are rewritten from the [`ModelConfig`], and `general.file_type`
//! states the export type. Tensors get llama.cpp names (`blk.3.attn_q.weight`).
//!
//! For arch `llama`, llama.cpp's converter permutes the rows of Q and K (weights and biases) so
//! that RoPE pairs are adjacent; the arena holds HF's rotate-half order, so the permutation is re-applied here:
//! per head, rows (2, Dh/2) → (Dh/2, 2), i.e. GGUF row `h·Dh + 2i + j` = HF row `h·Dh + j·Dh/2 + i`.
//! `qwen2`, `qwen3` and `gemma3` use NeoX RoPE in llama.cpp and are written unpermuted. Gemma's
//! norm weights are written as 1 + w (llama.cpp's converter folds the 1 of its RMSNorm in);
//! Llama-3 RoPE scaling becomes a `rope_freqs.weight` tensor of per-frequency divisors.
//!
//! Q8_0 (ggml's `quantize_row_q8_0_ref`): blocks of 32 along a row, d = max|x|/127 stored as f16,
//! q = round(x/d) as i8 (computed as x·(1/d) with d in f32, rounding half away from zero). 1-D
//! tensors (norms, biases) stay F32, and a matrix whose row length is not a multiple of 32 is
//! written F16, as llama.cpp does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::model::gguf::MetaValue;
use crate::model::{ModelConfig, Params, RopeScaling, TensorKind};

/// The precision of an exported GGUF's matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExportType {
    F32,
    F16,
    Q8_0,
}

impl ExportType {
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32` = 0, `MOSTLY_F16` = 1, `MOSTLY_Q8_0` = 7).
    pub fn file_type(self) -> u32 {
        match self {
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for ExportType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(ExportType::F32),
            "f16" => Ok(ExportType::F16),
            "q8_0" | "q8" => Ok(ExportType::Q8_0),
            _ => Err(format!("export type `{s}`: expected f32, f16 or q8_0")),
        }
    }
}

/// ggml tensor types written here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

impl GgmlType {
    fn bytes(self, n: usize) -> usize {
        match self {
            GgmlType::F32 => 4 * n,
            GgmlType::F16 => 2 * n,
            GgmlType::Q8_0 => n / Q8_0_BLOCK * Q8_0_BYTES,
        }
    }
}

/// Elements per Q8_0 block, and its bytes (f16 scale + 32 × i8).
pub const Q8_0_BLOCK: usize = 32;
const Q8_0_BYTES: usize = 2 + Q8_0_BLOCK;
const ALIGNMENT: usize = 32;
const GGUF_VERSION: u32 = 3;

/// llama.cpp's name for an HF tensor name; `None` for a name outside the llama family.
pub fn gguf_tensor_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let short = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}"))
}

/// llama.cpp's name for tensor `hf` of a model of `config`: [`gguf_tensor_name`], except Gemma's
/// norms around attention and MLP, which llama.cpp names after their place.
pub fn gguf_tensor_name_in(config: &ModelConfig, hf: &str) -> Option<String> {
    if config.gemma.is_some() {
        let gemma = [
            ("post_attention_layernorm.weight", "post_attention_norm.weight"),
            ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
            ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
        ];
        for (h, g) in gemma {
            if let Some(prefix) = hf.strip_suffix(h) {
                let layer: usize = prefix.strip_prefix("model.layers.")?.strip_suffix('.')?.parse().ok()?;
                return Some(format!("blk.{layer}.{g}"));
            }
        }
    }
    gguf_tensor_name(hf)
}

/// HF rotate-half rows → llama.cpp interleaved rows, per head: (2, Dh/2) → (Dh/2, 2).
/// `w` is (heads·Dh, cols) row-major.
pub fn permute_qk_for_gguf(w: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = (h * head_dim + 2 * i + j) * cols;
                let src = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

/// The inverse of [`permute_qk_for_gguf`]: llama.cpp interleaved rows → HF rotate-half rows.
pub fn unpermute_qk_from_gguf(w: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

/// Q8_0 encoding of `x` (length a multiple of 32): per block d = max|x|/127 (f16), q = round(x/d).
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    debug_assert_eq!(x.len() % Q8_0_BLOCK, 0);
    let mut out = vec![0u8; x.len() / Q8_0_BLOCK * Q8_0_BYTES];
    out.par_chunks_mut(Q8_0_BYTES).zip(x.par_chunks(Q8_0_BLOCK)).for_each(|(o, b)| {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        o[..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for (q, v) in o[2..].iter_mut().zip(b) {
            *q = ((v * id).round() as i8) as u8;
        }
    });
    out
}

/// Dequantizes Q8_0 bytes (the inverse of [`quantize_q8_0`] up to rounding): x = d·q.
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q8_0_BYTES)
        .flat_map(|blk| {
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            blk[2..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

/// Where an entry's values come from.
enum EntryData {
    /// The arena tensor with this id.
    Tensor(usize),
    /// Values that are not a weight (`rope_freqs.weight`).
    Values(Vec<f32>),
}

/// One tensor as it will be written.
struct Entry {
    gguf_name: String,
    /// ggml order: ne0 first (HF shape reversed).
    ne: Vec<u64>,
    ty: GgmlType,
    data: EntryData,
    /// Q/K of a llama model: permute rows with this many heads.
    permute_heads: Option<usize>,
    offset: usize,
}

/// Writes θ as a GGUF v3 file; see the module doc for the layout, names, Q/K permutation and
/// quantization. `source_metadata` is the model's original metadata (tokenizer, chat template,
/// general.*; empty for a HF source, which then yields a GGUF without tokenizer). Atomic.
pub fn write_gguf(
    path: &Path,
    params: &Params,
    config: &ModelConfig,
    source_metadata: &BTreeMap<String, MetaValue>,
    dtype: ExportType,
) -> Result<()> {
    let layout = params.layout();
    let corrupt = |problem: String| Error::CorruptModel { path: path.to_path_buf(), problem };
    if config.gemma.as_ref().is_some_and(|g| gemma_window_pattern(&g.sliding_layers).is_none()) {
        return Err(Error::BadModelConfig {
            field: "layer_types",
            problem: "these sliding and global layers follow no `(i + 1) % p` pattern, which is all a GGUF can say"
                .into(),
        });
    }

    // Tensor table.
    let mut entries = Vec::with_capacity(layout.len());
    let mut offset = 0usize;
    for (id, info) in layout.tensors().iter().enumerate() {
        if config.tied_embeddings && info.kind == TensorKind::LmHead {
            continue;
        }
        let gguf_name = gguf_tensor_name_in(config, &info.name)
            .ok_or_else(|| corrupt(format!("tensor `{}` has no llama.cpp name", info.name)))?;
        let ty = match (dtype, info.shape.len()) {
            (_, 1) | (ExportType::F32, _) => GgmlType::F32,
            (ExportType::F16, _) => GgmlType::F16,
            (ExportType::Q8_0, _) if info.shape.last().is_some_and(|&c| c % Q8_0_BLOCK == 0) => GgmlType::Q8_0,
            (ExportType::Q8_0, _) => GgmlType::F16,
        };
        // llama.cpp's converter permutes Q and K weights and their biases (if any).
        let permute_heads = match (config.gguf_qk_permuted(), info.kind) {
            (true, TensorKind::Q | TensorKind::QBias) => Some(config.heads),
            (true, TensorKind::K | TensorKind::KBias) => Some(config.kv_heads),
            _ => None,
        };
        if let Some(h) = permute_heads {
            if info.shape.is_empty() || info.shape[0] != h * config.head_dim || !config.head_dim.is_multiple_of(2) {
                let mut expected = info.shape.clone();
                if let Some(rows) = expected.first_mut() {
                    *rows = h * config.head_dim;
                }
                return Err(Error::TensorShape {
                    path: path.to_path_buf(),
                    tensor: info.name.clone(),
                    expected,
                    found: info.shape.clone(),
                });
            }
        }
        let ne = info.shape.iter().rev().map(|&d| d as u64).collect();
        entries.push(Entry { gguf_name, ne, ty, data: EntryData::Tensor(id), permute_heads, offset });
        offset = align(offset + ty.bytes(info.len));
    }
    // Llama-3 RoPE scaling travels as llama.cpp's converter writes it: per-frequency divisors
    // (the last entry, so no offset follows it).
    if let Some(scaling @ (RopeScaling::Llama3 { .. } | RopeScaling::FreqFactors(_))) = &config.rope_scaling {
        let factors = scaling.freq_factors(&config.rope_inv_freq_unscaled());
        let ne = vec![factors.len() as u64];
        let data = EntryData::Values(factors);
        entries.push(Entry {
            gguf_name: "rope_freqs.weight".into(),
            ne,
            ty: GgmlType::F32,
            data,
            permute_heads: None,
            offset,
        });
    }

    let metadata = export_metadata(config, source_metadata, dtype);

    // Header, metadata and tensor infos go to one buffer (small), then the data streams.
    let mut head: Vec<u8> = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    head.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        put_string(&mut head, key);
        put_value(&mut head, value).map_err(|problem| Error::BadMetadata {
            path: path.to_path_buf(),
            key: key.clone(),
            problem,
        })?;
    }
    for e in &entries {
        put_string(&mut head, &e.gguf_name);
        head.extend_from_slice(&(e.ne.len() as u32).to_le_bytes());
        for &d in &e.ne {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&(e.ty as u32).to_le_bytes());
        head.extend_from_slice(&(e.offset as u64).to_le_bytes());
    }
    head.resize(align(head.len()), 0);

    write_atomic(path, |w| {
        w.write_all(&head)?;
        let mut written = 0usize;
        for e in &entries {
            let transformed; // Q/K rows permuted, or Gemma's norms as 1 + w
            let x: &[f32] = match (&e.data, e.permute_heads) {
                (EntryData::Values(v), _) => v,
                (&EntryData::Tensor(id), Some(h)) => {
                    let cols = layout.info(id).shape.get(1).copied().unwrap_or(1);
                    transformed = permute_qk_for_gguf(params.tensor(id), h, config.head_dim, cols);
                    &transformed
                }
                (&EntryData::Tensor(id), None) if config.gguf_norm_shifted(&layout.info(id).name) => {
                    transformed = params.tensor(id).iter().map(|w| w + 1.0).collect();
                    &transformed
                }
                (&EntryData::Tensor(id), None) => params.tensor(id),
            };
            w.write_all(&vec![0u8; e.offset - written])?;
            let bytes = encode(x, e.ty);
            w.write_all(&bytes)?;
            written = e.offset + bytes.len();
        }
        w.write_all(&vec![0u8; align(written) - written])
    })
}

/// The exported metadata: the source's, minus `general.alignment` (32, the default, is used),
/// with `general.architecture`, the architecture hyper-parameters and `general.file_type` written
/// from `config`. `general.architecture` comes first (readers print keys in file order).
fn export_metadata(
    config: &ModelConfig,
    source: &BTreeMap<String, MetaValue>,
    dtype: ExportType,
) -> Vec<(String, MetaValue)> {
    let a = &config.gguf_architecture().to_string();
    let u = |x: usize| MetaValue::U32(x as u32);
    let mut m = source.clone();
    m.remove("general.alignment");
    let mut set = |k: String, v: MetaValue| {
        m.insert(k, v);
    };
    set(format!("{a}.block_count"), u(config.layers));
    set(format!("{a}.context_length"), u(config.context));
    set(format!("{a}.embedding_length"), u(config.hidden));
    set(format!("{a}.feed_forward_length"), u(config.ffn));
    set(format!("{a}.attention.head_count"), u(config.heads));
    set(format!("{a}.attention.head_count_kv"), u(config.kv_heads));
    set(format!("{a}.rope.freq_base"), MetaValue::F32(config.rope_theta));
    set(format!("{a}.rope.dimension_count"), u(config.head_dim));
    set(format!("{a}.attention.layer_norm_rms_epsilon"), MetaValue::F32(config.rms_eps));
    set(format!("{a}.vocab_size"), u(config.vocab));
    if config.head_dim * config.heads != config.hidden {
        set(format!("{a}.attention.key_length"), u(config.head_dim));
        set(format!("{a}.attention.value_length"), u(config.head_dim));
    }
    if let Some(w) = config.sliding_window {
        set(format!("{a}.attention.sliding_window"), u(w));
    }
    if let Some(RopeScaling::Linear { factor }) = config.rope_scaling {
        set(format!("{a}.rope.scaling.type"), MetaValue::String("linear".into()));
        set(format!("{a}.rope.scaling.factor"), MetaValue::F32(factor));
    }
    if let Some(g) = &config.gemma {
        // What llama.cpp hard-codes for Gemma 3, written for readers that take them from keys
        // (this one): the window pattern, the sliding layers' RoPE base, the score scale.
        if let Some(p) = gemma_window_pattern(&g.sliding_layers) {
            set(format!("{a}.attention.sliding_window_pattern"), u(p));
        }
        set(format!("{a}.rope.freq_base_swa"), MetaValue::F32(g.local_rope_theta));
        set(format!("{a}.attention.scale"), MetaValue::F32(config.attention_scale()));
        set(format!("{a}.attention.key_length"), u(config.head_dim));
        set(format!("{a}.attention.value_length"), u(config.head_dim));
    }
    set("general.file_type".into(), MetaValue::U32(dtype.file_type()));
    if dtype == ExportType::Q8_0 {
        set("general.quantization_version".into(), MetaValue::U32(2));
    }
    m.remove("general.architecture");
    let mut out = vec![("general.architecture".to_string(), MetaValue::String(a.clone()))];
    out.extend(m);
    out
}

/// The p with layer i global iff (i + 1) % p = 0, if the layers follow one.
fn gemma_window_pattern(sliding: &[bool]) -> Option<usize> {
    (1..=sliding.len() + 1).find(|&p| sliding.iter().enumerate().all(|(i, &s)| s == ((i + 1) % p != 0)))
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn encode(x: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => quantize_q8_0(x),
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// GGUF value type ids.
fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(buf: &mut Vec<u8>, v: &MetaValue) -> std::result::Result<(), String> {
    buf.extend_from_slice(&type_id(v).to_le_bytes());
    put_payload(buf, v)
}

/// A value without its type id (array elements carry the type once, in the array header).
fn put_payload(buf: &mut Vec<u8>, v: &MetaValue) -> std::result::Result<(), String> {
    match v {
        MetaValue::U8(x) => buf.push(*x),
        MetaValue::I8(x) => buf.push(*x as u8),
        MetaValue::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => buf.push(*x as u8),
        MetaValue::String(s) => put_string(buf, s),
        MetaValue::Array(items) => {
            // An empty array has no element to take the type from; u32 is as good as any.
            let elem = items.first().map(type_id).unwrap_or(4);
            if let Some((i, bad)) = items.iter().enumerate().find(|(_, x)| type_id(x) != elem) {
                return Err(format!("array mixes types: element {i} is type {} after type {elem}", type_id(bad)));
            }
            buf.extend_from_slice(&elem.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_payload(buf, x)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_matches_hand_computed_block() {
        // max |x| = 127 ⇒ d = 1, q = round(x): 0.5 → 1 (half away from zero), -2.5 → -3.
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -2.5;
        x[3] = -127.0;
        let q = quantize_q8_0(&x);
        assert_eq!(q.len(), 34);
        assert_eq!(half::f16::from_le_bytes([q[0], q[1]]).to_f32(), 1.0);
        assert_eq!(&q[2..6], &[127u8, 1, (-3i8) as u8, (-127i8) as u8]);
        assert_eq!(dequantize_q8_0(&q)[..4], [127.0, 1.0, -3.0, -127.0]);
        // An all-zero block has d = 0 and decodes to zeros.
        assert!(dequantize_q8_0(&quantize_q8_0(&[0.0; 32])).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn qk_permutation_round_trips_and_interleaves() {
        // 2 heads of Dh = 4, 1 column: HF rows per head [a0 a1 b0 b1] → GGUF [a0 b0 a1 b1].
        let w: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let p = permute_qk_for_gguf(&w, 2, 4, 1);
        assert_eq!(p, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(unpermute_qk_from_gguf(&p, 2, 4, 1), w);
        let w: Vec<f32> = (0..64 * 3).map(|v| v as f32).collect();
        assert_eq!(unpermute_qk_from_gguf(&permute_qk_for_gguf(&w, 2, 32, 3), 2, 32, 3), w);
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(gguf_tensor_name("model.layers.12.mlp.down_proj.weight").unwrap(), "blk.12.ffn_down.weight");
        assert_eq!(gguf_tensor_name("model.layers.0.self_attn.k_proj.bias").unwrap(), "blk.0.attn_k.bias");
        assert_eq!(gguf_tensor_name("model.embed_tokens.weight").unwrap(), "token_embd.weight");
        assert_eq!(gguf_tensor_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_tensor_name("model.layers.x.mlp.up_proj.weight").is_none());
        assert!(gguf_tensor_name("vision_tower.weight").is_none());
    }
}
