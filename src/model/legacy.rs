//! Models from the original T-MAC engine's files and llama2.c checkpoints (format/legacy.rs).
//! (`convert::export` writes any model tmac runs as a llama2.c checkpoint and tokenizer.bin.)
//!
//! Loading maps each file onto tmac's own structures:
//! - llama2.c f32 checkpoints: `Linear::F32` (the reference path); the token embedding is read
//!   in place from the file.
//! - T-MAC v1 and v2: ternary LUT matrices (codes q = w + 1, `Zero::Offset(1)`, one scale group
//!   per row). v2 rows get their f16 scale; v1 stores no scale and gets d = 1.0, keeping its
//!   semantics (outputs and embedding rows are plain sums of -1/0/+1 weights).
//! - Q4V1: blocks of 32 with an f16 scale and nibble = q + 8, like ggml's Q4_0 but with another
//!   nibble order and blocks that run across rows. When every row starts on a block boundary
//!   (cols % 32 == 0, true for every llama2.c model) it becomes a 4-bit LUT matrix with
//!   `Zero::Offset(8)` and groups of 32, exactly; otherwise it is dequantized to f32.
//! - The shared classifier (positive vocab_size) is the embedding matrix, held once.
//!
//! Config: llama2.c's constants (RMSNorm eps 1e-5, SwiGLU, adjacent-pair RoPE over the whole
//! head, which is tmac's "normal" RoPE). The RoPE base is not in the header: it is recovered
//! from the freq_cis tables (pair head_size/2 - 1 at position 1 gives base^(-(hs-2)/hs)), and
//! the whole table is then checked against RoPE with that base; tables too small to tell
//! (seq_len 1 or head size 2) mean llama2.c's 10000. So `tmac export --llama2c` of a model with
//! base 100000 (SmolLM2) runs with 100000 again.
//!
//! Vocabulary (tokenizer.bin): llama2.c's scheme is tmac's SentencePiece-style `Spm` model:
//! best-score pair merges, `<0xNN>` byte fallback, a dummy leading space before the text (as
//! llama2.c's run.c adds, and the Mojo engine forgot), BOS = 1 added, EOS = 2; generation also
//! stops at BOS as in run.c. Spaces are real spaces in tokenizer.bin and become U+2581 here.

use super::config::{Activation, Arch, Config};
use super::weights::{Embedding, Layer, Weights};
use super::{Compute, LoadOptions, Model};
use crate::bytes::{Blob, Bytes};
use crate::error::{Error, ErrorKind, Result};
use crate::format::legacy::{self, LegacyFile, Storage, Tensor};
use crate::format::llama2c;
use crate::format::Kind;
use crate::layout::ggml::GgmlType;
use crate::layout::linear::Linear;
use crate::layout::lut::{self, LutMatrix, Zero};
use crate::tokenizer::{Model as TokModel, TokenType, Vocab, VocabSpec};
use half::f16;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tokenizer.bin to use: the one given, else `tokenizer.bin` next to the model, else in the
/// current directory (the original's default).
pub(crate) fn tokenizer_path(given: Option<&Path>, model: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Some(m) = model {
        let p = m.parent().map_or_else(
            || PathBuf::from("tokenizer.bin"),
            |d| d.join("tokenizer.bin"),
        );
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
    }
    let cwd = PathBuf::from("tokenizer.bin");
    if cwd.is_file() {
        return Ok(cwd);
    }
    tried.push(cwd);
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "this model file has no vocabulary: give its tokenizer.bin with -z (looked for {})",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    ))
}

