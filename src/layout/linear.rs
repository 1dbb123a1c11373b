//! A weight matrix in one of the layouts the kernels read: the f32 reference, T-MAC bit-plane
//! matrices read through lookup tables, 8-bit blocks, or 4-bit codebook blocks. What it is and
//! what it holds; `kernel::linear` multiplies it.

use crate::layout::iq4::Iq4Matrix;
use crate::layout::lut::LutMatrix;
use crate::layout::q8::Q8Matrix;

pub enum Linear {
    /// Row-major (rows, cols) f32 weights: the reference path.
    F32 {
        rows: usize,
        cols: usize,
        w: Vec<f32>,
    },
    /// T-MAC bit-plane weights (ternary, 2- or 4-bit) read through lookup tables.
    Lut(LutMatrix),
    /// 8-bit weights (Q8_0 blocks).
    Q8(Q8Matrix),
    /// 4-bit codebook weights (IQ4_NL, IQ4_XS blocks).
    Iq4(Iq4Matrix),
}

impl Linear {
    pub fn rows(&self) -> usize {
        match self {
            Linear::F32 { rows, .. } => *rows,
            Linear::Lut(m) => m.rows,
            Linear::Q8(m) => m.rows,
            Linear::Iq4(m) => m.rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Linear::F32 { cols, .. } => *cols,
            Linear::Lut(m) => m.cols,
            Linear::Q8(m) => m.cols,
            Linear::Iq4(m) => m.cols,
        }
    }
    /// Bytes of weight data streamed per matrix-vector product.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::F32 { w, .. } => w.len() * 4,
            Linear::Lut(m) => m.weight_bytes(),
            Linear::Q8(m) => m.weight_bytes(),
            Linear::Iq4(m) => m.weight_bytes(),
        }
    }
    /// Short name of the weight format.
    pub fn kind(&self) -> String {
        match self {
            Linear::F32 { .. } => "f32".into(),
            Linear::Lut(m) if m.ternary => "lut-ternary".into(),
            Linear::Lut(m) => format!("lut-q{}", m.bits),
            Linear::Q8(_) => "q8".into(),
            Linear::Iq4(m) => m.typ.name().to_lowercase(),
        }
    }

    /// Every weight as f32, row-major (rows, cols).
    pub(crate) fn to_f32s(&self) -> Vec<f32> {
        let cols = self.cols();
        let mut w = vec![0f32; self.rows() * cols];
        for (r, row) in w.chunks_exact_mut(cols).enumerate() {
            self.dequantize_row(r, row);
        }
        w
    }

    /// Are the weights used in place in the model file (no copy)?
    pub fn is_mapped(&self) -> bool {
        match self {
            Linear::F32 { .. } => false,
            Linear::Lut(m) => m.data.is_mapped() && m.scales.is_mapped(),
            Linear::Q8(m) => m.data.is_mapped() && m.scales.as_ref().is_none_or(|s| s.is_mapped()),
            Linear::Iq4(m) => m.data.is_mapped(),
        }
    }

    /// Row `r` as f32 (for the reference path and checks).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self {
            Linear::F32 { cols, w, .. } => {
                out[..*cols].copy_from_slice(&w[r * cols..(r + 1) * cols])
            }
            Linear::Lut(m) => m.dequantize_row(r, out),
            Linear::Q8(m) => m.dequantize_row(r, out),
            Linear::Iq4(m) => m.dequantize_row(r, out),
        }
    }
}
