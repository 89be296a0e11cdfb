//! Every SIMD level computes the same bits through the whole forward (matmul panels and strips,
//! k-tails, attention, RMSNorm, SwiGLU, softmax), in generation and in scoring. The level is
//! chosen once per process (`EVOTUNE_SIMD` caps it), so the test runs this test binary again under
//! each level and compares the fingerprints the runs print.

mod support;

use std::process::Command;

use evotune::model::generate::generate;
use evotune::model::score::log_distributions;
use evotune::model::{GenerateOptions, Llama, ModelConfig, Sampling};

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
    });
    let llama = Llama::new(config, params.layout()).unwrap();
    let prompts: Vec<Vec<u32>> = (0..4u32).map(|p| (0..7 + 5 * p).map(|i| (i * 37 + p * 11) % 300).collect()).collect();
    let opts = GenerateOptions { max_new_tokens: 10, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (tokens, dists) = pool.install(|| {
        let tokens = generate(&llama, &params, &prompts, &opts).unwrap();
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = prompts.iter().cloned().zip(tokens.iter().cloned()).collect();
        (tokens, log_distributions(&llama, &params, &pairs).unwrap())
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
