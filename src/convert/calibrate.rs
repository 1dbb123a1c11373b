//! `tmac quantize --calibrate`: the transformer blocks' matrices quantized by GPTQ
//! (`layout::gptq`) against the inputs they see on a calibration text.
//!
//! Layer by layer, as GPTQ does: the text's residual stream (all chunks) enters layer l, which
//! runs once with its f32 weights to sum the Hessian H = sum x x^T of each matrix input, is
//! quantized, and runs again quantized (through the kernels it will run on) to make the stream
//! for layer l + 1. So each layer is calibrated on what the quantized layers before it give.

use super::quantize::QuantizeOptions;
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::kernel::f32 as kf32;
use crate::layout::gptq::{act_order, damped, inverse_factor, permuted, Sweep};
use crate::layout::linear::Linear;
use crate::layout::quantize::quantize_matrix_gptq;
use crate::model::forward::{embed, layer, positions, Input, KvCache, Scratch, MAX_BATCH};
use crate::model::weights::Layer;
use crate::model::{Compute, LoadOptions, Model};
use std::path::Path;
use std::sync::Arc;

/// What to calibrate on.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub text: String,
    /// Tokens of the text to use at most (whole chunks of `n_ctx`).
    pub max_tokens: usize,
    /// Tokens per chunk, each chunk a fresh context starting with BOS where the model has one.
    pub n_ctx: usize,
    /// Turn the residual stream first (`convert::rotate`).
    pub rotate: bool,
}

/// What calibration gives the writer: the blocks' matrices, and the vectors a rotation
/// replaced or added (name, values).
pub(crate) struct Calibrated {
    pub matrices: Vec<(String, Linear)>,
    pub vectors: Vec<(String, Vec<f32>)>,
}

/// GPTQ's damping: this fraction of the Hessian's mean diagonal is added to its diagonal.
const DAMP: f64 = 0.01;

/// Rounds of refitting each row's group parameters to its GPTQ codes (`gptq::Sweep::refits`):
/// on SmolLM2's q2k gate and up, the first lowers held-out perplexity, the second GPL-3's too.
const REFITS: usize = 2;

/// The sum of x x^T over the rows x of the batches it is given (upper triangle, f64).
struct Hessian {
    n: usize,
    h: Vec<f64>,
}

impl Hessian {
    fn new(n: usize) -> Hessian {
        Hessian {
            n,
            h: vec![0.0; n * n],
        }
    }

    /// Add the rows of `x` (batch, n): with xt = x^T, row i of H gains xt[i..] . xt[i].
    fn add(&mut self, x: &[f32]) {
        let (n, b) = (self.n, x.len() / self.n);
        let mut xt = vec![0f32; n * b];
        for (t, row) in x.chunks_exact(n).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                xt[i * b + t] = v;
            }
        }
        let mut y = vec![0f32; n];
        let isa = crate::kernel::isa();
        for i in 0..n {
            kf32::matvec(
                &xt[i * b..],
                b,
                &xt[i * b..(i + 1) * b],
                &mut y[..n - i],
                0,
                isa,
            );
            for (h, &v) in self.h[i * n + i..(i + 1) * n].iter_mut().zip(&y) {
                *h += v as f64;
            }
        }
    }

    /// (column order, U, damped H, diagonal): GPTQ's act order, its inverse factor in that
    /// order, the damped Hessian in natural order, and each input's importance.
    fn factor(&self) -> (Vec<usize>, Vec<f32>, Vec<f64>, Vec<f32>) {
        let n = self.n;
        let diag: Vec<f32> = (0..n).map(|i| self.h[i * n + i] as f32).collect();
        let order = act_order(&diag);
        let u = inverse_factor(&permuted(&self.h, n, &order), n, DAMP);
        (order, u, damped(&self.h, n, DAMP), diag)
    }
}

/// The token chunks of the calibration text: whole chunks of `n_ctx` up to `max_tokens`, or
/// the whole text as one chunk if it is shorter than `n_ctx`.
fn chunks(m: &Model, cal: &Calibration) -> Result<Vec<Vec<u32>>> {
    let tokens = m.vocab.encode(&cal.text, true, false);
    let n_ctx = cal.n_ctx.min(tokens.len());
    if n_ctx < 16 {
        return Err(Error::invalid(format!(
            "the calibration text has {} tokens: it needs at least 16",
            tokens.len()
        )));
    }
    let n = (tokens.len() / n_ctx).min(cal.max_tokens.max(n_ctx) / n_ctx);
    Ok((0..n)
        .map(|c| {
            let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
            if let (true, Some(bos)) = (m.vocab.add_bos, m.vocab.bos) {
                chunk[0] = bos;
            }
            chunk
        })
        .collect())
}

