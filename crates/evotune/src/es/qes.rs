//! The QES update (Xu, Miikkulainen, Qiu 2026): ES on the integer codes of a quantized model, with
//! error feedback so that updates smaller than one code step build up until a code moves.
//!
//! For every code cᵢ of every quantized matrix, with members' gated moves uₙ ∈ {−1, 0, 1}
//! ([`super::code_noise`]) and their shaped coefficients cₙ:
//!
//! ```text
//! ĝᵢ   = (1/σ)·Σₙ cₙ·uₙᵢ                       members in order, f32
//! sᵢ   = α·ĝᵢ + β·eᵢ                            β the residual decay (0.9)
//! sᵢ  ← AWD(sᵢ)                                 optional, see below
//! Δᵢ   = round(sᵢ), and 0 if cᵢ + Δᵢ leaves the code range (anti-windup)
//! cᵢ  ← cᵢ + Δᵢ
//! eᵢ  ← clamp(sᵢ − Δᵢ, −1.5, 1.5)
//! ```
//!
//! with e₀ ~ U(−½, ½) from a counter RNG (so that the codes do not all cross on the same step).
//! Without feedback (`feedback = false`) the step is round(α·ĝᵢ) and e stays 0: the vanishing
//! update the paper describes, kept for comparison.
//!
//! **AWD in code space.** The f32 rules ([`super::awd`]) act on the offset from the anchor; here
//! the offset is the one the step would reach, δᵢ = (cᵢ − c0ᵢ) + sᵢ (codes plus the residual
//! they carry), with τ = α·λ:
//!
//! ```text
//! l2:  sᵢ ← sᵢ − τ·δᵢ                           δᵢ ← (1 − τ)·δᵢ
//! l1:  sᵢ ← sign(δᵢ)·max(|δᵢ| − τ, 0) − (cᵢ − c0ᵢ)   soft threshold; exactly c0, e = 0 inside τ
//! ```
//!
//! On rewards that carry no signal the high-precision position pᵢ = cᵢ + eᵢ then moves as
//! δ' = (1 − τ)·(δ + α·ĝ − (1 − β)·e): an Ornstein–Uhlenbeck walk whose stationary variance is
//! (1 − τ)²·(v + L)/(1 − (1 − τ)²), v = E[(α·ĝ)²], L the small pull of the decaying residual
//! toward the nearest code (`tests/qes_laws.rs` checks it).
//!
//! **Two ways to hold e** ([`Residual`]):
//! - *stored*, int8 fixed point, e = k·(1.5/127), k ∈ [−127, 127]: one byte per code (134 MB for
//!   the default model), a resolution of 0.0118 code steps — finer than the typical α·ĝ of a
//!   moved code (≈ 0.05 at α = 5e-4, σ = 0.01) — and half the memory of f16. Each stored e is
//!   rounded to the nearest step, deterministically.
//! - *replay*, the paper's stateless form: only the last K steps' members and coefficients are
//!   kept; each update rebuilds e from 0 by running those K steps again (their moves regenerated
//!   from the counter RNG, gated and AWD'd against the current codes, as the paper's code does),
//!   in f32, then takes the current step. No memory per code; K·N extra noise draws per update.
//!
//! Every code's update reads only its own ĝ, e, c and c0, in a fixed order, so any split over
//! threads gives the same codes and residual bit for bit.

use std::borrow::Cow;
use std::collections::VecDeque;

use rayon::prelude::*;

use super::awd::Awd;
use super::code_noise::CodeNoise;
use super::code_population::member_moves;
use super::noise::{splitmix64, IterationNoise, NoiseMode};
use super::population::Member;
use crate::kernels::feedback::{self, BLOCK};
use crate::kernels::QMatrix;
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
    /// Anchored weight decay toward the base codes (τ = α·λ per step).
    pub awd: Awd,
}

/// How a run holds the residual e.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResidualKind {
    /// int8 fixed point, one byte per code.
    #[default]
    Stored,
    /// Rebuilt at each update from the last K steps (the paper's seed replay).
    Replay,
}
from_str_by_serde!(ResidualKind);

/// The paper's replay window K.
pub const DEFAULT_REPLAY_WINDOW: usize = 50;

/// e of every code, stored or as the steps to rebuild it from.
#[derive(Clone, Debug, PartialEq)]
pub enum Residual {
    /// e per code of every quantized matrix, int8 fixed point (empty for f32 tensors).
    Stored(Vec<Vec<i8>>),
    /// The last `window` steps, and the noise they were drawn from.
    Replay { window: usize, seed: u64, mode: NoiseMode, steps: VecDeque<WindowStep> },
}

