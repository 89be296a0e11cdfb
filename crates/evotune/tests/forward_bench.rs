//! The generate benchmark on the default model (ours vs candle's llama, same weights, same
//! process) and matmul timings. Timing, not a test: ignored by default, run with
//! `cargo test --release -p evotune --features bench --test forward_bench -- --ignored --nocapture`
//! (the comparisons with candle and the `gemm` crate need the `bench` feature).

mod support;

use evotune::kernels::machine::Machine;
#[cfg(feature = "bench")]
use evotune::model::bench::{bench_generate, BenchOptions};
use evotune::model::Llama;

#[cfg(feature = "bench")]
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
    let report = bench_generate(&llama, &[("f32", params)], Some(params), &opts).unwrap();
    println!("{report}");
}

/// The same benchmark on random weights of SmolLM2-135M's shape (no model file needed; speed does
/// not depend on the values).
#[cfg(feature = "bench")]
#[test]
#[ignore]
fn bench_generate_smollm2_shape_random_weights() {
    let (config, params) = support::random_model(support::smollm2_config());
    let llama = Llama::new(config, params.layout()).unwrap();
    let mut opts = BenchOptions::default();
    if let Ok(b) = std::env::var("EVOTUNE_BENCH_BATCHES") {
        opts.batches = b.split(',').map(|x| x.trim().parse().unwrap()).collect();
    }
    let report = bench_generate(&llama, &[("f32", &params)], Some(&params), &opts).unwrap();
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
        println!("{}", pool.install(Machine::current));
        for (b, k, o) in [
            (16, 576, 1536),
            (27, 576, 1536),
            (64, 576, 1536),
            (304, 576, 1536),
            (1024, 576, 1536),
            (1024, 1536, 576),
            (1024, 576, 192),
            (16, 576, 49152),
            (1, 576, 49152),
        ] {
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
            println!(
                "{level:?} threads={threads} b={b:5} k={k:5} o={o:6}: {:7.1} GFLOP/s ({:.2} ms)",
                2.0 * (b * k * o) as f64 / s / 1e9,
                s * 1e3
            );
        }
    }
}

/// Per-token cost of one prefill as the batch grows (alternating runs to share the machine's
/// noise): forward vs the matmuls alone, on random SmolLM2-shaped weights. Timing only.
#[test]
#[ignore]
fn bench_prefill_scaling() {
    use evotune::kernels::matmul;
    use evotune::model::llama::SeqInput;
    use std::time::Instant;
    let (config, params) = support::random_model(support::smollm2_config());
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let (d, f) = (config.hidden, config.ffn);
    let w1 = vec![0.01f32; f * d];
    println!("{}", Machine::current());
    for round in 0..3 {
        for b in [1usize, 4, 16] {
            let ps: Vec<Vec<u32>> = (0..b).map(|s| (0..64).map(|i| (s * 64 + i) as u32 * 7 + 100).collect()).collect();
            let mut caches: Vec<_> = ps.iter().map(|_| llama.new_cache()).collect();
            let mut seqs: Vec<SeqInput> =
                ps.iter().zip(caches.iter_mut()).map(|(p, c)| SeqInput { tokens: p, cache: c, logits: 1 }).collect();
            let t = Instant::now();
            llama.forward(&params, &mut seqs).unwrap();
            let fwd = t.elapsed().as_secs_f64();
            // the layer's matmuls alone: 4 of (T,576)x(576→576/192/192/576) ≈ qkvo, 3 of the MLP
            let tt = 64 * b;
            let x = vec![0.5f32; tt * f];
            let mut y = vec![0.0f32; tt * f];
            let t = Instant::now();
            for _ in 0..config.layers {
                matmul(&x[..tt * d], &w1[..d * d], &mut y[..tt * d], tt, d, d);
                matmul(&x[..tt * d], &w1[..192 * d], &mut y[..tt * 192], tt, d, 192);
                matmul(&x[..tt * d], &w1[..192 * d], &mut y[..tt * 192], tt, d, 192);
                matmul(&x[..tt * d], &w1[..d * d], &mut y[..tt * d], tt, d, d);
                matmul(&x[..tt * d], &w1, &mut y[..tt * f], tt, d, f);
                matmul(&x[..tt * d], &w1, &mut y[..tt * f], tt, d, f);
                matmul(&x[..tt * f], &w1, &mut y[..tt * d], tt, f, d);
            }
            let mm = t.elapsed().as_secs_f64();
            println!("round {round} b={b:2} T={tt:4}: forward {:7.1} tok/s, matmuls alone {:7.1} tok/s ({:.0}% of forward time)", tt as f64 / fwd, tt as f64 / mm, 100.0 * mm / fwd);
        }
    }
}

