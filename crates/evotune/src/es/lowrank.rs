//! Low-rank perturbations (EGGROLL): member n perturbs each matrix W (O×K) by σ·sign/√r·A_n·B_nᵀ
//! instead of σ·sign·ε_n, with A_n (O×r) and B_n (K×r) standard normal from the counter RNG.
//!
//! ```text
//! E_n      = A_n·B_nᵀ / √r            each entry has mean 0 and variance 1, like ε_n
//! forward:   y = x·Wᵀ + (σ·sign/√r)·(x·B_n)·A_nᵀ   per member's rows; W shared by all members
//! update:    W ← W + (α/N)·Σₙ cₙ·signₙ·A_n·B_nᵀ/√r,  then AWD as in full rank
//! ```
//! Vectors (norm weights, biases) and any tensor with a dimension of 1 get full-rank noise ε_n,
//! exactly as in full-rank mode. The factors of member n and tensor t are the first (O+K)·r
//! elements of the noise stream keyed by (seed, iteration, noise id, t): A is stored transposed
//! as `a` (r, O) = ε[0 .. rO] and B as `b` (r, K) = ε[rO .. r(O+K)]. A member's factors for the
//! whole model take (Σ O+K)·r floats (≈ 0.36 M·r for the 135M model), so the population is
//! evaluated in one batch with a single copy of the weights.

use rayon::prelude::*;

use crate::es::noise::{IterationNoise, NoiseKey};
use crate::es::population::Member;
use crate::kernels;
use crate::model::delta::WeightDelta;
use crate::model::{Params, TensorInfo};

/// What a member's perturbation of a matrix is: full-rank ε, or σ/√r·A·Bᵀ (EGGROLL, see
/// [`crate::es::lowrank`]). Vectors get full-rank noise in both modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Perturbation {
    #[default]
    Full,
    LowRank {
        rank: usize,
    },
}

impl Perturbation {
    /// The rank r in low-rank mode.
    pub fn rank(self) -> Option<usize> {
        match self {
            Perturbation::Full => None,
            Perturbation::LowRank { rank } => Some(rank),
        }
    }

    /// The perturbation of `kind`; `rank` is read only for low rank.
    pub fn new(kind: PerturbationKind, rank: usize) -> Self {
        match kind {
            PerturbationKind::Full => Perturbation::Full,
            PerturbationKind::Lowrank => Perturbation::LowRank { rank },
        }
    }
}

/// The kind of [`Perturbation`], as a config key and flag: `full` or `lowrank` (with `rank`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerturbationKind {
    #[default]
    Full,
    Lowrank,
}
from_str_by_serde!(PerturbationKind);

/// r when a config does not say: rank-1 perturbations, as EGGROLL's default.
pub const DEFAULT_RANK: usize = 1;

/// Whether `info` is perturbed through low-rank factors: a 2-D tensor with both dimensions > 1.
pub fn is_matrix(info: &TensorInfo) -> bool {
    info.shape.len() == 2 && info.shape[0] > 1 && info.shape[1] > 1
}

/// A_n and B_n of one member and one matrix, stored transposed: `a` (r, O), `b` (r, K).
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    pub rank: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl Factors {
    /// The factors of stream `key` for an (O, K) matrix.
    pub fn new(key: &NoiseKey, o: usize, k: usize, rank: usize) -> Factors {
        let mut ab = vec![0.0f32; rank * (o + k)];
        key.fill(0, &mut ab);
        let b = ab.split_off(rank * o);
        Factors { rank, a: ab, b }
    }

    fn rows(&self) -> usize {
        self.a.len() / self.rank
    }

    fn cols(&self) -> usize {
        self.b.len() / self.rank
    }

    /// acc[i] += c·Σⱼ a[j, row]·b[j, k0 + i]: a segment of row `row` of c·A·Bᵀ (j in order).
    pub fn add_row_segment(&self, c: f32, row: usize, k0: usize, acc: &mut [f32]) {
        let (o, k) = (self.rows(), self.cols());
        for j in 0..self.rank {
            let w = c * self.a[j * o + row];
            let b = &self.b[j * k + k0..j * k + k0 + acc.len()];
            for (s, &bv) in acc.iter_mut().zip(b) {
                *s += w * bv;
            }
        }
    }

    /// y += c·(x·B)·Aᵀ for rows x (R, K), y (R, O): per row, tⱼ = x·b[j] then y += c·tⱼ·a[j].
    pub fn add_matmul(&self, c: f32, x: &[f32], y: &mut [f32]) {
        let (o, k) = (self.rows(), self.cols());
        for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(o)) {
            for j in 0..self.rank {
                let t = c * kernels::dot(xr, &self.b[j * k..(j + 1) * k]);
                for (yv, &av) in yr.iter_mut().zip(&self.a[j * o..(j + 1) * o]) {
                    *yv += t * av;
                }
            }
        }
    }
}

