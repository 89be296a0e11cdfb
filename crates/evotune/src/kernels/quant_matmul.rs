//! y = x·Wᵀ with W a [`QMatrix`]: x is quantized per block ([`QActs`]), each block's product is
//! an exact integer sum, and the per-block float results are added in a fixed order.
//!
//! For output y[t, r], blocks b = 0, 1, … in order, acc starting at 0 (c the weight codes,
//! q the activation codes, d/m the weight scale/min, dx/isx/sx the activation block's):
//!
//! ```text
//! n   = Σᵢ c[r, 32b+i]·q[t, 32b+i]  − off·isx      exact int32; off = 8 for Q4_0, else 0
//! acc = fma(d·dx, float(n), acc)                    d·dx rounded once; |n| < 2²⁴, so float(n) is exact
//! acc = fma(m, sx, acc)                             Q4_1 only
//! ```
//!
//! Every level computes exactly these operations for each (t, r) (the integer sum is exact in any
//! order), so results are bit-identical across SIMD levels, batch sizes, tilings and threads.
//! The levels: AVX-512 VNNI (`vpdpbusd`, 16 rows per register, `quant_avx512.rs`), AVX2
//! (`vpmaddubsw` summed in 16 bits, 8 rows per register, `quant_avx2.rs`) and the plain loop
//! here, which the others are tested against.
//!
//! Threads split the row groups of W: each group's blocks (≤ 16 KB for K ≤ 1536) are read from
//! memory once and stay in L1 while the activation rows pass over them, so a decode-sized
//! product streams W once and a prefill-sized one reuses each group T times. The rows pass in
//! blocks of ≈ 128 KB of codes, each over all of a task's groups, so that they come from L2
//! rather than from L3 or memory once per group. Where y is larger than L2 (a prefill, lm_head),
//! each chunk of 8 rows passes over a window of groups (≈ 256 KB of codes, from L2) instead of
//! one group over all chunks, so that it writes runs of whole lines of y.

use half::f16;
use rayon::prelude::*;

use super::quant_acts::QActs;
use super::quant_matrix::{QFormat, QMatrix, GROUP, QK};
use super::{simd_level, Level};

/// The integer kernel a [`Level`] runs: VNNI needs AVX-512 VNNI + BW besides AVX-512F; AVX2 needs
/// F16C (for the f16 scales) besides AVX2 + FMA. Otherwise the plain loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantKernel {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl QuantKernel {
    /// The fastest integer kernel allowed at `level` on this CPU.
    pub fn at(level: Level) -> QuantKernel {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = || Level::Avx2Fma.supported() && is_x86_feature_detected!("f16c");
            if level == Level::Avx512
                && Level::Avx512.supported()
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return QuantKernel::Avx512Vnni;
            }
            if matches!(level, Level::Avx512 | Level::Avx2Fma) && avx2() {
                return QuantKernel::Avx2;
            }
        }
        let _ = level;
        QuantKernel::Portable
    }

    /// A short name for benchmark headers.
    pub fn name(self) -> &'static str {
        match self {
            QuantKernel::Portable => "portable",
            QuantKernel::Avx2 => "avx2 (vpmaddubsw)",
            QuantKernel::Avx512Vnni => "avx512-vnni (vpdpbusd)",
        }
    }
}

/// y = x·Wᵀ   (x: (T, K) f32, W: (O, K) quantized, y: (T, O)), at the best level.
pub fn qmatmul(x: &[f32], w: &QMatrix, y: &mut [f32], t: usize) {
    qmatmul_at(simd_level(), x, w, y, t)
}

/// [`qmatmul`] at a given level (tests and benchmarks).
pub fn qmatmul_at(level: Level, x: &[f32], w: &QMatrix, y: &mut [f32], t: usize) {
    let acts = QActs::quantize(x, t, w.cols());
    qmatmul_acts(QuantKernel::at(level), &acts, w, y)
}

