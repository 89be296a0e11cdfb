//! Loading for the quantized forward (`--weights quantized|q8_0`) on the tiny synthetic model:
//! which tensors keep their blocks, which are converted (with a note), the errors for what the
//! quantized path cannot hold, and a corrupt block scale named as on the f32 path.

#[path = "support/tiny_files.rs"]
mod tiny_files;

use std::os::unix::fs::FileExt;
use std::path::Path;

use evotune::kernels::QFormat;
use evotune::model::gguf::GgufFile;
use evotune::model::gguf_write::{write_gguf, ExportType};
use evotune::model::weights::Stored;
use evotune::model::{load_weights, LoadedWeights, Model, QuantizedParams, WeightFormat, Weights};
use evotune::Error;

fn quantized(path: &Path, format: WeightFormat) -> (Model, QuantizedParams, Vec<String>) {
    match load_weights(path.to_str().unwrap(), format).unwrap() {
        (m, LoadedWeights::Quantized(q), notes) => (m, q, notes),
        _ => panic!("quantized weights expected"),
    }
}

/// The format of every matrix (None: kept f32), by HF name.
fn formats(q: &QuantizedParams) -> Vec<(String, Option<QFormat>)> {
    q.layout()
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, i)| i.shape.len() == 2)
        .map(|(id, i)| {
            let f = match q.stored(id) {
                Stored::Quant(m) => Some(m.format()),
                Stored::F32(_) => None,
            };
            (i.name.clone(), f)
        })
        .collect()
}

#[test]
fn a_q8_0_file_keeps_its_blocks_and_decodes_to_the_f32_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q8.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::Q8_0);
    let (model, q, notes) = quantized(&path, WeightFormat::Quantized);
    assert!(notes.is_empty(), "{notes:?}");
    assert!(formats(&q).iter().all(|(_, f)| *f == Some(QFormat::Q8_0)), "{:?}", formats(&q));
    let (_, f32s) = evotune::model::loader::load_path(&path).unwrap();
    assert_eq!(q.dequantize(), f32s, "Q/K rows un-permuted and blocks decoded as the f32 loader does");
    // The forward runs on it, close to the f32 forward of the same weights.
    let ids = [3u32, 7, 5, 9, 4, 11];
    let a = model.llama.logits_all(&f32s, &ids).unwrap();
    let b = model.llama.logits_all(&q, &ids).unwrap();
    let (e, n) = a
        .iter()
        .zip(&b)
        .fold((0.0f64, 0.0f64), |(e, n), (x, y)| (e + ((x - y) as f64).powi(2), n + (*x as f64).powi(2)));
    assert!((e / n).sqrt() < 0.05, "relative RMS logit difference {}", (e / n).sqrt());
}

#[test]
fn float_matrices_stay_f32_unless_q8_0_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-f16.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::F16);
    let (_, q, notes) = quantized(&path, WeightFormat::Quantized);
    assert!(notes.is_empty());
    assert!(formats(&q).iter().all(|(_, f)| f.is_none()), "{:?}", formats(&q));
    let (_, q, notes) = quantized(&path, WeightFormat::Q8_0);
    assert!(formats(&q).iter().all(|(_, f)| *f == Some(QFormat::Q8_0)));
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("F16 matrices converted to Q8_0 at load"), "{notes:?}");
}

#[test]
fn a_hf_directory_is_quantized_to_q8_0_at_load_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_files::write_tiny_hf_dir(&dir.path().join("hf"));
    for format in [WeightFormat::Q8_0, WeightFormat::Quantized] {
        let (model, q, notes) = quantized(&hf, format);
        assert!(formats(&q).iter().all(|(_, f)| *f == Some(QFormat::Q8_0)));
        assert!(notes.iter().any(|n| n.contains("quantized to Q8_0 at load")), "{notes:?}");
        let out = model.llama.logits_all(&q, &[1, 2, 3]).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn rows_that_are_not_whole_blocks_are_refused_naming_the_tensor_and_the_way_out() {
    let mut config = tiny_files::config();
    config.hidden = 40; // rows of 40 values: not whole blocks of 32
    config.heads = 2;
    config.head_dim = 20;
    let layout = std::sync::Arc::new(evotune::model::safetensors::hf_layout(&config));
    let mut params = evotune::model::Params::zeros(layout);
    for (i, v) in params.data_mut().iter_mut().enumerate() {
        *v = ((i * 7919) % 200) as f32 / 1000.0 - 0.1;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-40.gguf");
    write_gguf(&path, &params, &config, &tiny_files::tokenizer_metadata(), ExportType::F32).unwrap();
    let e = load_weights(path.to_str().unwrap(), WeightFormat::Q8_0).err().expect("K = 40 cannot be Q8_0");
    let msg = e.to_string();
    assert!(matches!(e, Error::QuantizedPath { .. }), "{msg}");
    for part in [path.display().to_string().as_str(), "token_embd.weight", "40", "--weights f32"] {
        assert!(msg.contains(part), "`{msg}` does not name {part}");
    }
    // The same file loads for the f32 path, and for `quantized` (its float matrices stay f32).
    load_weights(path.to_str().unwrap(), WeightFormat::F32).unwrap();
    load_weights(path.to_str().unwrap(), WeightFormat::Quantized).unwrap();
}

#[test]
fn a_nan_block_scale_is_named_on_the_quantized_path_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q8.gguf");
    tiny_files::write_tiny_gguf(&path, ExportType::Q8_0);
    let at = {
        let g = GgufFile::open(&path).unwrap();
        g.data_offset + g.tensor("blk.0.ffn_up.weight").unwrap().offset + 5 * 34
    };
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0x00, 0x7E], at as u64).unwrap();
    drop(f);
    let e = load_weights(path.to_str().unwrap(), WeightFormat::Quantized).err().expect("a NaN scale fails");
    match &e {
        Error::NonFiniteWeight { tensor, location, value, .. } => {
            assert_eq!(tensor, "blk.0.ffn_up.weight");
            assert_eq!(location, "Q8_0 block 5 (elements 160..192), scale d");
            assert!(value.is_nan());
        }
        other => panic!("expected NonFiniteWeight, got {other}"),
    }
}
