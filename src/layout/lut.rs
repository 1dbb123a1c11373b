//! Weights in T-MAC layout: b-bit unsigned codes q (b = 1 to 6) split into bit-planes and
//! permuted so that one 32-byte load gives table indices for 16 rows and two planes.
//!
//! A weight is w = d * (q - o) or w = d * q + m per (row, scale group), with d (and m) f16
//! (`sup` None: GGUF Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0 and tmac's own types), or, for
//! ggml's K-quants (`sup` Some(n)), w = (d * sc) * (q - o) or w = (d * sc) * q + m * mn with
//! f16 d and m per (row, super-block of n groups) and integers sc, mn per (row, group). Both
//! hold the GGUF codes and scales exactly.
//!
//! Layout (rows padded to 16, columns to 8; padding weights are q = 0):
//!
//! ```text
//!   data:   [row block rb][chunk c of 8 columns][16 b bytes]: b / 2 plane pairs of 32 bytes,
//!           then, for odd b, the last plane alone in 16 bytes.
//!           Plane pair pp, byte i: lane = i / 16, j = i % 16; row = 16 rb + 8 lane + j / 2;
//!           plane = 2 pp + j % 2. Lone plane, byte j: row = 16 rb + j; plane = b - 1.
//!           In every byte: low nibble = that plane's bits of columns 8c..8c+3 (bit l = column
//!           8c + l), high nibble = columns 8c+4..8c+7.
//!   scales: [row block][super-block][16 x d as f16][16 x m as f16, affine only]
//!           then, with sub-scales, per group of the super-block
//!           [16 x sc as i8][16 x mn as u8, affine only].
//!           Without sub-scales a super-block is one group.
//! ```

use super::blocks::{self, Block};
use crate::bytes::Blob;
use crate::error::{Error, Result};
use crate::layout::ggml::GgmlType;
use half::f16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zero {
    /// m stored per (row, group), or per (row, super-block) with an integer mn per group.
    Affine,
    /// w = d * (q - offset).
    Offset(u32),
}

/// Largest code width the layout holds.
pub(crate) const MAX_BITS: u32 = 6;

/// A matrix in T-MAC bit-plane layout. The fields are the crate's: from outside, a LutMatrix
/// comes only from `new` (which checks the bytes against the shape), `pack`/`pack_with` or
/// `from_ggml`, so the kernels can trust its sizes.
pub struct LutMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Bits per code: 1 to 6 (ternary: 2).
    pub(crate) bits: u32,
    /// Columns per scale group: a multiple of 8 (the last group may be partial).
    pub(crate) group: usize,
    pub(crate) zero: Zero,
    /// Codes are ternary (q in 0..=2 with offset 1).
    pub(crate) ternary: bool,
    /// K-quant scales: groups per super-block, each group with integer sub-scales. None: one
    /// f16 scale (and minimum) per group.
    pub(crate) sup: Option<usize>,
    pub(crate) data: Blob,
    pub(crate) scales: Blob,
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
    /// Groups per super-block (1 without sub-scales).
    pub sup: usize,
    pub supers: usize,
    /// Sub-scales (sc, and mn if affine) are stored per group.
    pub sub: bool,
    pub affine: bool,
    /// Bytes of scales per (row block, super-block).
    pub super_stride: usize,
}

