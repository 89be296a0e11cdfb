//! The AVX2 + FMA [`PanelKernel`]: 6 rows × 16 columns of a lane's product in 12 ymm registers,
//! one broadcast x value and two w vectors per step (12 FMAs per 2 vector loads + 6 broadcasts;
//! 15 of the 16 registers). Packing transposes 8 × 8 blocks in registers. The layout and the tree
//! are the driver's (`panel.rs`); the arithmetic is the AVX-512 kernel's, in narrower vectors.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::avx2::first_lanes;
use super::panel::{pack_plain, Leaves, PanelKernel, TileCall, LANE_ORDER};

/// Rows of a micro-tile.
const PR: usize = 6;
/// Columns of a micro-tile (two ymm vectors).
const PC: usize = 16;

/// The AVX2 panel kernel (see the module doc).
pub(crate) struct Avx2Panels;

impl PanelKernel for Avx2Panels {
    const PR: usize = PR;
    const PC: usize = PC;

    unsafe fn pack_rows(x: &[f32], b: usize, k: usize, r0: usize, a: &mut [f32]) {
        let rows = PR.min(b - r0);
        if rows < PR || !k.is_multiple_of(16) {
            return pack_plain(x, k, r0, rows, PR, a);
        }
        transpose_lanes(x.as_ptr().add(r0 * k), k, PR, PR, a.as_mut_ptr());
    }

    unsafe fn pack_panel(w: &[f32], o: usize, k: usize, c0: usize, bp: &mut [f32]) {
        let cols = PC.min(o - c0);
        if cols < PC || !k.is_multiple_of(16) {
            return pack_plain(w, k, c0, cols, PC, bp);
        }
        // Two halves of 8 columns, each transposed chunk by chunk.
        for h in 0..PC / 8 {
            transpose_lanes(w.as_ptr().add((c0 + 8 * h) * k), k, 8, PC, bp.as_mut_ptr().add(8 * h));
        }
    }

    unsafe fn tile(call: TileCall) {
        tile(call)
    }
}

/// dst[(l·T + t)·width + i] = src[i·K + 16t + l] for i < n ≤ 8 (K a multiple of 16): per chunk t
/// and half (lanes 0–7, 8–15), the n rows' 8 values are loaded (contiguous reads) and transposed
/// in registers, lane l becoming one vector of the n rows (stored masked to n lanes).
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_lanes(src: *const f32, k: usize, n: usize, width: usize, dst: *mut f32) {
    let t_len = k / 16;
    let mut rows = [_mm256_setzero_ps(); 8];
    for t in 0..t_len {
        for half in 0..2 {
            for (i, r) in rows.iter_mut().enumerate().take(n) {
                *r = _mm256_loadu_ps(src.add(i * k + 16 * t + 8 * half));
            }
            for (j, v) in transpose8(&rows).iter().enumerate() {
                let l = 8 * half + j;
                store_first(dst.add((l * t_len + t) * width), *v, n);
            }
        }
    }
}

/// dst[c·ld_dst + r] = src[r·ld_src + c] for r < rows, c < cols (`super::transpose`'s fast path):
/// 8 × 8 blocks through [`transpose8`], columns read up to `c_read` (a multiple of 8). A last block
/// of fewer than 8 rows reads its missing rows as its last row and stores only its rows' lanes
/// (`store_first`); a last block of columns past `cols` stores only the columns below `cols`.
///
/// # Safety
/// The CPU supports AVX2; src holds rows·ld_src floats up to the last row's column `c_read`, dst
/// every element written (c < cols ≤ c_read at stride ld_dst, r < rows).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn transpose_blocks(
    src: *const f32,
    rows: usize,
    cols: usize,
    c_read: usize,
    ld_src: usize,
    dst: *mut f32,
    ld_dst: usize,
) {
    debug_assert!(c_read.is_multiple_of(8) && c_read < cols + 8 && rows > 0);
    let mut block = [_mm256_setzero_ps(); 8];
    for r0 in (0..rows).step_by(8) {
        let n = (rows - r0).min(8);
        for c0 in (0..c_read).step_by(8) {
            for (i, v) in block.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(src.add((r0 + i.min(n - 1)) * ld_src + c0));
            }
            for (j, v) in transpose8(&block).iter().enumerate().take(cols - c0) {
                store_first(dst.add((c0 + j) * ld_dst + r0), *v, n);
            }
        }
    }
}

