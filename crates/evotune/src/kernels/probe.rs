//! A measured f32 GEMM peak for this machine: the best wall-clock GFLOP/s of our matmul and (with
//! the `bench` feature) of the `gemm` crate (candle's GEMM) on a prefill-sized product, with the
//! current rayon pool's threads. Benchmarks divide their achieved FLOP rate by it ("fraction of
//! peak"). [`fma_peak`] is the
//! hardware's ceiling above any GEMM: FMAs on registers only, on every thread at once.
//! [`stream_seconds`] is the other ceiling: how fast the weights can be read from memory at all.

use std::time::Instant;

use rayon::prelude::*;

use crate::kernels;

/// GFLOP/s of the probe, per engine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmPeak {
    pub ours: f64,
    /// The `gemm` crate's reading; `None` in a build without the `bench` feature.
    pub gemm_crate: Option<f64>,
    /// The product measured: (B, K, O).
    pub shape: (usize, usize, usize),
}

impl GemmPeak {
    /// The higher of the two (ours alone without a `gemm` crate reading).
    pub fn best(&self) -> f64 {
        self.gemm_crate.map_or(self.ours, |g| self.ours.max(g))
    }

    /// Each engine's better reading of two probes of the same product.
    pub fn max(self, other: GemmPeak) -> GemmPeak {
        let gemm_crate = match (self.gemm_crate, other.gemm_crate) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        GemmPeak { ours: self.ours.max(other.ours), gemm_crate, ..self }
    }
}