/// The codes a run started from, one matrix at a time: the AWD anchor and the drift's origin.
/// A store in memory lends its matrices; a source file re-reads them on demand (no second copy of
/// the codes held during training).
pub trait BaseCodes: Sync {
    /// Matrix `id` (a quantized tensor of the store being trained).
    fn matrix(&self, id: usize) -> crate::error::Result<Cow<'_, QMatrix>>;
}

impl BaseCodes for QuantizedParams {
    fn matrix(&self, id: usize) -> crate::error::Result<Cow<'_, QMatrix>> {
        match self.stored(id) {
            Stored::Quant(q) => Ok(Cow::Borrowed(q)),
            Stored::F32(_) => panic!("base tensor {id} is not quantized"),
        }
    }
}

/// One step as the replayed residual needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowStep {
    pub iteration: u64,
    pub members: Vec<Member>,
    pub coefficients: Vec<f32>,
}

impl Residual {
    /// A stored residual: e₀ ~ U(−½, ½) per code, from a counter RNG keyed by (seed, tensor,
    /// element); zero when `feedback` is off.
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
                            *v = feedback::to_fixed(u, RESIDUAL_STEP);
                        }
                    });
                    e
                }
                Stored::Quant(q) => vec![0i8; q.rows() * q.cols()],
                Stored::F32(_) => Vec::new(),
            })
            .collect();
        Residual::Stored(tensors)
    }

    /// A replayed residual over the last `window` steps of the noise keyed by `seed` and `mode`
    /// (e = 0 before the first step, as in the paper).
    pub fn replay(window: usize, seed: u64, mode: NoiseMode) -> Residual {
        Residual::Replay { window, seed, mode, steps: VecDeque::new() }
    }

    /// The residual a run of `kind` starts from.
    pub fn new(
        kind: ResidualKind,
        window: usize,
        store: &QuantizedParams,
        seed: u64,
        mode: NoiseMode,
        feedback: bool,
    ) -> Self {
        match kind {
            ResidualKind::Stored => Residual::init(store, seed, feedback),
            ResidualKind::Replay => Residual::replay(window, seed, mode),
        }
    }

    /// e of code i of tensor `id`, in code steps (stored residuals only).
    pub fn value(&self, id: usize, i: usize) -> Option<f32> {
        match self {
            Residual::Stored(t) => Some(t[id][i] as f32 * RESIDUAL_STEP),
            Residual::Replay { .. } => None,
        }
    }

    /// Bytes held per code (stored) or by the window's records (replay).
    pub fn bytes(&self) -> usize {
        match self {
            Residual::Stored(t) => t.iter().map(Vec::len).sum(),
            Residual::Replay { steps, .. } => {
                steps.iter().map(|s| s.members.len() * std::mem::size_of::<Member>() + s.coefficients.len() * 4).sum()
            }
        }
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

/// One step of the update: its iteration, members and shaped coefficients, and the members'
/// gated moves (`moves[n][id]`, as drawn for the evaluation).
pub struct Step<'a> {
    pub iteration: u64,
    pub members: &'a [Member],
    pub coefficients: &'a [f32],
    pub moves: &'a [Vec<CodeNoise>],
}

/// The step before AWD and rounding: α·ĝ + β·e with error feedback, else α·ĝ (ĝ already divided
/// by σ).
#[inline]
fn feedback_step(grad: f32, e: f32, p: &QesParams) -> f32 {
    if p.feedback {
        feedback::step(grad, e, p.alpha, p.beta)
    } else {
        p.alpha * grad
    }
}

/// The update of one code: (Δ, e', whether anti-windup held it) from ĝ (already divided by σ),
/// e, the code and its anchor.
#[inline]
fn code_step(
    grad: f32,
    e: f32,
    code: impl Fn() -> i32,
    anchor: impl Fn() -> i32,
    range: (i32, i32),
    p: &QesParams,
) -> (i32, f32, bool) {
    let mut step = feedback_step(grad, e, p);
    match p.awd {
        Awd::None => {}
        Awd::L2 { lambda } => {
            let offset = (code() - anchor()) as f32;
            if offset != 0.0 || step != 0.0 {
                step -= p.alpha * lambda * (offset + step);
            }
        }
        Awd::L1 { lambda } => {
            let offset = (code() - anchor()) as f32;
            let reach = offset + step;
            let tau = p.alpha * lambda;
            let shrunk = if reach.abs() <= tau { 0.0 } else { reach - tau.copysign(reach) };
            step = shrunk - offset;
        }
    }
    let mut delta = round_to_i32(step);
    let held = delta != 0 && !(range.0..=range.1).contains(&(code() + delta));
    if held {
        delta = 0;
    }
    let e = if p.feedback { (step - delta as f32).clamp(-RESIDUAL_MAX, RESIDUAL_MAX) } else { 0.0 };
    (delta, e, held)
}

