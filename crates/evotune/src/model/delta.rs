//! Weights that differ per sequence, applied inside the forward without being materialised.
//!
//! A batch may hold sequences of several *groups* (ES population members); group g runs with
//! weights W + ΔW_g. The base products x·Wᵀ are computed once for the whole batch, and each
//! group's rows then receive their correction x·ΔW_gᵀ from a [`WeightDelta`]. This is how a
//! low-rank ES population (ΔW_g = s_g·A_g·B_gᵀ) evaluates every member in one batch with one copy
//! of the model. The model layer only sees this trait; the ES engine implements it.

/// Per-group weight corrections for the tensors of one [`crate::model::Params`] layout.
pub trait WeightDelta: Sync {
    /// y += x·ΔW_gᵀ for the rows of one group: matrix `tensor` is (O, K), x is (R, K), y is
    /// (R, O). Does nothing when the tensor is not perturbed.
    fn add_matmul(&self, tensor: usize, group: usize, x: &[f32], y: &mut [f32]);
    /// [`WeightDelta::add_matmul`] for several matrices of the same input x (q, k, v; gate, up):
    /// y += x·ΔW_gᵀ for each (tensor, y). One call each unless an implementation shares work on x.
    fn add_matmuls(&self, group: usize, x: &[f32], products: &mut [(usize, &mut [f32])]) {
        for (tensor, y) in products.iter_mut() {
            self.add_matmul(*tensor, group, x, y);
        }
    }
    /// out += ΔW_g[row, :] (an embedding lookup of matrix `tensor`); out has length K.
    fn add_row(&self, tensor: usize, group: usize, row: usize, out: &mut [f32]);
    /// The whole replacement value of a vector tensor (norm weight, bias) for group g, or `None`
    /// when the group uses the base tensor.
    fn vector(&self, tensor: usize, group: usize) -> Option<&[f32]>;
    /// Number of groups.
    fn groups(&self) -> usize;
}

/// A delta and the group of each sequence of a batch (indexed like the batch's sequences).
#[derive(Clone, Copy)]
pub struct Deltas<'a> {
    pub delta: &'a dyn WeightDelta,
    pub group_of: &'a [usize],
}

impl<'a> Deltas<'a> {
    /// The same delta over another batch's sequences.
    pub fn with_groups(&self, group_of: &'a [usize]) -> Deltas<'a> {
        Deltas { delta: self.delta, group_of }
    }
}

/// Maximal runs of consecutive rows of one group: (group, first row, end row). `row_group[t]` is
/// the group of flattened row t.
pub fn group_runs(row_group: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (t, &g) in row_group.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.0 == g && r.2 == t => r.2 = t + 1,
            _ => runs.push((g, t, t + 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_the_group_changes() {
        assert_eq!(group_runs(&[0, 0, 1, 1, 1, 0]), vec![(0, 0, 2), (1, 2, 5), (0, 5, 6)]);
        assert_eq!(group_runs(&[]), vec![]);
    }
}
