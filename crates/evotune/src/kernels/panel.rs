//! The matmul for many rows: packed panels and an outer-product micro-kernel, computing the same
//! bits as [`super::lanes::matmul`]. This file is the driver (blocking, packing buffers, threads);
//! the micro-kernel and the packing transposes of each level are a [`PanelKernel`]
//! (`panel_avx512.rs`, `panel_avx2.rs`).
//!
//! The lane order splits y[r, c] = Σₖ x[r, k]·w[c, k] into 16 independent sums, lane l running
//! over k ≡ l (mod 16) in increasing k (fused multiply-adds from 0), then [`super::lanes::tree16`]
//! adds the 16 lanes. Each lane is a small matmul of its own, with inner size T = ⌈K/16⌉:
//!
//!   P_l[r, c] = Σₜ x[r, 16t + l]·w[c, 16t + l]        (zero past K, as the lane code pads)
//!
//! and each of those runs as an ordinary register-blocked GEMM: a tile of PR rows × PC columns of
//! P_l in registers, one broadcast x value and PC/width w vectors per step (AVX-512: 12 × 32 in 24
//! zmm; AVX2: 6 × 16 in 12 ymm). The tile runs the 16 lanes in the tree's leaf order
//! ([`LANE_ORDER`]) and adds each finished lane into a 4-slot stack exactly as `tree16` pairs
//! them, so every element's arithmetic is that of the lane code.
//!
//! Packing puts each lane's operands next to each other: for a tile of rows, a[l][t][i] =
//! x[r₀+i, 16t+l]; for a panel of columns, b[l][t][j] = w[c₀+j, 16t+l] (zeros past the edges).
//! Both are packed by loading 16 values of several rows (contiguous reads) and transposing them in
//! registers. w is packed per thread, a block of panels at a time that stays in L2 while every
//! row tile passes over it; a row tile too large for L1 (K = 1536) passes in two halves of its
//! lanes, each half of the tree summed in its own call ([`Leaves`]). Threads split rows when each
//! gets ≥ 192 (each packs its rows and all of w), otherwise x is packed once and they split the
//! column panels; no lane's sum is ever split.

use std::cell::RefCell;

use rayon::prelude::*;

/// One level's micro-kernel and packing, in the layout of the module doc.
pub(crate) trait PanelKernel {
    /// Rows of a micro-tile (broadcast from packed x).
    const PR: usize;
    /// Columns of a micro-tile (whole vectors of packed w).
    const PC: usize;

    /// Packs rows r₀..r₀+PR of x (B, K) as a[(l·T + t)·PR + i] = x[r₀+i, 16t+l], zero past B or K.
    ///
    /// # Safety
    /// The CPU supports the level; `a` holds [`packed_len`]`(PR, k)` floats, r₀ < b.
    unsafe fn pack_rows(x: &[f32], b: usize, k: usize, r0: usize, a: &mut [f32]);

    /// Packs columns c₀..c₀+PC of w (O, K) as b[(l·T + t)·PC + j] = w[c₀+j, 16t+l], zero past O or K.
    ///
    /// # Safety
    /// The CPU supports the level; `bp` holds [`packed_len`]`(PC, k)` floats, c₀ < o.
    unsafe fn pack_panel(w: &[f32], o: usize, k: usize, c0: usize, bp: &mut [f32]);

    /// One PR×PC tile: y[i·ldy + j] = the `tree16` sum of the lane sums over packed `a` and `b`,
    /// for i < rows, j < cols; or one half of that tree ([`Leaves`]).
    ///
    /// # Safety
    /// The CPU supports the level; `call` holds to [`TileCall`]'s contract.
    unsafe fn tile(call: TileCall);
}

/// The arguments of one [`PanelKernel::tile`]: `a`, `b` are packed tiles of T = `t_len` chunks; y
/// is valid for `rows` rows of `cols` elements at stride `ldy`, and holds the first half's sums
/// when `leaves` is [`Leaves::Second`].
#[derive(Clone, Copy)]
pub(crate) struct TileCall {
    pub a: *const f32,
    pub b: *const f32,
    pub t_len: usize,
    pub y: *mut f32,
    pub ldy: usize,
    pub rows: usize,
    pub cols: usize,
    pub leaves: Leaves,
}