/// Our matmul against the `gemm` crate (what candle's f32 matmul runs on), one thread each,
/// alternating (each batch after a warm-up call, the fastest of five), per CPU-second of the one
/// thread both run on (`/proc/thread-self/schedstat`: robust to a shared machine). Timing only.
#[cfg(feature = "bench")]
#[test]
#[ignore]
fn bench_matmul_vs_gemm_crate() {
    use evotune::kernels::{matmul_at, simd_level};
    fn thread_cpu_s() -> f64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        s.split_whitespace().next().unwrap().parse::<f64>().unwrap() * 1e-9
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    // Every product of SmolLM2-135M's forward (q/o 576→576, k/v 576→192, gate/up 576→1536, down
    // 1536→576, lm_head 576→49152) at decode (1, 16 rows) and prefill (304 rows: an ES member's
    // prompts in the reference workload; 1024) sizes; `EVOTUNE_BENCH_ROWS=16,304` picks the rows.
    let rows: Vec<usize> = std::env::var("EVOTUNE_BENCH_ROWS")
        .map(|v| v.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![1, 16, 304, 1024]);
    let mut shapes = Vec::new();
    for &b in &rows {
        for (k, o) in [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)] {
            if b * k * o <= 1024 * 576 * 1536 {
                shapes.push((b, k, o));
            }
        }
    }
    // The gemm crate picks its own level (AVX2+FMA without its `x86-v4` feature), not ours.
    println!("{}; one thread each (the gemm crate runs its own kernels)", pool.install(Machine::current));
    for (b, k, o) in shapes {
        let x: Vec<f32> = (0..b * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let w: Vec<f32> = (0..o * k).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
        let mut y = vec![0.0; b * o];
        // ≈ 0.4 s per batch: the thread's CPU time advances in scheduler ticks (4 ms here).
        let reps = (4e10 / (2.0 * (b * k * o) as f64)).clamp(2.0, 200_000.0) as usize;
        let (ours, theirs) = pool.install(|| {
            let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
            // Each timed batch follows one untimed call of its own (the other library's run leaves
            // the caches cold); the fastest of five alternated batches.
            for _ in 0..5 {
                matmul_at(simd_level(), &x, &w, &mut y, b, k, o);
                let t = thread_cpu_s();
                for _ in 0..reps {
                    matmul_at(simd_level(), &x, &w, &mut y, b, k, o);
                }
                ours = ours.min(thread_cpu_s() - t);
                evotune::kernels::probe::gemm_crate_matmul(&x, &w, &mut y, b, k, o, 1);
                let t = thread_cpu_s();
                for _ in 0..reps {
                    evotune::kernels::probe::gemm_crate_matmul(&x, &w, &mut y, b, k, o, 1);
                }
                theirs = theirs.min(thread_cpu_s() - t);
            }
            (ours, theirs)
        });
        let gf = |s: f64| 2.0 * (b * k * o) as f64 * reps as f64 / s / 1e9;
        println!(
            "b={b:5} k={k:5} o={o:6}: ours {:6.1} GFLOP/cpu-s, gemm crate {:6.1} GFLOP/cpu-s ({:.2}x)",
            gf(ours),
            gf(theirs),
            theirs / ours
        );
    }
}

/// Decode-shaped matmuls streaming their weights from memory (a ring of distinct matrices larger
/// than the caches), at 1 and 16 rows: shows whether compute and memory traffic overlap. Timing only.
#[test]
#[ignore]
fn bench_decode_streaming() {
    use evotune::kernels::matmul;
    use std::time::Instant;
    let (k, o, mats) = (576usize, 1536usize, 160usize); // 160 × 3.5 MB = 566 MB, about one model
    let ws: Vec<Vec<f32>> =
        (0..mats).map(|m| (0..o * k).map(|i| ((i * 7 + m) % 1000) as f32 * 1e-3 - 0.5).collect()).collect();
    println!("{}", Machine::current());
    for round in 0..3 {
        for b in [1usize, 16] {
            let x: Vec<f32> = (0..b * k).map(|i| (i % 100) as f32 * 1e-2).collect();
            let mut y = vec![0.0f32; b * o];
            let t = Instant::now();
            for w in &ws {
                matmul(&x, w, &mut y, b, k, o);
            }
            let s = t.elapsed().as_secs_f64();
            let bytes = (mats * o * k * 4) as f64;
            println!(
                "round {round} b={b:2}: {:.1} ms per pass, {:.1} GB/s of weights, {:.1} GFLOP/s",
                s * 1e3,
                bytes / s / 1e9,
                2.0 * (b * k * o * mats) as f64 / s / 1e9
            );
        }
        // The same 16-row products on one matrix that stays in cache.
        let x: Vec<f32> = (0..16 * k).map(|i| (i % 100) as f32 * 1e-2).collect();
        let mut y = vec![0.0f32; 16 * o];
        let t = Instant::now();
        for _ in 0..mats {
            matmul(&x, &ws[0], &mut y, 16, k, o);
        }
        println!(
            "round {round} b=16, one cached matrix: {:.1} ms per {mats} products",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
