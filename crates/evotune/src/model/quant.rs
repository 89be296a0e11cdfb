//! GGML tensor types and their dequantization to f32.
//!
//! One plain function per supported type, each with its block layout in the doc comment and the
//! formula it applies. Blocks are read from little-endian bytes with safe code (no transmutes);
//! the `#[repr(C)]` structs exist to document the layout and to pin its size at compile time.
//! Every element is computed independently, so splitting a tensor over threads gives bit-identical
//! results. The arithmetic order matches ggml's `dequantize_row_*` (and candle's `to_float`), so
//! results are bit-identical to theirs, not merely close.
//!
//! **Finiteness.** Every kernel also reports the first value that is not finite (NaN or ±∞), so a
//! corrupt file is an error naming the tensor and the block instead of silent garbage downstream.
//! Float types (F32, F16, BF16) check every element, folded into the copy loop. Quantized types
//! check only their f16 scales: with finite scales every output is finite (the largest product,
//! e.g. Q6_K's 65504·127·32, stays far below f32's range), and a non-finite scale makes its whole
//! block non-finite. The check reads no more memory than the conversion already does, and changes
//! no arithmetic.

use std::path::Path;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::quant_matrix::{QFormat, QMatrix};

/// A ggml tensor type, as numbered in `ggml.h` (`enum ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// Any other id (IQ* types, future types): readable in the index, not dequantizable.
    Other(u32),
}

impl GgmlType {
    /// Maps a `ggml_type` id; ids this crate does not know become [`GgmlType::Other`].
    pub fn from_u32(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// The `ggml_type` id.
    pub fn to_u32(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
            GgmlType::Other(id) => id,
        }
    }

    /// The name ggml uses (`Q4_K`, `BF16`, …).
    pub fn name(self) -> String {
        let s = match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::BF16 => "BF16",
            GgmlType::Other(id) => return format!("ggml type #{id}"),
        };
        s.to_string()
    }

    /// (elements per block, bytes per block), or `None` for an unknown type (its size cannot be
    /// computed, so such a tensor can be indexed but never read).
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 | GgmlType::I32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => (1, 2),
            GgmlType::I8 => (1, 1),
            GgmlType::I64 | GgmlType::F64 => (1, 8),
            GgmlType::Q4_0 => (QK, std::mem::size_of::<BlockQ4_0>()),
            GgmlType::Q4_1 => (QK, std::mem::size_of::<BlockQ4_1>()),
            GgmlType::Q5_0 => (QK, 22),
            GgmlType::Q5_1 => (QK, 24),
            GgmlType::Q8_0 => (QK, std::mem::size_of::<BlockQ8_0>()),
            GgmlType::Q8_1 => (QK, 36),
            GgmlType::Q2K => (QK_K, 84),
            GgmlType::Q3K => (QK_K, 110),
            GgmlType::Q4K => (QK_K, std::mem::size_of::<BlockQ4K>()),
            GgmlType::Q5K => (QK_K, 176),
            GgmlType::Q6K => (QK_K, std::mem::size_of::<BlockQ6K>()),
            GgmlType::Q8K => (QK_K, 292),
            GgmlType::Other(_) => return None,
        })
    }

    /// Bytes taken by `elements` values, `None` if the type is unknown, `elements` is not a whole
    /// number of blocks, or the size overflows.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        let (block, bytes) = self.block_layout()?;
        if !elements.is_multiple_of(block) {
            return None;
        }
        (elements / block).checked_mul(bytes)
    }

    /// Whether [`dequantize`] handles this type.
    pub fn is_dequantizable(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q8_0
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q4K
                | GgmlType::Q6K
        )
    }
}

/// Elements per block of the legacy quants (Q4_0, Q4_1, Q8_0).
pub const QK: usize = 32;
/// Elements per super-block of the k-quants (Q4_K, Q6_K).
pub const QK_K: usize = 256;

