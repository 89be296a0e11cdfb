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
        assert!(cols % QK == 0 && x.len() == rows * cols, "QActs: bad shape (T={rows}, K={cols})");
        let nb = cols / QK;
        let mut a = QActs {
            rows,
            cols,
            q: vec![0; rows * cols],
            d: vec![0.0; rows * nb],
            isum: vec![0; rows * nb],
            s: vec![0.0; rows * nb],
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

#[cfg(target_arch = "x86_64")]
compiled_for! { "avx2,fma":
    quantize_blocks_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) = quantize_blocks;
}
#[cfg(target_arch = "x86_64")]
compiled_for! { "avx512f,avx512bw":
    quantize_blocks_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], isum: &mut [i32], s: &mut [f32]) = quantize_blocks;
}
