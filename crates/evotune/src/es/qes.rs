//! The QES update (Xu, Miikkulainen, Qiu 2026): ES on the integer codes of a quantized model, with
//! error feedback so that updates smaller than one code step build up until a code moves.
//!
//! For every code cᵢ of every quantized matrix, with members' gated moves uₙ ∈ {−1, 0, 1}
//! ([`super::code_noise`]) and their shaped coefficients cₙ:
//!
//! ```text
//! ĝᵢ   = (1/σ)·Σₙ cₙ·uₙᵢ                       members in order, f32
//! sᵢ   = α·ĝᵢ + β·eᵢ                            β the residual decay (0.9)
//! Δᵢ   = round(sᵢ), and 0 if cᵢ + Δᵢ leaves the code range (anti-windup)
//! cᵢ  ← cᵢ + Δᵢ
//! eᵢ  ← clamp(sᵢ − Δᵢ, −1.5, 1.5)
//! ```
//!
//! with e₀ ~ U(−½, ½) from a counter RNG (so that the codes do not all cross on the same step).
//! Without feedback (`feedback = false`) the step is round(α·ĝᵢ) and e stays 0: the vanishing
//! update the paper describes, kept for comparison.
//!
//! **The residual is stored as int8 fixed point**, e = k·(1.5/127), k ∈ [−127, 127]: one byte per
//! code (134 MB for the default model), a resolution of 0.0118 code steps — finer than the
//! typical α·ĝ of a moved code (≈ 0.05 at α = 5e-4, σ = 0.01), and half the memory of f16, which
//! would not fit beside the quantized weights in the QES memory budget (0.6× the f32 model). Each
//! stored e is rounded to the nearest step, deterministically.
//!
//! Every code's update reads only its own ĝ, e and c, in a fixed order, so any split over threads
//! gives the same codes and residual bit for bit.

use rayon::prelude::*;

use super::code_noise::CodeNoise;
use super::noise::splitmix64;
use crate::model::weights::Stored;
use crate::model::{QuantizedParams, Weights};

/// The residual bound: |e| ≤ 1.5 code steps.
pub const RESIDUAL_MAX: f32 = 1.5;
/// One int8 step of the stored residual, in code steps.
const RESIDUAL_STEP: f32 = RESIDUAL_MAX / 127.0;

/// Hyperparameters of the QES update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QesParams {
    /// σ in code units (the paper: 0.01 for 4-bit codes, 0.001 for 8-bit).
    pub sigma: f64,
    /// α, the learning rate.
    pub alpha: f32,
    /// β, the residual decay (the paper: 0.9).
    pub beta: f32,
    /// Error feedback on (QES) or off (plain rounding of α·ĝ).
    pub feedback: bool,
}

/// e for every code of every quantized matrix, int8 fixed point (empty for f32 tensors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Residual {
    tensors: Vec<Vec<i8>>,
}

impl Residual {
    /// e₀ ~ U(−½, ½) per code, from a counter RNG keyed by (seed, tensor, element); zero when
    /// `feedback` is off.
    pub fn init(store: &QuantizedParams, seed: u64, feedback: bool) -> Residual {
        let tensors = (0..store.layout().len())
            .into_par_iter()
            .map(|id| match store.stored(id) {
                Stored::Quant(q) if feedback => {
                    let mut e = vec![0i8; q.rows() * q.cols()];
                    let key = splitmix64(splitmix64(seed ^ 0x5245_5349_4455_414c) ^ id as u64); // "RESIDUAL"
                    e.par_chunks_mut(1 << 16).enumerate().for_each(|(c, chunk)| {
                        for (j, v) in chunk.iter_mut().enumerate() {
                            let i = (c << 16) + j;
                            let u = (splitmix64(key ^ i as u64) >> 11) as f32 * (1.0 / (1u64 << 53) as f32) - 0.5;
                            *v = to_fixed(u);
                        }
                    });
                    e
                }
                Stored::Quant(q) => vec![0i8; q.rows() * q.cols()],
                Stored::F32(_) => Vec::new(),
            })
            .collect();
        Residual { tensors }
    }

    /// e of code i of tensor `id`, in code steps.
    pub fn value(&self, id: usize, i: usize) -> f32 {
        self.tensors[id][i] as f32 * RESIDUAL_STEP
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(Vec::len).sum()
    }
}

/// What one update did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QesStats {
    /// Codes that moved (Δ ≠ 0).
    pub moved: u64,
    /// Codes whose Δ was cancelled at the range (anti-windup).
    pub held: u64,
}

