//! Every layer's backward, and the whole model's, against central finite differences in f64.

use super::layers::{self as ly, AttnShape};
use super::pass::{self, TrainSeq};
use crate::model::safetensors::hf_layout;
use crate::model::{Llama, ModelConfig};

/// Deterministic values in (−1, 1) (SplitMix64).
fn randn(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Checks `grad` = ∂loss/∂x at every index against (loss(x + h) − loss(x − h)) / 2h.
fn check(name: &str, loss: impl Fn(&[f64]) -> f64, x: &[f64], grad: &[f64]) {
    assert_eq!(x.len(), grad.len(), "{name}: gradient length");
    let h = 1e-6;
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&a) - loss(&b)) / (2.0 * h);
        let err = (fd - grad[i]).abs() / fd.abs().max(1e-2);
        worst = worst.max(err);
        assert!(err < 1e-6, "{name}[{i}]: backward {} vs finite difference {fd}", grad[i]);
    }
    assert!(grad.iter().any(|g| g.abs() > 1e-4), "{name}: gradient is all (near) zero");
    eprintln!("{name}: {} entries, worst relative error {worst:.1e}", x.len());
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn rmsnorm() {
    let (t, d) = (3, 8);
    let (x, w, dy) = (randn(t * d, 1), randn(d, 2), randn(t * d, 3));
    let fwd = |x: &[f64], w: &[f64]| {
        let (mut y, mut r) = (vec![0.0; t * d], vec![0.0; t]);
        ly::rmsnorm_forward(&mut y, &mut r, x, w, d, 1e-5);
        (y, r)
    };
    let (_, r) = fwd(&x, &w);
    let (mut dx, mut dw) = (vec![0.0; t * d], vec![0.0; d]);
    ly::rmsnorm_backward(&mut dx, &mut dw, &dy, &x, &r, &w, d);
    check("rmsnorm dx", |x| dot(&fwd(x, &w).0, &dy), &x, &dx);
    check("rmsnorm dw", |w| dot(&fwd(&x, w).0, &dy), &w, &dw);
}

#[test]
fn matmul_and_bias() {
    let (t, k, o) = (3, 5, 4);
    let (x, w, b, dy) = (randn(t * k, 4), randn(o * k, 5), randn(o, 6), randn(t * o, 7));
    let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; t * o];
        ly::matmul_forward(&mut y, x, w, Some(b), t, k, o);
        dot(&y, &dy)
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; t * k], vec![0.0; o * k], vec![0.0; o]);
    ly::matmul_backward(&mut dx, &mut dw, &dy, &x, &w, t, k, o);
    ly::bias_backward(&mut db, &dy);
    check("matmul dx", |x| fwd(x, &w, &b), &x, &dx);
    check("matmul dw", |w| fwd(&x, w, &b), &w, &dw);
    check("bias db", |b| fwd(&x, &w, b), &b, &db);
}

#[test]
fn transpose_in_tiles() {
    for (r, c) in [(1, 1), (3, 70), (70, 3), (33, 65), (64, 32)] {
        let a: Vec<f64> = (0..r * c).map(|x| x as f64).collect();
        let b = ly::transpose(&a, r, c);
        for i in 0..r {
            for j in 0..c {
                assert_eq!(b[j * r + i], a[i * c + j], "({r}, {c}) at ({i}, {j})");
            }
        }
    }
}

#[test]
fn rope() {
    let (t, heads, dh) = (3, 2, 4);
    let angles = randn(t * dh / 2, 8);
    let cos: Vec<f64> = angles.iter().map(|a| (a * 3.0).cos()).collect();
    let sin: Vec<f64> = angles.iter().map(|a| (a * 3.0).sin()).collect();
    let (x, dy) = (randn(t * heads * dh, 9), randn(t * heads * dh, 10));
    let fwd = |x: &[f64]| {
        let mut y = x.to_vec();
        ly::rope_forward(&mut y, &cos, &sin, heads, dh);
        dot(&y, &dy)
    };
    let mut dx = dy.clone();
    ly::rope_backward(&mut dx, &cos, &sin, heads, dh);
    check("rope dx", fwd, &x, &dx);
}