/// Load a legacy file (`kind` as detected) with its tokenizer.bin.
pub(super) fn load(
    bytes: Arc<Bytes>,
    kind: Kind,
    opts: &LoadOptions,
    model_path: Option<&Path>,
) -> Result<Arc<Model>> {
    let file = bytes.as_slice();
    let lf = legacy::parse(kind, file)?;
    let cfg = config(&lf, file)?;
    let tok = tokenizer_path(opts.tokenizer.as_deref(), model_path)?;
    let tok_bytes = std::fs::read(&tok).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{}: cannot read the tokenizer: {e}", tok.display()),
        )
    })?;
    let vocab = vocab_from_tokenizer_bin(&tok_bytes, cfg.n_vocab)
        .map_err(|e| e.context(format!("tokenizer {}", tok.display())))?;
    let weights = weights(&lf, file, opts.compute)?;
    let n_float = lf
        .tensors
        .iter()
        .filter(|t| t.storage == Storage::F32)
        .count();
    let mut tensor_types = vec![("F32".to_string(), n_float)];
    let quantized = lf.tensors.len() - n_float;
    if quantized > 0 {
        let name = match kind {
            Kind::TmacV1 => "ternary (T-MAC v1)",
            Kind::TmacV2 => "ternary (T-MAC v2)",
            _ => "Q4V1",
        };
        tensor_types.push((name.to_string(), quantized));
    }
    let (isa, knobs) = super::kernels_for(opts)?;
    Ok(Arc::new(Model {
        isa,
        knobs,
        cfg,
        vocab,
        weights,
        format: kind,
        tensor_types,
        bytes,
    }))
}

fn config(lf: &LegacyFile, file: &[u8]) -> Result<Config> {
    let h = &lf.header;
    let (re, im) = (tensor(lf, "freq_cis_real")?, tensor(lf, "freq_cis_imag")?);
    let rope_base = rope_base_from_tables(re.data(file), im.data(file), h.seq_len, h.head_size())?;
    Ok(Config {
        arch: Arch::Llama,
        arch_name: "llama".to_string(),
        n_embd: h.dim,
        n_ff: h.hidden_dim,
        n_layer: h.n_layers,
        n_head: h.n_heads,
        n_head_kv: h.n_kv_heads,
        head_dim: h.head_size(),
        n_vocab: h.vocab_size,
        n_ctx_train: h.seq_len,
        rms_eps: 1e-5,
        rope_base,
        rope_dim: h.head_size(),
        act: Activation::Silu,
        graph: Default::default(),
    })
}

fn tensor<'a>(lf: &'a LegacyFile, name: &str) -> Result<&'a Tensor> {
    lf.tensor(name)
        .ok_or_else(|| Error::format(format!("missing tensor {name}")))
}

/// The RoPE base that the freq_cis tables (f32 [seq_len][head_size / 2] each) were made with.
pub(crate) fn rope_base_from_tables(
    re: &[u8],
    im: &[u8],
    seq_len: usize,
    head_size: usize,
) -> Result<f32> {
    let half = head_size / 2;
    let at = |d: &[u8], p: usize, i: usize| legacy::f32_at(d, p * half + i) as f64;
    let base = if seq_len < 2 || half < 2 {
        10000.0
    } else {
        let i = half - 1;
        let angle = at(im, 1, i).atan2(at(re, 1, i)); // = base^(-2i / head_size)
        let b = (-angle.ln() * head_size as f64 / (2 * i) as f64).exp();
        if !(angle > 0.0 && b.is_finite() && b > 1.0) {
            return Err(Error::format(format!(
                "freq_cis tables: position 1, pair {i} (cos {}, sin {}) is not a RoPE rotation",
                at(re, 1, i),
                at(im, 1, i)
            )));
        }
        // bases are integers in practice; the f32 tables give about 7 digits
        if b >= 100.0 {
            b.round()
        } else {
            b
        }
    };
    for p in 0..seq_len {
        for i in 0..half {
            let a = p as f64 * base.powf(-2.0 * i as f64 / head_size as f64);
            let tol = 1e-4 + a * 2.5e-7; // f32 tables: angle and cos/sin rounded to f32
            let (c, s) = (at(re, p, i), at(im, p, i));
            if !((c - a.cos()).abs() <= tol && (s - a.sin()).abs() <= tol) {
                return Err(Error::format(format!(
                    "freq_cis tables are not RoPE with base {base}: position {p}, pair {i} holds \
                     cos {c}, sin {s}; expected {}, {}",
                    a.cos(),
                    a.sin()
                )));
            }
        }
    }
    Ok(base as f32)
}

