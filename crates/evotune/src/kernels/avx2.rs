//! AVX2 + FMA fast paths: the AVX-512 kernels of `avx512.rs` for 16 ymm registers of 8 lanes,
//! computing the same bits (every 16-lane accumulator is a pair of ymm: lanes 0–7 and 8–15).
//!
//! The caller ([`super::matmul`] and the row-wise ops in `mod.rs`) checks slice lengths and CPU
//! features before calling in.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// `steps` rounds of 12 independent AVX2 FMA chains on registers only (no memory traffic):
/// 12·8·2 FLOPs per round. Returns a value that depends on every FMA, so none is optimised away.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_chains_avx2(steps: usize) -> f32 {
    let a = _mm256_set1_ps(std::hint::black_box(1.000_001));
    let b = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..steps {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(a, b, *v);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}