/// Q4_0: 32 weights, one f16 scale, 4-bit codes centred on 8.
#[repr(C)]
pub struct BlockQ4_0 {
    /// scale d
    pub d: f16,
    /// byte j holds code j (low nibble) and code j+16 (high nibble)
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 weights, f16 scale and offset, 4-bit codes.
#[repr(C)]
pub struct BlockQ4_1 {
    /// scale d
    pub d: f16,
    /// offset m (the block minimum)
    pub m: f16,
    /// byte j holds code j (low nibble) and code j+16 (high nibble)
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q8_0: 32 weights, one f16 scale, signed 8-bit codes.
#[repr(C)]
pub struct BlockQ8_0 {
    /// scale d
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Q4_K: 256 weights in 8 sub-blocks of 32; each sub-block has a 6-bit scale and a 6-bit min,
/// themselves scaled by the super-block's f16 `d` and `dmin`.
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// 8 (scale, min) pairs of 6 bits packed in 12 bytes, see [`q4k_scale_min`].
    pub scales: [u8; 12],
    /// 4-bit codes: bytes 32c..32c+32 hold sub-block 2c (low nibbles) and 2c+1 (high nibbles).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q6_K: 256 weights in 16 sub-blocks of 16, each with a signed 8-bit scale, times the f16 `d`.
#[repr(C)]
pub struct BlockQ6K {
    /// low 4 bits of the 6-bit codes
    pub ql: [u8; QK_K / 2],
    /// high 2 bits of the codes, four codes per byte
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The first non-finite value of `out` (slow path, run only once the fast check failed).
fn first_nonfinite(out: &[f32]) -> Option<usize> {
    out.iter().position(|x| !x.is_finite())
}

// Every kernel returns `None` when all it wrote is finite, else `Some(i)`: for a float type, `i` is
// the index in `out` of the first non-finite element; for a quantized type, the index of the first
// block whose scale (or offset) is non-finite.

/// A float type of `B` bytes per value, widened by `to_f32`; checks finiteness in the same pass.
#[inline(always)]
fn widen<const B: usize>(data: &[u8], out: &mut [f32], to_f32: impl Fn([u8; B]) -> f32) -> Option<usize> {
    let mut finite = true;
    for (y, b) in out.iter_mut().zip(data.chunks_exact(B)) {
        let v = to_f32(b.try_into().expect("chunks_exact gives B bytes"));
        finite &= v.is_finite();
        *y = v;
    }
    if finite {
        None
    } else {
        first_nonfinite(out)
    }
}

/// F32: little-endian IEEE single, copied.
pub fn dequantize_f32(data: &[u8], out: &mut [f32]) -> Option<usize> {
    widen(data, out, f32::from_le_bytes)
}

/// F16: little-endian IEEE half, widened exactly.
pub fn dequantize_f16(data: &[u8], out: &mut [f32]) -> Option<usize> {
    widen(data, out, |b| f16::from_le_bytes(b).to_f32())
}

/// BF16: the top 16 bits of an f32, widened exactly.
pub fn dequantize_bf16(data: &[u8], out: &mut [f32]) -> Option<usize> {
    widen(data, out, |b| bf16::from_le_bytes(b).to_f32())
}

/// Q8_0 ([`BlockQ8_0`], 34 bytes: `d: f16, qs: [i8; 32]`): `y[j] = qs[j]·d`.
pub fn dequantize_q8_0(data: &[u8], out: &mut [f32]) -> Option<usize> {
    for (i, (y, b)) in out.chunks_exact_mut(QK).zip(data.chunks_exact(34)).enumerate() {
        let d = f16_at(b, 0);
        if !d.is_finite() {
            return Some(i);
        }
        for (j, y) in y.iter_mut().enumerate() {
            *y = (b[2 + j] as i8) as f32 * d;
        }
    }
    None
}

/// Q4_0 ([`BlockQ4_0`], 18 bytes: `d: f16, qs: [u8; 16]`):
/// `y[j] = (lo(qs[j]) − 8)·d`, `y[j+16] = (hi(qs[j]) − 8)·d` for j < 16.
pub fn dequantize_q4_0(data: &[u8], out: &mut [f32]) -> Option<usize> {
    for (i, (y, b)) in out.chunks_exact_mut(QK).zip(data.chunks_exact(18)).enumerate() {
        let d = f16_at(b, 0);
        if !d.is_finite() {
            return Some(i);
        }
        let qs = &b[2..18];
        for j in 0..QK / 2 {
            y[j] = ((qs[j] & 0x0F) as i16 - 8) as f32 * d;
            y[j + QK / 2] = ((qs[j] >> 4) as i16 - 8) as f32 * d;
        }
    }
    None
}

/// Q4_1 ([`BlockQ4_1`], 20 bytes: `d: f16, m: f16, qs: [u8; 16]`):
/// `y[j] = lo(qs[j])·d + m`, `y[j+16] = hi(qs[j])·d + m` for j < 16.
pub fn dequantize_q4_1(data: &[u8], out: &mut [f32]) -> Option<usize> {
    for (i, (y, b)) in out.chunks_exact_mut(QK).zip(data.chunks_exact(20)).enumerate() {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        if !(d.is_finite() && m.is_finite()) {
            return Some(i);
        }
        let qs = &b[4..20];
        for j in 0..QK / 2 {
            y[j] = (qs[j] & 0x0F) as f32 * d + m;
            y[j + QK / 2] = (qs[j] >> 4) as f32 * d + m;
        }
    }
    None
}

/// The 6-bit (scale, min) of sub-block `j` (0..8) of a Q4_K/Q5_K block, from its 12 packed bytes:
/// sub-blocks 0..4 sit in the low 6 bits of bytes j and j+4; sub-blocks 4..8 take their low 4 bits
/// from byte j+4 (low/high nibble) and their top 2 bits from the spare top bits of bytes j−4 / j.
pub fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        let sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc, m)
    }
}

/// Q4_K ([`BlockQ4K`], 144 bytes: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`).
/// For each pair of sub-blocks c = 0..4 (64 weights, codes in bytes `qs[32c..32c+32]`), with
/// (sc, m) = [`q4k_scale_min`]:
/// `y[64c + l]      = (d·sc₂c)·lo(q[l]) − dmin·m₂c`,
/// `y[64c + 32 + l] = (d·sc₂c₊₁)·hi(q[l]) − dmin·m₂c₊₁`, l < 32.
pub fn dequantize_q4k(data: &[u8], out: &mut [f32]) -> Option<usize> {
    for (i, (y, b)) in out.chunks_exact_mut(QK_K).zip(data.chunks_exact(144)).enumerate() {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        if !(d.is_finite() && dmin.is_finite()) {
            return Some(i);
        }
        let scales = &b[4..16];
        let qs = &b[16..144];
        for c in 0..4 {
            let q = &qs[32 * c..32 * c + 32];
            let (sc1, m1) = q4k_scale_min(2 * c, scales);
            let (sc2, m2) = q4k_scale_min(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let y = &mut y[64 * c..64 * c + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                y[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
    None
}

/// Q6_K ([`BlockQ6K`], 210 bytes: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`).
/// Each half h = 0..2 (128 weights) uses `ql[64h..64h+64]`, `qh[32h..32h+32]`, `scales[8h..8h+8]`;
/// for l < 32, with the 6-bit code minus 32 built from a nibble of `ql` and two bits of `qh[l]`:
/// ```text
/// q0 = lo(ql[l])    | bits 0-1 of qh[l] << 4   →  y[l]      = (d·sc[l/16])·(q0 − 32)
/// q1 = lo(ql[l+32]) | bits 2-3 of qh[l] << 4   →  y[l + 32] = (d·sc[l/16 + 2])·(q1 − 32)
/// q2 = hi(ql[l])    | bits 4-5 of qh[l] << 4   →  y[l + 64] = (d·sc[l/16 + 4])·(q2 − 32)
/// q3 = hi(ql[l+32]) | bits 6-7 of qh[l] << 4   →  y[l + 96] = (d·sc[l/16 + 6])·(q3 − 32)
/// ```
pub fn dequantize_q6k(data: &[u8], out: &mut [f32]) -> Option<usize> {
    for (i, (y, b)) in out.chunks_exact_mut(QK_K).zip(data.chunks_exact(210)).enumerate() {
        let d = f16_at(b, 208);
        if !d.is_finite() {
            return Some(i);
        }
        for h in 0..2 {
            let ql = &b[64 * h..64 * h + 64];
            let qh = &b[128 + 32 * h..128 + 32 * h + 32];
            let sc = &b[192 + 8 * h..192 + 8 * h + 8];
            let y = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q0 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * (sc[is] as i8) as f32 * q0 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q1 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q2 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q3 as f32;
            }
        }
    }
    None
}

/// Blocks per parallel task: large enough to amortise scheduling, small enough to balance 2..64
/// threads. Results do not depend on it (every element is computed independently).
const BLOCKS_PER_TASK: usize = 1024;
/// Fewest elements per parallel task (float types have one-element blocks).
const MIN_ELEMENTS_PER_TASK: usize = 1 << 14;

/// Dequantizes `data` (tensor `tensor` of file `path`, type `ty`) into `out`, in parallel over
/// blocks. Errors: [`Error::UnsupportedTensorType`] for a type without a dequantizer,
/// [`Error::CorruptModel`] when `out.len()` is not a whole number of blocks or `data` is not exactly
/// the bytes those blocks need, and [`Error::NonFiniteWeight`] (naming the first bad block or
/// element) when a value or a block scale is NaN or infinite.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32], path: &Path, tensor: &str) -> Result<()> {
    dequantize_at(ty, data, out, path, tensor, 0)
}

/// [`dequantize`] of a piece of a tensor whose first element is element `first` of the tensor
/// (so that an error gives the index in the whole tensor).
pub fn dequantize_at(
    ty: GgmlType,
    data: &[u8],
    out: &mut [f32],
    path: &Path,
    tensor: &str,
    first: usize,
) -> Result<()> {
    if !ty.is_dequantizable() {
        return Err(Error::UnsupportedTensorType {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            found: ty.name(),
        });
    }
    let (block, block_bytes) = ty.block_layout().expect("dequantizable types have a block layout");
    let expected = ty.bytes_for(out.len());
    if expected != Some(data.len()) {
        return Err(Error::CorruptModel {
            path: path.to_path_buf(),
            problem: format!(
                "tensor `{tensor}`: {} values of type {} need {} bytes (whole blocks of {block}), found {} bytes",
                out.len(),
                ty.name(),
                expected.map_or("an invalid number of".to_string(), |b| b.to_string()),
                data.len()
            ),
        });
    }
    let kernel: fn(&[u8], &mut [f32]) -> Option<usize> = match ty {
        GgmlType::F32 => dequantize_f32,
        GgmlType::F16 => dequantize_f16,
        GgmlType::BF16 => dequantize_bf16,
        GgmlType::Q8_0 => dequantize_q8_0,
        GgmlType::Q4_0 => dequantize_q4_0,
        GgmlType::Q4_1 => dequantize_q4_1,
        GgmlType::Q4K => dequantize_q4k,
        GgmlType::Q6K => dequantize_q6k,
        _ => unreachable!("checked by is_dequantizable"),
    };
    let blocks_per_task = BLOCKS_PER_TASK.max(MIN_ELEMENTS_PER_TASK / block);
    // The first bad block (or element, for float types) over all tasks: deterministic.
    let bad = out
        .par_chunks_mut(blocks_per_task * block)
        .zip(data.par_chunks(blocks_per_task * block_bytes))
        .enumerate()
        .filter_map(|(k, (y, b))| kernel(b, y).map(|i| k * blocks_per_task + i))
        .min();
    match bad {
        None => Ok(()),
        Some(i) => Err(nonfinite_error(ty, data, out, path, tensor, first, i)),
    }
}

/// The error for the non-finite block or element `i` (in units of `ty`'s blocks) of `data`.
fn nonfinite_error(ty: GgmlType, data: &[u8], out: &[f32], path: &Path, tensor: &str, first: usize, i: usize) -> Error {
    let (block, block_bytes) = ty.block_layout().expect("dequantizable types have a block layout");
    let (location, value) = if block == 1 {
        (format!("element {}", first + i), out[i])
    } else {
        let b = &data[i * block_bytes..(i + 1) * block_bytes];
        // (name, byte offset) of the block's f16 scales, in the order the kernel checks them.
        let fields: &[(&str, usize)] = match ty {
            GgmlType::Q4_1 => &[("scale d", 0), ("offset m", 2)],
            GgmlType::Q4K => &[("scale d", 0), ("scale dmin", 2)],
            GgmlType::Q6K => &[("scale d", 208)],
            _ => &[("scale d", 0)],
        };
        let &(name, at) = fields.iter().find(|&&(_, at)| !f16_at(b, at).is_finite()).unwrap_or(&fields[0]);
        let start = first + i * block;
        let n = start / block;
        (format!("{} block {n} (elements {start}..{}), {name}", ty.name(), start + block), f16_at(b, at))
    };
    Error::NonFiniteWeight { path: path.to_path_buf(), tensor: tensor.to_string(), location, value }
}

/// The [`QFormat`] a GGML type runs as on the quantized path without conversion.
pub fn native_qformat(ty: GgmlType) -> Option<QFormat> {
    match ty {
        GgmlType::Q8_0 => Some(QFormat::Q8_0),
        GgmlType::Q4_0 => Some(QFormat::Q4_0),
        GgmlType::Q4_1 => Some(QFormat::Q4_1),
        _ => None,
    }
}

/// Packs a (rows, cols) Q8_0/Q4_0/Q4_1 tensor's blocks into a [`QMatrix`] without decoding them:
/// row r of the matrix is row `src_row(r)` of the file (the loader's Q/K un-permutation). A
/// non-finite scale or min is an [`Error::NonFiniteWeight`] naming the block, as in
/// [`dequantize`].
pub fn pack_qmatrix(
    ty: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
    src_row: impl Fn(usize) -> usize,
    path: &Path,
    tensor: &str,
) -> Result<QMatrix> {
    let format = native_qformat(ty).expect("pack_qmatrix takes Q8_0, Q4_0 or Q4_1");
    let (_, block_bytes) = ty.block_layout().expect("legacy quants have a block layout");
    let nb = cols / QK;
    if !cols.is_multiple_of(QK) || ty.bytes_for(rows * cols) != Some(data.len()) {
        return Err(Error::CorruptModel {
            path: path.to_path_buf(),
            problem: format!("tensor `{tensor}`: {} bytes do not hold {rows}×{cols} {} values", data.len(), ty.name()),
        });
    }
    let mut bad: Option<(usize, usize)> = None; // (file row, block)
    let packed = QMatrix::from_rows(format, rows, cols, |r, codes, d, m| {
        let fr = src_row(r);
        for b in 0..nb {
            let blk = &data[(fr * nb + b) * block_bytes..][..block_bytes];
            let f16_bits = |at: usize| u16::from_le_bytes([blk[at], blk[at + 1]]);
            d[b] = f16_bits(0);
            let c = &mut codes[b * QK..(b + 1) * QK];
            let finite = match format {
                QFormat::Q8_0 => {
                    c.copy_from_slice(&blk[2..34]);
                    f16::from_bits(d[b]).is_finite()
                }
                QFormat::Q4_0 | QFormat::Q4_1 => {
                    let qs = if format == QFormat::Q4_1 { &blk[4..20] } else { &blk[2..18] };
                    for j in 0..QK / 2 {
                        c[j] = qs[j] & 0x0F;
                        c[j + QK / 2] = qs[j] >> 4;
                    }
                    if format == QFormat::Q4_1 {
                        m[b] = f16_bits(2);
                    }
                    f16::from_bits(d[b]).is_finite() && (format == QFormat::Q4_0 || f16::from_bits(m[b]).is_finite())
                }
            };
            if !finite && bad.is_none() {
                bad = Some((fr, b));
            }
        }
    });
    if let Some((fr, b)) = bad {
        let i = fr * nb + b;
        let scratch = [0.0f32; QK];
        return Err(nonfinite_error(
            ty,
            &data[i * block_bytes..(i + 1) * block_bytes],
            &scratch,
            path,
            tensor,
            i * QK,
            0,
        ));
    }
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.gguf")
    }

    #[test]
    fn q4_0_hand_computed_block() {
        // d = 0.5; code j (low nibble) = j % 16, code j+16 (high nibble) = 15 - j % 16.
        let mut b = f16::from_f32(0.5).to_le_bytes().to_vec();
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let mut y = [0.0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut y, p(), "t").unwrap();
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], (15.0 - j as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_1_and_q8_0_hand_computed_blocks() {
        let mut b = f16::from_f32(0.25).to_le_bytes().to_vec();
        b.extend(f16::from_f32(-1.0).to_le_bytes());
        b.extend((0..16u8).map(|j| j | (3 << 4)));
        let mut y = [0.0f32; 32];
        dequantize(GgmlType::Q4_1, &b, &mut y, p(), "t").unwrap();
        assert_eq!(y[5], 5.0 * 0.25 - 1.0);
        assert_eq!(y[21], 3.0 * 0.25 - 1.0);

        let mut b = f16::from_f32(2.0).to_le_bytes().to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        dequantize(GgmlType::Q8_0, &b, &mut y, p(), "t").unwrap();
        assert_eq!(y[0], -32.0);
        assert_eq!(y[31], 30.0);
    }

    #[test]
    fn q4k_scale_min_unpacks_high_sub_blocks() {
        // Sub-block 5: low 4 bits of scale in byte 9 low nibble (0xA), top 2 bits in byte 1 (0b11);
        // low 4 bits of min in byte 9 high nibble (0x3), top 2 bits in byte 5 (0b01).
        let mut s = [0u8; 12];
        s[9] = 0x3A;
        s[1] = 0b1100_0000 | 7;
        s[5] = 0b0100_0000 | 9;
        assert_eq!(q4k_scale_min(5, &s), (0x3A & 0x0F | (3 << 4), 0x3 | (1 << 4)));
        assert_eq!(q4k_scale_min(1, &s), (7, 9));
    }

    #[test]
    fn unsupported_and_wrong_sizes_are_errors() {
        let mut y = [0.0f32; 32];
        let e = dequantize(GgmlType::Q5_0, &[0u8; 22], &mut y, p(), "blk.0.attn_q.weight").unwrap_err();
        assert!(matches!(e, Error::UnsupportedTensorType { ref found, .. } if found == "Q5_0"), "{e}");
        assert!(e.to_string().contains("blk.0.attn_q.weight"));
        let e = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut y, p(), "x").unwrap_err();
        assert!(matches!(e, Error::CorruptModel { .. }), "{e}");
        let mut y = [0.0f32; 31];
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], &mut y, p(), "x").is_err());
    }

