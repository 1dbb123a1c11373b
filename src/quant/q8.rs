//! 8-bit weights for the output head and embeddings, in ggml's Q8_0 block layout (an f16 scale,
//! then 32 int8 values), so a GGUF Q8_0 tensor is used in place from the file.

use crate::error::{Error, Result};
use crate::format::Blob;
use half::f16;

pub const Q8_BLOCK: usize = 32;
pub const Q8_BYTES: usize = 34;

pub struct Q8Matrix {
    pub rows: usize,
    /// A multiple of 32.
    pub cols: usize,
    pub data: Blob,
}

impl Q8Matrix {
    pub fn new(rows: usize, cols: usize, data: Blob) -> Result<Q8Matrix> {
        if cols % Q8_BLOCK != 0 || data.len() != rows * cols / Q8_BLOCK * Q8_BYTES {
            return Err(Error::format(format!(
                "8-bit matrix {rows}x{cols} does not match its {} bytes",
                data.len()
            )));
        }
        let d = data.as_slice();
        if let Some(b) = (0..rows * cols / Q8_BLOCK)
            .find(|b| !f16::from_le_bytes([d[b * Q8_BYTES], d[b * Q8_BYTES + 1]]).is_finite())
        {
            return Err(Error::format(format!(
                "8-bit block #{b} has a scale that is not finite"
            )));
        }
        Ok(Q8Matrix { rows, cols, data })
    }

    pub fn weight_bytes(&self) -> usize {
        self.data.len()
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = &self.data.as_slice()[r * self.cols / Q8_BLOCK * Q8_BYTES..]
            [..self.cols / Q8_BLOCK * Q8_BYTES];
        // same arithmetic as ggml's Q8_0 dequantization
        let _ = crate::quant::ggml::dequantize(
            crate::quant::ggml::GgmlType::Q8_0,
            row,
            &mut out[..self.cols],
        );
    }
}