/// The leaves of the lane tree one tile call sums. `tree16`'s last step adds two halves, each
/// the sum of 8 leaves ([`LANE_ORDER`] positions 0–7: the even lanes; 8–15: the odd ones), so a
/// tile may run in two calls, each over half the packed operands: the first stores its half's
/// sum in y, the second adds its own to it: the same additions as one call over all 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leaves {
    All,
    First,
    Second,
}

impl Leaves {
    /// The [`LANE_ORDER`] positions summed, and the tree levels they climb inside the call.
    pub(crate) fn positions(self) -> (std::ops::Range<usize>, usize) {
        match self {
            Leaves::All => (0..16, 4),
            Leaves::First => (0..8, 3),
            Leaves::Second => (8..16, 3),
        }
    }
}

/// Columns of w packed together at most: a block of panels that stays in L2 while every row tile
/// passes over it.
const BLOCK_COLUMNS: usize = 128;

/// Bytes of packed w in a block at most (and at least one panel), so that the block stays in L2
/// beside the row tiles streaming through it: 48 columns at AVX2 and 32 at AVX-512 for K = 1536,
/// 128 for K = 576. With the lane halves, 1024 × 1536 → 576 went from 0.87–0.89× to 0.92–0.94×
/// the `gemm` crate at both levels (AMD EPYC, one thread, alternated processes, best of five).
const BLOCK_BYTES: usize = 320 * 1024;

/// Bytes of a packed row tile that stay in L1 (of 32–48 KB) beside the panel's stream.
const L1_ROW_TILE_BYTES: usize = 24 * 1024;

/// The leaves of `tree16` in the order the tree adds them: (0+8)+(4+12), (2+10)+(6+14), then the
/// odd lanes the same way, the two halves last. A micro-kernel sums lane `LANE_ORDER[p]` p-th; leaf p
/// climbs as many tree levels as p has trailing one bits.
pub(crate) const LANE_ORDER: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

