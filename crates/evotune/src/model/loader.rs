//! One entry point for every model source: a GGUF file, a HF directory, or a known name.
//!
//! A GGUF model becomes an f32 arena in HF order and HF names:
//! ```text
//! model.embed_tokens.weight                          ← token_embd.weight              (V, D)
//! per layer i, prefix model.layers.i.:
//!   input_layernorm.weight                           ← blk.i.attn_norm.weight         (D)
//!   self_attn.{q,k,v}_proj.weight                    ← blk.i.attn_{q,k,v}.weight      (H·Dh | Hkv·Dh, D)
//!   self_attn.{q,k,v}_proj.bias      (qwen2)         ← blk.i.attn_{q,k,v}.bias        (H·Dh | Hkv·Dh)
//!   self_attn.o_proj.weight                          ← blk.i.attn_output.weight       (D, H·Dh)
//!   post_attention_layernorm.weight                  ← blk.i.ffn_norm.weight          (D)
//!   mlp.{gate,up}_proj.weight                        ← blk.i.ffn_{gate,up}.weight     (F, D)
//!   mlp.down_proj.weight                             ← blk.i.ffn_down.weight          (D, F)
//! model.norm.weight                                  ← output_norm.weight             (D)
//! lm_head.weight                    (untied only)    ← output.weight                  (V, D)
//! ```
//! A missing `output.weight` means tied embeddings; a present one that cannot be read is an error.
//!
//! **Q/K permutation.** For arch `llama`, llama.cpp's converter reorders the rows of q_proj and
//! k_proj (and their biases) so that ggml's interleaved RoPE, which rotates pairs (2j, 2j+1), sees
//! the pairs HF's half-split ("neox") RoPE rotates, (j, j + Dh/2). Per head, HF rows viewed as
//! (2, Dh/2) were transposed to (Dh/2, 2). [`unpermute_rows`] transposes them back, so the arena
//! holds exactly the HF checkpoint's layout. qwen2 files are written unpermuted (llama.cpp runs
//! them with neox RoPE), so they are copied as they are.
//!
//! **θ0 re-derivation.** The loaded [`Model`] keeps the source open ([`Theta0`]): any tensor of θ0
//! can be produced again, bit-identical, from the compressed file, so the AWD anchor need not be a
//! second f32 copy of the model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{Error, IoResultExt, Result};
use crate::kernels;
use crate::model::fetch::{fetch_default_model, DEFAULT_MODEL};
use crate::model::gguf::GgufFile;
use crate::model::gguf_write::gguf_tensor_name_in;
use crate::model::quant;
use crate::model::safetensors::{hf_tensor_spec_iter, text_model_name};
use crate::model::weights::Stored;
use crate::model::{
    Layout, Llama, ModelConfig, Params, QuantizedParams, TensorKind, ThetaSource, WeightFormat, Weights,
};
use crate::tokenizer::{ChatTemplate, Prompt, Tokenizer};

/// Where the weights came from; kept so θ0 can be re-derived from the file (the AWD anchor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    HfDir,
}

/// A loaded model: structure, tokenizer and chat template. The weights are returned separately
/// as the initial θ0 arena.
pub struct Model {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub config: ModelConfig,
    pub layout: Arc<Layout>,
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    pub chat: ChatTemplate,
    /// The open source file(s), from which θ0 is re-derived tensor by tensor.
    pub theta0: Arc<Theta0>,
}

/// Loads `spec`: a GGUF path, a HF model directory, or the name `smollm2-135m` (fetched on first use).
pub fn load(spec: &str) -> Result<(Model, Params)> {
    load_path(&resolve(spec)?)
}

/// The file or directory `spec` names (the default model is fetched on first use).
fn resolve(spec: &str) -> Result<PathBuf> {
    if spec == DEFAULT_MODEL {
        return fetch_default_model();
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(Error::ModelFetch {
            name: spec.to_string(),
            problem: format!(
                "no such file or directory; give a GGUF file, a HF model directory (config.json, \
                 *.safetensors, tokenizer.json) or the name `{DEFAULT_MODEL}`"
            ),
        });
    }
    Ok(path.to_path_buf())
}