#[test]
fn attention_with_gqa_and_window() {
    let spans = [(0, 3), (3, 7)];
    let tt = 7;
    for window in [usize::MAX, 2] {
        let a = AttnShape { heads: 4, kv_heads: 2, head_dim: 4, scale: 0.5, window };
        let (qd, kvd) = (16, 8);
        let (q, k, v, dy) = (randn(tt * qd, 11), randn(tt * kvd, 12), randn(tt * kvd, 13), randn(tt * qd, 14));
        let n_probs = *ly::probs_offsets(&spans, a.heads).last().unwrap();
        let fwd = |q: &[f64], k: &[f64], v: &[f64]| {
            let (mut out, mut p) = (vec![0.0; tt * qd], vec![0.0; n_probs]);
            ly::attention_forward(&mut out, &mut p, q, k, v, &spans, a);
            (out, p)
        };
        let (_, probs) = fwd(&q, &k, &v);
        let (mut dq, mut dk, mut dv) = (vec![0.0; tt * qd], vec![0.0; tt * kvd], vec![0.0; tt * kvd]);
        ly::attention_backward(&mut dq, &mut dk, &mut dv, &dy, &probs, &q, &k, &v, &spans, a);
        check("attention dq", |q| dot(&fwd(q, &k, &v).0, &dy), &q, &dq);
        check("attention dk", |k| dot(&fwd(&q, k, &v).0, &dy), &k, &dk);
        check("attention dv", |v| dot(&fwd(&q, &k, v).0, &dy), &v, &dv);
    }
}

#[test]
fn swiglu() {
    let n = 12;
    let (g, u, dy) = (randn(n, 15), randn(n, 16), randn(n, 17));
    let fwd = |g: &[f64], u: &[f64]| {
        let mut h = vec![0.0; n];
        ly::swiglu_forward(&mut h, &g.iter().map(|x| x * 3.0).collect::<Vec<_>>(), u);
        dot(&h, &dy)
    };
    let g3: Vec<f64> = g.iter().map(|x| x * 3.0).collect();
    let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
    ly::swiglu_backward(&mut dg, &mut du, &dy, &g3, &u);
    let dg: Vec<f64> = dg.iter().map(|x| x * 3.0).collect();
    check("swiglu dg", |g| fwd(g, &u), &g, &dg);
    check("swiglu du", |u| fwd(&g, u), &u, &du);
}

#[test]
fn token_logprobs_and_embedding() {
    let (r, v) = (3, 7);
    let targets = [2u32, 6, 0];
    let (z, c) = (randn(r * v, 18), randn(r, 19));
    let fwd = |z: &[f64]| -> f64 {
        let lp: Vec<f64> = ly::token_logprobs(z, &targets, 0.7, v).into_iter().map(|p| p.0).collect();
        dot(&lp, &c)
    };
    let lse: Vec<f64> = ly::token_logprobs(&z, &targets, 0.7, v).into_iter().map(|p| p.1).collect();
    let mut dz = z.clone();
    ly::token_logprobs_backward(&mut dz, &c, &targets, &lse, 0.7, v);
    check("logprob dz", fwd, &z, &dz);

    let (d, tokens) = (3, [1u32, 0, 1, 4]);
    let (table, dy) = (randn(5 * d, 20), randn(tokens.len() * d, 21));
    let mut dtable = vec![0.0; 5 * d];
    ly::embedding_backward(&mut dtable, &dy, &tokens, d);
    let fwd = |e: &[f64]| {
        let mut x = vec![0.0; tokens.len() * d];
        ly::embedding_forward(&mut x, e, &tokens, d);
        dot(&x, &dy)
    };
    check("embedding dE", fwd, &table, &dtable);
}

