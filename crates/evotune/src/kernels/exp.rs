//! A vectorisable f32 exponential for softmax and SiLU (libm's `expf` is a call per element).
//!
//! exp(x) = 2ⁿ · eʳ with n = round(x·log₂e) and r = x − n·ln2 (ln2 split in two parts, Cody–Waite,
//! so r is exact to ~1 ulp); eʳ on |r| ≤ ln2/2 by its degree-7 Taylor polynomial (truncation
//! error ≤ 0.347⁸/8! ≈ 5e-9 relative), 2ⁿ built in the exponent bits. Relative error ≤ ~3 ulp
//! against the exact value. x is clamped to [−87.3, 88.0] so 2ⁿ stays a normal number: the result
//! is never 0 or ∞ (≈1.2e-38 and 1.65e38 at the ends), which is what softmax and silu need.
//! Plain arithmetic without branches or fused operations, so LLVM vectorises loops over it and
//! every CPU gets the same bits.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO, LN2_HI with trailing zero bits so n·LN2_HI is exact for |n| < 2⁸.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n as an integer without a float → int conversion (which LLVM does not vectorise, since `as`
    // saturates): `shifted` = 1.5·2²³ + n holds n in its low mantissa bits, |n| ≤ 127.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = super::exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        // ~3 ulp of f32 (ulp = 2⁻²³ ≈ 1.19e-7 relative at worst)
        assert!(worst < 4e-7, "max relative error {worst:e}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1e30) > 0.0 && super::exp(-1e30) < 1.3e-38);
        assert!(super::exp(1e30).is_finite());
        assert!(super::exp(f32::NEG_INFINITY) >= 0.0);
    }

    /// 2ⁿ from the bits of the rounding sum equals 2ⁿ from `n as i32` (the conversion it replaced)
    /// for every n the clamp allows, so exp's results are unchanged bit for bit.
    #[test]
    fn exponent_from_bits_equals_the_conversion() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let c = x.clamp(-87.3, 88.0);
            let shifted = c * super::LOG2E + super::ROUND;
            let n = shifted - super::ROUND;
            let by_cast = ((n as i32 + 127) as u32) << 23;
            let by_bits = shifted.to_bits().wrapping_sub(super::ROUND.to_bits()).wrapping_add(127) << 23;
            assert_eq!(by_cast, by_bits, "x = {x}");
            x += 0.0173;
        }
    }
}