impl Model {
    /// Token ids of a prompt as the model sees it: rendered with the model's chat template (a raw
    /// prompt as is), then `prefix` appended (the start of the reply a task puts in its mouth).
    pub fn encode_prompt(&self, prompt: &Prompt, prefix: &str) -> Result<Vec<u32>> {
        let mut text = self.chat.render_prompt(prompt)?;
        text.push_str(prefix);
        self.tokenizer.encode(&text)
    }

    /// Token ids of a continuation (a leading BOS, if the tokenizer adds one, is dropped).
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text)?;
        if let (Some(bos), Some(&first)) = (self.tokenizer.bos, ids.first()) {
            if first == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Re-reads tensor `id` of θ0 from the source file into `out` (dequantizing if needed).
    pub fn read_theta0_tensor(&self, id: usize, out: &mut [f32]) -> Result<()> {
        self.theta0.read_tensor(id, out)
    }

    /// θ0 as a [`ThetaSource`] (the AWD anchor and the drift origin of a run).
    pub fn theta0_source(&self) -> Arc<dyn ThetaSource> {
        self.theta0.clone()
    }
}

/// Loads only the model file at `path` (no name resolution): a directory is read as a HF model,
/// anything else as GGUF.
pub fn load_path(path: &Path) -> Result<(Model, Params)> {
    let meta = std::fs::metadata(path).with_path(path)?;
    if meta.is_dir() {
        load_hf_dir(path)
    } else {
        load_gguf(path)
    }
}

/// Loads a GGUF file: config, θ0 (dequantized, un-permuted, HF order), tokenizer, chat template.
pub fn load_gguf(path: &Path) -> Result<(Model, Params)> {
    let model = open_gguf(path)?;
    let params = model.theta0.read_all()?;
    Ok((model, params))
}

/// Opens a GGUF file without reading its weights: config, layout, tokenizer, chat template, and
/// the open θ0 source the weights are read from.
pub fn open_gguf(path: &Path) -> Result<Model> {
    let (config, theta0) = open_gguf_weights(path)?;
    let metadata = &theta0.gguf().expect("a GGUF source").metadata;
    let tokenizer = Tokenizer::from_gguf(path, metadata)?;
    let chat = ChatTemplate::from_gguf(path, metadata)?;
    let layout = theta0.layout().clone();
    let llama = Llama::new(config.clone(), &layout)?;
    Ok(Model { path: path.to_path_buf(), format: ModelFormat::Gguf, config, layout, llama, tokenizer, chat, theta0 })
}

/// The weights of a GGUF file alone (no tokenizer): its config, the open θ0 source, and θ0.
pub fn load_gguf_weights(path: &Path) -> Result<(ModelConfig, Arc<Theta0>, Params)> {
    let (config, theta0) = open_gguf_weights(path)?;
    let params = theta0.read_all()?;
    Ok((config, theta0, params))
}

fn open_gguf_weights(path: &Path) -> Result<(ModelConfig, Arc<Theta0>)> {
    let gguf = GgufFile::open(path)?;
    let config = ModelConfig::from_gguf(&gguf)?;
    let (layout, sources) = gguf_layout(&gguf, &config)?;
    let theta0 = Arc::new(Theta0 { layout: Arc::new(layout), source: Source::Gguf { file: gguf, tensors: sources } });
    Ok((config, theta0))
}

/// The weights of a model in the form a forward runs on ([`WeightFormat`]).
pub enum LoadedWeights {
    F32(Params),
    Quantized(QuantizedParams),
}

impl LoadedWeights {
    pub fn weights(&self) -> &dyn Weights {
        match self {
            LoadedWeights::F32(p) => p,
            LoadedWeights::Quantized(q) => q,
        }
    }
    /// One line: the formats held and their size.
    pub fn summary(&self) -> String {
        match self {
            LoadedWeights::F32(p) => {
                format!("{} f32 tensors ({:.1} MB)", p.layout().len(), 4.0 * p.data().len() as f64 / 1e6)
            }
            LoadedWeights::Quantized(q) => q.summary(),
        }
    }
}

