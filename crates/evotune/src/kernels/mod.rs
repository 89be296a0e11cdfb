//! Compute kernels behind safe, slice-based entry points.
//!
//! - [`matmul`]: y[b, o] = Σₖ x[b, k]·w[o, k] (w row-major out × in, as HF stores it). Dispatches
//!   once per process to the best level the CPU has ([`Level`]): AVX-512, AVX2+FMA (both
//!   hand-written) or portable code. All levels compute the same bits (the order of every sum is
//!   fixed by [`lanes`]), and threads split rows or columns, never a sum: results are identical for
//!   any thread count, any batch size and any tiling. At both SIMD levels, from `PANEL_MIN_ROWS`
//!   (24) rows the packed outer-product kernel of `panel.rs` runs (prefill), below it the
//!   dot-product tiles of `strips.rs`, which stream w once with software prefetch (decode). Each
//!   level's register tiles live in `avx512.rs` / `panel_avx512.rs` and `avx2.rs` /
//!   `panel_avx2.rs`.
//! - Row-wise ops ([`rmsnorm`], [`rope`], [`softmax`], [`silu_mul`], [`dot`]) and attention's
//!   [`dots`] and [`weighted_sum`]: each row is computed by one thread in a fixed order, so they
//!   share those guarantees; the SIMD levels run the same operations in wider registers.
//! - [`normals`]: the ES noise generator's loop ([`crate::es::noise`]) at each level, same bits.
//! - [`qmatmul`]: y = x·Wᵀ with W kept in GGML-style blocks ([`QMatrix`]: Q8_0, Q4_0, Q4_1) and x
//!   quantized per block ([`QActs`]): exact integer block sums (AVX-512 VNNI, AVX2, plain loop),
//!   then a fixed order of float steps, so the same guarantees hold (`quant_matmul.rs`).
//! - [`sparse_add_matmul`]: y += x·Sᵀ for a sparse S (the QES members' weight changes).
//! - [`feedback`]: the QES update's dense passes over the residual (its int8 fixed point, the
//!   blocks whose steps all round to 0), each level the same bits.
//! - [`transpose()`]: strided f32 transposes, 8 × 8 blocks in registers (a copy: the same bits
//!   everywhere).
//! - [`reference`]: plain loops, the twin every fast path is tested against.

/// For each `name(args) -> R = path;`, defines `pub unsafe fn name(args) -> R { path(args) }`
/// compiled with the target features `$features`: the portable code built for a SIMD level. It
/// computes the portable bits, since it runs the same IEEE operations (Rust never contracts
/// a·b + c into an FMA) in wider registers.
#[cfg(target_arch = "x86_64")]
macro_rules! compiled_for {
    ($features:literal: $($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:path;)*) => {$(
        #[doc = concat!("`", stringify!($body), "` compiled with `", $features, "` (the same bits).")]
        ///
        /// # Safety
        /// The CPU must support those target features.
        #[target_feature(enable = $features)]
        pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            $body($($arg),*)
        }
    )*};
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub mod exp;
pub mod feedback;
pub mod lanes;
pub mod machine;
pub mod normals;
#[cfg(target_arch = "x86_64")]
pub(crate) mod panel;
#[cfg(target_arch = "x86_64")]
mod panel_avx2;
#[cfg(target_arch = "x86_64")]
mod panel_avx512;
pub mod probe;
pub mod quant_acts;
#[cfg(target_arch = "x86_64")]
mod quant_avx2;
#[cfg(target_arch = "x86_64")]
mod quant_avx512;
pub mod quant_matmul;
pub mod quant_matrix;
pub mod reference;
mod row_of;
pub mod sparse_matmul;
#[cfg(target_arch = "x86_64")]
mod strips;
pub mod transpose;

use rayon::prelude::*;
use std::sync::OnceLock;

pub use quant_acts::QActs;
pub use quant_matmul::{qmatmul, qmatmul_at, QuantKernel};
pub use quant_matrix::{QFormat, QMatrix};
pub use sparse_matmul::sparse_add_matmul;
pub use transpose::transpose;

/// SIMD level of the matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Portable lane code (FMA through `f32::mul_add`, software on CPUs without FMA).
    Portable,
    Avx2Fma,
    Avx512,
}

impl Level {
    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The best level this CPU supports (detected once). `EVOTUNE_SIMD=portable|avx2|avx512` caps it.
pub fn simd_level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("EVOTUNE_SIMD").as_deref() {
            Ok("portable") => Level::Portable,
            Ok("avx2") => Level::Avx2Fma,
            _ => Level::Avx512,
        };
        [Level::Avx512, Level::Avx2Fma, Level::Portable]
            .into_iter()
            .filter(|l| rank(*l) <= rank(cap))
            .find(|l| l.supported())
            .unwrap_or(Level::Portable)
    })
}

