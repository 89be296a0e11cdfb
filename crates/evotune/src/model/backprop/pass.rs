//! The whole model's training pass: a forward over full sequences that keeps what the backward
//! needs (the tape), the log-probabilities of the scored tokens, and the backward that turns
//! ∂loss/∂logp into ∂loss/∂θ for every parameter (tied embeddings get both their gradients).
//!
//! ```text
//! forward (per block, the tape in brackets)          backward, in reverse
//! [x_in] xn1 = rmsnorm(x_in)·w      [rstd1, xn1]     dx += rmsnorm_bwd(dxn1)
//! q, k, v = xn1·Wᵀ (+b)                              dxn1 = Σ dq·Wq + …, dW += dyᵀ·xn1
//! [q_raw, k_raw] qk-norm (Qwen3)    [rstd_q, rstd_k] dq_raw = rmsnorm_bwd(dq)
//! q, k = rope(q, k)                                  dq, dk = ropeᵀ(dq, dk)
//! [q, k, v] a = attention(q, k, v)  [probs]          dq, dk, dv = attention_bwd(da)
//! [a] x_mid = x_in + a·Woᵀ                           da = dx·Wo, dWo += dxᵀ·a
//! [x_mid] xn2 = rmsnorm(x_mid)·w    [rstd2, xn2]     dx += rmsnorm_bwd(dxn2)
//! [g, u] h = silu(g)·u, g, u = xn2·Wgateᵀ, xn2·Wupᵀ  dg, du = swiglu_bwd(dh)
//! [h] x_out = x_mid + h·Wdownᵀ                       dh = dx·Wdown, dWdown += dxᵀ·h
//! logits of the scored rows = rmsnorm(x)·w·Wheadᵀ    dz = c·(onehot − softmax)/τ
//! ```
//!
//! Sequences are whole (position 0 onward, no KV cache) and flattened into one (T, D) activation,
//! as in the inference forward. Gemma 3 is not supported here (its extra norms and GeGLU have no
//! backward yet): [`check_supported`] says so.

use crate::error::{Error, Result};
use crate::model::{Layout, Llama};

use super::layers::{self as ly, AttnShape};
use super::real::Real;

/// One sequence of a training pass: the scored tokens are `tokens[scored_from..]`, each predicted
/// by the row before it (`scored_from ≥ 1`).
#[derive(Clone, Copy, Debug)]
pub struct TrainSeq<'a> {
    pub tokens: &'a [u32],
    pub scored_from: usize,
}

/// What one block's backward reads.
struct BlockTape<R> {
    x_in: Vec<R>,
    rstd1: Vec<R>,
    xn1: Vec<R>,
    /// Qwen3: q and k before their per-head norms, and the norms' 1/rms.
    qk_raw: Option<[(Vec<R>, Vec<R>); 2]>,
    q: Vec<R>,
    k: Vec<R>,
    v: Vec<R>,
    probs: Vec<R>,
    att: Vec<R>,
    x_mid: Vec<R>,
    rstd2: Vec<R>,
    xn2: Vec<R>,
    g: Vec<R>,
    u: Vec<R>,
    h: Vec<R>,
}

/// The forward's record for [`backward`]. Its size is ≈ (5D + 3F + …)·T per block, so callers bound
/// T by micro-batching.
pub struct Tape<R> {
    tokens: Vec<u32>,
    spans: Vec<(usize, usize)>,
    /// Row of each scored token's logits, and the token.
    rows: Vec<usize>,
    targets: Vec<u32>,
    temperature: f64,
    /// Per RoPE table: cos and sin of every row, (T, Dh/2) each.
    rope: Vec<(Vec<R>, Vec<R>)>,
    blocks: Vec<BlockTape<R>>,
    xr: Vec<R>,
    rstd_f: Vec<R>,
    xn_f: Vec<R>,
    logits: Vec<R>,
    lse: Vec<R>,
}

/// An error unless the training pass supports this model's family.
pub fn check_supported(llama: &Llama) -> Result<()> {
    if llama.config.gemma.is_some() {
        return Err(Error::BadModelConfig {
            field: "architecture",
            problem: "the backward pass (GRPO) supports the Llama, Mistral and Qwen families, not Gemma 3".into(),
        });
    }
    Ok(())
}

fn tensor<'a, R>(w: &'a [R], layout: &Layout, id: usize) -> &'a [R] {
    &w[layout.info(id).range()]
}

fn tensor_mut<'a, R>(w: &'a mut [R], layout: &Layout, id: usize) -> &'a mut [R] {
    &mut w[layout.info(id).range()]
}

