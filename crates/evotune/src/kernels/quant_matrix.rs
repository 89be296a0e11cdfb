//! A quantized weight matrix kept in its block format, laid out for the integer kernels.
//!
//! Three formats, each a block of 32 weights of one row with f16 scale `d` (and min `m`):
//!
//! | format | code c          | weight value      | as GGML |
//! |--------|-----------------|-------------------|---------|
//! | Q8_0   | i8, −128..=127  | d·c               | same    |
//! | Q4_0   | u4, 0..=15      | d·(c − 8)         | same    |
//! | Q4_1   | u4, 0..=15      | d·c + m           | same    |
//!
//! **Layout.** Rows are taken in groups of [`GROUP`] (16; the last group is padded with zero
//! codes and zero scales). A group stores its blocks in order; block b of a group holds
//!
//! ```text
//! codes   Q8_0: 8 chunks of 64 bytes; chunk q, byte 4r + i = c[r][32b + 4q + i]
//!         Q4_*: 4 chunks of 64 bytes; chunk j, byte 4r + i = c[r][32b + 8j + i]       (low nibble)
//!                                                          | c[r][32b + 8j + 4 + i] << 4 (high)
//! d       16 × f16, row r at r
//! m       16 × f16 (Q4_1 only)
//! ```
//!
//! so the four codes of one row at one "quad" of k are one 32-bit lane, and one 64-byte chunk
//! holds that quad for all 16 rows: a 16-lane (AVX-512) or two 8-lane (AVX2) integer
//! multiply-adds against one broadcast quad of the activation accumulate each row's block sum in
//! its own lane, with no horizontal reduction. The bytes per block equal GGML's (e.g. Q4_1: 16 ×
//! 20), and one group is one contiguous stream.

use half::f16;

use super::row_of::RowOf;

/// Weights per block.
pub const QK: usize = 32;
/// Rows per group (the lanes of a 512-bit integer register).
pub const GROUP: usize = 16;

/// A block format of [`QMatrix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QFormat {
    Q8_0,
    Q4_0,
    Q4_1,
}

impl QFormat {
    /// Bytes of codes of one block of a whole group.
    pub const fn code_bytes(self) -> usize {
        match self {
            QFormat::Q8_0 => GROUP * QK,
            QFormat::Q4_0 | QFormat::Q4_1 => GROUP * QK / 2,
        }
    }
    /// Bytes of one block of a whole group: codes, d, and m for Q4_1.
    pub const fn block_bytes(self) -> usize {
        self.code_bytes() + GROUP * 2 * if matches!(self, QFormat::Q4_1) { 2 } else { 1 }
    }
    /// The largest code (codes run from 0, or from −128 for Q8_0).
    pub const fn max_code(self) -> i32 {
        match self {
            QFormat::Q8_0 => 127,
            QFormat::Q4_0 | QFormat::Q4_1 => 15,
        }
    }
    /// The smallest code.
    pub const fn min_code(self) -> i32 {
        match self {
            QFormat::Q8_0 => -128,
            QFormat::Q4_0 | QFormat::Q4_1 => 0,
        }
    }
    /// GGML's name.
    pub fn name(self) -> &'static str {
        match self {
            QFormat::Q8_0 => "Q8_0",
            QFormat::Q4_0 => "Q4_0",
            QFormat::Q4_1 => "Q4_1",
        }
    }
}

/// An (O, K) weight matrix in [`QFormat`] blocks, in the group layout of the module doc.
#[derive(Clone, PartialEq)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({}, {}×{})", self.format.name(), self.rows, self.cols)
    }
}

/// One row's blocks as a loader reads them from a file: codes (one per weight; Q8_0 codes as
/// their i8 bit pattern), and per block the scale and (Q4_1) min as f16 bits.
pub struct RowBlocks<'a> {
    pub codes: &'a [u8],
    pub d: &'a [u16],
    pub m: &'a [u16],
}

impl QMatrix {
    /// Builds the matrix row by row: `row(r, codes, d, m)` fills row r's K codes, K/32 scales and
    /// (Q4_1) K/32 mins. Panics if K is not a multiple of 32 or a 4-bit code exceeds 15 (callers
    /// check the shape and read codes from nibbles).
    pub fn from_rows(
        format: QFormat,
        rows: usize,
        cols: usize,
        mut row: impl FnMut(usize, &mut [u8], &mut [u16], &mut [u16]),
    ) -> QMatrix {
        assert!(cols.is_multiple_of(QK), "QMatrix: K = {cols} is not a multiple of {QK}");
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let mut data = vec![0u8; groups * nb * format.block_bytes()];
        let (mut codes, mut d, mut m) = (vec![0u8; cols], vec![0u16; nb], vec![0u16; nb]);
        for r in 0..rows {
            row(r, &mut codes, &mut d, &mut m);
            let (g, lane) = (r / GROUP, r % GROUP);
            for b in 0..nb {
                let blk = &mut data[(g * nb + b) * format.block_bytes()..][..format.block_bytes()];
                let c = &codes[b * QK..(b + 1) * QK];
                match format {
                    QFormat::Q8_0 => {
                        for (q, quad) in c.chunks_exact(4).enumerate() {
                            blk[q * 64 + 4 * lane..][..4].copy_from_slice(quad);
                        }
                    }
                    QFormat::Q4_0 | QFormat::Q4_1 => {
                        for j in 0..4 {
                            for i in 0..4 {
                                let (lo, hi) = (c[8 * j + i], c[8 * j + 4 + i]);
                                assert!(lo < 16 && hi < 16, "QMatrix: 4-bit code out of range");
                                blk[j * 64 + 4 * lane + i] = lo | hi << 4;
                            }
                        }
                    }
                }
                let cb = format.code_bytes();
                blk[cb + 2 * lane..][..2].copy_from_slice(&d[b].to_le_bytes());
                if format == QFormat::Q4_1 {
                    blk[cb + 2 * GROUP + 2 * lane..][..2].copy_from_slice(&m[b].to_le_bytes());
                }
            }
        }
        QMatrix { format, rows, cols, data }
    }

