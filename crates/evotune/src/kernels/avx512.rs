//! AVX-512 fast paths, each bit-identical to the portable code it stands for:
//! - the strip tiles of the decode matmul ([`Avx512Strips`], driven by `strips.rs`): one zmm
//!   accumulator per output element, 6×4 register tiles (fewer rows for the last tile), masked
//!   loads for the k-tail, and a transposing reduction ([`reduce16`]) that sums 16 accumulators at
//!   once along the same halving tree as [`super::lanes::tree16`]; a single row of x (batch-1
//!   decode) takes 1 × 16 tiles instead (`strips::RowStrips`);
//! - attention's dot products and weighted sums, RMSNorm, the SwiGLU gate and softmax;
//! - the register-only FMA loop of the peak probe.
//!
//! (The packed-panel kernel for many rows is `panel_avx512.rs`.) The callers in `mod.rs` check
//! slice lengths and CPU features before calling in.

#![allow(unsafe_op_in_unsafe_fn)]
// Index loops mirror the tile maths (acc[i][j] for row i of x, row j of w).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::strips::{StripKernel, Tiles};

/// Register tile: MR rows × NR columns = 24 zmm accumulators, plus MR x vectors and one w vector
/// (31 of 32 registers). Per 16-wide k step: 6 loads of x (from L1), 4 of w, 24 FMAs.
const MR: usize = 6;
const NR: usize = 4;

/// The AVX-512 strip tiles (see the module doc).
pub(crate) struct Avx512Strips;

impl StripKernel for Avx512Strips {
    const MR: usize = MR;
    const NR: usize = NR;

    unsafe fn tile(
        rows: usize,
        cols: usize,
        x: *const f32,
        w: *const f32,
        k: usize,
        y: *mut f32,
        ldy: usize,
        pf: *const f32,
        pf_rows: usize,
    ) {
        macro_rules! run {
            ($r:expr, $c:expr) => {
                tile::<$r, $c>(x, w, k, y, ldy, pf, pf_rows)
            };
        }
        match (rows, cols) {
            (1, 1) => run!(1, 1),
            (2, 1) => run!(2, 1),
            (3, 1) => run!(3, 1),
            (4, 1) => run!(4, 1),
            (5, 1) => run!(5, 1),
            (_, 1) => run!(MR, 1),
            (1, _) => run!(1, NR),
            (2, _) => run!(2, NR),
            (3, _) => run!(3, NR),
            (4, _) => run!(4, NR),
            (5, _) => run!(5, NR),
            _ => run!(MR, NR),
        }
    }
}

impl Tiles for Avx512Strips {
    unsafe fn tile<const R: usize, const C: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        y: *mut f32,
        ldy: usize,
        pf: *const f32,
        pf_rows: usize,
    ) {
        tile::<R, C>(x, w, k, y, ldy, pf, pf_rows)
    }
}

/// Sums each of 16 accumulators across its lanes; lane e of the result is Σ acc[e], added in the
/// order of `tree16`: step 1 l + l+8, step 2 +4, step 3 +2, step 4 +1, done for 16 vectors at once
/// with 128-bit-block and in-block shuffles (2 shuffles per element instead of 8).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce16(a: &[__m512; 16]) -> __m512 {
    // Step 1: v[p] = [a₂ₚ(i) + a₂ₚ(i+8) for i < 8 | a₂ₚ₊₁(i) + a₂ₚ₊₁(i+8) for i < 8]
    let mut v = [_mm512_setzero_ps(); 8];
    for p in 0..8 {
        let (s, t) = (a[2 * p], a[2 * p + 1]);
        v[p] = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(s, t), _mm512_shuffle_f32x4::<0xEE>(s, t));
    }
    // Step 2: 128-bit block q of w[r] holds 4 partials of element 4r + q.
    let mut w = [_mm512_setzero_ps(); 4];
    for r in 0..4 {
        let (s, t) = (v[2 * r], v[2 * r + 1]);
        w[r] = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(s, t), _mm512_shuffle_f32x4::<0xDD>(s, t));
    }
    // Step 3: block q of u[s] = [2 partials of element 8s + q, 2 partials of element 8s + 4 + q].
    let mut u = [_mm512_setzero_ps(); 2];
    for s in 0..2 {
        let (p, q) = (w[2 * s], w[2 * s + 1]);
        u[s] = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(p, q), _mm512_shuffle_ps::<0xEE>(p, q));
    }
    // Step 4: lane 4q + j holds element 4j + q; a final permutation puts element e in lane e.
    let z = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(u[0], u[1]), _mm512_shuffle_ps::<0xDD>(u[0], u[1]));
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(idx, z)
}

