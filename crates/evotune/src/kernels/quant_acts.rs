//! Activations quantized to int8 per block of 32, the other operand of the integer kernels
//! (GGML's q8_0 / q8_1 with f32 instead of f16 scales).
//!
//! For each row t and block b of x (T, K):
//!
//! ```text
//! dx = max|x| / 127,   q[i] = round_even(x[i] / dx) ∈ [−127, 127]   (0 when dx = 0)
//! isx = Σ q[i]          (exact, used by the offset formats Q4_0/Q8_0)
//! sx  = dx · isx        (one f32 rounding, used by Q4_1's min)
//! ```
//!
//! A NaN or ±∞ in a block makes its dx NaN, so the products come out NaN (f32 would give NaN or
//! ±∞). Rounding is ties-to-even through the 1.5·2²³ trick, so every level and compiler computes the
//! same codes with plain f32 arithmetic. The error per value is at most dx/2 = max|x|/254.

use rayon::prelude::*;

use super::quant_matrix::QK;

/// x (T, K) quantized per 32-block.
#[derive(Clone, Debug, Default)]
pub struct QActs {
    pub rows: usize,
    pub cols: usize,
    /// (T, K) codes.
    pub q: Vec<i8>,
    /// (T, K/32) scales dx.
    pub d: Vec<f32>,
    /// (T, K/32) code sums isx.
    pub isum: Vec<i32>,
    /// (T, K/32) dx·isx.
    pub s: Vec<f32>,
    /// (T, K/32) −8·isx and −128·isx: the offset terms of Q4_0 codes (value c − 8) and of Q8_0
    /// codes taken as unsigned (c + 128), precomputed so that a kernel starts a block's integer sum
    /// at them with a broadcast load instead of an integer multiply and subtract per block and row.
    pub off8: Vec<i32>,
    pub off128: Vec<i32>,
}

/// 1.5·2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to an integer, ties to even.
const ROUND: f32 = 12_582_912.0;

impl QActs {
    /// Quantizes x (T, K), K a multiple of 32, at the best SIMD level; rows in parallel.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> QActs {
        QActs::quantize_at(super::simd_level(), x, rows, cols)
    }

    /// [`QActs::quantize`] at a given level (the same codes and scales at every level: plain f32
    /// operations, vectorised by the compiler).
    pub fn quantize_at(level: super::Level, x: &[f32], rows: usize, cols: usize) -> QActs {
        assert!(cols.is_multiple_of(QK) && x.len() == rows * cols, "QActs: bad shape (T={rows}, K={cols})");
        let nb = cols / QK;
        let mut a = QActs {
            rows,
            cols,
            q: vec![0; rows * cols],
            d: vec![0.0; rows * nb],
            isum: vec![0; rows * nb],
            s: vec![0.0; rows * nb],
            off8: Vec::new(),
            off128: Vec::new(),
        };
        if rows * nb == 0 {
            return a;
        }
        let level = if level.supported() { level } else { super::Level::Portable };
        // ≈ 4 tasks per thread, whole rows each.
        let per = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
        a.q.par_chunks_mut(per * cols)
            .zip(a.d.par_chunks_mut(per * nb))
            .zip(a.isum.par_chunks_mut(per * nb))
            .zip(a.s.par_chunks_mut(per * nb))
            .zip(x.par_chunks(per * cols))
            .for_each(|((((q, d), isum), s), x)| match level {
                // SAFETY (both arms): the level is supported (checked above).
                #[cfg(target_arch = "x86_64")]
                super::Level::Avx512 => unsafe { quantize_blocks_avx512(x, q, d, isum, s) },
                #[cfg(target_arch = "x86_64")]
                super::Level::Avx2Fma => unsafe { quantize_blocks_avx2(x, q, d, isum, s) },
                _ => quantize_blocks(x, q, d, isum, s),
            });
        // |isx| ≤ 32·127, so both products are exact.
        a.off8 = a.isum.iter().map(|&i| -8 * i).collect();
        a.off128 = a.isum.iter().map(|&i| -128 * i).collect();
        a
    }

    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.cols / QK
    }
}