fn rank(l: Level) -> u8 {
    match l {
        Level::Portable => 0,
        Level::Avx2Fma => 1,
        Level::Avx512 => 2,
    }
}

/// y[b, o] = Σₖ x[b, k]·w[o, k]   (x: (B, K), w: (O, K), y: (B, O), all row-major).
///
/// Multi-threaded over output rows (many rows) or columns (few rows). Each element's sum runs in
/// the fixed order of [`lanes`].
///
/// # Panics
/// If a slice length does not match its shape (a programming error, not bad input).
pub fn matmul(x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    matmul_at(simd_level(), x, w, y, b, k, o)
}

/// [`matmul`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn matmul_at(level: Level, x: &[f32], w: &[f32], y: &mut [f32], b: usize, k: usize, o: usize) {
    assert!(
        x.len() == b * k && w.len() == o * k && y.len() == b * o,
        "matmul: slice lengths do not match (b={b}, k={k}, o={o})"
    );
    if b == 0 || o == 0 {
        return;
    }
    let level = if level.supported() { level } else { Level::Portable };
    #[cfg(target_arch = "x86_64")]
    {
        use panel::matmul_panels;
        use strips::{matmul_strips, RowStrips};
        let panels = b >= PANEL_MIN_ROWS && k > 0;
        // SAFETY (each arm): lengths checked above, the level is supported, b, o > 0 (and k > 0
        // for the panels).
        match (level, panels) {
            (Level::Avx512, true) => return unsafe { matmul_panels::<panel_avx512::Avx512Panels>(x, w, y, b, k, o) },
            (Level::Avx512, false) if b == 1 => {
                return unsafe { matmul_strips::<RowStrips<avx512::Avx512Strips, 16>>(x, w, y, b, k, o) }
            }
            (Level::Avx512, false) => return unsafe { matmul_strips::<avx512::Avx512Strips>(x, w, y, b, k, o) },
            (Level::Avx2Fma, true) => return unsafe { matmul_panels::<panel_avx2::Avx2Panels>(x, w, y, b, k, o) },
            (Level::Avx2Fma, false) if b == 1 && o * k >= ONE_STREAM_FLOATS => {
                return unsafe { matmul_strips::<RowStrips<avx2::Avx2Strips, 1>>(x, w, y, b, k, o) }
            }
            (Level::Avx2Fma, false) if b == 1 => {
                return unsafe { matmul_strips::<RowStrips<avx2::Avx2Strips, 6>>(x, w, y, b, k, o) }
            }
            (Level::Avx2Fma, false) => return unsafe { matmul_strips::<avx2::Avx2Strips>(x, w, y, b, k, o) },
            (Level::Portable, _) => {}
        }
    }
    let threads = rayon::current_num_threads();
    // Many rows (prefill, large batches): split rows, ≈2 blocks per thread, each written in place
    // (rows of y are contiguous), every thread sweeping all of w.
    if threads > 1 && b >= ROW_SPLIT_MIN_ROWS * threads {
        let rows = b.div_ceil(2 * threads);
        y.par_chunks_mut(rows * o)
            .zip(x.par_chunks(rows * k))
            .for_each(|(ys, xs)| lanes::matmul(xs, w, ys, xs.len() / k, k, o));
        return;
    }
    // Few rows (decode): split columns into ≈4 chunks per thread (a multiple of 16 wide); tiny
    // products run inline.
    let chunk = o.div_ceil(4 * threads).next_multiple_of(16).max(16);
    if threads == 1 || b * k * o < (1 << 16) || chunk >= o {
        lanes::matmul(x, w, y, b, k, o);
        return;
    }
    let parts: Vec<(usize, Vec<f32>)> = (0..o.div_ceil(chunk))
        .into_par_iter()
        .map(|ci| {
            let (c0, c1) = (ci * chunk, ((ci + 1) * chunk).min(o));
            let mut buf = vec![0.0f32; b * (c1 - c0)];
            lanes::matmul(x, &w[c0 * k..c1 * k], &mut buf, b, k, c1 - c0);
            (c0, buf)
        })
        .collect();
    for (c0, buf) in parts {
        let nc = buf.len() / b;
        for (row, src) in y.chunks_mut(o).zip(buf.chunks(nc)) {
            row[c0..c0 + nc].copy_from_slice(src);
        }
    }
}

/// Rows from which the SIMD levels run the packed-panel kernel (`panel.rs`) instead of the
/// streamed strips of dot-product tiles (`strips.rs`). Measured at AVX-512: On one cached matrix the strips win on two threads up
/// to a few hundred rows, but in the ES iteration (weights from memory) the panels made prefill
/// faster; below 24 rows the strips win everywhere (docs/performance.md).
#[cfg(target_arch = "x86_64")]
const PANEL_MIN_ROWS: usize = 24;

