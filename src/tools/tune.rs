//! `tmac tune`: time the kernel knobs (`kernel::candidates`) on a model's own matrices.

use crate::kernel::linear::act_group;
use crate::kernel::lut::{Activations, Tables};
use crate::kernel::{self, candidates, Isa, Knobs};
use crate::layout::linear::Linear;
use crate::model::Model;
use std::time::Instant;

/// Time every candidate on the model's own matrices, all of them once per round as a decoded
/// token streams them: the median over `rounds` rounds, candidates interleaved within each
/// round so drift in the machine's speed hits all of them alike. Returns (knobs, median
/// seconds) per candidate.
pub fn tune(model: &Model, isa: Isa, rounds: usize) -> Vec<(Knobs, f64)> {
    let mats: Vec<&Linear> = model
        .weights
        .layers
        .iter()
        .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
        .chain(std::iter::once(&model.weights.output))
        .filter(|m| !matches!(m, Linear::F32 { .. }))
        .collect();
    // one prepared input per matrix, with each kind of tables
    let inputs: Vec<[Activations; 2]> = mats
        .iter()
        .map(|m| {
            let x: Vec<f32> = (0..m.cols())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            [Tables::Exact, Tables::Int8].map(|kind| {
                let mut a = Activations::new();
                a.quantize(&x, act_group(&[m], m.cols()));
                a.build_tables(kind);
                a
            })
        })
        .collect();
    let cands = candidates(isa);
    let mut times = vec![Vec::new(); cands.len()];
    let mut y = vec![0f32; mats.iter().map(|m| m.rows()).max().unwrap_or(0)];
    for _ in 0..rounds.max(1) {
        for (c, k) in cands.iter().enumerate() {
            let t = Instant::now();
            for (m, a) in mats.iter().zip(&inputs) {
                let a = &a[(k.tables == Tables::Int8) as usize];
                match m {
                    Linear::Lut(m) => kernel::lut_gemv(isa, m, a, &mut y, k),
                    Linear::Q8(m) => kernel::q8_gemv(isa, m, a, &mut y, k),
                    Linear::Iq4(m) => kernel::iq4_gemv(isa, m, a, &mut y, k),
                    Linear::F32 { .. } => {}
                }
            }
            times[c].push(t.elapsed().as_secs_f64());
        }
    }
    cands
        .into_iter()
        .zip(times)
        .map(|(k, mut t)| {
            t.sort_by(f64::total_cmp);
            (k, t[t.len() / 2])
        })
        .collect()
}