/// The transformer blocks of the model in `bytes` (read from `path`), quantized to their
/// types in `opts` by GPTQ on `cal`, with the vectors a rotation changed.
/// `progress(layer, layers)`.
pub(crate) fn gptq_blocks(
    bytes: Arc<Bytes>,
    path: &Path,
    opts: &QuantizeOptions,
    cal: &Calibration,
    mut progress: impl FnMut(usize, usize),
) -> Result<Calibrated> {
    let f32s = LoadOptions {
        compute: Compute::F32,
        ..Default::default()
    };
    let mut model = Model::from_bytes_at(bytes, &f32s, Some(path))?;
    let m = Arc::get_mut(&mut model)
        .ok_or_else(|| Error::invalid("calibration needs the model it loads to itself"))?;
    if m.weights.layers.iter().any(|l| l.scales != [1.0; 7]) {
        return Err(Error::invalid(
            "calibration needs a model without output scales on its matrices (BitNet's \
             ternary weights carry over exactly without it)",
        ));
    }
    let vectors = match cal.rotate {
        true => super::rotate::rotate_model(m)?,
        false => Vec::new(),
    };
    let chunks = chunks(m, cal)?;
    let (d, n_ctx) = (m.cfg.n_embd, chunks[0].len());
    let mut kv = KvCache::new(&m.cfg, n_ctx, false);
    let mut s = Scratch::new(&m.cfg, n_ctx);
    // the residual stream of every chunk, (chunk, n_ctx, n_embd)
    let mut stream = vec![0f32; chunks.len() * n_ctx * d];
    for (c, chunk) in chunks.iter().enumerate() {
        for (b, batch) in chunk.chunks(MAX_BATCH).enumerate() {
            let pos = b * MAX_BATCH;
            embed(m, &kv, &mut s, batch, pos)?;
            let at = (c * n_ctx + pos) * d;
            stream[at..at + batch.len() * d].copy_from_slice(s.stream(batch.len(), d));
        }
    }
    let n_layer = m.weights.layers.len();
    // run layer l over every chunk, the stream in and (if `keep`) out
    let mut run = |m: &Model, l: usize, keep: bool, tap: &mut dyn FnMut(Input, &[f32])| {
        for (c, chunk) in chunks.iter().enumerate() {
            for (b, batch) in chunk.chunks(MAX_BATCH).enumerate() {
                let (pos, n) = (b * MAX_BATCH, batch.len());
                positions(m, &mut s, n, pos);
                let at = (c * n_ctx + pos) * d;
                s.stream(n, d).copy_from_slice(&stream[at..at + n * d]);
                layer(m, &mut kv, &mut s, (l, n, pos), tap);
                if keep {
                    stream[at..at + n * d].copy_from_slice(s.stream(n, d));
                }
            }
        }
    };
    for l in 0..n_layer {
        progress(l, n_layer);
        let cfg = &m.cfg;
        // one Hessian per `Input`, in its order
        let mut h = [cfg.n_embd, cfg.q_dim(), cfg.n_embd, cfg.n_ff].map(Hessian::new);
        run(m, l, false, &mut |input, x| h[input as usize].add(x));
        let factors = h.map(|h| h.factor());
        for (name, mat, input) in matrices(&mut m.weights.layers[l]) {
            let t = opts.target_for(&format!("blk.{l}.{name}.weight"));
            let Linear::F32 { rows, cols, w } = &*mat else {
                unreachable!("Compute::F32 loads every matrix as f32")
            };
            let (order, u, h, imp) = &factors[input as usize];
            let sweep = Sweep {
                order,
                u,
                h,
                refits: REFITS,
            };
            *mat = quantize_matrix_gptq(t, *rows, *cols, w, (&sweep, imp))?;
        }
        run(m, l, true, &mut |_, _| {});
    }
    progress(n_layer, n_layer);
    // the quantized matrices, out of the model
    let mut out = Vec::with_capacity(7 * n_layer);
    for (l, ly) in m.weights.layers.iter_mut().enumerate() {
        for (name, mat, _) in matrices(ly) {
            let empty = Linear::F32 {
                rows: 0,
                cols: 0,
                w: Vec::new(),
            };
            out.push((
                format!("blk.{l}.{name}.weight"),
                std::mem::replace(mat, empty),
            ));
        }
    }
    Ok(Calibrated {
        matrices: out,
        vectors,
    })
}

/// A layer's matrices: (GGUF name, matrix, its input).
fn matrices(ly: &mut Layer) -> [(&'static str, &mut Linear, Input); 7] {
    [
        ("attn_q", &mut ly.wq, Input::Attention),
        ("attn_k", &mut ly.wk, Input::Attention),
        ("attn_v", &mut ly.wv, Input::Attention),
        ("attn_output", &mut ly.wo, Input::AttentionOut),
        ("ffn_gate", &mut ly.w_gate, Input::Ffn),
        ("ffn_up", &mut ly.w_up, Input::Ffn),
        ("ffn_down", &mut ly.w_down, Input::FfnDown),
    ]
}
