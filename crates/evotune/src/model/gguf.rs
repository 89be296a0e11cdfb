//! GGUF reader: header, metadata, tensor index and data section, over a memory map.
//!
//! File layout (v2 and v3; all integers little-endian, counts and lengths u64):
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, type: u32, value)          string = len u64 + UTF-8 bytes
//! tensor_count × (name: string, n_dims u32, dims [u64; n_dims], type u32, offset u64)
//! padding to `general.alignment` (default 32)
//! data section: tensor bytes at `offset` (relative to the section, aligned)
//! ```
//! `dims[0]` is the fastest-varying axis (ggml's `ne`), so a matrix with `dims = [in, out]` is the
//! row-major (out, in) matrix HF stores.
//!
//! Everything is validated on open: magic, version, every length against the bytes that remain
//! (so a truncated file or an absurd count is an error, never a huge allocation), tensor dims and
//! types, alignment, and each tensor's data lying inside the file. Errors name the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, IoResultExt, Result};
use crate::model::quant::{self, GgmlType};

/// One metadata value, as typed in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The GGUF type name (`u32`, `string`, `array`, …), for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }

    /// Any integer type, widened to i128 (so every stored integer converts losslessly).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v as i128,
            MetaValue::I8(v) => v as i128,
            MetaValue::U16(v) => v as i128,
            MetaValue::I16(v) => v as i128,
            MetaValue::U32(v) => v as i128,
            MetaValue::I32(v) => v as i128,
            MetaValue::U64(v) => v as i128,
            MetaValue::I64(v) => v as i128,
            _ => return None,
        })
    }
}

/// GGUF value type ids (`enum gguf_type`).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are rejected (real files nest at most one level).
const MAX_ARRAY_DEPTH: usize = 8;
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// One entry of the tensor index.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    /// llama.cpp name, e.g. `blk.3.attn_q.weight`.
    pub name: String,
    /// ggml order: `dims[0]` varies fastest (a matrix is `[in, out]`).
    pub dims: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Offset of the data, relative to the data section.
    pub offset: usize,
    /// Bytes of data; `None` for a type whose size this reader does not know.
    pub n_bytes: Option<usize>,
}

impl GgufTensor {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
    /// Row-major shape, slowest axis first (HF convention: matrices are (out, in)).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensor index, in file order.
    pub tensors: Vec<GgufTensor>,
    /// `general.alignment` (or 32).
    pub alignment: usize,
    /// Absolute offset of the data section.
    pub data_offset: usize,
    mmap: Mmap,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn corrupt(&self, problem: String) -> Error {
        Error::CorruptModel { path: self.path.to_path_buf(), problem }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.corrupt(format!(
                "truncated: {what} needs {n} bytes at offset {}, but the file has {} bytes",
                self.pos,
                self.bytes.len()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length (u64) that must fit in memory: at least `min_bytes_each` bytes per item
    /// must remain in the file, which bounds every allocation by the file size.
    fn count(&mut self, what: &str, min_bytes_each: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits =
            usize::try_from(n).ok().filter(|&n| n.checked_mul(min_bytes_each).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| {
            self.corrupt(format!(
                "{what} at offset {at} is {n}, but only {} bytes remain in the file",
                self.remaining()
            ))
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.count(&format!("length of {what}"), 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.corrupt(format!("{what} at offset {at} is not valid UTF-8 ({e})")))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            T_U8 => MetaValue::U8(self.array::<1>(key)?[0]),
            T_I8 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            T_U16 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            T_I16 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            T_U32 => MetaValue::U32(u32::from_le_bytes(self.array(key)?)),
            T_I32 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            T_U64 => MetaValue::U64(u64::from_le_bytes(self.array(key)?)),
            T_I64 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            T_F32 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            T_F64 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            T_BOOL => match self.array::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(Error::BadMetadata {
                        path: self.path.to_path_buf(),
                        key: key.to_string(),
                        problem: format!("bool byte is {b}, expected 0 or 1"),
                    })
                }
            },
            T_STRING => MetaValue::String(self.string(&format!("value of `{key}`"))?),
            T_ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(format!("`{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem_ty = self.u32(&format!("element type of `{key}`"))?;
                let min = min_value_bytes(elem_ty).ok_or_else(|| Error::BadMetadata {
                    path: self.path.to_path_buf(),
                    key: key.to_string(),
                    problem: format!("unknown array element type {elem_ty}"),
                })?;
                let n = self.count(&format!("element count of `{key}`"), min)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(Error::BadMetadata {
                    path: self.path.to_path_buf(),
                    key: key.to_string(),
                    problem: format!("unknown value type {other}"),
                })
            }
        })
    }
}

/// The fewest bytes a value of type `ty` can occupy (`None`: unknown type).
fn min_value_bytes(ty: u32) -> Option<usize> {
    Some(match ty {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 | T_STRING => 8,
        T_ARRAY => 12,
        _ => return None,
    })
}

impl GgufFile {
    /// Opens and validates `path` (see the module doc for what is checked).
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).with_path(path)?;
        // SAFETY: the map is read-only and private to this process. Like every mmap reader we
        // assume no other process truncates or rewrites the model file while it is open.
        let mmap = unsafe { Mmap::map(&file) }.with_path(path)?;
        Self::parse(path, mmap)
    }

