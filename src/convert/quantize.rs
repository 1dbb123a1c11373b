//! `tmac quantize`: a model file (GGUF, a tmac file, a Hugging Face checkpoint, or a legacy
//! file) into a tmac file. Where the source already holds the target exactly (GGUF Q4_0/Q4_1 to
//! q4 with groups of 32, TQ1_0/TQ2_0 and exactly ternary floats to tq, Q8_0 to q8) the codes and
//! scales are carried over unchanged instead of being re-rounded.

use super::calibrate::{Calibrated, Calibration};
use crate::error::{Error, Result};
use crate::format::gguf::{Gguf, Value};
use crate::format::gguf_write::GgufWriter;
use crate::format::tensors::Loader;
use crate::format::{self, tmacfile, Kind};
use crate::layout::ggml::GgmlType;
use crate::layout::linear::Linear;
use crate::layout::lut;
use crate::layout::q8::Q8Matrix;
use crate::layout::quantize::quantize_matrix;
pub use crate::layout::quantize::{Scope, Target};
use crate::layout::ternary;
use crate::model::config::{Arch, Config};
use std::path::Path;

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
    /// Types for some block matrices instead of `target`: (pattern, type), the first pattern
    /// that matches wins (`matches_tensor`).
    pub tensor_types: Vec<(String, Target)>,
}

impl QuantizeOptions {
    /// The type of block matrix `name`.
    pub fn target_for(&self, name: &str) -> Target {
        let found = self
            .tensor_types
            .iter()
            .find(|(p, _)| matches_tensor(p, name));
        found.map_or(self.target, |&(_, t)| t)
    }
}

