//! The integer kernels: every level bit for bit against the plain loop on an edge-shape grid, the
//! plain loop against the exact block formula (f64), batch and thread invariance, and the layout
//! round trip.

use super::quant_acts::QActs;
use super::quant_matmul::{qmatmul_acts, QuantKernel};
use super::quant_matrix::{QFormat, QMatrix, QK};
use super::tests::{levels, rand_vec};
use super::*;

const FORMATS: [QFormat; 3] = [QFormat::Q8_0, QFormat::Q4_0, QFormat::Q4_1];

/// A random matrix of `f`: codes over the whole range (the extremes included), scales of mixed
/// magnitude and sign (Q4_1 mins too), as f16.
fn rand_matrix(f: QFormat, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let u = rand_vec(rows * cols + 2 * rows * cols / QK, seed);
    let nb = cols / QK;
    let span = (f.max_code() - f.min_code() + 1) as f32;
    QMatrix::from_rows(f, rows, cols, |r, codes, d, m| {
        for (i, c) in codes.iter_mut().enumerate() {
            let v = f.min_code() + (((u[r * cols + i] + 1.0) / 2.0 * span) as i32).min(f.max_code() - f.min_code());
            *c = v as i8 as u8;
        }
        // A few extreme codes in every row.
        codes[0] = f.min_code() as i8 as u8;
        codes[cols - 1] = f.max_code() as i8 as u8;
        for b in 0..nb {
            let a = u[rows * cols + 2 * (r * nb + b)];
            let e = u[rows * cols + 2 * (r * nb + b) + 1];
            d[b] = half::f16::from_f32(a * 0.02 * (1.0 + 4.0 * e.abs())).to_bits();
            m[b] = half::f16::from_f32(-e * 0.1).to_bits();
        }
    })
}

fn shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &t in &[1, 3, 4, 5, 7, 8, 9, 14, 17] {
        for &k in &[32, 64, 576] {
            for &o in &[1, 7, 16, 17, 33, 192] {
                v.push((t, k, o));
            }
        }
    }
    v.extend([(0, 64, 16), (4, 64, 0), (2, 1536, 576), (16, 576, 1536), (40, 576, 48), (3, 576, 49152 / 64)]);
    v
}

fn kernels() -> Vec<QuantKernel> {
    let mut k: Vec<QuantKernel> = levels().into_iter().map(QuantKernel::at).collect();
    k.dedup();
    k
}

#[test]
fn every_kernel_matches_the_plain_loop_bit_for_bit() {
    println!("kernels here: {:?}", kernels());
    for f in FORMATS {
        for (si, &(t, k, o)) in shapes().iter().enumerate() {
            let w = rand_matrix(f, o, k, 7 + si as u64);
            let mut x = rand_vec(t * k, 100 + si as u64);
            // Blocks of very different magnitudes, and an all-zero block.
            for (i, v) in x.iter_mut().enumerate() {
                *v *= [1.0, 30.0, 1e-3, 0.0][(i / QK) % 4];
            }
            let acts = QActs::quantize(&x, t, k);
            let mut want = vec![f32::NAN; t * o];
            qmatmul_acts(QuantKernel::Portable, &acts, &w, &mut want);
            for kern in kernels() {
                // The kernels write y through raw pointers: nothing past its end may be written.
                let mut buf = vec![f32::NAN; t * o + 16];
                qmatmul_acts(kern, &acts, &w, &mut buf[..t * o]);
                let (y, past) = buf.split_at(t * o);
                assert!(past.iter().all(|v| v.is_nan()), "{kern:?} t={t} k={k} o={o} wrote past y");
                for i in 0..t * o {
                    assert_eq!(
                        y[i].to_bits(),
                        want[i].to_bits(),
                        "{kern:?} {} t={t} k={k} o={o} at {i}: {} vs {}",
                        f.name(),
                        y[i],
                        want[i]
                    );
                }
            }
        }
    }
}

