//! y += x·Sᵀ for a sparse S (O × K) given as its nonzeros in increasing row-major index: the
//! weight changes of QES members (`es::code_population`), a few per thousand weights. A list may
//! be shared by several readers (a mirrored pair of members): each takes it through a [`Reader`],
//! which leaves out the nonzeros carrying its flag and may negate every value (exactly).
//!
//! For each nonzero (i = r·K + k, c) a reader takes, in order, y[t, r] += c·x[t, k] for every row t: a multiply
//! and an add, each rounded, so every element of y receives the same operations in the same order
//! whatever the blocking, and every level computes the same bits. The rows run in blocks of
//! [`ROW_BLOCK`]: the block of x is transposed (x[:, k] contiguous), and the columns of y that
//! nonzeros touch are gathered [`COL_CHUNK`] at a time into a transposed chunk in L1, so that each
//! nonzero is one vector update of a chunk row by an x column. The body is compiled once per SIMD
//! level (`avx2.rs`, `avx512.rs`), where a block row of 16 is one or two registers.

use super::row_of::RowOf;
use super::{simd_level, transpose, Level};

/// Rows of x corrected together: the transposed block (K floats per row, ≤ 393 KB) stays in L2,
/// and each nonzero's bookkeeping is paid once per 64 rows (a QES member's prefill).
const ROW_BLOCK: usize = 64;

/// Columns of y gathered together: a chunk of the block's y is ≤ 16 KB, in L1, however wide y is
/// (lm_head's 49152 columns).
const COL_CHUNK: usize = 64;

/// Rows of a block updated together in registers (the transposed blocks are padded to a multiple).
const LANES: usize = 16;

/// Lanes of the widest transposed block.
const MAX_BP: usize = ROW_BLOCK.next_multiple_of(LANES);

/// The bits of an index that hold its position r·K + k; the top three are the caller's flags.
pub const POSITION: u32 = (1 << 29) - 1;

/// How one reader takes a shared list of nonzeros: it leaves out those whose index has a bit of
/// `skip`, and xors every value's sign bit with `sign` (0, or `1 << 31` for the exact negation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reader {
    pub skip: u32,
    pub sign: u32,
}

impl Reader {
    /// Every nonzero, as it is.
    pub const ALL: Reader = Reader { skip: 0, sign: 0 };

    /// The position and value of `nonzero` as this reader sees it, and whether it takes it.
    #[inline(always)]
    pub fn read(self, (i, c): (u32, f32)) -> (usize, f32, bool) {
        ((i & POSITION) as usize, f32::from_bits(c.to_bits() ^ self.sign), i & self.skip == 0)
    }

    /// The position and value this reader takes from `nonzero`, if it takes it.
    #[inline(always)]
    pub fn take(self, nonzero: (u32, f32)) -> Option<(usize, f32)> {
        let (i, c, taken) = self.read(nonzero);
        taken.then_some((i, c))
    }
}

thread_local! {
    /// The transposed block of x, reused across calls (≤ 393 KB: K ≤ 1536 by 64 rows).
    static XT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One product of [`sparse_add_matmuls`]: y (T, O) += x·Sᵀ for S given by the `nonzeros` that
/// `reader` takes (index r·K + k in [`POSITION`], flags above; value), in increasing index.
pub struct SparseProduct<'a> {
    pub nonzeros: &'a [(u32, f32)],
    pub reader: Reader,
    pub o: usize,
    pub y: &'a mut [f32],
}

/// y (T, O) += x (T, K)·Sᵀ for S given by the `nonzeros` that `reader` takes (index r·K + k in
/// [`POSITION`], flags above; value), in increasing index.
///
/// # Panics
/// If the shapes disagree or an index lies outside O × K (a programming error).
pub fn sparse_add_matmul(nonzeros: &[(u32, f32)], reader: Reader, k: usize, o: usize, x: &[f32], y: &mut [f32]) {
    sparse_add_matmuls(k, x, &mut [SparseProduct { nonzeros, reader, o, y }])
}

