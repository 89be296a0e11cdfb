//! Corrupt weights are errors, never silent garbage: a NaN or infinite value or block scale in a
//! model file fails the load (and the θ0 re-derivation of the AWD anchor) with an error naming the
//! file, the tensor and the block or element; weights that are finite but make the logits overflow
//! fail generation and scoring with `Error::NonFiniteLogits` naming the sequence and the step.
//! Everything runs on the tiny synthetic model of `support/tiny_files.rs` (see
//! `docs/reliability.md` for the list of faults covered).

#[path = "support/tiny_files.rs"]
mod tiny_files;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use evotune::model::generate::{generate, GenerateOptions, Sampling};
use evotune::model::gguf::GgufFile;
use evotune::model::gguf_write::ExportType;
use evotune::model::loader::{load_gguf_weights, load_path};
use evotune::model::score::{log_distributions, score};
use evotune::model::ThetaSource;
use evotune::model::{Llama, Params};
use evotune::Error;
use half::f16;

/// Writes `bytes` at absolute offset `at` of `path`, in place (no truncation).
fn poke(path: &Path, at: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at as u64).unwrap();
    f.sync_all().unwrap();
}

/// Absolute offset of the data of GGUF tensor `name` in `path`.
fn gguf_data_at(path: &Path, name: &str) -> usize {
    let g = GgufFile::open(path).unwrap();
    let t = g.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    g.data_offset + t.offset
}

fn nonfinite_weight(e: &Error) -> (&str, &str, f32) {
    match e {
        Error::NonFiniteWeight { tensor, location, value, .. } => (tensor, location, *value),
        other => panic!("expected NonFiniteWeight, got {other}"),
    }
}

fn assert_names(e: &Error, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "`{msg}` does not name {p}");
    }
}

const NAN16: [u8; 2] = [0x00, 0x7E];
const INF16: [u8; 2] = [0x00, 0x7C];

#[test]
fn nan_block_scale_in_a_q8_0_gguf_names_file_tensor_and_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q8.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::Q8_0);
    load_path(&path).expect("the intact file loads");
    // blk.0.ffn_up.weight is (64, 32): one Q8_0 block (34 bytes) per row; poison block 5's scale.
    let at = gguf_data_at(&path, "blk.0.ffn_up.weight") + 5 * 34;
    poke(&path, at, &NAN16);
    let e = load_path(&path).err().expect("a NaN scale must fail the load");
    let (tensor, location, value) = nonfinite_weight(&e);
    assert_eq!(tensor, "blk.0.ffn_up.weight");
    assert!(value.is_nan());
    assert_eq!(location, "Q8_0 block 5 (elements 160..192), scale d");
    assert_names(&e, &[&path.display().to_string(), "blk.0.ffn_up.weight", "block 5"]);

    // An infinite scale in another tensor (the output head) is caught the same way.
    poke(&path, at, &f16::from_f32(0.01).to_le_bytes());
    load_path(&path).expect("repaired");
    poke(&path, gguf_data_at(&path, "output.weight") + 2 * 34, &INF16);
    let e = load_path(&path).err().unwrap();
    let (tensor, location, value) = nonfinite_weight(&e);
    assert_eq!((tensor, value), ("output.weight", f32::INFINITY));
    assert!(location.starts_with("Q8_0 block 2 "), "{e}");
}

#[test]
fn nonfinite_f32_and_f16_elements_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // F32 norm: element 7 of the final norm becomes -inf.
    let path = dir.path().join("tiny-f16.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::F16);
    poke(&path, gguf_data_at(&path, "output_norm.weight") + 7 * 4, &f32::NEG_INFINITY.to_le_bytes());
    let e = load_path(&path).err().unwrap();
    assert_eq!(nonfinite_weight(&e), ("output_norm.weight", "element 7", f32::NEG_INFINITY));
    assert_names(&e, &[&path.display().to_string()]);

    // F16 matrix: element 100 of blk.0.attn_v.weight becomes NaN.
    tiny_files::write_tiny_gguf(&path, ExportType::F16);
    poke(&path, gguf_data_at(&path, "blk.0.attn_v.weight") + 100 * 2, &NAN16);
    let e = load_path(&path).err().unwrap();
    let (tensor, location, value) = nonfinite_weight(&e);
    assert_eq!((tensor, location), ("blk.0.attn_v.weight", "element 100"));
    assert!(value.is_nan());
}

