//! The two passes over θ that touch noise, both fused and parallel over fixed chunks:
//! - perturb: out = θ + σ·sign·ε (one read of θ, one write of out, no noise buffer of size d);
//! - update:  θ ← θ + (α/N)·Σₚ cₚ·εₚ, then AWD toward θ0, per element.
//!
//! For each block of θ (`BLOCK` elements, L1-resident) the update zeroes an accumulator, adds
//! cₚ·εₚ for every noise pass p in a fixed order, then writes θ once: one pass over memory for the
//! whole population. Each element's arithmetic is the same whatever the block or chunk
//! boundaries, so the result is bit-identical for any thread count: rayon only decides which
//! thread computes a chunk, never the order of any sum.
//!
//! In low-rank mode (`rank = Some(r)`) a matrix's εₚ is Aₚ·Bₚᵀ/√r from its factors
//! ([`crate::es::lowrank`]), accumulated row segment by row segment; other tensors keep εₚ.
//!
//! With `measure`, the update also sums (θ−θ0)² before the step, after the ES step and after the
//! decay (f64, per chunk, added in chunk order: the same bits for any thread count) and returns
//! the three norms: the drift budget's controller input ([`crate::es::budget`]).
//!
//! Passes are members grouped by noise id ([`crate::es::population::passes`]): a mirrored pair is
//! one pass with coefficient c⁺ − c⁻, still divided by the full N.

use rayon::prelude::*;

use crate::error::Result;
use crate::es::anchor::{pieces, Anchor};
use crate::es::awd::Rule;
use crate::es::budget::StepDrift;
use crate::es::lowrank::{is_matrix, Factors};
use crate::es::noise::{IterationNoise, NoiseKey};
use crate::es::population::Pass;
use crate::model::{Params, TensorInfo};

/// Elements per rayon task (a multiple of `BLOCK`).
pub const TASK: usize = 1 << 16;
/// Elements per L1-resident block (noise and accumulator buffers live on the stack).
pub const BLOCK: usize = 2048;

/// One contiguous chunk of one tensor of an arena.
struct Chunk<'a> {
    id: usize,
    info: &'a TensorInfo,
    /// First element of the chunk within its tensor.
    start: usize,
    data: &'a mut [f32],
}

/// The arena cut into chunks of at most `TASK` elements, tensor by tensor (or only tensor `only`).
fn chunks(p: &mut Params, only: Option<usize>) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    for (id, (info, data)) in p.tensors_mut().into_iter().enumerate() {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        for (k, data) in data.chunks_mut(TASK).enumerate() {
            out.push(Chunk { id, info, start: k * TASK, data });
        }
    }
    out
}

/// out = θ + s·ε_{noise_id}, s = σ·sign. `out` must have θ's layout.
pub fn perturb(theta: &Params, noise: &IterationNoise, noise_id: u32, s: f32, out: &mut Params) {
    let src = theta.data();
    chunks(out, None).into_par_iter().for_each(|c| {
        let key = noise.key(noise_id, c.id, &c.info.shape);
        let base = c.info.offset + c.start;
        let mut eps = [0.0f32; BLOCK];
        for (b, o) in c.data.chunks_mut(BLOCK).enumerate() {
            let n = o.len();
            let at = b * BLOCK;
            key.fill((c.start + at) as u64, &mut eps[..n]);
            let t = &src[base + at..base + at + n];
            for i in 0..n {
                o[i] = t[i] + s * eps[i];
            }
        }
    });
}

/// Each tensor's noise passes: (factors, cₚ/√r) per pass for a low-rank matrix, `None` for a
/// tensor whose noise is the plain stream εₚ.
type LowRankPasses = Vec<Option<Vec<(Factors, f32)>>>;

fn low_rank_passes(theta: &Params, noise: &IterationNoise, passes: &[Pass], rank: Option<usize>) -> LowRankPasses {
    let Some(r) = rank else { return vec![None; theta.layout().len()] };
    let c = 1.0 / (r as f32).sqrt();
    theta
        .layout()
        .tensors()
        .par_iter()
        .enumerate()
        .map(|(id, info)| {
            is_matrix(info).then(|| {
                passes
                    .iter()
                    .map(|p| {
                        let key = noise.key(p.noise_id, id, &info.shape);
                        (Factors::new(&key, info.shape[0], info.shape[1], r), p.coefficient * c)
                    })
                    .collect()
            })
        })
        .collect()
}