/// The plain loop computes the module doc's formula: compare with the same sum in f64 from the
/// decoded operands (the only differences are the f32 roundings of d·dx and the accumulations).
#[test]
fn plain_loop_is_the_block_formula() {
    for f in FORMATS {
        let (t, k, o) = (3, 576, 40);
        let w = rand_matrix(f, o, k, 11);
        let x = rand_vec(t * k, 12);
        let acts = QActs::quantize(&x, t, k);
        let mut y = vec![0.0; t * o];
        qmatmul_acts(QuantKernel::Portable, &acts, &w, &mut y);
        let nb = k / QK;
        for ti in 0..t {
            for r in 0..o {
                let (mut exact, mut abs) = (0.0f64, 0.0f64);
                for b in 0..nb {
                    let (d, m) = w.scale_min(r, b);
                    let dx = acts.d[ti * nb + b] as f64;
                    for i in 0..QK {
                        let c = w.code(r, b * QK + i) as f64;
                        let wv = match f {
                            QFormat::Q8_0 => d as f64 * c,
                            QFormat::Q4_0 => d as f64 * (c - 8.0),
                            QFormat::Q4_1 => d as f64 * c + m as f64,
                        };
                        let term = wv * dx * acts.q[ti * k + b * QK + i] as f64;
                        exact += term;
                        abs += term.abs();
                    }
                }
                let got = y[ti * o + r] as f64;
                assert!(
                    (got - exact).abs() <= 4.0 * nb as f64 * f32::EPSILON as f64 * abs + 1e-30,
                    "{} ({ti},{r}): {got} vs {exact}",
                    f.name()
                );
            }
        }
    }
}

/// Against the f32 product of the real x with the decoded weights: the activation codes are off
/// by at most dx/2 each, so |Δ| ≤ Σ_b (dx_b/2)·Σᵢ|w_bi| (+ f32 rounding).
#[test]
fn quantized_product_is_within_the_activation_rounding_bound() {
    for f in FORMATS {
        let (t, k, o) = (4, 576, 64);
        let w = rand_matrix(f, o, k, 21);
        let x = rand_vec(t * k, 22);
        let mut y = vec![0.0; t * o];
        qmatmul_at(simd_level(), &x, &w, &mut y, t);
        let acts = QActs::quantize(&x, t, k);
        let mut wr = vec![0.0f32; k];
        for r in 0..o {
            w.dequantize_row(r, &mut wr);
            for ti in 0..t {
                let xr = &x[ti * k..(ti + 1) * k];
                let exact: f64 = xr.iter().zip(&wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let mut bound = 0.0f64;
                let mut abs = 0.0f64;
                for b in 0..k / QK {
                    let s: f64 = wr[b * QK..(b + 1) * QK].iter().map(|v| v.abs() as f64).sum();
                    bound += acts.d[ti * (k / QK) + b] as f64 / 2.0 * s;
                    abs += (0..QK).map(|i| (xr[b * QK + i] * wr[b * QK + i]).abs() as f64).sum::<f64>();
                }
                let d = (y[ti * o + r] as f64 - exact).abs();
                assert!(d <= bound + 1e-5 * abs, "{} ({ti},{r}): |Δ| = {d} > {bound}", f.name());
            }
        }
    }
}

#[test]
fn rows_do_not_depend_on_the_batch_or_the_threads() {
    // 13 rows: one block of activation rows; 200 rows at K = 1536: three (88 rows each); 600
    // rows × 480 columns: a y over 1 MB, so chunks of rows pass over windows of groups.
    for (t, k, o) in [(13, 576, 200), (200, 1536, 40), (600, 1536, 480)] {
        for f in FORMATS {
            let w = rand_matrix(f, o, k, 31);
            let x = rand_vec(t * k, 32);
            for level in levels() {
                let mut all = vec![0.0; t * o];
                qmatmul_at(level, &x, &w, &mut all, t);
                for ti in [0, 5, 12, 87, 88, 199, 350, 599].into_iter().filter(|&ti| ti < t) {
                    let mut one = vec![0.0; o];
                    qmatmul_at(level, &x[ti * k..(ti + 1) * k], &w, &mut one, 1);
                    assert_eq!(one, all[ti * o..(ti + 1) * o], "{level:?} {} row {ti}", f.name());
                }
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                let mut single = vec![0.0; t * o];
                pool.install(|| qmatmul_at(level, &x, &w, &mut single, t));
                assert_eq!(single, all, "{level:?} {}: 1 thread vs the pool", f.name());
            }
        }
    }
}

#[test]
fn layout_round_trips_codes_and_scales() {
    for f in FORMATS {
        let (o, k) = (37, 96);
        let codes: Vec<i32> =
            (0..o * k).map(|i| f.min_code() + (i * 7 % (f.max_code() - f.min_code() + 1) as usize) as i32).collect();
        let w = QMatrix::from_rows(f, o, k, |r, c, d, m| {
            for i in 0..k {
                c[i] = codes[r * k + i] as i8 as u8;
            }
            for b in 0..k / QK {
                d[b] = half::f16::from_f32(0.5 + r as f32 + b as f32).to_bits();
                m[b] = half::f16::from_f32(-(r as f32) - 0.25).to_bits();
            }
        });
        let mut row = vec![0.0; k];
        for r in 0..o {
            w.dequantize_row(r, &mut row);
            for i in 0..k {
                assert_eq!(w.code(r, i), codes[r * k + i]);
                let (d, m) = w.scale_min(r, i / QK);
                assert_eq!(d, 0.5 + r as f32 + (i / QK) as f32);
                let want = match f {
                    QFormat::Q8_0 => codes[r * k + i] as f32 * d,
                    QFormat::Q4_0 => (codes[r * k + i] - 8) as f32 * d,
                    QFormat::Q4_1 => codes[r * k + i] as f32 * d + m,
                };
                assert_eq!(row[i], want);
            }
        }
        assert_eq!(w.bytes(), 3 * (k / QK) * f.block_bytes());
        // set_code changes exactly one code.
        let mut v = w.clone();
        let c = if w.code(20, 45) == f.max_code() { f.min_code() } else { w.code(20, 45) + 1 };
        v.set_code(20, 45, c);
        for r in 0..o {
            for i in 0..k {
                let want = if (r, i) == (20, 45) { c } else { w.code(r, i) };
                assert_eq!(v.code(r, i), want, "({r}, {i})");
            }
        }
    }
}

#[test]
fn activation_quantization_is_the_same_at_every_level() {
    let (t, k) = (9, 576);
    let mut x = rand_vec(t * k, 41);
    x[100] = f32::INFINITY;
    x[700] = f32::NAN;
    x[1024..1056].fill(0.0);
    let want = QActs::quantize_at(Level::Portable, &x, t, k);
    for level in levels() {
        let a = QActs::quantize_at(level, &x, t, k);
        assert_eq!(a.q, want.q, "{level:?}");
        assert_eq!(a.isum, want.isum, "{level:?}");
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.d), bits(&want.d), "{level:?}");
        assert_eq!(bits(&a.s), bits(&want.s), "{level:?}");
    }
    assert!(want.d[100 / 32].is_nan() && want.d[700 / 32].is_nan() && want.d[1024 / 32] == 0.0);
}

