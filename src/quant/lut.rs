//! Weights in T-MAC layout: b-bit unsigned codes q (b = 1 to 4) split into bit-planes and
//! permuted so that one 32-byte load gives table indices for 16 rows and two planes.
//!
//! A weight is w = d * q + m per (row, scale group), with m either stored (affine, Q4_1) or
//! -offset * d (Q4_0: offset 8; ternary {-1,0,1} stored as q = w + 1: offset 1). This holds
//! GGUF Q4_0, Q4_1, TQ1_0 and TQ2_0 exactly.
//!
//! Layout (rows padded to 16, columns to 8; padding weights are q = 0):
//!   data:   [row block rb][chunk c of 8 columns][16 b bytes]: b / 2 plane pairs of 32 bytes,
//!           then, for odd b, the last plane alone in 16 bytes.
//!           Plane pair pp, byte i: lane = i / 16, j = i % 16; row = 16 rb + 8 lane + j / 2;
//!           plane = 2 pp + j % 2. Lone plane, byte j: row = 16 rb + j; plane = b - 1.
//!           In every byte: low nibble = that plane's bits of columns 8c..8c+3 (bit l = column
//!           8c + l), high nibble = columns 8c+4..8c+7.
//!   scales: [row block][scale group][16 x d as f16][16 x m as f16, affine only]

use crate::error::{Error, Result};
use crate::format::Blob;
use half::f16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zero {
    /// m stored per (row, group).
    Affine,
    /// m = -offset * d.
    Offset(u32),
}

pub struct LutMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Bits per code: 1 to 4 (ternary: 2).
    pub bits: u32,
    /// Columns per scale group: a multiple of 8 (the last group may be partial).
    pub group: usize,
    pub zero: Zero,
    /// Codes are ternary (q in 0..=2 with offset 1).
    pub ternary: bool,
    pub data: Blob,
    pub scales: Blob,
}

/// Derived sizes of a LUT matrix.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub row_blocks: usize,
    pub chunks: usize,
    /// Code width; an odd width stores its last plane alone (16 bytes per chunk).
    pub bits: usize,
    pub plane_pairs: usize,
    /// Bytes per (row block, chunk): 16 per plane.
    pub chunk_bytes: usize,
    pub groups: usize,
    /// Chunks of 8 columns per scale group.
    pub group_chunks: usize,
    /// Bytes of scales per (row block, group).
    pub scale_stride: usize,
}

impl Geometry {
    pub fn new(rows: usize, cols: usize, bits: u32, group: usize, zero: Zero) -> Geometry {
        let chunks = cols.div_ceil(8);
        Geometry {
            row_blocks: rows.div_ceil(16),
            chunks,
            bits: bits as usize,
            plane_pairs: bits as usize / 2,
            chunk_bytes: 16 * bits as usize,
            groups: (chunks * 8).div_ceil(group),
            group_chunks: group / 8,
            scale_stride: if zero == Zero::Affine { 64 } else { 32 },
        }
    }
    /// (row within the row block, bit-plane) of byte `i` of a chunk: a plane pair (16 rows x 2
    /// planes) per 32 bytes, then the lone plane (byte j: row j).
    #[inline]
    pub fn slot(&self, i: usize) -> (usize, usize) {
        if i < self.plane_pairs * 32 {
            ((i % 32 / 16) * 8 + (i % 16) / 2, 2 * (i / 32) + i % 2)
        } else {
            (i % 32, 2 * self.plane_pairs)
        }
    }
    pub fn data_len(&self) -> usize {
        self.row_blocks * self.chunks * self.chunk_bytes
    }
    pub fn scales_len(&self) -> usize {
        self.row_blocks * self.groups * self.scale_stride
    }
}

impl LutMatrix {
    pub fn geometry(&self) -> Geometry {
        Geometry::new(self.rows, self.cols, self.bits, self.group, self.zero)
    }