/// Whether `pattern` names tensor `name`: a kind ("attn_v", "ffn_down") matches it in every
/// layer, "blk.3.attn_v" one layer's, "blk.26-29.ffn_up" those layers', or the whole name.
pub fn matches_tensor(pattern: &str, name: &str) -> bool {
    let bare = name.strip_suffix(".weight").unwrap_or(name);
    if bare == pattern || bare.ends_with(&format!(".{pattern}")) {
        return true;
    }
    // a range of layers: blk.A-B.kind
    fn layer_kind(s: &str) -> Option<(&str, &str)> {
        s.strip_prefix("blk.")?.split_once('.')
    }
    let (Some((range, kind)), Some((layer, k))) = (layer_kind(pattern), layer_kind(bare)) else {
        return false;
    };
    let num = |s: &str| s.parse::<usize>().ok();
    match (range.split_once('-'), num(layer)) {
        (Some((a, b)), Some(n)) if kind == k => {
            matches!((num(a), num(b)), (Some(a), Some(b)) if a <= n && n <= b)
        }
        _ => false,
    }
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

/// What `tmac info` shows of how a file was made: "q2 (group 64), attn_v q4 (group 32),
/// GPTQ on 4096 tokens, rotated".
fn describe(opts: &QuantizeOptions, calibration: Option<&Calibration>) -> String {
    let mut s = opts.target.name();
    for (pattern, t) in &opts.tensor_types {
        s += &format!(", {pattern} {}", t.name());
    }
    if let Some(c) = calibration {
        s += &format!(", GPTQ on {} tokens", c.max_tokens);
        if c.rotate {
            s += ", rotated";
        }
    }
    s
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
    progress: impl FnMut(usize, usize, &str),
) -> Result<Summary> {
    quantize_file_calibrated(src, dst, opts, None, progress)
}

/// `quantize_file`, with the transformer blocks quantized by GPTQ on a calibration text
/// (`convert::calibrate`) when `calibration` is given; `progress` then counts layers first
/// ("calibrating"), then matrices.
pub fn quantize_file_calibrated(
    src: &Path,
    dst: &Path,
    opts: &QuantizeOptions,
    calibration: Option<&Calibration>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Summary> {
    // BITNET: a Hugging Face checkpoint (safetensors + config.json) is read as a GGUF in memory
    let bytes = if super::hf::is_hf(src) {
        std::sync::Arc::new(crate::bytes::Bytes::Owned(super::hf::to_gguf(src)?))
    } else {
        crate::bytes::map_file(src)?
    };
    let file = bytes.as_slice();
    let g = match format::detect(file)? {
        Kind::Gguf => Gguf::parse(file)?,
        // llama2.c and the original T-MAC engine's files (tokenizer.bin next to them)
        _ if calibration.is_some() => {
            return Err(Error::invalid(
                "--calibrate reads GGUF and tmac files: convert this file to one first",
            ))
        }
        _ => return super::legacy::legacy_to_tmac(src, None, dst, opts, progress),
    };
    let mut calibrated = match calibration {
        Some(c) => super::calibrate::gptq_blocks(bytes.clone(), src, opts, c, |l, n| {
            progress(l, n, "calibrating")
        })?,
        None => Calibrated {
            matrices: Vec::new(),
            vectors: Vec::new(),
        },
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
    w.set_str("tmac.quantization", &describe(opts, calibration));
    let mats = matrices(&cfg, &g);
    let (mut wbytes, mut nweights) = (0usize, 0usize);
    // BITNET: exactly ternary block matrices keep their codes (scale 1, one scale group per
    // row, so activations are quantized per token); their scale goes to `<matrix>.scale`,
    // replacing the source's (see layout::ternary)
    let (mut folded, mut inexact) = (Vec::new(), 0usize);
    for (i, (name, rows, cols, head)) in mats.iter().enumerate() {
        progress(i, mats.len(), name);
        let t = if *head {
            opts.head
        } else {
            opts.target_for(name)
        };
        // a calibrated matrix first: it belongs with the vectors calibration changed (a
        // rotation turns the norms, so an exact carry-over would no longer fit them)
        let gptq = calibrated
            .matrices
            .iter()
            .position(|(n, _)| n == name && !*head);
        let exact = match (gptq, *head, t) {
            (None, false, Target::Tq(_)) => {
                carry_over(&l, name, *rows, *cols, &mut w, &mut folded).map_err(ctx)?
            }
            _ => None,
        };
        let ternary_block = matches!(t, Target::Tq(_)) && !*head;
        inexact += (exact.is_none() && gptq.is_none() && ternary_block) as usize;
        let m = match (gptq, exact) {
            (Some(i), _) => calibrated.matrices.swap_remove(i).1,
            (None, Some(m)) => m,
            (None, None) => match l.tmac_matrix(name, *rows, *cols).map_err(ctx)? {
                // a tmac file as the source: dequantize, then quantize to the new type
                Some(m) => quantize_matrix(t, *rows, *cols, &m.to_f32s())?,
                None => convert(&l, name, *rows, *cols, t).map_err(ctx)?,
            },
        };
        wbytes += m.weight_bytes();
        nweights += rows * cols;
        tmacfile::add_matrix(&mut w, name, &m);
    }
    progress(mats.len(), mats.len(), "");
    // everything else (norms, rope factors) as f32, the vectors a rotation changed as it did
    let changed = |name: &str| calibrated.vectors.iter().any(|(n, _)| n == name);
    for t in &g.tensors {
        let base = t.name.strip_suffix(".scales").unwrap_or(&t.name);
        if mats.iter().any(|(n, ..)| n == &t.name || n == base)
            || folded.contains(&t.name)
            || l.is_fused(&t.name)
            || changed(&t.name)
        {
            continue;
        }
        w.add_f32(&t.name, &t.dims, &l.f32s(t).map_err(ctx)?);
    }
    for (name, v) in &calibrated.vectors {
        w.add_f32(name, &[v.len() as u64], v);
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

/// For `tmac quantize`: a transformer-block matrix that is exactly ternary, as codes with
/// scale 1, and the factor for its output (its tensor scale times any `<matrix>.scale`).
fn exact_matrix(l: &Loader, name: &str, rows: usize, cols: usize) -> Result<Option<(Linear, f32)>> {
    let t = match l.tmac_matrix(name, rows, cols)? {
        // a tmac file as the source: ternary if its values are
        Some(m) => ternary::from_f32s(&m.to_f32s(), rows, cols),
        None => {
            let t = l.ggml_matrix(name, rows, cols)?;
            ternary::from_tensor(t.typ, l.data(t), rows, cols)?
        }
    };
    Ok(match t {
        Some(t) => Some((Linear::Lut(t.to_lut()), t.scale * l.scale_factor(name)?)),
        None => None,
    })
}

/// For `tmac quantize`: `exact_matrix`, with the scale written to `w` as `<matrix>.scale` (if
/// not 1) and that name added to `folded` (the source's own `.scale` is not copied).
fn carry_over(
    l: &Loader,
    name: &str,
    rows: usize,
    cols: usize,
    w: &mut GgufWriter,
    folded: &mut Vec<String>,
) -> Result<Option<Linear>> {
    let Some((m, s)) = exact_matrix(l, name, rows, cols)? else {
        return Ok(None);
    };
    let scale = ternary::scale_name(name);
    if s != 1.0 {
        w.add_f32(&scale, &[1], &[s]);
    }
    folded.push(scale);
    Ok(Some(m))
}
