//! The weights a forward pass reads, in whatever form they are stored: the f32 arena θ
//! ([`Params`]) or a quantized store ([`QuantizedParams`]) whose matrices stay in GGML blocks.
//!
//! The forward asks three things of them: a product y = x·Wᵀ with a matrix, one row of a matrix
//! (an embedding lookup), and a vector (norm weight, bias). Each store answers with its own
//! kernels; the model code is the same for both.

use std::sync::Arc;

use crate::kernels::{self, QFormat, QMatrix};
use crate::model::{Layout, Params};

/// Tensors of a [`Layout`], readable by the forward pass.
pub trait Weights: Sync {
    fn layout(&self) -> &Arc<Layout>;
    /// y = x·Wᵀ for matrix `id` of shape (O, K): x is (T, K), y is (T, O).
    fn matmul(&self, id: usize, x: &[f32], y: &mut [f32]);
    /// [`Weights::matmul`] for several matrices of the same input (q, k, v; gate, up), each
    /// output computed as `matmul` would. A store may share work between them (the quantized one
    /// quantizes x once and runs one parallel loop).
    fn matmuls(&self, x: &[f32], products: &mut [(usize, &mut [f32])]) {
        for (id, y) in products.iter_mut() {
            self.matmul(*id, x, y);
        }
    }
    /// out = W[row, :] (length K).
    fn row(&self, id: usize, row: usize, out: &mut [f32]);
    /// A vector tensor (norm weight, bias) as f32.
    fn vector(&self, id: usize) -> &[f32];
}

/// (O, K) of matrix `id`.
fn matrix_shape(layout: &Layout, id: usize) -> (usize, usize) {
    let s = &layout.info(id).shape;
    assert_eq!(s.len(), 2, "tensor `{}` is not a matrix", layout.info(id).name);
    (s[0], s[1])
}

impl Weights for Params {
    fn layout(&self) -> &Arc<Layout> {
        Params::layout(self)
    }
    fn matmul(&self, id: usize, x: &[f32], y: &mut [f32]) {
        let (o, k) = matrix_shape(Params::layout(self), id);
        kernels::matmul(x, self.tensor(id), y, x.len() / k, k, o);
    }
    fn row(&self, id: usize, row: usize, out: &mut [f32]) {
        let k = out.len();
        out.copy_from_slice(&self.tensor(id)[row * k..(row + 1) * k]);
    }
    fn vector(&self, id: usize) -> &[f32] {
        self.tensor(id)
    }
}

/// Which form the weights of a forward take (`--weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Every tensor dequantized to f32 (the master weights of ES).
    #[default]
    F32,
    /// The file's own blocks where it has Q8_0/Q4_0/Q4_1 matrices; K-quants converted to Q8_0 at
    /// load; float matrices stay f32.
    Quantized,
    /// Every matrix quantized to Q8_0 at load (for HF safetensors or float GGUF models).
    #[serde(alias = "Q8_0")]
    Q8_0,
}

from_str_by_serde!(WeightFormat);

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::Quantized => "quantized",
            WeightFormat::Q8_0 => "q8_0",
        }
    }
}

/// One tensor of a [`QuantizedParams`].
#[derive(Clone, Debug)]
pub enum Stored {
    F32(Vec<f32>),
    Quant(QMatrix),
}

/// A model's weights with its matrices in [`QMatrix`] blocks (vectors, and matrices the format
/// keeps as floats, in f32).
#[derive(Clone, Debug)]
pub struct QuantizedParams {
    layout: Arc<Layout>,
    tensors: Vec<Stored>,
}

impl QuantizedParams {
    /// From one [`Stored`] per tensor of `layout`, in id order; panics if a count or a shape
    /// disagrees (the loader builds them from the layout).
    pub fn new(layout: Arc<Layout>, tensors: Vec<Stored>) -> QuantizedParams {
        assert_eq!(tensors.len(), layout.len(), "one stored tensor per layout tensor");
        for (info, t) in layout.tensors().iter().zip(&tensors) {
            match t {
                Stored::F32(v) => assert_eq!(v.len(), info.len, "`{}`", info.name),
                Stored::Quant(q) => assert_eq!(vec![q.rows(), q.cols()], info.shape, "`{}`", info.name),
            }
        }
        QuantizedParams { layout, tensors }
    }

    /// Every matrix of an f32 arena quantized to Q8_0 (vectors stay f32). A matrix whose row
    /// length is not a multiple of 32 stays f32 and is named in the returned list.
    pub fn q8_0_from(params: &Params) -> (QuantizedParams, Vec<String>) {
        let mut kept = Vec::new();
        let tensors = params
            .layout()
            .tensors()
            .iter()
            .enumerate()
            .map(|(id, info)| match info.shape[..] {
                [o, k] if k % kernels::quant_matrix::QK == 0 => {
                    Stored::Quant(QMatrix::quantize_q8_0(params.tensor(id), o, k))
                }
                [_, _] => {
                    kept.push(info.name.clone());
                    Stored::F32(params.tensor(id).to_vec())
                }
                _ => Stored::F32(params.tensor(id).to_vec()),
            })
            .collect();
        (QuantizedParams::new(params.layout().clone(), tensors), kept)
    }

