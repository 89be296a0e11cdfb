//! One backward function per forward function (llm.c's `train_gpt2.c` layout), generic over the
//! float ([`Real`]). Shapes use the model legend: `T` rows (tokens of all sequences), `D` width,
//! `K`/`O` a matrix's input/output size, `F` MLP inner size, `V` vocabulary.
//!
//! Every backward *adds* into its input gradients (`dx += …`), as llm.c's do, so a residual stream
//! collects the gradients of both its branches in place. Each row is computed by one thread and
//! every sum over rows runs in row order, so gradients are identical for any thread count.

use rayon::prelude::*;

use super::real::Real;

/// Rows per parallel task of a (T, D) buffer.
fn rows_per_task(t: usize) -> usize {
    t.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// b[j, i] = a[i, j]: a is (R, C), b is (C, R). In tiles of `TILE` × `TILE`, each output block of
/// `TILE` rows on one thread, so both sides stay in cache (a column walk over a large matrix would
/// miss on every element).
pub fn transpose<R: Real>(a: &[R], r: usize, c: usize) -> Vec<R> {
    const TILE: usize = 32;
    let mut b = vec![R::ZERO; r * c];
    if r == 0 || c == 0 {
        return b;
    }
    b.par_chunks_mut(TILE * r).enumerate().for_each(|(jb, rows)| {
        let j0 = jb * TILE;
        let nj = rows.len() / r;
        for i0 in (0..r).step_by(TILE) {
            for i in i0..(i0 + TILE).min(r) {
                let src = &a[i * c + j0..i * c + j0 + nj];
                for (dj, &v) in src.iter().enumerate() {
                    rows[dj * r + i] = v;
                }
            }
        }
    });
    b
}

/// a += b, elementwise.
pub fn add_into<R: Real>(a: &mut [R], b: &[R]) {
    a.par_chunks_mut(1 << 14).zip(b.par_chunks(1 << 14)).for_each(|(a, b)| {
        for (x, &y) in a.iter_mut().zip(b) {
            *x += y;
        }
    });
}

/// x[t] = E[tokens[t]].   E: (V, D), x: (T, D).
pub fn embedding_forward<R: Real>(x: &mut [R], table: &[R], tokens: &[u32], d: usize) {
    for (row, &tok) in x.chunks_mut(d).zip(tokens) {
        row.copy_from_slice(&table[tok as usize * d..(tok as usize + 1) * d]);
    }
}

/// dE[tokens[t]] += dx[t], in row order.
pub fn embedding_backward<R: Real>(dtable: &mut [R], dx: &[R], tokens: &[u32], d: usize) {
    for (row, &tok) in dx.chunks(d).zip(tokens) {
        for (g, &v) in dtable[tok as usize * d..(tok as usize + 1) * d].iter_mut().zip(row) {
            *g += v;
        }
    }
}

/// y = x·r·w per row, r = 1/√(mean(x²) + eps), kept in `rstd` for the backward.
/// x, y: (T, D); w: (D); rstd: (T).
pub fn rmsnorm_forward<R: Real>(y: &mut [R], rstd: &mut [R], x: &[R], w: &[R], d: usize, eps: f64) {
    let n = rows_per_task(rstd.len());
    y.par_chunks_mut(n * d).zip(rstd.par_chunks_mut(n)).zip(x.par_chunks(n * d)).for_each(|((y, rs), x)| {
        for ((yr, r), xr) in y.chunks_mut(d).zip(rs.iter_mut()).zip(x.chunks(d)) {
            let ss = R::dot(xr, xr);
            *r = R::ONE / (ss / R::from_f64(d as f64) + R::from_f64(eps)).sqrt();
            for i in 0..d {
                yr[i] = xr[i] * *r * w[i];
            }
        }
    });
}

/// With g = w ⊙ dy:  dx += r·g − (r³/D)·x·Σᵢ gᵢxᵢ;   dw += Σ_t dy ⊙ x·r.
pub fn rmsnorm_backward<R: Real>(dx: &mut [R], dw: &mut [R], dy: &[R], x: &[R], rstd: &[R], w: &[R], d: usize) {
    let n = rows_per_task(rstd.len());
    let inv_d = R::ONE / R::from_f64(d as f64);
    dx.par_chunks_mut(n * d).zip(dy.par_chunks(n * d)).zip(x.par_chunks(n * d)).zip(rstd.par_chunks(n)).for_each(
        |(((dx, dy), x), rs)| {
            let mut g = vec![R::ZERO; d];
            for (((dxr, dyr), xr), &r) in dx.chunks_mut(d).zip(dy.chunks(d)).zip(x.chunks(d)).zip(rs) {
                for i in 0..d {
                    g[i] = w[i] * dyr[i];
                }
                let gx = R::dot(&g, xr);
                let c = r * r * r * inv_d * gx;
                for i in 0..d {
                    dxr[i] += r * g[i] - c * xr[i];
                }
            }
        },
    );
    for ((dyr, xr), &r) in dy.chunks(d).zip(x.chunks(d)).zip(rstd) {
        for i in 0..d {
            dw[i] += dyr[i] * xr[i] * r;
        }
    }
}

/// y = x·Wᵀ (+ b).   x: (T, K), W: (O, K), b: (O), y: (T, O).
pub fn matmul_forward<R: Real>(y: &mut [R], x: &[R], w: &[R], bias: Option<&[R]>, t: usize, k: usize, o: usize) {
    R::matmul(x, w, y, t, k, o);
    if let Some(b) = bias {
        for row in y.chunks_mut(o) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// dx += dy·W;  dW += dyᵀ·x.   x: (T, K), W: (O, K), dy: (T, O).
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<R: Real>(dx: &mut [R], dw: &mut [R], dy: &[R], x: &[R], w: &[R], t: usize, k: usize, o: usize) {
    if t == 0 {
        return;
    }
    let w_t = transpose(w, o, k); // (K, O)
    let mut tmp = vec![R::ZERO; t * k];
    R::matmul(dy, &w_t, &mut tmp, t, o, k);
    add_into(dx, &tmp);
    // dW[o, k] = Σ_t dy[t, o]·x[t, k]: a matmul of dyᵀ (O, T) with xᵀ (K, T).
    let (dy_t, x_t) = (transpose(dy, t, o), transpose(x, t, k));
    let mut tmp = vec![R::ZERO; o * k];
    R::matmul(&dy_t, &x_t, &mut tmp, o, t, k);
    add_into(dw, &tmp);
}

/// db += Σ_t dy[t], in row order.   dy: (T, O).
pub fn bias_backward<R: Real>(db: &mut [R], dy: &[R]) {
    for row in dy.chunks(db.len()) {
        for (g, &v) in db.iter_mut().zip(row) {
            *g += v;
        }
    }
}

/// RoPE in place on (T, heads·Dh) rows, half-split pairs (i, i + Dh/2):
/// (a, b) ↦ (a·cos − b·sin, a·sin + b·cos); cos, sin: (T, Dh/2).
pub fn rope_forward<R: Real>(x: &mut [R], cos: &[R], sin: &[R], heads: usize, dh: usize) {
    rotate(x, cos, sin, heads, dh, false)
}

/// The transpose of the rotation, in place on the gradient: (da, db) ↦ (da·cos + db·sin,
/// −da·sin + db·cos).
pub fn rope_backward<R: Real>(dx: &mut [R], cos: &[R], sin: &[R], heads: usize, dh: usize) {
    rotate(dx, cos, sin, heads, dh, true)
}

fn rotate<R: Real>(x: &mut [R], cos: &[R], sin: &[R], heads: usize, dh: usize, inverse: bool) {
    let (half, width) = (dh / 2, heads * dh);
    x.par_chunks_mut(width).enumerate().for_each(|(t, row)| {
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for v in row.chunks_mut(dh) {
            for i in 0..half {
                let (a, b) = (v[i], v[i + half]);
                let si = if inverse { -s[i] } else { s[i] };
                v[i] = a * c[i] - b * si;
                v[i + half] = a * si + b * c[i];
            }
        }
    });
}

/// The attention's shape: heads, kv heads (GQA: query head h reads kv head h / (H/Hkv)), head dim,
/// score scale and sliding window (positions j with t − W < j ≤ t; `usize::MAX` for none).
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    pub window: usize,
}

/// Offset of each sequence's probability block: sequence s (n tokens) owns H·n² entries, row t of
/// head h at `base + (h·n + t)·n`.
pub fn probs_offsets(spans: &[(usize, usize)], heads: usize) -> Vec<usize> {
    let mut offs = Vec::with_capacity(spans.len() + 1);
    let mut acc = 0;
    for &(r0, r1) in spans {
        offs.push(acc);
        acc += heads * (r1 - r0) * (r1 - r0);
    }
    offs.push(acc);
    offs
}

/// Causal attention per sequence (rows r0..r1 of q, k, v):
/// p_tj = softmax_j(s·q_t·k_j) over the attended j ≤ t, out_t = Σⱼ p_tj v_j, per head.
/// q, out: (T, H·Dh); k, v: (T, Hkv·Dh); probs: see [`probs_offsets`] (zero outside the window).
pub fn attention_forward<R: Real>(
    out: &mut [R],
    probs: &mut [R],
    q: &[R],
    k: &[R],
    v: &[R],
    spans: &[(usize, usize)],
    a: AttnShape,
) {
    let (qd, kvd, dh) = (a.heads * a.head_dim, a.kv_heads * a.head_dim, a.head_dim);
    let group = a.heads / a.kv_heads;
    let scale = R::from_f64(a.scale);
    for_each_sequence(out, qd, probs, spans, a.heads, |s, out, probs| {
        let (r0, r1) = spans[s];
        let n = r1 - r0;
        for h in 0..a.heads {
            let g = h / group;
            for t in 0..n {
                let lo = (t + 1).saturating_sub(a.window);
                let p = &mut probs[(h * n + t) * n..(h * n + t + 1) * n];
                let qt = &q[(r0 + t) * qd + h * dh..][..dh];
                let mut m = R::from_f64(f64::NEG_INFINITY);
                for j in lo..=t {
                    let kj = &k[(r0 + j) * kvd + g * dh..][..dh];
                    p[j] = scale * R::dot(qt, kj);
                    if p[j] > m {
                        m = p[j];
                    }
                }
                let mut z = R::ZERO;
                for pj in &mut p[lo..=t] {
                    *pj = (*pj - m).exp();
                    z += *pj;
                }
                for pj in &mut p[lo..=t] {
                    *pj = *pj / z;
                }
                let o = &mut out[t * qd + h * dh..][..dh];
                o.fill(R::ZERO);
                for j in lo..=t {
                    let vj = &v[(r0 + j) * kvd + g * dh..][..dh];
                    for (oi, &vi) in o.iter_mut().zip(vj) {
                        *oi += p[j] * vi;
                    }
                }
            }
        }
    });
}

/// Backward of [`attention_forward`], one thread per sequence, its query heads in order (so a kv
/// head's dk, dv sum over its query heads in head order):
/// dp_tj = dout_t·v_j;  dv_j += p_tj·dout_t;  ds_tj = p_tj·(dp_tj − Σⱼ p_tj·dp_tj);
/// dq_t += s·Σⱼ ds_tj·k_j;  dk_j += s·ds_tj·q_t.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<R: Real>(
    dq: &mut [R],
    dk: &mut [R],
    dv: &mut [R],
    dout: &[R],
    probs: &[R],
    q: &[R],
    k: &[R],
    v: &[R],
    spans: &[(usize, usize)],
    a: AttnShape,
) {
    let (qd, kvd, dh) = (a.heads * a.head_dim, a.kv_heads * a.head_dim, a.head_dim);
    let group = a.heads / a.kv_heads;
    let scale = R::from_f64(a.scale);
    let offs = probs_offsets(spans, a.heads);
    // Split dq, dk, dv into each sequence's rows.
    let mut parts = Vec::with_capacity(spans.len());
    let (mut dq_rest, mut dk_rest, mut dv_rest) = (dq, dk, dv);
    for &(r0, r1) in spans {
        let n = r1 - r0;
        let (a1, b1) = std::mem::take(&mut dq_rest).split_at_mut(n * qd);
        let (a2, b2) = std::mem::take(&mut dk_rest).split_at_mut(n * kvd);
        let (a3, b3) = std::mem::take(&mut dv_rest).split_at_mut(n * kvd);
        parts.push((a1, a2, a3));
        (dq_rest, dk_rest, dv_rest) = (b1, b2, b3);
    }
    parts.into_par_iter().enumerate().for_each(|(s, (dq, dk, dv))| {
        let (r0, r1) = spans[s];
        let n = r1 - r0;
        let probs = &probs[offs[s]..offs[s + 1]];
        let mut dp = vec![R::ZERO; n];
        for h in 0..a.heads {
            let g = h / group;
            for t in 0..n {
                let lo = (t + 1).saturating_sub(a.window);
                let p = &probs[(h * n + t) * n..(h * n + t + 1) * n];
                let dot = &dout[(r0 + t) * qd + h * dh..][..dh];
                let mut pdp = R::ZERO;
                for j in lo..=t {
                    let vj = &v[(r0 + j) * kvd + g * dh..][..dh];
                    dp[j] = R::dot(dot, vj);
                    pdp += p[j] * dp[j];
                    for (d, &o) in dv[j * kvd + g * dh..][..dh].iter_mut().zip(dot) {
                        *d += p[j] * o;
                    }
                }
                let qt = &q[(r0 + t) * qd + h * dh..][..dh];
                for j in lo..=t {
                    let ds = scale * p[j] * (dp[j] - pdp);
                    let kj = &k[(r0 + j) * kvd + g * dh..][..dh];
                    for (d, &kv) in dq[t * qd + h * dh..][..dh].iter_mut().zip(kj) {
                        *d += ds * kv;
                    }
                    for (d, &qv) in dk[j * kvd + g * dh..][..dh].iter_mut().zip(qt) {
                        *d += ds * qv;
                    }
                }
            }
        }
    });
}

/// Runs `f(s, out rows of s, probs block of s)` for every sequence in parallel.
fn for_each_sequence<R: Real>(
    out: &mut [R],
    width: usize,
    probs: &mut [R],
    spans: &[(usize, usize)],
    heads: usize,
    f: impl Fn(usize, &mut [R], &mut [R]) + Sync,
) {
    let offs = probs_offsets(spans, heads);
    let mut parts = Vec::with_capacity(spans.len());
    let (mut o_rest, mut p_rest) = (out, probs);
    for (s, &(r0, r1)) in spans.iter().enumerate() {
        let (a, b) = std::mem::take(&mut o_rest).split_at_mut((r1 - r0) * width);
        let (c, e) = std::mem::take(&mut p_rest).split_at_mut(offs[s + 1] - offs[s]);
        parts.push((a, c));
        (o_rest, p_rest) = (b, e);
    }
    parts.into_par_iter().enumerate().for_each(|(s, (o, p))| {
        p.fill(R::ZERO);
        f(s, o, p)
    });
}

/// σ(g) = 1/(1 + e^(−g)).
fn sigmoid<R: Real>(g: R) -> R {
    R::ONE / (R::ONE + (-g).exp())
}

/// SwiGLU: h = silu(g)·u, silu(g) = g·σ(g).   g, u, h: (T, F).
pub fn swiglu_forward<R: Real>(h: &mut [R], g: &[R], u: &[R]) {
    h.par_chunks_mut(1 << 14).zip(g.par_chunks(1 << 14)).zip(u.par_chunks(1 << 14)).for_each(|((h, g), u)| {
        for ((h, &g), &u) in h.iter_mut().zip(g).zip(u) {
            *h = g * sigmoid(g) * u;
        }
    });
}

/// dg = dh·u·σ(g)·(1 + g·(1 − σ(g)));  du = dh·silu(g)   (written, not added: g and u feed only
/// the gate).
pub fn swiglu_backward<R: Real>(dg: &mut [R], du: &mut [R], dh: &[R], g: &[R], u: &[R]) {
    const C: usize = 1 << 14;
    dg.par_chunks_mut(C)
        .zip(du.par_chunks_mut(C))
        .zip(dh.par_chunks(C))
        .zip(g.par_chunks(C).zip(u.par_chunks(C)))
        .for_each(|(((dg, du), dh), (g, u))| {
            for i in 0..dg.len() {
                let s = sigmoid(g[i]);
                dg[i] = dh[i] * u[i] * s * (R::ONE + g[i] * (R::ONE - s));
                du[i] = dh[i] * g[i] * s;
            }
        });
}

/// log π(token) per row at temperature τ: z/τ at the token minus logsumexp(z/τ).
/// logits: (R, V); returns (logp, lse) of each row.
pub fn token_logprobs<R: Real>(logits: &[R], targets: &[u32], temperature: f64, v: usize) -> Vec<(R, R)> {
    let inv_t = R::from_f64(1.0 / temperature);
    logits
        .par_chunks(v)
        .zip(targets.par_iter())
        .map(|(z, &tok)| {
            let m = z.iter().fold(R::from_f64(f64::NEG_INFINITY), |a, &b| if b > a { b } else { a }) * inv_t;
            let s: R = z.iter().map(|&x| (x * inv_t - m).exp()).sum();
            let lse = m + s.ln();
            (z[tok as usize] * inv_t - lse, lse)
        })
        .collect()
}

/// Backward of [`token_logprobs`], in place on the logits: dz = (c/τ)·(onehot(token) − softmax(z/τ))
/// for each row's coefficient c = ∂loss/∂logp.
pub fn token_logprobs_backward<R: Real>(
    logits: &mut [R],
    coef: &[R],
    targets: &[u32],
    lse: &[R],
    temperature: f64,
    v: usize,
) {
    let inv_t = R::from_f64(1.0 / temperature);
    logits.par_chunks_mut(v).enumerate().for_each(|(r, z)| {
        let c = coef[r] * inv_t;
        for x in z.iter_mut() {
            *x = -c * (*x * inv_t - lse[r]).exp();
        }
        z[targets[r] as usize] += c;
    });
}
