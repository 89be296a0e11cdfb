//! The noise generator: chunking/thread independence and its statistics.

use evotune::es::noise::{tensor_key, NoiseKey};
use evotune::es::NoiseMode;
use proptest::prelude::*;
use rayon::prelude::*;

fn key(seed: u64, iteration: u64, noise_id: u32, tensor: u64) -> NoiseKey {
    NoiseKey { seed, iteration, noise_id, tensor_key: tensor }
}

fn stream(k: &NoiseKey, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    k.fill(0, &mut v);
    v
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any cut of [start, start + n) into pieces gives the same numbers as one call.
    #[test]
    fn any_chunking_gives_the_same_bits(seed in any::<u64>(), start in 0u64..1_000_000, cuts in prop::collection::vec(1usize..700, 1..12)) {
        let k = key(seed, 1, 2, 3);
        let n: usize = cuts.iter().sum();
        let mut whole = vec![0.0f32; n];
        k.fill(start, &mut whole);
        let mut pieces = vec![0.0f32; n];
        let mut at = 0;
        for c in &cuts {
            k.fill(start + at as u64, &mut pieces[at..at + c]);
            at += c;
        }
        prop_assert!(whole.iter().zip(&pieces).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn thread_count_does_not_change_the_bits() {
    let k = key(42, 7, 3, 11);
    let n = 1 << 20;
    let run = |threads: usize, chunk: usize| {
        pool(threads).install(|| {
            let mut v = vec![0.0f32; n];
            v.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| k.fill((i * chunk) as u64, c));
            v
        })
    };
    let one = run(1, 4096);
    let two = run(2, 1001);
    assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(one.iter().zip(&stream(&k, n)).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn moments_and_tails_are_those_of_a_standard_normal() {
    let n = 1 << 24;
    let v = stream(&key(1, 0, 0, 0), n);
    let m = |p: i32| v.iter().map(|&x| (x as f64).powi(p)).sum::<f64>() / n as f64;
    let (mean, var) = (m(1), m(2) - m(1).powi(2));
    let skew = m(3) / var.powf(1.5);
    let kurt = m(4) / var.powi(2);
    println!("mean {mean:.2e} var {var:.6} skew {skew:.2e} kurtosis {kurt:.5}");
    // Standard errors at n = 2^24: mean 2.4e-4, var 3.5e-4, skew 6e-4, kurtosis 1.2e-3.
    assert!(mean.abs() < 1.5e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 2e-3, "var {var}");
    assert!(skew.abs() < 4e-3, "skew {skew}");
    assert!((kurt - 3.0).abs() < 1e-2, "kurtosis {kurt}");
    // Tail frequencies: P(|x|>2) = 0.0455, P(|x|>3) = 2.70e-3, P(|x|>4) = 6.33e-5.
    for (t, p) in [(2.0f32, 0.045_500), (3.0, 2.699_8e-3), (4.0, 6.334e-5)] {
        let count = v.iter().filter(|x| x.abs() > t).count() as f64;
        let expected = p * n as f64;
        let sd = expected.sqrt();
        println!("|x| > {t}: {count} vs {expected:.0} ± {sd:.0}");
        assert!((count - expected).abs() < 5.0 * sd, "|x| > {t}: {count} vs {expected}");
    }
    assert!(v.iter().all(|x| x.is_finite() && x.abs() < 6.7));
    // A fine histogram against the normal CDF: 40 bins on [-4, 4], chi-square.
    let bins = 40usize;
    let mut hist = vec![0f64; bins];
    for &x in &v {
        let b = ((x as f64 + 4.0) / 8.0 * bins as f64).floor();
        if (0.0..bins as f64).contains(&b) {
            hist[b as usize] += 1.0;
        }
    }
    let cdf = |x: f64| 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
    let chi2: f64 = (0..bins)
        .map(|b| {
            let lo = -4.0 + 8.0 * b as f64 / bins as f64;
            let hi = lo + 8.0 / bins as f64;
            let e = (cdf(hi) - cdf(lo)) * n as f64;
            (hist[b] - e).powi(2) / e
        })
        .sum();
    println!("chi-square over {bins} bins: {chi2:.1}");
    assert!(chi2 < 90.0, "chi-square {chi2} (40 bins; the 99.99% point is about 80)");
}

/// erf to ~1e-15: Taylor series below 3, continued fraction for erfc above.
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x < 3.0 {
        // erf x = 2/√π Σ (−1)^k x^(2k+1) / (k! (2k+1)).
        let mut sum = 0.0;
        let mut term = x;
        let mut k = 0.0;
        while term.abs() > 1e-17 {
            sum += term / (2.0 * k + 1.0);
            k += 1.0;
            term *= -x * x / k;
        }
        return sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    let mut f = 0.0;
    for k in (1..60).rev() {
        f = (k as f64 / 2.0) / (x + f);
    }
    1.0 - (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + f)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&x| x as f64).sum::<f64>() / n, b.iter().map(|&x| x as f64).sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb)).sum::<f64>() / n;
    let va: f64 = a.iter().map(|&x| (x as f64 - ma).powi(2)).sum::<f64>() / n;
    let vb: f64 = b.iter().map(|&y| (y as f64 - mb).powi(2)).sum::<f64>() / n;
    cov / (va * vb).sqrt()
}

fn squares(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x * x).collect()
}

#[test]
fn streams_of_different_keys_are_uncorrelated() {
    let n = 1 << 20;
    let base = key(5, 10, 2, 3);
    let a = stream(&base, n);
    let others = [
        ("tensor", key(5, 10, 2, 4)),
        ("member", key(5, 10, 3, 3)),
        ("iteration", key(5, 11, 2, 3)),
        ("seed", key(6, 10, 2, 3)),
    ];
    // The standard error of a correlation at n = 2^20 is 1e-3; allow 5 of them.
    for (what, k) in others {
        let b = stream(&k, n);
        let r = correlation(&a, &b);
        let r2 = correlation(&squares(&a), &squares(&b));
        println!("{what}: corr {r:.2e}, corr of squares {r2:.2e}");
        assert!(r.abs() < 5e-3 && r2.abs() < 5e-3, "{what}: {r} {r2}");
    }
    // Within a stream: neighbours (the cos/sin halves of a pair, and consecutive pairs).
    for lag in [1usize, 2, 3, 64] {
        let r = correlation(&a[..n - lag], &a[lag..]);
        let r2 = correlation(&squares(&a[..n - lag]), &squares(&a[lag..]));
        println!("lag {lag}: corr {r:.2e}, corr of squares {r2:.2e}");
        assert!(r.abs() < 5e-3 && r2.abs() < 5e-3, "lag {lag}: {r} {r2}");
    }
}

#[test]
fn shared_shape_mode_repeats_noise_across_equal_shapes() {
    let (s1, s2, s3) = ([576usize, 64], [576usize, 64], [64usize, 576]);
    let k = |id, shape: &[usize]| key(1, 1, 1, tensor_key(NoiseMode::SharedShape, id, shape));
    assert_eq!(stream(&k(0, &s1), 100), stream(&k(7, &s2), 100));
    assert_ne!(stream(&k(0, &s1), 100), stream(&k(1, &s3), 100));
    let iid = |id| key(1, 1, 1, tensor_key(NoiseMode::Iid, id, &s1));
    assert_ne!(stream(&iid(0), 100), stream(&iid(7), 100));
}
