//! The llama-family forward pass (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5, Qwen3, Gemma 3), batched
//! over sequences of any lengths.
//!
//! Legend (llm.c style): `B` sequences, `T` new tokens of all sequences together (`Ttot`), `D`
//! hidden, `H`/`Hkv` query/key-value heads, `Dh` head dim, `F` MLP inner size, `V` vocab, `L` layers,
//! `R` rows that get logits.
//!
//! ```text
//! x = embed[tokens]                                   (Ttot, D)   all new tokens of all sequences
//!     (Gemma: ·√D)
//! per block l:
//!   xn = rmsnorm(x) · attn_norm                        (Gemma: every norm weight is 1 + w)
//!   q, k, v = xn·Wqᵀ (+bq), xn·Wkᵀ (+bk), xn·Wvᵀ (+bv)  (Ttot, H·Dh), (Ttot, Hkv·Dh) ×2
//!   q, k = rmsnorm_head(q)·q_norm, …·k_norm            Qwen3, Gemma: per head of Dh
//!   q, k = rope(q, pos), rope(k, pos)                  half-split ("neox") pairs (i, i + Dh/2);
//!                                                      frequencies per layer (scaling, Gemma's bases)
//!   cache[s].append(k, v)                              per sequence s
//!   a = softmax(s·q·Kᵀ, causal[, window]) · V          per sequence, query head h reads kv head
//!                                                      h / (H/Hkv) (GQA); s = 1/√Dh (Gemma: its
//!                                                      own); a sliding layer sees the last W positions
//!   x += a·Woᵀ                                         (Gemma: rmsnorm(a·Woᵀ)·post_attn_norm)
//!   xn = rmsnorm(x) · mlp_norm
//!   x += (act(xn·Wgateᵀ) ⊙ xn·Wupᵀ)·Wdownᵀ              act = silu (SwiGLU); Gemma: gelu_tanh, and
//!                                                      the sum normalised by post_mlp_norm
//! logits = rmsnorm(x[rows]) · final_norm · Wheadᵀ       (R, V); Whead = embed when tied
//! ```
//!
//! All new tokens of all sequences are flattened into one (Ttot, D) activation, so each projection
//! is one large matmul; positions and caches stay per sequence. Every kernel computes a row from
//! that row's inputs alone in a fixed order (see [`crate::kernels`]), so a sequence's logits are
//! bit-identical whatever else is in the batch, whatever the thread count, and whether its prefix
//! came from the cache or was recomputed. Logits are computed only for the rows asked for.
//!
//! RoPE pairing: HF checkpoints (and therefore our arena, after the GGUF loader undoes llama.cpp's
//! interleaving permutation of Wq/Wk) rotate pairs (i, i + Dh/2) — the "neox" layout of candle's
//! `rope` and HF's `rotate_half`. Angles θᵢ = pos · theta^(−2i/Dh) are computed in f32 exactly as
//! candle and HF do (inverse frequency first, then one product), so cos/sin match theirs. Each
//! family's switches are fields of [`ModelConfig`]; `tests/families.rs` checks every family's
//! logits against transformers.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels;
use crate::model::delta::{group_runs, Deltas};
use crate::model::kv_cache::{KvCache, Segments};
use crate::model::{Layout, ModelConfig, Weights};

/// Tensor ids of one transformer block.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BlockIds {
    pub(crate) attn_norm: usize,
    pub(crate) q: usize,
    pub(crate) k: usize,
    pub(crate) v: usize,
    pub(crate) o: usize,
    pub(crate) qkv_bias: Option<[usize; 3]>,
    /// Per-head RMSNorm weights of q and k (Qwen3, Gemma 3), (Dh) each.
    pub(crate) qk_norm: Option<[usize; 2]>,
    /// Gemma 3: the norms of the attention and MLP outputs before their residual adds, (D) each.
    pub(crate) post_norms: Option<[usize; 2]>,
    pub(crate) mlp_norm: usize,
    pub(crate) gate: usize,
    pub(crate) up: usize,
    pub(crate) down: usize,
}

