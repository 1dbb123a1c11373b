//! y = W x for every matrix layout (`layout::linear::Linear`): the inputs each layout needs
//! (int8 activations, lookup tables) and the dispatch to the GEMV of the layout.

use super::f32 as kf32;
use super::lut::{Activations, Tables};
use super::{Isa, Knobs};
use crate::layout::linear::Linear;

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
    /// Quantize `x` into `act` (and build its tables of `kind`) as the layers in `users` need it.
    pub fn prepare(act: &mut Activations, x: &[f32], users: &[&Linear], kind: Tables) {
        Linear::prepare_inputs(act, x, users, Some(kind));
    }

    /// `prepare` for a batch: `xs` holds one input per element of `acts`. A batch of several
    /// inputs builds tables only where `forward_batch` reads them (int8 tables, or an
    /// instruction set without batched kernels).
    pub fn prepare_batch(
        acts: &mut [Activations],
        xs: &[f32],
        users: &[&Linear],
        kind: Tables,
        isa: Isa,
    ) {
        let tables = acts.len() == 1 || super::gemm_reads_tables(isa, kind);
        let k = xs.len() / acts.len().max(1);
        for (act, x) in acts.iter_mut().zip(xs.chunks_exact(k)) {
            Linear::prepare_inputs(act, x, users, tables.then_some(kind));
        }
    }

    fn prepare_inputs(act: &mut Activations, x: &[f32], users: &[&Linear], kind: Option<Tables>) {
        if users.iter().all(|l| matches!(l, Linear::F32 { .. })) {
            return;
        }
        act.quantize(x, act_group(users, x.len()));
        match kind {
            Some(kind) if users.iter().any(|l| matches!(l, Linear::Lut(_))) => {
                act.build_tables(kind)
            }
            _ => {}
        }
    }

    /// y (rows) = W x (cols); `act` holds x prepared by `prepare`.
    pub fn forward(&self, x: &[f32], act: &Activations, y: &mut [f32], isa: Isa, knobs: &Knobs) {
        match self {
            Linear::F32 { cols, w, .. } => kf32::matvec(w, *cols, x, y, knobs.prefetch, isa),
            Linear::Lut(m) => super::lut_gemv(isa, m, act, y, knobs),
            Linear::Q8(m) => super::q8_gemv(isa, m, act, y, knobs),
            Linear::Iq4(m) => super::iq4_gemv(isa, m, act, y, knobs),
        }
    }

    /// Y = W X for several inputs: `xs` and `ys` hold one row per input, `acts` their prepared
    /// forms. LUT, 8-bit and codebook matrices read their weights once per batch.
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
            Linear::Lut(m) if acts.len() > 1 => super::lut_gemm(isa, m, acts, ys, knobs),
            Linear::Q8(m) if acts.len() > 1 => super::q8_gemm(isa, m, acts, ys, knobs),
            Linear::Iq4(m) if acts.len() > 1 => super::iq4_gemm(isa, m, acts, ys, knobs),
            Linear::F32 { cols, w, .. } => kf32::matmul(w, *cols, xs, ys, knobs.prefetch, isa),
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
}
