//! GGUF reader: header, metadata, tensor index (memory-mapped).
//!
//! STUB: filled in by the model-io work. `MetaValue` and `GgufFile::metadata` are the contract the
//! tokenizer reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// An opened GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub metadata: BTreeMap<String, MetaValue>,
}
