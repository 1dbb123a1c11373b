//! 8-bit weights for the output head and embeddings: blocks of 32 int8 values with an f16
//! scale, w = d * q. Two layouts: ggml's Q8_0 (scale and values interleaved, 34-byte blocks), so
//! a GGUF Q8_0 tensor is used in place; and tmac's own (all values, then all scales), so a tmac
//! file's scales can be checked without touching the values.

use crate::bytes::Blob;
use crate::error::{Error, Result};
use half::f16;

pub(crate) const Q8_BLOCK: usize = 32;
pub(crate) const Q8_BYTES: usize = 34;

/// 8-bit weights. The fields are the crate's: from outside, a Q8Matrix comes only from `new`
/// (which checks the bytes against the shape) or `quantize`.
pub struct Q8Matrix {
    pub(crate) rows: usize,
    /// A multiple of 32.
    pub(crate) cols: usize,
    /// Q8_0 blocks, or (with `scales`) the int8 values alone.
    pub(crate) data: Blob,
    /// tmac layout: one f16 per block, row-major.
    pub(crate) scales: Option<Blob>,
}

/// Where block b of row r keeps its values and its scale, as byte offsets and strides.
#[derive(Clone, Copy)]
pub struct Q8Strides {
    pub q_stride: usize,
    pub q_skip: usize,
    pub d_stride: usize,
}

impl Q8Matrix {
    pub fn new(rows: usize, cols: usize, data: Blob, scales: Option<Blob>) -> Result<Q8Matrix> {
        let blocks = rows * cols / Q8_BLOCK;
        let ok = cols.is_multiple_of(Q8_BLOCK)
            && match &scales {
                None => data.len() == blocks * Q8_BYTES,
                Some(s) => data.len() == rows * cols && s.len() == blocks * 2,
            };
        if !ok {
            return Err(Error::format(format!(
                "8-bit matrix {rows}x{cols} does not match its data size"
            )));
        }
        let m = Q8Matrix {
            rows,
            cols,
            data,
            scales,
        };
        if let Some(b) = (0..blocks).find(|&b| !m.block_scale(b).is_finite()) {
            return Err(Error::format(format!(
                "8-bit block #{b} has a scale that is not finite"
            )));
        }
        Ok(m)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn strides(&self) -> Q8Strides {
        match self.scales {
            None => Q8Strides {
                q_stride: Q8_BYTES,
                q_skip: 2,
                d_stride: Q8_BYTES,
            },
            Some(_) => Q8Strides {
                q_stride: Q8_BLOCK,
                q_skip: 0,
                d_stride: 2,
            },
        }
    }

    /// (values, scales) byte slices.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        let d = self.data.as_slice();
        (d, self.scales.as_ref().map_or(d, |s| s.as_slice()))
    }

    /// Scale of block b (counting row-major over the whole matrix).
    pub fn block_scale(&self, b: usize) -> f32 {
        let (_, d) = self.parts();
        let at = b * self.strides().d_stride;
        f16::from_le_bytes([d[at], d[at + 1]]).to_f32()
    }

    pub fn weight_bytes(&self) -> usize {
        self.data.len() + self.scales.as_ref().map_or(0, |s| s.len())
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (q, _) = self.parts();
        let s = self.strides();
        let nb = self.cols / Q8_BLOCK;
        for b in 0..nb {
            let d = self.block_scale(r * nb + b);
            let qs = &q[(r * nb + b) * s.q_stride + s.q_skip..][..Q8_BLOCK];
            for (o, &v) in out[b * Q8_BLOCK..(b + 1) * Q8_BLOCK].iter_mut().zip(qs) {
                *o = v as i8 as f32 * d;
            }
        }
    }

    /// Quantize f32 rows (cols a multiple of 32) into tmac's layout, by ggml's Q8_0 rounding.
    pub fn quantize(rows: usize, cols: usize, w: &[f32]) -> Result<Q8Matrix> {
        let blocks = crate::layout::ggml::quantize(crate::layout::ggml::GgmlType::Q8_0, w)
            .ok_or_else(|| Error::invalid("8-bit rows must be whole blocks of 32"))?;
        let (mut q, mut d) = (
            Vec::with_capacity(rows * cols),
            Vec::with_capacity(blocks.len() / Q8_BYTES * 2),
        );
        for b in blocks.chunks_exact(Q8_BYTES) {
            d.extend_from_slice(&b[..2]);
            q.extend_from_slice(&b[2..]);
        }
        Q8Matrix::new(rows, cols, Blob::Owned(q), Some(Blob::Owned(d)))
    }
}