/// The model structure: config plus tensor ids into a [`crate::model::Params`] arena. Weights are
/// never stored here, so one `Llama` serves every member's arena.
#[derive(Clone, Debug)]
pub struct Llama {
    pub config: ModelConfig,
    embed: usize,
    blocks: Vec<BlockIds>,
    final_norm: usize,
    /// `lm_head.weight`, or the embedding when tied.
    lm_head: usize,
    /// The distinct inverse-frequency tables θ^(−2i/Dh), i < Dh/2, after any scaling
    /// ([`ModelConfig::layer_inv_freq`]): one, or Gemma's global and local.
    inv_freqs: Vec<Vec<f32>>,
    /// Per layer: its table in `inv_freqs`.
    layer_rope: Vec<usize>,
    /// (id, name, element count) of every tensor the forward reads: an arena is checked against
    /// this before use, so a `Params` of another layout is an error, not an out-of-bounds panic.
    used: Vec<(usize, String, Vec<usize>)>,
}

/// One sequence's share of a batched forward.
pub struct SeqInput<'a> {
    /// New tokens, placed at positions `cache.len()..cache.len() + tokens.len()`.
    pub tokens: &'a [u32],
    /// This sequence's cache; the new positions are appended to it.
    pub cache: &'a mut KvCache,
    /// How many of the last new positions get logits: 0 none, 1 next-token (generation),
    /// `tokens.len()` all (scoring).
    pub logits: usize,
}

/// Logits of a batched forward: (R, V), rows grouped by sequence in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    pub data: Vec<f32>,
    pub vocab: usize,
    /// Row range of each sequence: sequence s owns rows `starts[s]..starts[s + 1]`.
    pub starts: Vec<usize>,
}

impl Logits {
    /// Number of rows sequence `s` has.
    pub fn rows(&self, s: usize) -> usize {
        self.starts[s + 1] - self.starts[s]
    }
    /// Logits of sequence `s`, row `i` (i-th of its requested positions, in order): length V.
    pub fn row(&self, s: usize, i: usize) -> &[f32] {
        let r = self.starts[s] + i;
        debug_assert!(r < self.starts[s + 1]);
        &self.data[r * self.vocab..(r + 1) * self.vocab]
    }
    /// All rows of sequence `s`: (rows(s), V).
    pub fn seq(&self, s: usize) -> &[f32] {
        &self.data[self.starts[s] * self.vocab..self.starts[s + 1] * self.vocab]
    }
}

fn check_config(c: &ModelConfig) -> Result<()> {
    let bad = |field, problem: String| Err(Error::BadModelConfig { field, problem });
    if c.hidden == 0 || c.ffn == 0 || c.layers == 0 || c.vocab == 0 || c.heads == 0 || c.kv_heads == 0 {
        return bad("hidden/ffn/layers/vocab/heads/kv_heads", "must all be positive".into());
    }
    if c.head_dim == 0 || !c.head_dim.is_multiple_of(2) {
        return bad("head_dim", format!("{} must be positive and even (RoPE rotates pairs)", c.head_dim));
    }
    if !c.heads.is_multiple_of(c.kv_heads) {
        return bad("kv_heads", format!("{} does not divide heads = {}", c.kv_heads, c.heads));
    }
    if c.gemma.as_ref().is_some_and(|g| g.sliding_layers.len() != c.layers) {
        return bad("gemma.sliding_layers", format!("must name each of the {} layers", c.layers));
    }
    let (theta_ok, eps_ok) = (c.rope_theta > 0.0, c.rms_eps >= 0.0); // NaN fails both
    if !theta_ok || !eps_ok {
        return bad("rope_theta/rms_eps", format!("theta {} must be > 0 and eps {} ≥ 0", c.rope_theta, c.rms_eps));
    }
    Ok(())
}

