//! A QES population over one shared quantized store: member n's weights are the store's codes
//! moved by its sparse integer noise uₙ ([`super::code_noise`]), never materialised.
//!
//! A quantized weight is w = d·c + m (Q8_0, Q4_1) or d·(c − 8) (Q4_0), so moving code c by u moves
//! w by d·u. Group g of a batched forward (see [`crate::model::delta`]) is member g; after the
//! shared integer product, its rows receive
//!
//! ```text
//! y[t, r] += Σ_{k : u[r,k] ≠ 0} d[r, k/32]·u[r,k]·x[t, k]        (≈ 0.8% of the codes at σ = 0.01)
//! ```
//!
//! in a fixed order (the moves in increasing position), so a member's rows do not depend on the
//! batch or the threads. Vectors (norms) are not perturbed.

use rayon::prelude::*;

use super::code_noise::CodeNoise;
use super::noise::IterationNoise;
use super::population::Member;
use crate::kernels::quant_matrix::QFormat;
use crate::kernels::sparse_matmul::{sparse_add_matmuls, Reader, SparseProduct, POSITION};
use crate::kernels::QMatrix;
use crate::model::delta::WeightDelta;
use crate::model::weights::Stored;
use crate::model::{QuantizedParams, Weights};

/// The moves of one iteration, per drawn noise id and tensor (empty for f32 tensors): the +
/// member's ungated moves as (position | flags, d·u) in increasing position, which the mirrored −
/// member reads negated. Eight bytes per move and mirrored pair; each member reads its list through
/// a [`Reader`] that leaves out the moves its gating drops, so the forward reads its weight change
/// without a division or a scale lookup.
pub struct CodePopulation<'a> {
    store: &'a QuantizedParams,
    lists: Vec<Vec<Vec<(u32, f32)>>>,
    /// Member g reads `lists[readers[g].0]` through `readers[g].1`.
    readers: Vec<(usize, Reader)>,
}

/// Flag of a listed move: u = −1 for the + member.
const MINUS: u32 = 1 << 31;
/// Flag of a listed move: the + member's move would leave the code range (dropped).
const DROP_PLUS: u32 = 1 << 30;
/// Flag of a listed move: the mirrored − member's move would leave the code range (dropped).
const DROP_MINUS: u32 = 1 << 29;

/// How a member reads its noise id's list: the + member as listed, the − member negated, each
/// without the moves its gating drops.
fn reader(m: &Member) -> Reader {
    if m.sign < 0.0 {
        Reader { skip: DROP_MINUS, sign: 1 << 31 }
    } else {
        Reader { skip: DROP_PLUS, sign: 0 }
    }
}

