//! The integer kernel of `quant_matmul.rs` with AVX2: a group's 16 rows as two halves of 8, one
//! ymm holding a quad of codes of each of 8 rows (the `quant_matrix.rs` layout).
//!
//! `vpmaddubsw` (unsigned × signed bytes → pairs summed in 16 bits) against a broadcast quad of
//! activation codes, then `vpmaddwd` by ones adds the pairs into each row's 32-bit lane. For
//! 4-bit codes a pair is at most 2·15·127 = 3810, so all eight quads of a block are summed in 16
//! bits (≤ 30480 < 2¹⁵) before a single widening. Q8_0 codes are signed: |c| goes in as the
//! unsigned operand and the activation takes c's sign (`vpsignb`), a pair at most 2·128·127 =
//! 32512, widened per quad. The integer sums are exact, so the float step gives the bits of the
//! plain loop.

use std::arch::x86_64::*;

use super::quant_acts::QActs;
use super::quant_matrix::{QFormat, GROUP, QK};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// Activation rows per register tile.
const NT: usize = 4;

/// out[i·16 + r] = y[t0 + i, r] of group `wg` (nb blocks of format f), i < nt.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `wg` holds nb blocks of `f`; x has rows t0..t0+nt;
/// `out` holds nt·16 floats.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn group_rows(wg: &[u8], f: QFormat, nb: usize, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
    macro_rules! by_rows {
        ($fmt:expr, $t:expr, $out:expr, $half:expr) => {
            match nt - $t {
                1 => kernel::<$fmt, 1>(wg, nb, x, t0 + $t, $half, $out),
                2 => kernel::<$fmt, 2>(wg, nb, x, t0 + $t, $half, $out),
                3 => kernel::<$fmt, 3>(wg, nb, x, t0 + $t, $half, $out),
                _ => kernel::<$fmt, NT>(wg, nb, x, t0 + $t, $half, $out),
            }
        };
    }
    let mut t = 0;
    while t < nt {
        for half in 0..2 {
            let o = &mut out[t * GROUP..];
            match f {
                QFormat::Q8_0 => by_rows!(Q8_0, t, o, half),
                QFormat::Q4_0 => by_rows!(Q4_0, t, o, half),
                QFormat::Q4_1 => by_rows!(Q4_1, t, o, half),
            }
        }
        t += NT;
    }
}

/// Rows 8·half .. 8·half + 8 of the group, for activation rows t0 .. t0 + R:
/// out[i·16 + 8·half + r].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const F: u8, const R: usize>(
    wg: &[u8],
    nb: usize,
    x: &QActs,
    t0: usize,
    half: usize,
    out: &mut [f32],
) {
    let fmt = match F {
        Q8_0 => QFormat::Q8_0,
        Q4_0 => QFormat::Q4_0,
        _ => QFormat::Q4_1,
    };
    let (bb, cb, k) = (fmt.block_bytes(), fmt.code_bytes(), x.cols);
    let low4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let quad = |t: usize, b: usize, q: usize| {
        _mm256_set1_epi32((x.q.as_ptr().add(t * k + b * QK + 4 * q) as *const i32).read_unaligned())
    };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = wg.as_ptr().add(b * bb + 32 * half);
        let mut n = [_mm256_setzero_si256(); R];
        if F == Q8_0 {
            for q in 0..8 {
                let w = _mm256_loadu_si256(blk.add(64 * q) as *const _);
                let aw = _mm256_abs_epi8(w);
                for (i, n) in n.iter_mut().enumerate() {
                    let xs = _mm256_sign_epi8(quad(t0 + i, b, q), w);
                    *n = _mm256_add_epi32(*n, _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones));
                }
            }
        } else {
            for j in 0..4 {
                let raw = _mm256_loadu_si256(blk.add(64 * j) as *const _);
                let lo = _mm256_and_si256(raw, low4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low4);
                for (i, n) in n.iter_mut().enumerate() {
                    *n = _mm256_add_epi16(*n, _mm256_maddubs_epi16(lo, quad(t0 + i, b, 2 * j)));
                    *n = _mm256_add_epi16(*n, _mm256_maddubs_epi16(hi, quad(t0 + i, b, 2 * j + 1)));
                }
            }
            for n in n.iter_mut() {
                *n = _mm256_madd_epi16(*n, ones);
            }
        }
        let sc = wg.as_ptr().add(b * bb + cb + 16 * half);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(sc as *const _));
        let m = if F == Q4_1 {
            _mm256_cvtph_ps(_mm_loadu_si128(sc.add(2 * GROUP) as *const _))
        } else {
            _mm256_setzero_ps()
        };
        for (i, (acc, n)) in acc.iter_mut().zip(n).enumerate() {
            let t = t0 + i;
            let n = if F == Q4_0 {
                _mm256_sub_epi32(n, _mm256_set1_epi32(8 * *x.isum.get_unchecked(t * nb + b)))
            } else {
                n
            };
            let ddx = _mm256_mul_ps(d, _mm256_set1_ps(*x.d.get_unchecked(t * nb + b)));
            *acc = _mm256_fmadd_ps(ddx, _mm256_cvtepi32_ps(n), *acc);
            if F == Q4_1 {
                *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(*x.s.get_unchecked(t * nb + b)), *acc);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(i * GROUP + 8 * half), *acc);
    }
}

