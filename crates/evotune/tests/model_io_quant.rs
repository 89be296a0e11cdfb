//! Dequantization of every supported type against candle's (`candle_core::quantized`), the
//! independent reference: candle quantizes random data, both dequantize the same bytes, and the
//! results must be bit-identical (same formula, same f32 operation order as ggml).

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use evotune::model::quant::{dequantize, GgmlType};

/// Deterministic pseudo-random values in roughly [-2, 2] with a few outliers (splitmix64).
fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let x = 4.0 * u - 2.0;
            if i % 97 == 0 {
                x * 20.0
            } else {
                x
            }
        })
        .collect()
}

fn check(ours: GgmlType, theirs: GgmlDType, rows: usize, cols: usize) {
    let values = random_values(rows * cols, 7 + rows as u64 * 31 + cols as u64);
    let t = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, theirs).unwrap();
    let bytes = q.data().unwrap();
    let reference: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let mut got = vec![f32::NAN; rows * cols];
    dequantize(ours, &bytes, &mut got, Path::new("random"), "t").unwrap();
    let mut max_diff = 0.0f32;
    let mut mismatches = 0;
    for (a, b) in got.iter().zip(&reference) {
        if a.to_bits() != b.to_bits() {
            mismatches += 1;
        }
        max_diff = max_diff.max((a - b).abs());
    }
    // How lossy the type is (a sanity figure: the reference really did quantize).
    let err: f32 = values.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!(
        "{:>5} {rows}x{cols}: {} bytes, mismatches vs candle {mismatches}, max |ours - candle| {max_diff:e}, max quantization error {err:e}",
        ours.name(),
        bytes.len()
    );
    assert_eq!(mismatches, 0, "{} differs from candle in {mismatches} elements", ours.name());
    assert_eq!(bytes.len(), ours.bytes_for(rows * cols).unwrap());
}

#[test]
fn every_supported_type_matches_candle_bit_for_bit() {
    let cases = [
        (GgmlType::F32, GgmlDType::F32),
        (GgmlType::F16, GgmlDType::F16),
        (GgmlType::BF16, GgmlDType::BF16),
        (GgmlType::Q8_0, GgmlDType::Q8_0),
        (GgmlType::Q4_0, GgmlDType::Q4_0),
        (GgmlType::Q4_1, GgmlDType::Q4_1),
        (GgmlType::Q4K, GgmlDType::Q4K),
        (GgmlType::Q6K, GgmlDType::Q6K),
    ];
    for (ours, theirs) in cases {
        // One block row, several rows, and enough blocks to split over parallel tasks (> 1024).
        for (rows, cols) in [(1, 256), (3, 512), (72, 4096)] {
            check(ours, theirs, rows, cols);
        }
    }
}

#[test]
fn f16_and_bf16_widen_exactly() {
    // Every f16 bit pattern widens to the f32 `half` says (independent of candle), NaNs stay NaN.
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
    // The kernels convert every pattern and report the first non-finite one (+inf: 0x7C00 in f16,
    // 0x7F80 in bf16); `dequantize` turns that into an error naming the element.
    let mut out = vec![0.0f32; 1 << 16];
    assert_eq!(evotune::model::quant::dequantize_f16(&bytes, &mut out), Some(0x7C00));
    for (b, y) in (0..=u16::MAX).zip(&out) {
        let want = half::f16::from_bits(b).to_f32();
        assert!(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()), "{b:#06x}");
    }
    let e = dequantize(GgmlType::F16, &bytes, &mut out, Path::new("all"), "f16").unwrap_err();
    assert!(e.to_string().contains("element 31744"), "{e}");
    assert_eq!(evotune::model::quant::dequantize_bf16(&bytes, &mut out), Some(0x7F80));
    let e = dequantize(GgmlType::BF16, &bytes, &mut out, Path::new("all"), "bf16").unwrap_err();
    assert!(e.to_string().contains("element 32640"), "{e}");
    for (b, y) in (0..=u16::MAX).zip(&out) {
        // bf16 is the top half of an f32.
        let want = f32::from_bits((b as u32) << 16);
        assert!(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()), "{b:#06x}");
    }
}
