//! The matmul for few rows (decode): w is streamed once, strip by strip (NR of its rows,
//! contiguous), and every element is one 16-lane dot-product accumulator of a register tile,
//! reduced along [`super::lanes::tree16`]: the bits of the lane code. This file is the driver
//! (threads, the strip walk, prefetch); each level's tiles are a [`StripKernel`] (`avx512.rs`:
//! 6 × 4 tiles of zmm, `avx2.rs`: 2 × 2 tiles of ymm pairs, 1 × 4 for a single row).

use rayon::prelude::*;

use super::panel::SendPtr;

/// One level's register tiles.
pub(crate) trait StripKernel {
    /// Rows of x per tile.
    const MR: usize;
    /// Rows of w per strip (columns of y per tile).
    const NR: usize;
    /// Whether the tiles prefetch the strip [`PREFETCH_ROWS`] ahead (when false they get no rows
    /// to prefetch).
    const PREFETCH: bool = true;

    /// One tile: y[i·ldy + j] = x_row(i) · w_row(j) for i < `rows` ≤ MR, j < `cols` ∈ {1, NR},
    /// rows of length k at stride k. Each 16-wide step of k also prefetches one cache line of
    /// each of the `pf_rows` rows at `pf` (none when 0).
    ///
    /// # Safety
    /// The CPU supports the level; x, w hold the rows read, y the elements written; `pf` is
    /// only prefetched, never read.
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// A level's register tile of any fixed shape: y[i·ldy + j] = x_row(i) · w_row(j) for i < R,
/// j < C, with the arguments and contract of [`StripKernel::tile`].
pub(crate) trait Tiles {
    /// # Safety
    /// As [`StripKernel::tile`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const C: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        y: *mut f32,
        ldy: usize,
        pf: *const f32,
        pf_rows: usize,
    );
}

/// The strips for a single row of x (batch-1 decode) with level `T`'s tiles: 1 × N tiles, N
/// sequential streams of w (and for N = 16 one whole reduction per tile), without software
/// prefetch. Measured on an AMD EPYC (Zen 4), the prefetch that pays in the multi-row tiles slowed
/// single-row strips by 10–50% (they do little work per line; the hardware prefetcher follows
/// the streams), and 16 (AVX-512) or 6 (AVX2, 12 of the 16 ymm as accumulators) streams read a
/// matrix from memory faster than 4.
pub(crate) struct RowStrips<T, const N: usize>(std::marker::PhantomData<T>);

impl<T: Tiles, const N: usize> StripKernel for RowStrips<T, N> {
    const MR: usize = 1;
    const NR: usize = N;
    const PREFETCH: bool = false;

    unsafe fn tile(
        _rows: usize,
        cols: usize,
        x: *const f32,
        w: *const f32,
        k: usize,
        y: *mut f32,
        ldy: usize,
        pf: *const f32,
        pf_rows: usize,
    ) {
        match cols {
            1 => T::tile::<1, 1>(x, w, k, y, ldy, pf, pf_rows),
            _ => T::tile::<1, N>(x, w, k, y, ldy, pf, pf_rows),
        }
    }
}

/// How many rows of w ahead of the current strip the tiles prefetch.
const PREFETCH_ROWS: usize = 8;

/// y = x·wᵀ for few rows: threads split w's rows into one contiguous range each, and each
/// streams its range once through [`strips`], writing its columns of y in place.
///
/// # Safety
/// The CPU must support `S`'s level; `x`, `w`, `y` hold (b, k), (o, k), (b, o) elements.
pub(crate) unsafe fn matmul_strips<S: StripKernel>(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    debug_assert!(x.len() >= b * k && w.len() >= o * k && y.len() >= b * o);
    let n_strips = o.div_ceil(S::NR);
    let parts = if b * k * o < (1 << 16) { 1 } else { rayon::current_num_threads().min(n_strips) };
    let per = n_strips.div_ceil(parts) * S::NR;
    if parts == 1 {
        strips::<S>(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), b, k, o, o);
        return;
    }
    let yp = SendPtr(y.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|part| {
        let (c0, c1) = ((part * per).min(o), ((part + 1) * per).min(o));
        let yp = &yp;
        // SAFETY: the level per the caller; each part reads w's rows c0..c1 and writes only
        // columns c0..c1 of y's b rows.
        unsafe { strips::<S>(x.as_ptr(), w.as_ptr().add(c0 * k), yp.0.add(c0), b, k, c1 - c0, o) };
    });
}

/// y[r, c] for c < `cols` (row stride `ldy`), reading w once, strip by strip. Every row tile runs
/// on a strip while it is in L1, and the tiles of a strip between them prefetch the strip
/// [`PREFETCH_ROWS`] rows ahead (tile i of t its i-th share of its rows), so that memory traffic
/// overlaps the compute instead of following it.
///
/// # Safety
/// The CPU must support `S`'s level; `x`, `w` hold (b, k), (cols, k) elements and `y` row r's
/// `cols` elements at `r·ldy`.
unsafe fn strips<S: StripKernel>(
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    b: usize,
    k: usize,
    cols: usize,
    ldy: usize,
) {
    let nr = S::NR;
    let tiles = b.div_ceil(S::MR).min(nr);
    let mut c = 0;
    while c + nr <= cols {
        let ahead = c + PREFETCH_ROWS.next_multiple_of(nr);
        // Rows [share(i), share(i + 1)) of the strip ahead are tile i's to prefetch.
        let share = |i: usize| if S::PREFETCH && ahead + nr <= cols { (i.min(tiles) * nr / tiles).min(nr) } else { 0 };
        let mut r = 0;
        let mut i = 0;
        while r < b {
            let rows = S::MR.min(b - r);
            // (wrapping: no prefetch, and no pointer past w, when the strip ahead is beyond it)
            let (pf, pf_rows) = (w.wrapping_add((ahead + share(i)) * k), share(i + 1) - share(i));
            S::tile(rows, nr, x.add(r * k), w.add(c * k), k, y.add(r * ldy + c), ldy, pf, pf_rows);
            r += rows;
            i += 1;
        }
        c += nr;
    }
    for c in c..cols {
        for r in (0..b).step_by(S::MR) {
            let rows = S::MR.min(b - r);
            S::tile(rows, 1, x.add(r * k), w.add(c * k), k, y.add(r * ldy + c), ldy, std::ptr::null(), 0);
        }
    }
}
