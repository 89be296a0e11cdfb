//! QES perturbations in code units: u = stochastic rounding of σ·z (z standard normal), sampled
//! sparsely and regenerated from a counter RNG.
//!
//! **The distribution.** Stochastic rounding of v = σz gives ⌊v⌋ + Bernoulli(v − ⌊v⌋), so
//! P(u = k) = E[max(0, 1 − |σz − k|)]. For σ ≤ [`MAX_SIGMA`] (0.1) the moves of two or more codes
//! need |z| ≥ 1/σ ≥ 10, probability < 2·10⁻²³, and are left out: u ∈ {−1, 0, +1} with
//!
//! ```text
//! P(u ≠ 0) = p = E[min(|σz|, 1)] = σ·√(2/π)·(1 − e^(−1/(2σ²))) + 2·P(z > 1/σ) ≈ σ·√(2/π)
//! P(u = +1) = P(u = −1) = p/2                       (z is symmetric)
//! ```
//!
//! (the dropped terms are below 10⁻²¹ relative for σ ≤ 0.1; at the paper's σ = 0.01, p = 0.80%).
//!
//! **Sampling it directly.** Rather than a normal and a uniform per code, the nonzero codes of a
//! tensor are drawn as a Bernoulli(p) process: the tensor is cut into chunks of [`CHUNK`] codes,
//! each with its own counter stream keyed by (seed, iteration, noise id, tensor, chunk), and
//! within a chunk the gaps between nonzero positions are geometric, g = ⌊ln U / ln(1 − p)⌋ for
//! U uniform in (0, 1], each with a fair sign. One draw per *nonzero* code (p·d ≈ 1 M for the
//! default model instead of 134 M), and the same positions whatever the threads: chunks are
//! independent and each is walked in order. The logarithm is [`ln`], plain f64 arithmetic, so
//! every machine draws the same codes.
//!
//! Boundary gating (a code that would leave its range is not moved) depends on the current codes
//! and is applied by the caller, given the codes at the positions ([`CodeNoise::gated`]).

use super::noise::{splitmix64, NoiseKey};

/// The largest σ (in code units) for which u ∈ {−1, 0, 1} is exact to 10⁻²¹.
pub const MAX_SIGMA: f64 = 0.1;

/// Codes per independently keyed chunk.
pub const CHUNK: u64 = 1 << 16;

/// P(u ≠ 0) for noise scale σ (code units), σ ∈ (0, [`MAX_SIGMA`]].
pub fn nonzero_probability(sigma: f64) -> f64 {
    assert!(sigma > 0.0 && sigma <= MAX_SIGMA, "σ = {sigma} outside (0, {MAX_SIGMA}]");
    // √(2/π); the e^(−1/(2σ²)) and tail terms are < 1e-21 here.
    sigma * 0.797_884_560_802_865_4
}

/// One member's integer noise for one tensor: the positions (element indices, increasing) where
/// u = +1 and where u = −1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeNoise {
    pub plus: Vec<u32>,
    pub minus: Vec<u32>,
}

impl CodeNoise {
    /// Draws u for the `len` codes of the tensor keyed by `key` at noise scale σ. `sign` = −1
    /// gives the mirrored member (the same positions, opposite moves).
    pub fn draw(key: &NoiseKey, len: usize, sigma: f64, sign: i8) -> CodeNoise {
        let mut out = CodeNoise::default();
        for c in 0..(len as u64).div_ceil(CHUNK) {
            out.draw_chunk(key, len, sigma, sign, c);
        }
        out
    }