impl Geometry {
    pub fn new(
        rows: usize,
        cols: usize,
        bits: u32,
        group: usize,
        zero: Zero,
        sup: Option<usize>,
    ) -> Geometry {
        let chunks = cols.div_ceil(8);
        let groups = (chunks * 8).div_ceil(group);
        let affine = zero == Zero::Affine;
        let per = if affine { 32 } else { 16 };
        let n = sup.unwrap_or(1);
        Geometry {
            row_blocks: rows.div_ceil(16),
            chunks,
            bits: bits as usize,
            plane_pairs: bits as usize / 2,
            chunk_bytes: 16 * bits as usize,
            groups,
            group_chunks: group / 8,
            sup: n,
            supers: groups.div_ceil(n),
            sub: sup.is_some(),
            affine,
            super_stride: 2 * per + if sup.is_some() { n * per } else { 0 },
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
    /// Byte of a chunk holding (row within the row block, bit-plane): the inverse of `slot`.
    #[inline]
    pub fn byte_of(&self, rr: usize, plane: usize) -> usize {
        if plane < 2 * self.plane_pairs {
            (plane / 2) * 32 + (rr / 8) * 16 + (rr % 8) * 2 + plane % 2
        } else {
            self.plane_pairs * 32 + rr
        }
    }
    pub fn data_len(&self) -> usize {
        self.row_blocks * self.chunks * self.chunk_bytes
    }
    pub fn scales_len(&self) -> usize {
        self.row_blocks * self.supers * self.super_stride
    }
    /// Byte offset of the scales of (row block, super-block): 16 d, then 16 m if affine.
    #[inline]
    pub fn head(&self, rb: usize, sb: usize) -> usize {
        (rb * self.supers + sb) * self.super_stride
    }
    /// Byte offset of the sub-scales of (row block, group): 16 sc, then 16 mn if affine.
    #[inline]
    pub fn sub_at(&self, rb: usize, grp: usize) -> usize {
        let per = if self.affine { 32 } else { 16 };
        self.head(rb, grp / self.sup) + 2 * per + (grp % self.sup) * per
    }
}

impl LutMatrix {
    /// A matrix of `form` over stored bytes (a tmac file's): refused unless the layout is one
    /// the kernels handle and the bytes are exactly what the shape needs, with finite scales.
    pub fn new(rows: usize, cols: usize, form: Form, data: Blob, scales: Blob) -> Result<Self> {
        let m = LutMatrix::unchecked(rows, cols, form, data, scales);
        m.validate()?;
        Ok(m)
    }

    /// For the packers, whose bytes are sized from the shape's `Geometry` (and a matrix's
    /// bytes shared by two matrices of its shape).
    pub(crate) fn unchecked(
        rows: usize,
        cols: usize,
        form: Form,
        data: Blob,
        scales: Blob,
    ) -> Self {
        LutMatrix {
            rows,
            cols,
            bits: form.bits,
            group: form.group,
            zero: form.zero,
            ternary: form.ternary,
            sup: form.sup,
            data,
            scales,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn form(&self) -> Form {
        Form {
            bits: self.bits,
            group: self.group,
            zero: self.zero,
            ternary: self.ternary,
            sup: self.sup,
        }
    }
    /// The packed codes (bit-planes) and the scales, as stored.
    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }
    pub fn scales(&self) -> &[u8] {
        self.scales.as_slice()
    }

    pub fn geometry(&self) -> Geometry {
        Geometry::new(
            self.rows, self.cols, self.bits, self.group, self.zero, self.sup,
        )
    }

    /// Check that stored sizes agree with the shape (for matrices read from files).
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_BITS).contains(&self.bits)
            || (self.ternary && self.bits != 2)
            || self.group == 0
            || !self.group.is_multiple_of(8)
            || self.group > 1 << 20
            || matches!(self.sup, Some(n) if n == 0 || n > 64)
            || matches!(self.zero, Zero::Offset(o) if o >= 1 << self.bits)
        {
            return Err(Error::format(format!(
                "bad LUT layout: bits {} group {} zero {:?} super-block {:?}",
                self.bits, self.group, self.zero, self.sup
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
        let heads = (0..g.row_blocks * g.supers).map(|i| i * g.super_stride);
        let halves = if g.affine { 32 } else { 16 };
        if let Some(i) = heads
            .flat_map(|h| (h..h + 2 * halves).step_by(2))
            .find(|&i| !f16::from_le_bytes([scales[i], scales[i + 1]]).is_finite())
        {
            return Err(Error::format(format!(
                "LUT matrix scale at byte {i} is not finite"
            )));
        }
        Ok(())
    }

    /// Bytes streamed per matrix-vector product.
    pub fn weight_bytes(&self) -> usize {
        self.data.len() + self.scales.len()
    }

    /// Row `r` dequantized (for the f32 reference path and tests), as ggml computes it.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let g = self.geometry();
        let (data, scales) = (self.data.as_slice(), self.scales.as_slice());
        let (rb, rr) = (r / 16, r % 16);
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            let q = code(data, &g, rb, rr, c) as i32;
            let grp = c / self.group;
            let (d, m) = block_scale(scales, &g, rb, grp / g.sup, rr);
            let (sc, mn) = sub_scale(scales, &g, rb, grp, rr);
            *o = blocks::weight(self.zero, g.sub, q, d, m, sc, mn);
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

/// (d, m) of row 16 rb + rr in super-block `sb` (m = 0 unless affine).
#[inline]
pub fn block_scale(scales: &[u8], g: &Geometry, rb: usize, sb: usize, rr: usize) -> (f32, f32) {
    let s = &scales[g.head(rb, sb)..];
    let m = if g.affine { f16_at(s, 16 + rr) } else { 0.0 };
    (f16_at(s, rr), m)
}

/// (sc, mn) of row 16 rb + rr in group `grp`: (1, 1) without sub-scales, mn = 0 unless affine.
#[inline]
pub fn sub_scale(scales: &[u8], g: &Geometry, rb: usize, grp: usize, rr: usize) -> (i32, i32) {
    if !g.sub {
        return (1, 1);
    }
    let s = &scales[g.sub_at(rb, grp)..];
    let mn = if g.affine { s[16 + rr] as i32 } else { 0 };
    (s[rr] as i8 as i32, mn)
}

/// Pack codes `q(row, col)` and flat scales `d(row, group)`, `m(row, group)` (f16 bits).
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
    let form = Form {
        bits,
        group,
        zero,
        ternary,
        sup: None,
    };
    pack_with(rows, cols, form, q, dm, |_, _| (1, 1))
}

/// What `pack_with` builds: the LutMatrix fields other than shape and bytes.
#[derive(Clone, Copy, Debug)]
pub struct Form {
    pub bits: u32,
    pub group: usize,
    pub zero: Zero,
    pub ternary: bool,
    pub sup: Option<usize>,
}

/// Pack codes `q(row, col)`, per-super-block scales `dm(row, super-block)` (f16) and, with
/// `form.sup`, per-group sub-scales `sub(row, group)` = (sc, mn).
pub fn pack_with(
    rows: usize,
    cols: usize,
    form: Form,
    q: impl Fn(usize, usize) -> u8,
    dm: impl Fn(usize, usize) -> (f16, f16),
    sub: impl Fn(usize, usize) -> (i8, u8),
) -> LutMatrix {
    let g = Geometry::new(rows, cols, form.bits, form.group, form.zero, form.sup);
    let mut data = vec![0u8; g.data_len()];
    for row in 0..rows {
        let (rb, rr) = (row / 16, row % 16);
        for c in 0..g.chunks {
            // bit l of plane p's byte is bit p of the code in column 8c + l
            let mut planes = [0u8; MAX_BITS as usize];
            for l in 0..8.min(cols - 8 * c) {
                let q = q(row, 8 * c + l);
                for (p, byte) in planes.iter_mut().enumerate().take(g.bits) {
                    *byte |= ((q >> p) & 1) << l;
                }
            }
            let blk = &mut data[(rb * g.chunks + c) * g.chunk_bytes..][..g.chunk_bytes];
            for (p, &byte) in planes.iter().enumerate().take(g.bits) {
                blk[g.byte_of(rr, p)] = byte;
            }
        }
    }
    let mut scales = vec![0u8; g.scales_len()];
    for rb in 0..g.row_blocks {
        for rr in (0..16).filter(|rr| rb * 16 + rr < rows) {
            let row = rb * 16 + rr;
            for sb in 0..g.supers {
                let s = &mut scales[g.head(rb, sb)..];
                let (d, m) = dm(row, sb);
                s[2 * rr..2 * rr + 2].copy_from_slice(&d.to_le_bytes());
                if g.affine {
                    s[32 + 2 * rr..34 + 2 * rr].copy_from_slice(&m.to_le_bytes());
                }
            }
            for grp in (0..g.groups).filter(|_| g.sub) {
                let s = &mut scales[g.sub_at(rb, grp)..];
                let (sc, mn) = sub(row, grp);
                s[rr] = sc as u8;
                if g.affine {
                    s[16 + rr] = mn;
                }
            }
        }
    }
    LutMatrix::unchecked(rows, cols, form, Blob::Owned(data), Blob::Owned(scales))
}

/// Repack a GGUF tensor (rows x cols) of a type whose codes are integers (Q4_0, Q4_1, Q5_0,
/// Q5_1, Q2_K to Q6_K, TQ1_0, TQ2_0) into LUT layout, exactly: the codes and scales are carried
/// over unchanged. None for other types.
pub fn from_ggml(typ: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<LutMatrix> {
    let f = blocks::form(typ).filter(|f| !f.codebook)?;
    let bytes = typ.block().1 as usize;
    let (per_row, n_groups) = (cols / f.block, f.block / f.group);
    let mut codes = vec![0u8; rows * cols];
    let mut dm = Vec::with_capacity(rows * per_row);
    let mut sub = Vec::with_capacity(if f.sub_scales {
        rows * cols / f.group
    } else {
        0
    });
    let mut b = Block::default();
    for (r, row) in data.chunks_exact(per_row * bytes).take(rows).enumerate() {
        for (i, blk) in row.chunks_exact(bytes).enumerate() {
            blocks::decode(typ, blk, &mut b);
            codes[r * cols + i * f.block..][..f.block].copy_from_slice(&b.codes[..f.block]);
            dm.push((b.d, b.m));
            if f.sub_scales {
                sub.extend((0..n_groups).map(|g| (b.sc[g], b.mn[g])));
            }
        }
    }
    let form = Form {
        bits: f.bits,
        group: f.group,
        zero: f.zero,
        ternary: f.ternary,
        sup: f.sub_scales.then_some(n_groups),
    };
    let groups_per_row = cols / f.group;
    Some(pack_with(
        rows,
        cols,
        form,
        |r, c| codes[r * cols + c],
        |r, sb| dm[r * per_row + sb],
        |r, g| sub[r * groups_per_row + g],
    ))
}
