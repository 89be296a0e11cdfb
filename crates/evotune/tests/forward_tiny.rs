//! Forward, generation and scoring on a tiny random llama (no model file needed): candle agreement
//! (with the `bench` feature), batch invariance, cache consistency, thread-count invariance and
//! input errors.

mod support;

use evotune::model::generate::generate;
use evotune::model::llama::SeqInput;
use evotune::model::score::{log_distributions, score};
use evotune::model::{GenerateOptions, Layout, Llama, Sampling};
use evotune::Error;
use support::{bit_equal, tiny_model};
// For the comparison with candle.
#[cfg(feature = "bench")]
use {evotune::model::candle_ref::CandleLlama, support::max_diff};

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_new_tokens: n, sampling: Sampling::Greedy, stop_tokens: vec![] }
}

fn prompts() -> Vec<Vec<u32>> {
    vec![
        vec![5, 17, 3, 88, 42, 1, 9],
        vec![60],
        vec![11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
        vec![96, 0, 50],
    ]
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let (config, params) = tiny_model(false, true);
    let mut l = Layout::new();
    for t in params.layout().tensors() {
        if t.name != "model.layers.1.mlp.up_proj.weight" {
            l.push(t.name.clone(), t.shape.clone());
        }
    }
    match Llama::new(config.clone(), &l) {
        Err(Error::LayoutMissingTensor { tensor, .. }) => assert_eq!(tensor, "model.layers.1.mlp.up_proj.weight"),
        other => panic!("expected LayoutMissingTensor, got {:?}", other.err()),
    }
    let mut l = Layout::new();
    for t in params.layout().tensors() {
        let shape = if t.name.ends_with("2.self_attn.k_proj.weight") { vec![48, 48] } else { t.shape.clone() };
        l.push(t.name.clone(), shape);
    }
    let e = Llama::new(config.clone(), &l).expect_err("shape error");
    assert!(
        matches!(&e, Error::LayoutTensorShape { tensor, expected, found }
        if tensor == "model.layers.2.self_attn.k_proj.weight" && expected == &vec![16, 48] && found == &vec![48, 48]),
        "{e}"
    );
    // untied model without lm_head
    let (config, params) = tiny_model(false, false);
    let mut l = Layout::new();
    for t in params.layout().tensors().iter().filter(|t| t.name != "lm_head.weight") {
        l.push(t.name.clone(), t.shape.clone());
    }
    assert!(
        matches!(Llama::new(config, &l), Err(Error::LayoutMissingTensor { tensor, .. }) if tensor == "lm_head.weight")
    );
}

#[cfg(feature = "bench")]
#[test]
fn tiny_logits_match_candle() {
    for tied in [true, false] {
        let (config, params) = tiny_model(false, tied);
        let llama = Llama::new(config.clone(), params.layout()).unwrap();
        let cand = CandleLlama::new(&config, &params).unwrap();
        for p in prompts() {
            let ours = llama.logits_all(&params, &p).unwrap();
            let theirs = cand.logits_each(&p).unwrap();
            for (t, row) in theirs.iter().enumerate() {
                let (d, scale) = max_diff(&ours[t * 97..(t + 1) * 97], row);
                // f32 with different summation orders through 3 layers: a few ulps of the logit scale.
                assert!(d <= 1e-5 * scale.max(1.0), "tied={tied} pos {t}: max |Δ| {d} (scale {scale})");
            }
            let last = cand.last_logits(&p).unwrap();
            let (d, scale) = max_diff(&ours[(p.len() - 1) * 97..], &last);
            assert!(d <= 1e-5 * scale.max(1.0), "full prefill: {d}");
        }
    }
}

#[test]
fn batch_invariance_and_cache_consistency() {
    for (bias, tied) in [(false, true), (true, false)] {
        let (config, params) = tiny_model(bias, tied);
        let llama = Llama::new(config, params.layout()).unwrap();
        let ps = prompts();
        let together = generate(&llama, &params, &ps, &greedy(20)).unwrap();
        for (i, p) in ps.iter().enumerate() {
            let alone = generate(&llama, &params, std::slice::from_ref(p), &greedy(20)).unwrap();
            assert_eq!(alone[0], together[i], "prompt {i}: batch changed the greedy output");
            assert_eq!(alone[0].len(), 20);
            // Cached decode == full recompute: logits of prompt ++ generated, all positions at once,
            // pick the same tokens, with bit-identical logits at the generated positions.
            let mut full = p.clone();
            full.extend_from_slice(&alone[0]);
            let all = llama.logits_all(&params, &full).unwrap();
            for (j, &tok) in alone[0].iter().enumerate() {
                let row = &all[(p.len() - 1 + j) * 97..(p.len() + j) * 97];
                assert_eq!(evotune::model::generate::argmax(row), tok, "prompt {i} step {j}");
            }
        }
        // Bit-identical logits: prefill of each prompt alone vs all in one batch.
        let mut caches: Vec<_> = ps.iter().map(|_| llama.new_cache()).collect();
        let mut seqs: Vec<SeqInput> =
            ps.iter().zip(caches.iter_mut()).map(|(p, c)| SeqInput { tokens: p, cache: c, logits: p.len() }).collect();
        let batched = llama.forward(&params, &mut seqs).unwrap();
        for (i, p) in ps.iter().enumerate() {
            assert!(bit_equal(batched.seq(i), &llama.logits_all(&params, p).unwrap()), "prompt {i}");
        }
        // Decoding one token with the cache == recomputing the whole sequence (bitwise).
        let mut cache = llama.new_cache();
        let p = &ps[0];
        llama.forward(&params, &mut [SeqInput { tokens: &p[..4], cache: &mut cache, logits: 0 }]).unwrap();
        llama.forward(&params, &mut [SeqInput { tokens: &p[4..6], cache: &mut cache, logits: 0 }]).unwrap();
        let l = llama.forward(&params, &mut [SeqInput { tokens: &p[6..], cache: &mut cache, logits: 1 }]).unwrap();
        let all = llama.logits_all(&params, p).unwrap();
        assert!(bit_equal(l.row(0, 0), &all[(p.len() - 1) * 97..]));
        assert_eq!(cache.len(), p.len());
    }
}

#[test]
fn a_shared_prefix_cache_reads_like_a_copied_one() {
    use evotune::model::kv_cache::KvCache;
    use std::sync::Arc;
    let (config, params) = tiny_model(true, false);
    let llama = Llama::new(config, params.layout()).unwrap();
    let p = &prompts()[0];
    let all = llama.logits_all(&params, p).unwrap();
    let mut prefix = llama.new_cache();
    llama.forward(&params, &mut [SeqInput { tokens: &p[..3], cache: &mut prefix, logits: 0 }]).unwrap();
    let prefix = Arc::new(prefix);
    // Two sequences after one shared prefix, in one batch: every logit row as the plain forward's.
    let (mut a, mut b) = (KvCache::after(&prefix, p.len()), KvCache::after(&prefix, p.len()));
    assert_eq!((a.len(), a.prefix_len()), (3, 3));
    let mut seqs = [
        SeqInput { tokens: &p[3..5], cache: &mut a, logits: 2 },
        SeqInput { tokens: &p[3..], cache: &mut b, logits: p.len() - 3 },
    ];
    let l = llama.forward(&params, &mut seqs).unwrap();
    assert!(bit_equal(l.seq(0), &all[3 * 97..5 * 97]));
    assert!(bit_equal(l.seq(1), &all[3 * 97..]));
    // A fork of a prefixed cache keeps reading the prefix; decoding on it matches too.
    let mut c = a.fork(p.len());
    let l = llama.forward(&params, &mut [SeqInput { tokens: &p[5..], cache: &mut c, logits: 1 }]).unwrap();
    assert!(bit_equal(l.row(0, 0), &all[(p.len() - 1) * 97..]));
    // Cutting into the prefix copies what stays of it; refeeding the cut tokens gives the same rows.
    c.truncate(2);
    assert_eq!((c.len(), c.prefix_len()), (2, 0));
    let l = llama.forward(&params, &mut [SeqInput { tokens: &p[2..], cache: &mut c, logits: p.len() - 2 }]).unwrap();
    assert!(bit_equal(l.seq(0), &all[2 * 97..]));
    // A cache after a prefixed cache shares the first prefix and copies the rest.
    let d = KvCache::after(&Arc::new(a), p.len());
    assert_eq!((d.len(), d.prefix_len()), (5, 5));
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (config, params) = tiny_model(true, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut caches: Vec<_> = prompts().iter().map(|_| llama.new_cache()).collect();
            let ps = prompts();
            let mut seqs: Vec<SeqInput> = ps
                .iter()
                .zip(caches.iter_mut())
                .map(|(p, c)| SeqInput { tokens: p, cache: c, logits: p.len() })
                .collect();
            llama.forward(&params, &mut seqs).unwrap().data
        })
    };
    let one = run(1);
    for t in [2, 3, 5] {
        assert!(bit_equal(&one, &run(t)), "{t} threads");
    }
}