/// `steps` rounds of 12 independent chains of `vpmaddubsw` + `vpaddw` on registers only (no
/// memory traffic): 12·32 byte products per round, the integer step of the 4-bit formats in
/// [`group_rows`], all of them ones. Returns the sum of the 16-bit lanes, so the test can check
/// every product was made ([`super::probe::int8_peak`]). Written in assembly: with intrinsics on
/// constant operands the compiler makes the product once and turns each chain into a multiply.
///
/// # Safety
/// The CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dot_chains(steps: usize) -> i64 {
    let mut lanes = [0i16; 12 * 16];
    if steps > 0 {
        // SAFETY: register-only arithmetic on AVX2 (the caller's contract), then 12 stores of
        // 32 bytes into `lanes`; every register written is declared clobbered.
        std::arch::asm!(
            "vpcmpeqb ymm12, ymm12, ymm12", "vpabsb ymm12, ymm12", "vmovdqa ymm13, ymm12",
            "vpxor ymm0, ymm0, ymm0", "vpxor ymm1, ymm1, ymm1", "vpxor ymm2, ymm2, ymm2",
            "vpxor ymm3, ymm3, ymm3", "vpxor ymm4, ymm4, ymm4", "vpxor ymm5, ymm5, ymm5",
            "vpxor ymm6, ymm6, ymm6", "vpxor ymm7, ymm7, ymm7", "vpxor ymm8, ymm8, ymm8",
            "vpxor ymm9, ymm9, ymm9", "vpxor ymm10, ymm10, ymm10", "vpxor ymm11, ymm11, ymm11",
            "2:",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm0, ymm0, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm1, ymm1, ymm15",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm2, ymm2, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm3, ymm3, ymm15",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm4, ymm4, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm5, ymm5, ymm15",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm6, ymm6, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm7, ymm7, ymm15",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm8, ymm8, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm9, ymm9, ymm15",
            "vpmaddubsw ymm14, ymm12, ymm13", "vpaddw ymm10, ymm10, ymm14",
            "vpmaddubsw ymm15, ymm12, ymm13", "vpaddw ymm11, ymm11, ymm15",
            "dec {n}", "jnz 2b",
            "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1", "vmovdqu [{p} + 64], ymm2",
            "vmovdqu [{p} + 96], ymm3", "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5",
            "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7", "vmovdqu [{p} + 256], ymm8",
            "vmovdqu [{p} + 288], ymm9", "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
            n = inout(reg) steps => _,
            p = in(reg) lanes.as_mut_ptr(),
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
            out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
    lanes.iter().map(|&l| l as i64).sum()
}
