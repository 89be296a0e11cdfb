//! θ0 tensor by tensor: the model's starting weights as a source that can be read again (e.g.
//! re-dequantized from the GGUF file), so that whoever needs θ0 after loading (AWD, drift) holds
//! one tensor of scratch instead of a second f32 copy of the model.

use crate::error::{Error, Result};
use crate::model::Params;

/// Gives θ0 tensor by tensor (e.g. re-dequantized from the source file).
pub trait ThetaSource: Send + Sync {
    /// Writes tensor `id` of θ0 into `out` (whose length is the tensor's element count).
    fn read_tensor(&self, id: usize, out: &mut [f32]) -> Result<()>;

    /// Writes elements `start .. start + out.len()` of tensor `id` into `out`, where the range is
    /// whole rows of a tensor with `len` elements. The default reads the whole tensor; sources
    /// that can read a part override it (to bound the scratch memory by a piece, not a tensor).
    fn read_range(&self, id: usize, len: usize, start: usize, out: &mut [f32]) -> Result<()> {
        read_range_of_whole(self, id, len, start, out)
    }
}

/// [`ThetaSource::read_range`] by reading the whole tensor and copying the range out.
pub fn read_range_of_whole<S: ThetaSource + ?Sized>(
    src: &S,
    id: usize,
    len: usize,
    start: usize,
    out: &mut [f32],
) -> Result<()> {
    let mut all = vec![0.0f32; len];
    src.read_tensor(id, &mut all)?;
    out.copy_from_slice(&all[start..start + out.len()]);
    Ok(())
}

/// An in-memory arena is a source too (handy for tests and for small models).
impl ThetaSource for Params {
    fn read_tensor(&self, id: usize, out: &mut [f32]) -> Result<()> {
        if id >= self.layout().len() || self.tensor(id).len() != out.len() {
            return Err(Error::EsConfig {
                field: "anchor",
                problem: format!(
                    "tensor {id} of {} elements requested from an anchor with {} tensors",
                    out.len(),
                    self.layout().len()
                ),
            });
        }
        out.copy_from_slice(self.tensor(id));
        Ok(())
    }
}
