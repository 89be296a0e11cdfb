//! The dense passes of the QES update's error feedback (`es::qes`), over every code of a chunk:
//! the residual's int8 fixed point read and written, and the quiet blocks settled. Each is compiled
//! once per SIMD level (`avx2.rs`, `avx512.rs`): the same scalar IEEE operations on every code, in
//! wider registers, so every level computes the same bits.

use super::{simd_level, Level};

/// Codes per block of [`settle_quiet_blocks`].
pub const BLOCK: usize = 32;

/// Whether a step leaves its code where it is: |s| < 0.5, or NaN (which rounds to 0 too).
#[inline(always)]
pub fn rounds_to_0(s: f32) -> bool {
    s.is_nan() || s.abs() < 0.5
}

/// The step with error feedback before AWD and rounding: α·ĝ + β·e (ĝ already divided by σ).
#[inline(always)]
pub fn step(grad: f32, e: f32, alpha: f32, beta: f32) -> f32 {
    alpha * grad + beta * e
}

/// x to the nearest integer, halves away from zero (NaN → 0), for |x| < 2²³, where the truncation
/// `x as i32` is exact and so is the fraction x − trunc(x): `f32::round` without its libm call
/// (baseline x86-64) and its branch for large inputs, so that loops over it vectorise.
#[inline(always)]
pub fn round_small(x: f32) -> i32 {
    let t = x as i32;
    let f = x - t as f32;
    t + (f >= 0.5) as i32 - (f <= -0.5) as i32
}

/// e (|e| ≤ 127·`step`, or NaN → 0) to the nearest multiple of `step`, halves away from zero, as
/// an i8.
#[inline(always)]
pub fn to_fixed(e: f32, step: f32) -> i8 {
    round_small(e / step).clamp(-127, 127) as i8
}

/// e[i] = e8[i]·`step`.
pub fn from_fixed(e8: &[i8], step: f32) -> Vec<f32> {
    match simd_level() {
        // SAFETY (every arm below): `simd_level` returns only levels this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { super::avx512::from_fixed_avx512(e8, step) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { super::avx2::from_fixed_avx2(e8, step) },
        _ => from_fixed_plain(e8, step),
    }
}

/// e8[i] = [`to_fixed`](e[i], `step`).
pub fn into_fixed(e: &[f32], e8: &mut [i8], step: f32) {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { super::avx512::into_fixed_avx512(e, e8, step) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { super::avx2::into_fixed_avx2(e, e8, step) },
        _ => into_fixed_plain(e, e8, step),
    }
}

/// For every block of [`BLOCK`] codes, the steps sᵢ = α·(gᵢ·inv_σ) + β·eᵢ; a block whose steps
/// all round to 0 ([`rounds_to_0`]; nearly every block without AWD) takes eᵢ = clamp(sᵢ, ±max)
/// at once. Returns the other blocks, in increasing order, their e untouched.
pub fn settle_quiet_blocks(e: &mut [f32], g: &[f32], inv_sigma: f32, alpha: f32, beta: f32, max: f32) -> Vec<usize> {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { super::avx512::settle_quiet_blocks_avx512(e, g, inv_sigma, alpha, beta, max) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { super::avx2::settle_quiet_blocks_avx2(e, g, inv_sigma, alpha, beta, max) },
        _ => settle_quiet_blocks_plain(e, g, inv_sigma, alpha, beta, max),
    }
}

/// [`from_fixed`]'s body (inlined into the SIMD copies).
#[inline(always)]
pub(crate) fn from_fixed_plain(e8: &[i8], step: f32) -> Vec<f32> {
    e8.iter().map(|&v| v as f32 * step).collect()
}

/// [`into_fixed`]'s body.
#[inline(always)]
pub(crate) fn into_fixed_plain(e: &[f32], e8: &mut [i8], step: f32) {
    for (v, &e) in e8.iter_mut().zip(e) {
        *v = to_fixed(e, step);
    }
}

/// [`settle_quiet_blocks`]' body.
#[inline(always)]
pub(crate) fn settle_quiet_blocks_plain(
    e: &mut [f32],
    g: &[f32],
    inv_sigma: f32,
    alpha: f32,
    beta: f32,
    max: f32,
) -> Vec<usize> {
    let mut loud = Vec::new();
    for (b, (e, g)) in e.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).enumerate() {
        let mut steps = [0.0f32; BLOCK];
        let mut quiet = true;
        for ((s, &e), &g) in steps.iter_mut().zip(e.iter()).zip(g) {
            *s = step(g * inv_sigma, e, alpha, beta);
            quiet &= rounds_to_0(*s);
        }
        if quiet {
            for (e, &s) in e.iter_mut().zip(&steps) {
                *e = s.clamp(-max, max);
            }
        } else {
            loud.push(b);
        }
    }
    loud
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::rand_vec;

    /// Every level settles the same blocks to the same bits, and leaves the loud ones alone.
    #[test]
    fn every_level_settles_the_same_bits() {
        let n = 40 * BLOCK + 7;
        let e0: Vec<f32> = rand_vec(n, 3).iter().map(|v| v * 0.4).collect();
        // Gradients that are small everywhere but in a few blocks, and a NaN in one.
        let mut g: Vec<f32> = rand_vec(n, 4).iter().map(|v| v * 2.0).collect();
        for i in [5 * BLOCK + 3, 17 * BLOCK, n - 1] {
            g[i] = 900.0;
        }
        g[9 * BLOCK + 1] = f32::NAN;
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut want = e0.clone();
        let loud = settle_quiet_blocks_plain(&mut want, &g, 100.0, 5e-4, 0.9, 1.5);
        assert_eq!(loud, vec![5, 17, 40]);
        assert_eq!(&want[5 * BLOCK..6 * BLOCK], &e0[5 * BLOCK..6 * BLOCK]);
        assert!(want[9 * BLOCK + 1].is_nan());
        let mut got = e0.clone();
        assert_eq!(settle_quiet_blocks(&mut got, &g, 100.0, 5e-4, 0.9, 1.5), loud);
        assert_eq!(bits(&got), bits(&want));
        let step = 1.5 / 127.0;
        let mut e8 = vec![0i8; n];
        into_fixed(&want, &mut e8, step);
        let mut plain = vec![0i8; n];
        into_fixed_plain(&want, &mut plain, step);
        assert_eq!(e8, plain);
        assert_eq!(bits(&from_fixed(&e8, step)), bits(&from_fixed_plain(&e8, step)));
    }
}
