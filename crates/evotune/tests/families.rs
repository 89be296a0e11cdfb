//! The model families against transformers. `scripts/tiny_models.py` builds a tiny random model of
//! each family with transformers — Llama 3 (llama3 RoPE scaling, untied head), Mistral (sliding
//! window), Qwen2 (q/k/v biases, tied), Qwen3 (per-head q/k norms, head dim ≠ D/H), Gemma 3
//! (its own block, sliding and global layers, linear RoPE scaling) — saves it as a
//! HF directory and as a GGUF in llama.cpp's layout, and records transformers' logits at every
//! position and 16 greedy tokens for three token sequences. Both forms must give those logits
//! (within [`LOGIT_TOLERANCE`]) and exactly those tokens; exports must load back to the same
//! logits; each family's real chat template must render what transformers renders.

use std::path::{Path, PathBuf};

use evotune::model::generate::generate;
use evotune::model::gguf_write::{write_gguf, ExportType};
use evotune::model::loader::load_path;
use evotune::model::safetensors::write_hf_dir;
use evotune::model::{load_weights, GenerateOptions, Llama, LoadedWeights, Model, Params, RopeScaling, Sampling};
use evotune::model::{WeightFormat, Weights};
use evotune::tokenizer::{ChatTemplate, Message, Prompt};

const FAMILIES: [&str; 5] = ["llama3", "mistral", "qwen2", "qwen3", "gemma3"];

/// Largest |ours − transformers'| allowed, relative to max(1, max |logit|): f32 throughout, with
/// other summation orders (and for a GGUF's RoPE factors, ω/f instead of HF's formula).
const LOGIT_TOLERANCE: f32 = 2e-5;

fn data_dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny").join(family)
}

/// What transformers computed for one family.
struct Reference {
    sequences: Vec<Vec<u32>>,
    greedy: Vec<Vec<u32>>,
    /// (Σ lengths, V): every position of every sequence, in order.
    logits: Vec<f32>,
    vocab: usize,
}

fn reference(family: &str) -> Reference {
    let dir = data_dir(family);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<Vec<u32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect())
            .collect()
    };
    let bytes = std::fs::read(dir.join("logits.f32")).unwrap();
    let logits: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let r = Reference {
        sequences: ids(&json["sequences"]),
        greedy: ids(&json["greedy"]),
        logits,
        vocab: json["vocab"].as_u64().unwrap() as usize,
    };
    let rows: usize = r.sequences.iter().map(Vec::len).sum();
    assert_eq!(r.logits.len(), rows * r.vocab, "{family}: logits.f32 holds {rows} rows of {}", r.vocab);
    r
}

/// Every position's logits of every reference sequence, concatenated as `logits.f32` is.
fn all_logits(llama: &Llama, params: &dyn Weights, r: &Reference) -> Vec<f32> {
    r.sequences.iter().flat_map(|s| llama.logits_all(params, s).unwrap()).collect()
}

/// max |a − b| / max(1, max |b|).
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn greedy_tokens(llama: &Llama, params: &dyn Weights, r: &Reference) -> Vec<Vec<u32>> {
    let opts = GenerateOptions { max_new_tokens: 16, sampling: Sampling::Greedy, stop_tokens: vec![] };
    generate(llama, params, &r.sequences, &opts).unwrap()
}

/// Both forms of every family: logits within the tolerance, greedy tokens exact.
#[test]
fn hf_and_gguf_forms_match_transformers() {
    for family in FAMILIES {
        let r = reference(family);
        let dir = data_dir(family);
        for path in [dir.join("hf"), dir.join("model.gguf")] {
            let (model, params) = load_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(model.config.vocab, r.vocab, "{}", path.display());
            let err = relative_error(&all_logits(&model.llama, &params, &r), &r.logits);
            println!(
                "{family:8} {:>10}: logits within {err:.2e} of transformers'",
                path.file_name().unwrap().to_string_lossy()
            );
            assert!(err <= LOGIT_TOLERANCE, "{}: logits differ by {err:e}", path.display());
            assert_eq!(greedy_tokens(&model.llama, &params, &r), r.greedy, "{}: greedy tokens", path.display());
        }
    }
}

