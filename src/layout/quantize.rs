//! Quantizers from f32 to tmac's weight types, and `quantize_file`, which turns a model file
//! into a tmac file (`tmac quantize`). Where the source already holds the target exactly (GGUF
//! Q4_0/Q4_1 to q4 with groups of 32, TQ1_0/TQ2_0 to tq, Q8_0 to q8) the codes and scales are
//! carried over unchanged instead of being re-rounded.

use super::ggml::GgmlType;
use super::lut::{self, Zero};
use super::q8::Q8Matrix;
use super::ternary;
use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, Value};
use crate::format::gguf_write::GgufWriter;
use crate::format::tensors::Loader;
use crate::format::{self, tmacfile, Kind};
use crate::layout::linear::Linear;
use crate::model::config::{Arch, Config};
use half::f16;
use std::path::Path;

/// Where a ternary scale applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Tensor,
    Row,
    Group(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Ternary {-1, 0, 1} times an absmean scale (BitNet's rule).
    Tq(Scope),
    /// b-bit codes (b = 1 to 4), scale and minimum per group of columns.
    Q(u32, usize),
    /// 8-bit, blocks of 32 with one scale.
    Q8,
    F32,
}

impl Target {
    /// Parse a `--type` name with its `--group` and `--scale` options.
    pub fn parse(name: &str, group: usize, scale: &str) -> Result<Target> {
        if group == 0 || group % 8 != 0 {
            return Err(Error::invalid(format!(
                "group size {group} must be a positive multiple of 8"
            )));
        }
        Ok(match name {
            "tq" => Target::Tq(match scale {
                "tensor" => Scope::Tensor,
                "row" => Scope::Row,
                "group" => Scope::Group(group),
                s => {
                    return Err(Error::invalid(format!(
                        "--scale {s}: use tensor, row or group"
                    )))
                }
            }),
            "q1" => Target::Q(1, group),
            "q2" => Target::Q(2, group),
            "q3" => Target::Q(3, group),
            "q4" => Target::Q(4, group),
            "q8" => Target::Q8,
            "f32" => Target::F32,
            t => {
                return Err(Error::invalid(format!(
                    "unknown type '{t}' (tq, q1, q2, q3, q4, q8, f32)"
                )))
            }
        })
    }

    pub fn name(self) -> String {
        match self {
            Target::Tq(Scope::Tensor) => "tq (scale per tensor)".into(),
            Target::Tq(Scope::Row) => "tq (scale per row)".into(),
            Target::Tq(Scope::Group(g)) => format!("tq (scale per {g})"),
            Target::Q(b, g) => format!("q{b} (group {g})"),
            Target::Q8 => "q8".into(),
            Target::F32 => "f32".into(),
        }
    }
}

/// Quantize a row-major (rows, cols) f32 matrix.
pub fn quantize_matrix(t: Target, rows: usize, cols: usize, w: &[f32]) -> Result<Linear> {
    let kp = cols.div_ceil(8) * 8;
    let at = |r: usize, c: usize| w[r * cols + c];
    let h = f16::from_f32;
    Ok(match t {
        Target::F32 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q8 if cols % 32 == 0 => Linear::Q8(Q8Matrix::quantize(rows, cols, w)?),
        Target::Q8 => Linear::F32 {
            rows,
            cols,
            w: w.to_vec(),
        },
        Target::Q(bits, g) => {
            let levels = ((1u32 << bits) - 1) as f32;
            let g = g.min(kp);
            let ng = kp.div_ceil(g);
            // (d, m) per (row, group) as stored (f16), then codes against the stored values
            let mut dm = Vec::with_capacity(rows * ng);
            for r in 0..rows {
                for grp in 0..ng {
                    let span = (grp * g).min(cols)..((grp + 1) * g).min(cols);
                    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                    for c in span {
                        lo = lo.min(at(r, c));
                        hi = hi.max(at(r, c));
                    }
                    if lo > hi {
                        (lo, hi) = (0.0, 0.0);
                    }
                    dm.push((h((hi - lo) / levels), h(lo)));
                }
            }
            let code = |r: usize, c: usize| {
                let (d, m) = dm[r * ng + c / g];
                let (d, m) = (d.to_f32(), m.to_f32());
                if d == 0.0 {
                    0
                } else {
                    ((at(r, c) - m) / d).round().clamp(0.0, levels) as u8
                }
            };
            Linear::Lut(lut::pack(
                rows,
                cols,
                bits,
                g,
                Zero::Affine,
                false,
                code,
                |r, grp| dm[r * ng + grp],
            ))
        }
        Target::Tq(scope) => {
            // absmean scale over the scope; codes q = clamp(round(w / s), -1, 1) + 1
            let g = match scope {
                Scope::Group(g) => g.min(kp),
                _ => kp,
            };
            let ng = kp.div_ceil(g);
            let absmean = |vals: &mut dyn Iterator<Item = f32>| {
                let (s, n) = vals.fold((0f64, 0usize), |(s, n), v| (s + v.abs() as f64, n + 1));
                h((s / n.max(1) as f64) as f32 + 1e-6)
            };
            let tensor_scale = absmean(&mut w.iter().copied());
            let mut scales = Vec::with_capacity(rows * ng);
            for r in 0..rows {
                for grp in 0..ng {
                    scales.push(match scope {
                        Scope::Tensor => tensor_scale,
                        Scope::Row => absmean(&mut (0..cols).map(|c| at(r, c))),
                        Scope::Group(_) => absmean(
                            &mut ((grp * g).min(cols)..((grp + 1) * g).min(cols)).map(|c| at(r, c)),
                        ),
                    });
                }
            }
            let code = |r: usize, c: usize| {
                let s = scales[r * ng + c / g].to_f32();
                ((at(r, c) / s).round().clamp(-1.0, 1.0) + 1.0) as u8
            };
            Linear::Lut(lut::pack(
                rows,
                cols,
                2,
                g,
                Zero::Offset(1),
                true,
                code,
                |r, grp| (scales[r * ng + grp], f16::ZERO),
            ))
        }
    })
}

/// A GGUF matrix converted to `t`, exactly when the source type allows it.
fn convert(l: &Loader, name: &str, rows: usize, cols: usize, t: Target) -> Result<Linear> {
    let info = l.ggml_matrix(name, rows, cols)?;
    let exact = match (t, info.typ) {
        (Target::Q(4, 32), GgmlType::Q4_0 | GgmlType::Q4_1)
        | (Target::Tq(_), GgmlType::TQ1_0 | GgmlType::TQ2_0) => {
            lut::from_ggml(info.typ, l.data(info), rows, cols).map(Linear::Lut)
        }
        (Target::Q8, GgmlType::Q8_0) => {
            Some(Linear::Q8(Q8Matrix::new(rows, cols, l.mapped(info), None)?))
        }
        _ => None,
    };
    match exact {
        Some(m) => Ok(m),
        None => quantize_matrix(t, rows, cols, &l.f32s(info)?),
    }
}

pub struct QuantizeOptions {
    /// Type of the transformer blocks' matrices.
    pub target: Target,
    /// Type of the token embedding and the output head (default q8).
    pub head: Target,
}

pub struct Summary {
    pub bytes: u64,
    /// Average bits per weight of the matrices.
    pub bits_per_weight: f64,
    pub matrices: usize,
    /// Things the user should know about the conversion (e.g. ternary weights that could not
    /// be carried over exactly).
    pub notes: Vec<String>,
}

/// The matrices of a Llama-family model: (name, rows, cols, is head or embedding).
fn matrices(cfg: &Config, g: &Gguf) -> Vec<(String, usize, usize, bool)> {
    let (d, ff, q, kv) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
    let mut v = vec![("token_embd.weight".to_string(), cfg.n_vocab, d, true)];
    for i in 0..cfg.n_layer {
        for (n, r, c) in [
            ("attn_q", q, d),
            ("attn_k", kv, d),
            ("attn_v", kv, d),
            ("attn_output", d, q),
            ("ffn_gate", ff, d),
            ("ffn_up", ff, d),
            ("ffn_down", d, ff),
        ] {
            v.push((format!("blk.{i}.{n}.weight"), r, c, false));
        }
    }
    if g.tensor("output.weight").is_some() {
        v.push(("output.weight".to_string(), cfg.n_vocab, d, true));
    }
    v
}

/// Convert the model at `src` into a tmac file at `dst`. `progress(done, total, name)` is
/// called as matrices are converted.
pub fn quantize_file(
    src: &Path,
    dst: &Path,
    opts: &QuantizeOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Summary> {
    // BITNET: a Hugging Face checkpoint (safetensors + config.json) is read as a GGUF in memory
    let bytes = if format::hf::is_hf(src) {
        std::sync::Arc::new(crate::bytes::Bytes::Owned(format::hf::to_gguf(src)?))
    } else {
        crate::bytes::map_file(src)?
    };
    let file = bytes.as_slice();
    let g = match format::detect(file)? {
        Kind::Gguf => Gguf::parse(file)?,
        // llama2.c and the original T-MAC engine's files (tokenizer.bin next to them)
        _ => return super::legacy::legacy_to_tmac(src, None, dst, opts, progress),
    };
    let ctx = |e: Error| e.context(src.display());
    let mut cfg = Config::from_gguf(&g).map_err(ctx)?;
    cfg.n_vocab = crate::tokenizer::Vocab::from_gguf(&g).map_err(ctx)?.len();
    let mut l = Loader::new(&g, file, &bytes);
    crate::model::weights::split_fused(&mut l, &cfg).map_err(ctx)?;
    let mut w = GgufWriter::new(tmacfile::ALIGNMENT);
    for (k, v) in &g.metadata {
        if k != "general.alignment" && !k.starts_with("tmac.") {
            w.set(k, v.clone());
        }
    }
    w.set("tmac.format_version", Value::U32(tmacfile::FORMAT_VERSION));
    w.set_str("tmac.quantization", &opts.target.name());
    let mats = matrices(&cfg, &g);
    let (mut wbytes, mut nweights) = (0usize, 0usize);
    // BITNET: exactly ternary block matrices keep their codes (scale 1, one scale group per
    // row, so activations are quantized per token); their scale goes to `<matrix>.scale`,
    // replacing the source's (see layout::ternary)
    let (mut folded, mut inexact) = (Vec::new(), 0usize);
    for (i, (name, rows, cols, head)) in mats.iter().enumerate() {
        progress(i, mats.len(), name);
        let t = if *head { opts.head } else { opts.target };
        let exact = match (*head, t) {
            (false, Target::Tq(_)) => {
                ternary::carry_over(&l, name, *rows, *cols, &mut w, &mut folded).map_err(ctx)?
            }
            _ => None,
        };
        inexact += (exact.is_none() && matches!(t, Target::Tq(_)) && !*head) as usize;
        let m = match (exact, l.tmac_matrix(name, *rows, *cols).map_err(ctx)?) {
            (Some(m), _) => m,
            // a tmac file as the source: dequantize, then quantize to the new type
            (None, Some(m)) => {
                let mut v = vec![0f32; rows * cols];
                for (r, row) in v.chunks_exact_mut(*cols).enumerate() {
                    m.dequantize_row(r, row);
                }
                quantize_matrix(t, *rows, *cols, &v)?
            }
            (None, None) => convert(&l, name, *rows, *cols, t).map_err(ctx)?,
        };
        wbytes += m.weight_bytes();
        nweights += rows * cols;
        tmacfile::add_matrix(&mut w, name, &m);
    }
    progress(mats.len(), mats.len(), "");
    // everything else (norms, rope factors) as f32
    for t in &g.tensors {
        let base = t.name.strip_suffix(".scales").unwrap_or(&t.name);
        if mats.iter().any(|(n, ..)| n == &t.name || n == base)
            || folded.contains(&t.name)
            || l.is_fused(&t.name)
        {
            continue;
        }
        w.add_f32(&t.name, &t.dims, &l.f32s(t).map_err(ctx)?);
    }
    tmacfile::order_for_mapping(&mut w);
    let out = w.to_bytes();
    std::fs::write(dst, &out).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Io,
            format!("{}: {e}", dst.display()),
        )
    })?;
    let mut notes = Vec::new();
    if cfg.arch == Arch::Bitnet && inexact > 0 {
        notes.push(format!(
            "{inexact} BitNet matrices are not exactly ternary with one scale per tensor \
             (e.g. TQ1_0/TQ2_0 blocks with different scales): they keep their scale groups, so \
             their activations are quantized per group, not per token as BitNet b1.58 defines"
        ));
    }
    Ok(Summary {
        bytes: out.len() as u64,
        bits_per_weight: wbytes as f64 * 8.0 / nweights.max(1) as f64,
        matrices: mats.len(),
        notes,
    })
}