/// Forward over `seqs` with weights `w` (flat, in `layout`): log π(token) at temperature τ of every
/// scored token, sequences in order. With `keep`, also the tape for [`backward`].
pub fn forward<R: Real>(
    llama: &Llama,
    layout: &Layout,
    w: &[R],
    seqs: &[TrainSeq<'_>],
    temperature: f64,
    keep: bool,
) -> Result<(Vec<R>, Option<Tape<R>>)> {
    check_supported(llama)?;
    let c = &llama.config;
    let (embed, blocks, final_norm, lm_head) = llama.ids();
    let (d, h, hkv, dh, f, v) = (c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab);
    let (qd, kvd, half) = (h * dh, hkv * dh, dh / 2);
    let eps = c.rms_eps as f64;

    let mut tokens = Vec::new();
    let mut spans = Vec::with_capacity(seqs.len());
    let mut pos = Vec::new();
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (i, s) in seqs.iter().enumerate() {
        let n = s.tokens.len();
        if s.scored_from == 0 || s.scored_from > n || n > c.context {
            return Err(Error::ForwardInput {
                index: i,
                problem: format!("{n} tokens scored from {} (context {})", s.scored_from, c.context),
            });
        }
        if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= v) {
            return Err(Error::TokenOutOfRange { index: i, token: t, vocab: v });
        }
        let r0 = tokens.len();
        tokens.extend_from_slice(s.tokens);
        pos.extend(0..n);
        spans.push((r0, r0 + n));
        for p in s.scored_from..n {
            rows.push(r0 + p - 1);
            targets.push(s.tokens[p]);
        }
    }
    let tt = tokens.len();
    let (inv_freqs, layer_rope) = llama.rope_tables();
    let rope: Vec<(Vec<R>, Vec<R>)> = inv_freqs
        .iter()
        .map(|inv| {
            let angle = |t: usize, i: usize| pos[t] as f64 * inv[i] as f64;
            let cos = (0..tt * half).map(|j| R::from_f64(angle(j / half, j % half).cos())).collect();
            let sin = (0..tt * half).map(|j| R::from_f64(angle(j / half, j % half).sin())).collect();
            (cos, sin)
        })
        .collect();
    let t_of = |id| tensor(w, layout, id);

    let mut x = vec![R::ZERO; tt * d];
    ly::embedding_forward(&mut x, t_of(embed), &tokens, d);
    let mut tapes = Vec::new();
    for (l, b) in blocks.iter().enumerate() {
        let x_in = x.clone();
        let (mut rstd1, mut xn1) = (vec![R::ZERO; tt], vec![R::ZERO; tt * d]);
        ly::rmsnorm_forward(&mut xn1, &mut rstd1, &x_in, t_of(b.attn_norm), d, eps);
        let (mut q, mut k, mut vv) = (vec![R::ZERO; tt * qd], vec![R::ZERO; tt * kvd], vec![R::ZERO; tt * kvd]);
        let bias = |i: usize| b.qkv_bias.map(|bs| t_of(bs[i]));
        ly::matmul_forward(&mut q, &xn1, t_of(b.q), bias(0), tt, d, qd);
        ly::matmul_forward(&mut k, &xn1, t_of(b.k), bias(1), tt, d, kvd);
        ly::matmul_forward(&mut vv, &xn1, t_of(b.v), bias(2), tt, d, kvd);
        let qk_raw = b.qk_norm.map(|[nq, nk]| {
            let norm = |x: &mut Vec<R>, wn: usize, heads: usize| {
                let raw = x.clone();
                let mut rstd = vec![R::ZERO; tt * heads];
                ly::rmsnorm_forward(x, &mut rstd, &raw, t_of(wn), dh, eps);
                (raw, rstd)
            };
            [norm(&mut q, nq, h), norm(&mut k, nk, hkv)]
        });
        let (cos, sin) = &rope[layer_rope[l]];
        ly::rope_forward(&mut q, cos, sin, h, dh);
        ly::rope_forward(&mut k, cos, sin, hkv, dh);
        let shape = attn_shape(llama, l);
        let mut probs = vec![R::ZERO; *ly::probs_offsets(&spans, h).last().unwrap()];
        let mut att = vec![R::ZERO; tt * qd];
        ly::attention_forward(&mut att, &mut probs, &q, &k, &vv, &spans, shape);
        let mut proj = vec![R::ZERO; tt * d];
        ly::matmul_forward(&mut proj, &att, t_of(b.o), None, tt, qd, d);
        ly::add_into(&mut x, &proj);
        let x_mid = x.clone();
        let (mut rstd2, mut xn2) = (vec![R::ZERO; tt], vec![R::ZERO; tt * d]);
        ly::rmsnorm_forward(&mut xn2, &mut rstd2, &x_mid, t_of(b.mlp_norm), d, eps);
        let (mut g, mut u, mut hh) = (vec![R::ZERO; tt * f], vec![R::ZERO; tt * f], vec![R::ZERO; tt * f]);
        ly::matmul_forward(&mut g, &xn2, t_of(b.gate), None, tt, d, f);
        ly::matmul_forward(&mut u, &xn2, t_of(b.up), None, tt, d, f);
        ly::swiglu_forward(&mut hh, &g, &u);
        ly::matmul_forward(&mut proj, &hh, t_of(b.down), None, tt, f, d);
        ly::add_into(&mut x, &proj);
        if keep {
            tapes.push(BlockTape { x_in, rstd1, xn1, qk_raw, q, k, v: vv, probs, att, x_mid, rstd2, xn2, g, u, h: hh });
        }
    }
    let nr = rows.len();
    let mut xr = vec![R::ZERO; nr * d];
    for (dst, &r) in xr.chunks_mut(d).zip(&rows) {
        dst.copy_from_slice(&x[r * d..(r + 1) * d]);
    }
    let (mut rstd_f, mut xn_f) = (vec![R::ZERO; nr], vec![R::ZERO; nr * d]);
    ly::rmsnorm_forward(&mut xn_f, &mut rstd_f, &xr, t_of(final_norm), d, eps);
    let mut logits = vec![R::ZERO; nr * v];
    ly::matmul_forward(&mut logits, &xn_f, t_of(lm_head), None, nr, d, v);
    let (logp, lse): (Vec<R>, Vec<R>) = ly::token_logprobs(&logits, &targets, temperature, v).into_iter().unzip();
    let tape = keep.then_some(Tape {
        tokens,
        spans,
        rows,
        targets,
        temperature,
        rope,
        blocks: tapes,
        xr,
        rstd_f,
        xn_f,
        logits,
        lse,
    });
    Ok((logp, tape))
}

