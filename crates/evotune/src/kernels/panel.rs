//! AVX-512 matmul for many rows: packed panels and an outer-product micro-kernel, computing the
//! same bits as [`super::lanes::matmul`].
//!
//! The lane order splits y[r, c] = Σₖ x[r, k]·w[c, k] into 16 independent sums, lane l running
//! over k ≡ l (mod 16) in increasing k (fused multiply-adds from 0), then [`super::lanes::tree16`]
//! adds the 16 lanes. Each lane is a small matmul of its own, with inner size T = ⌈K/16⌉:
//!
//!   P_l[r, c] = Σₜ x[r, 16t + l]·w[c, 16t + l]        (zero past K, as the lane code pads)
//!
//! and each of those runs as an ordinary register-blocked GEMM: a tile of PR = 12 rows × PC = 32
//! columns of P_l in 24 zmm registers, one broadcast x value and two w vectors per step
//! (24 FMAs per 2 vector loads + 12 broadcasts, against 24 per 10 vector loads in the
//! dot-product tiles of `avx512.rs`). The tile runs the 16 lanes in the tree's leaf order
//! ([`LANE_ORDER`]) and adds each finished lane into a 4-slot stack exactly as `tree16` pairs
//! them, so every element's arithmetic is that of the lane code.
//!
//! Packing puts each lane's operands next to each other: for a tile of rows, a[l][t][i] =
//! x[r₀+i, 16t+l]; for a panel of columns, b[l][t][j] = w[c₀+j, 16t+l] (zeros past the edges).
//! Both are packed by loading 16 values of 16 rows (contiguous reads) and transposing them in
//! registers. w is packed per thread, a block of panels at a time that stays in L2 while every
//! row tile passes over it. Threads split rows when each gets ≥ 192 (each packs its rows and all
//! of w), otherwise x is packed once and they split the column panels; no sum is ever split.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Rows of a micro-tile (broadcast from packed x).
const PR: usize = 12;
/// Columns of a micro-tile (two zmm vectors of packed w).
const PC: usize = 32;
/// Panels of w packed together (a block of 4·32 columns: ≤ 0.8 MB for K ≤ 1536, in L2).
const BLOCK_PANELS: usize = 4;

/// The leaves of `tree16` in the order the tree adds them: (0+8)+(4+12), (2+10)+(6+14), then the
/// odd lanes the same way, the two halves last.
const LANE_ORDER: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

thread_local! {
    /// Per-thread packing buffers, grown on demand and reused across calls.
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Floats of one packed row tile or column panel of `width` rows/columns.
fn packed_len(width: usize, k: usize) -> usize {
    16 * k.div_ceil(16) * width
}

/// Packs rows r₀..r₀+PR of x (B, K) as a[(l·T + t)·PR + i] = x[r₀+i, 16t+l], zero past B or K.
#[target_feature(enable = "avx512f")]
unsafe fn pack_rows(x: &[f32], b: usize, k: usize, r0: usize, a: &mut [f32]) {
    let rows = PR.min(b - r0);
    if rows < PR || !k.is_multiple_of(16) {
        return pack_plain(x, k, r0, rows, PR, a);
    }
    // Full tile: the 12 rows' chunks transposed, stored masked to PR lanes.
    transpose_lanes(x.as_ptr().add(r0 * k), k, PR, PR, a.as_mut_ptr());
}

/// dst[(l·T + t)·width + i] = src[(r₀+i)·K + 16t + l] for i < n, zero elsewhere (the edge tiles).
fn pack_plain(src: &[f32], k: usize, r0: usize, n: usize, width: usize, dst: &mut [f32]) {
    let t_len = k.div_ceil(16);
    dst.fill(0.0);
    for i in 0..n {
        for (kk, &v) in src[(r0 + i) * k..(r0 + i + 1) * k].iter().enumerate() {
            dst[((kk % 16) * t_len + kk / 16) * width + i] = v;
        }
    }
}

/// dst[(l·T + t)·width + i] = src[i·K + 16t + l] for i < n ≤ 16 (K a multiple of 16): per chunk
/// t, the n rows' 16 values are loaded (contiguous reads, one cache line per row) and transposed
/// in registers, lane l becoming one vector of the n rows.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_lanes(src: *const f32, k: usize, n: usize, width: usize, dst: *mut f32) {
    let t_len = k / 16;
    let m = ((1u32 << n) - 1) as u16;
    let mut rows = [_mm512_setzero_ps(); 16];
    for t in 0..t_len {
        for (i, r) in rows.iter_mut().enumerate().take(n) {
            *r = _mm512_loadu_ps(src.add(i * k + 16 * t));
        }
        for (l, v) in transpose16(&rows).iter().enumerate() {
            _mm512_mask_storeu_ps(dst.add((l * t_len + t) * width), m, *v);
        }
    }
}

