//! Loading a model's tensors from a parsed GGUF file into the layout the forward pass uses.

use super::config::{Arch, Config};
use crate::error::{Error, Result};
use crate::format::gguf::Gguf;
use crate::format::tensors::Loader;
use crate::kernel::rotate;
use crate::layout::ggml::{dequantize, GgmlType};
use crate::layout::linear::Linear;
use crate::layout::{iq4::Iq4Matrix, lut, q8::Q8Matrix, ternary};

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    /// What other architectures add to the layer.
    pub extra: Extras,
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
    /// ternary weights held as codes (see `layout::ternary`).
    pub scales: [f32; 7],
}

/// What some architectures add to a Llama layer (all None for Llama).
#[derive(Default)]
pub struct Extras {
    /// Biases of the Q, K, V and output projections (Qwen2), where the file has them.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of Q and K (head_dim each; Qwen3, Gemma 3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// RMSNorm of the attention output and of the FFN output before the residual adds
    /// (Gemma 2 and 3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
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
    /// Added to the logits (Qwen2's optional output.bias).
    pub out_bias: Option<Vec<f32>>,
    /// Llama 3.1 style per-dimension RoPE frequency divisors.
    pub rope_freqs: Option<Vec<f32>>,
    /// The signs of the residual-stream rotation folded into a calibrated file's weights
    /// (`kernel::rotate`; tensor `rotation.signs`).
    pub rotation: Option<Vec<f32>>,
}