#[test]
fn score_is_teacher_forced_log_softmax() {
    let (config, params) = tiny_model(false, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let pairs = vec![(vec![5, 17, 3], vec![88, 42, 1]), (vec![60], vec![]), (vec![1, 2], vec![7])];
    let s = score(&llama, &params, &pairs).unwrap();
    let ld = log_distributions(&llama, &params, &pairs).unwrap();
    assert_eq!(s[1], Vec::<f32>::new());
    assert_eq!(ld[1].len(), 0);
    for (i, (p, c)) in pairs.iter().enumerate() {
        let mut full = p.clone();
        full.extend_from_slice(c);
        let all = llama.logits_all(&params, &full).unwrap();
        assert_eq!(s[i].len(), c.len());
        for (j, &tok) in c.iter().enumerate() {
            let row = &all[(p.len() - 1 + j) * 97..(p.len() + j) * 97];
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + row.iter().map(|&x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32;
            assert!((s[i][j] - (row[tok as usize] - lse)).abs() < 1e-5, "pair {i} token {j}");
            assert!(s[i][j] < 0.0);
            let total: f64 = ld[i][j].iter().map(|&x| (x as f64).exp()).sum();
            assert!((total - 1.0).abs() < 1e-5, "row sums to {total}");
            assert_eq!(ld[i][j][tok as usize], s[i][j]);
        }
    }
}

#[test]
fn shared_prompts_score_like_one_plain_forward_per_pair() {
    // Multiple-choice shape: a long common prefix, several questions, several choices each (one of
    // them a single token, one empty), so all three levels of sharing are used.
    let (config, params) = tiny_model(false, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let system: Vec<u32> = (20..32).collect();
    let mut pairs = Vec::new();
    for q in [vec![40, 41, 42], vec![50], vec![60, 61, 62, 63, 64]] {
        let prompt: Vec<u32> = system.iter().chain(&q).copied().collect();
        for c in [vec![7, 8, 9], vec![3], vec![], vec![90, 1]] {
            pairs.push((prompt.clone(), c));
        }
    }
    let s = score(&llama, &params, &pairs).unwrap();
    let ld = log_distributions(&llama, &params, &pairs).unwrap();
    for (i, (p, c)) in pairs.iter().enumerate() {
        assert_eq!(s[i].len(), c.len(), "pair {i}");
        if c.is_empty() {
            continue;
        }
        // The unshared computation: prompt ++ c[..C−1] in one forward, logits at the last C rows.
        let mut full = p.clone();
        full.extend_from_slice(&c[..c.len() - 1]);
        let mut cache = llama.new_cache();
        let logits =
            llama.forward(&params, &mut [SeqInput { tokens: &full, cache: &mut cache, logits: c.len() }]).unwrap();
        let alone = score(&llama, &params, &[(p.clone(), c.clone())]).unwrap();
        assert_eq!(s[i], alone[0], "pair {i}: scored in a batch vs alone");
        for (j, &tok) in c.iter().enumerate() {
            let row = logits.row(0, j);
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + row.iter().map(|&x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32;
            assert_eq!(s[i][j].to_bits(), (row[tok as usize] - lse).to_bits(), "pair {i} token {j}");
            assert_eq!(ld[i][j][tok as usize].to_bits(), s[i][j].to_bits(), "pair {i} token {j}");
        }
    }
}

#[test]
fn input_errors() {
    let (config, params) = tiny_model(false, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let e = generate(&llama, &params, &[vec![1, 2], vec![]], &greedy(3)).unwrap_err();
    assert!(matches!(e, Error::EmptyPrompt { index: 1 }), "{e}");
    let e = generate(&llama, &params, &[vec![1; 60]], &greedy(5)).unwrap_err();
    assert!(matches!(e, Error::ContextOverflow { index: 0, len: 65, max: 64 }), "{e}");
    let e = generate(&llama, &params, &[vec![1, 2], vec![3, 97]], &greedy(3)).unwrap_err();
    assert!(matches!(e, Error::TokenOutOfRange { index: 1, token: 97, vocab: 97 }), "{e}");
    let e = score(&llama, &params, &[(vec![1], vec![]), (vec![1; 40], vec![2; 30])]).unwrap_err();
    assert!(matches!(e, Error::ContextOverflow { index: 1, len: 69, max: 64 }), "{e}");
    let e = score(&llama, &params, &[(vec![1], vec![2]), (vec![1], vec![200])]).unwrap_err();
    assert!(matches!(e, Error::TokenOutOfRange { index: 1, token: 200, .. }), "{e}");
    // A cache from another model is refused, not indexed out of bounds.
    let (c2, _) = tiny_model(true, true);
    let mut other = evotune::model::kv_cache::KvCache::new(&evotune::model::ModelConfig { layers: 2, ..c2 });
    let e = llama.forward(&params, &mut [SeqInput { tokens: &[1], cache: &mut other, logits: 1 }]).unwrap_err();
    assert!(matches!(e, Error::KvCacheMismatch { index: 0, .. }), "{e}");
    let mut cache = llama.new_cache();
    let e = llama.forward(&params, &mut [SeqInput { tokens: &[1], cache: &mut cache, logits: 2 }]).unwrap_err();
    assert!(matches!(e, Error::ForwardInput { index: 0, .. }), "{e}");
    // Zero new tokens and empty batches are fine.
    assert_eq!(generate(&llama, &params, &[vec![1]], &greedy(0)).unwrap(), vec![Vec::<u32>::new()]);
    assert!(generate(&llama, &params, &[], &greedy(4)).unwrap().is_empty());
}

#[test]
fn stop_tokens_and_sampling() {
    let (config, params) = tiny_model(false, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let ps = prompts();
    let free = generate(&llama, &params, &ps, &greedy(12)).unwrap();
    // Stop on the 4th generated token of prompt 0: output is the first 3, others cut where it appears.
    let stop = free[0][3];
    let opts = GenerateOptions { max_new_tokens: 12, sampling: Sampling::Greedy, stop_tokens: vec![stop] };
    let stopped = generate(&llama, &params, &ps, &opts).unwrap();
    for (f, s) in free.iter().zip(&stopped) {
        let cut = f.iter().position(|&t| t == stop).unwrap_or(f.len());
        assert_eq!(s, &f[..cut].to_vec());
    }
    let samp = |seed| GenerateOptions {
        max_new_tokens: 12,
        sampling: Sampling::Sample { temperature: 1.5, top_p: 0.95, seed },
        stop_tokens: vec![],
    };
    let a = generate(&llama, &params, &ps, &samp(1)).unwrap();
    assert_eq!(a, generate(&llama, &params, &ps, &samp(1)).unwrap(), "same seed, same tokens");
    assert_ne!(a, generate(&llama, &params, &ps, &samp(2)).unwrap(), "another seed, other tokens");
    assert_ne!(a, free, "temperature 1.5 departs from greedy");
    let t0 = GenerateOptions {
        max_new_tokens: 12,
        sampling: Sampling::Sample { temperature: 0.0, top_p: 1.0, seed: 3 },
        stop_tokens: vec![],
    };
    assert_eq!(generate(&llama, &params, &ps, &t0).unwrap(), free, "temperature 0 is greedy");
}

#[test]
fn params_of_another_layout_are_refused() {
    let (config, params) = tiny_model(false, true);
    let llama = Llama::new(config, params.layout()).unwrap();
    let (_, with_bias) = tiny_model(true, true); // q/k/v biases shift every later tensor id
    let mut cache = llama.new_cache();
    let e = llama.forward(&with_bias, &mut [SeqInput { tokens: &[1, 2], cache: &mut cache, logits: 1 }]).unwrap_err();
    assert!(matches!(e, Error::LayoutMissingTensor { .. }), "{e}");
    assert_eq!(cache.len(), 0, "a refused forward leaves the cache untouched");
}