    /// Check that stored sizes agree with the shape (for matrices read from files).
    pub fn validate(&self) -> Result<()> {
        if !(1..=4).contains(&self.bits)
            || (self.ternary && self.bits != 2)
            || self.group == 0
            || self.group % 8 != 0
        {
            return Err(Error::format(format!(
                "bad LUT layout: bits {} group {}",
                self.bits, self.group
            )));
        }
        let g = self.geometry();
        if self.data.len() != g.data_len() || self.scales.len() != g.scales_len() {
            return Err(Error::format(format!(
                "LUT matrix {}x{} ({} bits, group {}) needs {} + {} bytes, has {} + {}",
                self.rows,
                self.cols,
                self.bits,
                self.group,
                g.data_len(),
                g.scales_len(),
                self.data.len(),
                self.scales.len()
            )));
        }
        let scales = self.scales.as_slice();
        if let Some(i) = (0..scales.len() / 2)
            .find(|i| !f16::from_le_bytes([scales[2 * i], scales[2 * i + 1]]).is_finite())
        {
            return Err(Error::format(format!(
                "LUT matrix scale #{i} is not finite"
            )));
        }
        Ok(())
    }

    /// Bytes streamed per matrix-vector product.
    pub fn weight_bytes(&self) -> usize {
        self.data.len() + self.scales.len()
    }

    /// Row `r` dequantized (for the f32 reference path and tests).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let g = self.geometry();
        let (data, scales) = (self.data.as_slice(), self.scales.as_slice());
        let (rb, rr) = (r / 16, r % 16);
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            let q = code(data, &g, rb, rr, c);
            let (d, m) = scale_of(scales, &g, self.zero, rb, c / self.group, rr);
            *o = d * q as f32 + m;
        }
    }
}

/// The code of (row 16 rb + rr, column c).
fn code(data: &[u8], g: &Geometry, rb: usize, rr: usize, c: usize) -> u32 {
    let (chunk, within) = (c / 8, c % 8);
    let (lane, row_in_lane) = (rr / 8, rr % 8);
    let base = (rb * g.chunks + chunk) * g.chunk_bytes;
    let mut q = 0;
    for pp in 0..g.plane_pairs {
        for half in 0..2 {
            let byte = data[base + pp * 32 + lane * 16 + row_in_lane * 2 + half];
            q |= (((byte >> within) & 1) as u32) << (2 * pp + half);
        }
    }
    if g.bits % 2 == 1 {
        let byte = data[base + g.plane_pairs * 32 + rr];
        q |= (((byte >> within) & 1) as u32) << (2 * g.plane_pairs);
    }
    q
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
}

/// (d, m) of row 16 rb + rr in scale group `grp`.
pub fn scale_of(
    scales: &[u8],
    g: &Geometry,
    zero: Zero,
    rb: usize,
    grp: usize,
    rr: usize,
) -> (f32, f32) {
    let s = &scales[(rb * g.groups + grp) * g.scale_stride..];
    let d = f16_at(s, rr);
    match zero {
        Zero::Affine => (d, f16_at(s, 16 + rr)),
        Zero::Offset(o) => (d, -(o as f32) * d),
    }
}

/// Pack codes `q(row, col)` and scales `d(row, group)`, `m(row, group)` (f16 bits).
#[allow(clippy::too_many_arguments)]
pub fn pack(
    rows: usize,
    cols: usize,
    bits: u32,
    group: usize,
    zero: Zero,
    ternary: bool,
    q: impl Fn(usize, usize) -> u8,
    dm: impl Fn(usize, usize) -> (f16, f16),
) -> LutMatrix {
    let g = Geometry::new(rows, cols, bits, group, zero);
    let mut data = vec![0u8; g.data_len()];
    for rb in 0..g.row_blocks {
        for c in 0..g.chunks {
            let blk = &mut data[(rb * g.chunks + c) * g.chunk_bytes..][..g.chunk_bytes];
            for (i, byte) in blk.iter_mut().enumerate() {
                let (rr, plane) = g.slot(i);
                let row = rb * 16 + rr;
                if row >= rows {
                    continue;
                }
                for l in 0..8 {
                    let col = 8 * c + l;
                    if col < cols && (q(row, col) >> plane) & 1 == 1 {
                        *byte |= 1 << l; // bit l of the byte is column 8c + l
                    }
                }
            }
        }
    }
    let mut scales = vec![0u8; g.scales_len()];
    for rb in 0..g.row_blocks {
        for grp in 0..g.groups {
            let s = &mut scales[(rb * g.groups + grp) * g.scale_stride..];
            for rr in 0..16 {
                let row = rb * 16 + rr;
                let (d, m) = if row < rows {
                    dm(row, grp)
                } else {
                    (f16::ZERO, f16::ZERO)
                };
                s[2 * rr..2 * rr + 2].copy_from_slice(&d.to_le_bytes());
                if zero == Zero::Affine {
                    s[32 + 2 * rr..34 + 2 * rr].copy_from_slice(&m.to_le_bytes());
                }
            }
        }
    }
    LutMatrix {
        rows,
        cols,
        bits,
        group,
        zero,
        ternary,
        data: Blob::Owned(data),
        scales: Blob::Owned(scales),
    }
}

