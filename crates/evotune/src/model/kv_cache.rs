//! Per-sequence key/value cache, kept apart from the weights (candle's `llama.rs` shape).
//!
//! One `KvCache` per sequence; the forward appends the new positions' rotated keys and values for
//! every layer and reads all earlier ones. Layout per layer: `k`, `v` are (T, Hkv·Dh) row-major, so
//! appending a token is a `Vec::extend` and head `h` of position `s` is `[s·Hkv·Dh + h·Dh ..][..Dh]`.
//!
//! A cache may start with a shared, read-only prefix ([`KvCache::after`]): the sequences of a batch
//! that begin with the same tokens (the chat template's system prompt) all read one copy of its
//! keys and values instead of a copy each. Attention then sees two segments per layer, the
//! prefix's positions and the cache's own ([`KvCache::segments`]), and sums over them in the same
//! order as over one contiguous cache.

use std::sync::Arc;

use crate::model::ModelConfig;

#[derive(Clone, Debug, Default, PartialEq)]
struct LayerKv {
    k: Vec<f32>, // (T, Hkv·Dh)
    v: Vec<f32>, // (T, Hkv·Dh)
}

/// Cached keys and values of one sequence, all layers.
#[derive(Clone, Debug, PartialEq)]
pub struct KvCache {
    /// Positions `0..prefix.len()`, shared with other caches (never itself prefixed).
    prefix: Option<Arc<KvCache>>,
    /// This cache's own positions, `prefix.len()..len`.
    layers: Vec<LayerKv>,
    /// Hkv·Dh: floats per position per layer, for K and for V.
    kv_dim: usize,
    /// Positions committed, prefix included (all layers hold exactly this many).
    len: usize,
}

/// Keys and values of one layer as (shared prefix, own positions): (T, Hkv·Dh) each, the prefix
/// part empty when the cache has none.
pub(crate) type Segments<'a> = [(&'a [f32], &'a [f32]); 2];

impl KvCache {
    /// An empty cache for `config`.
    pub fn new(config: &ModelConfig) -> Self {
        KvCache {
            prefix: None,
            layers: vec![LayerKv::default(); config.layers],
            kv_dim: config.kv_heads * config.head_dim,
            len: 0,
        }
    }

    /// A cache whose first positions are `prefix` (shared, not copied), with room for `tokens`
    /// positions in all. Sharing is one level deep: a `prefix` that itself reads a shared prefix
    /// is first flattened into one copy.
    pub fn after(prefix: &Arc<KvCache>, tokens: usize) -> KvCache {
        let base = match &prefix.prefix {
            None => Arc::clone(prefix),
            Some(_) => Arc::new(prefix.flattened()),
        };
        let own = tokens.saturating_sub(base.len) * base.kv_dim;
        KvCache {
            layers: base
                .layers
                .iter()
                .map(|_| LayerKv { k: Vec::with_capacity(own), v: Vec::with_capacity(own) })
                .collect(),
            kv_dim: base.kv_dim,
            len: base.len,
            prefix: Some(base),
        }
    }

    /// This cache as one contiguous, unprefixed cache (a copy).
    fn flattened(&self) -> KvCache {
        let mut c =
            KvCache { prefix: None, layers: Vec::with_capacity(self.layers.len()), kv_dim: self.kv_dim, len: self.len };
        for l in 0..self.layers.len() {
            let [(pk, pv), (k, v)] = self.segments(l);
            c.layers.push(LayerKv { k: [pk, k].concat(), v: [pv, v].concat() });
        }
        c
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

    /// Positions read from a shared prefix (0 without one).
    pub fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len)
    }

    /// A copy of this cache with room for `tokens` positions in all (its shared prefix, if any,
    /// stays shared).
    pub fn fork(&self, tokens: usize) -> KvCache {
        let mut c = self.clone();
        let own = tokens.saturating_sub(c.prefix_len()) * c.kv_dim;
        for l in &mut c.layers {
            l.k.reserve_exact(own.saturating_sub(l.k.len()));
            l.v.reserve_exact(own.saturating_sub(l.v.len()));
        }
        c
    }

    /// Forgets everything from position `len` on (keeps the allocation). Cutting into a shared
    /// prefix copies the part of it that stays.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        if len < self.prefix_len() {
            *self = self.flattened();
        }
        let own = (len - self.prefix_len()) * self.kv_dim;
        for l in &mut self.layers {
            l.k.truncate(own);
            l.v.truncate(own);
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
        debug_assert_eq!(
            self.layers[layer].k.len(),
            (self.len - self.prefix_len()) * self.kv_dim,
            "append twice to a layer before commit"
        );
        self.layers[layer].k.extend_from_slice(k);
        self.layers[layer].v.extend_from_slice(v);
    }

    /// Marks the `n` positions appended to every layer as part of the sequence.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.layers.iter().all(|l| l.k.len() == (self.len - self.prefix_len()) * self.kv_dim));
    }

    /// Keys and values of `layer` including appended-but-uncommitted positions, as the shared
    /// prefix's and this cache's own.
    pub(crate) fn segments(&self, layer: usize) -> Segments<'_> {
        let l = &self.layers[layer];
        let shared = match &self.prefix {
            Some(p) => (&p.layers[layer].k[..], &p.layers[layer].v[..]),
            None => (&[][..], &[][..]),
        };
        [shared, (&l.k, &l.v)]
    }
}
