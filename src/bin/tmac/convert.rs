//! `tmac quantize` and `tmac export`: files in, files out.

use super::{parse_num, take_tokenizer};
use std::io::IsTerminal;
use std::io::Write;
use std::time::Instant;

const QUANTIZE_USAGE: &str = "\
usage: tmac quantize IN OUT --type T [--group G] [--scale S] [--head H] [-z TOKENIZER]
                     [--tensor-type NAME=T]... [--calibrate TEXT [--rotate] [--calib-tokens N]
                     [--calib-ctx C]]

Converts IN into OUT, a tmac file: tensors already in kernel layout, mapped and used in place
at load. IN is a GGUF model, a tmac file, a llama2.c checkpoint or an original T-MAC v1/v2/Q4V1
file (these take their tokenizer.bin from -z, default: next to IN), or a Hugging Face BitNet
model (its directory with config.json, tokenizer.json and safetensors). Exactly ternary weights
(BitNet b1.58: TQ1_0, TQ2_0, I2_S, ternary F32/F16, packed safetensors; T-MAC v1/v2) carry over
exactly with --type tq, Q4V1 and GGUF Q4_0/Q4_1 with --type q4 (group 32).

types (--type for the transformer blocks, --head for the embedding and output head):
  tq    ternary {-1, 0, +1} times an absmean scale; --scale tensor|row|group (default tensor)
  q1    1-bit, scale and minimum per group of --group columns (default 64)
  q2    2-bit, the same (default 64)
  q3    3-bit, the same (default 32)
  q4    4-bit, the same (default 32; GGUF Q4_0/Q4_1 carried over exactly)
  q2k, q3k, q4k  2-, 3-, 4-bit as ggml's K-quants: scale and minimum per 16 columns, stored
        as 8-bit integers under f16 factors per super-block of about 256 columns (--group
        does not apply)
  q8    8-bit, one scale per 32 (the default --head)
  f32   unquantized

--tensor-type NAME=T: type T for the block matrices NAME names instead of --type: a kind
(attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down) in every layer, one
layer's (blk.3.ffn_down) or a range's (blk.26-29.ffn_up); repeatable, the first match wins.

--calibrate TEXT (q1-q4, q2k-q4k, tq): GPTQ. The blocks' matrices are rounded against the inputs they
see on the text file TEXT (its first N tokens, default 4096, in chunks of C, default 512),
layer by layer through the model as it is quantized, instead of each weight to its nearest
code; then each row's scales and minimums are refitted to the codes GPTQ chose. Same layout
and speed; about 3 minutes and 1.2 GB for a 135M model. Deterministic: the same files give
the same bytes. --rotate also turns the residual stream by a random block-Hadamard rotation
folded into the weights (QuaRot); on SmolLM2 it helps ternary files and hurts q2/q3 ones
(BENCHMARKS.md).

the original T-MAC engine's files, from a llama2.c checkpoint, by its scripts' exact rules:
  v1    .tmac.bin: ternary, threshold 0.7 x mean|w| per stacked tensor, no scales
  v2    .tmac2.bin: ternary, threshold 0.4 x mean|row|, f16 scale per row
  q4v1  .q4.bin: int4 baseline, blocks of 32, f16 scale max|x| / 7
";

/// The --group a type gets when none is given.
fn default_group_of(typ: &str) -> usize {
    match typ {
        "q1" | "q2" => 64,
        "tq" => 128,
        _ => 32,
    }
}

