//! The original T-MAC engine's quantizers, rule for rule (legacy-formats.md sections 2, 4, 5),
//! so that `tmac quantize --type v1|v2|q4v1` writes, from a llama2.c checkpoint, the bytes its
//! Python scripts wrote:
//!
//! - v1 (`quantize_tmac.py`): one threshold per stacked tensor, t = 0.7 x mean|w|; q = +1 where
//!   w > t, -1 where w < -t, else 0; 2-bit codes (00 = 0, 01 = +1, 11 = -1), element e in byte
//!   e/4 at bit 2(e%4), zero codes padding the end of the tensor; no scale.
//! - v2 (`quantize_tmac_v2.py`): per row t = 0.4 x mean|row|, the same codes, each row padded to
//!   4 codes; scale = f16(mean of the |w| > t), or f16(mean|row| + 1e-6) when none exceeds t.
//! - Q4V1 (`quantize_int4.py`): the flattened tensor zero-padded to blocks of 32;
//!   d = f16(max|x| / 7), q = clip(round_half_even(x / d), -8, 7) + 8 with the f16-rounded d,
//!   element 2i in the low nibble of byte i; a block whose d is 0 is 18 zero bytes.
//!
//! The scripts computed with NumPy, so the means here are NumPy's float32 means exactly:
//! `np.add.reduce`'s pairwise summation in float32 from 0, divided by the count in double and
//! rounded to float32; and scalars follow NumPy 2 promotion (NEP 50), so 0.7 x mean is a
//! float32 product. (Under NumPy 1.x the product was float64; that can only move exact ties.)
//! tools/legacy_reference.py is an independent NumPy implementation the tests compare against.

use super::quantize::{QuantizeOptions, Summary};
use crate::error::{Error, ErrorKind, Result};
use crate::format::gguf::{Array, Value};
use crate::format::gguf_write::GgufWriter;
use crate::format::legacy::{self, LegacyFile, Q4_BLOCK, Q4_BLOCK_BYTES};
use crate::format::llama2c::{Role, HEADER_BYTES};
use crate::format::{self, tmacfile, Kind};
use crate::layout::linear::Linear;
use crate::layout::lut::Zero;
use crate::layout::quantize::{quantize_matrix, Target};
use crate::model::weights::Embedding;
use crate::model::{Compute, LoadOptions, Model};
use crate::tokenizer::TokenType;
use half::f16;
use std::io::Write;
use std::path::Path;

