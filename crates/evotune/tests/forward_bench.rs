//! The generate benchmark on the default model (ours vs candle's llama, same weights, same
//! process). Timing, not a test: ignored by default, run with
//! `cargo test --release -p evotune --test forward_bench -- --ignored --nocapture`.

mod support;

use evotune::model::bench::{bench_generate, BenchOptions};
use evotune::model::Llama;

#[test]
#[ignore]
fn bench_generate_default_model() {
    let Some((config, params)) = support::default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let mut opts = BenchOptions::default();
    if let Ok(b) = std::env::var("EVOTUNE_BENCH_BATCHES") {
        opts.batches = b.split(',').map(|x| x.trim().parse().unwrap()).collect();
    }
    if std::env::var_os("EVOTUNE_BENCH_NO_CANDLE").is_some() {
        opts.candle = false;
    }
    let report = bench_generate(&llama, params, &opts).unwrap();
    println!("{report}");
}

/// The same benchmark on random weights of SmolLM2-135M's shape (no model file needed; speed does
/// not depend on the values).
#[test]
#[ignore]
fn bench_generate_smollm2_shape_random_weights() {
    let (config, params) = support::random_model(support::smollm2_config());
    let llama = Llama::new(config, params.layout()).unwrap();
    let mut opts = BenchOptions::default();
    if let Ok(b) = std::env::var("EVOTUNE_BENCH_BATCHES") {
        opts.batches = b.split(',').map(|x| x.trim().parse().unwrap()).collect();
    }
    let report = bench_generate(&llama, &params, &opts).unwrap();
    println!("{report}");
}

/// GFLOP/s of the matmul on the model's shapes (one thread and all threads). Timing only.
#[test]
#[ignore]
fn bench_matmul_shapes() {
    use evotune::kernels::{matmul_at, simd_level};
    use std::time::Instant;
    let level = simd_level();
    for threads in [1, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (b, k, o) in [(16, 576, 1536), (64, 576, 1536), (1024, 576, 1536), (1024, 1536, 576), (1024, 576, 192), (16, 576, 49152), (1, 576, 49152)] {
            let x: Vec<f32> = (0..b * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
            let w: Vec<f32> = (0..o * k).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
            let mut y = vec![0.0; b * o];
            pool.install(|| matmul_at(level, &x, &w, &mut y, b, k, o));
            let reps = (2e9 / (2.0 * (b * k * o) as f64)).clamp(1.0, 200.0) as usize;
            let t = Instant::now();
            for _ in 0..reps {
                pool.install(|| matmul_at(level, &x, &w, &mut y, b, k, o));
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!("{level:?} threads={threads} b={b:5} k={k:5} o={o:6}: {:7.1} GFLOP/s ({:.2} ms)", 2.0 * (b * k * o) as f64 / s / 1e9, s * 1e3);
        }
    }
}
