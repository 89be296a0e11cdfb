//! Load time of the default model, by hand: `cargo test --release --test load_time -- --ignored
//! --nocapture`. It measures what the finiteness check of the dequantizers costs (see
//! `docs/reliability.md`): the dequantization of every tensor into preallocated buffers, the
//! weights alone (`load_gguf_weights`) and the whole load (`load_path`: weights, tokenizer, chat
//! template), each the minimum and median of several runs on a warm page cache.

use std::time::Instant;

use evotune::model::gguf::GgufFile;
use evotune::model::loader::{load_gguf_weights, load_path};

fn stats(mut t: Vec<f64>) -> String {
    t.sort_by(f64::total_cmp);
    format!("min {:7.1} ms  median {:7.1} ms  ({} runs)", t[0] * 1e3, t[t.len() / 2] * 1e3, t.len())
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

#[test]
#[ignore = "timing by hand; needs the default model"]
fn default_model_load_time() {
    let Some(path) = evotune::model::fetch::default_model_for_tests() else { return };
    let runs: usize = std::env::var("EVOTUNE_LOAD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let g = GgufFile::open(&path).unwrap();
    let mut bufs: Vec<Vec<f32>> = g.tensors.iter().map(|t| vec![0.0; t.elements()]).collect();
    let dq = time(runs, || {
        for (t, b) in g.tensors.iter().zip(bufs.iter_mut()) {
            g.dequantize_into(t, b).unwrap();
        }
    });
    let weights = time(runs, || drop(load_gguf_weights(&path).unwrap()));
    let full = time(runs, || drop(load_path(&path).unwrap()));
    println!("threads {}", rayon::current_num_threads());
    println!("dequantize every tensor : {}", stats(dq));
    println!("load_gguf_weights       : {}", stats(weights));
    println!("load_path (whole model) : {}", stats(full));
}
