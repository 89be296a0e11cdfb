//! Processes that share one ES run: each evaluates a slice of the population, all of them gather
//! the N rewards, and every process applies the same deterministic update to its own copy of θ.
//! Only rewards (N floats), checksums and per-item evaluation results cross the wire — never
//! weights.
//!
//! [`SingleProcess`] is the default; [`mpi::MpiComm`] (cargo feature `mpi`) runs under `mpirun`.

use std::ops::Range;

/// The communicator the training loop talks to.
pub trait Comm: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Concatenation of every rank's `local` slice, in rank order (an all-gather with counts).
    fn all_gather_f32(&self, local: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Every rank's `local` vector (all the same length), in rank order.
    fn all_gather_u64(&self, local: &[u64]) -> Vec<Vec<u64>>;
    /// Every rank's `local` vector (lengths may differ), in rank order, on the root; an empty list
    /// on the other ranks (a gather with counts, used for evaluation results).
    fn gather_f64(&self, local: &[f64]) -> Vec<Vec<f64>>;
    /// Ends this process with `code`; under MPI the whole job (so that no rank is left waiting in a
    /// collective for one that failed).
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    /// True on the rank that writes the run directory and shows progress.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The members rank `rank` of `size` evaluates: a balanced contiguous split of `0..n`
/// (sizes differ by at most one; works for any `size ≤ n` and `size` not dividing `n`).
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    let base = n / size;
    let extra = n % size;
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..start + len
}

/// Member counts of every rank, in rank order.
pub fn counts(n: usize, size: usize) -> Vec<usize> {
    (0..size).map(|r| share(n, r, size).len()).collect()
}

/// One process, no communication.
pub struct SingleProcess;

impl Comm for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather_f32(&self, local: &[f32], _counts: &[usize]) -> Vec<f32> {
        local.to_vec()
    }
    fn all_gather_u64(&self, local: &[u64]) -> Vec<Vec<u64>> {
        vec![local.to_vec()]
    }
    fn gather_f64(&self, local: &[f64]) -> Vec<Vec<f64>> {
        vec![local.to_vec()]
    }
}

#[cfg(feature = "mpi")]
pub mod mpi {
    //! MPI over the system's OpenMPI (rsmpi). `MpiComm::init()` once per process.

    use ::mpi::datatype::PartitionMut;
    use ::mpi::environment::Universe;
    use ::mpi::topology::SimpleCommunicator;
    use ::mpi::traits::*;
    use ::mpi::Count;

    use super::Comm;

    pub struct MpiComm {
        // Keeps MPI initialised for the life of the process; finalised on drop.
        _universe: Universe,
        world: SimpleCommunicator,
    }

    // SAFETY: moving the handles is harmless; all MPI calls still come from one thread at a time.
    unsafe impl Send for MpiComm {}
    // SAFETY: by use, not by type: only the training thread calls it, one MPI call at a time.
    unsafe impl Sync for MpiComm {}

    impl MpiComm {
        /// Initialises MPI; `None` if it was already initialised.
        pub fn init() -> Option<Self> {
            let universe = ::mpi::initialize()?;
            let world = universe.world();
            Some(MpiComm { _universe: universe, world })
        }
    }

    impl Comm for MpiComm {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_gather_f32(&self, local: &[f32], counts: &[usize]) -> Vec<f32> {
            let total: usize = counts.iter().sum();
            let mut out = vec![0f32; total];
            let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
            let displs: Vec<i32> = c
                .iter()
                .scan(0, |acc, &x| {
                    let d = *acc;
                    *acc += x;
                    Some(d)
                })
                .collect();
            let mut part = PartitionMut::new(&mut out[..], c, displs);
            self.world.all_gather_varcount_into(local, &mut part);
            out
        }
        fn all_gather_u64(&self, local: &[u64]) -> Vec<Vec<u64>> {
            let mut out = vec![0u64; local.len() * self.size()];
            self.world.all_gather_into(local, &mut out[..]);
            out.chunks(local.len().max(1)).map(|c| c.to_vec()).collect()
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
        fn gather_f64(&self, local: &[f64]) -> Vec<Vec<f64>> {
            let root = self.world.process_at_rank(0);
            let len = local.len() as Count;
            if self.rank() != 0 {
                root.gather_into(&len);
                root.gather_varcount_into(local);
                return Vec::new();
            }
            let mut counts: Vec<Count> = vec![0; self.size()];
            root.gather_into_root(&len, &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0, |acc, &x| {
                    let d = *acc;
                    *acc += x;
                    Some(d)
                })
                .collect();
            let mut out = vec![0f64; counts.iter().map(|&c| c as usize).sum()];
            let mut part = PartitionMut::new(&mut out[..], counts.clone(), displs);
            root.gather_varcount_into_root(local, &mut part);
            let mut rest = &out[..];
            counts
                .iter()
                .map(|&c| {
                    let (mine, tail) = rest.split_at(c as usize);
                    rest = tail;
                    mine.to_vec()
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_population_once() {
        for n in 1..40 {
            for size in 1..=n.min(9) {
                let ranges: Vec<_> = (0..size).map(|r| share(n, r, size)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[size - 1].end, n);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
        assert_eq!(counts(8, 3), vec![3, 3, 2]);
    }
}