#[test]
fn activations_round_to_nearest_even_and_carry_nan() {
    let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
    x[40] = f32::NAN;
    let a = QActs::quantize(&x, 1, 64);
    assert!(a.q[..32].iter().all(|&q| q != i8::MIN), "codes stay in ±127");
    assert_eq!(a.q[0], -127, "max |x| maps to ±127");
    assert_eq!(a.isum[0], a.q[..32].iter().map(|&q| q as i32).sum::<i32>());
    assert_eq!(a.s[0], a.d[0] * a.isum[0] as f32);
    assert!(a.d[1].is_nan(), "a NaN makes its block's scale NaN");
    let w = QMatrix::quantize_q8_0(&vec![1.0; 64], 1, 64);
    let mut y = [0.0];
    qmatmul_at(Level::Portable, &x, &w, &mut y, 1);
    assert!(y[0].is_nan());
    // Ties go to even: 2.5 → 2 at scale 1 (amax 127).
    let mut t = vec![0.0f32; 32];
    t[0] = 127.0;
    t[1] = 2.5;
    t[2] = 3.5;
    let a = QActs::quantize(&t, 1, 32);
    assert_eq!((a.q[1], a.q[2]), (2, 4));
}

/// Throughput of each kernel on the default model's shapes, decode-sized to a QES prefill's 4480
/// rows, and the level's own kernel against the integer step's register-only peak (thread CPU
/// time is not used: run it on a quiet machine; each figure is the fastest of five runs, as the
/// host's noise only slows a run down).
/// `cargo test --release --lib qmatmul_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn qmatmul_speed() {
    println!("{}", machine::Machine::current());
    let (best, peak) = (QuantKernel::at(simd_level()), crate::kernels::probe::int8_peak(3));
    for &(t, k, o) in &[
        (1, 576, 1536),
        (16, 576, 1536),
        (16, 1536, 576),
        (128, 576, 1536),
        (128, 576, 49152),
        (256, 576, 1536),
        (1, 576, 49152),
        (16, 576, 49152),
        (1024, 576, 1536),
        (4480, 576, 576),
        (4480, 576, 1536),
        (4480, 1536, 576),
    ] {
        let x = rand_vec(t * k, 1);
        let wf = rand_vec(o * k, 2);
        let mut y = vec![0.0; t * o];
        let time = |f: &mut dyn FnMut()| {
            // ≈ 8·10⁹ operations per timed batch (tens of ms: one preemption does not decide it).
            let reps = (4e9 / (t * k * o) as f64).clamp(1.0, 4000.0) as usize;
            crate::kernels::probe::best_pass(5, || (0..reps).for_each(|_| f())) / reps as f64
        };
        let f32s = time(&mut || matmul(&x, &wf, &mut y, t, k, o));
        let mut line = format!("t={t:4} k={k:5} o={o:6}  f32 {:7.1} GFLOP/s", 2.0 * (t * k * o) as f64 / f32s / 1e9);
        for f in FORMATS {
            let w = rand_matrix(f, o, k, 3);
            for kern in kernels() {
                if kern == QuantKernel::Portable {
                    continue;
                }
                let s = time(&mut || {
                    let a = QActs::quantize(&x, t, k);
                    qmatmul_acts(kern, &a, &w, &mut y)
                });
                let gops = 2.0 * (t * k * o) as f64 / s / 1e9;
                line += &format!("  {} {:?} {gops:6.1} GOP/s ({:.2}×", f.name(), kern, f32s / s);
                match peak.filter(|_| kern == best) {
                    Some(p) => line += &format!(", {:.0}% of {p:.0})", 100.0 * gops / p),
                    None => line += ")",
                }
            }
        }
        println!("{line}");
    }
}