/// Loads `spec` (as [`load`]) with its weights in `format`, plus notes on any conversion made
/// (K-quants to Q8_0, a HF model quantized at load). A quantized GGUF is never expanded to f32:
/// its blocks are packed tensor by tensor from the mapped file.
pub fn load_weights(spec: &str, format: WeightFormat) -> Result<(Model, LoadedWeights, Vec<String>)> {
    if format == WeightFormat::F32 {
        let (model, params) = load(spec)?;
        return Ok((model, LoadedWeights::F32(params), Vec::new()));
    }
    let path = resolve(spec)?;
    if std::fs::metadata(&path).with_path(&path)?.is_dir() {
        let (model, params) = load_hf_dir(&path)?;
        let (q, kept) = QuantizedParams::q8_0_from(&params);
        let mut notes = vec![format!("{}: HF weights quantized to Q8_0 at load", path.display())];
        if !kept.is_empty() {
            notes.push(format!("{} matrices stay f32 (rows not whole 32-blocks): {}", kept.len(), kept.join(", ")));
        }
        return Ok((model, LoadedWeights::Quantized(q), notes));
    }
    let model = open_gguf(&path)?;
    let (q, notes) = model.theta0.read_quantized(format)?;
    Ok((model, LoadedWeights::Quantized(q), notes))
}

/// Loads a HF model directory (config.json, *.safetensors, tokenizer.json).
pub fn load_hf_dir(dir: &Path) -> Result<(Model, Params)> {
    let (config, layout, data) = crate::model::safetensors::read_dir(dir)?;
    if data.len() != layout.total() {
        return Err(Error::CorruptModel {
            path: dir.to_path_buf(),
            problem: format!("{} weights read for a layout of {} parameters", data.len(), layout.total()),
        });
    }
    let layout = Arc::new(layout);
    let params = Params::from_vec(layout.clone(), data);
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"), dir)?;
    let chat = ChatTemplate::from_hf_dir(dir)?;
    let theta0 = Arc::new(Theta0 { layout: layout.clone(), source: Source::HfDir(SafetensorsShards::open(dir)?) });
    let llama = Llama::new(config.clone(), &layout)?;
    let model =
        Model { path: dir.to_path_buf(), format: ModelFormat::HfDir, config, layout, llama, tokenizer, chat, theta0 };
    Ok((model, params))
}

/// Where one arena tensor lives in a GGUF file.
#[derive(Clone, Debug)]
struct GgufSource {
    /// Index into `GgufFile::tensors`.
    index: usize,
    /// `Some(heads)`: rows are in llama.cpp's interleaved-RoPE order, undo with this head count.
    unpermute_heads: Option<usize>,
    /// The file holds 1 + w (Gemma's norms): 1 is subtracted on reading.
    norm_shifted: bool,
}

