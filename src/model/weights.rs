//! Loading a model's tensors from a parsed GGUF file into the layout the forward pass uses.

use super::config::{Arch, Config};
use super::linear::Linear;
use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::format::{Blob, Bytes};
use crate::quant::ggml::{dequantize, GgmlType};
use crate::quant::{lut, q8::Q8Matrix};
use std::sync::Arc;

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    /// BitNet: RMSNorm on the attention output before `wo`.
    pub attn_sub_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
    /// BitNet: RMSNorm on the FFN hidden vector before `w_down`.
    pub ffn_sub_norm: Option<Vec<f32>>,
}

/// The token embedding table, left in its file type; one row is decoded per token.
pub struct Embedding {
    pub typ: GgmlType,
    pub rows: usize,
    pub cols: usize,
    offset: usize,
    row_bytes: usize,
}

impl Embedding {
    /// Decode row `id` into `out` (cols).
    pub fn row(&self, file: &[u8], id: usize, out: &mut [f32]) -> Result<()> {
        let start = self.offset + id * self.row_bytes;
        dequantize(self.typ, &file[start..start + self.row_bytes], out)
    }
}

pub struct Weights {
    pub tok_embd: Embedding,
    pub layers: Vec<Layer>,
    pub out_norm: Vec<f32>,
    pub output: Linear,
    /// Llama 3.1 style per-dimension RoPE frequency divisors.
    pub rope_freqs: Option<Vec<f32>>,
}

/// Looks tensors up by name and checks their shapes before any data is touched.
pub struct Loader<'a> {
    pub g: &'a Gguf,
    pub file: &'a [u8],
    pub bytes: &'a Arc<Bytes>,
}

impl<'a> Loader<'a> {
    pub fn info(&self, name: &str) -> Result<&'a TensorInfo> {
        self.g
            .tensor(name)
            .ok_or_else(|| Error::format(format!("missing tensor {name}")))
    }

    /// Check that `name` is a (rows, cols) matrix (or a vector when rows == 1).
    pub fn shaped(&self, name: &str, rows: usize, cols: usize) -> Result<&'a TensorInfo> {
        let t = self.info(name)?;
        let want: &[u64] = if rows == 1 {
            &[cols as u64]
        } else {
            &[cols as u64, rows as u64]
        };
        let dims: Vec<u64> = t.dims.iter().copied().filter(|&d| d != 1).collect();
        let want: Vec<u64> = want.iter().copied().filter(|&d| d != 1).collect();
        if dims != want {
            return Err(Error::format(format!(
                "tensor {name} has shape {:?}, expected {:?}",
                t.dims,
                [cols, rows]
            )));
        }
        Ok(t)
    }

    pub fn data(&self, t: &TensorInfo) -> &'a [u8] {
        &self.file[t.offset..t.offset + t.size]
    }

    /// The tensor as f32, whatever its type.
    pub fn f32s(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let mut out = vec![0f32; t.n_elements() as usize];
        dequantize(t.typ, self.data(t), &mut out)
            .map_err(|e| e.context(format!("tensor {}", t.name)))?;
        Ok(out)
    }

    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let v = self.f32s(self.shaped(name, 1, n)?)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(format!(
                "tensor {name}: element {i} is {}",
                v[i]
            )));
        }
        Ok(v)
    }
}

/// How matrices are stored once loaded.
pub trait MatrixBuilder {
    fn build(&self, l: &Loader, t: &TensorInfo, rows: usize, cols: usize) -> Result<Linear>;
}

/// The reference: every matrix dequantized to f32.
pub struct F32Builder;

impl MatrixBuilder for F32Builder {
    fn build(&self, l: &Loader, t: &TensorInfo, rows: usize, cols: usize) -> Result<Linear> {
        Ok(Linear::F32 {
            rows,
            cols,
            w: l.f32s(t)?,
        })
    }
}

