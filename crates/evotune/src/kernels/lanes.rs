//! The portable 16-lane matmul: the exact arithmetic every fast matmul path reproduces bit for bit.
//!
//! Each output element y[b, o] = Σₖ x[b, k]·w[o, k] is accumulated in 16 lanes: lane l holds
//! Σ over k ≡ l (mod 16) in increasing k, each step one fused multiply-add (`f32::mul_add`, exactly
//! rounded); a k-tail shorter than 16 is padded with zeros. The 16 lanes are then summed by a fixed
//! halving tree ([`tree16`]): l + l+8, then +4, then +2, then +1.
//!
//! Because the order is fixed per element, a result depends only on x's row and w's row: not on the
//! batch size B, the tile an element falls in, the thread count or the SIMD level. That is what
//! makes a prompt's output independent of what else is in its batch (see `kernels` tests).

pub const LANES: usize = 16;

/// Σ of 16 lanes by the fixed halving tree: ((a₀+a₈)+(a₄+a₁₂)) + … (see module doc).
#[inline(always)]
pub fn tree16(a: &[f32; LANES]) -> f32 {
    let mut h8 = [0.0f32; 8];
    for i in 0..8 {
        h8[i] = a[i] + a[i + 8];
    }
    let mut h4 = [0.0f32; 4];
    for i in 0..4 {
        h4[i] = h8[i] + h8[i + 4];
    }
    (h4[0] + h4[2]) + (h4[1] + h4[3])
}

/// One MR×NR tile: y[i·ldy + j] = x_row(i) · w_row(j), rows of length k stored with stride k.
#[inline(always)]
pub fn tile<const MR: usize, const NR: usize>(x: &[f32], w: &[f32], k: usize, y: &mut [f32], ldy: usize) {
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    let full = k / LANES * LANES;
    let mut kk = 0;
    while kk < full {
        for i in 0..MR {
            let xv = &x[i * k + kk..i * k + kk + LANES];
            for j in 0..NR {
                let wv = &w[j * k + kk..j * k + kk + LANES];
                for l in 0..LANES {
                    acc[i][j][l] = xv[l].mul_add(wv[l], acc[i][j][l]);
                }
            }
        }
        kk += LANES;
    }
    if full < k {
        // Zero-padded tail: the same fused steps as the full chunks (0·0 + acc).
        let n = k - full;
        for i in 0..MR {
            let mut xv = [0.0f32; LANES];
            xv[..n].copy_from_slice(&x[i * k + full..i * k + k]);
            for j in 0..NR {
                let mut wv = [0.0f32; LANES];
                wv[..n].copy_from_slice(&w[j * k + full..j * k + k]);
                for l in 0..LANES {
                    acc[i][j][l] = xv[l].mul_add(wv[l], acc[i][j][l]);
                }
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            y[i * ldy + j] = tree16(&acc[i][j]);
        }
    }
}

/// y (B, O) = x (B, K) · wᵀ, w (O, K); single-threaded, tiled 1×4 (one x row against four w rows:
/// 4 × 16 lanes of accumulators fit the 16 registers of SSE/AVX2 without spilling).
#[inline(always)]
pub fn matmul(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    for r in 0..b {
        let mut c = 0;
        while c + 4 <= o {
            tile::<1, 4>(&x[r * k..], &w[c * k..], k, &mut y[r * o + c..], o);
            c += 4;
        }
        while c < o {
            tile::<1, 1>(&x[r * k..], &w[c * k..], k, &mut y[r * o + c..], o);
            c += 1;
        }
    }
}

/// Σᵢ a[i]·b[i] with 16 unfused lanes and [`tree16`]: fast without FMA hardware, order fixed
/// (used by attention and norms, which need determinism but not bit-equality with the matmul).
/// Always inlined, so that the SIMD builds of its callers vectorise it at their width.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += xa[l] * xb[l];
        }
    }
    for (l, (&p, &q)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += p * q;
    }
    tree16(&acc)
}
