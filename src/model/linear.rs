//! A linear layer y = W x and the input it reads. Each weight format (f32 reference, T-MAC
//! lookup tables, 8-bit) is one variant; the forward pass does not care which it calls.

use crate::kernel::{self, f32 as kf32, lut::Activations};
use crate::quant::lut::LutMatrix;
use crate::quant::q8::Q8Matrix;

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
}

/// Activations are quantized with one scale per vector (per token), as W1.58A8 defines it.
pub const ACT_GROUP: usize = usize::MAX;

impl Linear {
    pub fn rows(&self) -> usize {
        match self {
            Linear::F32 { rows, .. } => *rows,
            Linear::Lut(m) => m.rows,
            Linear::Q8(m) => m.rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Linear::F32 { cols, .. } => *cols,
            Linear::Lut(m) => m.cols,
            Linear::Q8(m) => m.cols,
        }
    }
    /// Bytes of weight data streamed per matrix-vector product.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::F32 { w, .. } => w.len() * 4,
            Linear::Lut(m) => m.weight_bytes(),
            Linear::Q8(m) => m.weight_bytes(),
        }
    }
    /// Short name of the weight format.
    pub fn kind(&self) -> String {
        match self {
            Linear::F32 { .. } => "f32".into(),
            Linear::Lut(m) if m.ternary => "lut-ternary".into(),
            Linear::Lut(m) => format!("lut-q{}", m.bits),
            Linear::Q8(_) => "q8".into(),
        }
    }

    /// Quantize `x` into `act` (and build its tables) as the layers in `users` need it.
    pub fn prepare(act: &mut Activations, x: &[f32], users: &[&Linear]) {
        if users.iter().all(|l| matches!(l, Linear::F32 { .. })) {
            return;
        }
        act.quantize(x, ACT_GROUP);
        if users.iter().any(|l| matches!(l, Linear::Lut(_))) {
            act.build_tables();
        }
    }

    /// y (rows) = W x (cols); `act` holds x prepared by `prepare`.
    pub fn forward(&self, x: &[f32], act: &Activations, y: &mut [f32]) {
        match self {
            Linear::F32 { cols, w, .. } => kf32::matvec(w, *cols, x, y),
            Linear::Lut(m) => kernel::lut_gemv(kernel::isa(), m, act, y),
            Linear::Q8(m) => kernel::q8_gemv(kernel::isa(), m, act, y),
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
        }
    }
}