/// One member's perturbation of every tensor: factors for matrices, the perturbed value of
/// every other tensor.
#[derive(Clone, Debug)]
struct MemberDelta {
    /// σ·sign/√r.
    scale: f32,
    factors: Vec<Option<Factors>>,
    vectors: Vec<Option<Vec<f32>>>,
}

/// The low-rank perturbations of a set of members around θ: group g of a batched forward is
/// member `members[g]`. Implements [`WeightDelta`], so one forward evaluates them all.
#[derive(Clone, Debug)]
pub struct LowRankPopulation {
    members: Vec<MemberDelta>,
}

impl LowRankPopulation {
    /// Factors and perturbed vectors of `members` at θ for one iteration's noise.
    pub fn new(theta: &Params, noise: &IterationNoise, members: &[Member], sigma: f32, rank: usize) -> Self {
        let layout = theta.layout();
        let members = members
            .par_iter()
            .map(|m| {
                let s = sigma * m.sign;
                let (factors, vectors) = layout
                    .tensors()
                    .iter()
                    .enumerate()
                    .map(|(id, info)| {
                        let key = noise.key(m.noise_id, id, &info.shape);
                        if is_matrix(info) {
                            (Some(Factors::new(&key, info.shape[0], info.shape[1], rank)), None)
                        } else {
                            let mut v = vec![0.0f32; info.len];
                            key.fill(0, &mut v);
                            for (e, &t) in v.iter_mut().zip(theta.tensor(id)) {
                                *e = t + s * *e;
                            }
                            (None, Some(v))
                        }
                    })
                    .unzip();
                MemberDelta { scale: s / (rank as f32).sqrt(), factors, vectors }
            })
            .collect();
        LowRankPopulation { members }
    }
}

impl WeightDelta for LowRankPopulation {
    fn add_matmul(&self, tensor: usize, group: usize, x: &[f32], y: &mut [f32]) {
        let m = &self.members[group];
        if let Some(f) = &m.factors[tensor] {
            f.add_matmul(m.scale, x, y);
        }
    }

    fn add_row(&self, tensor: usize, group: usize, row: usize, out: &mut [f32]) {
        let m = &self.members[group];
        if let Some(f) = &m.factors[tensor] {
            f.add_row_segment(m.scale, row, 0, out);
        }
    }

    fn vector(&self, tensor: usize, group: usize) -> Option<&[f32]> {
        self.members[group].vectors[tensor].as_deref()
    }

    fn groups(&self) -> usize {
        self.members.len()
    }
}