/// FLOPs (2 per multiply-add) of one [`forward`] over `seqs`: the matrices of every block on every
/// token, the attention's scores and weighted sums over the attended positions, and the head on the
/// scored rows. The backward does twice the forward's multiply-adds (dx and dW of each product).
pub fn forward_flops(llama: &Llama, seqs: &[TrainSeq<'_>]) -> f64 {
    let c = &llama.config;
    let (d, qd, kvd, f, v) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim, c.ffn, c.vocab);
    let per_token = (d * (qd + 2 * kvd) + qd * d + 3 * d * f) as f64;
    let mut macs = 0.0;
    for s in seqs {
        let n = s.tokens.len();
        macs += c.layers as f64 * per_token * n as f64;
        for l in 0..c.layers {
            let w = attn_shape(llama, l).window;
            let attended: usize = (1..=n).map(|t| t.min(w)).sum();
            macs += (2 * qd * attended) as f64; // q·k and p·v per head and position
        }
        macs += (d * v * (n - s.scored_from)) as f64;
    }
    2.0 * macs
}

fn attn_shape(llama: &Llama, l: usize) -> AttnShape {
    let c = &llama.config;
    let window = if c.is_sliding_layer(l) { c.sliding_window.unwrap_or(usize::MAX) } else { usize::MAX };
    AttnShape {
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        scale: 1.0 / (c.head_dim as f64).sqrt(),
        window,
    }
}

