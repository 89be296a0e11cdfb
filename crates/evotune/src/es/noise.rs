//! Counter-based Gaussian noise: ε[i] = f(run seed, iteration, noise id, tensor key, i).
//!
//! Nothing is stored: any element of any member's noise can be regenerated on its own, so the
//! output never depends on how the work is chunked or how many threads run it.
//!
//! # The generator
//! Elements come in pairs: element `i` belongs to pair `j = i / 2` and is the cosine (even `i`) or
//! sine (odd `i`) half of one Box–Muller draw.
//! 1. Key: `(seed, iteration, noise id, tensor key, j >> 32)` is absorbed by a splitmix64 chain into
//!    four 32-bit round keys `k0..k3` (once per stream, scalar).
//! 2. Counter hash, 2 × 2 rounds of murmur3's `fmix32` on the low word `l = j as u32`:
//!    `h1 = fmix32(fmix32(l ⊕ k0) ⊕ k1)`, `h2 = fmix32(fmix32(l ⊕ k2) ⊕ k3)`.
//! 3. Uniforms: `u1 = (h1 >> 1)·2⁻³¹ + 2⁻³² ∈ (0, 1]`, `x = (h2 as i32)·2⁻³² ∈ [−½, ½)`.
//! 4. Box–Muller: `r = √(−2 ln u1)`, angle `2πx`; with `a = πx ∈ [−π/2, π/2)`, `s = sin a`,
//!    `c = cos a` (Taylor polynomials, error < 1e-7 on that interval):
//!    `ε[2j] = r·(c² − s²) = r·cos 2πx`, `ε[2j+1] = r·(2sc) = r·sin 2πx`.
//!
//! Every step is branch-free integer or IEEE arithmetic (no `mul_add`, which Rust never forms on
//! its own), so the AVX2 / AVX-512 builds of the loop ([`crate::kernels::normals`]) and the
//! portable build give bit-identical output; they differ only in vector width. Tails: `u1 ≥ 2⁻³²`
//! caps |ε| at √(64 ln 2) ≈ 6.66, a 2.7e-11 probability event for a true normal.

use crate::kernels::{self, Level};

/// How each member's noise is keyed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseMode {
    /// Independent across tensors: the tensor id is part of the key (the default).
    #[default]
    Iid,
    /// Tensors of equal shape get equal noise (the reference code's behaviour; comparison only).
    SharedShape,
}

from_str_by_serde!(NoiseMode);

/// One member's noise stream for one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseKey {
    pub seed: u64,
    pub iteration: u64,
    pub noise_id: u32,
    /// Tensor id (`iid` mode) or a hash of the shape (`shared-shape` mode): see [`tensor_key`].
    pub tensor_key: u64,
}

/// The tensor part of the key: the tensor id for `iid` noise, or a hash of the shape for
/// `shared-shape` noise (tensors of equal shape then receive identical noise, as in the reference
/// Python code, which reseeds its generator with the member's seed for every tensor).
pub fn tensor_key(mode: NoiseMode, id: usize, shape: &[usize]) -> u64 {
    match mode {
        NoiseMode::Iid => id as u64,
        NoiseMode::SharedShape => {
            // Distinct domain from tensor ids, then absorb rank and every dimension.
            let mut h = splitmix64(0x5348_4150_4500_0000 ^ shape.len() as u64);
            for &dim in shape {
                h = splitmix64(h ^ dim as u64);
            }
            h
        }
    }
}

/// splitmix64's output function applied to `x + γ`: a full-avalanche 64-bit mixer.
#[inline]
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The noise of one iteration of one run: hands out each member's key for each tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IterationNoise {
    pub seed: u64,
    pub iteration: u64,
    pub mode: NoiseMode,
}

impl IterationNoise {
    /// The stream of member noise id `noise_id` for tensor `id` of shape `shape`.
    pub fn key(&self, noise_id: u32, id: usize, shape: &[usize]) -> NoiseKey {
        NoiseKey { seed: self.seed, iteration: self.iteration, noise_id, tensor_key: tensor_key(self.mode, id, shape) }
    }
}

impl NoiseKey {
    /// Round keys for the pairs whose index has high word `hi`.
    fn round_keys(&self, hi: u32) -> [u32; 4] {
        let mut h = splitmix64(self.seed ^ 0x6576_6f74_756e_6521); // "evotune!"
        h = splitmix64(h ^ self.iteration);
        h = splitmix64(h ^ self.noise_id as u64);
        h = splitmix64(h ^ self.tensor_key);
        h = splitmix64(h ^ hi as u64);
        let a = splitmix64(h);
        let b = splitmix64(a);
        [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32]
    }