    /// Appends the moves of chunk `c` (codes [c·CHUNK, (c + 1)·CHUNK) of the `len`) to `self`:
    /// a chunk's moves are the same whether drawn alone or with the whole tensor.
    pub fn draw_chunk(&mut self, key: &NoiseKey, len: usize, sigma: f64, sign: i8, c: u64) {
        assert!(len <= u32::MAX as usize, "a tensor of {len} codes");
        let p = nonzero_probability(sigma);
        let inv_log_q = 1.0 / ln_1m(p);
        let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(len as u64));
        let mut stream = Stream::new(key, c);
        let mut pos = start;
        loop {
            let r = stream.next();
            // U ∈ (0, 1] from the top 53 bits; the sign from the lowest bit.
            let u = ((r >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
            let gap = (ln(u) * inv_log_q) as u64; // ⌊·⌋ of a non-negative value
            pos = match pos.checked_add(gap) {
                Some(q) if q < end => q,
                _ => break,
            };
            let up = (r & 1 == 1) == (sign > 0);
            if up {
                self.plus.push(pos as u32);
            } else {
                self.minus.push(pos as u32);
            }
            pos += 1;
        }
    }

    /// The moves of `self`, or of its mirror (the same positions, opposite moves), that keep their
    /// codes inside [lo, hi], given the codes at the + and at the − positions of `self`: a +1 needs
    /// a code below hi, a −1 one above lo.
    pub fn gated<C: Copy + Into<i32>>(&self, mirrored: bool, plus: &[C], minus: &[C], lo: i32, hi: i32) -> CodeNoise {
        let keep = |list: &[u32], codes: &[C], ok: &dyn Fn(i32) -> bool| -> Vec<u32> {
            list.iter().zip(codes).filter(|&(_, &c)| ok(c.into())).map(|(&i, _)| i).collect()
        };
        let (up, down) = if mirrored {
            ((&self.minus, minus), (&self.plus, plus))
        } else {
            ((&self.plus, plus), (&self.minus, minus))
        };
        CodeNoise { plus: keep(up.0, up.1, &|c| c < hi), minus: keep(down.0, down.1, &|c| c > lo) }
    }

    /// Number of moved codes.
    pub fn len(&self) -> usize {
        self.plus.len() + self.minus.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A chunk's counter stream: splitmix64 of (key chain, counter).
struct Stream {
    base: u64,
    i: u64,
}

impl Stream {
    fn new(key: &NoiseKey, chunk: u64) -> Stream {
        let mut h = splitmix64(key.seed ^ 0x5145_535f_636f_6465); // "QES_code"
        for v in [key.iteration, key.noise_id as u64, key.tensor_key, chunk] {
            h = splitmix64(h ^ v);
        }
        Stream { base: h, i: 0 }
    }
    fn next(&mut self) -> u64 {
        self.i += 1;
        splitmix64(self.base ^ self.i.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }
}

/// ln x for x > 0 finite, in plain f64 operations (the same bits on every machine, unlike the
/// platform's libm): x = m·2ᵉ with m ∈ [√½, √2), ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤
/// 0.172, by its series to s¹⁷ (error < 10⁻¹⁴).
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7FF) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for k in (0..9).rev() {
        series = series * s2 + 1.0 / (2 * k + 1) as f64;
    }
    2.0 * s * series + e as f64 * std::f64::consts::LN_2
}

/// ln(1 − p) for p ∈ (0, 0.1] by its series −Σ pᵏ/k (40 terms: error < 10⁻⁴¹).
fn ln_1m(p: f64) -> f64 {
    let mut sum = 0.0;
    for k in (1..=40).rev() {
        sum = sum * p + 1.0 / k as f64;
    }
    -p * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(noise_id: u32, tensor: u64) -> NoiseKey {
        NoiseKey { seed: 42, iteration: 3, noise_id, tensor_key: tensor }
    }

    #[test]
    fn ln_matches_std_closely() {
        for &x in &[1e-300, 1e-16, 0.001, 0.3, std::f64::consts::FRAC_1_SQRT_2, 1.0, 1.5, 2.0, 123.0, 1e300] {
            let (a, b) = (ln(x), x.ln());
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "ln({x}) = {a}, std {b}");
        }
        assert!((ln_1m(0.01) - (0.99f64).ln()).abs() < 1e-16);
    }

    /// The marginal of each code: P(+1) = P(−1) = p/2 (σ = 0.01 and 0.001), counted over 20 M
    /// codes, within 4 standard errors; and the number of moves per chunk is Binomial(CHUNK, p).
    #[test]
    fn marginal_frequencies_match_stochastic_rounding() {
        for &(sigma, n) in &[(0.01, 20_000_000usize), (0.001, 20_000_000)] {
            let u = CodeNoise::draw(&key(1, 7), n, sigma, 1);
            let p = nonzero_probability(sigma);
            for (name, count) in [("+1", u.plus.len()), ("−1", u.minus.len())] {
                let want = n as f64 * p / 2.0;
                let se = (n as f64 * p / 2.0 * (1.0 - p / 2.0)).sqrt();
                assert!((count as f64 - want).abs() < 4.0 * se, "σ={sigma} {name}: {count} vs {want} ± {se}");
            }
            assert!(u.plus.windows(2).all(|w| w[0] < w[1]) && u.minus.windows(2).all(|w| w[0] < w[1]));
            assert!(u.plus.iter().chain(&u.minus).all(|&i| (i as usize) < n));
        }
        // The exact marginal by the definition, against the formula (numerical integration).
        for &sigma in &[0.01f64, 0.001, 0.1] {
            let (mut acc, steps) = (0.0, 400_000);
            for i in 0..steps {
                let z = -12.0 + 24.0 * (i as f64 + 0.5) / steps as f64;
                let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                acc += (sigma * z).abs().min(1.0) * pdf * 24.0 / steps as f64;
            }
            assert!((acc - nonzero_probability(sigma)).abs() < 1e-9, "σ={sigma}: {acc}");
        }
    }

    /// Positions do not depend on how a tensor is later split, differ between members and tensors,
    /// and the mirrored member moves the same codes the other way.
    #[test]
    fn streams_are_independent_and_mirrored_members_negate() {
        let a = CodeNoise::draw(&key(1, 7), 300_000, 0.01, 1);
        assert_eq!(a, CodeNoise::draw(&key(1, 7), 300_000, 0.01, 1));
        let m = CodeNoise::draw(&key(1, 7), 300_000, 0.01, -1);
        assert_eq!((m.plus.clone(), m.minus.clone()), (a.minus.clone(), a.plus.clone()));
        let other_tensor = CodeNoise::draw(&key(1, 8), 300_000, 0.01, 1);
        let other_member = CodeNoise::draw(&key(2, 7), 300_000, 0.01, 1);
        let overlap = |x: &CodeNoise, y: &CodeNoise| x.plus.iter().filter(|i| y.plus.binary_search(i).is_ok()).count();
        // Independent patterns share about p/2 of their +1 positions (≈ 5 of 1200).
        assert!(overlap(&a, &other_tensor) < 30 && overlap(&a, &other_member) < 30);
        // A shorter tensor with the same key is a prefix (chunks are keyed by position).
        let short = CodeNoise::draw(&key(1, 7), 100_000, 0.01, 1);
        assert_eq!(short.plus, a.plus.iter().copied().filter(|&i| i < 100_000).collect::<Vec<_>>());
    }

    #[test]
    fn gating_keeps_codes_in_range() {
        let u = CodeNoise { plus: vec![0, 1, 2], minus: vec![0, 1, 2] };
        // The codes at the + and at the − positions (here the same positions).
        let codes = [15, 7, 0];
        let u = u.gated(false, &codes, &codes, 0, 15);
        assert_eq!(u, CodeNoise { plus: vec![1, 2], minus: vec![0, 1] });
    }
}