    fn parse(path: &Path, mmap: Mmap) -> Result<GgufFile> {
        let bytes: &[u8] = &mmap;
        if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
            let mut found = [0u8; 4];
            let n = bytes.len().min(4);
            found[..n].copy_from_slice(&bytes[..n]);
            return Err(Error::NotGguf { path: path.to_path_buf(), found });
        }
        let mut c = Cursor { bytes, pos: 4, path };
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (this is a big-endian GGUF; only little-endian files are supported)"
            } else if version == 1 {
                " (GGUF v1 is obsolete; re-convert the model with a current llama.cpp)"
            } else {
                ""
            };
            return Err(c.corrupt(format!("GGUF version {version} is not supported, expected 2 or 3{hint}")));
        }
        // Each tensor entry is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
        // each kv at least 8 (key len) + 4 (type) + 1 (value).
        let tensor_count = c.count("tensor count", 24)?;
        let kv_count = c.count("metadata count", 13)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = c.string("metadata key")?;
            let ty = c.u32(&format!("type of `{key}`"))?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(c.corrupt(format!("metadata key `{key}` appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if *a > 0 && a.is_power_of_two() => *a as usize,
            Some(v) => {
                return Err(Error::BadMetadata {
                    path: path.to_path_buf(),
                    key: "general.alignment".into(),
                    problem: format!("{v:?}, expected a u32 power of two"),
                })
            }
        };

        let mut tensors = Vec::with_capacity(tensor_count);
        let mut names = std::collections::HashSet::with_capacity(tensor_count);
        for i in 0..tensor_count {
            let name = c.string(&format!("name of tensor #{i}"))?;
            let n_dims = c.u32(&format!("dimension count of tensor `{name}`"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.corrupt(format!("tensor `{name}` has {n_dims} dimensions, expected 1 to {MAX_DIMS}")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = c.u64(&format!("dimensions of tensor `{name}`"))?;
                dims.push(usize::try_from(d).unwrap_or(usize::MAX));
            }
            let ggml_type = GgmlType::from_u32(c.u32(&format!("type of tensor `{name}`"))?);
            let offset = c.u64(&format!("offset of tensor `{name}`"))?;
            let elements = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= bytes.len().saturating_mul(8))
                .ok_or_else(|| {
                    c.corrupt(format!("tensor `{name}`: dims {dims:?} are absurd for a {}-byte file", bytes.len()))
                })?;
            let n_bytes = match ggml_type.block_layout() {
                None => None,
                Some((block, _)) => {
                    if dims[0] % block != 0 {
                        return Err(c.corrupt(format!(
                            "tensor `{name}`: row length {} is not a multiple of the {} block size {block}",
                            dims[0],
                            ggml_type.name()
                        )));
                    }
                    ggml_type.bytes_for(elements)
                }
            };
            let offset = usize::try_from(offset).unwrap_or(usize::MAX);
            if offset % alignment != 0 {
                return Err(c.corrupt(format!(
                    "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(c.corrupt(format!("tensor `{name}` appears twice in the index")));
            }
            tensors.push(GgufTensor { name, dims, ggml_type, offset, n_bytes });
        }

        let data_offset = c.pos.div_ceil(alignment) * alignment;
        for t in &tensors {
            let Some(n) = t.n_bytes else { continue };
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(n));
            if end.is_none_or(|e| e > bytes.len()) {
                return Err(c.corrupt(format!(
                    "truncated: tensor `{}` ({} bytes at data offset {}) runs past the end of the file ({} bytes)",
                    t.name,
                    n,
                    t.offset,
                    bytes.len()
                )));
            }
        }

        Ok(GgufFile { path: path.to_path_buf(), version, metadata, tensors, alignment, data_offset, mmap })
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.mmap.len()
    }

    // === Metadata ===

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn bad(&self, key: &str, problem: String) -> Error {
        Error::BadMetadata { path: self.path.clone(), key: key.to_string(), problem }
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key).ok_or_else(|| self.bad(key, "missing".to_string()))
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, what: &str) -> Result<T> {
        let v = self.require(key)?;
        let i = v.as_integer().ok_or_else(|| self.bad(key, format!("is a {}, expected an integer", v.type_name())))?;
        T::try_from(i).map_err(|_| self.bad(key, format!("{i} does not fit in {what}")))
    }

    /// An integer key (any integer type in the file) as u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.integer(key, "u32")
    }
    /// An integer key as u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.integer(key, "u64")
    }
    /// An integer key as usize.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.integer(key, "usize")
    }
    /// An integer key as i64.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.integer(key, "i64")
    }

    /// A float key (f32, or f64 narrowed) as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match *self.require(key)? {
            MetaValue::F32(v) => Ok(v),
            MetaValue::F64(v) => Ok(v as f32),
            ref v => Err(self.bad(key, format!("is a {}, expected a float", v.type_name()))),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match *self.require(key)? {
            MetaValue::Bool(v) => Ok(v),
            ref v => Err(self.bad(key, format!("is a {}, expected a bool", v.type_name()))),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            MetaValue::String(s) => Ok(s),
            v => Err(self.bad(key, format!("is a {}, expected a string", v.type_name()))),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(self.bad(key, format!("is a {}, expected an array", v.type_name()))),
        }
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                MetaValue::String(s) => Ok(s.as_str()),
                v => Err(self.bad(key, format!("element {i} is a {}, expected a string", v.type_name()))),
            })
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    // === Tensors ===

    /// The index entry named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of `t` (validated to lie inside the file when it was opened).
    pub fn tensor_bytes(&self, t: &GgufTensor) -> Result<&[u8]> {
        let n = t.n_bytes.ok_or_else(|| Error::UnsupportedTensorType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            found: t.ggml_type.name(),
        })?;
        let start = self.data_offset + t.offset;
        Ok(&self.mmap[start..start + n])
    }

    /// Dequantizes `t` into `out` (`out.len()` must equal its element count). A NaN or infinite
    /// value or block scale is an [`Error::NonFiniteWeight`] naming the tensor and the block.
    pub fn dequantize_into(&self, t: &GgufTensor, out: &mut [f32]) -> Result<()> {
        if !t.ggml_type.is_dequantizable() {
            return Err(Error::UnsupportedTensorType {
                path: self.path.clone(),
                tensor: t.name.clone(),
                found: t.ggml_type.name(),
            });
        }
        if out.len() != t.elements() {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                tensor: t.name.clone(),
                expected: vec![out.len()],
                found: t.shape(),
            });
        }
        quant::dequantize(t.ggml_type, self.tensor_bytes(t)?, out, &self.path, &t.name)
    }

    /// Dequantizes elements `start .. start + out.len()` of `t` (flat, row-major) into `out`;
    /// `Ok(false)` when the range does not fall on whole quantization blocks (read it whole).
    pub fn dequantize_range_into(&self, t: &GgufTensor, start: usize, out: &mut [f32]) -> Result<bool> {
        let Some((block, block_bytes)) = t.ggml_type.block_layout() else { return Ok(false) };
        if !start.is_multiple_of(block) || !out.len().is_multiple_of(block) || start + out.len() > t.elements() {
            return Ok(false);
        }
        let bytes = self.tensor_bytes(t)?;
        let b0 = start / block * block_bytes;
        let b1 = b0 + out.len() / block * block_bytes;
        quant::dequantize_at(t.ggml_type, &bytes[b0..b1], out, &self.path, &t.name, start)?;
        Ok(true)
    }

    /// Lets the OS drop the resident pages of `t`'s data (they are re-read from the page cache
    /// on the next access), so that re-deriving θ0 does not keep the file in this process's RSS.
    pub fn release(&self, t: &GgufTensor) {
        if let Some(n) = t.n_bytes {
            // SAFETY: the map is read-only and file-backed: dropping its pages loses nothing, a
            // later read faults them back in from the file. A failure only leaves pages resident.
            let _ = unsafe {
                self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, self.data_offset + t.offset, n)
            };
        }
    }

    /// Dequantizes the tensor named `name` into a new vector.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor { path: self.path.clone(), tensor: name.to_string() })?;
        let mut out = vec![0.0; t.elements()];
        self.dequantize_into(t, &mut out)?;
        Ok(out)
    }
}