/// Builds the HF-order layout of `config` and, for each tensor, its GGUF source; checks every
/// shape and that the file holds no tensor this loader would ignore.
fn gguf_layout(g: &GgufFile, c: &ModelConfig) -> Result<(Layout, Vec<GgufSource>)> {
    let permuted = c.gguf_qk_permuted();
    let (q_perm, k_perm) = if permuted { (Some(c.heads), Some(c.kv_heads)) } else { (None, None) };

    let index: std::collections::HashMap<&str, usize> =
        g.tensors.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    let mut layout = Layout::new();
    let mut sources = Vec::new();
    let mut known_extra = Vec::new();
    // Each tensor is checked as it is added, so a corrupt layer count fails at the first missing
    // tensor instead of planning billions of them.
    let mut add = |hf: String,
                   gg: String,
                   shape: Vec<usize>,
                   kind: TensorKind,
                   unpermute_heads: Option<usize>,
                   norm_shifted: bool|
     -> Result<()> {
        let &i =
            index.get(gg.as_str()).ok_or_else(|| Error::MissingTensor { path: g.path.clone(), tensor: gg.clone() })?;
        let t = &g.tensors[i];
        if t.shape() != shape {
            return Err(Error::TensorShape { path: g.path.clone(), tensor: gg, expected: shape, found: t.shape() });
        }
        if !t.ggml_type.is_dequantizable() {
            return Err(Error::UnsupportedTensorType { path: g.path.clone(), tensor: gg, found: t.ggml_type.name() });
        }
        layout.push_kind(hf, shape, kind);
        sources.push(GgufSource { index: i, unpermute_heads, norm_shifted });
        Ok(())
    };
    for (hf, shape) in hf_tensor_spec_iter(c) {
        let gg = gguf_tensor_name_in(c, &hf).expect("every llama-family HF name has a llama.cpp name");
        let kind = c.tensor_kind(&hf);
        let unpermute = match kind {
            TensorKind::Q | TensorKind::QBias => q_perm,
            TensorKind::K | TensorKind::KBias => k_perm,
            _ => None,
        };
        let shifted = c.gguf_norm_shifted(&hf);
        add(hf, gg, shape, kind, unpermute, shifted)?;
    }
    // Not a weight: Llama-3 RoPE factors, read into the config (`RopeScaling::FreqFactors`).
    if let Some(i) = index.get("rope_freqs.weight").filter(|_| c.rope_scaling.is_some()) {
        known_extra.push(*i);
    }
    if sources.len() + known_extra.len() != g.tensors.len() {
        let used: std::collections::HashSet<usize> = sources.iter().map(|s| s.index).chain(known_extra).collect();
        let extra: Vec<&str> = g
            .tensors
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, t)| t.name.as_str())
            .take(5)
            .collect();
        return Err(Error::CorruptModel {
            path: g.path.clone(),
            problem: format!(
                "{} tensor(s) this {} loader does not know, e.g. {extra:?}; refusing to drop weights silently",
                g.tensors.len() - used.len(),
                c.architecture
            ),
        });
    }
    Ok((layout, sources))
}

/// Undoes llama.cpp's Q/K row permutation: `src` is a (heads·Dh, cols) row-major matrix (cols = 1
/// for a bias) whose rows, per head, are ordered (Dh/2, 2); `dst` gets them ordered (2, Dh/2),
/// i.e. HF row `h·Dh + s·Dh/2 + j` = GGUF row `h·Dh + 2j + s` (s ∈ {0, 1}, j < Dh/2).
/// Requires `src.len() == dst.len()`, divisible into `heads` heads of an even number of rows.
pub fn unpermute_rows(src: &[f32], dst: &mut [f32], heads: usize, cols: usize) {
    assert_eq!(src.len(), dst.len());
    let rows = src.len() / cols;
    assert!(
        rows * cols == src.len() && rows.is_multiple_of(heads) && (rows / heads).is_multiple_of(2),
        "bad un-permute shape"
    );
    let dh = rows / heads;
    let half = dh / 2;
    // (heads, Dh/2, 2, cols) → (heads, 2, Dh/2, cols)
    dst.par_chunks_mut(dh * cols).zip(src.par_chunks(dh * cols)).for_each(|(dst, src)| {
        for j in 0..half {
            for s in 0..2 {
                let from = (2 * j + s) * cols;
                let to = (s * half + j) * cols;
                dst[to..to + cols].copy_from_slice(&src[from..from + cols]);
            }
        }
    });
}

/// The file row of HF row `r` of a matrix with `rows` rows: itself, or under llama.cpp's Q/K
/// permutation with `heads` heads, HF row h·Dh + s·Dh/2 + j is file row h·Dh + 2j + s (see
/// [`unpermute_rows`]).
fn file_row(r: usize, rows: usize, unpermute_heads: Option<usize>) -> usize {
    match unpermute_heads {
        None => r,
        Some(heads) => {
            let dh = rows / heads;
            let (h, within) = (r / dh, r % dh);
            h * dh + 2 * (within % (dh / 2)) + within / (dh / 2)
        }
    }
}

/// θ0's source, kept open after loading: re-derives any tensor of the initial arena.
pub struct Theta0 {
    layout: Arc<Layout>,
    source: Source,
}