impl Llama {
    /// Resolves the tensor ids of every weight in `layout` (HF names); errors name a missing tensor
    /// or a tensor whose shape disagrees with `config`.
    pub fn new(config: ModelConfig, layout: &Layout) -> Result<Self> {
        check_config(&config)?;
        let c = &config;
        let find = |name: String, shape: Vec<usize>| -> Result<usize> {
            let id = layout
                .id(&name)
                .ok_or_else(|| Error::LayoutMissingTensor { tensor: name.clone(), arch: c.architecture.clone() })?;
            let found = &layout.info(id).shape;
            // Norms and biases may be stored as (n,) or (1, n); compare element layout strictly.
            if *found != shape {
                return Err(Error::LayoutTensorShape { tensor: name, expected: shape, found: found.clone() });
            }
            Ok(id)
        };
        let (d, qd, kvd, f) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim, c.ffn);
        let embed = find("model.embed_tokens.weight".into(), vec![c.vocab, d])?;
        let mut blocks = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let qkv_bias = if c.qkv_bias {
                Some([
                    find(p("self_attn.q_proj.bias"), vec![qd])?,
                    find(p("self_attn.k_proj.bias"), vec![kvd])?,
                    find(p("self_attn.v_proj.bias"), vec![kvd])?,
                ])
            } else {
                None
            };
            let qk_norm = if c.qk_norm {
                Some([
                    find(p("self_attn.q_norm.weight"), vec![c.head_dim])?,
                    find(p("self_attn.k_norm.weight"), vec![c.head_dim])?,
                ])
            } else {
                None
            };
            let (mlp_norm, post_norms) = if c.gemma.is_some() {
                let post = [
                    find(p("post_attention_layernorm.weight"), vec![d])?,
                    find(p("post_feedforward_layernorm.weight"), vec![d])?,
                ];
                (find(p("pre_feedforward_layernorm.weight"), vec![d])?, Some(post))
            } else {
                (find(p("post_attention_layernorm.weight"), vec![d])?, None)
            };
            blocks.push(BlockIds {
                attn_norm: find(p("input_layernorm.weight"), vec![d])?,
                q: find(p("self_attn.q_proj.weight"), vec![qd, d])?,
                k: find(p("self_attn.k_proj.weight"), vec![kvd, d])?,
                v: find(p("self_attn.v_proj.weight"), vec![kvd, d])?,
                o: find(p("self_attn.o_proj.weight"), vec![d, qd])?,
                qkv_bias,
                qk_norm,
                post_norms,
                mlp_norm,
                gate: find(p("mlp.gate_proj.weight"), vec![f, d])?,
                up: find(p("mlp.up_proj.weight"), vec![f, d])?,
                down: find(p("mlp.down_proj.weight"), vec![d, f])?,
            });
        }
        let final_norm = find("model.norm.weight".into(), vec![d])?;
        let lm_head = if c.tied_embeddings { embed } else { find("lm_head.weight".into(), vec![c.vocab, d])? };
        let mut inv_freqs: Vec<Vec<f32>> = Vec::new();
        let mut layer_rope = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let table = c.layer_inv_freq(l);
            if table.len() != c.head_dim / 2 || table.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
                return Err(Error::BadModelConfig {
                    field: "rope_scaling",
                    problem: format!(
                        "gives {} frequencies for head dim {}, or a non-positive one",
                        table.len(),
                        c.head_dim
                    ),
                });
            }
            let i = inv_freqs.iter().position(|t| *t == table).unwrap_or_else(|| {
                inv_freqs.push(table);
                inv_freqs.len() - 1
            });
            layer_rope.push(i);
        }
        let mut ids = vec![embed, final_norm, lm_head];
        for b in &blocks {
            ids.extend([b.attn_norm, b.q, b.k, b.v, b.o, b.mlp_norm, b.gate, b.up, b.down]);
            ids.extend(b.qkv_bias.iter().flatten());
            ids.extend(b.qk_norm.iter().flatten());
            ids.extend(b.post_norms.iter().flatten());
        }
        let used =
            ids.into_iter().map(|id| (id, layout.info(id).name.clone(), layout.info(id).shape.clone())).collect();
        Ok(Llama { config, embed, blocks, final_norm, lm_head, inv_freqs, layer_rope, used })
    }

    /// Tensor ids of the embedding, the blocks, the final norm and the head (the embedding's when
    /// tied), for the training pass ([`crate::model::backprop`]).
    pub(crate) fn ids(&self) -> (usize, &[BlockIds], usize, usize) {
        (self.embed, &self.blocks, self.final_norm, self.lm_head)
    }

    /// The distinct RoPE inverse-frequency tables, and each layer's index into them.
    pub(crate) fn rope_tables(&self) -> (&[Vec<f32>], &[usize]) {
        (&self.inv_freqs, &self.layer_rope)
    }

    /// A fresh cache for one sequence of this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// Checks `params` has, at every id the forward reads, the tensor (name and shape) this
    /// `Llama` was built for.
    fn check_params(&self, params: &dyn Weights) -> Result<()> {
        let l = params.layout();
        for (id, name, shape) in &self.used {
            match l.tensors().get(*id) {
                Some(t) if t.name == *name && t.shape == *shape => {}
                Some(t) if t.name == *name => {
                    return Err(Error::LayoutTensorShape {
                        tensor: name.clone(),
                        expected: shape.clone(),
                        found: t.shape.clone(),
                    })
                }
                _ => {
                    return Err(Error::LayoutMissingTensor {
                        tensor: name.clone(),
                        arch: self.config.architecture.clone(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Batched forward over `seqs`: appends every sequence's new tokens to its cache and returns
    /// logits for the last `seq.logits` new positions of each sequence.
    pub fn forward(&self, params: &dyn Weights, seqs: &mut [SeqInput<'_>]) -> Result<Logits> {
        self.forward_with(params, None, seqs)
    }

    /// [`Llama::forward`] where sequence s runs with weights `params` + ΔW of its group
    /// `deltas.group_of[s]` (see [`crate::model::delta`]); `None` is the plain forward.
    pub fn forward_with(
        &self,
        params: &dyn Weights,
        deltas: Option<Deltas<'_>>,
        seqs: &mut [SeqInput<'_>],
    ) -> Result<Logits> {
        let c = &self.config;
        self.check_params(params)?;
        if let Some(dl) = deltas {
            if dl.group_of.len() != seqs.len() {
                return Err(Error::ForwardInput {
                    index: dl.group_of.len().min(seqs.len()),
                    problem: format!("{} group ids for {} sequences", dl.group_of.len(), seqs.len()),
                });
            }
            if let Some(i) = dl.group_of.iter().position(|&g| g >= dl.delta.groups()) {
                return Err(Error::ForwardInput {
                    index: i,
                    problem: format!("group {} of {} groups", dl.group_of[i], dl.delta.groups()),
                });
            }
        }
        let (d, h, hkv, dh, f, v) = (c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab);
        let (qd, kvd) = (h * dh, hkv * dh);

        // Validate every sequence before touching any cache.
        for (i, s) in seqs.iter().enumerate() {
            if s.cache.layers() != c.layers || s.cache.kv_dim() != kvd {
                return Err(Error::KvCacheMismatch {
                    index: i,
                    problem: format!(
                        "has {} layers of width {}, the model needs {} of width {}",
                        s.cache.layers(),
                        s.cache.kv_dim(),
                        c.layers,
                        kvd
                    ),
                });
            }
            let len = s.cache.len() + s.tokens.len();
            if len > c.context {
                return Err(Error::ContextOverflow { index: i, len, max: c.context });
            }
            if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= v) {
                return Err(Error::TokenOutOfRange { index: i, token: t, vocab: v });
            }
            if s.logits > s.tokens.len() {
                return Err(Error::ForwardInput {
                    index: i,
                    problem: format!("logits asked for {} positions but only {} are new", s.logits, s.tokens.len()),
                });
            }
        }

        // Row t of the flattened batch: its sequence and absolute position.
        let mut row_seq = Vec::new();
        let mut row_pos = Vec::new();
        let mut seq_start = Vec::with_capacity(seqs.len() + 1);
        for (i, s) in seqs.iter().enumerate() {
            seq_start.push(row_seq.len());
            for j in 0..s.tokens.len() {
                row_seq.push(i);
                row_pos.push(s.cache.len() + j);
            }
        }
        seq_start.push(row_seq.len());
        let tt = row_seq.len();
        // Rows of each group, as maximal runs (empty without deltas).
        let group_of = |seq: usize| deltas.map_or(0, |dl| dl.group_of[seq]);
        let runs = match deltas {
            Some(_) => group_runs(&row_seq.iter().map(|&s| group_of(s)).collect::<Vec<_>>()),
            None => Vec::new(),
        };
        let op = Ops { params, deltas, runs: &runs, eps: c.rms_eps, norm_shift: c.gemma.is_some() };

        // RoPE tables for the batch's positions: (Ttot, Dh/2) each, per distinct frequency table.
        let half = dh / 2;
        let rope: Vec<(Vec<f32>, Vec<f32>)> = self
            .inv_freqs
            .iter()
            .map(|inv_freq| {
                let mut cos = vec![0.0f32; tt * half];
                let mut sin = vec![0.0f32; tt * half];
                for t in 0..tt {
                    for i in 0..half {
                        let angle = row_pos[t] as f32 * inv_freq[i];
                        cos[t * half + i] = angle.cos();
                        sin[t * half + i] = angle.sin();
                    }
                }
                (cos, sin)
            })
            .collect();

        // x = embed[tokens]                                    (Ttot, D)
        let mut x = vec![0.0f32; tt * d];
        let mut rows = x.chunks_mut(d);
        for (i, s) in seqs.iter().enumerate() {
            for &tok in s.tokens {
                let (row, out) = (tok as usize, rows.next().expect("one row per new token"));
                params.row(self.embed, row, out);
                if let Some(dl) = deltas {
                    dl.delta.add_row(self.embed, dl.group_of[i], row, out);
                }
            }
        }
        if c.gemma.is_some() {
            // Gemma: x = embed·√D, √D rounded to f32 (transformers' `embed_scale`).
            let scale = (d as f64).sqrt() as f32;
            x.iter_mut().for_each(|v| *v *= scale);
        }

        let mut xn = vec![0.0f32; tt * d]; // (Ttot, D)
        let mut q = vec![0.0f32; tt * qd]; // (Ttot, H·Dh)
        let mut k = vec![0.0f32; tt * kvd]; // (Ttot, Hkv·Dh)
        let mut vv = vec![0.0f32; tt * kvd]; // (Ttot, Hkv·Dh)
        let mut att = vec![0.0f32; tt * qd]; // (Ttot, H·Dh)
        let mut proj = vec![0.0f32; tt * d]; // (Ttot, D)
        let mut g = vec![0.0f32; tt * f]; // (Ttot, F)
        let mut u = vec![0.0f32; tt * f]; // (Ttot, F)
        let mut xn_heads = Vec::new(); // scratch of the per-head norms

        for (l, blk) in self.blocks.iter().enumerate() {
            // --- attention ---
            op.rmsnorm(&mut xn, &x, blk.attn_norm, d);
            op.matmuls(&xn, d, &mut [(blk.q, &mut q), (blk.k, &mut k), (blk.v, &mut vv)]);
            if let Some([bq, bk, bv]) = blk.qkv_bias {
                op.add_bias(&mut q, bq, qd);
                op.add_bias(&mut k, bk, kvd);
                op.add_bias(&mut vv, bv, kvd);
            }
            if let Some([nq, nk]) = blk.qk_norm {
                op.head_rmsnorm(&mut q, nq, h, dh, &mut xn_heads);
                op.head_rmsnorm(&mut k, nk, hkv, dh, &mut xn_heads);
            }
            let (cos, sin) = &rope[self.layer_rope[l]];
            q.par_chunks_mut(qd).zip(k.par_chunks_mut(kvd)).enumerate().for_each(|(t, (qt, kt))| {
                let (cs, sn) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
                kernels::rope(qt, cs, sn, h, dh);
                kernels::rope(kt, cs, sn, hkv, dh);
            });
            seqs.par_iter_mut().enumerate().for_each(|(i, s)| {
                let (r0, r1) = (seq_start[i], seq_start[i + 1]);
                s.cache.append(l, &k[r0 * kvd..r1 * kvd], &vv[r0 * kvd..r1 * kvd]);
            });
            {
                let caches: Vec<&KvCache> = seqs.iter().map(|s| &*s.cache).collect();
                let q = &q;
                let (row_seq, row_pos) = (&row_seq, &row_pos);
                let window = if c.is_sliding_layer(l) { c.sliding_window.unwrap_or(usize::MAX) } else { usize::MAX };
                let scale = c.attention_scale();
                att.par_chunks_mut(qd).enumerate().for_each_init(Vec::new, |scores, (t, out)| {
                    let segments = caches[row_seq[t]].segments(l);
                    attend(out, &q[t * qd..(t + 1) * qd], &segments, row_pos[t] + 1, window, scale, h, hkv, dh, scores);
                });
            }
            op.matmul(&att, blk.o, &mut proj, qd);
            if let Some([post_attn, _]) = blk.post_norms {
                op.rmsnorm(&mut xn, &proj, post_attn, d);
                std::mem::swap(&mut xn, &mut proj);
            }
            add_in_place(&mut x, &proj);

            // --- MLP (SwiGLU; Gemma: GeGLU) ---
            op.rmsnorm(&mut xn, &x, blk.mlp_norm, d);
            op.matmuls(&xn, d, &mut [(blk.gate, &mut g), (blk.up, &mut u)]);
            match c.gemma {
                None => kernels::silu_mul(&mut g, &u),         // g ← silu(g)·u
                Some(_) => kernels::gelu_tanh_mul(&mut g, &u), // g ← gelu_tanh(g)·u
            }
            op.matmul(&g, blk.down, &mut proj, f);
            if let Some([_, post_mlp]) = blk.post_norms {
                op.rmsnorm(&mut xn, &proj, post_mlp, d);
                std::mem::swap(&mut xn, &mut proj);
            }
            add_in_place(&mut x, &proj);
        }
        for s in seqs.iter_mut() {
            let n = s.tokens.len();
            s.cache.commit(n);
        }

        // Rows that get logits: the last `logits` new positions of each sequence.
        let mut starts = Vec::with_capacity(seqs.len() + 1);
        let mut xr = Vec::new(); // (R, D)
        let mut logit_group = Vec::new(); // (R)
        let mut nrows = 0;
        for (i, s) in seqs.iter().enumerate() {
            starts.push(nrows);
            let r1 = seq_start[i + 1];
            xr.extend_from_slice(&x[(r1 - s.logits) * d..r1 * d]);
            logit_group.extend(std::iter::repeat_n(group_of(i), s.logits));
            nrows += s.logits;
        }
        starts.push(nrows);
        let mut xrn = vec![0.0f32; nrows * d];
        let mut data = vec![0.0f32; nrows * v];
        if nrows > 0 {
            let runs = if deltas.is_some() { group_runs(&logit_group) } else { Vec::new() };
            let op = Ops { runs: &runs, ..op };
            op.rmsnorm(&mut xrn, &xr, self.final_norm, d);
            op.matmul(&xrn, self.lm_head, &mut data, d);
        }
        Ok(Logits { data, vocab: v, starts })
    }

    /// Convenience: logits at every position of one token list, from an empty cache: (T, V).
    pub fn logits_all(&self, params: &dyn Weights, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut cache = self.new_cache();
        let mut seqs = [SeqInput { tokens, cache: &mut cache, logits: tokens.len() }];
        Ok(self.forward(params, &mut seqs)?.data)
    }
}

/// The weight-reading ops of one forward: plain kernels on `params`, plus each group's
/// correction when the batch carries deltas. `runs` are the (group, first row, end row) runs of
/// the rows the op is applied to.
#[derive(Clone, Copy)]
struct Ops<'a> {
    params: &'a dyn Weights,
    deltas: Option<Deltas<'a>>,
    runs: &'a [(usize, usize, usize)],
    eps: f32,
    /// Gemma: RMSNorm weights are (1 + w).
    norm_shift: bool,
}

impl Ops<'_> {
    /// y = x·Wᵀ, then y[rows of g] += x[rows of g]·ΔW_gᵀ.   x: (T, K), W: (O, K), y: (T, O).
    fn matmul(&self, x: &[f32], w: usize, y: &mut [f32], k: usize) {
        self.params.matmul(w, x, y);
        self.add_deltas(x, k, &mut [(w, y)]);
    }

    /// [`Ops::matmul`] for several matrices of the same input x (T, K): yᵢ = x·Wᵢᵀ (+ deltas).
    fn matmuls(&self, x: &[f32], k: usize, products: &mut [(usize, &mut [f32])]) {
        self.params.matmuls(x, products);
        self.add_deltas(x, k, products);
    }

    /// yᵢ[rows of g] += x[rows of g]·ΔW_{g,i}ᵀ for each group's rows and each product (nothing
    /// without deltas); the groups in parallel.
    fn add_deltas(&self, x: &[f32], k: usize, products: &mut [(usize, &mut [f32])]) {
        let Some(dl) = self.deltas else { return };
        let t = x.len() / k;
        // Per run: its group, its rows of x, and its rows of each product's y.
        type Part<'p> = (usize, &'p [f32], Vec<(usize, &'p mut [f32])>);
        let mut parts: Vec<Part> = self.runs.iter().map(|&(g, r0, r1)| (g, &x[r0 * k..r1 * k], Vec::new())).collect();
        for (w, y) in products.iter_mut() {
            let o = y.len() / t.max(1);
            let mut rest = &mut **y;
            for (part, &(_, r0, r1)) in parts.iter_mut().zip(self.runs) {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut((r1 - r0) * o);
                part.2.push((*w, mine));
                rest = tail;
            }
        }
        parts.into_par_iter().for_each(|(g, xs, mut ys)| dl.delta.add_matmuls(g, xs, &mut ys));
    }

    /// RMSNorm with the norm weight of each row's group ((1 + w) under `norm_shift`).
    fn rmsnorm(&self, out: &mut [f32], x: &[f32], w: usize, d: usize) {
        let base = self.params.vector(w);
        match self.deltas {
            None => kernels::rmsnorm(out, x, &self.norm_weight(base), d, self.eps),
            Some(dl) => {
                for &(g, r0, r1) in self.runs {
                    let weight = self.norm_weight(dl.delta.vector(w, g).unwrap_or(base));
                    kernels::rmsnorm(&mut out[r0 * d..r1 * d], &x[r0 * d..r1 * d], &weight, d, self.eps);
                }
            }
        }
    }

    /// The weight a norm multiplies by: w, or Gemma's 1 + w (in f32, as transformers adds it).
    fn norm_weight<'w>(&self, w: &'w [f32]) -> std::borrow::Cow<'w, [f32]> {
        match self.norm_shift {
            false => std::borrow::Cow::Borrowed(w),
            true => std::borrow::Cow::Owned(w.iter().map(|v| 1.0 + v).collect()),
        }
    }

    /// Per-head RMSNorm in place: x viewed as (T·heads, Dh), each row normalised with the weight
    /// of its token's group.   x: (T, heads·Dh).
    fn head_rmsnorm(&self, x: &mut [f32], w: usize, heads: usize, dh: usize, scratch: &mut Vec<f32>) {
        scratch.clear();
        scratch.extend_from_slice(x);
        let base = self.params.vector(w);
        match self.deltas {
            None => kernels::rmsnorm(x, scratch, &self.norm_weight(base), dh, self.eps),
            Some(dl) => {
                let n = heads * dh;
                for &(g, r0, r1) in self.runs {
                    let weight = self.norm_weight(dl.delta.vector(w, g).unwrap_or(base));
                    kernels::rmsnorm(&mut x[r0 * n..r1 * n], &scratch[r0 * n..r1 * n], &weight, dh, self.eps);
                }
            }
        }
    }

    /// x[t, :] += b for every row t, b of the row's group.   x: (T, n).
    fn add_bias(&self, x: &mut [f32], b: usize, n: usize) {
        let base = self.params.vector(b);
        match self.deltas {
            None => add_bias(x, base),
            Some(dl) => {
                for &(g, r0, r1) in self.runs {
                    add_bias(&mut x[r0 * n..r1 * n], dl.delta.vector(b, g).unwrap_or(base));
                }
            }
        }
    }
}

/// Causal attention of one query row at position n − 1 over the cached positions
/// lo..n, lo = n − min(n, window) (all of them without a sliding window): for each head h,
/// a_h = Σⱼ softmax_j(s·q_h·k_{j,g}) v_{j,g}, g = h / (H/Hkv), s = 1/√Dh (Gemma: its own). The positions are those of the
/// cache's segments in order (shared prefix, then its own), summed as one sequence.
/// q: (H·Dh); out: (H·Dh). This is the only op that mixes positions.
#[allow(clippy::too_many_arguments)]
fn attend(
    out: &mut [f32],
    q: &[f32],
    segments: &Segments<'_>,
    n: usize,
    window: usize,
    scale: f32,
    h: usize,
    hkv: usize,
    dh: usize,
    scores: &mut Vec<f32>,
) {
    let kvd = hkv * dh;
    let group = h / hkv;
    let lo = n - n.min(window);
    // Per segment: its first position, and the attended positions [a, b) it holds.
    let mut start = 0;
    let spans = segments.map(|(k, _)| {
        let len = (k.len() / kvd).min(n - start);
        start += len;
        (start - len, (start - len).max(lo), start)
    });
    debug_assert_eq!(start, n, "the cache holds fewer than n positions");
    let m = n - lo;
    scores.resize(m, 0.0);
    let attended = || segments.iter().zip(&spans).filter(|(_, (_, a, b))| a < b);
    for hi in 0..h {
        let g = hi / group;
        let qh = &q[hi * dh..(hi + 1) * dh];
        for (&(kc, _), &(s0, a, b)) in attended() {
            kernels::dots(qh, &kc[(a - s0) * kvd + g * dh..], kvd, &mut scores[a - lo..b - lo]);
        }
        for s in scores[..m].iter_mut() {
            *s *= scale;
        }
        kernels::softmax(&mut scores[..m]);
        let o = &mut out[hi * dh..(hi + 1) * dh];
        o.fill(0.0);
        for (&(_, vc), &(s0, a, b)) in attended() {
            kernels::weighted_sum_add(o, &scores[a - lo..b - lo], &vc[(a - s0) * kvd + g * dh..], kvd);
        }
    }
}

/// x[t, :] += b for every row t.
fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_mut(b.len()) {
        for (a, &bb) in row.iter_mut().zip(b) {
            *a += bb;
        }
    }
}

/// x += y (the residual connection), in parallel chunks.
fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(1 << 14).zip(y.par_chunks(1 << 14)).for_each(|(x, y)| {
        for (a, &b) in x.iter_mut().zip(y) {
            *a += b;
        }
    });
}