/// Reads GGUF metadata values with errors that name the file and the key.
pub(crate) struct MetaReader<'a> {
    pub path: &'a Path,
    pub metadata: &'a BTreeMap<String, MetaValue>,
}

impl<'a> MetaReader<'a> {
    pub fn bad(&self, key: &str, problem: impl Into<String>) -> Error {
        Error::BadMetadata { path: self.path.to_path_buf(), key: key.to_string(), problem: problem.into() }
    }

    pub fn get(&self, key: &str) -> Option<&'a MetaValue> {
        self.metadata.get(key)
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.bad(key, format!("expected a string, found {}", other.type_name()))),
        }
    }

    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.str_opt(key)?.ok_or_else(|| self.bad(key, "missing"))
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => meta_as_u64(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected a non-negative integer, found {}", v.type_name()))),
        }
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("expected a bool, found {}", other.type_name()))),
        }
    }

    pub fn string_array(&self, key: &str) -> Result<Vec<&'a str>> {
        match self.get(key) {
            None => Err(self.bad(key, "missing")),
            Some(MetaValue::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    MetaValue::String(s) => Ok(s.as_str()),
                    other => Err(self.bad(key, format!("element {i}: expected a string, found {}", other.type_name()))),
                })
                .collect(),
            Some(other) => Err(self.bad(key, format!("expected an array of strings, found {}", other.type_name()))),
        }
    }

    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>> {
        match self.get(key) {
            None => Err(self.bad(key, "missing")),
            Some(MetaValue::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    MetaValue::F32(x) => Ok(*x),
                    MetaValue::F64(x) => Ok(*x as f32),
                    other => Err(self.bad(key, format!("element {i}: expected a number, found {}", other.type_name()))),
                })
                .collect(),
            Some(other) => Err(self.bad(key, format!("expected an array of numbers, found {}", other.type_name()))),
        }
    }

    pub fn int_array_opt(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    meta_as_i64(v).ok_or_else(|| {
                        self.bad(key, format!("element {i}: expected an integer, found {}", v.type_name()))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.bad(key, format!("expected an array of integers, found {}", other.type_name()))),
        }
    }
}

fn meta_as_i64(v: &MetaValue) -> Option<i64> {
    v.as_integer().and_then(|x| i64::try_from(x).ok())
}

fn meta_as_u64(v: &MetaValue) -> Option<u64> {
    meta_as_i64(v).and_then(|x| u64::try_from(x).ok())
}
