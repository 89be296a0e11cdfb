//! Every SIMD level computes the same bits through the whole forward (matmul panels and strips,
//! k-tails, attention, RMSNorm, SwiGLU, softmax; the integer kernels on Q8_0, Q4_1 and Q4_0
//! weights), in generation and in scoring. The level is
//! chosen once per process (`EVOTUNE_SIMD` caps it), so the test runs this test binary again under
//! each level and compares the fingerprints the runs print.

mod support;

use std::process::Command;

use evotune::kernels::{QFormat, QMatrix};
use evotune::model::generate::generate;
use evotune::model::score::log_distributions;
use evotune::model::weights::Stored;
use evotune::model::{GenerateOptions, Llama, ModelConfig, QuantizedParams, Sampling, Weights};

/// Set in the child runs: makes [`child_prints_fingerprint`] do its work.
const CHILD: &str = "EVOTUNE_SIMD_LEVELS_CHILD";

/// FNV-1a over the bits of everything the forward produced: generated tokens and full
/// log-distributions of teacher-forced pairs, on two threads.
fn fingerprint() -> String {
    // Head size 32 (the attention fast paths), ffn 200 (k-tails of the down projection), a
    // batched prefill of ≥ 24 rows (packed panels) and decode of 4 rows (strips).
    let (config, params) = support::random_model(ModelConfig {
        architecture: "llama".into(),
        hidden: 128,
        ffn: 200,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
        vocab: 300,
        context: 128,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        qk_norm: false,
        rope_scaling: None,
        sliding_window: None,
        gemma: None,
    });
    let llama = Llama::new(config, params.layout()).unwrap();
    let prompts: Vec<Vec<u32>> = (0..4u32).map(|p| (0..7 + 5 * p).map(|i| (i * 37 + p * 11) % 300).collect()).collect();
    let opts = GenerateOptions { max_new_tokens: 10, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    // The same model on quantized weights: Q8_0 from the f32 values, and Q4_1 / Q4_0 stores whose
    // codes are derived from them (the down projection, K = 200, stays f32).
    let q8 = QuantizedParams::q8_0_from(&params).0;
    let q4 = |format: QFormat| {
        let stored = params
            .layout()
            .tensors()
            .iter()
            .enumerate()
            .map(|(id, info)| match info.shape[..] {
                [o, k] if k % 32 == 0 => Stored::Quant(QMatrix::from_rows(format, o, k, |r, c, d, m| {
                    for (i, c) in c.iter_mut().enumerate() {
                        *c = (params.tensor(id)[r * k + i].to_bits() >> 11) as u8 & 15;
                    }
                    d.fill(half::f16::from_f32(0.01).to_bits());
                    m.fill(half::f16::from_f32(-0.07).to_bits());
                })),
                _ => Stored::F32(params.tensor(id).to_vec()),
            })
            .collect();
        QuantizedParams::new(params.layout().clone(), stored)
    };
    let stores: [&dyn Weights; 4] = [&params, &q8, &q4(QFormat::Q4_1), &q4(QFormat::Q4_0)];
    let (tokens, dists): (Vec<Vec<u32>>, Vec<Vec<Vec<f32>>>) = pool.install(|| {
        let mut all = (Vec::new(), Vec::new());
        for w in stores {
            let tokens = generate(&llama, w, &prompts, &opts).unwrap();
            let pairs: Vec<(Vec<u32>, Vec<u32>)> = prompts.iter().cloned().zip(tokens.iter().cloned()).collect();
            all.1.extend(log_distributions(&llama, w, &pairs).unwrap());
            all.0.extend(tokens);
        }
        all
    });
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u32| {
        for b in x.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    tokens.iter().flatten().for_each(|&t| eat(t));
    dists.iter().flatten().flatten().for_each(|v| eat(v.to_bits()));
    format!("{h:016x} over {} tokens", tokens.iter().map(Vec::len).sum::<usize>())
}

#[test]
fn child_prints_fingerprint() {
    if std::env::var_os(CHILD).is_some() {
        println!("FINGERPRINT {}", fingerprint());
    }
}

#[test]
fn every_simd_level_computes_the_same_bits() {
    let exe = std::env::current_exe().unwrap();
    let run = |level: &str| -> String {
        let out = Command::new(&exe)
            .args(["--exact", "child_prints_fingerprint", "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .env("EVOTUNE_SIMD", level)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{level}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout
            .lines()
            .find_map(|l| Some(l.split_once("FINGERPRINT ")?.1))
            .unwrap_or_else(|| panic!("{level}: {stdout}"));
        line.to_string()
    };
    // A level the CPU lacks falls back to the next one down, which then runs twice.
    let portable = run("portable");
    for level in ["avx2", "avx512"] {
        assert_eq!(run(level), portable, "EVOTUNE_SIMD={level} differs from the portable level");
    }
}
