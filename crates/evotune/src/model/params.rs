//! All trainable parameters of a model in one flat f32 arena, with named views.
//!
//! ES treats θ as one vector of `d` numbers: noise, updates, AWD and drift run over the arena, and
//! the tensor table gives each tensor a stable id (its index), an HF-style name, a shape, and the
//! layer it belongs to (for per-layer drift). A perturbed member θ + σε is a second `Params`
//! sharing the same `Layout` (an `Arc`), never a copy of the model structure.

use std::sync::Arc;

/// What role a tensor plays, used to group drift diagnostics ("per tensor kind").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorKind {
    Embedding,
    AttnNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    /// Gemma: the norm of the attention output before its residual add.
    PostAttnNorm,
    MlpNorm,
    /// Gemma: the norm of the MLP output before its residual add.
    PostMlpNorm,
    Gate,
    Up,
    Down,
    FinalNorm,
    LmHead,
    Other,
}

impl TensorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TensorKind::Embedding => "embedding",
            TensorKind::AttnNorm => "attn_norm",
            TensorKind::Q => "q",
            TensorKind::K => "k",
            TensorKind::V => "v",
            TensorKind::O => "o",
            TensorKind::QBias => "q_bias",
            TensorKind::KBias => "k_bias",
            TensorKind::VBias => "v_bias",
            TensorKind::QNorm => "q_norm",
            TensorKind::KNorm => "k_norm",
            TensorKind::PostAttnNorm => "post_attn_norm",
            TensorKind::PostMlpNorm => "post_mlp_norm",
            TensorKind::MlpNorm => "mlp_norm",
            TensorKind::Gate => "gate",
            TensorKind::Up => "up",
            TensorKind::Down => "down",
            TensorKind::FinalNorm => "final_norm",
            TensorKind::LmHead => "lm_head",
            TensorKind::Other => "other",
        }
    }

    /// Guesses the kind from an HF llama-family tensor name (Gemma's `post_attention_layernorm`,
    /// the attention output's norm, needs the config: [`crate::model::ModelConfig::tensor_kind`]).
    pub fn from_hf_name(name: &str) -> TensorKind {
        let table = [
            ("embed_tokens", TensorKind::Embedding),
            ("input_layernorm", TensorKind::AttnNorm),
            ("q_proj.bias", TensorKind::QBias),
            ("k_proj.bias", TensorKind::KBias),
            ("v_proj.bias", TensorKind::VBias),
            ("q_norm", TensorKind::QNorm),
            ("k_norm", TensorKind::KNorm),
            ("q_proj", TensorKind::Q),
            ("k_proj", TensorKind::K),
            ("v_proj", TensorKind::V),
            ("o_proj", TensorKind::O),
            ("post_attention_layernorm", TensorKind::MlpNorm),
            ("pre_feedforward_layernorm", TensorKind::MlpNorm),
            ("post_feedforward_layernorm", TensorKind::PostMlpNorm),
            ("gate_proj", TensorKind::Gate),
            ("up_proj", TensorKind::Up),
            ("down_proj", TensorKind::Down),
            ("model.norm", TensorKind::FinalNorm),
            ("lm_head", TensorKind::LmHead),
        ];
        table.iter().find(|(pat, _)| name.contains(pat)).map(|&(_, k)| k).unwrap_or(TensorKind::Other)
    }
}

/// One tensor's place in the arena.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// HF name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub name: String,
    /// Row-major shape in HF convention: matrices are (out, in).
    pub shape: Vec<usize>,
    /// First element in the arena.
    pub offset: usize,
    /// Number of elements (product of `shape`).
    pub len: usize,
    /// Transformer block index, `None` for embeddings, final norm and head.
    pub layer: Option<usize>,
    pub kind: TensorKind,
}

impl TensorInfo {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The tensor table: names, shapes and offsets; shared by every `Params` of one model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    tensors: Vec<TensorInfo>,
    total: usize,
}

