//! GGUF export, read back with candle's GGUF reader (an implementation independent of ours):
//! names, shapes, metadata and values for F32 (exact), F16 (exact f16 rounding) and Q8_0 (bytes
//! equal to candle's own Q8_0 quantizer, values within half a quantization step).
//!
//! `real_model_*` tests use the default model (`$EVOTUNE_MODEL` or
//! ~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf) and skip with a note when it is absent. With
//! `EVOTUNE_EXPORT_DIR` set they also leave `smollm2-f32.gguf`, `smollm2-q8_0.gguf` and an HF
//! directory `smollm2-hf/` there, for `scripts/check_gguf_export.py` and `scripts/check_hf_export.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use evotune::model::gguf::MetaValue;
use evotune::model::gguf_write::{gguf_tensor_name, unpermute_qk_from_gguf, write_gguf, ExportType};
use evotune::model::safetensors::{hf_layout, hf_tensor_specs, read_dir, write_hf_dir};
use evotune::model::{ModelConfig, Params, TensorKind};
use evotune::tokenizer::{ChatTemplate, Tokenizer};

fn to_meta(v: &gguf_file::Value) -> MetaValue {
    use gguf_file::Value as V;
    match v {
        V::U8(x) => MetaValue::U8(*x),
        V::I8(x) => MetaValue::I8(*x),
        V::U16(x) => MetaValue::U16(*x),
        V::I16(x) => MetaValue::I16(*x),
        V::U32(x) => MetaValue::U32(*x),
        V::I32(x) => MetaValue::I32(*x),
        V::U64(x) => MetaValue::U64(*x),
        V::I64(x) => MetaValue::I64(*x),
        V::F32(x) => MetaValue::F32(*x),
        V::F64(x) => MetaValue::F64(*x),
        V::Bool(x) => MetaValue::Bool(*x),
        V::String(x) => MetaValue::String(x.clone()),
        V::Array(x) => MetaValue::Array(x.iter().map(to_meta).collect()),
    }
}

struct Gguf {
    content: gguf_file::Content,
    file: std::fs::File,
}

impl Gguf {
    fn open(path: &Path) -> Gguf {
        let mut file = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        Gguf { content, file }
    }
    fn metadata(&self) -> BTreeMap<String, MetaValue> {
        self.content.metadata.iter().map(|(k, v)| (k.clone(), to_meta(v))).collect()
    }
    fn qtensor(&mut self, name: &str) -> QTensor {
        self.content.tensor(&mut self.file, name, &Device::Cpu).unwrap()
    }
    /// Dequantized, flattened, in the file's row order; with the shape (HF order: out, in).
    fn f32(&mut self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let q = self.qtensor(name);
        let t = q.dequantize(&Device::Cpu).unwrap();
        let shape = t.dims().to_vec();
        (t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), shape)
    }
}