thread_local! {
    /// Per-thread packing buffers, grown on demand and reused across calls.
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Floats of one packed row tile or column panel of `width` rows/columns.
pub(crate) fn packed_len(width: usize, k: usize) -> usize {
    16 * k.div_ceil(16) * width
}

/// dst[(l·T + t)·width + i] = src[(r₀+i)·K + 16t + l] for i < n, zero elsewhere (the edge tiles,
/// and K not a multiple of 16).
pub(crate) fn pack_plain(src: &[f32], k: usize, r0: usize, n: usize, width: usize, dst: &mut [f32]) {
    let t_len = k.div_ceil(16);
    dst.fill(0.0);
    for i in 0..n {
        for (kk, &v) in src[(r0 + i) * k..(r0 + i + 1) * k].iter().enumerate() {
            dst[((kk % 16) * t_len + kk / 16) * width + i] = v;
        }
    }
}

/// y (B, O) = x (B, K)·wᵀ for w (O, K), multi-threaded (the current rayon pool), bit-identical
/// to [`super::lanes::matmul`]. Many rows per thread: threads take row blocks (each packs all of w
/// once, a block of panels at a time); otherwise x is packed once and threads take column panels.
///
/// # Safety
/// The CPU must support `P`'s level; `x`, `w`, `y` hold (b, k), (o, k), (b, o) elements,
/// b, k, o > 0.
pub(crate) unsafe fn matmul_panels<P: PanelKernel>(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    debug_assert!(x.len() >= b * k && w.len() >= o * k && y.len() >= b * o && k > 0);
    let threads = rayon::current_num_threads();
    let panels = o.div_ceil(P::PC);
    if threads > 1 && b >= ROW_SPLIT_MIN_ROWS * threads {
        let rows = b.div_ceil(threads).next_multiple_of(P::PR);
        y.par_chunks_mut(rows * o).zip(x.par_chunks(rows * k)).for_each(|(ys, xs)| {
            let rb = xs.len() / k;
            // SAFETY: the level per this function's contract; each block writes its own rows.
            unsafe {
                with_packed_rows::<P, _>(xs, rb, k, false, |ap| {
                    panel_range::<P>(ap, w, ys.as_mut_ptr(), rb, k, o, 0, panels)
                })
            };
        });
        return;
    }
    let yp = SendPtr(y.as_mut_ptr());
    with_packed_rows::<P, _>(x, b, k, true, |ap| {
        // Threads take contiguous ranges of panels; every element is written by one thread.
        let parts = threads.min(panels);
        (0..parts).into_par_iter().for_each(|part| {
            let yp = &yp;
            // SAFETY: each part writes only its own panels' columns of y.
            unsafe { panel_range::<P>(ap, w, yp.0, b, k, o, part * panels / parts, (part + 1) * panels / parts) };
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

/// `n` floats of `buf` starting on a 64-byte boundary (so that no vector load of the packed
/// operands straddles two cache lines), `buf` grown when shorter (never shrunk, so calls of
/// alternating sizes do not clear it again). Packing overwrites every float it hands out.
pub(crate) fn grown(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    const LINE_FLOATS: usize = 16;
    if buf.len() < n + LINE_FLOATS {
        buf.resize(n + LINE_FLOATS, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(LINE_FLOATS);
    &mut buf[skip..skip + n]
}

/// Calls `f` with x (B, K) packed into ⌈B/PR⌉ row tiles (in parallel when `parallel`).
///
/// # Safety
/// The CPU must support `P`'s level.
unsafe fn with_packed_rows<P: PanelKernel, R>(
    x: &[f32],
    b: usize,
    k: usize,
    parallel: bool,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    let a_len = packed_len(P::PR, k);
    // Taken out of the thread-local while in use: a thread waiting in a parallel loop may run
    // another matmul (work stealing), which then packs into a buffer of its own.
    let mut buf = PACK_A.take();
    let ap = grown(&mut buf, b.div_ceil(P::PR) * a_len);
    // SAFETY (both closures): the level per this function's contract; tile g starts at row g·PR < b.
    if parallel {
        ap.par_chunks_mut(a_len).enumerate().for_each(|(g, a)| unsafe { P::pack_rows(x, b, k, g * P::PR, a) });
    } else {
        ap.chunks_mut(a_len).enumerate().for_each(|(g, a)| unsafe { P::pack_rows(x, b, k, g * P::PR, a) });
    }
    let r = f(ap);
    keep(&PACK_A, buf);
    r
}

/// Columns of panels p0..p1 of y (B, O, base `y`) for all rows, from packed rows `ap`: w is
/// packed a block at a time ([`BLOCK_COLUMNS`], [`BLOCK_BYTES`]) and every row tile passes over
/// the block, in two halves of its lanes ([`Leaves`]) when its packed x outgrows L1.
///
/// # Safety
/// The CPU supports `P`'s level; `ap` holds ⌈B/PR⌉ packed tiles of x; y is valid for (B, O) and
/// no other thread writes these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_range<P: PanelKernel>(
    ap: &[f32],
    w: &[f32],
    y: *mut f32,
    b: usize,
    k: usize,
    o: usize,
    p0: usize,
    p1: usize,
) {
    let t_len = k.div_ceil(16);
    let (a_len, b_len) = (packed_len(P::PR, k), packed_len(P::PC, k));
    let block = (BLOCK_BYTES / (4 * b_len / P::PC)).clamp(P::PC, BLOCK_COLUMNS) / P::PC;
    // A row tile whose packed x outgrows L1 runs in two halves of its lanes, each of which stays
    // in L1 while the block's panels pass under it.
    let passes: &[Leaves] =
        if a_len * 4 > L1_ROW_TILE_BYTES { &[Leaves::First, Leaves::Second] } else { &[Leaves::All] };
    let mut buf = PACK_B.take();
    let bp = grown(&mut buf, block * b_len);
    let mut q0 = p0;
    while q0 < p1 {
        let q1 = (q0 + block).min(p1);
        for q in q0..q1 {
            P::pack_panel(w, o, k, q * P::PC, &mut bp[(q - q0) * b_len..(q - q0 + 1) * b_len]);
        }
        for g in 0..b.div_ceil(P::PR) {
            for &leaves in passes {
                for q in q0..q1 {
                    let c0 = q * P::PC;
                    // Rows and columns clip the tile to y's bounds.
                    P::tile(TileCall {
                        a: ap.as_ptr().add(g * a_len),
                        b: bp.as_ptr().add((q - q0) * b_len),
                        t_len,
                        y: y.add(g * P::PR * o + c0),
                        ldy: o,
                        rows: P::PR.min(b - g * P::PR),
                        cols: P::PC.min(o - c0),
                        leaves,
                    });
                }
            }
        }
        q0 = q1;
    }
    keep(&PACK_B, buf);
}

/// y's base pointer shared by the threads that write disjoint parts of it.
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: shared only by the parts of one parallel loop, which write disjoint elements of y.
unsafe impl Sync for SendPtr {}
// SAFETY: used only inside those loops (`matmul_panels`, `super::matmul_strips`), which end before y.
unsafe impl Send for SendPtr {}