/// Adds ∂loss/∂θ to `grad` (flat, in `layout`), where `dlogp[i]` = ∂loss/∂logp of the i-th scored
/// token of the tape's forward.
pub fn backward<R: Real>(llama: &Llama, layout: &Layout, w: &[R], tape: Tape<R>, dlogp: &[R], grad: &mut [R]) {
    let c = &llama.config;
    let (embed, blocks, final_norm, lm_head) = llama.ids();
    let (d, h, hkv, dh, f, v) = (c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab);
    let (qd, kvd) = (h * dh, hkv * dh);
    let Tape { tokens, spans, rows, targets, temperature, rope, blocks: mut tapes, xr, rstd_f, xn_f, mut logits, lse } =
        tape;
    assert_eq!(dlogp.len(), rows.len(), "one ∂loss/∂logp per scored token");
    let (tt, nr) = (tokens.len(), rows.len());
    let t_of = |id| tensor(w, layout, id);

    // Head: dz, then dxn_f, then the final norm into the scored rows of dx.
    ly::token_logprobs_backward(&mut logits, dlogp, &targets, &lse, temperature, v);
    let mut dxn_f = vec![R::ZERO; nr * d];
    ly::matmul_backward(&mut dxn_f, tensor_mut(grad, layout, lm_head), &logits, &xn_f, t_of(lm_head), nr, d, v);
    drop(logits);
    let mut dxr = vec![R::ZERO; nr * d];
    ly::rmsnorm_backward(&mut dxr, tensor_mut(grad, layout, final_norm), &dxn_f, &xr, &rstd_f, t_of(final_norm), d);
    let mut dx = vec![R::ZERO; tt * d];
    for (src, &r) in dxr.chunks(d).zip(&rows) {
        for (a, &b) in dx[r * d..(r + 1) * d].iter_mut().zip(src) {
            *a += b;
        }
    }

    for (l, b) in blocks.iter().enumerate().rev() {
        let bt = tapes.pop().expect("one tape per block");
        // MLP: x_out = x_mid + h·Wdownᵀ.
        let mut dhh = vec![R::ZERO; tt * f];
        ly::matmul_backward(&mut dhh, tensor_mut(grad, layout, b.down), &dx, &bt.h, t_of(b.down), tt, f, d);
        let (mut dg, mut du) = (vec![R::ZERO; tt * f], vec![R::ZERO; tt * f]);
        ly::swiglu_backward(&mut dg, &mut du, &dhh, &bt.g, &bt.u);
        let mut dxn2 = vec![R::ZERO; tt * d];
        ly::matmul_backward(&mut dxn2, tensor_mut(grad, layout, b.gate), &dg, &bt.xn2, t_of(b.gate), tt, d, f);
        ly::matmul_backward(&mut dxn2, tensor_mut(grad, layout, b.up), &du, &bt.xn2, t_of(b.up), tt, d, f);
        ly::rmsnorm_backward(
            &mut dx,
            tensor_mut(grad, layout, b.mlp_norm),
            &dxn2,
            &bt.x_mid,
            &bt.rstd2,
            t_of(b.mlp_norm),
            d,
        );

        // Attention: x_mid = x_in + a·Woᵀ.
        let mut datt = vec![R::ZERO; tt * qd];
        ly::matmul_backward(&mut datt, tensor_mut(grad, layout, b.o), &dx, &bt.att, t_of(b.o), tt, qd, d);
        let (mut dq, mut dk, mut dv) = (vec![R::ZERO; tt * qd], vec![R::ZERO; tt * kvd], vec![R::ZERO; tt * kvd]);
        ly::attention_backward(
            &mut dq,
            &mut dk,
            &mut dv,
            &datt,
            &bt.probs,
            &bt.q,
            &bt.k,
            &bt.v,
            &spans,
            attn_shape(llama, l),
        );
        let (cos, sin) = &rope[llama.rope_tables().1[l]];
        ly::rope_backward(&mut dq, cos, sin, h, dh);
        ly::rope_backward(&mut dk, cos, sin, hkv, dh);
        if let (Some([nq, nk]), Some([(q_raw, rstd_q), (k_raw, rstd_k)])) = (b.qk_norm, &bt.qk_raw) {
            let mut unnorm = |dy: &mut Vec<R>, wn: usize, raw: &[R], rstd: &[R]| {
                let mut dr = vec![R::ZERO; dy.len()];
                ly::rmsnorm_backward(&mut dr, tensor_mut(grad, layout, wn), dy, raw, rstd, t_of(wn), dh);
                *dy = dr;
            };
            unnorm(&mut dq, nq, q_raw, rstd_q);
            unnorm(&mut dk, nk, k_raw, rstd_k);
        }
        if let Some([bq, bk, bv]) = b.qkv_bias {
            ly::bias_backward(tensor_mut(grad, layout, bq), &dq);
            ly::bias_backward(tensor_mut(grad, layout, bk), &dk);
            ly::bias_backward(tensor_mut(grad, layout, bv), &dv);
        }
        let mut dxn1 = vec![R::ZERO; tt * d];
        ly::matmul_backward(&mut dxn1, tensor_mut(grad, layout, b.q), &dq, &bt.xn1, t_of(b.q), tt, d, qd);
        ly::matmul_backward(&mut dxn1, tensor_mut(grad, layout, b.k), &dk, &bt.xn1, t_of(b.k), tt, d, kvd);
        ly::matmul_backward(&mut dxn1, tensor_mut(grad, layout, b.v), &dv, &bt.xn1, t_of(b.v), tt, d, kvd);
        ly::rmsnorm_backward(
            &mut dx,
            tensor_mut(grad, layout, b.attn_norm),
            &dxn1,
            &bt.x_in,
            &bt.rstd1,
            t_of(b.attn_norm),
            d,
        );
    }
    ly::embedding_backward(tensor_mut(grad, layout, embed), &dx, &tokens, d);
}
