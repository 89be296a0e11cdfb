//! Matrix transposes (pure copies, so every level gives the same bits): dst[c·ld_dst + r] =
//! src[r·ld_src + c]. With AVX2, 8 × 8 blocks are transposed in registers (the packing
//! transpose of `panel_avx2.rs`), partial ones at the bottom and, where the rows can be read past
//! `cols`, at the right edge too (the QES corrections' blocks of 1–15 rows); the rest, and CPUs
//! without AVX2, take the plain loop.

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
    // Columns [0, done) of every row are transposed in registers; the rest by the plain loop.
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::simd_level() != super::Level::Portable {
        // Whole blocks of 8 columns are read: past `cols` where every row can be read that far
        // (the extra columns are read, never stored), else only up to the last whole block.
        let up = cols.next_multiple_of(8);
        let c_read = if up <= ld_src && (rows - 1) * ld_src + up <= src.len() { up } else { cols / 8 * 8 };
        done = cols.min(c_read);
        if c_read > 0 {
            // SAFETY: AVX2 is at least the level in use; rows and the columns read up to `c_read`
            // lie inside src (checked above and just now), the elements written inside dst.
            unsafe {
                super::panel_avx2::transpose_blocks(src.as_ptr(), rows, cols, c_read, ld_src, dst.as_mut_ptr(), ld_dst)
            };
        }
    }
    for r in 0..rows {
        for c in done..cols {
            dst[c * ld_dst + r] = src[r * ld_src + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape against the definition, with a source that ends at its last element (no
    /// reading past it) and one with room to read whole blocks; nothing outside rows × cols of
    /// dst is written (sentinels in the padding lanes and in two columns past the end).
    #[test]
    fn transpose_matches_the_plain_loop_on_edge_shapes() {
        let shapes = [(1, 1), (8, 8), (16, 576), (5, 13), (17, 64), (32, 9), (3, 40), (13, 64), (64, 13), (7, 7)];
        for (rows, cols) in shapes {
            for tight in [false, true] {
                let (ld_src, ld_dst) = (cols + 3, rows + 5);
                let full: Vec<f32> = (0..rows * ld_src).map(|i| i as f32).collect();
                let src = if tight { &full[..(rows - 1) * ld_src + cols] } else { &full[..] };
                let mut dst = vec![-1.0f32; (cols + 2) * ld_dst];
                transpose(src, rows, cols, ld_src, &mut dst, ld_dst);
                for c in 0..cols + 2 {
                    for r in 0..ld_dst {
                        let want = if r < rows && c < cols { src[r * ld_src + c] } else { -1.0 };
                        assert_eq!(dst[c * ld_dst + r], want, "{rows}×{cols} (tight {tight}) at ({r}, {c})");
                    }
                }
            }
        }
    }
}
