//! Every kernel level against `reference` over an edge-shape grid (gemm-style: 0, 1, tails of 7 and
//! 63/65 around the 16-lane and 64-column blocks, and the default model's sizes).

use super::*;

/// Deterministic uniform(−1, 1) numbers (xorshift64*).
pub(super) fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            2.0 * u - 1.0
        })
        .collect()
}

pub(super) fn levels() -> Vec<Level> {
    [Level::Portable, Level::Avx2Fma, Level::Avx512].into_iter().filter(|l| l.supported()).collect()
}

const DIMS: [usize; 6] = [0, 1, 7, 63, 64, 65];

fn shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &b in &DIMS {
        for &k in DIMS.iter().chain(&[576, 1536]) {
            for &o in DIMS.iter().chain(&[192, 576]) {
                v.push((b, k, o));
            }
        }
    }
    v.extend([(3, 576, 49152), (17, 1536, 576), (5, 576, 1536), (16, 64, 7)]);
    // One row of a matrix beyond the caches (one stream per thread at AVX2), with a column tail.
    v.extend([(1, 576, 49152), (1, 1536, 2731)]);
    // Decode-sized batches with k and column tails.
    v.extend([(16, 1536, 576), (12, 577, 49), (4, 100, 13), (9, 400, 1), (16, 385, 25), (8, 576, 50)]);
    // Packed panels (≥ 24 rows): row tiles of 12 and panels of 32 with tails, k tails, both splits.
    v.extend([(24, 576, 32), (100, 576, 200), (131, 1536, 65), (97, 63, 97), (400, 65, 45), (37, 1, 33)]);
    v
}

/// Tolerance against the sequential reference: both sums are of the same K products, in different
/// orders (reference: sequential, unfused; fast: 16 fused lanes + tree). The classical bound for
/// recursive summation is |Δ| ≤ γ_K Σ|xₖwₖ| with γ_K ≈ K·u, u = 2⁻²⁴; both orders obey it, so their
/// difference is ≤ 2·K·u·Σ|xₖwₖ| ≤ K·ε_f32·Σ|xₖwₖ| (ε = 2u), plus a tiny absolute floor.
#[test]
fn matmul_matches_reference_on_edge_shapes() {
    for (si, &(b, k, o)) in shapes().iter().enumerate() {
        let x = rand_vec(b * k, 1 + si as u64);
        let w = rand_vec(o * k, 1000 + si as u64);
        let mut yr = vec![0.0; b * o];
        reference::matmul(&x, &w, &mut yr, b, k, o);
        for level in levels() {
            let mut y = vec![f32::NAN; b * o];
            matmul_at(level, &x, &w, &mut y, b, k, o);
            let mut worst = 0.0f32;
            for bi in 0..b {
                for oi in 0..o {
                    let abs: f32 = (0..k).map(|ki| (x[bi * k + ki] * w[oi * k + ki]).abs()).sum();
                    let tol = k as f32 * f32::EPSILON * abs + 1e-30;
                    let d = (y[bi * o + oi] - yr[bi * o + oi]).abs();
                    assert!(
                        d <= tol,
                        "{level:?} b={b} k={k} o={o} at ({bi},{oi}): {} vs {} (tol {tol})",
                        y[bi * o + oi],
                        yr[bi * o + oi]
                    );
                    worst = worst.max(d / tol.max(1e-30));
                }
            }
            if k >= 576 && b * o > 0 {
                println!("{level:?} b={b} k={k} o={o}: max |Δ|/tol = {worst:.3}");
            }
        }
    }
}

#[test]
fn matmul_levels_are_bit_identical() {
    for (si, &(b, k, o)) in shapes().iter().enumerate() {
        let x = rand_vec(b * k, 7 + si as u64);
        let w = rand_vec(o * k, 9000 + si as u64);
        let mut y0 = vec![0.0; b * o];
        matmul_at(Level::Portable, &x, &w, &mut y0, b, k, o);
        for level in levels() {
            let mut y = vec![0.0; b * o];
            matmul_at(level, &x, &w, &mut y, b, k, o);
            let same = y.iter().zip(&y0).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{level:?} differs from portable at b={b} k={k} o={o}");
        }
    }
}

