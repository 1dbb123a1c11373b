//! 4-bit codebook weights (ggml's IQ4_NL and IQ4_XS): each 4-bit code indexes a 16-entry table
//! of int8 values (`blocks::IQ4_CODEBOOK`), so a kernel turns codes into int8 weights with one
//! table lookup (vpshufb / tbl) and takes their dot products with the int8 activations. A
//! non-uniform codebook does not split into bit-planes, so these do not use the T-MAC tables.
//!
//! IQ4_NL: blocks of 32 (f16 d), w = d * value.
//! IQ4_XS: blocks of 256 (f16 d, 8 groups of 32 with 6-bit scales ls), w = d * (ls - 32) * value.
//!
//! Layout: rows in groups of 8 (padded with zero rows), each block of the 8 rows one tile:
//!
//! ```text
//! [8 x d as f16][IQ4_XS: per group s, 8 x (ls - 32) as i8][codes]
//! ```
//!
//! where the codes of group s come as 4 steps of 32 bytes, step j holding bytes 4j..4j+4 of
//! each row's 16 code bytes (GGUF order: byte i has element i in its low nibble, i + 16 in its
//! high one), row after row. One 32-byte load so gives each of the 8 rows 8 codes, whose
//! products with 4 broadcast activations sum in that row's own 32-bit lane: no horizontal sums.

use super::blocks;
use super::ggml::GgmlType;
use crate::bytes::Blob;
use crate::error::{Error, Result};
use half::f16;

/// Rows per tile.
pub(crate) const ROWS: usize = 8;

/// 4-bit codebook weights in 8-row tiles. The fields are the crate's: from outside, an
/// Iq4Matrix comes only from `new` (which checks the bytes against the shape) or `from_ggml`.
pub struct Iq4Matrix {
    pub(crate) rows: usize,
    /// A multiple of the block (32 or 256).
    pub(crate) cols: usize,
    /// IQ4_NL or IQ4_XS.
    pub(crate) typ: GgmlType,
    /// The tiles, row group after row group.
    pub(crate) data: Blob,
}

impl Iq4Matrix {
    /// Check a matrix in tile layout (from a tmac file).
    pub fn new(rows: usize, cols: usize, typ: GgmlType, data: Blob) -> Result<Iq4Matrix> {
        if !matches!(typ, GgmlType::IQ4NL | GgmlType::IQ4XS) {
            return Err(Error::invalid(format!(
                "{} is not a codebook type",
                typ.name()
            )));
        }
        let m = Iq4Matrix {
            rows,
            cols,
            typ,
            data,
        };
        if !cols.is_multiple_of(m.block()) || m.data.len() != m.tiles() * m.tile_bytes() {
            return Err(Error::format(format!(
                "{} matrix {rows}x{cols} does not match its data size",
                typ.name()
            )));
        }
        let d = m.data.as_slice();
        if let Some(t) = (0..m.tiles()).find(|t| {
            let at = t * m.tile_bytes();
            (0..ROWS).any(|i| !f16::from_le_bytes([d[at + 2 * i], d[at + 2 * i + 1]]).is_finite())
        }) {
            return Err(Error::format(format!(
                "{} tile #{t} has a scale that is not finite",
                typ.name()
            )));
        }
        Ok(m)
    }