#[test]
fn nan_in_the_llama_cpp_permuted_q_rows_is_still_named() {
    // attn_q is read into a scratch buffer and un-permuted: the error is the file's (block index in
    // the file's row order), not a garbled one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q8.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::Q8_0);
    poke(&path, gguf_data_at(&path, "blk.0.attn_q.weight") + 3 * 34, &NAN16);
    let e = load_gguf_weights(&path).err().unwrap();
    let (tensor, location, _) = nonfinite_weight(&e);
    assert_eq!(tensor, "blk.0.attn_q.weight");
    assert!(location.starts_with("Q8_0 block 3 "), "{e}");
}

#[test]
fn theta0_rederivation_for_the_anchor_rejects_a_file_corrupted_after_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q8.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::Q8_0);
    let (_, theta0, params) = load_gguf_weights(&path).unwrap();
    let id = params.layout().id("model.layers.0.mlp.down_proj.weight").unwrap();
    let mut out = vec![0.0f32; params.tensor(id).len()];
    theta0.read_tensor(id, &mut out).unwrap();
    assert_eq!(out, params.tensor(id));

    // The file changes under the open model (the loader released the pages it read, so the next
    // read comes from the page cache): the anchor's next re-derivation is an error, whole or by range.
    // ffn_down is (32, 64): two blocks per row; poison block 9 = row 4, second half.
    poke(&path, gguf_data_at(&path, "blk.0.ffn_down.weight") + 9 * 34, &NAN16);
    let e = theta0.read_tensor(id, &mut out).unwrap_err();
    let (tensor, location, _) = nonfinite_weight(&e);
    assert_eq!(tensor, "blk.0.ffn_down.weight");
    assert!(location.starts_with("Q8_0 block 9 "), "{e}");
    // Rows 4..6 (elements 256..384) hold block 9: a range read reports it in whole-tensor terms.
    let source: Arc<dyn ThetaSource> = theta0.clone();
    let mut piece = vec![0.0f32; 128];
    let e = source.read_range(id, out.len(), 256, &mut piece).unwrap_err();
    assert!(nonfinite_weight(&e).1.starts_with("Q8_0 block 9 (elements 288..320)"), "{e}");
    // A range without it still reads.
    source.read_range(id, out.len(), 0, &mut piece).unwrap();
    assert_eq!(piece, params.tensor(id)[..128]);
}

/// (file offset of the data of `name`, dtype) in a safetensors file, from its JSON header.
fn safetensors_data_at(path: &Path, name: &str) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize
}

#[test]
fn nan_in_a_hf_checkpoint_names_file_tensor_and_element() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    let (model, params) = load_path(&hf).expect("the intact directory loads");
    let st = hf.join("model.safetensors");
    let name = "model.layers.0.mlp.up_proj.weight";
    poke(&st, safetensors_data_at(&st, name) + 4 * 77, &f32::NAN.to_le_bytes());
    let e = load_path(&hf).err().unwrap();
    let (tensor, location, value) = nonfinite_weight(&e);
    assert_eq!((tensor, location), (name, "element 77"));
    assert!(value.is_nan());
    assert_names(&e, &[&st.display().to_string()]);
    // θ0 of the model loaded before the corruption is re-read from the shards: also an error.
    let id = params.layout().id(name).unwrap();
    let mut out = vec![0.0f32; params.tensor(id).len()];
    let e = model.read_theta0_tensor(id, &mut out).unwrap_err();
    assert_eq!(nonfinite_weight(&e).1, "element 77");
}

// === Logits ===

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_new_tokens: n, sampling: Sampling::Greedy, stop_tokens: vec![] }
}

fn nonfinite_logits(e: &Error) -> (usize, usize) {
    match e {
        Error::NonFiniteLogits { step, sequence } => (*step, *sequence),
        other => panic!("expected NonFiniteLogits, got {other}"),
    }
}