/// NumPy's `pairwise_sum` for float32: below 8 elements a plain loop; up to 128, eight
/// accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) then the tail; above, the two
/// halves (split at a multiple of 8) summed recursively.
fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut r = 0f32;
        for &x in a {
            r += x;
        }
        r
    } else if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for c in a[8..full].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(c) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean` of a float32 array (NaN when empty, as NumPy's).
fn np_mean(a: &[f32]) -> f32 {
    let s = 0f32 + pairwise_sum(a);
    (s as f64 / a.len() as f64) as f32
}

fn abs_all(w: &[f32]) -> Vec<f32> {
    w.iter().map(|x| x.abs()).collect()
}

/// The 2-bit code of w against threshold t (strict comparisons: |w| == t gives 0).
fn code(w: f32, t: f32) -> u8 {
    if w > t {
        0b01
    } else if w < -t {
        0b11
    } else {
        0b00
    }
}

/// A whole stacked tensor in v1 layout: ceil(n/4) bytes.
fn v1_tensor(w: &[f32]) -> Vec<u8> {
    let t = 0.7f32 * np_mean(&abs_all(w));
    let mut out = vec![0u8; w.len().div_ceil(4)];
    for (e, &x) in w.iter().enumerate() {
        out[e / 4] |= code(x, t) << (2 * (e % 4));
    }
    out
}

/// The v2 threshold and scale of one row.
fn v2_row_rule(row: &[f32]) -> (f32, f16) {
    let a = abs_all(row);
    let m = np_mean(&a);
    let t = 0.4f32 * m;
    let above: Vec<f32> = a.iter().copied().filter(|&v| v > t).collect();
    let scale = if above.is_empty() {
        m + 1e-6f32
    } else {
        np_mean(&above)
    };
    (t, f16::from_f32(scale))
}

/// A whole v2 quantized record: flag 1, rows, cols, then per row the f16 scale and the codes.
fn v2_record(w: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let rb = legacy::v2_row_bytes(cols);
    let mut out = Vec::with_capacity(9 + rows * rb);
    out.push(1);
    out.extend_from_slice(&(rows as i32).to_le_bytes());
    out.extend_from_slice(&(cols as i32).to_le_bytes());
    for row in w.chunks_exact(cols) {
        let (t, scale) = v2_row_rule(row);
        out.extend_from_slice(&scale.to_le_bytes());
        let at = out.len();
        out.resize(at + rb - 2, 0);
        for (c, &x) in row.iter().enumerate() {
            out[at + c / 4] |= code(x, t) << (2 * (c % 4));
        }
    }
    out
}

/// A whole stacked tensor in Q4V1 blocks (without the record flag).
fn q4v1_tensor(w: &[f32]) -> Vec<u8> {
    let nb = w.len().div_ceil(Q4_BLOCK);
    let mut out = vec![0u8; nb * Q4_BLOCK_BYTES];
    let mut x = [0f32; Q4_BLOCK];
    for (b, o) in out.chunks_exact_mut(Q4_BLOCK_BYTES).enumerate() {
        x.fill(0.0); // the last block is zero-padded
        let src = &w[b * Q4_BLOCK..((b + 1) * Q4_BLOCK).min(w.len())];
        x[..src.len()].copy_from_slice(src);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 7.0);
        if d.to_f32() == 0.0 {
            continue; // all zero (or too small for an f16 scale): d = 0, zero nibbles
        }
        o[..2].copy_from_slice(&d.to_le_bytes());
        let df = d.to_f32();
        let q = |v: f32| ((v / df).round_ties_even().clamp(-8.0, 7.0) as i32 + 8) as u8;
        for i in 0..Q4_BLOCK / 2 {
            o[2 + i] = q(x[2 * i]) | (q(x[2 * i + 1]) << 4);
        }
    }
    out
}

/// Which legacy file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyType {
    V1,
    V2,
    Q4V1,
}

impl LegacyType {
    pub fn parse(name: &str) -> Option<LegacyType> {
        match name {
            "v1" => Some(LegacyType::V1),
            "v2" => Some(LegacyType::V2),
            "q4v1" => Some(LegacyType::Q4V1),
            _ => None,
        }
    }
    pub fn kind(self) -> Kind {
        match self {
            LegacyType::V1 => Kind::TmacV1,
            LegacyType::V2 => Kind::TmacV2,
            LegacyType::Q4V1 => Kind::Q4V1,
        }
    }
}

/// Quantize the llama2.c checkpoint `ckpt` (its bytes) into `out` as the original did.
fn write_legacy_to(ckpt: &[u8], t: LegacyType, out: &mut impl Write) -> Result<u64> {
    let kind = format::detect(ckpt)?;
    if kind != Kind::Llama2c {
        return Err(Error::invalid(format!(
            "the input is a {kind:?} file; T-MAC v1, v2 and Q4V1 files are made from a llama2.c \
             checkpoint (from a GGUF: tmac export --llama2c MODEL.gguf model.bin tokenizer.bin)"
        )));
    }
    let f: LegacyFile = legacy::parse(kind, ckpt)?;
    let mut n = 0u64;
    let mut put = |b: &[u8]| -> Result<()> {
        n += b.len() as u64;
        out.write_all(b).map_err(Error::from)
    };
    let magic: &[u8] = match t {
        LegacyType::V1 => legacy::MAGIC_V1,
        LegacyType::V2 => legacy::MAGIC_V2,
        LegacyType::Q4V1 => legacy::MAGIC_Q4,
    };
    put(magic)?;
    put(&ckpt[..HEADER_BYTES])?; // verbatim, the sign of vocab_size included
    if t == LegacyType::Q4V1 {
        put(&(Q4_BLOCK as i32).to_le_bytes())?;
    }
    for ten in &f.tensors {
        let data = ten.data(ckpt);
        if ten.spec.role == Role::Float {
            if t != LegacyType::V1 {
                put(&[0])?;
            }
            put(data)?;
            continue;
        }
        let w: Vec<f32> = (0..ten.spec.n()).map(|i| legacy::f32_at(data, i)).collect();
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(format!(
                "tensor {}: element {i} is {}; cannot quantize",
                ten.spec.name, w[i]
            )));
        }
        match t {
            LegacyType::V1 => put(&v1_tensor(&w))?,
            LegacyType::V2 => put(&v2_record(&w, ten.spec.stacked_rows(), ten.spec.cols))?,
            LegacyType::Q4V1 => {
                put(&[1])?;
                put(&q4v1_tensor(&w))?;
            }
        }
    }
    Ok(n)
}

/// `tmac quantize SRC DST --type v1|v2|q4v1`: returns the bytes written.
pub fn write_legacy(src: &Path, dst: &Path, t: LegacyType) -> Result<u64> {
    let bytes = crate::bytes::map_file(src)?;
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("{}: {e}", dst.display()));
    let file = std::fs::File::create(dst).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let n = write_legacy_to(bytes.as_slice(), t, &mut w).map_err(|e| {
        if e.kind == ErrorKind::Io {
            e.context(dst.display())
        } else {
            e.context(src.display())
        }
    })?;
    w.flush().map_err(io)?;
    Ok(n)
}

/// A matrix of a legacy model in the target type: carried over unchanged where it already is
/// that type (v1/v2 ternary to tq, Q4V1 to q4 with groups of 32, f32 to f32), else
/// dequantized and quantized by `quantize_matrix`.
fn convert(l: &Linear, t: Target) -> Result<Option<Linear>> {
    let carry = match (l, t) {
        (Linear::Lut(m), Target::Tq(_)) => m.ternary,
        (Linear::Lut(m), Target::Q(4, 32)) => {
            m.bits == 4 && m.zero == Zero::Offset(8) && m.group == 32
        }
        (Linear::F32 { .. }, Target::F32) => true,
        _ => false,
    };
    if carry {
        return Ok(None);
    }
    quantize_matrix(t, l.rows(), l.cols(), &l.to_f32s()).map(Some)
}

/// `tmac quantize` from a llama2.c checkpoint or an original T-MAC file (v1, v2, Q4V1) with
/// its tokenizer.bin: a tmac file (GGUF container, `llama` architecture and a SentencePiece-
/// style `llama` vocabulary) holding the same model.
pub fn legacy_to_tmac(
    src: &Path,
    tokenizer: Option<&Path>,
    dst: &Path,
    opts: &QuantizeOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Summary> {
    let m = Model::load(
        src,
        &LoadOptions {
            compute: Compute::Kernels,
            tokenizer: tokenizer.map(Path::to_path_buf),
            ..Default::default()
        },
    )?;
    let ctx = |e: Error| e.context(src.display());
    let shared = legacy::parse(m.format, m.file())
        .map_err(ctx)?
        .header
        .shared_classifier;
    let (c, v, wt) = (&m.cfg, &m.vocab, &m.weights);
    let mut w = GgufWriter::new(tmacfile::ALIGNMENT);
    let a = "llama";
    let u = |x: usize| Value::U32(x as u32);
    w.set_str("general.architecture", a);
    let name = src
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    w.set_str("general.name", &name);
    w.set_str("tmac.source", &format!("{:?}", m.format));
    for (k, x) in [
        ("context_length", c.n_ctx_train),
        ("embedding_length", c.n_embd),
        ("feed_forward_length", c.n_ff),
        ("block_count", c.n_layer),
        ("attention.head_count", c.n_head),
        ("attention.head_count_kv", c.n_head_kv),
        ("rope.dimension_count", c.rope_dim),
    ] {
        w.set(&format!("{a}.{k}"), u(x));
    }
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(c.rms_eps),
    );
    w.set(&format!("{a}.rope.freq_base"), Value::F32(c.rope_base));
    let n = v.len() as u32;
    w.set_str("tokenizer.ggml.model", "llama");
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::Str((0..n).map(|i| v.text(i).to_vec()).collect())),
    );
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32((0..n).map(|i| v.score(i)).collect())),
    );
    let type_id = |t: TokenType| match t {
        TokenType::Normal => 1,
        TokenType::Unknown => 2,
        TokenType::Control => 3,
        TokenType::UserDefined => 4,
        TokenType::Unused => 5,
        TokenType::Byte => 6,
    };
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(
            (0..n).map(|i| type_id(v.token_type(i))).collect(),
        )),
    );
    if let Some(b) = v.bos {
        w.set("tokenizer.ggml.bos_token_id", Value::U32(b));
    }
    if let Some(e) = v.eos {
        w.set("tokenizer.ggml.eos_token_id", Value::U32(e));
    }
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(true));
    w.set("tmac.format_version", Value::U32(tmacfile::FORMAT_VERSION));
    w.set_str("tmac.quantization", &opts.target.name());

    let total = 2 + 7 * c.n_layer;
    let (mut wbytes, mut nweights, mut done) = (0usize, 0usize, 0usize);
    let mut add = |w: &mut GgufWriter, name: &str, l: &Linear, t: Target| -> Result<()> {
        progress(done, total, name);
        let conv = convert(l, t).map_err(|e| e.context(format!("tensor {name}")))?;
        let l = conv.as_ref().unwrap_or(l);
        wbytes += l.weight_bytes();
        nweights += l.rows() * l.cols();
        done += 1;
        tmacfile::add_matrix(w, name, l);
        Ok(())
    };
    // the embedding: a matrix, or (llama2.c) f32 rows read from the file
    let file_emb;
    let emb = match &wt.tok_embd {
        Embedding::Matrix(l) => l,
        Embedding::File { .. } => {
            let mut e = vec![0f32; c.n_vocab * c.n_embd];
            for (id, row) in e.chunks_exact_mut(c.n_embd).enumerate() {
                wt.tok_embd.row(m.file(), id, row)?;
            }
            file_emb = Linear::F32 {
                rows: c.n_vocab,
                cols: c.n_embd,
                w: e,
            };
            &file_emb
        }
    };
    add(&mut w, "token_embd.weight", emb, opts.head)?;
    for (i, l) in wt.layers.iter().enumerate() {
        for (n, m) in [
            ("attn_q", &l.wq),
            ("attn_k", &l.wk),
            ("attn_v", &l.wv),
            ("attn_output", &l.wo),
            ("ffn_gate", &l.w_gate),
            ("ffn_up", &l.w_up),
            ("ffn_down", &l.w_down),
        ] {
            add(&mut w, &format!("blk.{i}.{n}.weight"), m, opts.target)?;
        }
        w.add_f32(
            &format!("blk.{i}.attn_norm.weight"),
            &[c.n_embd as u64],
            &l.attn_norm,
        );
        w.add_f32(
            &format!("blk.{i}.ffn_norm.weight"),
            &[c.n_embd as u64],
            &l.ffn_norm,
        );
    }
    if !shared {
        add(&mut w, "output.weight", &wt.output, opts.head)?;
    }
    w.add_f32("output_norm.weight", &[c.n_embd as u64], &wt.out_norm);
    progress(total, total, "");
    tmacfile::order_for_mapping(&mut w);
    let out = w.to_bytes();
    std::fs::write(dst, &out)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dst.display())))?;
    Ok(Summary {
        bytes: out.len() as u64,
        bits_per_weight: wbytes as f64 * 8.0 / nweights.max(1) as f64,
        matrices: done,
        notes: Vec::new(),
    })
}