enum Source {
    Gguf { file: GgufFile, tensors: Vec<GgufSource> },
    HfDir(SafetensorsShards),
}

impl Theta0 {
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Writes tensor `id` of θ0 into `out` (`out.len()` must be the tensor's length).
    pub fn read_tensor(&self, id: usize, out: &mut [f32]) -> Result<()> {
        if id >= self.layout.len() {
            return Err(Error::MissingTensor { path: self.path().to_path_buf(), tensor: format!("#{id}") });
        }
        let info = self.layout.info(id);
        if out.len() != info.len {
            return Err(Error::TensorShape {
                path: self.path().to_path_buf(),
                tensor: info.name.clone(),
                expected: info.shape.clone(),
                found: vec![out.len()],
            });
        }
        match &self.source {
            Source::Gguf { file, tensors } => {
                let src = &tensors[id];
                let t = &file.tensors[src.index];
                let read = match src.unpermute_heads {
                    None => file.dequantize_into(t, out),
                    Some(heads) => {
                        let mut tmp = vec![0.0f32; out.len()];
                        file.dequantize_into(t, &mut tmp)?;
                        let cols = if info.shape.len() == 2 { info.shape[1] } else { 1 };
                        unpermute_rows(&tmp, out, heads, cols);
                        Ok(())
                    }
                };
                file.release(t);
                if src.norm_shifted {
                    out.iter_mut().for_each(|x| *x -= 1.0);
                }
                read
            }
            Source::HfDir(shards) => shards.read(&info.name, out),
        }
    }

    /// The whole arena, tensors read in parallel (each tensor's values do not depend on the split).
    pub fn read_all(&self) -> Result<Params> {
        let mut params = Params::zeros(self.layout.clone());
        params.tensors_mut().into_par_iter().enumerate().try_for_each(|(id, (_, out))| self.read_tensor(id, out))?;
        Ok(params)
    }

    /// θ0 of a GGUF source in `format` (not [`WeightFormat::F32`]): each matrix packed from the
    /// file's Q8_0/Q4_0/Q4_1 blocks as they are (Q/K rows un-permuted), or dequantized and
    /// re-quantized to Q8_0 (K-quants always, everything under [`WeightFormat::Q8_0`]); float
    /// matrices stay f32 under [`WeightFormat::Quantized`]; vectors are f32. Tensors are read
    /// one at a time and their file pages released, so the peak is the packed store plus one
    /// tensor. Returns notes naming each conversion.
    pub fn read_quantized(&self, format: WeightFormat) -> Result<(QuantizedParams, Vec<String>)> {
        let Source::Gguf { file, .. } = &self.source else {
            return Err(Error::CorruptModel {
                path: self.path().to_path_buf(),
                problem: "only a GGUF file has quantized blocks to read".into(),
            });
        };
        let read = (0..self.layout.len())
            .into_par_iter()
            .map(|id| self.read_quantized_tensor(id, format))
            .collect::<Result<Vec<(Stored, Option<String>)>>>()?;
        let mut converted = std::collections::BTreeMap::<String, usize>::new();
        for ty in read.iter().filter_map(|(_, ty)| ty.clone()) {
            *converted.entry(ty).or_default() += 1;
        }
        let notes = converted
            .into_iter()
            .map(|(ty, n)| format!("{}: {n} {ty} matrices converted to Q8_0 at load", file.path.display()))
            .collect();
        Ok((QuantizedParams::new(self.layout.clone(), read.into_iter().map(|(s, _)| s).collect()), notes))
    }

    /// Tensor `id` of θ0 as [`Theta0::read_quantized`] packs it in `format`, with the GGML type
    /// it was converted to Q8_0 from (`None` when kept as it is). From an HF source every matrix
    /// is quantized to Q8_0 (rows that are not whole 32-blocks stay f32), as the loader does.
    pub fn read_quantized_tensor(&self, id: usize, format: WeightFormat) -> Result<(Stored, Option<String>)> {
        let info = self.layout.info(id);
        let read_f32 = || -> Result<Vec<f32>> {
            let mut v = vec![0.0f32; info.len];
            self.read_tensor(id, &mut v)?;
            Ok(v)
        };
        let Source::Gguf { file, tensors } = &self.source else {
            return Ok(match info.shape[..] {
                [rows, cols] if cols % kernels::quant_matrix::QK == 0 => {
                    (Stored::Quant(kernels::QMatrix::quantize_q8_0(&read_f32()?, rows, cols)), None)
                }
                _ => (Stored::F32(read_f32()?), None),
            });
        };
        let src = &tensors[id];
        let t = &file.tensors[src.index];
        let [rows, cols] = info.shape[..] else {
            return Ok((Stored::F32(read_f32()?), None));
        };
        let native = quant::native_qformat(t.ggml_type)
            .filter(|f| format == WeightFormat::Quantized || *f == kernels::QFormat::Q8_0);
        let is_float = matches!(t.ggml_type, quant::GgmlType::F32 | quant::GgmlType::F16 | quant::GgmlType::BF16);
        let out = if native.is_some() {
            let q = quant::pack_qmatrix(
                t.ggml_type,
                file.tensor_bytes(t)?,
                rows,
                cols,
                |r| file_row(r, rows, src.unpermute_heads),
                &file.path,
                &t.name,
            );
            file.release(t);
            (Stored::Quant(q?), None)
        } else if is_float && format == WeightFormat::Quantized {
            (Stored::F32(read_f32()?), None)
        } else {
            if cols % kernels::quant_matrix::QK != 0 {
                return Err(Error::QuantizedPath {
                    path: file.path.clone(),
                    tensor: t.name.clone(),
                    problem: format!("rows of {cols} values are not whole blocks of 32 for Q8_0"),
                    instead: "use `--weights f32`".into(),
                });
            }
            (Stored::Quant(kernels::QMatrix::quantize_q8_0(&read_f32()?, rows, cols)), Some(t.ggml_type.name()))
        };
        Ok(out)
    }

    /// Writes the source GGUF to `out` with the codes of `tuned` (a QES run's codes, built by
    /// [`Theta0::read_quantized`] from this file) in place of the file's: every byte outside a
    /// changed code is the source file's, so the quantization types, scales, metadata and tensor
    /// order stay as they were. Returns how many codes differ. A matrix whose file type is not
    /// the type it was trained in (a K-quant converted to Q8_0) is an error naming it.
    pub fn write_with_codes(&self, base: &QuantizedParams, tuned: &QuantizedParams, out: &Path) -> Result<u64> {
        let Source::Gguf { file, tensors } = &self.source else {
            return Err(Error::CorruptModel {
                path: self.path().to_path_buf(),
                problem: "only a GGUF source can be written back with new codes".into(),
            });
        };
        let mut bytes = std::fs::read(&file.path).with_path(&file.path)?;
        let mut changed = 0u64;
        #[allow(clippy::needless_range_loop)] // id indexes the layout, both stores and the file's tensors
        for id in 0..self.layout.len() {
            let (Stored::Quant(q), Stored::Quant(b)) = (tuned.stored(id), base.stored(id)) else { continue };
            let t = &file.tensors[tensors[id].index];
            let (rows, cols) = (q.rows(), q.cols());
            let diffs = q.changed_codes(b);
            if diffs.is_empty() {
                continue;
            }
            if quant::native_qformat(t.ggml_type) != Some(q.format()) {
                return Err(Error::QuantizedPath {
                    path: file.path.clone(),
                    tensor: t.name.clone(),
                    problem: format!(
                        "stored as {} in the file but trained as {}",
                        t.ggml_type.name(),
                        q.format().name()
                    ),
                    instead: "export it with `--dtype q8_0` (or f16/f32)".into(),
                });
            }
            let (_, block_bytes) = t.ggml_type.block_layout().expect("legacy quants have a block layout");
            let nb = cols / kernels::quant_matrix::QK;
            let base_at = file.data_offset + t.offset;
            for (r, k, c) in diffs {
                let fr = file_row(r, rows, tensors[id].unpermute_heads);
                let blk = base_at + (fr * nb + k / 32) * block_bytes;
                let j = k % 32;
                match q.format() {
                    kernels::QFormat::Q8_0 => bytes[blk + 2 + j] = c as i8 as u8,
                    f => {
                        let qs = blk + if f == kernels::QFormat::Q4_1 { 4 } else { 2 };
                        let byte = &mut bytes[qs + j % 16];
                        *byte = if j < 16 { (*byte & 0xF0) | c as u8 } else { (*byte & 0x0F) | (c as u8) << 4 };
                    }
                }
                changed += 1;
            }
        }
        crate::files::write_atomic_bytes(out, &bytes)?;
        Ok(changed)
    }

    /// The GGUF file θ0 comes from (`None` for a HF directory).
    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.source {
            Source::Gguf { file, .. } => Some(file),
            Source::HfDir(_) => None,
        }
    }