/// The 16 × 16 transpose: out[l][i] = r[i][l]. Interleaves 32-bit, then 64-bit pairs within each
/// 128-bit lane, then moves 128-bit lanes twice.
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
    // t[2p] / t[2p+1]: rows 2p, 2p+1 interleaved, columns {0,1,4,5,…} / {2,3,6,7,…}.
    let mut t = [_mm512_setzero_ps(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // u[4q + c]: rows 4q..4q+4 of columns c, c+4, c+8, c+12 (one per 128-bit lane).
    let mut u = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        let pd = |x: __m512d| _mm512_castpd_ps(x);
        u[4 * q] = pd(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        u[4 * q + 1] = pd(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        u[4 * q + 2] = pd(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
        u[4 * q + 3] = pd(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        // Lanes 0, 2 / 1, 3 of rows 0–7 and of rows 8–15 …
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
        // … then whole columns c, c+8, c+4, c+12.
        out[c] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        out[c + 8] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        out[c + 12] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
    out
}

/// Packs columns c₀..c₀+PC of w (O, K) as b[(l·T + t)·PC + j] = w[c₀+j, 16t+l], zero past O or K.
#[target_feature(enable = "avx512f")]
unsafe fn pack_panel(w: &[f32], o: usize, k: usize, c0: usize, bp: &mut [f32]) {
    let cols = PC.min(o - c0);
    if cols < PC || !k.is_multiple_of(16) {
        return pack_plain(w, k, c0, cols, PC, bp);
    }
    // Full panel: two halves of 16 columns, each transposed chunk by chunk.
    for h in 0..PC / 16 {
        transpose_lanes(w.as_ptr().add((c0 + 16 * h) * k), k, 16, PC, bp.as_mut_ptr().add(16 * h));
    }
}

/// One PR×PC tile: y[i·ldy + j] = Σ_l-tree of the lane sums over packed `a` and `b`, for i < rows,
/// j < cols.
// Out of line so that the 24 accumulators keep the registers to themselves.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn tile(a: *const f32, b: *const f32, t_len: usize, y: *mut f32, ldy: usize, rows: usize, cols: usize) {
    // slots[s] holds the pending left operand of tree level s (h8, h4, halves, whole).
    // (Uninitialised: each level is written before it is read; zeroing 6 KB per tile showed up
    // as a memset in profiles.)
    let mut slots = [MaybeUninit::<[[__m512; 2]; PR]>::uninit(); 4];
    let mut acc = [[_mm512_setzero_ps(); 2]; PR];
    for (p, &l) in LANE_ORDER.iter().enumerate() {
        let (al, bl) = (a.add(l * t_len * PR), b.add(l * t_len * PC));
        acc = [[_mm512_setzero_ps(); 2]; PR];
        for t in 0..t_len {
            let b0 = _mm512_loadu_ps(bl.add(t * PC));
            let b1 = _mm512_loadu_ps(bl.add(t * PC + 16));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*al.add(t * PR + i));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
        // Leaf p enters the tree: at each level an even position waits in its slot, an odd one
        // is added to its waiting sibling and climbs (p = 15 leaves the whole sum in acc).
        for (level, slot) in slots.iter_mut().enumerate() {
            if p >> level & 1 == 0 {
                slot.write(acc);
                break;
            }
            // SAFETY: position p has bit `level` set, so position p − 2^level (bit clear, same
            // higher bits) wrote this slot, and nothing since has.
            for (row, s) in acc.iter_mut().zip(slot.assume_init_ref()) {
                row[0] = _mm512_add_ps(row[0], s[0]);
                row[1] = _mm512_add_ps(row[1], s[1]);
            }
        }
    }
    let masks = [col_mask(cols, 0), col_mask(cols, 16)];
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (h, (&v, &m)) in row.iter().zip(&masks).enumerate() {
            _mm512_mask_storeu_ps(y.add(i * ldy + 16 * h), m, v);
        }
    }
}

/// Mask of the valid columns among 16 starting at `from`.
fn col_mask(cols: usize, from: usize) -> __mmask16 {
    let n = cols.saturating_sub(from).min(16);
    ((1u32 << n) - 1) as u16
}

/// y (B, O) = x (B, K)·wᵀ for w (O, K), multi-threaded (the current rayon pool), bit-identical
/// to [`super::lanes::matmul`]. Many rows per thread: threads take row blocks (each packs all of w
/// once, a block of panels at a time); otherwise x is packed once and threads take column panels.
///
/// # Safety
/// The CPU must support AVX-512F; `x`, `w`, `y` hold (b, k), (o, k), (b, o) elements, b, k, o > 0.
#[target_feature(enable = "avx512f")]
pub unsafe fn matmul_panels(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    debug_assert!(x.len() >= b * k && w.len() >= o * k && y.len() >= b * o && k > 0);
    let threads = rayon::current_num_threads();
    let panels = o.div_ceil(PC);
    if threads > 1 && b >= ROW_SPLIT_MIN_ROWS * threads {
        let rows = b.div_ceil(threads).next_multiple_of(PR);
        y.par_chunks_mut(rows * o).zip(x.par_chunks(rows * k)).for_each(|(ys, xs)| {
            let rb = xs.len() / k;
            with_packed_rows(xs, rb, k, false, |ap| panel_range(ap, w, ys.as_mut_ptr(), rb, k, o, 0, panels));
        });
        return;
    }
    let yp = SendPtr(y.as_mut_ptr());
    with_packed_rows(x, b, k, true, |ap| {
        // Threads take contiguous ranges of panels; every element is written by one thread.
        let parts = threads.min(panels);
        (0..parts).into_par_iter().for_each(|part| {
            let yp = &yp;
            // SAFETY: each part writes only its own panels' columns of y.
            unsafe { panel_range(ap, w, yp.0, b, k, o, part * panels / parts, (part + 1) * panels / parts) };
        });
    });
}

/// Rows per thread from which [`matmul_panels`] splits rows (each thread then packs all of w).
const ROW_SPLIT_MIN_ROWS: usize = 192;

/// Puts a packing buffer back for the next call unless it is larger than 1 MB (a large one is
/// freed: kept, they added 5 MB to the peak memory of a training run; reallocating costs ≈ 1%).
fn keep(slot: &'static std::thread::LocalKey<RefCell<Vec<f32>>>, buf: Vec<f32>) {
    if buf.len() <= KEEP_FLOATS {
        slot.set(buf);
    }
}

/// Largest packing buffer kept between calls (1 MB).
const KEEP_FLOATS: usize = 1 << 18;

/// The first `n` floats of `buf`, grown (never shrunk, so calls of alternating sizes do not
/// clear it again) when shorter. Packing overwrites every float it hands out.
fn grown(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

/// Calls `f` with x (B, K) packed into ⌈B/PR⌉ row tiles (in parallel when `parallel`).
#[target_feature(enable = "avx512f")]
unsafe fn with_packed_rows<R>(x: &[f32], b: usize, k: usize, parallel: bool, f: impl FnOnce(&[f32]) -> R) -> R {
    let a_len = packed_len(PR, k);
    // Taken out of the thread-local while in use: a thread waiting in a parallel loop may run
    // another matmul (work stealing), which then packs into a buffer of its own.
    let mut buf = PACK_A.take();
    let ap = grown(&mut buf, b.div_ceil(PR) * a_len);
    // SAFETY (both closures): AVX-512F is supported (this function's contract).
    if parallel {
        ap.par_chunks_mut(a_len).enumerate().for_each(|(g, a)| unsafe { pack_rows(x, b, k, g * PR, a) });
    } else {
        ap.chunks_mut(a_len).enumerate().for_each(|(g, a)| unsafe { pack_rows(x, b, k, g * PR, a) });
    }
    let r = f(ap);
    keep(&PACK_A, buf);
    r
}

/// Columns of panels p0..p1 of y (B, O, base `y`) for all rows, from packed rows `ap`: w is
/// packed [`BLOCK_PANELS`] panels at a time and every row tile passes over the block.
///
/// # Safety
/// AVX-512F; `ap` holds ⌈B/PR⌉ packed tiles of x; y is valid for (B, O) and no other thread
/// writes these columns.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_range(ap: &[f32], w: &[f32], y: *mut f32, b: usize, k: usize, o: usize, p0: usize, p1: usize) {
    let t_len = k.div_ceil(16);
    let (a_len, b_len) = (packed_len(PR, k), packed_len(PC, k));
    let mut buf = PACK_B.take();
    let bp = grown(&mut buf, BLOCK_PANELS * b_len);
    let mut q0 = p0;
    while q0 < p1 {
        let q1 = (q0 + BLOCK_PANELS).min(p1);
        for q in q0..q1 {
            pack_panel(w, o, k, q * PC, &mut bp[(q - q0) * b_len..(q - q0 + 1) * b_len]);
        }
        for g in 0..b.div_ceil(PR) {
            for q in q0..q1 {
                let c0 = q * PC;
                // Rows and columns clip the tile to y's bounds.
                tile(
                    ap.as_ptr().add(g * a_len),
                    bp.as_ptr().add((q - q0) * b_len),
                    t_len,
                    y.add(g * PR * o + c0),
                    o,
                    PR.min(b - g * PR),
                    PC.min(o - c0),
                );
            }
        }
        q0 = q1;
    }
    keep(&PACK_B, buf);
}

/// y's base pointer shared by the threads that write disjoint panels of it.
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: shared only by the parts of one parallel loop, which write disjoint elements of y.
unsafe impl Sync for SendPtr {}
// SAFETY: used only inside those loops (`matmul_panels`, `avx512::matmul_strips`), which end before y.
unsafe impl Send for SendPtr {}

#[cfg(test)]
mod bench {
    use super::*;
    use std::time::Instant;
    /// Best-of-rounds GFLOP/s, panels vs the dot-product tiles of `avx512.rs` (`matmul_strips`),
    /// alternating in the same process, 1 and 2 threads: where the dispatch should switch.
    /// Timing only: `cargo test --release -p evotune --lib panels_vs_tiles -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn panels_vs_tiles() {
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (b, k, o) in [
                (1024usize, 576usize, 1536usize),
                (1024, 1536, 576),
                (1024, 576, 192),
                (304, 576, 1536),
                (128, 576, 1536),
                (128, 1536, 576),
                (64, 576, 1536),
                (32, 576, 1536),
                (27, 576, 1536),
                (24, 576, 1536),
                (16, 576, 1536),
                (128, 576, 49152),
            ] {
                let x: Vec<f32> = (0..b * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
                let w: Vec<f32> = (0..o * k).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
                let mut y = vec![0.0; b * o];
                let flop = 2.0 * (b * k * o) as f64;
                let reps = (1e9 / flop).clamp(1.0, 100.0) as usize;
                let (mut best_p, mut best_t) = (0.0f64, 0.0f64);
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        pool.install(|| unsafe { matmul_panels(&x, &w, &mut y, b, k, o) });
                    }
                    best_p = best_p.max(reps as f64 * flop / t.elapsed().as_secs_f64() / 1e9);
                    let t = Instant::now();
                    for _ in 0..reps {
                        pool.install(|| unsafe { super::super::avx512::matmul_strips(&x, &w, &mut y, b, k, o) });
                    }
                    best_t = best_t.max(reps as f64 * flop / t.elapsed().as_secs_f64() / 1e9);
                }
                println!("threads={threads} b={b:5} k={k:5} o={o:6}: panels {best_p:6.1}  tiles {best_t:6.1} GFLOP/s  ratio {:.2}", best_p / best_t);
            }
        }
    }
}