/// Repack a GGUF tensor of type Q4_0, Q4_1, TQ2_0 or TQ1_0 (rows x cols) into LUT layout,
/// exactly: the codes and the f16 scales are carried over unchanged. None for other types.
pub fn from_ggml(
    typ: crate::quant::ggml::GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
) -> Option<LutMatrix> {
    use crate::quant::ggml::GgmlType as T;
    let (bytes, block) = typ.block();
    let (bytes, block) = (bytes as usize, block as usize);
    let row_bytes = cols / bytes * block;
    let blk = |r: usize, c: usize| &data[r * row_bytes + (c / bytes) * block..][..block];
    let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]);
    let mut codes = vec![0u8; rows * cols];
    for r in 0..rows {
        let row = &mut codes[r * cols..(r + 1) * cols];
        for (b, out) in row.chunks_exact_mut(bytes).enumerate() {
            let blk = &data[r * row_bytes + b * block..][..block];
            match typ {
                T::Q4_0 | T::Q4_1 => {
                    let qs = &blk[if typ == T::Q4_0 { 2 } else { 4 }..];
                    for j in 0..16 {
                        out[j] = qs[j] & 15;
                        out[j + 16] = qs[j] >> 4;
                    }
                }
                T::TQ2_0 => {
                    for (c, chunk) in blk[..64].chunks_exact(32).enumerate() {
                        for l in 0..4 {
                            for (j, &q) in chunk.iter().enumerate() {
                                out[c * 128 + l * 32 + j] = (q >> (2 * l)) & 3;
                            }
                        }
                    }
                }
                T::TQ1_0 => tq1_codes(blk, out),
                _ => return None,
            }
        }
    }
    let (bits, zero, ternary) = match typ {
        T::Q4_0 => (4, Zero::Offset(8), false),
        T::Q4_1 => (4, Zero::Affine, false),
        _ => (2, Zero::Offset(1), true),
    };
    let dm = |r: usize, g: usize| -> (f16, f16) {
        let b = blk(r, g * bytes);
        match typ {
            T::Q4_0 => (h(b), f16::ZERO),
            T::Q4_1 => (h(b), h(&b[2..])),
            T::TQ2_0 => (h(&b[64..]), f16::ZERO),
            _ => (h(&b[52..]), f16::ZERO),
        }
    };
    Some(pack(
        rows,
        cols,
        bits,
        bytes,
        zero,
        ternary,
        |r, c| codes[r * cols + c],
        dm,
    ))
}

/// The 256 codes (value + 1) of a TQ1_0 block: base-3 digits stored as fixed-point fractions.
pub(crate) fn tq1_codes(blk: &[u8], out: &mut [u8]) {
    const POW3: [u16; 5] = [1, 3, 9, 27, 81];
    let trit = |q: u8, n: usize| (((q as u16 * POW3[n]) as u8 as u16 * 3) >> 8) as u8;
    let (qs, qh) = (&blk[..48], &blk[48..52]);
    for n in 0..5 {
        for m in 0..32 {
            out[n * 32 + m] = trit(qs[m], n);
        }
        for m in 0..16 {
            out[160 + n * 16 + m] = trit(qs[32 + m], n);
        }
    }
    for n in 0..4 {
        for (m, &q) in qh.iter().enumerate() {
            out[240 + n * 4 + m] = trit(q, n);
        }
    }
}
