//! Drift ‖θ − θ0‖₂: in total, per transformer layer, per tensor kind and per tensor; and the
//! update's density, the fraction of parameters with |θ − θ0| > [`MOVED_THRESHOLD`].
//!
//! Squares are summed in f64 within fixed chunks of `CHUNK` elements, and the chunk sums are added
//! in chunk order, so the figures are identical for any thread count.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::Result;
use crate::es::anchor::{pieces, Anchor};
use crate::model::Params;

/// Elements per partial sum.
const CHUNK: usize = 1 << 16;

/// A parameter counts as moved when |θ − θ0| exceeds this (absolute, as the ES-vs-RL sparsity
/// comparisons count it: well above f32 rounding of weights of size ~0.1, far below one update).
pub const MOVED_THRESHOLD: f32 = 1e-5;

/// Norms of θ − θ0 (Euclidean, not squared).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Drift {
    /// ‖θ − θ0‖₂ over all parameters.
    pub total: f64,
    /// Per transformer block, indexed by layer (blocks without tensors give 0).
    pub per_layer: Vec<f64>,
    /// Over the tensors outside the blocks (embeddings, final norm, head).
    pub outside_layers: f64,
    /// Per tensor kind, keyed by `TensorKind::as_str()` (e.g. `"q"`, `"down"`).
    pub per_kind: BTreeMap<String, f64>,
    /// Per tensor, in tensor-id order.
    pub per_tensor: Vec<f64>,
    /// Fraction of all parameters with |θ − θ0| > [`MOVED_THRESHOLD`] (where measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_fraction: Option<f64>,
}

/// How many of `a` differ from `b` by more than [`MOVED_THRESHOLD`].
pub fn moved_count(a: &[f32], b: &[f32]) -> u64 {
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| x.iter().zip(y).filter(|(p, q)| (*p - *q).abs() > MOVED_THRESHOLD).count() as u64)
        .sum()
}

/// Σ (a − b)² in f64, chunked as described in the module doc.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let partial: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>())
        .collect();
    partial.iter().sum()
}

/// Drift of `theta` from the anchor θ0 (read tensor by tensor through `scratch` for a source).
pub fn drift(theta: &Params, anchor: &Anchor, scratch: &mut Vec<f32>) -> Result<Drift> {
    anchor.check_layout(theta.layout())?;
    let layout = theta.layout();
    let mut per_tensor = Vec::with_capacity(layout.len());
    let mut moved = 0u64;
    for (id, info) in layout.tensors().iter().enumerate() {
        // Row pieces of at most `PIECE` elements: a source needs that much scratch, not a tensor.
        let mut sq = 0.0f64;
        for r in pieces(&info.shape, info.len) {
            let t0 = anchor.range(id, info.len, r.clone(), scratch)?;
            sq += squared_distance(&theta.tensor(id)[r.clone()], t0);
            moved += moved_count(&theta.tensor(id)[r], t0);
        }
        per_tensor.push(sq);
    }
    let mut d = from_squares(layout, per_tensor);
    d.moved_fraction = Some(moved as f64 / layout.total().max(1) as f64);
    Ok(d)
}

/// The norms from Σ (θ − θ0)² of each tensor (tensor-id order), summed per layer and kind.
pub fn from_squares(layout: &crate::model::Layout, per_tensor: Vec<f64>) -> Drift {
    let layers = layout.tensors().iter().filter_map(|t| t.layer).max().map_or(0, |l| l + 1);
    let mut per_layer = vec![0.0f64; layers];
    let mut outside = 0.0f64;
    let mut per_kind: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0f64;
    for (info, &sq) in layout.tensors().iter().zip(&per_tensor) {
        total += sq;
        match info.layer {
            Some(l) => per_layer[l] += sq,
            None => outside += sq,
        }
        *per_kind.entry(info.kind.as_str().to_string()).or_default() += sq;
    }
    Drift {
        total: total.sqrt(),
        per_layer: per_layer.into_iter().map(f64::sqrt).collect(),
        outside_layers: outside.sqrt(),
        per_kind: per_kind.into_iter().map(|(k, v)| (k, v.sqrt())).collect(),
        per_tensor: per_tensor.into_iter().map(f64::sqrt).collect(),
        moved_fraction: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Layout;

    #[test]
    fn by_hand() {
        let mut l = Layout::new();
        l.push("model.embed_tokens.weight", vec![2, 2]);
        l.push("model.layers.1.self_attn.q_proj.weight", vec![3]);
        l.push("model.layers.1.mlp.down_proj.weight", vec![1]);
        let l = Arc::new(l);
        let theta0 = Params::zeros(l.clone());
        let theta = Params::from_vec(l, vec![3.0, 0.0, 0.0, 4.0, 1.0, 2.0, 2.0, 5.0]);
        let anchor = Anchor::InMemory(Arc::new(theta0));
        let d = drift(&theta, &anchor, &mut Vec::new()).unwrap();
        assert_eq!(d.per_tensor, vec![5.0, 3.0, 5.0]);
        assert_eq!(d.outside_layers, 5.0);
        assert_eq!(d.per_layer, vec![0.0, 34f64.sqrt()]);
        assert_eq!(d.per_kind["q"], 3.0);
        assert_eq!(d.per_kind["embedding"], 5.0);
        assert_eq!(d.total, 59f64.sqrt());
        assert_eq!(d.moved_fraction, Some(6.0 / 8.0));
        // The same through a source anchor.
        let src = Anchor::Source(Arc::new(Params::zeros(theta.layout().clone())));
        assert_eq!(drift(&theta, &src, &mut Vec::new()).unwrap(), d);
    }
}