/// θ ← θ + scale·Σₚ cₚ·εₚ (scale = α/N), then the AWD `rule` toward θ0 (read from `anchor` only
/// when the rule is not `None`). `scratch` holds one θ0 tensor when the anchor is a source.
/// `rank` selects low-rank noise for matrices (see the module doc). With `measure` and a decay,
/// returns ‖θ−θ0‖ before, after the step and after the decay.
#[allow(clippy::too_many_arguments)]
pub fn update(
    theta: &mut Params,
    noise: &IterationNoise,
    passes: &[Pass],
    rank: Option<usize>,
    scale: f32,
    rule: Rule,
    anchor: &Anchor,
    scratch: &mut Vec<f32>,
    measure: bool,
) -> Result<Option<StepDrift>> {
    let lr = low_rank_passes(theta, noise, passes, rank);
    let lr = &lr;
    let mut sums: Vec<[f64; 3]> = Vec::new();
    match (rule, anchor) {
        (Rule::None, _) => {
            chunks(theta, None).into_par_iter().for_each(|c| {
                update_chunk(c, None, noise, passes, lr, scale, rule, false);
            });
            return Ok(None);
        }
        (_, Anchor::InMemory(theta0)) => {
            anchor.check_layout(theta.layout())?;
            let t0 = theta0.data();
            sums = chunks(theta, None)
                .into_par_iter()
                .map(|c| {
                    let at = c.info.offset + c.start;
                    let t0 = &t0[at..at + c.data.len()];
                    update_chunk(c, Some(t0), noise, passes, lr, scale, rule, measure)
                })
                .collect();
        }
        (_, Anchor::Source(_)) => {
            // One piece of θ0 at a time (whole rows, ≤ `PIECE` elements): read it, then update
            // that piece of θ in parallel. Scratch memory is one piece, not one tensor.
            let layout = theta.layout().clone();
            for (id, info) in layout.tensors().iter().enumerate() {
                let data = theta.tensor_mut(id);
                for r in pieces(&info.shape, info.len) {
                    let t0 = anchor.range(id, info.len, r.clone(), scratch)?;
                    let piece = &mut data[r.clone()];
                    let chunks: Vec<Chunk> = piece
                        .chunks_mut(TASK)
                        .enumerate()
                        .map(|(k, d)| Chunk { id, info, start: r.start + k * TASK, data: d })
                        .collect();
                    let piece_sums: Vec<[f64; 3]> = chunks
                        .into_par_iter()
                        .map(|c| {
                            let at = c.start - r.start;
                            let t0 = &t0[at..at + c.data.len()];
                            update_chunk(c, Some(t0), noise, passes, lr, scale, rule, measure)
                        })
                        .collect();
                    sums.extend(piece_sums);
                }
            }
        }
    }
    if !measure {
        return Ok(None);
    }
    let total = sums.iter().fold([0.0f64; 3], |a, s| [a[0] + s[0], a[1] + s[1], a[2] + s[2]]);
    Ok(Some(StepDrift { before: total[0].sqrt(), stepped: total[1].sqrt(), after: total[2].sqrt() }))
}

/// The fused kernel on one chunk: per block, acc = Σₚ cₚ·εₚ (f32, pass order), then
/// θ ← decay(θ + scale·acc, θ0). With `measure` (and θ0), returns Σ(θ−θ0)² before the step,
/// after it and after the decay.
#[allow(clippy::too_many_arguments)]
fn update_chunk(
    c: Chunk<'_>,
    theta0: Option<&[f32]>,
    noise: &IterationNoise,
    passes: &[Pass],
    lr: &LowRankPasses,
    scale: f32,
    rule: Rule,
    measure: bool,
) -> [f64; 3] {
    let mut sq = [0.0f64; 3];
    let factors = lr[c.id].as_deref();
    let keys: Vec<(NoiseKey, f32)> =
        passes.iter().map(|p| (noise.key(p.noise_id, c.id, &c.info.shape), p.coefficient)).collect();
    let mut acc = [0.0f32; BLOCK];
    let mut eps = [0.0f32; BLOCK];
    for (b, t) in c.data.chunks_mut(BLOCK).enumerate() {
        let n = t.len();
        let at = b * BLOCK;
        let acc = &mut acc[..n];
        acc.fill(0.0);
        match factors {
            Some(factors) => {
                // Element e of the tensor is (row e / K, column e % K); walk the block's row segments.
                let k = c.info.shape[1];
                let mut e = c.start + at;
                let mut done = 0;
                while done < n {
                    let (row, col) = (e / k, e % k);
                    let len = (k - col).min(n - done);
                    for (f, coef) in factors {
                        f.add_row_segment(*coef, row, col, &mut acc[done..done + len]);
                    }
                    e += len;
                    done += len;
                }
            }
            None => {
                for (key, coef) in &keys {
                    key.fill((c.start + at) as u64, &mut eps[..n]);
                    for i in 0..n {
                        acc[i] += coef * eps[i];
                    }
                }
            }
        }
        match (rule, theta0) {
            (Rule::None, _) | (_, None) => {
                for i in 0..n {
                    t[i] += scale * acc[i];
                }
            }
            (Rule::L2 { .. }, Some(t0)) | (Rule::L1 { .. }, Some(t0)) => {
                let t0 = &t0[at..at + n];
                if measure {
                    for i in 0..n {
                        let stepped = t[i] + scale * acc[i];
                        let after = rule.decay(stepped, t0[i]);
                        let d = [t[i] - t0[i], stepped - t0[i], after - t0[i]].map(|x| x as f64 * x as f64);
                        sq = [sq[0] + d[0], sq[1] + d[1], sq[2] + d[2]];
                        t[i] = after;
                    }
                } else {
                    for i in 0..n {
                        t[i] = rule.decay(t[i] + scale * acc[i], t0[i]);
                    }
                }
            }
        }
    }
    sq
}