/// Stores lanes 0..n of `v` at `dst` with plain 128-, 64- and 32-bit stores (masked stores are
/// microcoded and slow on some AVX2 CPUs; a stack copy and a `memcpy` of n floats cost 5% of a
/// prefill when it packed every 6-row tile that way).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_first(dst: *mut f32, v: __m256, n: usize) {
    debug_assert!(n <= 8);
    if n == 8 {
        return _mm256_storeu_ps(dst, v);
    }
    let (mut part, mut at) = (_mm256_castps256_ps128(v), 0);
    if n >= 4 {
        _mm_storeu_ps(dst, part);
        (part, at) = (_mm256_extractf128_ps::<1>(v), 4);
    }
    if n - at >= 2 {
        _mm_store_sd(dst.add(at) as *mut f64, _mm_castps_pd(part));
        (part, at) = (_mm_movehl_ps(part, part), at + 2);
    }
    if n > at {
        _mm_store_ss(dst.add(at), part);
    }
}

/// The 8 × 8 transpose: out[l][i] = r[i][l]. Interleaves 32-bit pairs, then 64-bit pairs within
/// each 128-bit lane, then swaps 128-bit lanes.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose8(r: &[__m256; 8]) -> [__m256; 8] {
    // t[2p] = [r₂ₚ[0], r₂ₚ₊₁[0], r₂ₚ[1], r₂ₚ₊₁[1] | same for columns 4, 5]; t[2p+1]: columns 2, 3 | 6, 7.
    let mut t = [_mm256_setzero_ps(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // u[4q + c]: rows 4q..4q+4 of column c | of column c + 4.
    let mut u = [_mm256_setzero_ps(); 8];
    for q in 0..2 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        u[4 * q] = _mm256_shuffle_ps::<0x44>(a, c);
        u[4 * q + 1] = _mm256_shuffle_ps::<0xEE>(a, c);
        u[4 * q + 2] = _mm256_shuffle_ps::<0x44>(b, d);
        u[4 * q + 3] = _mm256_shuffle_ps::<0xEE>(b, d);
    }
    let mut out = [_mm256_setzero_ps(); 8];
    for c in 0..4 {
        out[c] = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
        out[c + 4] = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
    }
    out
}

/// One PR×PC tile (see [`PanelKernel::tile`]).
// Out of line so that the 12 accumulators keep the registers to themselves.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn tile(TileCall { a, b, t_len, y, ldy, rows, cols, leaves }: TileCall) {
    // slots[s] holds the pending left operand of tree level s (uninitialised: each level is
    // written before it is read).
    let mut slots = [MaybeUninit::<[[__m256; 2]; PR]>::uninit(); 4];
    let mut acc = [[_mm256_setzero_ps(); 2]; PR];
    let (positions, levels) = leaves.positions();
    let first = positions.start;
    for p in positions {
        let l = LANE_ORDER[p];
        let (al, bl) = (a.add(l * t_len * PR), b.add(l * t_len * PC));
        acc = [[_mm256_setzero_ps(); 2]; PR];
        for t in 0..t_len {
            let b0 = _mm256_loadu_ps(bl.add(t * PC));
            let b1 = _mm256_loadu_ps(bl.add(t * PC + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*al.add(t * PR + i));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
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
                row[0] = _mm256_add_ps(row[0], s[0]);
                row[1] = _mm256_add_ps(row[1], s[1]);
            }
        }
    }
    let masks = [first_lanes(cols), first_lanes(cols.saturating_sub(8))];
    if leaves == Leaves::Second {
        // The first half's sum, waiting in y, is the last level's other operand.
        for (i, row) in acc.iter_mut().enumerate().take(rows) {
            for (h, (v, &m)) in row.iter_mut().zip(&masks).enumerate() {
                let first_half = if cols == PC {
                    _mm256_loadu_ps(y.add(i * ldy + 8 * h))
                } else {
                    _mm256_maskload_ps(y.add(i * ldy + 8 * h), m)
                };
                *v = _mm256_add_ps(*v, first_half);
            }
        }
    }
    if cols == PC {
        for (i, row) in acc.iter().enumerate().take(rows) {
            _mm256_storeu_ps(y.add(i * ldy), row[0]);
            _mm256_storeu_ps(y.add(i * ldy + 8), row[1]);
        }
        return;
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (h, (&v, &m)) in row.iter().zip(&masks).enumerate() {
            _mm256_maskstore_ps(y.add(i * ldy + 8 * h), m, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_first_writes_exactly_the_first_lanes() {
        if !crate::kernels::Level::Avx2Fma.supported() {
            return;
        }
        for n in 0..=8 {
            let mut out = [-1.0f32; 9];
            // SAFETY: AVX2 checked above; `out` holds 9 floats ≥ n.
            unsafe { store_first(out.as_mut_ptr(), _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0), n) };
            let want: Vec<f32> = (0..9).map(|i| if i < n { i as f32 } else { -1.0 }).collect();
            assert_eq!(out.to_vec(), want, "n = {n}");
        }
    }
}