/// The batched lookups (with their prefetch and multiply-high rows) read what `code` and
/// `scale_min` read, at scattered positions in every format, including the first and last.
#[test]
fn codes_at_and_scales_at_match_single_lookups() {
    for f in [QFormat::Q8_0, QFormat::Q4_0, QFormat::Q4_1] {
        let (rows, cols) = (37, 96);
        let q = rand_matrix(f, rows, cols, 11);
        let positions: Vec<u32> =
            (0..(rows * cols) as u32).filter(|i| i % 7 == 0 || i % 11 == 3).chain([(rows * cols - 1) as u32]).collect();
        let codes = q.codes_at(&positions);
        let scales = q.scales_at(&positions);
        assert_eq!(codes.len(), positions.len());
        for ((&i, &c), &d) in positions.iter().zip(&codes).zip(&scales) {
            let (r, k) = (i as usize / cols, i as usize % cols);
            assert_eq!(c as i32, q.code(r, k), "{f:?} code at ({r}, {k})");
            assert_eq!(d.to_bits(), q.scale_min(r, k / QK).0.to_bits(), "{f:?} scale at ({r}, {k})");
        }
    }
}

/// `changed_codes` lists exactly the codes that differ, in (group, block, row, k) order, for
/// every format: single codes, both nibbles of one byte, a whole row of a block, codes in the
/// partial last group, and moves back to the base value (not listed).
#[test]
fn changed_codes_lists_exactly_the_moved_codes() {
    for f in FORMATS {
        let (rows, cols) = (37, 96);
        let base = rand_matrix(f, rows, cols, 11);
        let mut moved = base.clone();
        let mut touch = |r: usize, k: usize| {
            let c = base.code(r, k);
            moved.set_code(r, k, if c < f.max_code() { c + 1 } else { c - 1 });
        };
        for (r, k) in [(0, 0), (0, 95), (3, 8), (3, 12), (17, 40), (36, 1), (36, 63), (20, 33)] {
            touch(r, k);
        }
        for k in 64..96 {
            touch(5, k);
        }
        // Moved and moved back: equal to the base again.
        let c = base.code(9, 9);
        moved.set_code(9, 9, if c < f.max_code() { c + 1 } else { c - 1 });
        moved.set_code(9, 9, c);
        let mut want = Vec::new();
        for g in 0..rows.div_ceil(16) {
            for blk in 0..cols / QK {
                for r in g * 16..((g + 1) * 16).min(rows) {
                    for k in blk * QK..(blk + 1) * QK {
                        if moved.code(r, k) != base.code(r, k) {
                            want.push((r, k, moved.code(r, k)));
                        }
                    }
                }
            }
        }
        assert_eq!(want.len(), 8 + 32, "{f:?}");
        assert_eq!(moved.changed_codes(&base), want, "{f:?}");
    }
}
