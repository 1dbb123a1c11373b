//! Loading a model's tensors from a parsed GGUF file into the layout the forward pass uses.

use super::config::{Arch, Config};
use super::linear::Linear;
use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::format::{Blob, Bytes};
use crate::quant::ggml::{dequantize, GgmlType};
use crate::quant::{iq4::Iq4Matrix, lut, q8::Q8Matrix, ternary};
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
    /// Factors the outputs of wq, wk, wv, wo, w_gate, w_up, w_down are multiplied by (1 for
    /// most models): llama.cpp's optional `*.scale` tensors, times the tensor scale of exactly
    /// ternary weights held as codes (see `quant::ternary`).
    pub scales: [f32; 7],
}

/// The token embedding table: rows decoded on demand, straight from the file's own type, or
/// from a matrix of a tmac file.
pub enum Embedding {
    File {
        typ: GgmlType,
        offset: usize,
        row_bytes: usize,
        rows: usize,
    },
    Matrix(Linear),
}

impl Embedding {
    pub fn rows(&self) -> usize {
        match self {
            Embedding::File { rows, .. } => *rows,
            Embedding::Matrix(m) => m.rows(),
        }
    }

    /// Decode row `id` into `out` (cols).
    pub fn row(&self, file: &[u8], id: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Embedding::File {
                typ,
                offset,
                row_bytes,
                ..
            } => {
                let start = offset + id * row_bytes;
                let src = file
                    .get(start..start + row_bytes)
                    .ok_or_else(|| Error::invalid("token id out of range"))?;
                dequantize(*typ, src, out)
            }
            Embedding::Matrix(m) => {
                m.dequantize_row(id, out);
                Ok(())
            }
        }
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

    /// The factor in llama.cpp's optional `<matrix>.scale` tensor (1 element), or 1.
    pub fn scale_factor(&self, matrix: &str) -> Result<f32> {
        let name = ternary::scale_name(matrix);
        if self.g.tensor(&name).is_none() {
            return Ok(1.0);
        }
        Ok(self.vector(&name, 1)?[0])
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

impl<'a> Loader<'a> {
    /// The GGUF tensor `name` as a (rows, cols) matrix of a type tmac can read.
    pub fn ggml_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<&'a TensorInfo> {
        let t = self.shaped(name, rows, cols)?;
        if !t.typ.can_dequantize() {
            return Err(Error::unsupported(format!(
                "tensor {name} has type {}, which tmac cannot read",
                t.typ.name()
            )));
        }
        Ok(t)
    }

    /// A tensor's bytes as a zero-copy view of the file.
    pub fn mapped(&self, t: &TensorInfo) -> Blob {
        Blob::Mapped {
            bytes: self.bytes.clone(),
            start: t.offset,
            len: t.size,
        }
    }

    /// The matrix `name` if this is a tmac file that stores it in kernel layout (zero-copy).
    pub fn tmac_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Linear>> {
        crate::format::tmacfile::read_matrix(self, name, rows, cols)
    }
}

/// How matrices are stored once loaded.
pub trait MatrixBuilder {
    fn build(&self, l: &Loader, name: &str, rows: usize, cols: usize) -> Result<Linear>;