/// [`sparse_add_matmul`] for several matrices of the same input x (q, k, v; gate, up): each block
/// of x is transposed once for all of them. Each y receives the same operations as alone.
///
/// # Panics
/// If the shapes disagree or an index lies outside O × K (a programming error).
pub fn sparse_add_matmuls(k: usize, x: &[f32], products: &mut [SparseProduct<'_>]) {
    assert!(
        k > 0 && x.len().is_multiple_of(k) && products.iter().all(|p| p.y.len() == x.len() / k * p.o),
        "sparse_add_matmul: shapes disagree"
    );
    match simd_level() {
        // SAFETY (both arms): `simd_level` returns only levels this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { super::avx512::sparse_add_matmuls_avx512(k, x, products) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => unsafe { super::avx2::sparse_add_matmuls_avx2(k, x, products) },
        _ => sparse_add_matmuls_plain(k, x, products),
    }
}

/// [`sparse_add_matmuls`]'s body (inlined into the SIMD copies: the same operations).
#[inline(always)]
pub(crate) fn sparse_add_matmuls_plain(k: usize, x: &[f32], products: &mut [SparseProduct<'_>]) {
    let rows = x.len() / k;
    match ROW_BLOCK.min(rows.max(1)).next_multiple_of(LANES) {
        LANES => blocks::<LANES>(k, x, products),
        32 => blocks::<32>(k, x, products),
        _ => blocks::<MAX_BP>(k, x, products),
    }
}

/// The rows of x in blocks of at most `BP` (a multiple of [`LANES`], ≥ the block): each block
/// of x is transposed into rows of `BP` lanes (padding lanes computed, never stored), and for each
/// product each nonzero in turn adds its product into a row of the transposed chunk of y. The
/// nonzeros of one row follow each other through memory (L1) rather than a register, so that no
/// branch depends on where a row's run ends (≈ 4.6 nonzeros at K = 576 and σ = 0.01: one
/// mispredicted loop exit per run) and the rows' runs overlap in the pipeline; the row of an index
/// is a multiply, not a division. Measured in a QES run (Zen 4): this loop's share of the profile
/// fell by ≈ 20% at both levels against runs held in registers.
#[inline(always)]
fn blocks<const BP: usize>(k: usize, x: &[f32], products: &mut [SparseProduct<'_>]) {
    const { assert!(BP.is_multiple_of(LANES) && BP <= MAX_BP) };
    let rows = x.len() / k;
    let row_of = RowOf::new(k);
    // Taken out of the thread-local while in use; only lanes < b of each row are read into y.
    let mut xt = XT.take();
    xt.resize(xt.len().max(k * BP), 0.0);
    let mut yt = [0.0f32; (COL_CHUNK + 1) * MAX_BP];
    let mut t0 = 0;
    while t0 < rows {
        let b = BP.min(rows - t0);
        transpose(&x[t0 * k..(t0 + b) * k], b, k, k, &mut xt, BP);
        for SparseProduct { nonzeros, reader, o, y } in products.iter_mut() {
            let (reader, o) = (*reader, *o);
            // y[t0.., c0..c1] ⇄ yt[(r − c0)·BP + t]
            let gather =
                |yt: &mut [f32], y: &[f32], c0: usize, c1: usize| transpose(&y[t0 * o + c0..], b, c1 - c0, o, yt, BP);
            let scatter = |yt: &[f32], y: &mut [f32], c0: usize, c1: usize| {
                transpose(yt, c1 - c0, b, BP, &mut y[t0 * o + c0..], o)
            };
            let (mut c0, mut c1) = (0usize, 0usize);
            for &nonzero in nonzeros.iter() {
                let (i, c, taken) = reader.read(nonzero);
                let r = row_of.of(i);
                if r >= c1 {
                    if c1 > c0 {
                        scatter(&yt, y, c0, c1);
                    }
                    c0 = r / COL_CHUNK * COL_CHUNK;
                    c1 = (c0 + COL_CHUNK).min(o);
                    gather(&mut yt, y, c0, c1);
                }
                // A nonzero the reader leaves out adds into the spare row past the chunk instead (a
                // select, not a branch: ≈ 3% of a QES member's moves, at no predictable places).
                let row = if taken { r - c0 } else { COL_CHUNK };
                let dst = &mut yt[row * BP..][..BP];
                let src = &xt[(i - r * k) * BP..][..BP];
                for (dst, src) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
                    // Eight lanes at a time (one ymm): the next nonzero of the row reloads what
                    // this one stores, and Zen 4 forwards a stored ymm to a load but stalls on a zmm
                    // (it stores one in two halves); with zmm the loop was slower than a register run.
                    let mut acc: [f32; 8] = (&*dst).try_into().expect("one lane group");
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a += c * v;
                    }
                    dst.copy_from_slice(&acc);
                }
            }
            if c1 > c0 {
                scatter(&yt, y, c0, c1);
            }
        }
        t0 += b;
    }
    XT.set(xt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::rand_vec;

    /// Every level against the definition (one nonzero at a time over all rows), for row counts
    /// around the block size and a wide y with untouched column chunks.
    #[test]
    fn every_level_adds_the_nonzeros_in_order() {
        let (k, o) = (40, 200);
        // Increasing indices, several per row in places, whole column chunks without any, flags
        // set: every third carries bit 31, every fifth bit 30.
        let flag =
            |n: usize| if n.is_multiple_of(3) { 1 << 31 } else { 0 } | if n.is_multiple_of(5) { 1 << 30 } else { 0 };
        let nonzeros: Vec<(u32, f32)> = (0..o * k)
            .step_by(7)
            .filter(|i| !(64 * k..128 * k).contains(i))
            .enumerate()
            .map(|(n, i)| (i as u32 | flag(n), 0.01 * (n as f32 - 50.0)))
            .collect();
        let readers = [Reader::ALL, Reader { skip: 1 << 30, sign: 1 << 31 }, Reader { skip: 3 << 30, sign: 0 }];
        for reader in readers {
            for rows in [1usize, 5, 16, 17, 32, 33, 64, 65, 70, 130] {
                let x = rand_vec(rows * k, 7);
                let y0 = rand_vec(rows * o, 8);
                let mut want = y0.clone();
                for &(i, c) in &nonzeros {
                    if i & reader.skip != 0 {
                        continue;
                    }
                    let c = if reader.sign != 0 { -c } else { c };
                    let (r, kk) = ((i & POSITION) as usize / k, (i & POSITION) as usize % k);
                    for t in 0..rows {
                        want[t * o + r] += c * x[t * k + kk];
                    }
                }
                let mut got = y0.clone();
                sparse_add_matmul(&nonzeros, reader, k, o, &x, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{rows} rows, {reader:?}");
                let mut plain = y0.clone();
                sparse_add_matmuls_plain(k, &x, &mut [SparseProduct { nonzeros: &nonzeros, reader, o, y: &mut plain }]);
                assert_eq!(bits(&plain), bits(&want), "{rows} rows, plain, {reader:?}");
            }
        }
    }

    /// Several products of one x (different widths, lists and readers) give each y the bits of
    /// its own call, at every row count around the blocks.
    #[test]
    fn products_sharing_x_match_each_alone() {
        let k = 64;
        let widths = [200usize, 48, 130];
        let lists: Vec<Vec<(u32, f32)>> = widths
            .iter()
            .enumerate()
            .map(|(j, &o)| {
                (0..o * k)
                    .step_by(5 + 2 * j)
                    .enumerate()
                    .map(|(n, i)| (i as u32 | if n % 4 == 1 { 1 << 30 } else { 0 }, 0.02 * (n as f32 - 30.0)))
                    .collect()
            })
            .collect();
        let readers = [Reader::ALL, Reader { skip: 1 << 30, sign: 1 << 31 }, Reader { skip: 1 << 30, sign: 0 }];
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for rows in [1usize, 16, 31, 64, 100] {
            let x = rand_vec(rows * k, 3);
            let y0: Vec<Vec<f32>> =
                widths.iter().enumerate().map(|(j, &o)| rand_vec(rows * o, 10 + j as u64)).collect();
            let mut alone = y0.clone();
            for (j, y) in alone.iter_mut().enumerate() {
                sparse_add_matmul(&lists[j], readers[j], k, widths[j], &x, y);
            }
            let mut together = y0.clone();
            let mut products: Vec<SparseProduct> = together
                .iter_mut()
                .enumerate()
                .map(|(j, y)| SparseProduct { nonzeros: &lists[j], reader: readers[j], o: widths[j], y })
                .collect();
            sparse_add_matmuls(k, &x, &mut products);
            for j in 0..widths.len() {
                assert_ne!(bits(&alone[j]), bits(&y0[j]), "{rows} rows: product {j} moved nothing");
                assert_eq!(bits(&together[j]), bits(&alone[j]), "{rows} rows, product {j}");
            }
        }
    }

    /// Seconds of one QES member's corrections on one layer of the default model (q, k, v of
    /// one x; o; gate, up; down) and on lm_head, at σ = 0.01's density (0.8% of the codes, 3% of
    /// them left out by the reader, as a mirrored pair's lists), for a decode step's 16 rows and
    /// (layers only: a prefill has one logits row per prompt) a prefill's 448, with the transposes
    /// alone (x once, each product's y gathered and scattered, at the kernel's lane count) beside
    /// them; fastest of five batches of ≈ 0.3 s, one thread, at the level `EVOTUNE_SIMD` selects.
    /// Timing only:
    /// `cargo test --release -p evotune --lib sparse_corrections_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sparse_corrections_speed() {
        println!("{}", crate::kernels::machine::Machine::current());
        let list = |o: usize, k: usize, seed: u64| -> Vec<(u32, f32)> {
            let u = rand_vec(o * k, seed);
            (0..o * k)
                .filter(|&i| u[i].abs() < 0.008)
                .map(|i| (i as u32 | if u[i].abs() < 0.00024 { 1 << 30 } else { 0 }, u[i] * 10.0))
                .collect()
        };
        let groups: [(usize, &[usize]); 5] =
            [(576, &[576, 192, 192]), (576, &[576]), (576, &[1536, 1536]), (1536, &[576]), (576, &[49152])];
        let lists: Vec<Vec<Vec<(u32, f32)>>> = groups
            .iter()
            .enumerate()
            .map(|(g, (k, os))| {
                os.iter().enumerate().map(|(j, &o)| list(o, *k, 100 + 10 * g as u64 + j as u64)).collect()
            })
            .collect();
        let reader = Reader { skip: 1 << 30, sign: 0 };
        // Seconds per call: batches of ≈ 0.3 s (sized by one timed call), the fastest of five.
        let time = |f: &mut dyn FnMut()| {
            let reps = (0.3 / crate::kernels::probe::best_pass(1, &mut *f)).clamp(1.0, 10_000.0) as usize;
            crate::kernels::probe::best_pass(5, || (0..reps).for_each(|_| f())) / reps as f64
        };
        for rows in [16usize, 448] {
            let (mut layer, mut layer_t, mut head, mut head_t) = (0.0, 0.0, 0.0, 0.0);
            for (g, (k, os)) in groups.iter().enumerate().filter(|&(g, _)| g < 4 || rows <= LANES) {
                let x = rand_vec(rows * k, 1);
                let mut ys: Vec<Vec<f32>> = os.iter().map(|&o| rand_vec(rows * o, 2)).collect();
                let s = time(&mut || {
                    let mut products: Vec<SparseProduct> = ys
                        .iter_mut()
                        .zip(os.iter())
                        .zip(&lists[g])
                        .map(|((y, &o), l)| SparseProduct { nonzeros: l, reader, o, y })
                        .collect();
                    sparse_add_matmuls(*k, &x, &mut products)
                });
                let bp = ROW_BLOCK.min(rows).next_multiple_of(LANES);
                let mut xt = vec![0.0f32; k * bp];
                let mut yt = vec![0.0f32; COL_CHUNK * bp];
                let t = time(&mut || {
                    for t0 in (0..rows).step_by(ROW_BLOCK) {
                        let b = ROW_BLOCK.min(rows - t0);
                        transpose(&x[t0 * k..(t0 + b) * k], b, *k, *k, &mut xt, bp);
                        for (y, &o) in ys.iter_mut().zip(os.iter()) {
                            for c0 in (0..o).step_by(COL_CHUNK) {
                                let c1 = (c0 + COL_CHUNK).min(o);
                                transpose(&y[t0 * o + c0..], b, c1 - c0, o, &mut yt, bp);
                                transpose(&yt, c1 - c0, b, bp, &mut y[t0 * o + c0..], o);
                            }
                        }
                    }
                });
                if g < 4 {
                    (layer, layer_t) = (layer + s, layer_t + t);
                } else {
                    (head, head_t) = (s, t);
                }
            }
            let head = if rows <= LANES {
                format!(", lm_head {:.1} µs ({:.1})", 1e6 * head, 1e6 * head_t)
            } else {
                String::new()
            };
            println!(
                "{:?}, {rows} rows: one layer {:.1} µs (transposes alone {:.1}){head}",
                simd_level(),
                1e6 * layer,
                1e6 * layer_t,
            );
        }
    }
}