/// The default: each matrix through the fastest kernel that holds it exactly. Q4_0, Q4_1,
/// TQ1_0 and TQ2_0 are repacked into LUT layout, Q8_0 is used in place from the file, and
/// anything else is dequantized to f32.
pub struct KernelBuilder;

impl MatrixBuilder for KernelBuilder {
    fn build(&self, l: &Loader, t: &TensorInfo, rows: usize, cols: usize) -> Result<Linear> {
        use GgmlType::*;
        match t.typ {
            Q4_0 | Q4_1 | TQ1_0 | TQ2_0 => {
                let m = lut::from_ggml(t.typ, l.data(t), rows, cols)
                    .ok_or_else(|| Error::unsupported(format!("cannot repack {}", t.typ.name())))?;
                m.validate()?;
                Ok(Linear::Lut(m))
            }
            Q8_0 => {
                let blob = Blob::Mapped {
                    bytes: l.bytes.clone(),
                    start: t.offset,
                    len: t.size,
                };
                Ok(Linear::Q8(Q8Matrix::new(rows, cols, blob)?))
            }
            _ => F32Builder.build(l, t, rows, cols),
        }
    }
}

pub fn load(l: &Loader, cfg: &Config, mb: &dyn MatrixBuilder) -> Result<Weights> {
    let (d, ff, q, kv) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
    let emb = l.info("token_embd.weight")?;
    let n_vocab = cfg.n_vocab;
    l.shaped("token_embd.weight", n_vocab, d)?;
    if !emb.typ.can_dequantize() {
        return Err(Error::unsupported(format!(
            "tensor token_embd.weight has type {}, which tmac cannot read",
            emb.typ.name()
        )));
    }
    let row_bytes = emb.typ.row_bytes(d as u64).unwrap_or(0) as usize;
    let tok_embd = Embedding {
        typ: emb.typ,
        rows: n_vocab,
        cols: d,
        offset: emb.offset,
        row_bytes,
    };
    let mat = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
        let t = l.shaped(name, rows, cols)?;
        if !t.typ.can_dequantize() {
            return Err(Error::unsupported(format!(
                "tensor {name} has type {}, which tmac cannot read",
                t.typ.name()
            )));
        }
        mb.build(l, t, rows, cols)
            .map_err(|e| e.context(format!("tensor {name}")))
    };
    let bitnet = cfg.arch == Arch::Bitnet;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        layers.push(Layer {
            attn_norm: l.vector(&n("attn_norm.weight"), d)?,
            wq: mat(&n("attn_q.weight"), q, d)?,
            wk: mat(&n("attn_k.weight"), kv, d)?,
            wv: mat(&n("attn_v.weight"), kv, d)?,
            wo: mat(&n("attn_output.weight"), d, q)?,
            attn_sub_norm: bitnet
                .then(|| l.vector(&n("attn_sub_norm.weight"), q))
                .transpose()?,
            ffn_norm: l.vector(&n("ffn_norm.weight"), d)?,
            w_gate: mat(&n("ffn_gate.weight"), ff, d)?,
            w_up: mat(&n("ffn_up.weight"), ff, d)?,
            w_down: mat(&n("ffn_down.weight"), d, ff)?,
            ffn_sub_norm: bitnet
                .then(|| l.vector(&n("ffn_sub_norm.weight"), ff))
                .transpose()?,
        });
    }
    let output = if l.g.tensor("output.weight").is_some() {
        mat("output.weight", n_vocab, d)?
    } else {
        mat("token_embd.weight", n_vocab, d)? // tied head
    };
    let rope_freqs = match l.g.tensor("rope_freqs.weight") {
        None => None,
        Some(_) => Some(l.vector("rope_freqs.weight", cfg.rope_dim / 2)?),
    };
    Ok(Weights {
        tok_embd,
        layers,
        out_norm: l.vector("output_norm.weight", d)?,
        output,
        rope_freqs,
    })
}