    /// A transformer-block matrix and a factor for its output. A builder that holds exactly
    /// ternary weights as codes returns them with scale 1 and the tensor scale here.
    fn build_scaled(
        &self,
        l: &Loader,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(Linear, f32)> {
        Ok((self.build(l, name, rows, cols)?, 1.0))
    }
}

/// The reference: every matrix dequantized to f32.
pub struct F32Builder;

impl MatrixBuilder for F32Builder {
    fn build(&self, l: &Loader, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        if let Some(m) = l.tmac_matrix(name, rows, cols)? {
            let mut w = vec![0f32; rows * cols];
            for (r, row) in w.chunks_exact_mut(cols).enumerate() {
                m.dequantize_row(r, row);
            }
            return Ok(Linear::F32 { rows, cols, w });
        }
        Ok(Linear::F32 {
            rows,
            cols,
            w: l.f32s(l.ggml_matrix(name, rows, cols)?)?,
        })
    }
}

/// The default: each matrix through the fastest kernel that holds it exactly. tmac files are
/// used in place; from GGUF, the types with integer codes (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K to
/// Q6_K, TQ1_0, TQ2_0) are repacked into LUT layout, Q8_0, IQ4_NL and IQ4_XS are used in place,
/// and F32, F16 and BF16 stay f32. In the transformer blocks, exactly
/// ternary weights (TQ1_0/TQ2_0 with one scale, I2_S, F32/F16/BF16 holding -s, 0, +s) become
/// ternary codes with the scale applied to the output: activations are then quantized per
/// token, as BitNet b1.58 defines it.
pub struct KernelBuilder;

impl MatrixBuilder for KernelBuilder {
    fn build_scaled(
        &self,
        l: &Loader,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(Linear, f32)> {
        if let Some(m) = l.tmac_matrix(name, rows, cols)? {
            return Ok((m, 1.0));
        }
        let t = l.ggml_matrix(name, rows, cols)?;
        if let Some(tn) = ternary::from_tensor(t.typ, l.data(t), rows, cols)? {
            let m = tn.to_lut();
            m.validate()?;
            return Ok((Linear::Lut(m), tn.scale));
        }
        Ok((self.build(l, name, rows, cols)?, 1.0))
    }

    fn build(&self, l: &Loader, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        use GgmlType::*;
        if let Some(m) = l.tmac_matrix(name, rows, cols)? {
            return Ok(m);
        }
        let t = l.ggml_matrix(name, rows, cols)?;
        if let Some(m) = lut::from_ggml(t.typ, l.data(t), rows, cols) {
            m.validate()?;
            return Ok(Linear::Lut(m));
        }
        match t.typ {
            Q8_0 => Ok(Linear::Q8(Q8Matrix::new(rows, cols, l.mapped(t), None)?)),
            IQ4NL | IQ4XS => Ok(Linear::Iq4(Iq4Matrix::new(rows, cols, t.typ, l.mapped(t))?)),
            _ => F32Builder.build(l, name, rows, cols),
        }
    }
}

pub fn load(l: &Loader, cfg: &Config, mb: &dyn MatrixBuilder) -> Result<Weights> {
    let (d, ff, q, kv) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
    let n_vocab = cfg.n_vocab;
    let mat = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
        mb.build(l, name, rows, cols).map_err(|e| {
            if e.msg.contains(name) {
                e
            } else {
                e.context(format!("tensor {name}"))
            }
        })
    };
    let smat = |name: &str, rows: usize, cols: usize| -> Result<(Linear, f32)> {
        let (m, s) = mb.build_scaled(l, name, rows, cols).map_err(|e| {
            if e.msg.contains(name) {
                e
            } else {
                e.context(format!("tensor {name}"))
            }
        })?;
        Ok((m, s * l.scale_factor(name)?))
    };
    let tok_embd = match l.tmac_matrix("token_embd.weight", n_vocab, d)? {
        Some(m) => Embedding::Matrix(m),
        None => {
            let t = l.ggml_matrix("token_embd.weight", n_vocab, d)?;
            if t.typ == GgmlType::I2S {
                return Err(Error::unsupported(
                    "tensor token_embd.weight: an I2_S token embedding is not supported",
                ));
            }
            let row_bytes = t.typ.row_bytes(d as u64).unwrap_or(0) as usize;
            Embedding::File {
                typ: t.typ,
                offset: t.offset,
                row_bytes,
                rows: n_vocab,
            }
        }
    };
    let bitnet = cfg.arch == Arch::Bitnet;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        let attn_norm = l.vector(&n("attn_norm.weight"), d)?;
        let (wq, sq) = smat(&n("attn_q.weight"), q, d)?;
        let (wk, sk) = smat(&n("attn_k.weight"), kv, d)?;
        let (wv, sv) = smat(&n("attn_v.weight"), kv, d)?;
        let (wo, so) = smat(&n("attn_output.weight"), d, q)?;
        let attn_sub_norm = bitnet
            .then(|| l.vector(&n("attn_sub_norm.weight"), q))
            .transpose()?;
        let ffn_norm = l.vector(&n("ffn_norm.weight"), d)?;
        let (w_gate, sg) = smat(&n("ffn_gate.weight"), ff, d)?;
        let (w_up, su) = smat(&n("ffn_up.weight"), ff, d)?;
        let (w_down, sd) = smat(&n("ffn_down.weight"), d, ff)?;
        let ffn_sub_norm = bitnet
            .then(|| l.vector(&n("ffn_sub_norm.weight"), ff))
            .transpose()?;
        layers.push(Layer {
            attn_norm,
            wq,
            wk,
            wv,
            wo,
            attn_sub_norm,
            ffn_norm,
            w_gate,
            w_up,
            w_down,
            ffn_sub_norm,
            scales: [sq, sk, sv, so, sg, su, sd],
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