/// The module doc's formulas for consecutive blocks of 32 (x, q: 32 per block; the rest one per
/// block). Written branch-free per element so that it vectorises.
#[inline(always)]
pub(crate) fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) {
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let mut amax = 0.0f32;
        let mut finite = true;
        for &v in xb {
            let a = v.abs();
            amax = if a > amax { a } else { amax };
            finite &= a <= f32::MAX; // false for NaN and ±∞
        }
        // A NaN or ±∞ makes the block's scale NaN (its codes 0), so it reaches the output as NaN.
        let scale = if finite { amax / 127.0 } else { f32::NAN };
        let inv = if finite && scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (qi, &v) in qb.iter_mut().zip(xb) {
            // |v·inv| ≤ 127 (plus rounding), finite: the cast is exact.
            let r = ((v * inv + ROUND) - ROUND) as i32;
            *qi = r as i8;
            sum += r;
        }
        d[b] = scale;
        isum[b] = sum;
        s[b] = d[b] * sum as f32;
    }
}

/// [`quantize_blocks`] in ymm registers: the same operations (max of |x|, one division, one
/// reciprocal, then a product, an add and a subtract per value, never fused), so the same bits.
///
/// # Safety
/// The CPU supports AVX2; x and q hold whole blocks, d/isum/s one value per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_blocks_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) {
    use std::arch::x86_64::*;
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let (round, max) = (_mm256_set1_ps(ROUND), _mm256_set1_ps(f32::MAX));
    for b in 0..d.len() {
        let xp = x.as_ptr().add(b * QK);
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xp.add(8 * i)));
        let a: [__m256; 4] = std::array::from_fn(|i| _mm256_and_ps(v[i], abs_mask));
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let fin = a.iter().fold(-1i32, |f, &ai| f & _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(ai, max)));
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let amax = lanes.iter().fold(0.0f32, |acc, &l| if l > acc { l } else { acc });
        let finite = fin & 0xFF == 0xFF;
        let scale = if finite { amax / 127.0 } else { f32::NAN };
        let inv = _mm256_set1_ps(if finite && scale != 0.0 { 1.0 / scale } else { 0.0 });
        let mut sum = _mm256_setzero_si256();
        let mut codes = [0i32; QK];
        for (i, &vi) in v.iter().enumerate() {
            let r = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(vi, inv), round), round);
            let r = _mm256_cvttps_epi32(if finite { r } else { _mm256_setzero_ps() });
            sum = _mm256_add_epi32(sum, r);
            _mm256_storeu_si256(codes.as_mut_ptr().add(8 * i) as *mut __m256i, r);
        }
        for (qi, c) in q[b * QK..(b + 1) * QK].iter_mut().zip(codes) {
            *qi = c as i8;
        }
        let mut parts = [0i32; 8];
        _mm256_storeu_si256(parts.as_mut_ptr() as *mut __m256i, sum);
        let total: i32 = parts.iter().sum();
        d[b] = scale;
        isum[b] = total;
        s[b] = scale * total as f32;
    }
}

/// [`quantize_blocks`] in zmm registers (same operations, same bits as the plain loop).
///
/// # Safety
/// The CPU supports AVX-512F/BW; x and q hold whole blocks, d/isum/s one value per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize_blocks_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) {
    use std::arch::x86_64::*;
    let (round, max) = (_mm512_set1_ps(ROUND), _mm512_set1_ps(f32::MAX));
    for b in 0..d.len() {
        let xp = x.as_ptr().add(b * QK);
        let (v0, v1) = (_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16)));
        let (a0, a1) = (_mm512_abs_ps(v0), _mm512_abs_ps(v1));
        let fin = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(a0, max) & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(a1, max);
        let finite = fin == 0xFFFF;
        // max is exact and order-free for finite values (a NaN block takes the other branch).
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        let scale = if finite { amax / 127.0 } else { f32::NAN };
        let inv = _mm512_set1_ps(if finite && scale != 0.0 { 1.0 / scale } else { 0.0 });
        let code = |v| {
            let r = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(v, inv), round), round);
            _mm512_cvttps_epi32(if finite { r } else { _mm512_setzero_ps() })
        };
        let (r0, r1) = (code(v0), code(v1));
        let qp = q.as_mut_ptr().add(b * QK);
        _mm_storeu_si128(qp as *mut __m128i, _mm512_cvtepi32_epi8(r0));
        _mm_storeu_si128(qp.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(r1));
        let total = _mm512_reduce_add_epi32(_mm512_add_epi32(r0, r1));
        d[b] = scale;
        isum[b] = total;
        s[b] = scale * total as f32;
    }
}