/// llama2.c's tokenizer.bin as a tmac vocabulary (see the module comment).
pub fn vocab_from_tokenizer_bin(buf: &[u8], n_vocab: usize) -> Result<Vocab> {
    let tb = llama2c::read_tokenizer(buf, n_vocab)?;
    let n = tb.tokens.len();
    let (mut tokens, mut scores, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, (t, s)) in tb.tokens.into_iter().enumerate() {
        types.push(if i == 1 || i == 2 {
            TokenType::Control // BOS "\n<s>\n" and EOS "\n</s>\n" in llama2.c's export
        } else if i == 0 && t == b"<unk>" {
            TokenType::Unknown
        } else if is_byte_token(&t) {
            TokenType::Byte
        } else {
            TokenType::Normal
        });
        tokens.push(replace(&t, b" ", "\u{2581}".as_bytes()));
        scores.push(s);
    }
    let id = |i: u32| ((i as usize) < n).then_some(i);
    let mut v = Vocab::new(VocabSpec {
        model: TokModel::Spm,
        tokens,
        scores,
        types,
        merges: Vec::new(),
        bos: id(1),
        eos: id(2),
        add_bos: true,
        add_eos: false,
        add_space_prefix: true,
        chat_template: None,
    })?;
    // run.c also stops when the model produces BOS
    v.eog.extend(id(1));
    v.eog.sort_unstable();
    v.eog.dedup();
    Ok(v)
}

fn is_byte_token(t: &[u8]) -> bool {
    t.len() == 6
        && t.starts_with(b"<0x")
        && t[5] == b'>'
        && t[3..5].iter().all(|c| c.is_ascii_hexdigit())
}

/// `text` with every occurrence of `from` replaced by `to` (bytes; not necessarily UTF-8).
pub(crate) fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// One (rows, cols) matrix of a stacked tensor, as the kernels hold it.
fn matrix(t: &Tensor, file: &[u8], layer: usize) -> Result<Linear> {
    let (rows, cols) = (t.spec.rows, t.spec.cols);
    let base = layer * rows * cols; // element offset of this layer
    let data = t.data(file);
    let kp = cols.div_ceil(8) * 8; // one scale group per row
    let codes = |f: &dyn Fn(usize) -> u8| -> Vec<u8> { (0..rows * cols).map(f).collect() };
    let m = match t.storage {
        Storage::F32 => {
            return Ok(Linear::F32 {
                rows,
                cols,
                w: (0..rows * cols)
                    .map(|i| legacy::f32_at(data, base + i))
                    .collect(),
            })
        }
        Storage::Ternary => {
            let q = codes(&|i| legacy::ternary_q(data, base + i));
            lut::pack(
                rows,
                cols,
                2,
                kp,
                Zero::Offset(1),
                true,
                |r, c| q[r * cols + c],
                |_, _| (f16::ONE, f16::ZERO), // v1: no scale
            )
        }
        Storage::TernaryRows => {
            let row0 = layer * rows;
            let q = codes(&|i| {
                legacy::ternary_q(legacy::v2_row(data, cols, row0 + i / cols).1, i % cols)
            });
            lut::pack(
                rows,
                cols,
                2,
                kp,
                Zero::Offset(1),
                true,
                |r, c| q[r * cols + c],
                |r, _| (legacy::v2_row(data, cols, row0 + r).0, f16::ZERO),
            )
        }
        Storage::Q4Blocks if cols % legacy::Q4_BLOCK == 0 => {
            let q = codes(&|i| legacy::q4_at(data, base + i).1);
            lut::pack(
                rows,
                cols,
                4,
                legacy::Q4_BLOCK,
                Zero::Offset(8),
                false,
                |r, c| q[r * cols + c],
                |r, g| {
                    let (d, _) = legacy::q4_at(data, base + r * cols + g * legacy::Q4_BLOCK);
                    (d, f16::ZERO)
                },
            )
        }
        Storage::Q4Blocks => {
            // rows do not start on block boundaries: dequantize
            let mut w = Vec::with_capacity(rows * cols);
            for i in 0..rows * cols {
                let (d, nib) = legacy::q4_at(data, base + i);
                if !d.is_finite() {
                    return Err(Error::format(format!(
                        "block {} has a scale that is not finite",
                        (base + i) / legacy::Q4_BLOCK
                    )));
                }
                w.push((nib as i32 - 8) as f32 * d.to_f32());
            }
            return Ok(Linear::F32 { rows, cols, w });
        }
    };
    m.validate()?;
    Ok(Linear::Lut(m))
}