/// Two prompts whose first greedy tokens differ and appear in neither prompt, with those tokens.
fn two_prompts(llama: &Llama, params: &Params) -> (Vec<Vec<u32>>, [u32; 2]) {
    let candidates: Vec<Vec<u32>> = (3..16u32).flat_map(|a| (3..16u32).map(move |b| vec![2, a, b])).collect();
    let first: Vec<u32> = generate(llama, params, &candidates, &greedy(1)).unwrap().into_iter().map(|t| t[0]).collect();
    for i in 0..candidates.len() {
        for j in 0..candidates.len() {
            let (x, y) = (first[i], first[j]);
            let fresh = |t: u32| !candidates[i].contains(&t) && !candidates[j].contains(&t);
            if x != y && fresh(x) && fresh(y) {
                return (vec![candidates[i].clone(), candidates[j].clone()], [x, y]);
            }
        }
    }
    panic!("no two prompts with distinct fresh first tokens: {first:?}");
}

#[test]
fn nan_reached_mid_generation_names_the_sequence_and_the_step() {
    let config = tiny_files::config();
    let mut params = tiny_files::params();
    let llama = Llama::new(config, params.layout()).unwrap();
    let (prompts, [_, y]) = two_prompts(&llama, &params);
    // Token y (what prompt 1 generates first) gets a NaN embedding: step 0 is finite for both
    // sequences; at step 1 sequence 1 feeds y and its logits are NaN.
    let embed = params.layout().id("model.embed_tokens.weight").unwrap();
    params.tensor_mut(embed)[y as usize * 32 + 3] = f32::NAN;
    let e = generate(&llama, &params, &prompts, &greedy(4)).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (1, 1), "{e}");
    assert!(e.to_string().contains("sequence 1") && e.to_string().contains("step 1"), "{e}");
    // Sampling checks too.
    let sample = GenerateOptions { sampling: Sampling::Sample { temperature: 0.7, top_p: 0.9, seed: 3 }, ..greedy(4) };
    let e = generate(&llama, &params, &[vec![2, y, 4]], &sample).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (0, 0));

    // Scoring: pair 1's continuation [y, a] reads y at its second position.
    let pairs = vec![(prompts[0].clone(), vec![3, 4]), (prompts[1].clone(), vec![y, 3])];
    let e = score(&llama, &params, &pairs).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (1, 1), "{e}");
    let e = log_distributions(&llama, &params, &pairs).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (1, 1), "{e}");
    // Pairs that never read y still score, finitely.
    let lp = score(&llama, &params, &pairs[..1]).unwrap();
    assert!(lp[0].iter().all(|x| x.is_finite() && *x <= 0.0), "{lp:?}");
}

#[test]
fn finite_weights_that_overflow_the_logits_fail_generate_and_score_from_a_file() {
    // Every value in the file is finite, so the load succeeds; a huge final norm makes the logits
    // ±inf (or NaN), which `generate` and `score` report instead of picking token 0.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-f32.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::F32);
    let at = gguf_data_at(&path, "output_norm.weight");
    let huge: Vec<u8> = (0..32).flat_map(|_| 3.0e38f32.to_le_bytes()).collect();
    poke(&path, at, &huge);
    let (model, params) = load_path(&path).expect("finite weights load");
    let prompt = model.tokenizer.encode("ab abc").unwrap();
    let e = generate(&model.llama, &params, &[vec![2, 3], prompt.clone()], &greedy(3)).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (0, 0), "{e}");
    let e = score(&model.llama, &params, &[(prompt, vec![3])]).unwrap_err();
    assert_eq!(nonfinite_logits(&e), (0, 0), "{e}");
}

#[test]
fn finite_models_are_unaffected() {
    // The checks change no arithmetic: the intact model generates and scores as before (its
    // outputs are checked bit for bit against candle and llama.cpp by the golden tests).
    let config = tiny_files::config();
    let params = tiny_files::params();
    let llama = Llama::new(config, params.layout()).unwrap();
    let out = generate(&llama, &params, &[vec![2, 3, 4], vec![2, 5]], &greedy(5)).unwrap();
    assert!(out.iter().all(|o| o.len() == 5));
    let lp = score(&llama, &params, &[(vec![2, 3], out[0].clone())]).unwrap();
    assert!(lp[0].iter().all(|x| x.is_finite()));
}