impl Layout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor; its id is the returned index. Layer is parsed from `model.layers.{i}.`.
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>) -> usize {
        let name = name.into();
        let kind = TensorKind::from_hf_name(&name);
        self.push_kind(name, shape, kind)
    }

    /// [`Layout::push`] with the kind given.
    pub fn push_kind(&mut self, name: impl Into<String>, shape: Vec<usize>, kind: TensorKind) -> usize {
        let name = name.into();
        let len = shape.iter().product();
        let layer =
            name.strip_prefix("model.layers.").and_then(|rest| rest.split('.').next()).and_then(|i| i.parse().ok());
        self.tensors.push(TensorInfo { name, shape, offset: self.total, len, layer, kind });
        self.total += len;
        self.tensors.len() - 1
    }

    /// Total parameter count `d`.
    pub fn total(&self) -> usize {
        self.total
    }
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    pub fn id(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }
    pub fn info(&self, id: usize) -> &TensorInfo {
        &self.tensors[id]
    }
}

/// θ: the arena and its layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    layout: Arc<Layout>,
    data: Vec<f32>,
}

impl Params {
    /// An all-zero arena for `layout`.
    pub fn zeros(layout: Arc<Layout>) -> Self {
        let data = vec![0.0; layout.total()];
        Params { layout, data }
    }

    /// Wraps existing data; panics if the length does not match (a programming error).
    pub fn from_vec(layout: Arc<Layout>, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), layout.total(), "arena length does not match its layout");
        Params { layout, data }
    }

    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Tensor `id` as a slice.
    pub fn tensor(&self, id: usize) -> &[f32] {
        &self.data[self.layout.info(id).range()]
    }
    pub fn tensor_mut(&mut self, id: usize) -> &mut [f32] {
        let r = self.layout.info(id).range();
        &mut self.data[r]
    }
    /// Tensor by HF name.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.layout.id(name).map(|id| self.tensor(id))
    }

    /// Mutable slices of every tensor at once (for per-tensor parallel work).
    pub fn tensors_mut(&mut self) -> Vec<(&TensorInfo, &mut [f32])> {
        let mut out = Vec::with_capacity(self.layout.len());
        let mut rest: &mut [f32] = &mut self.data;
        for info in self.layout.tensors() {
            let (head, tail) = rest.split_at_mut(info.len);
            out.push((info, head));
            rest = tail;
        }
        out
    }

    /// One FNV-1a checksum of the raw bits per tensor, in tensor-id order (to name the first
    /// tensor where two copies of θ differ).
    pub fn tensor_checksums(&self) -> Vec<u64> {
        (0..self.layout.len()).map(|id| fnv1a(self.tensor(id))).collect()
    }

    /// FNV-1a checksum of the raw bits of the whole arena (for bit-identity checks across ranks).
    pub fn checksum(&self) -> u64 {
        fnv1a(&self.data)
    }
}

/// FNV-1a over the f32 bit patterns.
fn fnv1a(xs: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in xs {
        h ^= x.to_bits() as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets_layers_and_kinds() {
        let mut l = Layout::new();
        let e = l.push("model.embed_tokens.weight", vec![10, 4]);
        let q = l.push("model.layers.3.self_attn.q_proj.weight", vec![4, 4]);
        let n = l.push("model.norm.weight", vec![4]);
        assert_eq!(l.total(), 40 + 16 + 4);
        assert_eq!(l.info(q).offset, 40);
        assert_eq!(l.info(q).layer, Some(3));
        assert_eq!(l.info(e).layer, None);
        assert_eq!(l.info(q).kind, TensorKind::Q);
        assert_eq!(l.info(n).kind, TensorKind::FinalNorm);
        let mut p = Params::zeros(Arc::new(l));
        p.tensor_mut(q)[0] = 1.5;
        assert_eq!(p.data()[40], 1.5);
        assert_eq!(p.get("model.layers.3.self_attn.q_proj.weight").unwrap()[0], 1.5);
        let lens: Vec<usize> = p.tensors_mut().iter().map(|(_, s)| s.len()).collect();
        assert_eq!(lens, vec![40, 16, 4]);
    }
}