/// What each family's config must hold, read from either form; the Llama-3 RoPE of the two forms
/// (parameters vs. GGUF factors) agree to an ulp or so.
#[test]
fn family_features_are_read_from_both_forms() {
    let load = |family: &str, form: &str| load_path(&data_dir(family).join(form)).unwrap().0.config;
    for form in ["hf", "model.gguf"] {
        let c = load("llama3", form);
        assert!(!c.tied_embeddings && !c.qkv_bias && !c.qk_norm && c.sliding_window.is_none(), "{form}: {c:?}");
        match (&c.rope_scaling, form) {
            (Some(RopeScaling::Llama3 { factor, original_context, .. }), "hf") => {
                assert_eq!((*factor, *original_context), (8.0, 32))
            }
            (Some(RopeScaling::FreqFactors(f)), "model.gguf") => assert_eq!(f.len(), c.head_dim / 2),
            other => panic!("llama3 {form}: rope scaling {other:?}"),
        }
        let m = load("mistral", form);
        assert_eq!(m.sliding_window, Some(6), "mistral {form}");
        let q2 = load("qwen2", form);
        assert!(q2.qkv_bias && q2.tied_embeddings && !q2.qk_norm, "qwen2 {form}: {q2:?}");
        let q3 = load("qwen3", form);
        assert!(q3.qk_norm && !q3.qkv_bias && q3.head_dim == 32 && q3.hidden == 64, "qwen3 {form}: {q3:?}");
        let g = load("gemma3", form);
        let gemma = g.gemma.as_ref().unwrap_or_else(|| panic!("gemma3 {form}: {g:?}"));
        assert_eq!(gemma.sliding_layers, [true, false], "gemma3 {form}");
        assert_eq!((gemma.query_pre_attn_scalar, gemma.local_rope_theta), (24.0, 10_000.0), "gemma3 {form}");
        assert_eq!((g.rope_theta, g.rope_scaling.clone()), (1e6, Some(RopeScaling::Linear { factor: 2.0 })));
        assert!(g.qk_norm && g.tied_embeddings && g.sliding_window == Some(4), "gemma3 {form}: {g:?}");
    }
    let (hf, gguf) = (load("llama3", "hf").rope_inv_freq(), load("llama3", "model.gguf").rope_inv_freq());
    let plain = load("llama3", "hf").rope_inv_freq_unscaled();
    assert!(hf.iter().zip(&plain).filter(|(a, b)| a != b).count() >= 2, "the scaling changes some frequencies");
    for (a, b) in hf.iter().zip(&gguf) {
        assert!((a - b).abs() <= 2e-7 * a.abs(), "inverse frequencies {hf:?} vs {gguf:?}");
    }
}

/// The tests above can fail: without its sliding window, Mistral's 12-token sequence (window 6)
/// gets other logits; without the q/k norms' weights (all ones), Qwen3 does too; Gemma 3 with the
/// usual score scale 1/√Dh, or without its linear RoPE scaling, as well.
#[test]
fn the_family_features_change_the_logits() {
    let r = reference("mistral");
    let (mut model, params) = load_path(&data_dir("mistral").join("hf")).unwrap();
    model.config.sliding_window = None;
    let full = Llama::new(model.config.clone(), params.layout()).unwrap();
    assert!(relative_error(&all_logits(&full, &params, &r), &r.logits) > 1e-3);

    let r = reference("qwen3");
    let (model, mut params) = load_path(&data_dir("qwen3").join("hf")).unwrap();
    for name in ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"] {
        let id = params.layout().id(name).unwrap();
        params.tensor_mut(id).fill(1.0);
    }
    assert!(relative_error(&all_logits(&model.llama, &params, &r), &r.logits) > 1e-3);

    let r = reference("gemma3");
    let (model, params) = load_path(&data_dir("gemma3").join("hf")).unwrap();
    let mut plain_scale = model.config.clone();
    plain_scale.gemma.as_mut().unwrap().query_pre_attn_scalar = 16.0;
    let mut unscaled = model.config.clone();
    unscaled.rope_scaling = None;
    for config in [plain_scale, unscaled] {
        let llama = Llama::new(config, params.layout()).unwrap();
        assert!(relative_error(&all_logits(&llama, &params, &r), &r.logits) > 1e-3);
    }
}