/// Each distinct noise id of `members` (increasing) and its draw in every tensor (`None` for f32
/// tensors): a mirrored pair's positions are drawn, and the codes there looked up, once.
fn draw_ids(
    store: &QuantizedParams,
    noise: &IterationNoise,
    members: &[Member],
    sigma: f64,
) -> (Vec<u32>, Vec<Vec<Option<Drawn>>>) {
    let layout = store.layout();
    let mut ids: Vec<u32> = members.iter().map(|m| m.noise_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let drawn = ids
        .par_iter()
        .map(|&noise_id| {
            layout
                .tensors()
                .iter()
                .enumerate()
                .map(|(id, info)| match store.stored(id) {
                    Stored::Quant(q) => Some(Drawn::new(q, noise, noise_id, id, &info.shape, sigma)),
                    Stored::F32(_) => None,
                })
                .collect()
        })
        .collect();
    (ids, drawn)
}

/// Every member's moves (`[member][tensor]`, empty for f32 tensors) of one iteration, as the
/// update and a replay need them (no forward, so no signed lists). Mirrored members share their
/// positions with opposite moves, so each noise id's positions are drawn, and the codes there
/// looked up, once; then each member gates its own moves (the same moves as [`member_moves`]).
pub fn draw_moves(
    store: &QuantizedParams,
    noise: &IterationNoise,
    members: &[Member],
    sigma: f64,
) -> Vec<Vec<CodeNoise>> {
    let (ids, drawn) = draw_ids(store, noise, members, sigma);
    members
        .par_iter()
        .map(|m| {
            let tensors = &drawn[ids.binary_search(&m.noise_id).expect("every member's id was drawn")];
            tensors
                .iter()
                .enumerate()
                .map(|(id, d)| match (d, store.stored(id)) {
                    (Some(d), Stored::Quant(q)) => d.gated(m.sign < 0.0, q.format()),
                    _ => CodeNoise::default(),
                })
                .collect()
        })
        .collect()
}

/// The ungated moves of the + member of a noise id in one matrix, with the codes at their
/// positions (every format's codes fit in an i8).
struct Drawn {
    u: CodeNoise,
    plus_codes: Vec<i8>,
    minus_codes: Vec<i8>,
}

impl Drawn {
    fn new(q: &QMatrix, noise: &IterationNoise, noise_id: u32, id: usize, shape: &[usize], sigma: f64) -> Drawn {
        let u = CodeNoise::draw(&noise.key(noise_id, id, shape), q.rows() * q.cols(), sigma, 1);
        Drawn { plus_codes: q.codes_at(&u.plus), minus_codes: q.codes_at(&u.minus), u }
    }

    /// The gated moves of the + member, or of the mirrored − member.
    fn gated(&self, mirrored: bool, f: QFormat) -> CodeNoise {
        self.u.gated(mirrored, &self.plus_codes, &self.minus_codes, f.min_code(), f.max_code())
    }

    /// The + member's moves as one list in increasing position: (position, with [`MINUS`] where
    /// u = −1 and [`DROP_PLUS`] / [`DROP_MINUS`] where the + / − member's move would leave the
    /// code range (a +1 needs a code below the top, a −1 one above the bottom); d·u), the scales
    /// looked up once for both members ([`QMatrix::scales_at`]).
    fn listed(&self, q: &QMatrix) -> Vec<(u32, f32)> {
        assert!(q.rows() * q.cols() <= POSITION as usize + 1, "a matrix of {} codes", q.rows() * q.cols());
        let (lo, hi) = (q.format().min_code(), q.format().max_code());
        let flags = |minus: bool, c: i8| {
            let (up_ok, down_ok) = (i32::from(c) < hi, i32::from(c) > lo);
            let (plus_ok, minus_ok) = if minus { (down_ok, up_ok) } else { (up_ok, down_ok) };
            (if minus { MINUS } else { 0 })
                | (if plus_ok { 0 } else { DROP_PLUS })
                | (if minus_ok { 0 } else { DROP_MINUS })
        };
        let mut merged = Vec::with_capacity(self.u.len());
        let (mut p, mut m) = (
            self.u.plus.iter().zip(&self.plus_codes).peekable(),
            self.u.minus.iter().zip(&self.minus_codes).peekable(),
        );
        loop {
            merged.push(match (p.peek(), m.peek()) {
                (Some(&(&a, _)), Some(&(&b, _))) if a < b => p.next().map(|(&i, &c)| i | flags(false, c)).unwrap(),
                (_, Some(_)) => m.next().map(|(&i, &c)| i | flags(true, c)).unwrap(),
                (Some(_), None) => p.next().map(|(&i, &c)| i | flags(false, c)).unwrap(),
                (None, None) => break,
            });
        }
        let positions: Vec<u32> = merged.iter().map(|&i| i & POSITION).collect();
        let d = q.scales_at(&positions);
        merged.into_iter().zip(d).map(|(i, d)| (i, if i & MINUS != 0 { -d } else { d })).collect()
    }
}

/// The moves a reader takes from a list, as plus and minus positions (a − member's moves are
/// the listed ones reversed).
fn code_noise(w: &[(u32, f32)], reader: Reader) -> CodeNoise {
    let mut u = CodeNoise::default();
    let reversed = if reader.sign != 0 { MINUS } else { 0 };
    for &(i, _) in w.iter().filter(|&&(i, _)| i & reader.skip == 0) {
        if (i ^ reversed) & MINUS == 0 {
            u.plus.push(i & POSITION);
        } else {
            u.minus.push(i & POSITION);
        }
    }
    u
}

/// Member `m`'s moves of matrix `q` (tensor `id` of shape `shape`) at noise scale σ: drawn from
/// the stream of (`noise`, m's noise id, `id`), the opposite moves for a mirrored member, and
/// the moves that would take a code outside its range dropped. `chunk` limits them to one chunk
/// of [`super::code_noise::CHUNK`] codes (the same moves as in the whole tensor's).
pub fn member_moves(
    q: &QMatrix,
    noise: &IterationNoise,
    m: &Member,
    id: usize,
    shape: &[usize],
    sigma: f64,
    chunk: Option<u64>,
) -> CodeNoise {
    let key = noise.key(m.noise_id, id, shape);
    let (len, sign) = (q.rows() * q.cols(), if m.sign < 0.0 { -1 } else { 1 });
    let u = match chunk {
        None => CodeNoise::draw(&key, len, sigma, sign),
        Some(c) => {
            let mut u = CodeNoise::default();
            u.draw_chunk(&key, len, sigma, sign, c);
            u
        }
    };
    let f = q.format();
    u.gated(false, &q.codes_at(&u.plus), &q.codes_at(&u.minus), f.min_code(), f.max_code())
}

impl<'a> CodePopulation<'a> {
    /// Draws the moves of `members` for one iteration at noise scale σ (code units): member n's
    /// tensor i uses the stream of (`noise`, its noise id, i), mirrored members the opposite
    /// moves; moves that would leave the code range are dropped.
    pub fn new(store: &'a QuantizedParams, noise: &IterationNoise, members: &[Member], sigma: f64) -> Self {
        let (ids, drawn) = draw_ids(store, noise, members, sigma);
        let lists = drawn
            .into_par_iter()
            .map(|tensors| {
                tensors
                    .iter()
                    .enumerate()
                    .map(|(id, d)| match (d, store.stored(id)) {
                        (Some(d), Stored::Quant(q)) => d.listed(q),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let readers = members
            .iter()
            .map(|m| (ids.binary_search(&m.noise_id).expect("every member's id was drawn"), reader(m)))
            .collect();
        CodePopulation { store, lists, readers }
    }

    /// Every member's moves (`[member][tensor]`), for the update once the evaluation is done
    /// ([`super::qes::apply`]).
    /// A pair's list is dropped once both members have theirs, so the lists and the moves are
    /// not held whole at once.
    pub fn into_moves(self) -> Vec<Vec<CodeNoise>> {
        let readers = &self.readers;
        let read: Vec<Vec<(usize, Vec<CodeNoise>)>> = self
            .lists
            .into_par_iter()
            .enumerate()
            .map(|(l, list)| {
                let mine = readers.iter().enumerate().filter(|(_, &(of, _))| of == l);
                mine.map(|(g, &(_, r))| (g, list.par_iter().map(|w| code_noise(w, r)).collect())).collect()
            })
            .collect();
        let mut moves: Vec<Vec<CodeNoise>> = vec![Vec::new(); readers.len()];
        for (g, m) in read.into_iter().flatten() {
            moves[g] = m;
        }
        moves
    }

    /// Member g's moves of tensor `id`.
    pub fn moves(&self, group: usize, id: usize) -> CodeNoise {
        let (l, r) = self.readers[group];
        code_noise(&self.lists[l][id], r)
    }

    /// Member g's list of tensor `id` and how it reads it.
    fn list(&self, group: usize, id: usize) -> (&[(u32, f32)], Reader) {
        let (l, r) = self.readers[group];
        (&self.lists[l][id], r)
    }

    /// Member g's weights materialised: a copy of the store with its codes moved (the plain
    /// path the batched one is tested against).
    pub fn materialize(&self, group: usize) -> QuantizedParams {
        let layout = self.store.layout().clone();
        let tensors = (0..layout.len())
            .map(|id| match self.store.stored(id) {
                Stored::Quant(q) => {
                    let mut q = q.clone();
                    let k = q.cols();
                    let u = self.moves(group, id);
                    for (list, step) in [(&u.plus, 1), (&u.minus, -1)] {
                        for &i in list {
                            let (r, kk) = (i as usize / k, i as usize % k);
                            let c = q.code(r, kk);
                            q.set_code(r, kk, c + step);
                        }
                    }
                    Stored::Quant(q)
                }
                Stored::F32(v) => Stored::F32(v.clone()),
            })
            .collect();
        QuantizedParams::new(layout, tensors)
    }

    fn matrix(&self, id: usize) -> Option<&QMatrix> {
        match self.store.stored(id) {
            Stored::Quant(q) => Some(q),
            Stored::F32(_) => None,
        }
    }
}

impl WeightDelta for CodePopulation<'_> {
    /// y[t, r] += (d·u)·x[t, k] over the member's moves in increasing index (row-major): the
    /// kernel [`sparse_add_matmuls`], reading the shared list through the member's [`Reader`].
    fn add_matmul(&self, tensor: usize, group: usize, x: &[f32], y: &mut [f32]) {
        self.add_matmuls(group, x, &mut [(tensor, y)]);
    }

    /// [`WeightDelta::add_matmul`] for each product, each block of x transposed once for all.
    fn add_matmuls(&self, group: usize, x: &[f32], products: &mut [(usize, &mut [f32])]) {
        let mut sparse = Vec::with_capacity(products.len());
        let mut k = 0;
        for (tensor, y) in products.iter_mut() {
            let (nonzeros, reader) = self.list(group, *tensor);
            if let Some(q) = self.matrix(*tensor).filter(|_| !nonzeros.is_empty()) {
                k = q.cols();
                sparse.push(SparseProduct { nonzeros, reader, o: q.rows(), y });
            }
        }
        if !sparse.is_empty() {
            sparse_add_matmuls(k, x, &mut sparse);
        }
    }

    fn add_row(&self, tensor: usize, group: usize, row: usize, out: &mut [f32]) {
        let (w, r) = self.list(group, tensor);
        let Some(q) = self.matrix(tensor).filter(|_| !w.is_empty()) else { return };
        let k = q.cols();
        let (lo, hi) = ((row * k) as u32, ((row + 1) * k) as u32);
        let from = w.partition_point(|&(i, _)| i & POSITION < lo);
        for &nonzero in w[from..].iter().take_while(|&&(i, _)| i & POSITION < hi) {
            if let Some((i, c)) = r.take(nonzero) {
                out[i - lo as usize] += c;
            }
        }
    }

    fn vector(&self, _tensor: usize, _group: usize) -> Option<&[f32]> {
        None
    }

    fn groups(&self) -> usize {
        self.readers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::noise::NoiseMode;
    use crate::kernels::{QFormat, QMatrix};
    use crate::model::Layout;
    use std::sync::Arc;

    /// A one-matrix store (Q4_1, 40 × 96) with codes spread over the whole range.
    fn store() -> QuantizedParams {
        let mut l = Layout::new();
        l.push("model.layers.0.mlp.up_proj.weight", vec![40, 96]);
        let q = QMatrix::from_rows(QFormat::Q4_1, 40, 96, |r, c, d, m| {
            for (i, c) in c.iter_mut().enumerate() {
                *c = ((r * 7 + i * 3) % 16) as u8;
            }
            d.iter_mut()
                .enumerate()
                .for_each(|(b, d)| *d = half::f16::from_f32(0.01 + 0.001 * (r + b) as f32).to_bits());
            m.fill(half::f16::from_f32(-0.05).to_bits());
        });
        QuantizedParams::new(Arc::new(l), vec![Stored::Quant(q)])
    }

    fn members() -> Vec<Member> {
        vec![
            Member { index: 0, noise_id: 0, sign: 1.0 },
            Member { index: 1, noise_id: 0, sign: -1.0 },
            Member { index: 2, noise_id: 1, sign: 1.0 },
        ]
    }

    /// Drawing each noise id once for a mirrored pair gives every member exactly its own moves.
    #[test]
    fn shared_draws_equal_each_members_own() {
        let s = store();
        let noise = IterationNoise { seed: 9, iteration: 4, mode: NoiseMode::Iid };
        let Stored::Quant(q) = s.stored(0) else { unreachable!() };
        let mut ms = members();
        ms.push(Member { index: 3, noise_id: 1, sign: -1.0 });
        ms.push(Member { index: 4, noise_id: 7, sign: -1.0 });
        let all = draw_moves(&s, &noise, &ms, 0.1);
        for (m, got) in ms.iter().zip(&all) {
            let want = member_moves(q, &noise, m, 0, &[40, 96], 0.1, None);
            assert!(want.len() > 100, "{} moves", want.len());
            assert_eq!(got[0], want, "member {}", m.index);
        }
    }

    /// Each member reads from its pair's shared list exactly the moves drawn for it alone: the
    /// + member as listed, the − member reversed, each without the moves its gating drops.
    #[test]
    fn shared_lists_read_each_members_own_moves() {
        let s = store();
        let noise = IterationNoise { seed: 3, iteration: 1, mode: NoiseMode::Iid };
        let mut ms = members();
        ms.push(Member { index: 3, noise_id: 1, sign: -1.0 });
        let pop = CodePopulation::new(&s, &noise, &ms, 0.1);
        let all = draw_moves(&s, &noise, &ms, 0.1);
        let (mut dropped, mut listed) = (0, 0);
        for (g, want) in all.iter().enumerate() {
            assert_eq!(pop.moves(g, 0), want[0], "member {g}");
            let (w, _) = pop.list(g, 0);
            listed += w.len();
            dropped += w.len() - want[0].len();
        }
        // The store's codes reach both ends of the range, so some moves are gated off.
        assert!(dropped > 0 && dropped < listed / 4, "{dropped} of {listed}");
        assert_eq!(pop.into_moves(), all);
    }

    /// The sparse correction equals the dense product with the decoded weight change, and the
    /// moves respect the code range.
    #[test]
    fn correction_is_the_product_with_the_decoded_move() {
        let s = store();
        let noise = IterationNoise { seed: 5, iteration: 2, mode: NoiseMode::Iid };
        // A large σ so that this small matrix gets a few hundred moves.
        let pop = CodePopulation::new(&s, &noise, &members(), 0.1);
        let Stored::Quant(q) = s.stored(0) else { unreachable!() };
        let (o, k, t) = (40, 96, 3);
        let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        for g in 0..3 {
            let u = pop.moves(g, 0);
            assert!(u.len() > 100, "{} moves", u.len());
            let mut delta = vec![0.0f64; o * k];
            for &i in &u.plus {
                assert!(q.code(i as usize / k, i as usize % k) < 15);
                delta[i as usize] += q.scale_min(i as usize / k, (i as usize % k) / 32).0 as f64;
            }
            for &i in &u.minus {
                assert!(q.code(i as usize / k, i as usize % k) > 0);
                delta[i as usize] -= q.scale_min(i as usize / k, (i as usize % k) / 32).0 as f64;
            }
            let mut y = vec![0.0f32; t * o];
            pop.add_matmul(0, g, &x, &mut y);
            for ti in 0..t {
                for r in 0..o {
                    let want: f64 = (0..k).map(|kk| delta[r * k + kk] * x[ti * k + kk] as f64).sum();
                    assert!((y[ti * o + r] as f64 - want).abs() < 1e-5, "g{g} ({ti},{r})");
                }
            }
            let mut row = vec![0.0f32; k];
            pop.add_row(0, g, 7, &mut row);
            for kk in 0..k {
                assert!((row[kk] as f64 - delta[7 * k + kk]).abs() < 1e-7);
            }
        }
        // Mirrored members move the same codes the other way (where both directions are in range).
        let (a, b) = (pop.moves(0, 0), pop.moves(1, 0));
        assert!(a.plus.iter().all(|i| b.minus.contains(i) || q.code(*i as usize / k, *i as usize % k) == 0));
    }

    /// Blocks of rows give every row the bits it gets alone (70 rows: blocks of 32, 32, 6).
    #[test]
    fn the_correction_of_a_row_does_not_depend_on_the_batch() {
        let s = store();
        let noise = IterationNoise { seed: 9, iteration: 0, mode: NoiseMode::Iid };
        let pop = CodePopulation::new(&s, &noise, &members(), 0.1);
        let (o, k, t) = (40, 96, 70);
        let x: Vec<f32> = (0..t * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 7.0).collect();
        let y0: Vec<f32> = (0..t * o).map(|i| ((i * 31 % 89) as f32 - 44.0) / 3.0).collect();
        let mut all = y0.clone();
        pop.add_matmul(0, 2, &x, &mut all);
        for r in 0..t {
            let mut one = y0[r * o..(r + 1) * o].to_vec();
            pop.add_matmul(0, 2, &x[r * k..(r + 1) * k], &mut one);
            assert!(one.iter().zip(&all[r * o..(r + 1) * o]).all(|(a, b)| a.to_bits() == b.to_bits()), "row {r}");
        }
        assert_ne!(all, y0);
    }
}
