//! The integer kernel of `quant_matmul.rs` with AVX-512 VNNI: one zmm holds a quad of codes of
//! each of a group's 16 rows (the `quant_matrix.rs` layout), so `vpdpbusd` against one broadcast
//! quad of activation codes adds four products into each row's lane. Eight of them make a
//! block's 16 integer sums; then the float step of the module doc of `quant_matmul.rs`, for up
//! to 8 activation rows at once over the same weight registers.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: 4-bit codes are unsigned already; Q8_0 codes c
//! become c + 128 (flip the top bit), and a block's sum starts at the exact correction −128·isx.

use std::arch::x86_64::*;

use super::quant_acts::QActs;
use super::quant_matrix::{QFormat, GROUP, QK};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// out[i·16 + r] = y[t0 + i, r] of group `wg` (nb blocks of format f), i < nt ≤ 8.
///
/// # Safety
/// The CPU supports AVX-512F/BW/VNNI; `wg` holds nb blocks of `f`; x has rows t0..t0+nt;
/// `out` holds nt·16 floats.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn group_rows(wg: &[u8], f: QFormat, nb: usize, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
    macro_rules! by_rows {
        ($fmt:expr) => {
            match nt {
                1 => kernel::<$fmt, 1>(wg, nb, x, t0, out),
                2 => kernel::<$fmt, 2>(wg, nb, x, t0, out),
                3 => kernel::<$fmt, 3>(wg, nb, x, t0, out),
                4 => kernel::<$fmt, 4>(wg, nb, x, t0, out),
                5 => kernel::<$fmt, 5>(wg, nb, x, t0, out),
                6 => kernel::<$fmt, 6>(wg, nb, x, t0, out),
                7 => kernel::<$fmt, 7>(wg, nb, x, t0, out),
                8 => kernel::<$fmt, 8>(wg, nb, x, t0, out),
                _ => unreachable!("at most 8 rows per call"),
            }
        };
    }
    match f {
        QFormat::Q8_0 => by_rows!(Q8_0),
        QFormat::Q4_0 => by_rows!(Q4_0),
        QFormat::Q4_1 => by_rows!(Q4_1),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel<const F: u8, const NT: usize>(wg: &[u8], nb: usize, x: &QActs, t0: usize, out: &mut [f32]) {
    let fmt = match F {
        Q8_0 => QFormat::Q8_0,
        Q4_0 => QFormat::Q4_0,
        _ => QFormat::Q4_1,
    };
    let (bb, cb, k) = (fmt.block_bytes(), fmt.code_bytes(), x.cols);
    let low4 = _mm512_set1_epi8(0x0F);
    let top = _mm512_set1_epi8(-128);
    let mut acc = [_mm512_setzero_ps(); NT];
    for b in 0..nb {
        let blk = wg.as_ptr().add(b * bb);
        let mut w = [_mm512_setzero_si512(); 8];
        if F == Q8_0 {
            for (q, w) in w.iter_mut().enumerate() {
                *w = _mm512_xor_si512(_mm512_loadu_si512(blk.add(64 * q) as *const _), top);
            }
        } else {
            for j in 0..4 {
                let raw = _mm512_loadu_si512(blk.add(64 * j) as *const _);
                w[2 * j] = _mm512_and_si512(raw, low4);
                w[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low4);
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.add(cb) as *const _));
        let m = if F == Q4_1 {
            _mm512_cvtph_ps(_mm256_loadu_si256(blk.add(cb + 2 * GROUP) as *const _))
        } else {
            _mm512_setzero_ps()
        };
        // One activation row's block: its integer sum n (started at the format's offset term, so
        // no subtraction follows), then the float step.
        let row = |t: usize, acc: __m512| {
            let q = x.q.as_ptr().add(t * k + b * QK);
            let quad = |j: usize| _mm512_set1_epi32((q.add(4 * j) as *const i32).read_unaligned());
            let tb = t * nb + b;
            let mut n = match F {
                Q8_0 => _mm512_set1_epi32(*x.off128.get_unchecked(tb)),
                Q4_0 => _mm512_set1_epi32(*x.off8.get_unchecked(tb)),
                _ => _mm512_setzero_si512(),
            };
            if NT >= 4 {
                // Rows enough to hide `vpdpbusd`'s latency: one chain per row.
                for (j, w) in w.iter().enumerate() {
                    n = _mm512_dpbusd_epi32(n, *w, quad(j));
                }
            } else {
                // Two chains (even and odd quads) halve the dependent latency.
                let mut n1 = _mm512_setzero_si512();
                for j in (0..8).step_by(2) {
                    n = _mm512_dpbusd_epi32(n, w[j], quad(j));
                    n1 = _mm512_dpbusd_epi32(n1, w[j + 1], quad(j + 1));
                }
                n = _mm512_add_epi32(n, n1);
            }
            let ddx = _mm512_mul_ps(d, _mm512_set1_ps(*x.d.get_unchecked(tb)));
            let acc = _mm512_fmadd_ps(ddx, _mm512_cvtepi32_ps(n), acc);
            if F == Q4_1 {
                _mm512_fmadd_ps(m, _mm512_set1_ps(*x.s.get_unchecked(tb)), acc)
            } else {
                acc
            }
        };
        // Unrolled by hand, so that every accumulator stays in a register.
        macro_rules! rows {
            ($($i:literal)*) => {$(
                if $i < NT {
                    acc[$i] = row(t0 + $i, acc[$i]);
                }
            )*};
        }
        rows!(0 1 2 3 4 5 6 7);
    }
    for (i, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(i * GROUP), *acc);
    }
}

/// `steps` rounds of 12 independent `vpdpbusd` chains on registers only (no memory traffic):
/// 12·64 byte products per round, the integer step of [`group_rows`]. Returns a value that depends
/// on every product, so none is optimised away ([`super::probe::int8_peak`]).
///
/// # Safety
/// The CPU supports AVX-512F/BW/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn dot_chains(steps: usize) -> i64 {
    let a = _mm512_set1_epi8(std::hint::black_box(1));
    let b = _mm512_set1_epi8(std::hint::black_box(1));
    let mut acc = [_mm512_setzero_si512(); 12];
    for _ in 0..steps {
        for v in acc.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_epi32(v) as i64).sum()
}