/// A small llama model whose matrices have rows of 32 or 64 (Q8_0-able) except `down`'s 48.
fn tiny_config() -> ModelConfig {
    ModelConfig {
        architecture: "llama".into(),
        hidden: 64,
        ffn: 48,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        vocab: 40,
        context: 128,
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

/// Deterministic, varied values: a hash of the index mapped to [-1, 1), scaled per tensor.
fn synthetic_params(config: &ModelConfig) -> Params {
    let layout = Arc::new(hf_layout(config));
    let mut p = Params::zeros(layout);
    for (t, (info, xs)) in p.tensors_mut().into_iter().enumerate() {
        let scale = 0.02 * (1 + t % 5) as f32;
        for (i, x) in xs.iter_mut().enumerate() {
            let h = ((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((t as u64) << 32))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            *x = ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale;
        }
        if info.kind == TensorKind::AttnNorm {
            xs.iter_mut().for_each(|x| *x += 1.0);
        }
    }
    p
}

fn source_metadata() -> BTreeMap<String, MetaValue> {
    let s = |x: &str| MetaValue::String(x.into());
    let mut m = BTreeMap::new();
    m.insert("general.architecture".into(), s("llama"));
    m.insert("general.name".into(), s("tiny"));
    m.insert("general.alignment".into(), MetaValue::U32(64));
    m.insert("llama.block_count".into(), MetaValue::U32(99)); // stale: must be rewritten
    m.insert("tokenizer.ggml.model".into(), s("gpt2"));
    m.insert("tokenizer.ggml.tokens".into(), MetaValue::Array((0..40).map(|i| s(&format!("t{i}"))).collect()));
    m.insert("tokenizer.ggml.token_type".into(), MetaValue::Array((0..40).map(|_| MetaValue::I32(1)).collect()));
    m.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(false));
    m.insert("tokenizer.chat_template".into(), s("{{ messages }}"));
    m
}

fn u32_meta(m: &BTreeMap<String, MetaValue>, k: &str) -> u32 {
    match m.get(k) {
        Some(MetaValue::U32(x)) => *x,
        other => panic!("{k}: {other:?}"),
    }
}

/// Largest error Q8_0 may make on `block`: half a step d/2 (d = max|x|/127), plus what storing d
/// as f16 costs at the largest code, 127·|d − f16(d)|, plus f32 rounding slack.
fn q8_0_bound(block: &[f32]) -> f32 {
    let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
    let d16 = half::f16::from_f32(d).to_f32();
    d / 2.0 + 127.0 * (d - d16).abs() + 1e-6 * d + 1e-9
}

/// The file's tensor `gguf_name` back in HF row order.
fn read_back_hf(g: &mut Gguf, gguf_name: &str, kind: TensorKind, config: &ModelConfig) -> (Vec<f32>, Vec<usize>) {
    let (x, shape) = g.f32(gguf_name);
    let cols = shape.get(1).copied().unwrap_or(1);
    let llama = config.architecture == "llama";
    let x = match kind {
        TensorKind::Q | TensorKind::QBias if llama => unpermute_qk_from_gguf(&x, config.heads, config.head_dim, cols),
        TensorKind::K | TensorKind::KBias if llama => {
            unpermute_qk_from_gguf(&x, config.kv_heads, config.head_dim, cols)
        }
        _ => x,
    };
    (x, shape)
}

#[test]
fn synthetic_model_round_trips_through_candle() {
    // Plain llama, and llama with q/k/v biases (whose Q/K biases are permuted like the weights).
    let mut with_bias = tiny_config();
    with_bias.qkv_bias = true;
    for config in [tiny_config(), with_bias] {
        synthetic_round_trip(&config);
    }
}

fn synthetic_round_trip(config: &ModelConfig) {
    let config = config.clone();
    let params = synthetic_params(&config);
    let src = source_metadata();
    let dir = tempfile::tempdir().unwrap();

    for ty in [ExportType::F32, ExportType::F16, ExportType::Q8_0] {
        let path = dir.path().join(format!("tiny-{ty:?}-{}.gguf", config.qkv_bias));
        write_gguf(&path, &params, &config, &src, ty).unwrap();
        let mut g = Gguf::open(&path);
        assert!(matches!(g.content.magic, gguf_file::VersionedMagic::GgufV3));
        let m = g.metadata();
        assert_eq!(u32_meta(&m, "general.file_type"), ty.file_type());
        assert_eq!(u32_meta(&m, "llama.block_count"), 2);
        assert_eq!(u32_meta(&m, "llama.attention.head_count_kv"), 2);
        assert_eq!(u32_meta(&m, "llama.rope.dimension_count"), 16);
        assert_eq!(m.get("llama.rope.freq_base"), Some(&MetaValue::F32(10_000.0)));
        assert_eq!(m.get("tokenizer.ggml.tokens"), src.get("tokenizer.ggml.tokens"));
        assert_eq!(m.get("tokenizer.chat_template"), src.get("tokenizer.chat_template"));
        assert_eq!(m.get("general.alignment"), None);
        assert_eq!(g.content.tensor_infos.len(), params.layout().len());

        let mut max_err = 0f32;
        for info in params.layout().tensors() {
            let name = gguf_tensor_name(&info.name).unwrap();
            let stored = g.content.tensor_infos[&name].ggml_dtype;
            let (x, shape) = read_back_hf(&mut g, &name, info.kind, &config);
            assert_eq!(shape, info.shape, "{name}");
            let want = params.get(&info.name).unwrap();
            let expected_type = match (ty, info.shape.len(), info.shape.last().unwrap() % 32) {
                (_, 1, _) | (ExportType::F32, _, _) => GgmlDType::F32,
                (ExportType::Q8_0, _, 0) => GgmlDType::Q8_0,
                _ => GgmlDType::F16,
            };
            assert_eq!(stored, expected_type, "{name}");
            match stored {
                GgmlDType::F32 => assert_eq!(x, want, "{name}"),
                GgmlDType::F16 => {
                    let rounded: Vec<f32> = want.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                    assert_eq!(x, rounded, "{name}");
                }
                GgmlDType::Q8_0 => {
                    // Same bytes as candle's own Q8_0 quantizer on the (GGUF-ordered) data...
                    let mine = g.qtensor(&name).data().unwrap().into_owned();
                    let gguf_order = match info.kind {
                        TensorKind::Q => evotune::model::gguf_write::permute_qk_for_gguf(want, 4, 16, info.shape[1]),
                        TensorKind::K => evotune::model::gguf_write::permute_qk_for_gguf(want, 2, 16, info.shape[1]),
                        _ => want.to_vec(),
                    };
                    let t = Tensor::from_vec(gguf_order, info.shape.as_slice(), &Device::Cpu).unwrap();
                    let theirs = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap().data().unwrap().into_owned();
                    assert_eq!(mine, theirs, "{name}: Q8_0 bytes differ from candle's quantizer");
                    // ...and every value within the Q8_0 error bound of the original.
                    for (b, (got, orig)) in x.chunks(32).zip(want.chunks(32)).enumerate() {
                        let bound = q8_0_bound(orig);
                        for (g1, o1) in got.iter().zip(orig) {
                            let err = (g1 - o1).abs();
                            max_err = max_err.max(err);
                            assert!(err <= bound, "{name} block {b}: {g1} vs {o1} (bound {bound})");
                        }
                    }
                }
                other => panic!("{name}: unexpected type {other:?}"),
            }
        }
        println!(
            "{ty:?}: {} bytes, max |Q8_0 error| {max_err:.3e} (0 when no tensor is Q8_0)",
            std::fs::metadata(&path).unwrap().len()
        );
    }
}

#[test]
fn tied_model_has_no_output_tensor_and_output_is_deterministic() {
    let mut config = tiny_config();
    config.tied_embeddings = true;
    let params = synthetic_params(&config);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    write_gguf(&a, &params, &config, &source_metadata(), ExportType::Q8_0).unwrap();
    write_gguf(&b, &params, &config, &source_metadata(), ExportType::Q8_0).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let g = Gguf::open(&a);
    assert!(!g.content.tensor_infos.contains_key("output.weight"));
    assert!(g.content.tensor_infos.contains_key("token_embd.weight"));
    // Every tensor's data starts 32-byte aligned.
    assert_eq!(g.content.tensor_data_offset % 32, 0);
    assert!(g.content.tensor_infos.values().all(|t| t.offset % 32 == 0));
}

// ---- the real default model ------------------------------------------------------------------

fn model_path() -> Option<PathBuf> {
    evotune::model::fetch::default_model_for_tests()
}

fn config_from_meta(m: &BTreeMap<String, MetaValue>, has_output: bool) -> ModelConfig {
    let a = match m.get("general.architecture") {
        Some(MetaValue::String(s)) => s.clone(),
        other => panic!("general.architecture: {other:?}"),
    };
    let f = |k: &str| match m.get(&format!("{a}.{k}")) {
        Some(MetaValue::F32(x)) => *x,
        other => panic!("{k}: {other:?}"),
    };
    let u = |k: &str| u32_meta(m, &format!("{a}.{k}")) as usize;
    let vocab = match m.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(t)) => t.len(),
        _ => panic!("no tokens"),
    };
    let (hidden, heads) = (u("embedding_length"), u("attention.head_count"));
    ModelConfig {
        architecture: a.clone(),
        hidden,
        ffn: u("feed_forward_length"),
        layers: u("block_count"),
        heads,
        kv_heads: u("attention.head_count_kv"),
        head_dim: hidden / heads,
        vocab,
        context: u("context_length"),
        rope_theta: f("rope.freq_base"),
        rms_eps: f("attention.layer_norm_rms_epsilon"),
        tied_embeddings: !has_output,
        qkv_bias: a == "qwen2",
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    }
}

