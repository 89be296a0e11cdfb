//! AVX2 + FMA fast paths: the kernels of `avx512.rs` for 16 ymm registers of 8 lanes, computing
//! the same bits (every 16-lane accumulator is a pair of ymm: lanes 0–7 and 8–15, so the first
//! step of [`super::lanes::tree16`], l + l+8, is one add of the pair):
//! - the strip tiles of the decode matmul ([`Avx2Strips`], driven by `strips.rs`): 2 × 2 tiles
//!   of ymm pairs (8 accumulators, 4 x and 2 w registers: 8 FMAs per 8 loads), masked loads for
//!   the k-tail, and a transposing reduction ([`reduce8`]) of 8 elements at once; a single row of
//!   x (batch-1 decode) takes 1 × 6 tiles instead (`strips::RowStrips`);
//! - attention's dot products and weighted sums, RMSNorm, the SwiGLU gate and softmax;
//! - the register-only FMA loop of the peak probe.
//!
//! (The packed-panel kernel for many rows is `panel_avx2.rs`.) The callers in `mod.rs` check
//! slice lengths and CPU features before calling in.

#![allow(unsafe_op_in_unsafe_fn)]
// Index loops mirror the tile maths (acc[i][j] for row i of x, row j of w).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::strips::{StripKernel, Tiles};

/// Register tile: MR rows of x × NR rows of w, each element a pair of ymm accumulators.
const MR: usize = 2;
const NR: usize = 2;

/// The AVX2 strip tiles (see the module doc).
pub(crate) struct Avx2Strips;

impl StripKernel for Avx2Strips {
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
            (_, 1) => run!(MR, 1),
            (1, _) => run!(1, NR),
            _ => run!(MR, NR),
        }
    }
}