    /// The file (GGUF) or directory (HF) θ0 comes from.
    pub fn path(&self) -> &Path {
        match &self.source {
            Source::Gguf { file, .. } => &file.path,
            Source::HfDir(s) => &s.dir,
        }
    }
}

impl std::fmt::Debug for Theta0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Theta0").field("path", &self.path()).field("tensors", &self.layout.len()).finish()
    }
}

impl ThetaSource for Theta0 {
    fn read_tensor(&self, id: usize, out: &mut [f32]) -> Result<()> {
        Theta0::read_tensor(self, id, out)
    }

    /// A GGUF tensor stored in HF row order is dequantized block range by block range; other
    /// tensors (permuted Q/K rows, safetensors) are read whole.
    fn read_range(&self, id: usize, len: usize, start: usize, out: &mut [f32]) -> Result<()> {
        if let Source::Gguf { file, tensors } = &self.source {
            if let Some(src) = tensors.get(id).filter(|s| s.unpermute_heads.is_none() && !s.norm_shifted) {
                let t = &file.tensors[src.index];
                if t.elements() == len && file.dequantize_range_into(t, start, out)? {
                    file.release(t);
                    return Ok(());
                }
            }
        }
        crate::model::theta_source::read_range_of_whole(self, id, len, start, out)
    }
}