/// From this many weights (16 MB of f32: beyond the caches, read from memory at every call) a
/// single row at AVX2 reads w one row at a time, one sequential stream per thread. On the AMD EPYC
/// (Zen 4), one thread, the tied lm_head (49152 × 576): 1 × 6 tiles (six interleaved row streams)
/// 7.2–7.5 GFLOP/s, 0.70–0.72× the `gemm` crate; 1 × 1 tiles 10.6–12.5, 1.06–1.07×. At AVX-512
/// the 1 × 16 tiles stay (0.92–0.97× against 0.82× with one stream).
const ONE_STREAM_FLOATS: usize = 1 << 22;

/// Rows per thread from which the portable [`matmul`] splits rows instead of columns.
const ROW_SPLIT_MIN_ROWS: usize = 96;

/// Rows per parallel task for row-wise ops over (T, D) buffers.
fn rows_per_task(t: usize) -> usize {
    t.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// RMSNorm per row: out[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) · weight.   x, out: (T, D).
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) {
    rmsnorm_at(simd_level(), out, x, weight, d, eps)
}

/// [`rmsnorm`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn rmsnorm_at(level: Level, out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) {
    assert!(out.len() == x.len() && weight.len() == d && d > 0 && x.len().is_multiple_of(d), "rmsnorm: bad lengths");
    let level = if level.supported() { level } else { Level::Portable };
    let rows = rows_per_task(x.len() / d);
    out.par_chunks_mut(rows * d).zip(x.par_chunks(rows * d)).for_each(|(o, xs)| match level {
        // SAFETY (both arms): the level is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::rmsnorm_rows_avx512(o, xs, weight, d, eps) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { avx2::rmsnorm_rows_avx2(o, xs, weight, d, eps) },
        _ => rmsnorm_rows(o, xs, weight, d, eps),
    });
}

/// [`rmsnorm`] of whole rows, one thread (inlined into the SIMD copies in `avx512.rs` and
/// `avx2.rs`: the same operations, so the same bits, in wider registers).
#[inline(always)]
pub(crate) fn rmsnorm_rows(out: &mut [f32], x: &[f32], weight: &[f32], d: usize, eps: f32) {
    for (orow, xrow) in out.chunks_mut(d).zip(x.chunks(d)) {
        let inv = 1.0 / (lanes::dot(xrow, xrow) / d as f32 + eps).sqrt();
        for i in 0..d {
            orow[i] = xrow[i] * inv * weight[i];
        }
    }
}

/// Rotary embedding (half-split "neox" pairing) in place on one row of `heads` heads of size Dh;
/// `cos`, `sin` (length Dh/2) belong to the row's position. See [`reference::rope`].
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], heads: usize, dh: usize) {
    reference::rope(x, cos, sin, heads, dh)
}

/// softmax in place: x ← exp(x − max x) / Σ exp(x − max x), the max subtracted for numerical
/// stability only; [`exp::exp`] instead of libm (vectorised), the sum in index order.
pub fn softmax(x: &mut [f32]) {
    softmax_at(simd_level(), x)
}

/// [`softmax`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn softmax_at(level: Level, x: &mut [f32]) {
    match if level.supported() { level } else { Level::Portable } {
        // SAFETY (both arms): the level is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::softmax_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { avx2::softmax_avx2(x) },
        _ => softmax_row(x),
    }
}

/// [`softmax`] on one row (inlined into the SIMD copies, same bits).
#[inline(always)]
pub(crate) fn softmax_row(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = exp::exp(*v - m);
    }
    let s: f32 = x.iter().sum();
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// SwiGLU gate in place: g[i] ← silu(g[i])·u[i], silu(g) = g / (1 + e^(−g)) with [`exp::exp`];
/// parallel over fixed chunks.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    silu_mul_at(simd_level(), g, u)
}

/// [`silu_mul`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn silu_mul_at(level: Level, g: &mut [f32], u: &[f32]) {
    assert!(g.len() == u.len(), "silu_mul: bad lengths");
    let level = if level.supported() { level } else { Level::Portable };
    const CHUNK: usize = 1 << 14;
    g.par_chunks_mut(CHUNK).zip(u.par_chunks(CHUNK)).for_each(|(g, u)| match level {
        // SAFETY (both arms): the level is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::silu_mul_avx512(g, u) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { avx2::silu_mul_avx2(g, u) },
        _ => silu_mul_chunk(g, u),
    });
}

/// [`silu_mul`] on one chunk (inlined into the SIMD copies, same bits).
#[inline(always)]
pub(crate) fn silu_mul_chunk(g: &mut [f32], u: &[f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + exp::exp(-*g)) * u;
    }
}