/// How matrices are stored once loaded.
pub(crate) trait MatrixBuilder {
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
pub(crate) struct F32Builder;

impl MatrixBuilder for F32Builder {
    fn build(&self, l: &Loader, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        if let Some(m) = l.tmac_matrix(name, rows, cols)? {
            let w = m.to_f32s();
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
/// Q6_K, TQ1_0, TQ2_0) are repacked into LUT layout, IQ4_NL and IQ4_XS into 8-row codebook
/// tiles, Q8_0 is used in place, and F32, F16 and BF16 stay f32. In the transformer blocks, exactly
/// ternary weights (TQ1_0/TQ2_0 with one scale, I2_S, F32/F16/BF16 holding -s, 0, +s) become
/// ternary codes with the scale applied to the output: activations are then quantized per
/// token, as BitNet b1.58 defines it.
pub(crate) struct KernelBuilder;

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
            IQ4NL | IQ4XS => Ok(Linear::Iq4(Iq4Matrix::from_ggml(
                t.typ,
                l.data(t),
                rows,
                cols,
            )?)),
            _ => F32Builder.build(l, name, rows, cols),
        }
    }
}

pub(crate) fn load(l: &Loader, cfg: &Config, mb: &dyn MatrixBuilder) -> Result<Weights> {
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
    let qk_norm = matches!(cfg.arch, Arch::Qwen3 | Arch::Gemma3);
    let post_norms = matches!(cfg.arch, Arch::Gemma2 | Arch::Gemma3);
    let bias = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
        l.has(name).then(|| l.vector(name, n)).transpose()
    };
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
        let head_norm = |s: &str| qk_norm.then(|| l.vector(&n(s), cfg.head_dim)).transpose();
        let post_norm = |s: &str| post_norms.then(|| l.vector(&n(s), d)).transpose();
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
            extra: Extras {
                bq: bias(&n("attn_q.bias"), q)?,
                bk: bias(&n("attn_k.bias"), kv)?,
                bv: bias(&n("attn_v.bias"), kv)?,
                bo: bias(&n("attn_output.bias"), d)?,
                q_norm: head_norm("attn_q_norm.weight")?,
                k_norm: head_norm("attn_k_norm.weight")?,
                post_attn_norm: post_norm("post_attention_norm.weight")?,
                post_ffn_norm: post_norm("post_ffw_norm.weight")?,
            },
            attn_sub_norm,
            ffn_norm,
            w_gate,
            w_up,
            w_down,
            ffn_sub_norm,
            scales: [sq, sk, sv, so, sg, su, sd],
        });
    }
    // Gemma 2 always ties the head to the embedding (llama.cpp reads no output.weight there)
    let output = if l.has("output.weight") && cfg.arch != Arch::Gemma2 {
        mat("output.weight", n_vocab, d)?
    } else {
        mat("token_embd.weight", n_vocab, d)? // tied head
    };
    let rope_freqs = match l.has("rope_freqs.weight") {
        false => None,
        true => Some(l.vector("rope_freqs.weight", cfg.rope_dim / 2)?),
    };
    let out_bias = bias("output.bias", n_vocab)?;
    let out_norm = l.vector("output_norm.weight", d)?;
    let rotation = match l.has(ROTATION) {
        false => None,
        true => Some(rotation_signs(l.vector(ROTATION, d)?)?),
    };
    if let Some(first) = l.unused().first() {
        let n = l.unused().len();
        return Err(Error::unsupported(format!(
            "tensor {first} is not used by tmac's {} graph ({n} unused tensor{}); running \
             without it would give other results than llama.cpp",
            cfg.arch_name,
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(Weights {
        tok_embd,
        layers,
        out_norm,
        output,
        out_bias,
        rope_freqs,
        rotation,
    })
}

/// The tensor holding the residual-stream rotation's signs.
pub(crate) const ROTATION: &str = "rotation.signs";

/// Rotation signs as a file holds them: each +1 or -1, for a stream `rotate` can turn.
fn rotation_signs(v: Vec<f32>) -> Result<Vec<f32>> {
    if rotate::block(v.len()).is_none() || v.iter().any(|&s| s != 1.0 && s != -1.0) {
        return Err(Error::invalid(format!(
            "tensor {ROTATION}: {} values, not all +1 or -1, or a width without Hadamard blocks",
            v.len()
        )));
    }
    Ok(v)
}

/// Cut the fused matrices of `cfg`'s architecture into the parts the forward pass reads:
/// Phi-3's attn_qkv into attn_q, attn_k, attn_v, and its ffn_up (gate rows, then up rows)
/// into ffn_gate and ffn_up.
pub(crate) fn split_fused(l: &mut Loader, cfg: &Config) -> Result<()> {
    let (d, ff, q, kv) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
    for i in 0..cfg.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let (wq, wk, wv) = (n("attn_q"), n("attn_k"), n("attn_v"));
        l.split(&n("attn_qkv"), d, &[(&wq, q), (&wk, kv), (&wv, kv)])?;
        let (gate, up) = (n("ffn_gate"), n("ffn_up"));
        // a file without ffn_gate holds it in ffn_up (a tmac file stores the two apart)
        if cfg.arch == Arch::Phi3 && !l.has(&gate) {
            l.split(&up.clone(), d, &[(&gate, ff), (&up, ff)])?;
        }
    }
    Ok(())
}

/// Refuse a GGUF with tensors of types tmac cannot read, naming each type and how many tensors
/// have it (a tmac file's kernel data is I8 and read by its own rules).
pub(crate) fn check_types(g: &Gguf) -> Result<()> {
    if g.get("tmac.format_version").is_some() {
        return Ok(());
    }
    let mut bad: Vec<(GgmlType, usize)> = Vec::new();
    for t in g.tensors.iter().filter(|t| !t.typ.can_dequantize()) {
        match bad.iter_mut().find(|(b, _)| *b == t.typ) {
            Some(b) => b.1 += 1,
            None => bad.push((t.typ, 1)),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = bad
        .iter()
        .map(|(t, n)| {
            format!(
                "{} ({n} tensor{})",
                t.name(),
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect();
    Err(Error::unsupported(format!(
        "tensor types tmac cannot read: {}; tmac reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, \
         Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and I2_S",
        list.join(", ")
    )))
}
