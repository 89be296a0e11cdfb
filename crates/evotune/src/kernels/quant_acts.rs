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
//! A NaN or ±∞ in a block makes its dx NaN or ∞, so the products come out NaN, as they would in
//! f32. Rounding is ties-to-even through the 1.5·2²³ trick, so every level and compiler computes the
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
    /// Quantizes x (T, K), K a multiple of 32; rows in parallel.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> QActs {
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
        a.q.par_chunks_mut(cols)
            .zip(a.d.par_chunks_mut(nb))
            .zip(a.isum.par_chunks_mut(nb))
            .zip(a.s.par_chunks_mut(nb))
            .zip(x.par_chunks(cols))
            .for_each(|((((q, d), isum), s), x)| {
                for b in 0..nb {
                    let xb = &x[b * QK..(b + 1) * QK];
                    let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    // A NaN in x makes the block's scale NaN, so it reaches the output as in f32.
                    let scale = if xb.iter().any(|v| v.is_nan()) { f32::NAN } else { amax / 127.0 };
                    let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                    let mut sum = 0i32;
                    for (qi, &v) in q[b * QK..(b + 1) * QK].iter_mut().zip(xb) {
                        let r = ((v * inv + ROUND) - ROUND) as i32;
                        *qi = r as i8;
                        sum += r;
                    }
                    d[b] = scale;
                    isum[b] = sum;
                    s[b] = scale * sum as f32;
                }
            });
        a
    }

    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.cols / QK
    }
}