    /// Quantizes an f32 (O, K) matrix to Q8_0 as GGML's reference does: per block
    /// d = max|w|/127 (stored as f16), c = round(w/d) (ties away from zero).
    pub fn quantize_q8_0(w: &[f32], rows: usize, cols: usize) -> QMatrix {
        assert_eq!(w.len(), rows * cols, "quantize_q8_0: bad length");
        QMatrix::from_rows(QFormat::Q8_0, rows, cols, |r, codes, d, _| {
            for (b, x) in w[r * cols..(r + 1) * cols].chunks_exact(QK).enumerate() {
                let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                d[b] = f16::from_f32(scale).to_bits();
                for (c, &v) in codes[b * QK..(b + 1) * QK].iter_mut().zip(x) {
                    *c = ((v * inv).round() as i32).clamp(-128, 127) as i8 as u8;
                }
            }
        })
    }

    pub fn format(&self) -> QFormat {
        self.format
    }
    /// O.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// K.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.cols / QK
    }
    /// Row groups (O rounded up to [`GROUP`]).
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    /// Every byte held: the groups in order.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The bytes of group g: its blocks in order, [`QFormat::block_bytes`] each.
    #[inline]
    pub fn group(&self, g: usize) -> &[u8] {
        let n = self.blocks() * self.format.block_bytes();
        &self.data[g * n..(g + 1) * n]
    }

    /// The code of weight (r, k) (Q8_0: as i8).
    #[inline]
    pub fn code(&self, r: usize, k: usize) -> i32 {
        self.code_in(self.data[self.code_byte(r, k)], k)
    }

    /// The code of a weight at k (or any index ≡ k mod 8) held in `byte`, its [`QMatrix::code_byte`].
    #[inline]
    fn code_in(&self, byte: u8, k: usize) -> i32 {
        match self.format {
            QFormat::Q8_0 => byte as i8 as i32,
            QFormat::Q4_0 | QFormat::Q4_1 => (if k % 8 < 4 { byte & 0x0F } else { byte >> 4 }) as i32,
        }
    }

    /// Where in the data the code of weight (r, k) lies: its byte (a 4-bit code is the low nibble
    /// for k mod 8 < 4, else the high one).
    #[inline]
    fn code_byte(&self, r: usize, k: usize) -> usize {
        let bb = self.format.block_bytes();
        let (b, kk) = (k / QK, k % QK);
        let at = (r / GROUP * self.blocks() + b) * bb + 4 * (r % GROUP);
        match self.format {
            QFormat::Q8_0 => at + (kk / 4) * 64 + kk % 4,
            QFormat::Q4_0 | QFormat::Q4_1 => at + (kk / 8) * 64 + kk % 4,
        }
    }

    /// The codes (as i8: every format's codes fit) at row-major positions r·K + k, in the order
    /// given. A few per thousand positions scattered over a matrix larger than the caches are
    /// mostly cache misses, so each lookup prefetches the line of the one [`LOOKUP_AHEAD`] later.
    pub fn codes_at(&self, positions: &[u32]) -> Vec<i8> {
        // K is a multiple of 32, so k ≡ i mod 8.
        self.looked_up(positions, |r, k| self.code_byte(r, k), |i, at| self.code_in(self.data[at], i as usize) as i8)
    }

    /// The scale d of the block of each row-major position r·K + k, in the order given, with the
    /// prefetch of [`QMatrix::codes_at`].
    pub fn scales_at(&self, positions: &[u32]) -> Vec<f32> {
        self.looked_up(positions, |r, k| self.scale_byte(r, k / QK), |_, at| self.f16_at(at))
    }

    /// `read(i, at)` for each row-major position i = r·K + k, at = `offset(r, k)` its byte in the
    /// data, in the order given; the byte of the lookup [`LOOKUP_AHEAD`] later is prefetched, and
    /// rows come by multiply-high.
    fn looked_up<T>(
        &self,
        positions: &[u32],
        offset: impl Fn(usize, usize) -> usize,
        read: impl Fn(u32, usize) -> T,
    ) -> Vec<T> {
        let row_of = RowOf::new(self.cols);
        let at = |i: u32| {
            let r = row_of.of(i as usize);
            offset(r, i as usize - r * self.cols)
        };
        let mut out = Vec::with_capacity(positions.len());
        for (j, &i) in positions.iter().enumerate() {
            if let Some(&ahead) = positions.get(j + LOOKUP_AHEAD) {
                prefetch(&self.data[at(ahead)]);
            }
            out.push(read(i, at(i)));
        }
        out
    }

    /// Sets the code of weight (r, k) to c (Q8_0: −128..=127, 4-bit: 0..=15).
    ///
    /// # Panics
    /// If c is outside the format's range or (r, k) outside the matrix.
    pub fn set_code(&mut self, r: usize, k: usize, c: i32) {
        assert!(r < self.rows && k < self.cols, "set_code: ({r}, {k}) outside {}×{}", self.rows, self.cols);
        assert!((self.format.min_code()..=self.format.max_code()).contains(&c), "set_code: code {c} out of range");
        let at = self.code_byte(r, k);
        let byte = &mut self.data[at];
        match self.format {
            QFormat::Q8_0 => *byte = c as i8 as u8,
            QFormat::Q4_0 | QFormat::Q4_1 if k % 8 < 4 => *byte = (*byte & 0xF0) | c as u8,
            QFormat::Q4_0 | QFormat::Q4_1 => *byte = (*byte & 0x0F) | (c as u8) << 4,
        }
    }

    /// The codes where `self` differs from `base` (same format and shape) as (row, k, code): blocks
    /// whose code bytes are equal are skipped whole, and in the others each row's 4-byte words
    /// (8 codes of Q4, 4 of Q8_0) are compared before their codes are decoded, so moved codes cost
    /// a compare of the bytes, not a decode of every code. Order: group, block, row, k.
    pub fn changed_codes(&self, base: &QMatrix) -> Vec<(usize, usize, i32)> {
        assert!(
            self.format == base.format && self.rows == base.rows && self.cols == base.cols,
            "changed_codes: {self:?} vs {base:?}"
        );
        let (bb, cb) = (self.format.block_bytes(), self.format.code_bytes());
        let mut out = Vec::new();
        for g in 0..self.groups() {
            let (a, b) = (self.group(g), base.group(g));
            for blk in 0..self.blocks() {
                let at = blk * bb;
                if a[at..at + cb] == b[at..at + cb] {
                    continue;
                }
                // Word w of row r (at w·64 + 4·(r mod 16) in the block) holds codes kw·w .. kw·(w + 1).
                let words = cb / (4 * GROUP);
                let kw = QK / words;
                for r in g * GROUP..((g + 1) * GROUP).min(self.rows) {
                    for w in 0..words {
                        let word = at + w * 4 * GROUP + 4 * (r % GROUP);
                        if a[word..word + 4] == b[word..word + 4] {
                            continue;
                        }
                        for k in blk * QK + w * kw..blk * QK + (w + 1) * kw {
                            let c = self.code(r, k);
                            if c != base.code(r, k) {
                                out.push((r, k, c));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Scale d and min m (0 unless Q4_1) of block b of row r, as f32 (exact from f16).
    #[inline]
    pub fn scale_min(&self, r: usize, b: usize) -> (f32, f32) {
        let at = self.scale_byte(r, b);
        // Q4_1's mins follow the group's 16 scales.
        let m = if self.format == QFormat::Q4_1 { self.f16_at(at + 2 * GROUP) } else { 0.0 };
        (self.f16_at(at), m)
    }

    /// Where in the data the scale d of block b of row r lies (two bytes, f16).
    #[inline]
    fn scale_byte(&self, r: usize, b: usize) -> usize {
        (r / GROUP * self.blocks() + b) * self.format.block_bytes() + self.format.code_bytes() + 2 * (r % GROUP)
    }

    /// The f16 at byte `at` of the data, as f32 (exact).
    #[inline]
    fn f16_at(&self, at: usize) -> f32 {
        f16::from_bits(u16::from_le_bytes([self.data[at], self.data[at + 1]])).to_f32()
    }

    /// out = row r as f32, with GGML's arithmetic (so the values equal its dequantization).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows && out.len() == self.cols, "dequantize_row: bad row or length");
        for b in 0..self.blocks() {
            let (d, m) = self.scale_min(r, b);
            for (i, y) in out[b * QK..(b + 1) * QK].iter_mut().enumerate() {
                let c = self.code(r, b * QK + i);
                *y = match self.format {
                    QFormat::Q8_0 => c as f32 * d,
                    QFormat::Q4_0 => (c - 8) as f32 * d,
                    QFormat::Q4_1 => c as f32 * d + m,
                };
            }
        }
    }
}

/// How many lookups ahead [`QMatrix::codes_at`] and [`QMatrix::scales_at`] prefetch.
const LOOKUP_AHEAD: usize = 16;

/// Asks for the cache line holding `byte` (no effect where there is no prefetch instruction).
#[inline(always)]
fn prefetch(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(byte as *const u8 as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
