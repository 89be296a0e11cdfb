//! Matrix transposes (pure copies, so every level gives the same bits): dst[c·ld_dst + r] =
//! src[r·ld_src + c]. With AVX2, 8 × 8 blocks are transposed in registers (the packing
//! transpose of `panel_avx2.rs`); the edges, and CPUs without AVX2, take the plain loop.

/// dst[c·ld_dst + r] = src[r·ld_src + c] for r < rows, c < cols.
///
/// # Panics
/// If `src` or `dst` is too short for the shapes and strides (a programming error).
pub fn transpose(src: &[f32], rows: usize, cols: usize, ld_src: usize, dst: &mut [f32], ld_dst: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= ld_src
            && rows <= ld_dst
            && src.len() >= (rows - 1) * ld_src + cols
            && dst.len() >= (cols - 1) * ld_dst + rows,
        "transpose: {rows} × {cols} does not fit (ld_src {ld_src}, ld_dst {ld_dst}, {} and {} floats)",
        src.len(),
        dst.len()
    );
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if super::simd_level() != super::Level::Portable {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: AVX2 is at least the level in use; the 8 × 8 blocks lie inside the shapes,
        // whose extents were checked above.
        unsafe { super::panel_avx2::transpose_blocks(src.as_ptr(), r8, c8, ld_src, dst.as_mut_ptr(), ld_dst) };
    }
    // The right edge (columns c8..) of every row, and the bottom rows r8.. of the rest.
    for r in 0..rows {
        let from = if r < r8 { c8 } else { 0 };
        for c in from..cols {
            dst[c * ld_dst + r] = src[r * ld_src + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_the_plain_loop_on_edge_shapes() {
        for (rows, cols) in [(1, 1), (8, 8), (16, 576), (5, 13), (17, 64), (32, 9), (3, 40)] {
            let (ld_src, ld_dst) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * ld_src).map(|i| i as f32).collect();
            let mut dst = vec![-1.0f32; cols * ld_dst];
            transpose(&src, rows, cols, ld_src, &mut dst, ld_dst);
            for c in 0..cols {
                for r in 0..ld_dst {
                    let want = if r < rows { src[r * ld_src + c] } else { -1.0 };
                    assert_eq!(dst[c * ld_dst + r], want, "{rows}×{cols} at ({r}, {c})");
                }
            }
        }
    }
}
