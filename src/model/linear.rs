//! A linear layer y = W x and the input it reads. Each weight format (f32 reference, T-MAC
//! lookup tables, 8-bit) is one variant; the forward pass does not care which it calls.

use crate::kernel::lut::{Activations, Tables};
use crate::kernel::{self, f32 as kf32, Isa, Knobs};
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

/// Columns over which a layer sums integers before applying scales: activations may not change
/// scale inside such a span.
fn int_group(l: &Linear) -> Option<usize> {
    match l {
        Linear::F32 { .. } => None,
        // K-quant sub-scales are integers: their sums span a whole super-block
        Linear::Lut(m) => Some((m.group * m.sup.unwrap_or(1)).min(m.cols.div_ceil(8) * 8)),
        Linear::Q8(_) => Some(crate::layout::q8::Q8_BLOCK),
        Linear::Iq4(m) => Some(m.block()),
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The activation scale group for an input read by `users`: the finest grouping all of them
/// allow (the lcm of their integer groups). Ternary weights with one scale per row or tensor
/// therefore get one activation scale per vector, exactly as BitNet's W1.58A8 defines it;
/// 4-bit weights with 32-column groups get one per 32 activations, like llama.cpp's Q8 blocks.
pub fn act_group(users: &[&Linear], k: usize) -> usize {
    let l = users
        .iter()
        .filter_map(|u| int_group(u))
        .fold(1, |acc, g| acc / gcd(acc, g) * g);
    if l >= k {
        usize::MAX
    } else {
        l
    }
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

    /// Quantize `x` into `act` (and build its tables of `kind`) as the layers in `users` need it.
    pub fn prepare(act: &mut Activations, x: &[f32], users: &[&Linear], kind: Tables) {
        if users.iter().all(|l| matches!(l, Linear::F32 { .. })) {
            return;
        }
        act.quantize(x, act_group(users, x.len()));
        if users.iter().any(|l| matches!(l, Linear::Lut(_))) {
            act.build_tables(kind);
        }
    }

    /// y (rows) = W x (cols); `act` holds x prepared by `prepare`.
    pub fn forward(&self, x: &[f32], act: &Activations, y: &mut [f32], isa: Isa, knobs: &Knobs) {
        match self {
            Linear::F32 { cols, w, .. } => kf32::matvec(w, *cols, x, y),
            Linear::Lut(m) => kernel::lut_gemv(isa, m, act, y, knobs),
            Linear::Q8(m) => kernel::q8_gemv(isa, m, act, y, knobs),
            Linear::Iq4(m) => kernel::iq4_gemv(isa, m, act, y, knobs),
        }
    }

    /// Y = W X for several inputs: `xs` and `ys` hold one row per input, `acts` their prepared
    /// forms. LUT matrices read their weights once per batch.
    pub fn forward_batch(
        &self,
        xs: &[f32],
        acts: &[Activations],
        ys: &mut [f32],
        isa: Isa,
        knobs: &Knobs,
    ) {
        let (rows, cols) = (self.rows(), self.cols());
        match self {
            Linear::Lut(m) if acts.len() > 1 => kernel::lut_gemm(isa, m, acts, ys, knobs),
            _ => {
                for ((x, act), y) in xs
                    .chunks_exact(cols)
                    .zip(acts)
                    .zip(ys.chunks_exact_mut(rows))
                {
                    self.forward(x, act, y, isa, knobs);
                }
            }
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
