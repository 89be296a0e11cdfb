//! θ0, the anchor of AWD and the origin of drift: kept in memory, or re-derived tensor by tensor
//! from a source (e.g. re-dequantized from the GGUF file, which costs one tensor of scratch
//! instead of a second f32 copy of the model).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Layout, Params, ThetaSource};

/// θ0 for AWD and drift: kept in memory or re-derived from a source.
pub enum Anchor {
    InMemory(Arc<Params>),
    Source(Arc<dyn ThetaSource>),
}

impl Anchor {
    /// Checks that an in-memory θ0 has the layout of θ (a source is trusted to match).
    pub fn check_layout(&self, layout: &Arc<Layout>) -> Result<()> {
        if let Anchor::InMemory(p) = self {
            if !Arc::ptr_eq(p.layout(), layout) && **p.layout() != **layout {
                return Err(Error::EsConfig {
                    field: "anchor",
                    problem: format!(
                        "θ0 has {} tensors / {} parameters but θ has {} tensors / {} parameters",
                        p.layout().len(),
                        p.layout().total(),
                        layout.len(),
                        layout.total()
                    ),
                });
            }
        }
        Ok(())
    }

    /// θ0 of tensor `id` (of `len` elements): a view of the in-memory arena, or read from the
    /// source into `scratch` (grown as needed, reused across calls).
    pub fn tensor<'a>(&'a self, id: usize, len: usize, scratch: &'a mut Vec<f32>) -> Result<&'a [f32]> {
        match self {
            Anchor::InMemory(p) => Ok(p.tensor(id)),
            Anchor::Source(src) => {
                if scratch.len() < len {
                    scratch.resize(len, 0.0);
                }
                src.read_tensor(id, &mut scratch[..len])?;
                Ok(&scratch[..len])
            }
        }
    }
}

/// Elements per piece when θ0 is read from a source in parts (4 MB of f32).
pub const PIECE: usize = 1 << 20;

/// Element ranges of whole rows covering a tensor of `shape`, each at most [`PIECE`] elements
/// (or one row, if a row is longer).
pub fn pieces(shape: &[usize], len: usize) -> Vec<std::ops::Range<usize>> {
    let cols = if shape.len() >= 2 { shape[1..].iter().product::<usize>().max(1) } else { len.max(1) };
    let step = (PIECE / cols).max(1) * cols;
    (0..len).step_by(step).map(|s| s..(s + step).min(len)).collect()
}

impl Anchor {
    /// θ0 of elements `range` of tensor `id` (of `len` elements, `range` whole rows): a view of the
    /// in-memory arena, or read from the source into `scratch`.
    pub fn range<'a>(
        &'a self,
        id: usize,
        len: usize,
        range: std::ops::Range<usize>,
        scratch: &'a mut Vec<f32>,
    ) -> Result<&'a [f32]> {
        match self {
            Anchor::InMemory(p) => Ok(&p.tensor(id)[range]),
            Anchor::Source(src) => {
                let n = range.len();
                if scratch.len() < n {
                    scratch.resize(n, 0.0);
                }
                src.read_range(id, len, range.start, &mut scratch[..n])?;
                Ok(&scratch[..n])
            }
        }
    }
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchor::InMemory(p) => write!(f, "Anchor::InMemory({} parameters)", p.layout().total()),
            Anchor::Source(_) => write!(f, "Anchor::Source(..)"),
        }
    }
}