/// GeGLU gate in place (Gemma): g[i] ← gelu_tanh(g[i])·u[i], with
/// gelu_tanh(g) = ½g(1 + tanh(√(2/π)(g + 0.044715g³))) = g / (1 + e^(−2√(2/π)(g + 0.044715g³))),
/// the second form with [`exp::exp`] (the same bits at every SIMD level); parallel over fixed
/// chunks. Gemma models only, so it stays portable.
pub fn gelu_tanh_mul(g: &mut [f32], u: &[f32]) {
    assert!(g.len() == u.len(), "gelu_tanh_mul: bad lengths");
    const CHUNK: usize = 1 << 14;
    const TWO_SQRT_2_OVER_PI: f32 = 2.0 * 0.797_884_6;
    g.par_chunks_mut(CHUNK).zip(u.par_chunks(CHUNK)).for_each(|(g, u)| {
        for (g, &u) in g.iter_mut().zip(u) {
            let x = *g;
            *g = x / (1.0 + exp::exp(-TWO_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))) * u;
        }
    });
}

/// out[j] = [`dot`](q, keys[j·stride ..][..q.len()]) for every j < out.len(): attention scores of
/// one query head against cached keys. Same bits as the `dot` loop; the SIMD levels do 16
/// (AVX-512) or 4 (AVX2) keys at once when the head size is a multiple of 16.
///
/// # Panics
/// If `keys` is too short for `out.len()` rows at `stride`.
pub fn dots(q: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    dots_at(simd_level(), q, keys, stride, out)
}

/// [`dots`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn dots_at(level: Level, q: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    let (dh, n) = (q.len(), out.len());
    assert!(n == 0 || keys.len() >= (n - 1) * stride + dh, "dots: keys too short");
    let level = if level.supported() && dh % 16 == 0 { level } else { Level::Portable };
    match level {
        // SAFETY (both arms): the level is supported, dh % 16 == 0 and the length was checked.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::dots_avx512(q, keys, stride, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { avx2::dots_avx2(q, keys, stride, out) },
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = lanes::dot(q, &keys[j * stride..j * stride + dh]);
            }
        }
    }
}

/// out = Σⱼ p[j]·values[j·stride ..][..out.len()], summed in increasing j for each element
/// (the weighted sum of attention). Vectorised when `out.len()` is a multiple of the vector
/// width (16 at AVX-512, 8 at AVX2), same bits.
///
/// # Panics
/// If `values` is too short for `p.len()` rows at `stride`.
pub fn weighted_sum(out: &mut [f32], p: &[f32], values: &[f32], stride: usize) {
    out.fill(0.0);
    weighted_sum_add(out, p, values, stride);
}

/// out += Σⱼ p[j]·values[j·stride ..][..out.len()], each element's sum continuing from `out` in
/// increasing j: a weighted sum over two segments, the second added after the first, has the bits
/// of one [`weighted_sum`] over both.
///
/// # Panics
/// If `values` is too short for `p.len()` rows at `stride`.
pub fn weighted_sum_add(out: &mut [f32], p: &[f32], values: &[f32], stride: usize) {
    weighted_sum_add_at(simd_level(), out, p, values, stride)
}

/// [`weighted_sum_add`] at a given level (tests and benchmarks); falls back to portable if
/// unsupported.
pub fn weighted_sum_add_at(level: Level, out: &mut [f32], p: &[f32], values: &[f32], stride: usize) {
    let dh = out.len();
    assert!(p.is_empty() || values.len() >= (p.len() - 1) * stride + dh, "weighted_sum: values too short");
    let level = if level.supported() { level } else { Level::Portable };
    match level {
        // SAFETY (both arms): the level is supported, the width divides dh, the length was checked.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 if dh.is_multiple_of(16) => unsafe { avx512::weighted_sum_add_avx512(out, p, values, stride) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma | Level::Avx512 if dh.is_multiple_of(8) => unsafe {
            avx2::weighted_sum_add_avx2(out, p, values, stride)
        },
        _ => {
            for (j, &pj) in p.iter().enumerate() {
                for (o, &v) in out.iter_mut().zip(&values[j * stride..j * stride + dh]) {
                    *o += pj * v;
                }
            }
        }
    }
}

/// Σᵢ a[i]·b[i] in a fixed order (16 lanes, then a fixed tree), at the SIMD level.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_at(simd_level(), a, b)
}

/// [`dot`] at a given level (tests and benchmarks); falls back to portable if unsupported.
pub fn dot_at(level: Level, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    match if level.supported() { level } else { Level::Portable } {
        // SAFETY (both arms): the level is supported (checked above).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::dot_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { avx2::dot_avx2(a, b) },
        _ => lanes::dot(a, b),
    }
}

#[cfg(test)]
mod quant_tests;
#[cfg(test)]
mod tests;
