//! The default model (SmolLM2-135M-Instruct, Q4_1 dequantized to f32) against candle's llama on
//! the same weights (with the `bench` feature, which builds the candle reference); batch
//! invariance and cache consistency on real weights. Skips (with a note) when the model file is
//! absent.

mod support;

use evotune::model::generate::generate;
use evotune::model::llama::SeqInput;
use evotune::model::{GenerateOptions, Llama, Sampling};
use support::{bit_equal, default_model, golden};
// For the comparisons with candle.
#[cfg(feature = "bench")]
use {
    evotune::model::candle_ref::CandleLlama, evotune::model::generate::argmax, evotune::model::score::score,
    support::max_diff,
};

/// Fixed prompts: the golden chat prompts' ids plus two raw id lists (no template).
fn test_prompts() -> Vec<Vec<u32>> {
    let mut v: Vec<Vec<u32>> = golden().into_iter().take(3).map(|g| g.input_ids).collect();
    v.push(vec![504, 3458, 282, 4649, 314, 2981, 30]);
    v.push(vec![1, 4093, 198, 23, 15, 33, 44]);
    v
}

/// Tolerance on logits against candle: 1e-4 of the row's logit scale (max |logit|, 20–34 here).
/// Both run f32 with different summation orders (our 16-lane FMA tree vs gemm's blocked kernels)
/// through 30 layers; rounding differences of ~1e-7 relative per op grew to at most 3e-6 of the
/// scale when measured (printed below), so 1e-4 leaves 30× margin for other CPUs yet catches any
/// real error (a wrong RoPE pairing, norm or mask moves logits by O(1)).
#[cfg(feature = "bench")]
const REL_TOL: f32 = 1e-4;

#[cfg(feature = "bench")]
#[test]
fn logits_match_candle() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let cand = CandleLlama::new(config, params).unwrap();
    let v = config.vocab;
    let mut worst = 0.0f32;
    for (pi, p) in test_prompts().iter().enumerate() {
        let ours = llama.logits_all(params, p).unwrap();
        let theirs = cand.logits_each(p).unwrap();
        let mut line = String::new();
        for (t, row) in theirs.iter().enumerate() {
            let o = &ours[t * v..(t + 1) * v];
            let (d, scale) = max_diff(o, row);
            line += &format!(" {d:.1e}");
            worst = worst.max(d / scale);
            assert!(d <= REL_TOL * scale, "prompt {pi} pos {t}: max |Δ| {d} > {REL_TOL}·{scale}");
            assert_eq!(argmax(o), argmax(row), "prompt {pi} pos {t}: argmax differs");
        }
        println!("prompt {pi} ({} tokens) max |Δlogit| per position vs candle (cached):{line}", p.len());
        let last = cand.last_logits(p).unwrap();
        let (d, scale) = max_diff(&ours[(p.len() - 1) * v..], &last);
        println!("prompt {pi}: last position vs candle full prefill: max |Δ| {d:.2e} (scale {scale:.1})");
        assert!(d <= REL_TOL * scale);
    }
    println!("worst max|Δ|/scale over all positions: {worst:.2e} (tolerance {REL_TOL:.0e})");
}

#[cfg(feature = "bench")]
#[test]
fn greedy_tokens_match_candle() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let cand = CandleLlama::new(config, params).unwrap();
    let opts = GenerateOptions { max_new_tokens: 24, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let ps = test_prompts();
    let ours = generate(&llama, params, &ps, &opts).unwrap();
    for (i, p) in ps.iter().enumerate() {
        let theirs = cand.generate_greedy(std::slice::from_ref(p), 24).unwrap();
        assert_eq!(ours[i], theirs[0], "prompt {i}");
    }
}