/// Best of `repeats` timed runs of y = x·Wᵀ at (B, K, O) = (512, 576, 1536) for both engines (ours
/// only without the `bench` feature).
pub fn gemm_peak(repeats: usize) -> GemmPeak {
    let (b, k, o) = (512, 576, 1536);
    let x: Vec<f32> = (0..b * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
    let w: Vec<f32> = (0..o * k).map(|i| ((i * 104_729) % 1000) as f32 * 1e-3 - 0.5).collect();
    let mut y = vec![0.0f32; b * o];
    let flop = 2.0 * (b * k * o) as f64;
    let best = |f: &mut dyn FnMut()| {
        f(); // warm-up
        (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                for _ in 0..4 {
                    f();
                }
                4.0 * flop / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    let ours = best(&mut || kernels::matmul(&x, &w, &mut y, b, k, o));
    #[cfg(feature = "bench")]
    let gemm_crate = {
        let threads = rayon::current_num_threads();
        Some(best(&mut || gemm_crate_matmul(&x, &w, &mut y, b, k, o, threads)))
    };
    #[cfg(not(feature = "bench"))]
    let gemm_crate = None;
    GemmPeak { ours, gemm_crate, shape: (b, k, o) }
}

/// GFLOP/s of register-only fused multiply-adds on all threads of the current rayon pool at once,
/// at the matmul's level ([`kernels::simd_level`], so `EVOTUNE_SIMD=avx2` measures the AVX2
/// peak): 12 independent chains of zmm (AVX-512) or ymm (AVX2) per thread, the best of `repeats`
/// runs of ≈ 0.05 s. No matmul at that level can exceed it; `None` at the portable level.
pub fn fma_peak(repeats: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let (lanes, steps): (usize, usize) = match kernels::simd_level() {
            kernels::Level::Avx512 => (16, 20_000_000),
            kernels::Level::Avx2Fma => (8, 40_000_000),
            kernels::Level::Portable => return None,
        };
        Some(chains_rate(repeats, (steps * 12 * lanes * 2) as f64, || match lanes {
            // SAFETY: simd_level() returns only levels the CPU supports.
            16 => unsafe { kernels::avx512::fma_chains_avx512(steps) as f64 },
            // SAFETY: as above.
            _ => unsafe { kernels::avx2::fma_chains_avx2(steps) as f64 },
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// GOP/s (an 8-bit multiply-add counts 2) of the quantized matmul's integer step on registers
/// only, on all threads of the current rayon pool at once, with the integer kernel of the level in
/// use ([`kernels::QuantKernel::at`]): 12 independent chains per thread of `vpdpbusd` (64 byte
/// products per zmm) with AVX-512 VNNI, or of `vpmaddubsw` + `vpaddw` (32 per ymm, the 4-bit
/// formats' step) with AVX2. No quantized matmul at that level can exceed it; `None` for the
/// portable kernel.
pub fn int8_peak(repeats: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let (products, steps): (usize, usize) = match kernels::QuantKernel::at(kernels::simd_level()) {
            kernels::QuantKernel::Avx512Vnni => (64, 20_000_000),
            kernels::QuantKernel::Avx2 => (32, 40_000_000),
            kernels::QuantKernel::Portable => return None,
        };
        Some(chains_rate(repeats, (steps * 12 * products * 2) as f64, || match products {
            // SAFETY: QuantKernel::at returns only kernels the CPU supports.
            64 => unsafe { kernels::quant_avx512::dot_chains(steps) as f64 },
            // SAFETY: as above.
            _ => unsafe { kernels::quant_avx2::dot_chains(steps) as f64 },
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The best of `repeats` rates (after a warm-up for the clock and the thread start) of `chains`
/// run on every thread of the pool at once, each doing `ops` operations: G operations per second.
#[cfg(target_arch = "x86_64")]
fn chains_rate(repeats: usize, ops: f64, chains: impl Fn() -> f64 + Sync) -> f64 {
    let threads = rayon::current_num_threads() as f64;
    let run = || {
        let t = Instant::now();
        std::hint::black_box(rayon::broadcast(|_| chains()));
        ops * threads / t.elapsed().as_secs_f64() / 1e9
    };
    run();
    (0..repeats.max(1)).map(|_| run()).fold(0.0, f64::max)
}

/// Seconds to read `weights` once from memory on all threads of the current rayon pool (the best
/// of `repeats` passes, after one warm-up): what every forward over a model too large for the
/// caches pays at least once, however few rows it has.
pub fn stream_seconds(weights: &[f32], repeats: usize) -> f64 {
    best_pass(repeats, || {
        let sums: Vec<[f32; 16]> = weights
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0.0f32; 16];
                for v in c.chunks_exact(16) {
                    for (a, &x) in acc.iter_mut().zip(v) {
                        *a += x;
                    }
                }
                acc
            })
            .collect();
        std::hint::black_box(sums);
    })
}

/// [`stream_seconds`] for bytes held in `parts` (a quantized store's matrices): seconds to read
/// them all once on all threads.
pub fn stream_bytes_seconds(parts: &[&[u8]], repeats: usize) -> f64 {
    best_pass(repeats, || {
        let sums: Vec<u64> = parts
            .par_iter()
            .flat_map(|p| p.par_chunks(1 << 18))
            .map(|c| c.chunks_exact(8).fold(0u64, |a, w| a ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))))
            .collect();
        std::hint::black_box(sums);
    })
}

/// The shortest of `repeats` timed runs of `pass`, after one untimed run.
pub(crate) fn best_pass(repeats: usize, mut pass: impl FnMut()) -> f64 {
    let mut timed = || {
        let t = Instant::now();
        pass();
        t.elapsed().as_secs_f64()
    };
    timed();
    (0..repeats.max(1)).map(|_| timed()).fold(f64::INFINITY, f64::min)
}

/// y = x·Wᵀ through the `gemm` crate (candle's GEMM) with `threads` threads: the baseline our
/// matmul is measured against.   x: (B, K), w: (O, K), y: (B, O), all row-major. Only with the
/// `bench` feature.
///
/// # Panics
/// If a slice length does not match its shape.
#[cfg(feature = "bench")]
#[allow(clippy::too_many_arguments)]
pub fn gemm_crate_matmul(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize, threads: usize) {
    assert!(x.len() == b * k && w.len() == o * k && y.len() == b * o, "gemm_crate_matmul: bad lengths");
    // SAFETY: dst y (b, o) row-major; lhs x (b, k) row-major; rhs Wᵀ (k, o) read from w (o, k)
    // with column stride k and row stride 1. The lengths were checked above.
    unsafe {
        gemm::gemm(
            b,
            o,
            k,
            y.as_mut_ptr(),
            1,
            o as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
        )
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::time::Instant;

    /// One core's rate of four AVX-512 multiply-add instructions on registers only (16 independent
    /// chains each), in instructions per ns and in (FL)OP/s: f32 FMA (32 per instruction), fp16 FMA
    /// (64), bf16 pair dot product (64) and int8 4-way dot product (128). The ceiling a kernel in
    /// each precision could reach here. Timing only: `cargo test --release -p evotune --lib
    /// instruction_rates -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn instruction_rates() {
        macro_rules! rate {
            ($ins:literal, $supported:expr, $ops:expr) => {{
                if !$supported {
                    println!("{:12} not supported by this CPU", $ins);
                } else {
                    let n: usize = 20_000_000;
                    let t = Instant::now();
                    // SAFETY: register-only arithmetic on an instruction the CPU reports; every
                    // register written is declared clobbered.
                    unsafe {
                        std::arch::asm!(
                            "vpxord zmm0, zmm0, zmm0", "vpxord zmm1, zmm1, zmm1", "2:",
                            concat!($ins, " zmm4, zmm0, zmm1"), concat!($ins, " zmm5, zmm0, zmm1"),
                            concat!($ins, " zmm6, zmm0, zmm1"), concat!($ins, " zmm7, zmm0, zmm1"),
                            concat!($ins, " zmm8, zmm0, zmm1"), concat!($ins, " zmm9, zmm0, zmm1"),
                            concat!($ins, " zmm10, zmm0, zmm1"), concat!($ins, " zmm11, zmm0, zmm1"),
                            concat!($ins, " zmm12, zmm0, zmm1"), concat!($ins, " zmm13, zmm0, zmm1"),
                            concat!($ins, " zmm14, zmm0, zmm1"), concat!($ins, " zmm15, zmm0, zmm1"),
                            concat!($ins, " zmm16, zmm0, zmm1"), concat!($ins, " zmm17, zmm0, zmm1"),
                            concat!($ins, " zmm18, zmm0, zmm1"), concat!($ins, " zmm19, zmm0, zmm1"),
                            "dec {n}", "jnz 2b",
                            n = inout(reg) n => _,
                            out("zmm0") _, out("zmm1") _, out("zmm4") _, out("zmm5") _, out("zmm6") _,
                            out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                            out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                        );
                    }
                    let per_ns = 16.0 * n as f64 / t.elapsed().as_secs_f64() / 1e9;
                    println!("{:12} {per_ns:.2} per ns = {:.0} G(FL)OP/s on one core", $ins, per_ns * $ops);
                }
            }};
        }
        for _ in 0..2 {
            rate!("vfmadd231ps", std::arch::is_x86_feature_detected!("avx512f"), 32.0);
            rate!("vfmadd231ph", std::arch::is_x86_feature_detected!("avx512fp16"), 64.0);
            rate!("vdpbf16ps", std::arch::is_x86_feature_detected!("avx512bf16"), 64.0);
            rate!("vpdpbusd", std::arch::is_x86_feature_detected!("avx512vnni"), 128.0);
        }
    }
}
