//! y += x·Sᵀ for a sparse S (O × K) given as its nonzeros in increasing row-major index: the
//! weight changes of QES members (`es::code_population`), a few per thousand weights.
//!
//! For each nonzero (i = r·K + k, c) in order, y[t, r] += c·x[t, k] for every row t: a multiply
//! and an add, each rounded, so every element of y receives the same operations in the same order
//! whatever the blocking, and every level computes the same bits. The rows run in blocks of
//! [`ROW_BLOCK`]: the block of x is transposed (x[:, k] contiguous), and the columns of y that
//! nonzeros touch are gathered [`COL_CHUNK`] at a time into a transposed chunk in L1, so that each
//! nonzero is one vector update of a chunk row by an x column. The body is compiled once per SIMD
//! level (`avx2.rs`, `avx512.rs`), where a block row of 16 is one or two registers.

use super::{simd_level, transpose, Level};

/// Rows of x corrected together: the transposed block (K floats per row) stays in L2.
const ROW_BLOCK: usize = 32;

/// Columns of y gathered together: a chunk of the block's y is 8 KB, in L1, however wide y is
/// (lm_head's 49152 columns).
const COL_CHUNK: usize = 64;

/// Rows of a block updated together in registers (the transposed blocks are padded to a multiple).
const LANES: usize = 16;

/// The top bit of an index, which callers may use as a flag (QES: the sign of a move): ignored here.
pub const FLAG: u32 = 1 << 31;

thread_local! {
    /// The transposed block of x, reused across calls (≤ 196 KB: K ≤ 1536 by 32 rows).
    static XT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// y (T, O) += x (T, K)·Sᵀ for S given by `nonzeros` (index r·K + k, its top bit ignored; value),
/// in increasing index.
///
/// # Panics
/// If the shapes disagree or an index lies outside O × K (a programming error).
pub fn sparse_add_matmul(nonzeros: &[(u32, f32)], k: usize, o: usize, x: &[f32], y: &mut [f32]) {
    assert!(k > 0 && x.len().is_multiple_of(k) && y.len() == x.len() / k * o, "sparse_add_matmul: shapes disagree");
    match simd_level() {
        // SAFETY (both arms): `simd_level` returns only levels this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { super::avx512::sparse_add_matmul_avx512(nonzeros, k, o, x, y) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { super::avx2::sparse_add_matmul_avx2(nonzeros, k, o, x, y) },
        _ => sparse_add_matmul_plain(nonzeros, k, o, x, y),
    }
}

/// [`sparse_add_matmul`]'s body (inlined into the SIMD copies: the same operations).
#[inline(always)]
pub(crate) fn sparse_add_matmul_plain(nonzeros: &[(u32, f32)], k: usize, o: usize, x: &[f32], y: &mut [f32]) {
    let rows = x.len() / k;
    let block = ROW_BLOCK.min(rows.max(1));
    // Transposed rows padded to whole lane groups (the padding lanes are computed, never stored).
    let stride = block.next_multiple_of(LANES);
    // Taken out of the thread-local while in use; only lanes < b of each row are read into y.
    let mut xt = XT.take();
    xt.resize(xt.len().max(k * stride), 0.0);
    let mut yt = [0.0f32; COL_CHUNK * ROW_BLOCK];
    let mut t0 = 0;
    while t0 < rows {
        let b = block.min(rows - t0);
        let bp = b.next_multiple_of(LANES);
        transpose(&x[t0 * k..(t0 + b) * k], b, k, k, &mut xt, bp);
        // y[t0.., c0..c1] ⇄ yt[(r − c0)·bp + t]
        let gather =
            |yt: &mut [f32], y: &[f32], c0: usize, c1: usize| transpose(&y[t0 * o + c0..], b, c1 - c0, o, yt, bp);
        let scatter =
            |yt: &[f32], y: &mut [f32], c0: usize, c1: usize| transpose(yt, c1 - c0, b, bp, &mut y[t0 * o + c0..], o);
        let (mut c0, mut c1) = (0usize, 0usize);
        let mut m = 0;
        while m < nonzeros.len() {
            // The run of nonzeros in row r: each lane group of y[:, r] is held in registers while
            // the run's products are added in order.
            let r = (nonzeros[m].0 & !FLAG) as usize / k;
            let (row_start, row_end) = ((r * k) as u32, ((r + 1) * k) as u32);
            let run = nonzeros[m..].iter().take_while(|&&(i, _)| i & !FLAG < row_end).count();
            if r >= c1 {
                if c1 > c0 {
                    scatter(&yt, y, c0, c1);
                }
                c0 = r / COL_CHUNK * COL_CHUNK;
                c1 = (c0 + COL_CHUNK).min(o);
                gather(&mut yt, y, c0, c1);
            }
            for h in (0..bp).step_by(LANES) {
                let dst: &mut [f32; LANES] =
                    (&mut yt[(r - c0) * bp + h..][..LANES]).try_into().expect("one lane group");
                let mut acc = *dst;
                for &(i, c) in &nonzeros[m..m + run] {
                    let kk = ((i & !FLAG) - row_start) as usize;
                    let src: &[f32; LANES] = (&xt[kk * bp + h..][..LANES]).try_into().expect("one lane group");
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a += c * v;
                    }
                }
                *dst = acc;
            }
            m += run;
        }
        if c1 > c0 {
            scatter(&yt, y, c0, c1);
        }
        t0 += b;
    }
    XT.set(xt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::rand_vec;

    /// Every level against the definition (one nonzero at a time over all rows), for row counts
    /// around the block size and a wide y with untouched column chunks.
    #[test]
    fn every_level_adds_the_nonzeros_in_order() {
        let (k, o) = (40, 200);
        // Increasing indices, several per row in places, whole column chunks without any, flags set.
        let nonzeros: Vec<(u32, f32)> = (0..o * k)
            .step_by(7)
            .filter(|i| !(64 * k..128 * k).contains(i))
            .enumerate()
            .map(|(n, i)| (i as u32 | if n % 3 == 0 { FLAG } else { 0 }, 0.01 * (n as f32 - 50.0)))
            .collect();
        for rows in [1usize, 5, 16, 32, 33, 70] {
            let x = rand_vec(rows * k, 7);
            let y0 = rand_vec(rows * o, 8);
            let mut want = y0.clone();
            for &(i, c) in &nonzeros {
                let (r, kk) = ((i & !FLAG) as usize / k, (i & !FLAG) as usize % k);
                for t in 0..rows {
                    want[t * o + r] += c * x[t * k + kk];
                }
            }
            let mut got = y0.clone();
            sparse_add_matmul(&nonzeros, k, o, &x, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows} rows");
            let mut plain = y0.clone();
            sparse_add_matmul_plain(&nonzeros, k, o, &x, &mut plain);
            assert_eq!(bits(&plain), bits(&want), "{rows} rows, plain");
        }
    }
}