/// out = θ + σ·sign·E_member, materialised (the plain path the batched one is tested against).
pub fn perturb_dense(
    theta: &Params,
    noise: &IterationNoise,
    member: &Member,
    sigma: f32,
    rank: usize,
    out: &mut Params,
) {
    let s = sigma * member.sign;
    let c = s / (rank as f32).sqrt();
    let src = theta.data();
    out.tensors_mut().into_par_iter().enumerate().for_each(|(id, (info, data))| {
        let key = noise.key(member.noise_id, id, &info.shape);
        let t = &src[info.offset..info.offset + info.len];
        if is_matrix(info) {
            let k = info.shape[1];
            let f = Factors::new(&key, info.shape[0], k, rank);
            for (row, (o, t)) in data.chunks_exact_mut(k).zip(t.chunks_exact(k)).enumerate() {
                o.fill(0.0);
                f.add_row_segment(c, row, 0, o);
                for (a, &b) in o.iter_mut().zip(t) {
                    *a += b;
                }
            }
        } else {
            key.fill(0, data);
            for (e, &b) in data.iter_mut().zip(t) {
                *e = b + s * *e;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::noise::NoiseMode;
    use crate::model::Layout;
    use std::sync::Arc;

    fn layout() -> Arc<Layout> {
        let mut l = Layout::new();
        l.push("w", vec![5, 3]);
        l.push("norm", vec![3]);
        l.push("row", vec![1, 4]);
        Arc::new(l)
    }

    fn theta() -> Params {
        let mut p = Params::zeros(layout());
        for (i, v) in p.data_mut().iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        p
    }

    const NOISE: IterationNoise = IterationNoise { seed: 3, iteration: 2, mode: NoiseMode::Iid };

    #[test]
    fn batched_correction_equals_the_dense_perturbation() {
        let th = theta();
        let members = [Member { index: 0, noise_id: 0, sign: 1.0 }, Member { index: 1, noise_id: 0, sign: -1.0 }];
        let (sigma, rank) = (0.1, 2);
        let pop = LowRankPopulation::new(&th, &NOISE, &members, sigma, rank);
        let x = [0.5f32, -1.0, 2.0, 0.25, 0.75, -0.5]; // (2, 3)
        for (g, m) in members.iter().enumerate() {
            let mut dense = Params::zeros(layout());
            perturb_dense(&th, &NOISE, m, sigma, rank, &mut dense);
            // y = x·(W+ΔW)ᵀ densely vs x·Wᵀ + correction.
            let (w, wd) = (th.tensor(0), dense.tensor(0));
            let mut y = vec![0.0f32; 10];
            let mut yd = vec![0.0f32; 10];
            kernels::reference::matmul(&x, w, &mut y, 2, 3, 5);
            kernels::reference::matmul(&x, wd, &mut yd, 2, 3, 5);
            pop.add_matmul(0, g, &x, &mut y);
            for (a, b) in y.iter().zip(&yd) {
                assert!((a - b).abs() < 1e-5, "group {g}: {a} vs {b}");
            }
            // Embedding rows and vectors.
            for row in 0..5 {
                let mut r = w[row * 3..row * 3 + 3].to_vec();
                pop.add_row(0, g, row, &mut r);
                for (a, b) in r.iter().zip(&wd[row * 3..row * 3 + 3]) {
                    assert!((a - b).abs() < 1e-6);
                }
            }
            assert_eq!(pop.vector(1, g).unwrap(), dense.tensor(1), "vectors get the full-rank value");
            assert_eq!(pop.vector(2, g).unwrap(), dense.tensor(2), "a 1×n tensor is a vector");
        }
        // Opposite signs: the two members' perturbations cancel.
        let mut plus = Params::zeros(layout());
        let mut minus = Params::zeros(layout());
        perturb_dense(&th, &NOISE, &members[0], sigma, rank, &mut plus);
        perturb_dense(&th, &NOISE, &members[1], sigma, rank, &mut minus);
        for ((p, m), t) in plus.data().iter().zip(minus.data()).zip(th.data()) {
            assert!((p + m - 2.0 * t).abs() < 1e-6);
        }
    }

    #[test]
    fn the_perturbation_has_unit_variance_per_entry() {
        // E = A·Bᵀ/√r over a 200×200 matrix: mean ≈ 0, variance ≈ 1 for r = 1 and 4.
        for rank in [1, 4] {
            let key = NOISE.key(7, 0, &[200, 200]);
            let f = Factors::new(&key, 200, 200, rank);
            let c = 1.0 / (rank as f32).sqrt();
            let (mut sum, mut sq) = (0.0f64, 0.0f64);
            let mut row = vec![0.0f32; 200];
            for o in 0..200 {
                row.fill(0.0);
                f.add_row_segment(c, o, 0, &mut row);
                sum += row.iter().map(|&v| v as f64).sum::<f64>();
                sq += row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
            }
            let n = 40_000.0;
            let (mean, var) = (sum / n, sq / n - (sum / n).powi(2));
            assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.2, "rank {rank}: mean {mean}, var {var}");
        }
    }
}