/// One MR×NR tile: y[i·ldy + j] = x_row(i) · w_row(j), rows of length k, stride k. Each k step
/// also prefetches one cache line of each of the `pf_rows` rows of w at `pf` (none when 0), so
/// that a later strip of w arrives while this one computes.
// Not inlined: as its own small function each tile keeps its accumulators in registers (inlined
// into the blocking loops, LLVM spilled them to the stack on every FMA).
#[target_feature(enable = "avx512f")]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MR: usize, const NR: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    y: *mut f32,
    ldy: usize,
    pf: *const f32,
    pf_rows: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let mut kk = 0;
    while kk + 16 <= k {
        for j in 0..pf_rows {
            _mm_prefetch::<_MM_HINT_T0>(pf.add(j * k + kk) as *const i8);
        }
        let mut xv = [_mm512_setzero_ps(); MR];
        for i in 0..MR {
            xv[i] = _mm512_loadu_ps(x.add(i * k + kk));
        }
        for j in 0..NR {
            let wv = _mm512_loadu_ps(w.add(j * k + kk));
            for i in 0..MR {
                acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
            }
        }
        kk += 16;
    }
    if kk < k {
        // Masked loads read zeros past k: the same 0·0 + acc steps as the lane code's padding.
        let m: __mmask16 = ((1u32 << (k - kk)) - 1) as u16;
        let mut xv = [_mm512_setzero_ps(); MR];
        for i in 0..MR {
            xv[i] = _mm512_maskz_loadu_ps(m, x.add(i * k + kk));
        }
        for j in 0..NR {
            let wv = _mm512_maskz_loadu_ps(m, w.add(j * k + kk));
            for i in 0..MR {
                acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
            }
        }
    }
    // Reduce 16 accumulators at a time (zero-padded: padding never mixes into real elements).
    let mut e0 = 0;
    while e0 < MR * NR {
        let mut all = [_mm512_setzero_ps(); 16];
        for e in e0..(e0 + 16).min(MR * NR) {
            all[e - e0] = acc[e / NR][e % NR];
        }
        let mut out = [0.0f32; 16];
        _mm512_storeu_ps(out.as_mut_ptr(), reduce16(&all));
        for e in e0..(e0 + 16).min(MR * NR) {
            *y.add((e / NR) * ldy + e % NR) = out[e - e0];
        }
        e0 += 16;
    }
}

/// out[j] = Σᵢ q[i]·keys[j·stride + i] for j < out.len(), i < q.len() (a multiple of 16), with the
/// arithmetic of [`super::lanes::dot`]: 16 unfused lanes (multiply, round, add, round), summed by
/// the `tree16` order. Sixteen keys at a time, reduced together by [`reduce16`].
///
/// # Safety
/// The CPU must support AVX-512F; `q.len() % 16 == 0` and `keys` holds every row read.
#[target_feature(enable = "avx512f")]
pub unsafe fn dots_avx512(q: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    let (dh, n) = (q.len(), out.len());
    debug_assert!(dh % 16 == 0 && (n == 0 || keys.len() >= (n - 1) * stride + dh));
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(16);
        let sums = if m > 8 { dot_block::<16>(q, keys, stride, j0, m) } else { dot_block::<8>(q, keys, stride, j0, m) };
        out[j0..j0 + m].copy_from_slice(&sums[..m]);
        j0 += m;
    }
}

/// The dots of keys j0 .. j0 + m (m ≤ KEYS ≤ 16) with q, as the first m of 16 sums. Each of the
/// KEYS chains runs for every block (a fixed trip count keeps them in registers; a variable one
/// put them on the stack, a store-to-load round trip per add): chains past the last key read the
/// last key's row again, and their sums are not returned.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_block<const KEYS: usize>(q: &[f32], keys: &[f32], stride: usize, j0: usize, m: usize) -> [f32; 16] {
    let (qp, kp) = (q.as_ptr(), keys.as_ptr());
    let rows: [usize; KEYS] = std::array::from_fn(|t| (j0 + t.min(m - 1)) * stride);
    let mut acc = [_mm512_setzero_ps(); 16];
    let mut c = 0;
    while c < q.len() {
        let qv = _mm512_loadu_ps(qp.add(c));
        for t in 0..KEYS {
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(qv, _mm512_loadu_ps(kp.add(rows[t] + c))));
        }
        c += 16;
    }
    let mut sums = [0.0f32; 16];
    _mm512_storeu_ps(sums.as_mut_ptr(), reduce16(&acc));
    sums
}