#[test]
fn batch_invariance_and_cached_decode_on_real_weights() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let ps = test_prompts(); // lengths 46, 42, 36, 7, 7
    let opts = GenerateOptions { max_new_tokens: 16, sampling: Sampling::Greedy, stop_tokens: vec![2] };
    let together = generate(&llama, params, &ps, &opts).unwrap();
    for (i, p) in ps.iter().enumerate() {
        let alone = generate(&llama, params, std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(alone[0], together[i], "prompt {i}: output depends on the batch");
    }
    // Bit-identical logits: all prompts in one forward vs each alone.
    let mut caches: Vec<_> = ps.iter().map(|_| llama.new_cache()).collect();
    let mut seqs: Vec<SeqInput> =
        ps.iter().zip(caches.iter_mut()).map(|(p, c)| SeqInput { tokens: p, cache: c, logits: p.len() }).collect();
    let batched = llama.forward(params, &mut seqs).unwrap();
    for (i, p) in ps.iter().enumerate() {
        assert!(
            bit_equal(batched.seq(i), &llama.logits_all(params, p).unwrap()),
            "prompt {i}: logits not bit-identical"
        );
    }
    // Cached decode == full recompute, bitwise, at every generated position.
    let p = &ps[0];
    let gen = &together[0];
    let mut cache = llama.new_cache();
    let mut rows =
        vec![llama.forward(params, &mut [SeqInput { tokens: p, cache: &mut cache, logits: 1 }]).unwrap().data];
    for &t in &gen[..gen.len() - 1] {
        rows.push(llama.forward(params, &mut [SeqInput { tokens: &[t], cache: &mut cache, logits: 1 }]).unwrap().data);
    }
    let mut full = p.clone();
    full.extend_from_slice(&gen[..gen.len() - 1]);
    let all = llama.logits_all(params, &full).unwrap();
    let v = config.vocab;
    for (j, r) in rows.iter().enumerate() {
        assert!(bit_equal(r, &all[(p.len() - 1 + j) * v..(p.len() + j) * v]), "step {j}");
    }
    println!(
        "batch invariance: tokens identical, logits bit-identical; cached decode bit-identical to recompute ({} steps)",
        rows.len()
    );
}

#[cfg(feature = "bench")]
#[test]
fn score_matches_candle_log_probs() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let cand = CandleLlama::new(config, params).unwrap();
    let g = golden();
    let pairs: Vec<(Vec<u32>, Vec<u32>)> =
        g.iter().take(3).map(|g| (g.input_ids.clone(), g.output_ids.clone())).collect();
    let s = score(&llama, params, &pairs).unwrap();
    for (i, (p, c)) in pairs.iter().enumerate() {
        let mut full = p.clone();
        full.extend_from_slice(c);
        let rows = cand.logits_each(&full[..full.len() - 1]).unwrap();
        let mut worst = 0.0f32;
        for (j, &tok) in c.iter().enumerate() {
            let z = &rows[p.len() - 1 + j];
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + z.iter().map(|&x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32;
            let d = (s[i][j] - (z[tok as usize] - lse)).abs();
            worst = worst.max(d);
            assert!(d < 1e-4, "pair {i} token {j}: {} vs {}", s[i][j], z[tok as usize] - lse);
        }
        let total: f32 = s[i].iter().sum();
        println!("pair {i}: {} tokens, log-likelihood {total:.4} nats, max |Δ| vs candle {worst:.1e}", c.len());
    }
}

/// Prompts that share the chat template's system prompt get its keys and values computed once
/// and forked; the greedy outputs must equal those of each prompt generated alone.
#[test]
fn shared_prompt_prefix_gives_identical_outputs() {
    let Some((config, params)) = default_model() else { return };
    let llama = Llama::new(config.clone(), params.layout()).unwrap();
    let ps: Vec<Vec<u32>> = test_prompts().into_iter().filter(|p| p.len() > 20).collect();
    let shared = evotune::model::generate::shared_prefix_len(&ps);
    assert!(shared >= 8, "test prompts share only {shared} tokens");
    let opts = GenerateOptions { max_new_tokens: 12, sampling: Sampling::Greedy, stop_tokens: vec![2] };
    let together = generate(&llama, params, &ps, &opts).unwrap();
    for (i, p) in ps.iter().enumerate() {
        let alone = generate(&llama, params, std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(alone[0], together[i], "prompt {i}: shared-prefix output differs from a plain prefill");
    }
}