/// A LUT matrix held once and used twice (the embedding and the shared classifier).
fn shared_twice(m: LutMatrix) -> (LutMatrix, LutMatrix) {
    let arc = |b: Blob| -> (Blob, Blob) {
        let v = match b {
            Blob::Owned(v) => v,
            other => return (Blob::Owned(other.as_slice().to_vec()), other),
        };
        let len = v.len();
        let bytes = Arc::new(Bytes::Owned(v));
        let mk = || Blob::Mapped {
            bytes: bytes.clone(),
            start: 0,
            len,
        };
        (mk(), mk())
    };
    let (rows, cols, form) = (m.rows, m.cols, m.form());
    let (d1, d2) = arc(m.data);
    let (s1, s2) = arc(m.scales);
    let mk = |data, scales| LutMatrix::unchecked(rows, cols, form, data, scales);
    (mk(d1, s1), mk(d2, s2))
}

fn to_f32(m: Linear) -> Linear {
    match m {
        Linear::F32 { .. } => m,
        other => Linear::F32 {
            rows: other.rows(),
            cols: other.cols(),
            w: other.to_f32s(),
        },
    }
}

fn vector(t: &Tensor, file: &[u8], layer: usize) -> Result<Vec<f32>> {
    let n = t.spec.rows * t.spec.cols;
    let v: Vec<f32> = (0..n)
        .map(|i| legacy::f32_at(t.data(file), layer * n + i))
        .collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::format(format!(
            "tensor {}: element {} is {}",
            t.spec.name,
            layer * n + i,
            v[i]
        )));
    }
    Ok(v)
}

fn weights(lf: &LegacyFile, file: &[u8], compute: Compute) -> Result<Weights> {
    let h = &lf.header;
    let t = |name: &str| tensor(lf, name);
    let mat = |name: &str, l: usize| -> Result<Linear> {
        let m = matrix(t(name)?, file, l).map_err(|e| e.context(format!("tensor {name}")))?;
        Ok(match compute {
            Compute::F32 => to_f32(m),
            Compute::Kernels => m,
        })
    };
    let emb_t = t("token_embedding")?;
    let (tok_embd, tied_output) = if emb_t.storage == Storage::F32 {
        let e = Embedding::File {
            typ: GgmlType::F32,
            offset: emb_t.start,
            row_bytes: h.dim * 4,
            rows: h.vocab_size,
        };
        (e, h.shared_classifier.then(|| mat("token_embedding", 0)))
    } else {
        let m = matrix(emb_t, file, 0).map_err(|e| e.context("tensor token_embedding"))?;
        match (m, h.shared_classifier, compute) {
            (Linear::Lut(m), true, Compute::Kernels) => {
                let (a, b) = shared_twice(m);
                (Embedding::Matrix(Linear::Lut(a)), Some(Ok(Linear::Lut(b))))
            }
            (m, true, _) => (Embedding::Matrix(m), Some(mat("token_embedding", 0))),
            (m, false, _) => (Embedding::Matrix(m), None),
        }
    };
    let mut layers = Vec::with_capacity(h.n_layers);
    for l in 0..h.n_layers {
        layers.push(Layer {
            attn_norm: vector(t("rms_att_weight")?, file, l)?,
            wq: mat("wq", l)?,
            wk: mat("wk", l)?,
            wv: mat("wv", l)?,
            wo: mat("wo", l)?,
            extra: Default::default(),
            attn_sub_norm: None,
            ffn_norm: vector(t("rms_ffn_weight")?, file, l)?,
            w_gate: mat("w1", l)?,
            w_up: mat("w3", l)?,
            w_down: mat("w2", l)?,
            ffn_sub_norm: None,
            scales: [1.0; 7],
        });
    }
    let output = match tied_output {
        Some(m) => m?,
        None => mat("wcls", 0)?,
    };
    Ok(Weights {
        tok_embd,
        layers,
        out_norm: vector(t("rms_final_weight")?, file, 0)?,
        output,
        out_bias: None,
        rope_freqs: None,
        rotation: None,
    })
}