impl Tiles for Avx2Strips {
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

/// Lanes i < n of an 8-lane load/store mask (all lanes from n = 8).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn first_lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Sums 8 elements' partial sums at once: h[e] holds the 8 lanes of element e after the first
/// `tree16` step (h8[i] = a[i] + a[i+8]); lane e of the result is the rest of the tree: step 2
/// i + i+4 (the two 128-bit halves), step 3 (0+2) and (1+3), step 4 their sum, for all 8
/// elements with 128-bit-lane and in-lane shuffles.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn reduce8(h: &[__m256; 8]) -> __m256 {
    // Step 2: w[p] = [h4 of element 2p | h4 of element 2p+1].
    let mut w = [_mm256_setzero_ps(); 4];
    for p in 0..4 {
        let (s, t) = (h[2 * p], h[2 * p + 1]);
        w[p] = _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(s, t), _mm256_permute2f128_ps::<0x31>(s, t));
    }
    // Step 3: u[s] = [(0+2), (1+3) of elements 4s, 4s+2 | of elements 4s+1, 4s+3].
    let mut u = [_mm256_setzero_ps(); 2];
    for s in 0..2 {
        let (p, q) = (w[2 * s], w[2 * s + 1]);
        u[s] = _mm256_add_ps(_mm256_shuffle_ps::<0x44>(p, q), _mm256_shuffle_ps::<0xEE>(p, q));
    }
    // Step 4: [elements 0, 2, 4, 6 | 1, 3, 5, 7]; a final permutation puts element e in lane e.
    let z = _mm256_add_ps(_mm256_shuffle_ps::<0x88>(u[0], u[1]), _mm256_shuffle_ps::<0xDD>(u[0], u[1]));
    _mm256_permutevar8x32_ps(z, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// One MR×NR tile (see [`StripKernel::tile`]): per 16-wide step of k, each row of x is loaded
/// once as a ymm pair and each row of w once, and every (i, j) pair takes two FMAs.
// Not inlined: as its own small function each tile keeps its accumulators in registers.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn tile<const MR: usize, const NR: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    y: *mut f32,
    ldy: usize,
    pf: *const f32,
    pf_rows: usize,
) {
    let mut acc = [[[_mm256_setzero_ps(); 2]; NR]; MR];
    let mut kk = 0;
    while kk + 16 <= k {
        for j in 0..pf_rows {
            _mm_prefetch::<_MM_HINT_T0>(pf.add(j * k + kk) as *const i8);
        }
        let mut xv = [[_mm256_setzero_ps(); 2]; MR];
        for i in 0..MR {
            xv[i] = [_mm256_loadu_ps(x.add(i * k + kk)), _mm256_loadu_ps(x.add(i * k + kk + 8))];
        }
        for j in 0..NR {
            let w0 = _mm256_loadu_ps(w.add(j * k + kk));
            let w1 = _mm256_loadu_ps(w.add(j * k + kk + 8));
            for i in 0..MR {
                acc[i][j][0] = _mm256_fmadd_ps(xv[i][0], w0, acc[i][j][0]);
                acc[i][j][1] = _mm256_fmadd_ps(xv[i][1], w1, acc[i][j][1]);
            }
        }
        kk += 16;
    }
    if kk < k {
        // Masked loads read zeros past k: the same 0·0 + acc steps as the lane code's padding.
        let m = [first_lanes(k - kk), first_lanes((k - kk).saturating_sub(8))];
        let mut xv = [[_mm256_setzero_ps(); 2]; MR];
        for i in 0..MR {
            for h in 0..2 {
                xv[i][h] = _mm256_maskload_ps(x.add(i * k + kk + 8 * h), m[h]);
            }
        }
        for j in 0..NR {
            let w0 = _mm256_maskload_ps(w.add(j * k + kk), m[0]);
            let w1 = _mm256_maskload_ps(w.add(j * k + kk + 8), m[1]);
            for i in 0..MR {
                acc[i][j][0] = _mm256_fmadd_ps(xv[i][0], w0, acc[i][j][0]);
                acc[i][j][1] = _mm256_fmadd_ps(xv[i][1], w1, acc[i][j][1]);
            }
        }
    }
    // Element e = i·NR + j; tree step 1 adds each pair, `reduce8` the rest (zero-padded).
    let mut h = [_mm256_setzero_ps(); 8];
    for e in 0..MR * NR {
        h[e] = _mm256_add_ps(acc[e / NR][e % NR][0], acc[e / NR][e % NR][1]);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), reduce8(&h));
    for e in 0..MR * NR {
        *y.add((e / NR) * ldy + e % NR) = out[e];
    }
}

/// out[j] = Σᵢ q[i]·keys[j·stride + i] for j < out.len(), i < q.len() (a multiple of 16), with the
/// arithmetic of [`super::lanes::dot`]: 16 unfused lanes (multiply, round, add, round), summed by
/// the `tree16` order. Four keys at a time (8 accumulators), reduced by [`reduce8`].
///
/// # Safety
/// The CPU must support AVX2; `q.len() % 16 == 0` and `keys` holds every row read.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots_avx2(q: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    const KEYS: usize = 4;
    let (dh, n) = (q.len(), out.len());
    debug_assert!(dh % 16 == 0 && (n == 0 || keys.len() >= (n - 1) * stride + dh));
    let (qp, kp) = (q.as_ptr(), keys.as_ptr());
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(KEYS);
        // All KEYS chains run (a fixed trip count keeps them in registers): chains past the last
        // key read its row again, and their sums are not stored.
        let rows: [usize; KEYS] = std::array::from_fn(|t| (j0 + t.min(m - 1)) * stride);
        let mut acc = [[_mm256_setzero_ps(); 2]; KEYS];
        let mut c = 0;
        while c < dh {
            let qv = [_mm256_loadu_ps(qp.add(c)), _mm256_loadu_ps(qp.add(c + 8))];
            for (a, &row) in acc.iter_mut().zip(&rows) {
                let kr = kp.add(row + c);
                a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(qv[0], _mm256_loadu_ps(kr)));
                a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(qv[1], _mm256_loadu_ps(kr.add(8))));
            }
            c += 16;
        }
        let mut h = [_mm256_setzero_ps(); 8];
        for t in 0..KEYS {
            h[t] = _mm256_add_ps(acc[t][0], acc[t][1]);
        }
        let mut sums = [0.0f32; 8];
        _mm256_storeu_ps(sums.as_mut_ptr(), reduce8(&h));
        out[j0..j0 + m].copy_from_slice(&sums[..m]);
        j0 += m;
    }
}