pub fn quantize(args: &[String]) -> Result<(), String> {
    use tmac::convert::calibrate::Calibration;
    use tmac::convert::quantize::{quantize_file_calibrated, QuantizeOptions, Target};
    let (args, tokenizer) = take_tokenizer(args)?;
    let args = args.as_slice();
    let (mut paths, mut typ, mut group, mut scale, mut head) = (
        Vec::new(),
        None,
        None,
        "tensor".to_string(),
        "q8".to_string(),
    );
    let (mut calib, mut calib_tokens, mut calib_ctx, mut rotate) = (None, 4096, 512, false);
    let mut tensor_types = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                out!("{QUANTIZE_USAGE}");
                return Ok(());
            }
            "--type" => typ = Some(val()?.clone()),
            "--calibrate" => calib = Some(val()?.clone()),
            "--calib-tokens" => calib_tokens = parse_num::<usize>(a, val()?)?,
            "--calib-ctx" => calib_ctx = parse_num::<usize>(a, val()?)?,
            "--rotate" => rotate = true,
            "--tensor-type" => {
                let v = val()?;
                let (pat, t) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--tensor-type {v}: give NAME=TYPE"))?;
                tensor_types.push((pat.to_string(), t.to_string()));
            }
            "--group" => group = Some(parse_num::<usize>(a, val()?)?),
            "--scale" => scale = val()?.clone(),
            "--head" => head = val()?.clone(),
            s if s.starts_with('-') => return Err(super::unknown_option("quantize", s)),
            s => paths.push(s.to_string()),
        }
    }
    let [src, dst] = paths.as_slice() else {
        return Err(format!("quantize: give IN and OUT\n\n{QUANTIZE_USAGE}"));
    };
    let typ = typ.ok_or_else(|| format!("quantize: --type is required\n\n{QUANTIZE_USAGE}"))?;
    if let Some(t) = tmac::convert::legacy::LegacyType::parse(&typ) {
        let t0 = Instant::now();
        let n = tmac::convert::legacy::write_legacy(src.as_ref(), dst.as_ref(), t)
            .map_err(|e| e.to_string())?;
        outln!(
            "{dst}: {typ} | {n} bytes ({:.1} MiB) | {:.1} s",
            n as f64 / 1048576.0,
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let target = Target::parse(&typ, group.unwrap_or(default_group_of(&typ)), &scale)
        .map_err(|e| e.to_string())?;
    let head = Target::parse(&head, 32, "tensor").map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    // a bar redrawn in place on a terminal; in a log, one line per tenth of the matrices
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize, name: &str| {
        let total = total.max(1);
        let width = 30;
        let fill = done * width / total;
        if tty {
            eprint!(
                "\r[{}{}] {done}/{total} {name:<32}",
                "#".repeat(fill),
                " ".repeat(width - fill)
            );
        } else if name == "calibrating" {
            eprintln!("calibrating: {done}/{total} layers");
        } else if done > 0 && done * 10 / total != (done - 1) * 10 / total {
            eprintln!("quantized {done}/{total} matrices");
        }
    };
    let mut opts = QuantizeOptions {
        target,
        head,
        tensor_types: Vec::new(),
    };
    for (pat, t) in tensor_types {
        let g = group.unwrap_or(default_group_of(&t));
        let t = Target::parse(&t, g, &scale).map_err(|e| format!("--tensor-type {pat}: {e}"))?;
        opts.tensor_types.push((pat, t));
    }
    let calibration = match &calib {
        Some(f) => Some(Calibration {
            text: std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
            max_tokens: calib_tokens,
            n_ctx: calib_ctx,
            rotate,
        }),
        None if rotate => return Err("--rotate needs --calibrate".into()),
        None => None,
    };
    let summary = match &tokenizer {
        Some(_) if calibration.is_some() => {
            return Err("--calibrate reads GGUF and tmac files, not llama2.c ones".into())
        }
        Some(z) => tmac::convert::legacy::legacy_to_tmac(
            src.as_ref(),
            Some(z.as_ref()),
            dst.as_ref(),
            &opts,
            progress,
        ),
        None => quantize_file_calibrated(
            src.as_ref(),
            dst.as_ref(),
            &opts,
            calibration.as_ref(),
            progress,
        ),
    }
    .map_err(|e| e.to_string())?;
    if tty {
        eprintln!();
    }
    outln!(
        "{dst}: {} | {:.1} MiB | {:.2} bits per weight ({} matrices) | {:.1} s",
        target.name(),
        summary.bytes as f64 / 1048576.0,
        summary.bits_per_weight,
        summary.matrices,
        t0.elapsed().as_secs_f64()
    );
    for n in &summary.notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

pub fn export(args: &[String]) -> Result<(), String> {
    const EXPORT_USAGE: &str =
        "usage: tmac export --llama2c MODEL OUT.bin TOKENIZER.bin [-z TOKENIZER]
writes MODEL (GGUF, or any file tmac runs) as a llama2.c \"version 0\" checkpoint (f32) and its
vocabulary as a llama2.c tokenizer.bin";
    let (args, z) = take_tokenizer(args)?;
    let (mut llama2c, mut paths) = (false, Vec::new());
    for a in &args {
        match a.as_str() {
            "--llama2c" => llama2c = true,
            "-h" | "--help" => {
                outln!("{EXPORT_USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => return Err(super::unknown_option("export", s)),
            s => paths.push(s.to_string()),
        }
    }
    let ([src, out, tok], true) = (paths.as_slice(), llama2c) else {
        return Err(EXPORT_USAGE.to_string());
    };
    let t0 = Instant::now();
    let s = tmac::convert::export::export_llama2c(
        src.as_ref(),
        z.as_deref().map(std::path::Path::new),
        out.as_ref(),
        tok.as_ref(),
    )
    .map_err(|e| e.to_string())?;
    outln!(
        "{out}: llama2.c checkpoint, {} | rope base {} | {} bytes ({:.1} MiB)\n{tok}: {} tokens, {} bytes | {:.1} s",
        s.header.describe(),
        s.rope_base,
        s.model_bytes,
        s.model_bytes as f64 / 1048576.0,
        s.header.vocab_size,
        s.tokenizer_bytes,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