    /// Repack GGUF blocks of `typ` (rows x cols) into tiles.
    pub fn from_ggml(typ: GgmlType, src: &[u8], rows: usize, cols: usize) -> Result<Iq4Matrix> {
        let (bl, bb) = (typ.block().0 as usize, typ.block().1 as usize);
        if !matches!(typ, GgmlType::IQ4NL | GgmlType::IQ4XS)
            || !cols.is_multiple_of(bl)
            || src.len() != rows * cols / bl * bb
        {
            return Err(Error::format(format!(
                "{} data does not hold a {rows}x{cols} matrix",
                typ.name()
            )));
        }
        let (nb, at) = (cols / bl, codes_at(typ));
        let mut m = Iq4Matrix {
            rows,
            cols,
            typ,
            data: Blob::Owned(Vec::new()),
        };
        let (tb, subs) = (m.tile_bytes(), m.subs());
        let mut out = vec![0u8; m.tiles() * tb];
        for (t, tile) in out.chunks_exact_mut(tb).enumerate() {
            let (g, b) = (t / nb, t % nb);
            for i in (0..ROWS).filter(|i| g * ROWS + i < rows) {
                let blk = &src[((g * ROWS + i) * nb + b) * bb..][..bb];
                tile[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
                if typ == GgmlType::IQ4XS {
                    for (s, &v) in sub_scales(typ, blk).iter().enumerate() {
                        tile[2 * ROWS + s * ROWS + i] = v as i8 as u8;
                    }
                }
                for s in 0..subs {
                    for j in 0..4 {
                        let o = m.codes_offset(s, j) + 4 * i;
                        tile[o..o + 4].copy_from_slice(&blk[at + 16 * s + 4 * j..][..4]);
                    }
                }
            }
        }
        m.data = Blob::Owned(out);
        Ok(m)
    }

    /// Elements per block (IQ4_XS: 256).
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn typ(&self) -> GgmlType {
        self.typ
    }

    pub fn block(&self) -> usize {
        self.typ.block().0 as usize
    }

    /// Groups of 32 per block.
    pub fn subs(&self) -> usize {
        self.block() / 32
    }

    /// Bytes of one tile: scales, then 16 code bytes per row and group.
    pub fn tile_bytes(&self) -> usize {
        let scales = if self.typ == GgmlType::IQ4XS {
            2 * ROWS + ROWS * self.subs()
        } else {
            2 * ROWS
        };
        scales + ROWS * 16 * self.subs()
    }

    pub fn row_groups(&self) -> usize {
        self.rows.div_ceil(ROWS)
    }

    fn tiles(&self) -> usize {
        self.row_groups() * self.cols / self.block()
    }

    /// Byte offset, within a tile, of step j of group s's codes.
    pub fn codes_offset(&self, s: usize, j: usize) -> usize {
        self.tile_bytes() - ROWS * 16 * self.subs() + (4 * s + j) * 32
    }

    /// The tile of row group g and block b.
    pub fn tile(&self, g: usize, b: usize) -> &[u8] {
        let tb = self.tile_bytes();
        &self.data.as_slice()[(g * self.cols / self.block() + b) * tb..][..tb]
    }

    /// The integer scale of group s of row i in a tile (1 for IQ4_NL).
    pub fn sub_scale(&self, tile: &[u8], s: usize, i: usize) -> i32 {
        match self.typ {
            GgmlType::IQ4XS => tile[2 * ROWS + s * ROWS + i] as i8 as i32,
            _ => 1,
        }
    }

    /// The code of element e of the block for row i in a tile.
    pub fn code(&self, tile: &[u8], i: usize, e: usize) -> u8 {
        let (s, k) = (e / 32, e % 32);
        let byte = tile[self.codes_offset(s, k % 16 / 4) + 4 * i + k % 4];
        if k < 16 {
            byte & 15
        } else {
            byte >> 4
        }
    }

    pub fn weight_bytes(&self) -> usize {
        self.data.len()
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, i) = (r / ROWS, r % ROWS);
        for (b, o) in out[..self.cols].chunks_exact_mut(self.block()).enumerate() {
            let tile = self.tile(g, b);
            let d = f16::from_le_bytes([tile[2 * i], tile[2 * i + 1]]).to_f32();
            for (e, w) in o.iter_mut().enumerate() {
                let q = blocks::IQ4_CODEBOOK[self.code(tile, i, e) as usize] as i32;
                let sc = self.sub_scale(tile, e / 32, i);
                *w = blocks::weight(super::lut::Zero::Offset(0), true, q, d, 0.0, sc, 0);
            }
        }
    }
}

/// The group scales of an IQ4_XS block (ls - 32), or 1 for IQ4_NL.
pub(crate) fn sub_scales(typ: GgmlType, blk: &[u8]) -> [i16; 8] {
    if typ != GgmlType::IQ4XS {
        return [1; 8];
    }
    let sh = u16::from_le_bytes([blk[2], blk[3]]);
    let mut s = [0i16; 8];
    for (j, v) in s.iter_mut().enumerate() {
        let lo = (blk[4 + j / 2] >> (4 * (j % 2))) & 15;
        *v = (lo as u16 | ((sh >> (2 * j)) & 3) << 4) as i16 - 32;
    }
    s
}

/// Where a GGUF block keeps its codes: after d (IQ4_NL), after d and the scales (IQ4_XS).
pub(crate) fn codes_at(typ: GgmlType) -> usize {
    if typ == GgmlType::IQ4XS {
        8
    } else {
        2
    }
}