/// Export → load → the same logits: a HF directory (bit-identical), a GGUF with the source's
/// metadata (F32: bit-identical but for Llama 3's RoPE, which a GGUF holds as factors).
#[test]
fn exports_load_back_to_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let r = reference(family);
        let (model, params) = load_path(&data_dir(family).join("hf")).unwrap();
        let ours = all_logits(&model.llama, &params, &r);

        let hf_out = tmp.path().join(format!("{family}-hf"));
        write_hf_dir(&hf_out, &params, &model.config, Some(&model.tokenizer), Some(&model.chat)).unwrap();
        let (back, back_params) = load_path(&hf_out).unwrap();
        assert_eq!(back.config, model.config, "{family}: HF export config");
        let a = all_logits(&back.llama, &back_params, &r);
        assert!(a == ours, "{family}: HF export logits differ by {:e}", relative_error(&a, &ours));

        let (gguf_model, gguf_params) = load_path(&data_dir(family).join("model.gguf")).unwrap();
        let gguf_out = tmp.path().join(format!("{family}.gguf"));
        let metadata = gguf_model.theta0.gguf().unwrap().metadata.clone();
        write_gguf(&gguf_out, &gguf_params, &gguf_model.config, &metadata, ExportType::F32).unwrap();
        let (back, back_params) = load_path(&gguf_out).unwrap();
        assert_eq!(back.config, gguf_model.config, "{family}: GGUF export config");
        let (a, b) = (all_logits(&back.llama, &back_params, &r), all_logits(&gguf_model.llama, &gguf_params, &r));
        assert!(a == b, "{family}: GGUF export logits differ by {:e}", relative_error(&a, &b));

        // A GGUF source exported as a HF directory (not Llama 3: see below).
        if family != "llama3" {
            let out = tmp.path().join(format!("{family}-from-gguf"));
            write_hf_dir(&out, &gguf_params, &gguf_model.config, Some(&gguf_model.tokenizer), Some(&gguf_model.chat))
                .unwrap();
            let (back, back_params) = load_path(&out).unwrap();
            let (a, b) = (all_logits(&back.llama, &back_params, &r), all_logits(&gguf_model.llama, &gguf_params, &r));
            assert!(a == b, "{family}: GGUF → HF logits differ by {:e}", relative_error(&a, &b));
        }

        // A HF source exported as GGUF, its tokenizer and template written as llama.cpp reads them:
        // the same logits, the same tokens for every text, the same prompt.
        let cross = tmp.path().join(format!("{family}-from-hf.gguf"));
        let metadata = model.tokenizer.gguf_metadata(&model.chat).expect("a byte-level BPE with a GPT-2 split");
        write_gguf(&cross, &params, &model.config, &metadata, ExportType::F32).unwrap();
        let (back, cross_params) = load_path(&cross).unwrap();
        let err = relative_error(&all_logits(&back.llama, &cross_params, &r), &ours);
        assert!(err <= LOGIT_TOLERANCE, "{family}: HF → GGUF logits differ by {err:e}");
        for text in ["Hello world", "What is 23 + 45? Answer with only the number.", "café\n\n  spaces 🙂", ""] {
            assert_eq!(
                back.tokenizer.encode(text).unwrap(),
                model.tokenizer.encode(text).unwrap(),
                "{family}: {text:?}"
            );
        }
        let prompt = Prompt::Chat { system: None, user: "Hi there".into() };
        assert_eq!(back.encode_prompt(&prompt, "").unwrap(), model.encode_prompt(&prompt, "").unwrap(), "{family}");
    }
    // A GGUF's RoPE factors keep no llama3 parameters: a HF export says so instead of guessing.
    let (model, params) = load_path(&data_dir("llama3").join("model.gguf")).unwrap();
    let e = write_hf_dir(&tmp.path().join("refused"), &params, &model.config, None, None).unwrap_err();
    assert!(e.to_string().contains("rope_freqs.weight"), "{e}");
    assert!(!tmp.path().join("refused").exists(), "nothing is written for a refused export");
}

/// The quantized path (every matrix of the GGUF as Q8_0 codes, the integer kernels) runs every
/// family, close to the f32 logits: off by Q8_0's rounding of weights and activations (5–8% of the
/// largest logit on these random weights, Qwen2's as much as the new families'), not by a
/// different model (which is off by the logits' whole scale).
#[test]
fn quantized_weights_run_every_family() {
    for family in FAMILIES {
        let r = reference(family);
        let path = data_dir(family).join("model.gguf");
        let (model, weights, _notes) = load_weights(path.to_str().unwrap(), WeightFormat::Q8_0).unwrap();
        let LoadedWeights::Quantized(q) = weights else { panic!("{family}: expected quantized weights") };
        let err = relative_error(&all_logits(&model.llama, &q, &r), &r.logits);
        println!("{family:8} Q8_0: logits within {err:.2e} of transformers' f32");
        assert!(err > 1e-4 && err < 0.15, "{family}: Q8_0 logits differ by {err:e}");
    }
}