    /// Bytes of `n` blocks of `ty` with every scale 1.0 and codes from a counter, and the byte
    /// offsets of one block's f16 scales.
    fn blocks(ty: GgmlType, n: usize) -> (Vec<u8>, Vec<usize>) {
        let (_, bytes) = ty.block_layout().unwrap();
        let scales: Vec<usize> = match ty {
            GgmlType::Q4_1 | GgmlType::Q4K => vec![0, 2],
            GgmlType::Q6K => vec![208],
            GgmlType::F32 => vec![],
            _ => vec![0],
        };
        let mut b: Vec<u8> = (0..n * bytes).map(|i| (i * 37 % 251) as u8).collect();
        if ty == GgmlType::F32 {
            for (i, c) in b.chunks_exact_mut(4).enumerate() {
                c.copy_from_slice(&(i as f32 * 0.5).to_le_bytes());
            }
        } else if ty == GgmlType::F16 || ty == GgmlType::BF16 {
            for (i, c) in b.chunks_exact_mut(2).enumerate() {
                let v = if ty == GgmlType::F16 {
                    f16::from_f32(i as f32).to_bits()
                } else {
                    bf16::from_f32(i as f32).to_bits()
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        } else {
            for blk in b.chunks_exact_mut(bytes) {
                for &at in &scales {
                    blk[at..at + 2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
                }
            }
        }
        (b, scales)
    }

    #[test]
    fn nonfinite_scales_and_values_name_tensor_block_and_field() {
        let types = [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q4K,
            GgmlType::Q6K,
        ];
        // More blocks than one parallel task holds, so that the bad block is found across tasks.
        for ty in types {
            let (block, bytes) = ty.block_layout().unwrap();
            let n = 2 * BLOCKS_PER_TASK.max(MIN_ELEMENTS_PER_TASK / block) + 3;
            let (good, scales) = blocks(ty, n);
            let mut y = vec![0.0f32; n * block];
            dequantize(ty, &good, &mut y, p(), "t").unwrap();
            assert!(y.iter().all(|x| x.is_finite()), "{ty:?}");
            for bad in [f16::NAN, f16::INFINITY, f16::NEG_INFINITY] {
                // Blocks k1 < k2 both bad: the error names k1, whichever task finishes first.
                let (k1, k2) = (n - 2, n - 1);
                let fields: Vec<(usize, &str)> = if block == 1 {
                    vec![(0, "element")]
                } else {
                    scales
                        .iter()
                        .map(|&at| {
                            (
                                at,
                                if at == 2 && ty == GgmlType::Q4_1 {
                                    "offset m"
                                } else if at == 2 {
                                    "scale dmin"
                                } else {
                                    "scale d"
                                },
                            )
                        })
                        .collect()
                };
                for &(at, name) in &fields {
                    let mut data = good.clone();
                    for k in [k1, k2] {
                        let at = k * bytes + at;
                        match ty {
                            GgmlType::F32 => data[at..at + 4].copy_from_slice(&bad.to_f32().to_le_bytes()),
                            GgmlType::BF16 => {
                                data[at..at + 2].copy_from_slice(&bf16::from_f32(bad.to_f32()).to_le_bytes())
                            }
                            _ => data[at..at + 2].copy_from_slice(&bad.to_le_bytes()),
                        }
                    }
                    let e = dequantize(ty, &data, &mut y, p(), "blk.7.ffn_up.weight").unwrap_err();
                    let Error::NonFiniteWeight { ref tensor, ref location, value, .. } = e else { panic!("{e}") };
                    assert_eq!(tensor, "blk.7.ffn_up.weight");
                    assert_eq!(value.is_nan(), bad.is_nan(), "{e}");
                    let msg = e.to_string();
                    assert!(msg.contains("test.gguf") && msg.contains("blk.7.ffn_up.weight"), "{msg}");
                    if block == 1 {
                        assert_eq!(location, &format!("element {k1}"), "{msg}");
                    } else {
                        assert!(location.contains(&format!("block {k1} ")) && location.ends_with(name), "{msg}");
                    }
                    // A piece read from element `first` on reports indices in the whole tensor.
                    let first = 5 * block;
                    let e = dequantize_at(ty, &data, &mut y, p(), "t", first).unwrap_err().to_string();
                    let want =
                        if block == 1 { format!("element {}", first + k1) } else { format!("block {} ", 5 + k1) };
                    assert!(e.contains(&want), "{e}");
                }
            }
        }
    }

    #[test]
    fn ids_round_trip() {
        for id in 0..40 {
            assert_eq!(GgmlType::from_u32(id).to_u32(), id);
        }
    }
}