/// Applies one QES step to `store` and `residual`: `moves[n][id]` are member n's gated moves of
/// tensor `id` (as drawn for the evaluation), `coefficients[n]` its shaped coefficient.
pub fn apply(
    store: &mut QuantizedParams,
    residual: &mut Residual,
    moves: &[Vec<CodeNoise>],
    coefficients: &[f32],
    p: &QesParams,
) -> QesStats {
    assert_eq!(moves.len(), coefficients.len(), "one coefficient per member");
    let inv_sigma = (1.0 / p.sigma) as f32;
    let mut total = QesStats::default();
    for id in 0..store.layout().len() {
        let Stored::Quant(q) = store.stored_mut(id) else { continue };
        let (k, lo, hi) = (q.cols(), q.format().min_code(), q.format().max_code());
        let e = &mut residual.tensors[id];
        // Chunks of whole rows; each computes Δ for its codes from the members' sorted lists.
        let rows_per = (CHUNK / k).max(1);
        let q_ref = &*q;
        let results: Vec<(Vec<(u32, i32)>, QesStats)> = e
            .par_chunks_mut(rows_per * k)
            .enumerate()
            .map(|(c, e)| {
                let start = (c * rows_per * k) as u32;
                let end = start + e.len() as u32;
                let mut g = vec![0.0f32; e.len()];
                for (n, m) in moves.iter().enumerate() {
                    let u = &m[id];
                    for (list, sign) in [(&u.plus, 1.0f32), (&u.minus, -1.0f32)] {
                        let from = list.partition_point(|&i| i < start);
                        for &i in list[from..].iter().take_while(|&&i| i < end) {
                            g[(i - start) as usize] += sign * coefficients[n];
                        }
                    }
                }
                let mut changes = Vec::new();
                let mut stats = QesStats::default();
                for (j, (e, &g)) in e.iter_mut().zip(&g).enumerate() {
                    let grad = g * inv_sigma;
                    let step =
                        if p.feedback { p.alpha * grad + p.beta * (*e as f32 * RESIDUAL_STEP) } else { p.alpha * grad };
                    let mut delta = step.round() as i32;
                    if delta != 0 {
                        let i = start as usize + j;
                        let code = q_ref.code(i / k, i % k);
                        if (lo..=hi).contains(&(code + delta)) {
                            changes.push((i as u32, code + delta));
                            stats.moved += 1;
                        } else {
                            delta = 0;
                            stats.held += 1;
                        }
                    }
                    if p.feedback {
                        *e = to_fixed((step - delta as f32).clamp(-RESIDUAL_MAX, RESIDUAL_MAX));
                    }
                }
                (changes, stats)
            })
            .collect();
        for (changes, stats) in results {
            for (i, c) in changes {
                q.set_code(i as usize / k, i as usize % k, c);
            }
            total.moved += stats.moved;
            total.held += stats.held;
        }
    }
    total
}

/// ‖θ − θ0‖ in real units between `store` and the `base` codes it started from (a moved code
/// moves its weight by d·Δc), per layer, kind and tensor; and how many codes differ, of how many.
pub fn code_drift(store: &QuantizedParams, base: &QuantizedParams) -> (super::drift::Drift, u64, u64) {
    let layout = store.layout();
    let per: Vec<(f64, u64, u64)> = (0..layout.len())
        .into_par_iter()
        .map(|id| match (store.stored(id), base.stored(id)) {
            (Stored::Quant(q), Stored::Quant(b)) => {
                let changed = q.changed_codes(b);
                let sq = changed
                    .iter()
                    .map(|&(r, i, c)| {
                        let d = q.scale_min(r, i / crate::kernels::quant_matrix::QK).0 as f64;
                        (d * (c - b.code(r, i)) as f64).powi(2)
                    })
                    .sum();
                (sq, changed.len() as u64, (q.rows() * q.cols()) as u64)
            }
            _ => (0.0, 0, 0),
        })
        .collect();
    let drift = super::drift::from_squares(layout, per.iter().map(|p| p.0).collect());
    (drift, per.iter().map(|p| p.1).sum(), per.iter().map(|p| p.2).sum())
}

/// Codes per parallel chunk of the update (whole rows).
const CHUNK: usize = 1 << 16;

