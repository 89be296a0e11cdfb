//! x86-64 fast paths (all of the crate's `unsafe` SIMD lives here).
//!
//! Kernel versions of the matmul (each bit-identical to [`super::lanes::matmul`]):
//! 1. `matmul_avx2`: the portable lane code compiled with AVX2+FMA enabled (2 ymm per 16 lanes).
//! 2. `matmul_strips`: hand-written AVX-512 for few rows (decode): one zmm accumulator per output
//!    element, 6×4 register tiles (fewer rows for the last tile), masked loads for the k-tail, and
//!    a transposing reduction that sums 16 accumulators at once along the same halving tree as
//!    [`super::lanes::tree16`]. w is streamed once, strip by strip, with software prefetch ahead.
//!    (Many rows run the packed-panel kernel of `panel.rs`.)
//!
//! The caller ([`super::matmul`]) checks slice lengths and CPU features before calling in.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use rayon::prelude::*;

/// Register tile: MR rows × NR columns = 24 zmm accumulators, plus MR x vectors and one w vector
/// (31 of 32 registers). Per 16-wide k step: 6 loads of x (from L1), 4 of w, 24 FMAs.
const MR: usize = 6;
const NR: usize = 4;

/// # Safety
/// The CPU must support AVX2 and FMA; `x`, `w`, `y` hold (b, k), (o, k), (b, o) elements.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn matmul_avx2(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    for r in 0..b {
        let mut c = 0;
        while c + 4 <= o {
            tile_avx2::<1, 4>(&x[r * k..], &w[c * k..], k, &mut y[r * o + c..], o);
            c += 4;
        }
        while c < o {
            tile_avx2::<1, 1>(&x[r * k..], &w[c * k..], k, &mut y[r * o + c..], o);
            c += 1;
        }
    }
}

/// The portable lane tile compiled with AVX2+FMA (`mul_add` becomes `vfmadd`); kept out of line
/// so that its accumulators get the registers to themselves.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn tile_avx2<const MR: usize, const NR: usize>(x: &[f32], w: &[f32], k: usize, y: &mut [f32], ldy: usize) {
    super::lanes::tile::<MR, NR>(x, w, k, y, ldy)
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

/// y = x·wᵀ for few rows (decode): threads split w's rows into one contiguous range each, and
/// each streams its range once through [`matmul_strips_avx512`], writing its columns of y in place.
///
/// # Safety
/// The CPU must support AVX-512F; `x`, `w`, `y` hold (b, k), (o, k), (b, o) elements.
pub unsafe fn matmul_strips(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    debug_assert!(x.len() >= b * k && w.len() >= o * k && y.len() >= b * o);
    let strips = o.div_ceil(NR);
    let parts = if b * k * o < (1 << 16) { 1 } else { rayon::current_num_threads().min(strips) };
    let per = strips.div_ceil(parts) * NR;
    if parts == 1 {
        matmul_strips_avx512(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), b, k, o, o);
        return;
    }
    let yp = super::panel::SendPtr(y.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|part| {
        let (c0, c1) = ((part * per).min(o), ((part + 1) * per).min(o));
        let yp = &yp;
        // SAFETY: AVX-512F per the caller; each part reads w's rows c0..c1 and writes only
        // columns c0..c1 of y's b rows.
        matmul_strips_avx512(x.as_ptr(), w.as_ptr().add(c0 * k), yp.0.add(c0), b, k, c1 - c0, o);
    });
}

/// How many strips ahead [`matmul_strips_avx512`] prefetches.
const PREFETCH_STRIPS: usize = 2;

/// Few rows (decode): y[r, c] for c < `cols` (row stride `ldy`), reading w once, strip by strip
/// (NR rows of w, contiguous). Every row tile runs on a strip while it is in L1, and the tiles of
/// a strip between them prefetch the strip `PREFETCH_STRIPS` ahead (tile i of t its i-th share
/// of the rows), so that memory traffic overlaps the compute instead of following it. Every
/// element is one tile accumulator reduced by [`reduce16`]: the bits of the lane code.
///
/// # Safety
/// The CPU must support AVX-512F; `x`, `w` hold (b, k), (cols, k) elements and `y` row r's
/// `cols` elements at `r·ldy`.
#[target_feature(enable = "avx512f")]
pub unsafe fn matmul_strips_avx512(
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    b: usize,
    k: usize,
    cols: usize,
    ldy: usize,
) {
    let tiles = b.div_ceil(MR).min(NR);
    let mut c = 0;
    while c + NR <= cols {
        let ahead = c + PREFETCH_STRIPS * NR;
        // Rows [share(i), share(i + 1)) of the strip ahead are tile i's to prefetch.
        let share = |i: usize| if ahead + NR <= cols { (i.min(tiles) * NR / tiles).min(NR) } else { 0 };
        let mut r = 0;
        let mut i = 0;
        while r < b {
            let (xr, wc, yr) = (x.add(r * k), w.add(c * k), y.add(r * ldy + c));
            // (wrapping: no prefetch, and no pointer past w, when the strip ahead is beyond it)
            let (pf, pf_rows) = (w.wrapping_add((ahead + share(i)) * k), share(i + 1) - share(i));
            match (b - r).min(MR) {
                1 => tile::<1, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
                2 => tile::<2, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
                3 => tile::<3, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
                4 => tile::<4, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
                5 => tile::<5, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
                _ => tile::<MR, NR>(xr, wc, k, yr, ldy, pf, pf_rows),
            }
            r += MR.min(b - r);
            i += 1;
        }
        c += NR;
    }
    for c in c..cols {
        for r in 0..b {
            tile::<1, 1>(x.add(r * k), w.add(c * k), k, y.add(r * ldy + c), ldy, std::ptr::null(), 0);
        }
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
    let (qp, kp) = (q.as_ptr(), keys.as_ptr());
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(16);
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut c = 0;
        while c < dh {
            let qv = _mm512_loadu_ps(qp.add(c));
            for (t, a) in acc.iter_mut().enumerate().take(m) {
                let kv = _mm512_loadu_ps(kp.add((j0 + t) * stride + c));
                *a = _mm512_add_ps(*a, _mm512_mul_ps(qv, kv));
            }
            c += 16;
        }
        let mut sums = [0.0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), reduce16(&acc));
        out[j0..j0 + m].copy_from_slice(&sums[..m]);
        j0 += m;
    }
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
    debug_assert!(dh % 16 == 0 && (p.is_empty() || values.len() >= (p.len() - 1) * stride + dh));
    let vp = values.as_ptr();
    let mut c = 0;
    while c < dh {
        let mut o = _mm512_loadu_ps(out.as_ptr().add(c));
        for (j, &pj) in p.iter().enumerate() {
            o = _mm512_add_ps(o, _mm512_mul_ps(_mm512_set1_ps(pj), _mm512_loadu_ps(vp.add(j * stride + c))));
        }
        _mm512_storeu_ps(out.as_mut_ptr().add(c), o);
        c += 16;
    }
}

/// [`super::rmsnorm_rows`] compiled for AVX-512 (the same operations: the same bits).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn rmsnorm_rows_avx512(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) {
    super::rmsnorm_rows(out, x, weight, d, eps)
}

/// [`super::silu_mul_chunk`] compiled for AVX-512 (the same operations: the same bits).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn silu_mul_avx512(g: &mut [f32], u: &[f32]) {
    super::silu_mul_chunk(g, u)
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