/// y = x·Wᵀ from already quantized activations, with kernel `kernel` (which must be
/// [`QuantKernel::at`] some level, i.e. supported here).
///
/// # Panics
/// If the shapes disagree (a programming error, not bad input).
pub fn qmatmul_acts(kernel: QuantKernel, x: &QActs, w: &QMatrix, y: &mut [f32]) {
    qmatmul_acts_many(kernel, x, &mut [(w, y)])
}

/// yᵢ = x·Wᵢᵀ for several matrices sharing the input (q, k, v; gate, up): x is quantized once by
/// the caller, and one parallel loop runs over the row groups of all of them.
///
/// # Panics
/// If the shapes disagree (a programming error, not bad input).
pub fn qmatmul_acts_many(kernel: QuantKernel, x: &QActs, products: &mut [(&QMatrix, &mut [f32])]) {
    let t = x.rows;
    for (w, y) in products.iter() {
        assert!(
            x.cols == w.cols() && y.len() == t * w.rows(),
            "qmatmul: shapes disagree (T={t}, K={}/{}, O={})",
            x.cols,
            w.cols(),
            w.rows()
        );
    }
    if t == 0 {
        return;
    }
    // Tasks: 4 per thread, each an equal share (± one group) of all the products' row groups in
    // order. Chunks of each matrix (36 groups in chunks of 5) left one thread 20 groups and the
    // other 16: at 128 rows and K = 576 the product ran 25% faster balanced.
    let all: Vec<(usize, usize)> =
        products.iter().enumerate().flat_map(|(i, (w, _))| (0..w.groups()).map(move |g| (i, g))).collect();
    let n_tasks = (4 * rayon::current_num_threads()).min(all.len());
    let outs: Vec<(&QMatrix, OutPtr)> = products.iter_mut().map(|(w, y)| (*w, OutPtr(y.as_mut_ptr()))).collect();
    // Rows in blocks whose codes stay in L2 while the task's groups pass over them.
    let block = (X_BLOCK_BYTES / x.cols.max(1)).max(1).next_multiple_of(ROWS_MAX);
    // Each chunk of rows passes over a window of the task's groups: one group (whose codes stay in
    // L1 for all of the block's chunks) while y fits in L2, else as many groups as fill
    // W_WINDOW_BYTES, so that a chunk writes runs of whole lines of its rows of y (one group at a
    // time wrote one line per row of a y in memory, a store miss each).
    let y_bytes: usize = products.iter().map(|(_, y)| 4 * y.len()).sum();
    let group_bytes = products.iter().map(|(w, _)| w.blocks() * w.format().block_bytes()).max().unwrap_or(1);
    let window = if y_bytes <= Y_IN_L2_BYTES { 1 } else { (W_WINDOW_BYTES / group_bytes).max(1) };
    (0..n_tasks).into_par_iter().for_each(|j| {
        let mine = &all[j * all.len() / n_tasks..(j + 1) * all.len() / n_tasks];
        let mut tile = [0.0f32; ROWS_MAX * GROUP];
        for (b0, groups) in (0..t).step_by(block).flat_map(|b0| mine.chunks(window).map(move |gs| (b0, gs))) {
            let b1 = t.min(b0 + block);
            for t0 in (b0..b1).step_by(ROWS_MAX) {
                let nt = ROWS_MAX.min(b1 - t0);
                for &(i, g) in groups {
                    let (w, yp) = (outs[i].0, &outs[i].1);
                    let o = w.rows();
                    let lanes = GROUP.min(o - g * GROUP);
                    group_rows(kernel, w.group(g), w.format(), w.blocks(), x, t0, nt, &mut tile);
                    for r in 0..nt {
                        // SAFETY: row t0+r of this product's y has o elements; this task alone writes
                        // its columns g·16 .. g·16 + lanes (its own groups), which lie inside the row.
                        unsafe {
                            let (src, dst) = (tile.as_ptr().add(r * GROUP), yp.0.add((t0 + r) * o + g * GROUP));
                            if lanes == GROUP {
                                // A constant length: inline moves, not a call to `memcpy` per row.
                                std::ptr::copy_nonoverlapping(src, dst, GROUP);
                            } else {
                                std::ptr::copy_nonoverlapping(src, dst, lanes);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The y (all products) whose rows stay in L2 while one group passes over them chunk by chunk.
const Y_IN_L2_BYTES: usize = 1 << 20;

/// Bytes of weight groups a chunk of activation rows passes over before the next chunk.
const W_WINDOW_BYTES: usize = 256 * 1024;

/// Bytes of activation codes a task's row groups pass over at a time (in L2, beside the groups).
const X_BLOCK_BYTES: usize = 128 * 1024;

/// Activation rows per kernel call (the kernels take them in register-sized chunks of their own).
const ROWS_MAX: usize = 8;

/// out[i·16 + r] = y[t0 + i, 16g + r] for i < nt ≤ [`ROWS_MAX`], r < 16, of one group `wg`.
#[allow(clippy::too_many_arguments)]
fn group_rows(kernel: QuantKernel, wg: &[u8], f: QFormat, nb: usize, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
    debug_assert!(nt <= ROWS_MAX && wg.len() == nb * f.block_bytes() && t0 + nt <= x.rows);
    match kernel {
        // SAFETY (both arms): the kernel was chosen by `QuantKernel::at`, so the CPU has its
        // features; the group holds nb blocks and x holds rows t0..t0+nt (asserted above).
        #[cfg(target_arch = "x86_64")]
        QuantKernel::Avx512Vnni => unsafe { super::quant_avx512::group_rows(wg, f, nb, x, t0, nt, out) },
        #[cfg(target_arch = "x86_64")]
        QuantKernel::Avx2 => unsafe { super::quant_avx2::group_rows(wg, f, nb, x, t0, nt, out) },
        _ => group_rows_portable(wg, f, nb, x, t0, nt, out),
    }
}

/// The plain-loop twin: the module doc's formula, one (t, r) at a time.
fn group_rows_portable(wg: &[u8], f: QFormat, nb: usize, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
    let (bb, cb, k) = (f.block_bytes(), f.code_bytes(), x.cols);
    let scale = |blk: &[u8], at: usize| f16::from_bits(u16::from_le_bytes([blk[at], blk[at + 1]])).to_f32();
    for i in 0..nt {
        let t = t0 + i;
        let mut acc = [0.0f32; GROUP];
        for b in 0..nb {
            let blk = &wg[b * bb..(b + 1) * bb];
            let q = &x.q[t * k + b * QK..][..QK];
            let (dx, isx, sx) = (x.d[t * nb + b], x.isum[t * nb + b], x.s[t * nb + b]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut n = 0i32;
                match f {
                    QFormat::Q8_0 => {
                        for (e, &qe) in q.iter().enumerate() {
                            n += blk[(e / 4) * 64 + 4 * r + e % 4] as i8 as i32 * qe as i32;
                        }
                    }
                    QFormat::Q4_0 | QFormat::Q4_1 => {
                        for j in 0..4 {
                            for e in 0..4 {
                                let byte = blk[j * 64 + 4 * r + e];
                                n += (byte & 0x0F) as i32 * q[8 * j + e] as i32
                                    + (byte >> 4) as i32 * q[8 * j + 4 + e] as i32;
                            }
                        }
                    }
                }
                if f == QFormat::Q4_0 {
                    n -= 8 * isx;
                }
                *acc = (scale(blk, cb + 2 * r) * dx).mul_add(n as f32, *acc);
                if f == QFormat::Q4_1 {
                    *acc = scale(blk, cb + 2 * GROUP + 2 * r).mul_add(sx, *acc);
                }
            }
        }
        out[i * GROUP..(i + 1) * GROUP].copy_from_slice(&acc);
    }
}

/// A y's base pointer, shared by the tasks of [`qmatmul_acts_many`], which write disjoint columns.
struct OutPtr(*mut f32);
// SAFETY: only used inside `qmatmul_acts_many`'s parallel loop, whose tasks write disjoint elements
// of y and end before y is used again.
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}