/// out += Σⱼ p[j]·values[j·stride ..][..out.len()], element by element in increasing j from the
/// current `out`, each step unfused (o ← o + round(p·v)): the arithmetic of the plain loop.
/// `out.len()` a multiple of 16.
///
/// # Safety
/// The CPU must support AVX-512F; `out.len() % 16 == 0` and `values` holds every row read.
#[target_feature(enable = "avx512f")]
pub unsafe fn weighted_sum_add_avx512(out: &mut [f32], p: &[f32], values: &[f32], stride: usize) {
    let dh = out.len();
    debug_assert!(dh.is_multiple_of(16) && (p.is_empty() || values.len() >= (p.len() - 1) * stride + dh));
    let mut c = 0;
    // Four vectors at a time: four independent chains per value row (one chain waits on each
    // add's latency), then single ones.
    while c + 64 <= dh {
        weighted_chains::<4>(out, p, values, stride, c);
        c += 64;
    }
    while c < dh {
        weighted_chains::<1>(out, p, values, stride, c);
        c += 16;
    }
}

/// out[c .. c + 16·V] of [`weighted_sum_add_avx512`], V chains of 16 lanes in registers.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weighted_chains<const V: usize>(out: &mut [f32], p: &[f32], values: &[f32], stride: usize, c: usize) {
    let vp = values.as_ptr().add(c);
    let mut o: [__m512; V] = std::array::from_fn(|i| _mm512_loadu_ps(out.as_ptr().add(c + 16 * i)));
    for (j, &pj) in p.iter().enumerate() {
        let pv = _mm512_set1_ps(pj);
        for (i, o) in o.iter_mut().enumerate() {
            *o = _mm512_add_ps(*o, _mm512_mul_ps(pv, _mm512_loadu_ps(vp.add(j * stride + 16 * i))));
        }
    }
    for (i, o) in o.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(c + 16 * i), *o);
    }
}

compiled_for! { "avx512f":
    rmsnorm_rows_avx512(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) = super::rmsnorm_rows;
    silu_mul_avx512(g: &mut [f32], u: &[f32]) = super::silu_mul_chunk;
    dot_avx512(a: &[f32], b: &[f32]) -> f32 = super::lanes::dot;
    softmax_avx512(x: &mut [f32]) = super::softmax_row;
    sparse_add_matmuls_avx512(k: usize, x: &[f32], products: &mut [super::sparse_matmul::SparseProduct<'_>]) = super::sparse_matmul::sparse_add_matmuls_plain;
    from_fixed_avx512(e8: &[i8], step: f32) -> Vec<f32> = super::feedback::from_fixed_plain;
    into_fixed_avx512(e: &[f32], e8: &mut [i8], step: f32) = super::feedback::into_fixed_plain;
    settle_quiet_blocks_avx512(e: &mut [f32], g: &[f32], inv_sigma: f32, alpha: f32, beta: f32, max: f32) -> Vec<usize> = super::feedback::settle_quiet_blocks_plain;
}

/// `steps` rounds of 12 independent AVX-512 FMA chains on registers only (no memory traffic):
/// 12·16·2 FLOPs per round. Returns a value that depends on every FMA, so none is optimised away.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn fma_chains_avx512(steps: usize) -> f32 {
    let a = _mm512_set1_ps(std::hint::black_box(1.000_001));
    let b = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..steps {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(a, b, *v);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(test)]
/// Test hook: [`reduce16`] on 16 accumulators given as arrays.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn reduce16_arrays(a: &[[f32; 16]; 16]) -> [f32; 16] {
    let mut v = [_mm512_setzero_ps(); 16];
    for i in 0..16 {
        v[i] = _mm512_loadu_ps(a[i].as_ptr());
    }
    let mut out = [0.0f32; 16];
    _mm512_storeu_ps(out.as_mut_ptr(), reduce16(&v));
    out
}
