//! Standard normals from a counter: the inner loop of the ES noise generator, whose keying and
//! maths are documented in [`crate::es::noise`] (steps 2–4 there: counter hash, uniforms,
//! Box–Muller). The loop is compiled three times — portable, with AVX2, with AVX-512 — from the
//! same source; it uses only integer and IEEE operations (no `mul_add`), so every level writes the
//! same bits and they differ only in vector width.

use crate::kernels::Level;

/// murmur3's 32-bit finaliser: a bijection with full avalanche.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const TWO_POW_M31: f32 = 1.0 / 2_147_483_648.0; // 2⁻³¹
const TWO_POW_M32: f32 = 1.0 / 4_294_967_296.0; // 2⁻³²
const LN_2: f32 = std::f32::consts::LN_2;
const SQRT_2: f32 = std::f32::consts::SQRT_2;
const PI: f32 = std::f32::consts::PI;

/// ln(u) for normal positive f32 `u`, branch-free: u = 2ᵉ·m with m ∈ [√½, √2), then
/// ln m = 2·atanh(t) = 2t(1 + t²/3 + t⁴/5 + t⁶/7 + t⁸/9), t = (m − 1)/(m + 1), |t| ≤ 0.172
/// (truncation error < 4e-10).
#[inline(always)]
fn ln_pos(u: f32) -> f32 {
    let bits = u.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let big = m > SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = if big { e + 1 } else { e } as f32;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let p = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    e * LN_2 + 2.0 * t * p
}

/// (sin a, cos a) for |a| ≤ π/2 by Taylor polynomials to degree 11 / 12 (errors < 6e-8 / 7e-9).
#[inline(always)]
fn sin_cos_half_pi(a: f32) -> (f32, f32) {
    let a2 = a * a;
    let s = a
        * (1.0
            + a2 * (-1.0 / 6.0
                + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362_880.0 + a2 * (-1.0 / 39_916_800.0))))));
    let c = 1.0
        + a2 * (-0.5
            + a2 * (1.0 / 24.0
                + a2 * (-1.0 / 720.0
                    + a2 * (1.0 / 40_320.0 + a2 * (-1.0 / 3_628_800.0 + a2 * (1.0 / 479_001_600.0))))));
    (s, c)
}

/// One Box–Muller pair for counter `l` under round keys `k` (see the module doc).
#[inline(always)]
pub fn normal_pair(k: [u32; 4], l: u32) -> (f32, f32) {
    let h1 = fmix32(fmix32(l ^ k[0]) ^ k[1]);
    let h2 = fmix32(fmix32(l ^ k[2]) ^ k[3]);
    let u1 = ((h1 >> 1) as i32 as f32) * TWO_POW_M31 + TWO_POW_M32; // (0, 1]
    let x = (h2 as i32 as f32) * TWO_POW_M32; // [−½, ½]
    let r = (-2.0 * ln_pos(u1)).max(0.0).sqrt();
    let (s, c) = sin_cos_half_pi(PI * x);
    (r * (c * c - s * s), r * (2.0 * s * c))
}

/// The loop: pairs `l0, l0+1, …` into `out` (even length), interleaved cos/sin; inlined into the
/// AVX2 and AVX-512 copies below.
#[inline(always)]
fn normals_body(k: [u32; 4], l0: u32, out: &mut [f32]) {
    for (p, o) in out.chunks_exact_mut(2).enumerate() {
        let (c, s) = normal_pair(k, l0.wrapping_add(p as u32));
        o[0] = c;
        o[1] = s;
    }
}

/// Pairs `l0, l0+1, …` under round keys `k` into `out` (even length, cos/sin interleaved) at
/// `level`; a level the CPU lacks runs the portable loop.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_sincos_match_std() {
        let mut worst_ln = 0.0f64;
        for i in 1..100_000u32 {
            let u = i as f32 / 100_000.0;
            let err = (ln_pos(u) as f64 - (u as f64).ln()).abs();
            worst_ln = worst_ln.max(err);
        }
        assert!(worst_ln < 2e-6, "ln error {worst_ln}");
        let mut worst_sc = 0.0f64;
        for i in -1000..=1000 {
            let a = i as f32 / 1000.0 * std::f32::consts::FRAC_PI_2;
            let (s, c) = sin_cos_half_pi(a);
            worst_sc = worst_sc.max((s as f64 - (a as f64).sin()).abs()).max((c as f64 - (a as f64).cos()).abs());
        }
        assert!(worst_sc < 3e-7, "sin/cos error {worst_sc}");
    }
}