/// θ0 of a GGUF file in HF names and layout, through candle's dequantizer (test-side loader).
fn load_hf_params(g: &mut Gguf) -> (ModelConfig, Params) {
    let m = g.metadata();
    let config = config_from_meta(&m, g.content.tensor_infos.contains_key("output.weight"));
    let layout = Arc::new(hf_layout(&config));
    let mut p = Params::zeros(layout);
    for (info, xs) in p.tensors_mut() {
        let (x, shape) = read_back_hf(g, &gguf_tensor_name(&info.name).unwrap(), info.kind, &config);
        assert_eq!(shape, info.shape, "{}", info.name);
        xs.copy_from_slice(&x);
    }
    (config, p)
}

#[test]
fn real_model_f32_export_is_bit_exact_and_keeps_metadata() {
    let Some(path) = model_path() else { return };
    let mut src = Gguf::open(&path);
    let (config, params) = load_hf_params(&mut src);
    assert_eq!((config.layers, config.hidden, config.kv_heads, config.vocab), (30, 576, 3, 49152));
    assert!(config.tied_embeddings);
    assert_eq!(hf_tensor_specs(&config).len(), params.layout().len());
    let src_meta = src.metadata();

    let keep = std::env::var_os("EVOTUNE_EXPORT_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("smollm2-f32.gguf");
    write_gguf(&out, &params, &config, &src_meta, ExportType::F32).unwrap();

    let mut back = Gguf::open(&out);
    let m = back.metadata();
    for (k, v) in &src_meta {
        if k != "general.file_type" {
            assert_eq!(m.get(k), Some(v), "metadata `{k}` changed");
        }
    }
    assert_eq!(m.get("general.file_type"), Some(&MetaValue::U32(0)));
    assert_eq!(back.content.tensor_infos.len(), src.content.tensor_infos.len());
    // Every tensor, in the file's own (permuted) order, equals the source's dequantized values.
    let names: Vec<String> = src.content.tensor_infos.keys().cloned().collect();
    for name in names {
        let (a, sa) = src.f32(&name);
        let (b, sb) = back.f32(&name);
        assert_eq!(sa, sb, "{name}");
        assert!(a == b, "{name}: values differ");
    }
    println!(
        "F32 export: {} bytes, {} tensors bit-exact",
        std::fs::metadata(&out).unwrap().len(),
        src.content.tensor_infos.len()
    );

    // Q8_0: within half a step of the f32 values everywhere.
    let out_q = out_dir.join("smollm2-q8_0.gguf");
    write_gguf(&out_q, &params, &config, &src_meta, ExportType::Q8_0).unwrap();
    let mut q = Gguf::open(&out_q);
    let (mut worst, mut worst_steps) = (0f32, 0f32);
    for info in params.layout().tensors() {
        let (x, _) = read_back_hf(&mut q, &gguf_tensor_name(&info.name).unwrap(), info.kind, &config);
        let want = params.tensor(params.layout().id(&info.name).unwrap());
        for (got, orig) in x.chunks(32).zip(want.chunks(32)) {
            let (bound, step) = (q8_0_bound(orig), orig.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0);
            for (g1, o1) in got.iter().zip(orig) {
                let err = (g1 - o1).abs();
                assert!(err <= bound, "{}: {g1} vs {o1} (bound {bound})", info.name);
                worst = worst.max(err);
                if step > 0.0 {
                    worst_steps = worst_steps.max(err / step);
                }
            }
        }
    }
    println!(
        "Q8_0 export: {} bytes, worst error {worst:.3e} = {worst_steps:.3} quantization steps",
        std::fs::metadata(&out_q).unwrap().len()
    );

    // HF directory: read back bit-exactly, with a tokenizer and template that behave the same.
    let tok = Tokenizer::from_gguf(&path, &src_meta).unwrap();
    let chat = ChatTemplate::from_gguf(&path, &src_meta).unwrap();
    let hf_dir = out_dir.join("smollm2-hf");
    write_hf_dir(&hf_dir, &params, &config, Some(&tok), Some(&chat)).unwrap();
    let (c2, l2, d2) = read_dir(&hf_dir).unwrap();
    assert_eq!(c2, config);
    assert_eq!(&l2, params.layout().as_ref());
    assert!(d2 == params.data(), "HF directory weights differ");
    let tok2 = Tokenizer::from_file(&hf_dir.join("tokenizer.json"), &hf_dir).unwrap();
    assert_eq!(
        (tok2.bos, tok2.eos, tok2.add_bos, &tok2.stop_tokens),
        (tok.bos, tok.eos, tok.add_bos, &tok.stop_tokens)
    );
    let text = "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n";
    assert_eq!(tok2.encode(text).unwrap(), tok.encode(text).unwrap());
    let chat2 = ChatTemplate::from_hf_dir(&hf_dir).unwrap();
    let prompt = evotune::tokenizer::Prompt::Chat { system: None, user: "hi".into() };
    assert_eq!(chat2.render_prompt(&prompt).unwrap(), chat.render_prompt(&prompt).unwrap());
    if keep.is_some() {
        println!("wrote exports to {}", out_dir.display());
    }
}
