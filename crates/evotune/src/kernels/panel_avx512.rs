//! The AVX-512 [`PanelKernel`]: 12 rows × 32 columns of a lane's product in 24 zmm registers,
//! one broadcast x value and two w vectors per step (24 FMAs per 2 vector loads + 12 broadcasts,
//! against 24 per 10 vector loads in the dot-product tiles of `avx512.rs`). Packing transposes
//! 16 × 16 blocks in registers. The layout and the tree are the driver's (`panel.rs`).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::panel::{pack_plain, Leaves, PanelKernel, TileCall, LANE_ORDER};

/// Rows of a micro-tile.
const PR: usize = 12;
/// Columns of a micro-tile (two zmm vectors).
const PC: usize = 32;

/// The AVX-512 panel kernel (see the module doc).
pub(crate) struct Avx512Panels;

impl PanelKernel for Avx512Panels {
    const PR: usize = PR;
    const PC: usize = PC;

    unsafe fn pack_rows(x: &[f32], b: usize, k: usize, r0: usize, a: &mut [f32]) {
        pack_rows(x, b, k, r0, a)
    }

    unsafe fn pack_panel(w: &[f32], o: usize, k: usize, c0: usize, bp: &mut [f32]) {
        pack_panel(w, o, k, c0, bp)
    }

    unsafe fn tile(call: TileCall) {
        tile(call)
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn pack_rows(x: &[f32], b: usize, k: usize, r0: usize, a: &mut [f32]) {
    let rows = PR.min(b - r0);
    if rows < PR || !k.is_multiple_of(16) {
        return pack_plain(x, k, r0, rows, PR, a);
    }
    // Full tile: the 12 rows' chunks transposed, stored masked to PR lanes.
    transpose_lanes(x.as_ptr().add(r0 * k), k, PR, PR, a.as_mut_ptr());
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

// Out of line so that the 24 accumulators keep the registers to themselves.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn tile(TileCall { a, b, t_len, y, ldy, rows, cols, leaves }: TileCall) {
    // slots[s] holds the pending left operand of tree level s (h8, h4, halves, whole).
    // (Uninitialised: each level is written before it is read; zeroing 6 KB per tile showed up
    // as a memset in profiles.)
    let mut slots = [MaybeUninit::<[[__m512; 2]; PR]>::uninit(); 4];
    let mut acc = [[_mm512_setzero_ps(); 2]; PR];
    let (positions, levels) = leaves.positions();
    let first = positions.start;
    for p in positions {
        let l = LANE_ORDER[p];
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
        // is added to its waiting sibling and climbs (the call's last leaf leaves its sum in acc).
        for (level, slot) in slots.iter_mut().enumerate().take(levels) {
            if (p - first) >> level & 1 == 0 {
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
    for (i, row) in acc.iter_mut().enumerate().take(rows) {
        for (h, (v, &m)) in row.iter_mut().zip(&masks).enumerate() {
            if leaves == Leaves::Second {
                // The first half's sum, waiting in y, is the last level's other operand.
                *v = _mm512_add_ps(*v, _mm512_maskz_loadu_ps(m, y.add(i * ldy + 16 * h)));
            }
            _mm512_mask_storeu_ps(y.add(i * ldy + 16 * h), m, *v);
        }
    }
}

/// Mask of the valid columns among 16 starting at `from`.
fn col_mask(cols: usize, from: usize) -> __mmask16 {
    let n = cols.saturating_sub(from).min(16);
    ((1u32 << n) - 1) as u16
}
