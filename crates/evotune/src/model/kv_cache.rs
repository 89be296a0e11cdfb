//! Per-sequence key/value cache, kept apart from the weights (candle's `llama.rs` shape).
//!
//! One `KvCache` per sequence; the forward appends the new positions' rotated keys and values for
//! every layer and reads all earlier ones. Layout per layer: `k`, `v` are (T, Hkv·Dh) row-major, so
//! appending a token is a `Vec::extend` and head `h` of position `s` is `[s·Hkv·Dh + h·Dh ..][..Dh]`.

use crate::model::ModelConfig;

#[derive(Clone, Debug, Default, PartialEq)]
struct LayerKv {
    k: Vec<f32>, // (T, Hkv·Dh)
    v: Vec<f32>, // (T, Hkv·Dh)
}

/// Cached keys and values of one sequence, all layers.
#[derive(Clone, Debug, PartialEq)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// Hkv·Dh: floats per position per layer, for K and for V.
    kv_dim: usize,
    /// Positions committed (all layers hold exactly this many).
    len: usize,
}

impl KvCache {
    /// An empty cache for `config`.
    pub fn new(config: &ModelConfig) -> Self {
        KvCache { layers: vec![LayerKv::default(); config.layers], kv_dim: config.kv_heads * config.head_dim, len: 0 }
    }

    /// An empty cache with room for `tokens` positions (avoids regrowing during decoding).
    pub fn with_capacity(config: &ModelConfig, tokens: usize) -> Self {
        let mut c = Self::new(config);
        for l in &mut c.layers {
            l.k.reserve_exact(tokens * c.kv_dim);
            l.v.reserve_exact(tokens * c.kv_dim);
        }
        c
    }

    /// Number of cached positions: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Hkv·Dh.
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// A copy of this cache with room for `tokens` positions in all (for sharing a prompt prefix
    /// between sequences: compute it once, fork it per sequence).
    pub fn fork(&self, tokens: usize) -> KvCache {
        let mut c = self.clone();
        for l in &mut c.layers {
            l.k.reserve_exact((tokens * c.kv_dim).saturating_sub(l.k.len()));
            l.v.reserve_exact((tokens * c.kv_dim).saturating_sub(l.v.len()));
        }
        c
    }

    /// Forgets everything from position `len` on (keeps the allocation).
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        for l in &mut self.layers {
            l.k.truncate(len * self.kv_dim);
            l.v.truncate(len * self.kv_dim);
        }
        self.len = len;
    }
    pub fn clear(&mut self) {
        self.truncate(0)
    }

    /// Appends `n` positions of keys and values, each (n, Hkv·Dh), to `layer`. The forward calls
    /// this once per layer, then [`KvCache::commit`].
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        debug_assert_eq!(k.len(), v.len());
        debug_assert_eq!(self.layers[layer].k.len(), self.len * self.kv_dim, "append twice to a layer before commit");
        self.layers[layer].k.extend_from_slice(k);
        self.layers[layer].v.extend_from_slice(v);
    }

    /// Marks the `n` positions appended to every layer as part of the sequence.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.layers.iter().all(|l| l.k.len() == self.len * self.kv_dim));
    }

    /// Keys and values of `layer` including appended-but-uncommitted positions: (T', Hkv·Dh) each.
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let l = &self.layers[layer];
        (&l.k, &l.v)
    }
}