/// Adds Σₙ cₙ·uₙ of the codes in [start, start + g.len()) into `g`, members in order.
fn gather(g: &mut [f32], start: u32, moves: &[&CodeNoise], coefficients: &[f32]) {
    let end = start + g.len() as u32;
    for (u, &c) in moves.iter().zip(coefficients) {
        for (list, sign) in [(&u.plus, 1.0f32), (&u.minus, -1.0f32)] {
            let from = list.partition_point(|&i| i < start);
            for &i in list[from..].iter().take_while(|&&i| i < end) {
                g[(i - start) as usize] += sign * c;
            }
        }
    }
}

/// Applies one QES step to `store` and `residual`, anchored (AWD) at `anchor` (the base codes;
/// needed when `p.awd` is not `None`). Fails only where the anchor cannot be read.
pub fn apply(
    store: &mut QuantizedParams,
    residual: &mut Residual,
    anchor: Option<&dyn BaseCodes>,
    step: &Step,
    p: &QesParams,
) -> crate::error::Result<QesStats> {
    assert_eq!(step.moves.len(), step.coefficients.len(), "one coefficient per member");
    assert!(p.awd == Awd::None || anchor.is_some(), "AWD needs the anchor codes");
    let inv_sigma = (1.0 / p.sigma) as f32;
    let layout = store.layout().clone();
    let mut total = QesStats::default();
    for id in 0..layout.len() {
        let Stored::Quant(q) = store.stored_mut(id) else { continue };
        let base_matrix = anchor.map(|a| a.matrix(id)).transpose()?;
        let base = base_matrix.as_deref();
        let (k, range) = (q.cols(), (q.format().min_code(), q.format().max_code()));
        // The replayed window's steps (their moves are drawn chunk by chunk below).
        let window: Vec<(IterationNoise, Vec<Member>, Vec<f32>)> = match &*residual {
            Residual::Replay { seed, mode, steps, .. } => steps
                .iter()
                .map(|s| {
                    let noise = IterationNoise { seed: *seed, iteration: s.iteration, mode: *mode };
                    (noise, s.members.clone(), s.coefficients.clone())
                })
                .collect(),
            Residual::Stored(_) => Vec::new(),
        };
        let shape = &layout.info(id).shape;
        let current: Vec<&CodeNoise> = step.moves.iter().map(|m| &m[id]).collect();
        let len = q.rows() * q.cols();
        let q_ref = &*q;
        let code_of = |i: usize| q_ref.code(i / k, i % k);
        let anchor_of = |i: usize| base.map_or(0, |b| b.code(i / k, i % k));
        // Chunk c holds codes [c·CHUNK, (c + 1)·CHUNK), the noise's own chunks: it rebuilds e from
        // the window (each step's moves of this chunk drawn against the current codes) or reads
        // it, takes the step and returns its changes.
        let chunk_step = |c: usize, e: &mut [f32]| -> (Vec<(u32, i32)>, QesStats) {
            let start = c * CHUNK;
            let mut g = vec![0.0f32; e.len()];
            for (noise, members, coefficients) in &window {
                let moves: Vec<CodeNoise> =
                    members.iter().map(|m| member_moves(q_ref, noise, m, id, shape, p.sigma, Some(c as u64))).collect();
                g.fill(0.0);
                gather(&mut g, start as u32, &moves.iter().collect::<Vec<_>>(), coefficients);
                for (j, (e, &g)) in e.iter_mut().zip(&g).enumerate() {
                    let i = start + j;
                    *e = code_step(g * inv_sigma, *e, || code_of(i), || anchor_of(i), range, p).1;
                }
            }
            g.fill(0.0);
            gather(&mut g, start as u32, &current, step.coefficients);
            // Without AWD, most codes' step rounds to 0: in blocks of 32 every step is computed
            // first (vectorised, per SIMD level); a block whose steps all round to 0 (nearly every
            // one) takes e = clamp(step) at once, and `code_step` runs only for codes whose step
            // does not (the same operations on every code either way).
            let fast = p.feedback && p.awd == Awd::None;
            let loud = if fast {
                feedback::settle_quiet_blocks(e, &g, inv_sigma, p.alpha, p.beta, RESIDUAL_MAX)
            } else {
                (0..e.len().div_ceil(BLOCK)).collect()
            };
            let mut changes = Vec::new();
            let mut stats = QesStats::default();
            for b in loud {
                let block = b * BLOCK..((b + 1) * BLOCK).min(e.len());
                for (j, (e, &g)) in e[block.clone()].iter_mut().zip(&g[block]).enumerate() {
                    if fast {
                        let s = feedback_step(g * inv_sigma, *e, p);
                        if feedback::rounds_to_0(s) {
                            *e = s.clamp(-RESIDUAL_MAX, RESIDUAL_MAX);
                            continue;
                        }
                    }
                    let i = start + b * BLOCK + j;
                    let (delta, next, held) = code_step(g * inv_sigma, *e, || code_of(i), || anchor_of(i), range, p);
                    if delta != 0 {
                        changes.push((i as u32, code_of(i) + delta));
                        stats.moved += 1;
                    }
                    stats.held += held as u64;
                    *e = next;
                }
            }
            (changes, stats)
        };
        let results: Vec<(Vec<(u32, i32)>, QesStats)> = match residual {
            Residual::Stored(tensors) => tensors[id]
                .par_chunks_mut(CHUNK)
                .enumerate()
                .map(|(c, e8)| {
                    let mut e = feedback::from_fixed(e8, RESIDUAL_STEP);
                    let out = chunk_step(c, &mut e);
                    if p.feedback {
                        feedback::into_fixed(&e, e8, RESIDUAL_STEP);
                    }
                    out
                })
                .collect(),
            Residual::Replay { .. } => (0..len.div_ceil(CHUNK))
                .into_par_iter()
                .map(|c| {
                    let mut e = vec![0.0f32; (len - c * CHUNK).min(CHUNK)];
                    chunk_step(c, &mut e)
                })
                .collect(),
        };
        for (changes, stats) in results {
            for (i, c) in changes {
                q.set_code(i as usize / k, i as usize % k, c);
            }
            total.moved += stats.moved;
            total.held += stats.held;
        }
    }
    if let Residual::Replay { window, steps, .. } = residual {
        steps.push_back(WindowStep {
            iteration: step.iteration,
            members: step.members.to_vec(),
            coefficients: step.coefficients.to_vec(),
        });
        while steps.len() > *window {
            steps.pop_front();
        }
    }
    Ok(total)
}