/// Every family's real chat template renders what transformers' `apply_chat_template` renders
/// (cases recorded by the script, Qwen3's thinking switch both ways).
#[test]
fn chat_templates_render_as_transformers_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny/chat_templates.json"))
            .unwrap(),
    )
    .unwrap();
    let mut families = std::collections::BTreeSet::new();
    for (i, case) in cases.iter().enumerate() {
        let family = case["family"].as_str().unwrap();
        let source = std::fs::read_to_string(root.join(case["template_file"].as_str().unwrap())).unwrap();
        let text = |k: &str| case[k].as_str().unwrap_or("").to_string();
        let mut template = ChatTemplate::new(source, text("bos_token"), text("eos_token")).unwrap();
        let args: toml::Table = case["kwargs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::from_value::<toml::Value>(v.clone()).unwrap()))
            .collect();
        template.set_args(&args);
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let rendered = template.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
        assert_eq!(rendered.as_deref().ok(), case["rendered"].as_str(), "case {i} ({family}): {rendered:?}");
        families.insert(family.to_string());
    }
    assert_eq!(families.len(), 5, "{families:?}");
}

/// Qwen3's template starts with thinking off (evotune's default); the argument turns it on.
#[test]
fn qwen3_thinking_is_off_unless_asked() {
    let (model, _params): (Model, Params) = load_path(&data_dir("qwen3").join("hf")).unwrap();
    let messages = [Message::new("user", "2+2?")];
    let off = model.chat.render(&messages, true).unwrap();
    assert!(off.ends_with("<think>\n\n</think>\n\n"), "{off:?}");
    let mut on = model.chat.clone();
    on.set_args(&toml::toml! { enable_thinking = true });
    let on = on.render(&messages, true).unwrap();
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");
}

/// A sliding window that starts inside a shared prefix (Mistral's window 6, Gemma's 4, a prefix of
/// 8 tokens): the rows after the prefix are bit-identical to the whole sequence's, so the
/// evaluation's prompt sharing is exact for these families too.
#[test]
fn sliding_windows_read_shared_prefixes_exactly() {
    use evotune::model::kv_cache::KvCache;
    use evotune::model::llama::SeqInput;
    use std::sync::Arc;
    for family in ["mistral", "gemma3"] {
        let (model, params) = load_path(&data_dir(family).join("hf")).unwrap();
        let seq = reference(family).sequences[2].clone(); // 12 tokens
        let all = model.llama.logits_all(&params, &seq).unwrap();
        let mut prefix = model.llama.new_cache();
        let mut first = [SeqInput { tokens: &seq[..8], cache: &mut prefix, logits: 0 }];
        model.llama.forward(&params, &mut first).unwrap();
        let prefix = Arc::new(prefix);
        let mut cache = KvCache::after(&prefix, seq.len());
        let mut rest = [SeqInput { tokens: &seq[8..], cache: &mut cache, logits: 4 }];
        let rows = model.llama.forward(&params, &mut rest).unwrap();
        let v = model.config.vocab;
        assert!(rows.seq(0) == &all[8 * v..], "{family}: rows after a shared prefix differ");
    }
}

/// Gemma 3 4B+ checkpoints are multimodal: config.json is `gemma3` with the language model in
/// `text_config`, its tensors under `language_model.model.` (transformers 4) or
/// `model.language_model.` (transformers 5), next to a vision tower. The text model is read from
/// them: the tiny Gemma's tensors renamed so, with a vision tensor beside them, give its logits.
#[test]
fn multimodal_gemma3_checkpoints_read_their_language_model() {
    let src = data_dir("gemma3").join("hf");
    let r = reference("gemma3");
    let (_, params) = load_path(&src).unwrap();
    let text_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for prefix in ["language_model.model.", "model.language_model."] {
        let dir = tmp.path().join(prefix.replace('.', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let config = serde_json::json!({
            "architectures": ["Gemma3ForConditionalGeneration"],
            "model_type": "gemma3",
            "text_config": text_config,
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 8},
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = params
            .layout()
            .tensors()
            .iter()
            .map(|t| {
                let name = format!("{prefix}{}", t.name.strip_prefix("model.").unwrap());
                let bytes =
                    params.tensor(params.layout().id(&t.name).unwrap()).iter().flat_map(|x| x.to_le_bytes()).collect();
                (name, t.shape.clone(), bytes)
            })
            .collect();
        tensors.push(("vision_tower.vision_model.post_layernorm.weight".into(), vec![8], vec![0; 32]));
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, shape, b)| {
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
        let (model, back) = load_path(&dir).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        assert_eq!(model.config.hf_model_type(), "gemma3_text");
        let err = relative_error(&all_logits(&model.llama, &back, &r), &r.logits);
        assert!(err <= LOGIT_TOLERANCE, "{prefix}: logits differ by {err:e}");
        // θ0 is re-read from the renamed tensors too (the AWD anchor).
        let id = model.layout.id("model.layers.1.post_feedforward_layernorm.weight").unwrap();
        let mut again = vec![0f32; model.layout.info(id).len];
        model.read_theta0_tensor(id, &mut again).unwrap();
        assert_eq!(again, back.tensor(id));
    }
}