/// e (code steps, |e| ≤ 1.5) to the nearest int8 step.
fn to_fixed(e: f32) -> i8 {
    (e / RESIDUAL_STEP).round().clamp(-127.0, 127.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{QFormat, QMatrix};
    use crate::model::Layout;
    use std::sync::Arc;

    /// One Q4_1 matrix (32 × 64), codes 0..15 cycling, and a vector.
    fn store() -> QuantizedParams {
        store_rows(32)
    }

    fn store_rows(rows: usize) -> QuantizedParams {
        let mut l = Layout::new();
        l.push("model.layers.0.mlp.up_proj.weight", vec![rows, 64]);
        l.push("model.norm.weight", vec![4]);
        let q = QMatrix::from_rows(QFormat::Q4_1, rows, 64, |r, c, d, m| {
            for (i, c) in c.iter_mut().enumerate() {
                *c = ((r + i) % 16) as u8;
            }
            d.fill(half::f16::from_f32(0.01).to_bits());
            m.fill(0);
        });
        QuantizedParams::new(Arc::new(l), vec![Stored::Quant(q), Stored::F32(vec![1.0; 4])])
    }

    fn code(s: &QuantizedParams, i: usize) -> i32 {
        let Stored::Quant(q) = s.stored(0) else { unreachable!() };
        q.code(i / 64, i % 64)
    }

    /// Member 0 always moves code 5 (value 5) up with coefficient 1: α·ĝ = 0.2 per step.
    fn signal() -> Vec<Vec<CodeNoise>> {
        vec![vec![CodeNoise { plus: vec![5], minus: vec![] }, CodeNoise::default()]]
    }

    #[test]
    fn error_feedback_builds_up_sub_step_updates_and_plain_rounding_does_not() {
        let p = QesParams { sigma: 0.01, alpha: 0.002, beta: 0.9, feedback: true };
        let mut s = store();
        let mut e = Residual { tensors: vec![vec![0; 32 * 64], vec![]] };
        let mut steps = 0;
        while code(&s, 5) == 5 {
            apply(&mut s, &mut e, &signal(), &[1.0], &p);
            steps += 1;
        }
        // e: 0.2, 0.38, 0.542 → crosses ½ on the 3rd step (int8 rounding of e shifts nothing here).
        assert_eq!((steps, code(&s, 5)), (3, 6));
        assert!((e.value(0, 5) - (0.542 - 1.0)).abs() < 0.02, "{}", e.value(0, 5));
        // No other code moved (their e decays from 0).
        assert!((0..32 * 64).filter(|&i| i != 5).all(|i| code(&s, i) == code(&store(), i)));

        let plain = QesParams { feedback: false, ..p };
        let mut s = store();
        let mut e = Residual::init(&s, 1, false);
        for _ in 0..100 {
            apply(&mut s, &mut e, &signal(), &[1.0], &plain);
        }
        assert_eq!(code(&s, 5), 5, "round(0.2) = 0 forever: the vanishing update");
    }

    #[test]
    fn anti_windup_holds_codes_at_the_range_and_bounds_the_residual() {
        let p = QesParams { sigma: 0.01, alpha: 0.02, beta: 0.9, feedback: true };
        let mut s = store();
        let mut e = Residual { tensors: vec![vec![0; 32 * 64], vec![]] };
        // Code 15 (row 0, i = 15) pushed up by α·ĝ = 2 per step: never moves, e saturates at 1.5.
        let push = vec![vec![CodeNoise { plus: vec![15], minus: vec![] }, CodeNoise::default()]];
        for _ in 0..5 {
            let st = apply(&mut s, &mut e, &push, &[1.0], &p);
            assert_eq!(st, QesStats { moved: 0, held: 1 });
        }
        assert_eq!(code(&s, 15), 15);
        assert_eq!(e.value(0, 15), RESIDUAL_MAX);
    }

    #[test]
    fn the_update_does_not_depend_on_the_threads() {
        let p = QesParams { sigma: 0.01, alpha: 0.004, beta: 0.9, feedback: true };
        let moves: Vec<Vec<CodeNoise>> = (0..4)
            .map(|n| {
                let key = crate::es::noise::NoiseKey { seed: 3, iteration: 0, noise_id: n, tensor_key: 0 };
                vec![CodeNoise::draw(&key, 2048 * 64, 0.1, 1), CodeNoise::default()]
            })
            .collect();
        let coeffs = [1.3f32, -0.4, 0.9, -1.8];
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                // 131 072 codes: two chunks of the update.
                let mut s = store_rows(2048);
                let mut e = Residual::init(&s, 7, true);
                let mut stats = Vec::new();
                for _ in 0..20 {
                    stats.push(apply(&mut s, &mut e, &moves, &coeffs, &p));
                }
                (s.dequantize(), e, stats)
            })
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert!(a.2.iter().map(|s| s.moved).sum::<u64>() > 0, "{:?}", a.2);
        // e₀ is U(−½, ½).
        let e0 = Residual::init(&store(), 7, true);
        let vals: Vec<f32> = (0..32 * 64).map(|i| e0.value(0, i)).collect();
        assert!(vals.iter().all(|v| v.abs() <= 0.5 + RESIDUAL_STEP));
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        assert!(mean.abs() < 0.03, "{mean}");
    }
}