/// out += Σⱼ p[j]·values[j·stride ..][..out.len()], element by element in increasing j from the
/// current `out`, each step unfused (o ← o + round(p·v)): the arithmetic of the plain loop.
/// `out.len()` a multiple of 8.
///
/// # Safety
/// The CPU must support AVX2; `out.len() % 8 == 0` and `values` holds every row read.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weighted_sum_add_avx2(out: &mut [f32], p: &[f32], values: &[f32], stride: usize) {
    let dh = out.len();
    debug_assert!(dh.is_multiple_of(8) && (p.is_empty() || values.len() >= (p.len() - 1) * stride + dh));
    let mut c = 0;
    // Eight vectors at a time: eight independent chains per value row (one chain waits on each
    // add's latency), then single ones.
    while c + 64 <= dh {
        weighted_chains::<8>(out, p, values, stride, c);
        c += 64;
    }
    while c < dh {
        weighted_chains::<1>(out, p, values, stride, c);
        c += 8;
    }
}

/// out[c .. c + 8·V] of [`weighted_sum_add_avx2`], V chains of 8 lanes in registers.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn weighted_chains<const V: usize>(out: &mut [f32], p: &[f32], values: &[f32], stride: usize, c: usize) {
    let vp = values.as_ptr().add(c);
    let mut o: [__m256; V] = std::array::from_fn(|i| _mm256_loadu_ps(out.as_ptr().add(c + 8 * i)));
    for (j, &pj) in p.iter().enumerate() {
        let pv = _mm256_set1_ps(pj);
        for (i, o) in o.iter_mut().enumerate() {
            *o = _mm256_add_ps(*o, _mm256_mul_ps(pv, _mm256_loadu_ps(vp.add(j * stride + 8 * i))));
        }
    }
    for (i, o) in o.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * i), *o);
    }
}

compiled_for! { "avx2,fma":
    rmsnorm_rows_avx2(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) = super::rmsnorm_rows;
    silu_mul_avx2(g: &mut [f32], u: &[f32]) = super::silu_mul_chunk;
    dot_avx2(a: &[f32], b: &[f32]) -> f32 = super::lanes::dot;
    softmax_avx2(x: &mut [f32]) = super::softmax_row;
    sparse_add_matmuls_avx2(k: usize, x: &[f32], products: &mut [super::sparse_matmul::SparseProduct<'_>]) = super::sparse_matmul::sparse_add_matmuls_plain;
    from_fixed_avx2(e8: &[i8], step: f32) -> Vec<f32> = super::feedback::from_fixed_plain;
    into_fixed_avx2(e: &[f32], e8: &mut [i8], step: f32) = super::feedback::into_fixed_plain;
    settle_quiet_blocks_avx2(e: &mut [f32], g: &[f32], inv_sigma: f32, alpha: f32, beta: f32, max: f32) -> Vec<usize> = super::feedback::settle_quiet_blocks_plain;
}

#[cfg(test)]
/// Test hook: [`reduce8`] on 8 partial-sum vectors given as arrays.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn reduce8_arrays(h: &[[f32; 8]; 8]) -> [f32; 8] {
    let mut v = [_mm256_setzero_ps(); 8];
    for i in 0..8 {
        v[i] = _mm256_loadu_ps(h[i].as_ptr());
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), reduce8(&v));
    out
}

/// `steps` rounds of 12 independent AVX2 FMA chains on registers only (no memory traffic):
/// 12·8·2 FLOPs per round. Returns a value that depends on every FMA, so none is optimised away.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_chains_avx2(steps: usize) -> f32 {
    let a = _mm256_set1_ps(std::hint::black_box(1.000_001));
    let b = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..steps {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(a, b, *v);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}