/// The `*.safetensors` files of a HF directory, memory-mapped, with the shard of every tensor.
struct SafetensorsShards {
    dir: PathBuf,
    shards: Vec<(PathBuf, Mmap)>,
    /// tensor name (the text model's, [`text_model_name`]) → shard index and the stored name
    index: std::collections::HashMap<String, (usize, String)>,
}

impl SafetensorsShards {
    fn open(dir: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_path(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        let mut shards = Vec::with_capacity(files.len());
        let mut index = std::collections::HashMap::new();
        for (i, path) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&path).with_path(&path)?;
            // SAFETY: read-only private map; the checkpoint is assumed not to change while open.
            let mmap = unsafe { Mmap::map(&file) }.with_path(&path)?;
            let st = safetensors::SafeTensors::deserialize(&mmap)
                .map_err(|e| Error::CorruptModel { path: path.clone(), problem: format!("safetensors: {e}") })?;
            for name in st.names() {
                if let Some(text) = text_model_name(name) {
                    index.insert(text, (i, name.to_string()));
                }
            }
            shards.push((path, mmap));
        }
        Ok(SafetensorsShards { dir: dir.to_path_buf(), shards, index })
    }

    fn read(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let (i, stored) = self
            .index
            .get(name)
            .ok_or_else(|| Error::MissingTensor { path: self.dir.clone(), tensor: name.to_string() })?;
        let i = *i;
        let (path, mmap) = &self.shards[i];
        let corrupt = |problem: String| Error::CorruptModel { path: path.clone(), problem };
        let st = safetensors::SafeTensors::deserialize(mmap).map_err(|e| corrupt(format!("safetensors: {e}")))?;
        let view = st.tensor(stored).map_err(|e| corrupt(format!("tensor `{stored}`: {e}")))?;
        let elements: usize = view.shape().iter().product();
        if elements != out.len() {
            return Err(Error::TensorShape {
                path: path.clone(),
                tensor: name.to_string(),
                expected: vec![out.len()],
                found: view.shape().to_vec(),
            });
        }
        let ty = match view.dtype() {
            safetensors::Dtype::F32 => quant::GgmlType::F32,
            safetensors::Dtype::F16 => quant::GgmlType::F16,
            safetensors::Dtype::BF16 => quant::GgmlType::BF16,
            other => {
                return Err(Error::UnsupportedTensorType {
                    path: path.clone(),
                    tensor: name.to_string(),
                    found: format!("{other:?}"),
                })
            }
        };
        quant::dequantize(ty, view.data(), out, path, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies llama.cpp's permutation (HF → GGUF), written independently of `unpermute_rows`
    /// from the converter's numpy: reshape(heads, 2, Dh/2, cols).swapaxes(1, 2).
    fn permute_like_llama_cpp(hf: &[f32], heads: usize, cols: usize) -> Vec<f32> {
        let rows = hf.len() / cols;
        let dh = rows / heads;
        let mut out = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..dh / 2 {
                for s in 0..2 {
                    for c in 0..cols {
                        // out[h, j, s, c] = hf[h, s, j, c]
                        out[((h * dh / 2 + j) * 2 + s) * cols + c] = hf[((h * 2 + s) * dh / 2 + j) * cols + c];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn hf_shards_are_indexed_and_read_in_every_float_type() {
        use safetensors::tensor::TensorView;
        use safetensors::Dtype;
        let dir = tempfile::tempdir().unwrap();
        let f32s: Vec<u8> = [1.5f32, -2.0, 3.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = [0.5f32, -1.0].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16s: Vec<u8> = [4.0f32, 0.125].iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let shard1 = vec![
            ("a.weight", TensorView::new(Dtype::F32, vec![3], &f32s).unwrap()),
            ("b.weight", TensorView::new(Dtype::F16, vec![1, 2], &f16s).unwrap()),
        ];
        let shard2 = vec![("c.weight", TensorView::new(Dtype::BF16, vec![2], &bf16s).unwrap())];
        std::fs::write(
            dir.path().join("model-00001-of-00002.safetensors"),
            safetensors::serialize(shard1, None).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("model-00002-of-00002.safetensors"),
            safetensors::serialize(shard2, None).unwrap(),
        )
        .unwrap();
        let shards = SafetensorsShards::open(dir.path()).unwrap();
        let mut out = [0.0f32; 3];
        shards.read("a.weight", &mut out).unwrap();
        assert_eq!(out, [1.5, -2.0, 3.25]);
        let mut out = [0.0f32; 2];
        shards.read("b.weight", &mut out).unwrap();
        assert_eq!(out, [0.5, -1.0]);
        shards.read("c.weight", &mut out).unwrap();
        assert_eq!(out, [4.0, 0.125]);
        assert!(matches!(shards.read("d.weight", &mut out), Err(Error::MissingTensor { .. })));
        assert!(matches!(shards.read("a.weight", &mut out), Err(Error::TensorShape { .. })));
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        for (heads, dh, cols) in [(1, 2, 1), (3, 4, 5), (2, 64, 3), (9, 8, 1)] {
            let hf: Vec<f32> = (0..heads * dh * cols).map(|x| x as f32).collect();
            let gguf = permute_like_llama_cpp(&hf, heads, cols);
            let mut back = vec![0.0; hf.len()];
            unpermute_rows(&gguf, &mut back, heads, cols);
            assert_eq!(back, hf, "heads {heads} dh {dh} cols {cols}");
        }
        // Hand-checked: one head, Dh = 4, cols = 1: HF [a0 a1 b0 b1] → GGUF [a0 b0 a1 b1].
        let mut back = [0.0; 4];
        unpermute_rows(&[10.0, 20.0, 11.0, 21.0], &mut back, 1, 1);
        assert_eq!(back, [10.0, 11.0, 20.0, 21.0]);
    }
}
