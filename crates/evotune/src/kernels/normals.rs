//! The ES noise generator's inner loop ([`crate::es::noise`], where its maths is documented) at
//! each SIMD level: the portable loop, inlined into copies compiled with AVX2 or AVX-512 enabled.
//! The arithmetic is the same at every level (integer and IEEE operations only, no `mul_add`), so
//! every level writes the same bits; they differ only in vector width.

use crate::es::noise::normals_body;
use crate::kernels::Level;

/// Box–Muller pairs `l0, l0+1, …` under round keys `k` into `out` (even length, cos/sin
/// interleaved) at `level`; a level the CPU lacks runs the portable loop.
pub fn normals_at(level: Level, k: [u32; 4], l0: u32, out: &mut [f32]) {
    debug_assert!(out.len() & 1 == 0, "an odd length cannot hold whole pairs");
    let level = if level.supported() { level } else { Level::Portable };
    match level {
        // SAFETY: the CPU supports AVX-512F (checked above); the body is safe code.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { normals_avx512(k, l0, out) },
        // SAFETY: the CPU supports AVX2 (checked above); the body is safe code.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { normals_avx2(k, l0, out) },
        _ => normals_body(k, l0, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn normals_avx2(k: [u32; 4], l0: u32, out: &mut [f32]) {
    normals_body(k, l0, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn normals_avx512(k: [u32; 4], l0: u32, out: &mut [f32]) {
    normals_body(k, l0, out)
}
