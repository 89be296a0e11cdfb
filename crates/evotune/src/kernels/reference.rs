//! Plain-loop reference kernels: the algorithmic definition every fast path is tested against.
//!
//! No SIMD, no threads, no blocking; one loop nest per formula. Slow on purpose (llm.c's
//! `matmul_forward_naive` plays the same role). Signatures match the safe entry points in
//! [`crate::kernels`].

/// y[b, o] = Σₖ x[b, k]·w[o, k]   (x: (B, K), w: (O, K) row-major as HF stores it, y: (B, O)).
pub fn matmul(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    for bi in 0..b {
        for oi in 0..o {
            let mut s = 0.0f32;
            for ki in 0..k {
                s += x[bi * k + ki] * w[oi * k + ki];
            }
            y[bi * o + oi] = s;
        }
    }
}

/// RMSNorm per row: out[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) · weight.   x, out: (T, D).
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) {
    for (orow, xrow) in out.chunks_mut(d.max(1)).zip(x.chunks(d.max(1))) {
        let mut ss = 0.0f32;
        for &v in xrow {
            ss += v * v;
        }
        let inv = 1.0 / (ss / d as f32 + eps).sqrt();
        for i in 0..d {
            orow[i] = xrow[i] * inv * weight[i];
        }
    }
}

/// Rotary embedding, half-split ("neox") pairing, in place on one row of `heads` heads of size Dh:
/// for i < Dh/2, (a, b) = (x[i], x[i + Dh/2]) ↦ (a·cos θᵢ − b·sin θᵢ, a·sin θᵢ + b·cos θᵢ), where
/// `cos[i]`, `sin[i]` are cos/sin of θᵢ = pos·theta^(−2i/Dh) for this row's position.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], heads: usize, dh: usize) {
    let half = dh / 2;
    for h in 0..heads {
        let v = &mut x[h * dh..(h + 1) * dh];
        for i in 0..half {
            let (a, b) = (v[i], v[i + half]);
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = a * sin[i] + b * cos[i];
        }
    }
}

/// softmax in place: x ← exp(x − max x) / Σ exp(x − max x). The max is subtracted only for
/// numerical stability.
pub fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// SwiGLU gate: out[i] = silu(g[i])·u[i], silu(g) = g / (1 + e^(−g)).
pub fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) {
    for i in 0..out.len() {
        out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
    }
}
