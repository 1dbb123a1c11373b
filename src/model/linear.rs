//! A linear layer y = W x and the input it reads. Each weight format (f32 reference, T-MAC
//! lookup tables, 8-bit) is one variant; the forward pass does not care which it calls.

use crate::kernel::f32 as kf32;

pub enum Linear {
    /// Row-major (rows, cols) f32 weights: the reference path.
    F32 {
        rows: usize,
        cols: usize,
        w: Vec<f32>,
    },
}

impl Linear {
    pub fn rows(&self) -> usize {
        match self {
            Linear::F32 { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Linear::F32 { cols, .. } => *cols,
        }
    }
    /// Bytes of weight data streamed per matrix-vector product.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::F32 { w, .. } => w.len() * 4,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Linear::F32 { .. } => "f32",
        }
    }

    /// y (rows) = W x (cols)
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        match self {
            Linear::F32 { cols, w, .. } => kf32::matvec(w, *cols, x, y),
        }
    }
}