/// A random model with every switch the backward supports: GQA, q/k/v biases, per-head q/k norms,
/// a sliding window, tied or untied head.
fn tiny(tied: bool, qwen3: bool) -> (Llama, Vec<f64>) {
    let config = ModelConfig {
        architecture: if qwen3 { "qwen3" } else { "qwen2" }.into(),
        hidden: 8,
        ffn: 12,
        layers: 2,
        heads: 2,
        kv_heads: 1,
        head_dim: 4,
        vocab: 11,
        context: 64,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        tied_embeddings: tied,
        qkv_bias: !qwen3,
        qk_norm: qwen3,
        rope_scaling: None,
        sliding_window: if qwen3 { None } else { Some(3) },
        gemma: None,
    };
    let layout = hf_layout(&config);
    let mut w = randn(layout.total(), 22);
    // Norm weights near 1, as trained models have them.
    for t in layout.tensors().iter().filter(|t| t.shape.len() == 1 && t.name.contains("norm")) {
        w[t.range()].iter_mut().for_each(|x| *x = 1.0 + 0.3 * *x);
    }
    (Llama::new(config, &layout).unwrap(), w)
}

#[test]
fn whole_model_gradient_of_logprobs() {
    for (tied, qwen3) in [(true, false), (false, true)] {
        let (llama, w) = tiny(tied, qwen3);
        let layout = hf_layout(&llama.config);
        let (s1, s2) = ([3u32, 1, 4, 1, 5, 9], [2u32, 6, 5, 3, 5]);
        let seqs = [TrainSeq { tokens: &s1, scored_from: 2 }, TrainSeq { tokens: &s2, scored_from: 1 }];
        let n_scored = 4 + 4;
        let coef = randn(n_scored, 23);
        let loss = |w: &[f64]| {
            let (lp, _) = pass::forward(&llama, &layout, w, &seqs, 0.8, false).unwrap();
            dot(&lp, &coef)
        };
        let (lp, tape) = pass::forward(&llama, &layout, &w, &seqs, 0.8, true).unwrap();
        assert_eq!(lp.len(), n_scored);
        let mut grad = vec![0.0; w.len()];
        pass::backward(&llama, &layout, &w, tape.unwrap(), &coef, &mut grad);
        check(&format!("model (tied {tied}, qwen3 {qwen3})"), loss, &w, &grad);
        // Every tensor gets a gradient.
        for t in layout.tensors() {
            assert!(grad[t.range()].iter().any(|g| *g != 0.0), "{} has no gradient", t.name);
        }
    }
}

#[test]
fn f32_gradients_match_f64_and_do_not_depend_on_threads() {
    let (llama, w) = tiny(true, false);
    let layout = hf_layout(&llama.config);
    let toks = [3u32, 1, 4, 1, 5, 9, 2, 6];
    let seqs = [TrainSeq { tokens: &toks, scored_from: 3 }];
    let coef = randn(5, 24);
    let grad64 = {
        let (_, tape) = pass::forward(&llama, &layout, &w, &seqs, 1.0, true).unwrap();
        let mut g = vec![0.0; w.len()];
        pass::backward(&llama, &layout, &w, tape.unwrap(), &coef, &mut g);
        g
    };
    let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    let c32: Vec<f32> = coef.iter().map(|&x| x as f32).collect();
    let run32 = |threads: usize| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let (_, tape) = pass::forward(&llama, &layout, &w32, &seqs, 1.0, true).unwrap();
            let mut g = vec![0.0f32; w.len()];
            pass::backward(&llama, &layout, &w32, tape.unwrap(), &c32, &mut g);
            g
        })
    };
    let (g1, g2) = (run32(1), run32(3));
    assert_eq!(g1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), g2.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let scale = grad64.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let worst = g1.iter().zip(&grad64).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5 * scale, "f32 vs f64: {worst} (scale {scale})");
}