/// ‖θ − θ0‖ in real units between `store` and the `base` codes it started from (a moved code
/// moves its weight by d·Δc), per layer, kind and tensor; and how many codes differ, of how many.
pub fn code_drift(
    store: &QuantizedParams,
    base: &dyn BaseCodes,
) -> crate::error::Result<(super::drift::Drift, u64, u64)> {
    let layout = store.layout();
    let per: Vec<(f64, u64, u64)> = (0..layout.len())
        .into_par_iter()
        .map(|id| match store.stored(id) {
            Stored::Quant(q) => {
                let b = base.matrix(id)?;
                let changed = q.changed_codes(&b);
                let sq = changed
                    .iter()
                    .map(|&(r, i, c)| {
                        let d = q.scale_min(r, i / crate::kernels::quant_matrix::QK).0 as f64;
                        (d * (c - b.code(r, i)) as f64).powi(2)
                    })
                    .sum();
                Ok((sq, changed.len() as u64, (q.rows() * q.cols()) as u64))
            }
            Stored::F32(_) => Ok((0.0, 0, 0)),
        })
        .collect::<crate::error::Result<_>>()?;
    let drift = super::drift::from_squares(layout, per.iter().map(|p| p.0).collect());
    Ok((drift, per.iter().map(|p| p.1).sum(), per.iter().map(|p| p.2).sum()))
}

/// Codes per parallel chunk of the update: the noise's chunks.
const CHUNK: usize = super::code_noise::CHUNK as usize;