    /// Writes ε[start .. start + out.len()] of this stream.
    pub fn fill(&self, start: u64, out: &mut [f32]) {
        let mut i = start;
        let mut rest = out;
        // A leading odd element is the sine half of its pair.
        if i & 1 == 1 && !rest.is_empty() {
            rest[0] = self.pair(i / 2).1;
            rest = &mut rest[1..];
            i += 1;
        }
        // Whole pairs, split where the pair index's high word changes (never for real tensors).
        while rest.len() >= 2 {
            let j = i / 2;
            let lo = j as u32;
            let to_wrap = (1u64 << 32) - lo as u64;
            let pairs = ((rest.len() / 2) as u64).min(to_wrap) as usize;
            let keys = self.round_keys((j >> 32) as u32);
            let (head, tail) = rest.split_at_mut(2 * pairs);
            normals(keys, lo, head);
            rest = tail;
            i += 2 * pairs as u64;
        }
        // A trailing element is the cosine half of its pair.
        if let Some(last) = rest.first_mut() {
            *last = self.pair(i / 2).0;
        }
    }

    /// Pair `j` = (ε[2j], ε[2j+1]), computed alone (the same arithmetic as the vector loop).
    pub fn pair(&self, j: u64) -> (f32, f32) {
        kernels::normals::normal_pair(self.round_keys((j >> 32) as u32), j as u32)
    }

    /// ε[i] alone.
    pub fn at(&self, i: u64) -> f32 {
        let (c, s) = self.pair(i / 2);
        if i & 1 == 0 {
            c
        } else {
            s
        }
    }
}

/// Pairs `l0, l0+1, …` into `out` (even length) at the kernels' SIMD level
/// ([`kernels::simd_level`], which `EVOTUNE_SIMD` caps).
pub fn normals(k: [u32; 4], l0: u32, out: &mut [f32]) {
    normals_at(kernels::simd_level(), k, l0, out)
}

/// [`normals`] at a given level (the same bits at every level); a level the CPU lacks falls back
/// to the portable loop.
pub fn normals_at(level: Level, k: [u32; 4], l0: u32, out: &mut [f32]) {
    kernels::normals::normals_at(level, k, l0, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(noise_id: u32, tensor_key: u64) -> NoiseKey {
        NoiseKey { seed: 7, iteration: 3, noise_id, tensor_key }
    }

    #[test]
    fn every_level_equals_the_portable_loop_bit_for_bit() {
        let k = key(1, 2).round_keys(0);
        let mut want = vec![0.0f32; 2 * 1001];
        kernels::normals::normals_at(Level::Portable, k, 4_294_966_000, &mut want); // also crosses the u32 wrap of l
        for lvl in [Level::Portable, Level::Avx2Fma, Level::Avx512] {
            let mut got = vec![0.0f32; want.len()];
            normals_at(lvl, k, 4_294_966_000, &mut got);
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "level {lvl:?} differs from the portable loop");
        }
    }

    #[test]
    fn fill_matches_single_elements_at_odd_offsets() {
        let k = key(5, 9);
        for (start, len) in [(0u64, 0usize), (0, 1), (1, 1), (1, 2), (3, 10), (1000, 17), (7, 64)] {
            let mut out = vec![0.0f32; len];
            k.fill(start, &mut out);
            for (n, &v) in out.iter().enumerate() {
                assert_eq!(v.to_bits(), k.at(start + n as u64).to_bits(), "start {start} len {len} element {n}");
            }
        }
    }

    #[test]
    fn high_word_of_pair_index_changes_the_stream() {
        let k = key(0, 0);
        // Pair 2^32 + 5 must not equal pair 5 (the high word is part of the key).
        assert_ne!(k.pair(5), k.pair((1u64 << 32) + 5));
        let mut out = vec![0.0f32; 6];
        k.fill((1u64 << 33) - 2, &mut out); // straddles the high-word boundary
        for (n, &v) in out.iter().enumerate() {
            assert_eq!(v.to_bits(), k.at((1u64 << 33) - 2 + n as u64).to_bits());
        }
    }

    #[test]
    fn shared_shape_keys_depend_only_on_shape() {
        let a = tensor_key(NoiseMode::SharedShape, 3, &[4, 5]);
        assert_eq!(a, tensor_key(NoiseMode::SharedShape, 10, &[4, 5]));
        assert_ne!(a, tensor_key(NoiseMode::SharedShape, 3, &[5, 4]));
        assert_ne!(a, tensor_key(NoiseMode::SharedShape, 3, &[20]));
        assert_ne!(tensor_key(NoiseMode::Iid, 3, &[4, 5]), tensor_key(NoiseMode::Iid, 10, &[4, 5]));
    }
}