    pub fn stored(&self, id: usize) -> &Stored {
        &self.tensors[id]
    }

    /// Tensor `id`, to change its codes (QES updates them in place).
    pub fn stored_mut(&mut self, id: usize) -> &mut Stored {
        &mut self.tensors[id]
    }

    /// FNV-1a over every tensor's stored bytes (codes, scales, f32 bits): equal for equal weights.
    pub fn checksum(&self) -> u64 {
        let mut h = FNV_OFFSET;
        self.tensors.iter().for_each(|t| h = fnv_tensor(h, t));
        h
    }

    /// [`QuantizedParams::checksum`] of each tensor alone (MPI ranks compare them).
    pub fn tensor_checksums(&self) -> Vec<u64> {
        self.tensors.iter().map(|t| fnv_tensor(FNV_OFFSET, t)).collect()
    }

    /// The quantized matrices, in id order.
    pub fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        self.tensors.iter().filter_map(|t| match t {
            Stored::Quant(q) => Some(q),
            Stored::F32(_) => None,
        })
    }

    /// Bytes held by all tensors.
    pub fn bytes(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| match t {
                Stored::F32(v) => 4 * v.len(),
                Stored::Quant(q) => q.bytes(),
            })
            .sum()
    }

    /// A one-line account: how many matrices each format holds, and the total size.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (info, t) in self.layout.tensors().iter().zip(&self.tensors) {
            let name = match t {
                Stored::Quant(q) => format!("{} matrices", q.format().name()),
                Stored::F32(_) if info.shape.len() == 2 => "f32 matrices".to_string(),
                Stored::F32(_) => "f32 vectors".to_string(),
            };
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        let parts: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
        format!("{} ({:.1} MB)", parts.join(", "), self.bytes() as f64 / 1e6)
    }

    /// The f32 arena these weights decode to (GGML's dequantization of every block).
    pub fn dequantize(&self) -> Params {
        let mut p = Params::zeros(self.layout.clone());
        for (id, t) in self.tensors.iter().enumerate() {
            let out = p.tensor_mut(id);
            match t {
                Stored::F32(v) => out.copy_from_slice(v),
                Stored::Quant(q) => {
                    for (r, row) in out.chunks_mut(q.cols()).enumerate() {
                        q.dequantize_row(r, row);
                    }
                }
            }
        }
        p
    }

    /// The formats of the quantized matrices.
    pub fn formats(&self) -> Vec<QFormat> {
        let mut f: Vec<QFormat> = self
            .tensors
            .iter()
            .filter_map(|t| match t {
                Stored::Quant(q) => Some(q.format()),
                Stored::F32(_) => None,
            })
            .collect();
        f.sort_by_key(|f| f.name());
        f.dedup();
        f
    }
}

impl Weights for QuantizedParams {
    fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }
    fn matmul(&self, id: usize, x: &[f32], y: &mut [f32]) {
        match &self.tensors[id] {
            Stored::Quant(q) => kernels::qmatmul(x, q, y, x.len() / q.cols()),
            Stored::F32(w) => {
                let (o, k) = matrix_shape(&self.layout, id);
                kernels::matmul(x, w, y, x.len() / k, k, o)
            }
        }
    }
    fn matmuls(&self, x: &[f32], products: &mut [(usize, &mut [f32])]) {
        let quant: Option<Vec<&QMatrix>> = products
            .iter()
            .map(|(id, _)| match &self.tensors[*id] {
                Stored::Quant(q) => Some(q),
                Stored::F32(_) => None,
            })
            .collect();
        match quant {
            Some(qs) if qs.windows(2).all(|w| w[0].cols() == w[1].cols()) && !qs.is_empty() => {
                let k = qs[0].cols();
                let acts = kernels::QActs::quantize(x, x.len() / k, k);
                let mut pairs: Vec<(&QMatrix, &mut [f32])> =
                    qs.into_iter().zip(products.iter_mut()).map(|(q, (_, y))| (q, &mut **y)).collect();
                kernels::quant_matmul::qmatmul_acts_many(
                    kernels::QuantKernel::at(kernels::simd_level()),
                    &acts,
                    &mut pairs,
                );
            }
            _ => {
                for (id, y) in products.iter_mut() {
                    self.matmul(*id, x, y);
                }
            }
        }
    }
    fn row(&self, id: usize, row: usize, out: &mut [f32]) {
        match &self.tensors[id] {
            Stored::Quant(q) => q.dequantize_row(row, out),
            Stored::F32(w) => out.copy_from_slice(&w[row * out.len()..(row + 1) * out.len()]),
        }
    }
    fn vector(&self, id: usize) -> &[f32] {
        match &self.tensors[id] {
            Stored::F32(v) => v,
            Stored::Quant(_) => panic!("tensor `{}` is a quantized matrix, not a vector", self.layout.info(id).name),
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `h` continued over a tensor's stored bytes.
fn fnv_tensor(mut h: u64, t: &Stored) -> u64 {
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match t {
        Stored::F32(v) => v.iter().for_each(|x| eat(&x.to_bits().to_le_bytes())),
        Stored::Quant(q) => (0..q.groups()).for_each(|g| eat(q.group(g))),
    }
    h
}