/// A row's result must not depend on the other rows (batch invariance) nor on the thread count.
#[test]
fn matmul_rows_independent_of_batch_and_threads() {
    // 1531 columns: w's rows split unevenly between threads, with a tail of 3 below the strip width.
    for o in [1536, 1531] {
        rows_independent_of_batch_and_threads(576, o);
    }
}

fn rows_independent_of_batch_and_threads(k: usize, o: usize) {
    let w = rand_vec(o * k, 5);
    // Up to 400 rows: past the row-split thresholds (tiles and panels) threads split rows, below them columns.
    let x = rand_vec(400 * k, 6);
    for level in levels() {
        let mut alone = vec![0.0; 400 * o];
        for r in 0..400 {
            matmul_at(level, &x[r * k..(r + 1) * k], &w, &mut alone[r * o..(r + 1) * o], 1, k, o);
        }
        for b in [2, 3, 4, 5, 16, 24, 33, 70, 200, 300, 400] {
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![0.0; b * o];
                pool.install(|| matmul_at(level, &x[..b * k], &w, &mut y, b, k, o));
                assert!(
                    y.iter().zip(&alone).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{level:?} b={b} o={o} threads={threads}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_reduction_follows_tree16() {
    if !Level::Avx512.supported() {
        println!("skipped: no AVX-512 on this CPU");
        return;
    }
    for seed in 0..20u64 {
        let v = rand_vec(256, seed);
        let mut a = [[0.0f32; 16]; 16];
        for (e, row) in a.iter_mut().enumerate() {
            for (l, x) in row.iter_mut().enumerate() {
                // widely varying magnitudes so that any change of order changes the bits
                *x = v[e * 16 + l] * 10f32.powi((l as i32 * 7 + e as i32) % 9 - 4);
            }
        }
        // SAFETY: AVX-512F checked above.
        let got = unsafe { avx512::reduce16_arrays(&a) };
        for e in 0..16 {
            assert_eq!(got[e].to_bits(), lanes::tree16(&a[e]).to_bits(), "element {e}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_reduction_follows_tree16() {
    if !Level::Avx2Fma.supported() {
        println!("skipped: no AVX2 on this CPU");
        return;
    }
    for seed in 0..20u64 {
        let v = rand_vec(128, seed);
        let mut a = [[0.0f32; 16]; 8];
        for (e, row) in a.iter_mut().enumerate() {
            for (l, x) in row.iter_mut().enumerate() {
                *x = v[e * 16 + l] * 10f32.powi((l as i32 * 7 + e as i32) % 9 - 4);
            }
        }
        // The kernels hand reduce8 the first tree step (lane i + lane i+8) of each element.
        let h: [[f32; 8]; 8] = std::array::from_fn(|e| std::array::from_fn(|i| a[e][i] + a[e][i + 8]));
        // SAFETY: AVX2 checked above.
        let got = unsafe { avx2::reduce8_arrays(&h) };
        for e in 0..8 {
            assert_eq!(got[e].to_bits(), lanes::tree16(&a[e]).to_bits(), "element {e}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn fma_probes_compute_their_chains() {
    // Each of 12 chains × W lanes accumulates `steps` products a·b = 1 − 1e-12 (exactly 1 in f32
    // after rounding of the fused step at these magnitudes); the sum is 12·W·steps up to rounding.
    for steps in [1usize, 10, 1000] {
        if Level::Avx512.supported() {
            // SAFETY: AVX-512F checked.
            let got = unsafe { avx512::fma_chains_avx512(steps) } as f64;
            let want = 192.0 * steps as f64;
            assert!((got - want).abs() <= want * 1e-5, "AVX-512, {steps} steps: {got} vs {want}");
        }
        if Level::Avx2Fma.supported() {
            // SAFETY: AVX2 and FMA checked.
            let got = unsafe { avx2::fma_chains_avx2(steps) } as f64;
            let want = 96.0 * steps as f64;
            assert!((got - want).abs() <= want * 1e-5, "AVX2, {steps} steps: {got} vs {want}");
        }
    }
    if simd_level() != Level::Portable {
        let peak = crate::kernels::probe::fma_peak(1).expect("a SIMD level");
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn int8_probes_compute_their_chains() {
    // 12 chains of byte products 1·1: `vpdpbusd` adds 4 to each of 16 lanes per step, `vpmaddubsw`
    // 2 to each of 16 lanes (no 16-bit overflow below 16384 steps).
    use crate::kernels::{quant_avx2, quant_avx512, QuantKernel};
    for steps in [1usize, 10, 1000] {
        if QuantKernel::at(Level::Avx512) == QuantKernel::Avx512Vnni {
            // SAFETY: AVX-512F/BW/VNNI checked by QuantKernel::at.
            assert_eq!(unsafe { quant_avx512::dot_chains(steps) }, 768 * steps as i64);
        }
        if QuantKernel::at(Level::Avx2Fma) == QuantKernel::Avx2 {
            // SAFETY: AVX2 checked by QuantKernel::at.
            assert_eq!(unsafe { quant_avx2::dot_chains(steps) }, 384 * steps as i64);
        }
    }
    if QuantKernel::at(simd_level()) != QuantKernel::Portable {
        let peak = crate::kernels::probe::int8_peak(1).expect("an integer kernel");
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
    }
}

#[test]
fn attention_dots_and_weighted_sums_equal_the_plain_loops() {
    // Same bits as `lanes::dot` per key and as the sequential o += p·v loop, for head sizes on and
    // off the 16-lane fast path and key counts around the 16-key blocks.
    for dh in [16usize, 24, 40, 64, 80, 128, 192] {
        let stride = 3 * dh + 5;
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 24, 33, 100] {
            let q = rand_vec(dh, n as u64 + 7);
            // Ending at the last key's last element: nothing past it may be read.
            let kv = rand_vec(n.saturating_sub(1) * stride + dh, dh as u64 * 31 + n as u64);
            let p = rand_vec(n, 99 + n as u64);
            let mut want = vec![0.0f32; dh];
            for j in 0..n {
                for e in 0..dh {
                    want[e] += p[j] * kv[j * stride + e];
                }
            }
            for level in levels() {
                let mut got = vec![0.0f32; n];
                dots_at(level, &q, &kv, stride, &mut got);
                for j in 0..n {
                    let want = lanes::dot(&q, &kv[j * stride..j * stride + dh]);
                    assert_eq!(got[j].to_bits(), want.to_bits(), "{level:?} dots dh={dh} n={n} j={j}");
                }
                // Two segments, the second added after the first: the bits of one sum over both.
                for split in [0, n / 3, n] {
                    let mut two = vec![0.0f32; dh];
                    weighted_sum_add_at(level, &mut two, &p[..split], &kv, stride);
                    weighted_sum_add_at(level, &mut two, &p[split..], &kv[(split * stride).min(kv.len())..], stride);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&two), bits(&want), "{level:?} weighted_sum_add dh={dh} n={n} split={split}");
                }
            }
            let mut out = vec![f32::NAN; dh];
            crate::kernels::weighted_sum(&mut out, &p, &kv, stride);
            assert!(out.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "weighted_sum dh={dh} n={n}");
        }
    }
}

#[test]
fn rowwise_ops_match_reference() {
    for &t in &[1usize, 7, 65] {
        for &d in &[1usize, 7, 64, 576] {
            let x = rand_vec(t * d, 11);
            let wt = rand_vec(d, 12);
            let (mut a, mut r) = (vec![0.0; t * d], vec![0.0; t * d]);
            rmsnorm(&mut a, &x, &wt, d, 1e-5);
            reference::rmsnorm(&mut r, &x, &wt, d, 1e-5);
            // sum of squares in a different order: relative error ≤ d·ε on the mean, halved by sqrt.
            for (p, q) in a.iter().zip(&r) {
                assert!((p - q).abs() <= d as f32 * f32::EPSILON * q.abs() + 1e-6, "rmsnorm t={t} d={d}: {p} vs {q}");
            }
            let g = rand_vec(t * d, 13);
            let (mut s1, mut s2) = (g.clone(), vec![0.0; t * d]);
            silu_mul(&mut s1, &x);
            reference::silu_mul(&mut s2, &g, &x);
            // fast exp (≤ ~3 ulp) inside g/(1+e^(−g)): a few ulp of the result.
            for (p, q) in s1.iter().zip(&s2) {
                assert!((p - q).abs() <= 8.0 * f32::EPSILON * q.abs() + 1e-30, "silu_mul: {p} vs {q}");
            }
            let dd = dot(&x[..d], &g[..d]);
            let dr: f32 = x[..d].iter().zip(&g[..d]).map(|(p, q)| p * q).sum();
            let abs: f32 = x[..d].iter().zip(&g[..d]).map(|(p, q)| (p * q).abs()).sum();
            assert!((dd - dr).abs() <= d as f32 * f32::EPSILON * abs, "dot d={d}");
        }
    }
    // softmax against the reference (libm exp): a few ulp per probability.
    let z = rand_vec(100, 14).iter().map(|v| v * 30.0).collect::<Vec<f32>>();
    let (mut a, mut r) = (z.clone(), z.clone());
    softmax(&mut a);
    reference::softmax(&mut r);
    for (p, q) in a.iter().zip(&r) {
        assert!((p - q).abs() <= 1e-6 * q.abs() + 1e-30, "softmax: {p} vs {q}");
    }
    // softmax: sums to 1, order preserved, and stable for large inputs.
    let mut s = vec![1000.0, 1001.0, 999.0, -1e30];
    softmax(&mut s);
    assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[1] > s[0] && s[0] > s[2] && s[3] < 1e-30);
    // rope at angle 0 is the identity, at 90° maps (a, b) ↦ (−b, a).
    let mut v = vec![1.0, 2.0, 3.0, 4.0];
    rope(&mut v, &[1.0, 0.0], &[0.0, 1.0], 1, 4);
    assert_eq!(v, vec![1.0, -4.0, 3.0, 2.0]);
}

/// The SIMD builds of the row-wise ops compute the portable code's bits.
#[test]
fn rowwise_simd_builds_equal_portable() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for &(t, d) in &[(1usize, 1usize), (3, 7), (5, 64), (4, 576), (2, 1000), (70, 64)] {
        let x: Vec<f32> = rand_vec(t * d, 21).iter().map(|v| v * 40.0).collect();
        let (wt, u) = (rand_vec(d, 22), rand_vec(t * d, 23));
        let mut want_norm = vec![0.0; t * d];
        rmsnorm_at(Level::Portable, &mut want_norm, &x, &wt, d, 1e-5);
        let mut want_silu = x.clone();
        silu_mul_at(Level::Portable, &mut want_silu, &u);
        let mut want_soft = x.clone();
        softmax_at(Level::Portable, &mut want_soft);
        for level in levels() {
            let mut got = vec![0.0; t * d];
            rmsnorm_at(level, &mut got, &x, &wt, d, 1e-5);
            assert_eq!(bits(&got), bits(&want_norm), "{level:?} rmsnorm t={t} d={d}");
            let mut got = x.clone();
            silu_mul_at(level, &mut got, &u);
            assert_eq!(bits(&got), bits(&want_silu), "{level:?} silu_mul t={t} d={d}");
            let mut got = x.clone();
            softmax_at(level, &mut got);
            assert_eq!(bits(&got), bits(&want_soft), "{level:?} softmax t={t} d={d}");
            let got = dot_at(level, &x[..d], &u[..d]);
            assert_eq!(got.to_bits(), lanes::dot(&x[..d], &u[..d]).to_bits(), "{level:?} dot d={d}");
        }
    }
}

/// Register-only FMA GFLOP/s of one thread at each SIMD level the CPU has (the ceiling of each
/// level's kernels). Timing only:
/// `cargo test --release -p evotune --lib fma_peak_per_level -- --ignored --nocapture`.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn fma_peak_per_level() {
    use std::time::Instant;
    let one = |lanes: usize, f: &dyn Fn(usize) -> f32| {
        let steps = 50_000_000 / lanes;
        let _ = f(steps / 10); // warm-up
        (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f(steps));
                (steps * 12 * lanes * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    if Level::Avx512.supported() {
        // SAFETY: AVX-512F checked.
        println!("AVX-512: {:.1} GFLOP/s on one thread", one(16, &|s| unsafe { avx512::fma_chains_avx512(s) }));
    }
    if Level::Avx2Fma.supported() {
        // SAFETY: AVX2 and FMA checked.
        println!("AVX2:    {:.1} GFLOP/s on one thread", one(8, &|s| unsafe { avx2::fma_chains_avx2(s) }));
    }
}

#[cfg(target_arch = "x86_64")]
mod panels_vs_strips {
    use crate::kernels::panel::{matmul_panels, PanelKernel};
    use crate::kernels::strips::{matmul_strips, StripKernel};
    use crate::kernels::{avx2::Avx2Strips, avx512::Avx512Strips, panel_avx2::Avx2Panels};
    use crate::kernels::{panel_avx512::Avx512Panels, Level};
    use std::time::Instant;

    /// Best-of-rounds GFLOP/s, panels (`panel.rs`) vs the dot-product tiles of `strips.rs`, alternating in the
    /// same process, 1 and 2 threads, at each SIMD level the CPU has: where the dispatch should
    /// switch. Timing only:
    /// `cargo test --release -p evotune --lib panels_vs_tiles -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn panels_vs_tiles() {
        if Level::Avx512.supported() {
            compare::<Avx512Panels, Avx512Strips>("AVX-512");
        }
        if Level::Avx2Fma.supported() {
            compare::<Avx2Panels, Avx2Strips>("AVX2");
        }
    }

    fn compare<P: PanelKernel, S: StripKernel>(level: &str) {
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (b, k, o) in [
                (1024usize, 576usize, 1536usize),
                (1024, 1536, 576),
                (1024, 576, 192),
                (304, 576, 1536),
                (128, 576, 1536),
                (128, 1536, 576),
                (64, 576, 1536),
                (32, 576, 1536),
                (27, 576, 1536),
                (24, 576, 1536),
                (16, 576, 1536),
                (16, 1536, 576),
                (1, 576, 1536),
                (128, 576, 49152),
            ] {
                let x: Vec<f32> = (0..b * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
                let w: Vec<f32> = (0..o * k).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
                let mut y = vec![0.0; b * o];
                let flop = 2.0 * (b * k * o) as f64;
                let reps = (1e9 / flop).clamp(1.0, 100.0) as usize;
                let (mut best_p, mut best_t) = (0.0f64, 0.0f64);
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        pool.install(|| unsafe { matmul_panels::<P>(&x, &w, &mut y, b, k, o) });
                    }
                    best_p = best_p.max(reps as f64 * flop / t.elapsed().as_secs_f64() / 1e9);
                    let t = Instant::now();
                    for _ in 0..reps {
                        pool.install(|| unsafe { matmul_strips::<S>(&x, &w, &mut y, b, k, o) });
                    }
                    best_t = best_t.max(reps as f64 * flop / t.elapsed().as_secs_f64() / 1e9);
                }
                println!(
                    "{level} threads={threads} b={b:5} k={k:5} o={o:6}: panels {best_p:6.1}  tiles {best_t:6.1} GFLOP/s  ratio {:.2}",
                    best_p / best_t
                );
            }
        }
    }
}