/// `x.round() as i32` (halves away from zero, saturating, NaN → 0) without the libm call that
/// `f32::round` is on baseline x86-64 (two per code and step: 13% of a QES iteration):
/// [`feedback::round_small`] below 2²³ (from there on every float is an integer, and the cast
/// saturates as `round` then `as` does).
fn round_to_i32(x: f32) -> i32 {
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x as i32;
    }
    feedback::round_small(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{QFormat, QMatrix};
    use crate::model::Layout;
    use std::sync::Arc;

    #[test]
    fn to_fixed_is_the_rounded_step_over_its_domain() {
        // Every float in [−1.5, 1.5] in steps of 2⁻²⁰ (the halfway points of the int8 grid among
        // them), the ends and NaN.
        let mut es: Vec<f32> = (-(3 << 19)..=(3 << 19)).map(|i| i as f32 / (1 << 20) as f32).collect();
        es.extend([RESIDUAL_MAX, -RESIDUAL_MAX, f32::NAN, -0.0, RESIDUAL_STEP * 0.5, -RESIDUAL_STEP * 0.5]);
        for e in es {
            let want = (e / RESIDUAL_STEP).round() as i32;
            assert_eq!(feedback::to_fixed(e, RESIDUAL_STEP) as i32, want.clamp(-127, 127), "e = {e:e}");
        }
    }

    #[test]
    fn round_to_i32_is_round_then_cast() {
        let mut xs =
            vec![0.5f32, -0.5, 1.5, -1.5, 2.5, 0.49999997, -0.49999997, 8_388_607.5, -8_388_607.5, 8_388_608.0];
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e9, -3e9, f32::MIN_POSITIVE, -0.0, 0.0]);
        // Every 1021st float over the whole range, both signs.
        xs.extend((0..u32::MAX / 1021).map(|i| f32::from_bits(i * 1021)));
        for x in xs {
            assert_eq!(round_to_i32(x), x.round() as i32, "x = {x:e} ({:#x})", x.to_bits());
        }
    }

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

    /// One step of `moves` with `coefficients` (members numbered in order).
    fn run_step(
        s: &mut QuantizedParams,
        e: &mut Residual,
        moves: &[Vec<CodeNoise>],
        coefficients: &[f32],
        p: &QesParams,
    ) -> QesStats {
        let members: Vec<Member> =
            (0..coefficients.len()).map(|i| Member { index: i, noise_id: i as u32, sign: 1.0 }).collect();
        apply(s, e, None, &Step { iteration: 0, members: &members, coefficients, moves }, p).unwrap()
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
        let p = QesParams { sigma: 0.01, alpha: 0.002, beta: 0.9, feedback: true, awd: Awd::None };
        let mut s = store();
        let mut e = Residual::Stored(vec![vec![0; 32 * 64], vec![]]);
        let mut steps = 0;
        while code(&s, 5) == 5 {
            run_step(&mut s, &mut e, &signal(), &[1.0], &p);
            steps += 1;
        }
        // e: 0.2, 0.38, 0.542 → crosses ½ on the 3rd step (int8 rounding of e shifts nothing here).
        assert_eq!((steps, code(&s, 5)), (3, 6));
        assert!((e.value(0, 5).unwrap() - (0.542 - 1.0)).abs() < 0.02, "{}", e.value(0, 5).unwrap());
        // No other code moved (their e decays from 0).
        assert!((0..32 * 64).filter(|&i| i != 5).all(|i| code(&s, i) == code(&store(), i)));

        let plain = QesParams { feedback: false, ..p };
        let mut s = store();
        let mut e = Residual::init(&s, 1, false);
        for _ in 0..100 {
            run_step(&mut s, &mut e, &signal(), &[1.0], &plain);
        }
        assert_eq!(code(&s, 5), 5, "round(0.2) = 0 forever: the vanishing update");
    }

    #[test]
    fn anti_windup_holds_codes_at_the_range_and_bounds_the_residual() {
        let p = QesParams { sigma: 0.01, alpha: 0.02, beta: 0.9, feedback: true, awd: Awd::None };
        let mut s = store();
        let mut e = Residual::Stored(vec![vec![0; 32 * 64], vec![]]);
        // Code 15 (row 0, i = 15) pushed up by α·ĝ = 2 per step: never moves, e saturates at 1.5.
        let push = vec![vec![CodeNoise { plus: vec![15], minus: vec![] }, CodeNoise::default()]];
        for _ in 0..5 {
            let st = run_step(&mut s, &mut e, &push, &[1.0], &p);
            assert_eq!(st, QesStats { moved: 0, held: 1 });
        }
        assert_eq!(code(&s, 15), 15);
        assert_eq!(e.value(0, 15).unwrap(), RESIDUAL_MAX);
    }

    #[test]
    fn the_update_does_not_depend_on_the_threads() {
        let p = QesParams { sigma: 0.01, alpha: 0.004, beta: 0.9, feedback: true, awd: Awd::None };
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
                    stats.push(run_step(&mut s, &mut e, &moves, &coeffs, &p));
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
        let vals: Vec<f32> = (0..32 * 64).map(|i| e0.value(0, i).unwrap()).collect();
        assert!(vals.iter().all(|v| v.abs() <= 0.5 + RESIDUAL_STEP));
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        assert!(mean.abs() < 0.03, "{mean}");
    }
}
