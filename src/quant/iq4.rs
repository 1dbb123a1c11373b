//! 4-bit codebook weights (ggml's IQ4_NL and IQ4_XS), used in place from the GGUF file: each
//! 4-bit code indexes a 16-entry table of int8 values (`blocks::IQ4_CODEBOOK`), so a kernel
//! turns 32 codes into 32 int8 weights with one table lookup (vpshufb / tbl) and takes their
//! dot product with the int8 activations. The codes are not bit-planes: a non-uniform codebook
//! does not split into planes, so these do not run through the T-MAC tables.
//!
//! IQ4_NL: blocks of 32 (f16 d, 16 bytes of codes), w = d * value.
//! IQ4_XS: super-blocks of 256 (f16 d, 8 six-bit scales ls), w = d * (ls - 32) * value.

use super::blocks;
use super::ggml::GgmlType;
use crate::error::{Error, Result};
use crate::format::Blob;
use half::f16;

pub struct Iq4Matrix {
    pub rows: usize,
    /// A multiple of the block (32 or 256).
    pub cols: usize,
    /// IQ4_NL or IQ4_XS.
    pub typ: GgmlType,
    /// The GGUF blocks, row after row.
    pub data: Blob,
}

impl Iq4Matrix {
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
        if cols % m.block() != 0 || m.data.len() != rows * cols / m.block() * m.block_bytes() {
            return Err(Error::format(format!(
                "{} matrix {rows}x{cols} does not match its data size",
                typ.name()
            )));
        }
        let d = m.data.as_slice();
        if let Some(b) = (0..rows * cols / m.block()).find(|b| {
            let at = b * m.block_bytes();
            !f16::from_le_bytes([d[at], d[at + 1]]).is_finite()
        }) {
            return Err(Error::format(format!(
                "{} block #{b} has a scale that is not finite",
                typ.name()
            )));
        }
        Ok(m)
    }

    /// Elements per block (IQ4_XS: per super-block).
    pub fn block(&self) -> usize {
        self.typ.block().0 as usize
    }

    pub fn block_bytes(&self) -> usize {
        self.typ.block().1 as usize
    }

    /// Sub-blocks of 32 per block.
    pub fn subs(&self) -> usize {
        self.block() / 32
    }

    pub fn weight_bytes(&self) -> usize {
        self.data.len()
    }

    /// The bytes of block `b` of row `r`.
    pub fn block_at(&self, r: usize, b: usize) -> &[u8] {
        let n = self.block_bytes();
        &self.data.as_slice()[(r * self.cols / self.block() + b) * n..][..n]
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let n = self.cols / self.block() * self.block_bytes();
        let row = &self.data.as_slice()[r * n..(r + 1) * n];
        blocks::dequantize(self.typ, row, &mut out[..self.cols]);
    }
}

/// The sub-block scales of an IQ4_XS block (ls - 32), or 1 for IQ4_NL.
#[inline]
pub fn sub_scales(typ: GgmlType, blk: &[u8]) -> [i16; 8] {
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

/// Where a block keeps its codes: after d (IQ4_NL), after d and the scales (IQ4_XS).
pub fn codes_at(typ: GgmlType) -> usize {
    if typ == GgmlType::IQ4XS {
        8
    } else {
        2
    }
}
