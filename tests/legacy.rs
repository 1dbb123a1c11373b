//! Files from the original Mojo T-MAC engine and llama2.c (legacy-formats.md):
//! - `tmac quantize --type v1|v2|q4v1` writes the bytes an independent NumPy implementation of
//!   the original's rules (tools/legacy_reference.py) writes, on small synthetic checkpoints
//!   built to hit the rules' corner cases;
//! - every format loads, decodes to what its bytes say (checked with decoders written here),
//!   runs through the LUT / f32 paths, and through `tmac run` with the original's flags;
//! - SmolLM2 exported to llama2.c computes the same logits as the GGUF f32 path;
//! - truncated and inconsistent files of each format are refused with a clear error.

mod common;
use half::f16;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tmac::convert::legacy::{legacy_to_tmac, write_legacy, LegacyType};
use tmac::convert::quantize::{QuantizeOptions, Scope, Target};
use tmac::testing::sampler::Rng;
use tmac::Bytes;
use tmac::{Compute, ErrorKind, LoadOptions, Model, Session, SessionOptions};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tmac-legacy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A synthetic llama2.c model.
#[derive(Clone, Copy)]
struct Spec {
    dim: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    shared: bool,
    seq_len: usize,
    rope_base: f64,
    seed: u64,
}

/// dim 64: rows start on Q4V1 blocks (LUT path); a separate classifier; RoPE base 500000.
const ALIGNED: Spec = Spec {
    dim: 64,
    hidden: 96,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    vocab: 67,
    shared: false,
    seq_len: 32,
    rope_base: 500000.0,
    seed: 11,
};

/// Odd sizes: v1 tensors ending mid-byte, v2 rows padded, Q4V1 blocks across rows.
const ODD: Spec = Spec {
    dim: 6,
    hidden: 7,
    layers: 3,
    heads: 3,
    kv_heads: 1,
    vocab: 37,
    shared: true,
    seq_len: 5,
    rope_base: 10000.0,
    seed: 12,
};

/// (name, quantized, layers, rows, cols) in file order (legacy-formats.md section 1).
fn layout(s: &Spec) -> Vec<(&'static str, bool, usize, usize, usize)> {
    let (d, f, l, hs) = (s.dim, s.hidden, s.layers, s.dim / s.heads);
    let kv = s.kv_heads * hs;
    let mut v = vec![
        ("token_embedding", true, 1, s.vocab, d),
        ("rms_att_weight", false, l, 1, d),
        ("wq", true, l, d, d),
        ("wk", true, l, kv, d),
        ("wv", true, l, kv, d),
        ("wo", true, l, d, d),
        ("rms_ffn_weight", false, l, 1, d),
        ("w1", true, l, f, d),
        ("w2", true, l, d, f),
        ("w3", true, l, f, d),
        ("rms_final_weight", false, 1, 1, d),
        ("freq_cis_real", false, 1, s.seq_len, hs / 2),
        ("freq_cis_imag", false, 1, s.seq_len, hs / 2),
    ];
    if !s.shared {
        v.push(("wcls", true, 1, s.vocab, d));
    }
    v
}

fn header(s: &Spec) -> Vec<u8> {
    let vocab = if s.shared {
        s.vocab as i32
    } else {
        -(s.vocab as i32)
    };
    [
        s.dim as i32,
        s.hidden as i32,
        s.layers as i32,
        s.heads as i32,
        s.kv_heads as i32,
        vocab,
        s.seq_len as i32,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect()
}

/// The tensors' values, with corner cases of the quantizers' rules planted in them.
fn tensors(s: &Spec) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(s.seed);
    let hs = s.dim / s.heads;
    let mut out = Vec::new();
    for (name, _, l, r, c) in layout(s) {
        let n = l * r * c;
        let mut v: Vec<f32> = match name {
            "freq_cis_real" | "freq_cis_imag" => (0..n)
                .map(|k| {
                    let (p, i) = (k / (hs / 2), k % (hs / 2));
                    let a = p as f64 * s.rope_base.powf(-2.0 * i as f64 / hs as f64);
                    (if name == "freq_cis_real" {
                        a.cos()
                    } else {
                        a.sin()
                    }) as f32
                })
                .collect(),
            rms if rms.starts_with("rms") => (0..n).map(|_| 0.5 + rng.next_f64() as f32).collect(),
            _ => (0..n)
                .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * 0.3)
                .collect(),
        };
        let tie = 1.0 + 2f32.powi(-11); // halfway between two f16 values
        match (name, s.dim) {
            ("wq", 64) => {
                // Q4V1 block 0: d = 1 exactly, so x / d has .5 ties (round half to even)
                let b = [
                    7.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5, 4.5, -4.5, 5.5, -5.5, 6.5,
                    -6.5, 0.0, -0.0, -7.0,
                ];
                v[..b.len()].copy_from_slice(&b);
                // block 1: max|x| / 7 = 1 + 2^-11, an f16 rounding tie
                v[32] = 7.0 * tie;
                // block 2: all zero (d = 0)
                v[64..96].fill(0.0);
            }
            ("wk", 64) => {
                // v2: an all-zero row (fallback scale) and a row whose scale is an f16 tie
                v[..64].fill(0.0);
                for (j, x) in v[64..128].iter_mut().enumerate() {
                    *x = if j % 3 == 0 { -tie } else { tie };
                }
            }
            ("wv", 6) => v.fill(0.0), // v1: threshold 0, every |w| == t
            _ => {}
        }
        out.push(v);
    }
    out
}

fn checkpoint(s: &Spec) -> Vec<u8> {
    let mut b = header(s);
    for t in tensors(s) {
        b.extend(t.iter().flat_map(|v| v.to_le_bytes()));
    }
    b
}

/// A llama2.c tokenizer.bin for the synthetic models (spaces are real spaces).
fn tokenizer_bin(n: usize) -> Vec<u8> {
    let mut toks: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    toks.extend((b'a'..=b'z').map(|c| vec![c]));
    toks.extend([
        b" ".to_vec(),
        b"ab".to_vec(),
        b" ab".to_vec(),
        b"\xc3\xa9".to_vec(),
    ]);
    let mut i = 0;
    while toks.len() < n {
        toks.push(format!("t{i}").into_bytes());
        i += 1;
    }
    toks.truncate(n);
    let mut b = 8u32.to_le_bytes().to_vec();
    for (i, t) in toks.iter().enumerate() {
        b.extend((-(i as f32)).to_le_bytes());
        b.extend((t.len() as i32).to_le_bytes());
        b.extend(t);
    }
    b
}

/// Bytes each file should have, from the layout alone.
fn expected_size(s: &Spec, t: LegacyType) -> usize {
    let mut n = 32 + if t == LegacyType::Q4V1 { 4 } else { 0 };
    for (_, q, l, r, c) in layout(s) {
        let e = l * r * c;
        n += match (t, q) {
            (LegacyType::V1, true) => e.div_ceil(4),
            (LegacyType::V1, false) => 4 * e,
            (LegacyType::V2, true) => 9 + l * r * (2 + c.div_ceil(4)),
            (LegacyType::Q4V1, true) => 1 + e.div_ceil(32) * 18,
            (_, false) => 1 + 4 * e,
        };
    }
    n
}

fn ext(t: LegacyType) -> &'static str {
    match t {
        LegacyType::V1 => "tmac.bin",
        LegacyType::V2 => "tmac2.bin",
        LegacyType::Q4V1 => "q4.bin",
    }
}

const TYPES: [LegacyType; 3] = [LegacyType::V1, LegacyType::V2, LegacyType::Q4V1];

/// Write the checkpoint, its tokenizer and the three legacy files of `s` under `name`.
fn files(s: &Spec, name: &str) -> (PathBuf, PathBuf) {
    let ckpt = scratch(&format!("{name}.bin"));
    std::fs::write(&ckpt, checkpoint(s)).unwrap();
    let tok = scratch(&format!("{name}.tokenizer.bin"));
    std::fs::write(&tok, tokenizer_bin(s.vocab)).unwrap();
    for t in TYPES {
        write_legacy(&ckpt, &scratch(&format!("{name}.{}", ext(t))), t).unwrap();
    }
    (ckpt, tok)
}

fn load(path: &Path, tok: &Path, compute: Compute) -> Arc<Model> {
    Model::load(
        path,
        &LoadOptions {
            compute,
            tokenizer: Some(tok.to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn logits(m: Arc<Model>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut s = Session::new(m, &SessionOptions::default()).unwrap();
    let mut out = Vec::new();
    s.eval(tokens, |_, l| out.push(l.to_vec())).unwrap();
    out
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn writers_match_the_numpy_reference_byte_for_byte() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/legacy_reference.py");
    for (s, name) in [(ALIGNED, "ref-aligned"), (ODD, "ref-odd")] {
        let (ckpt, _) = files(&s, name);
        let prefix = scratch(&format!("{name}-numpy"));
        let out = Command::new("python3")
            .arg(script)
            .arg(&ckpt)
            .arg(&prefix)
            .output()
            .expect("python3 is needed for this test");
        assert!(
            out.status.success(),
            "{script} failed (it needs NumPy: pip install numpy): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for t in TYPES {
            let ours = std::fs::read(scratch(&format!("{name}.{}", ext(t)))).unwrap();
            let theirs = std::fs::read(format!("{}.{}", prefix.display(), ext(t))).unwrap();
            assert_eq!(ours.len(), expected_size(&s, t), "{name} {t:?} size");
            if let Some(i) = (0..ours.len().min(theirs.len())).find(|&i| ours[i] != theirs[i]) {
                panic!(
                    "{name} {t:?}: first difference at byte {i} of {} (tmac {:02x}, reference {:02x})",
                    ours.len(),
                    ours[i],
                    theirs[i]
                );
            }
            assert_eq!(ours.len(), theirs.len(), "{name} {t:?}");
            eprintln!(
                "{name} {t:?}: {} bytes, identical to the NumPy reference",
                ours.len()
            );
        }
    }
}

/// The rules' corner cases, checked on the bytes directly (independently of NumPy).
#[test]
fn corner_cases_are_quantized_as_the_rules_say() {
    let s = ALIGNED;
    let _ = files(&s, "corners");
    let q4 = std::fs::read(scratch("corners.q4.bin")).unwrap();
    // first record after magic, header, block size: token_embedding; find wq by sizes
    let mut at = 36;
    for (name, q, l, r, c) in layout(&s) {
        if name == "wq" {
            break;
        }
        at += 1 + if q {
            (l * r * c).div_ceil(32) * 18
        } else {
            4 * l * r * c
        };
    }
    assert_eq!(q4[at], 1, "wq record flag");
    let blk = |b: usize| &q4[at + 1 + b * 18..at + 1 + (b + 1) * 18];
    let d = |b: usize| f16::from_le_bytes([blk(b)[0], blk(b)[1]]);
    let nib = |b: usize, j: usize| (blk(b)[2 + j / 2] >> (4 * (j % 2))) & 15;
    assert_eq!(d(0), f16::ONE);
    // 7, .5, 1.5, 2.5, -.5, -1.5, -2.5, 3.5, -3.5, 4.5, -4.5, 5.5, -5.5, 6.5, -6.5, 0, -0, -7
    let want = [7, 0, 2, 2, 0, -2, -2, 4, -4, 4, -4, 6, -6, 6, -6, 0, 0, -7];
    for (j, w) in want.iter().enumerate() {
        assert_eq!(nib(0, j) as i32 - 8, *w, "block 0 element {j}");
    }
    assert_eq!(d(1), f16::ONE, "1 + 2^-11 rounds to even in f16");
    assert!(
        blk(2).iter().all(|&b| b == 0),
        "an all-zero block is 18 zero bytes"
    );

    // v2: wk row 0 all zero -> scale f16(0 + 1e-6), codes 0; row 1 scale tie -> 1.0
    let v2 = std::fs::read(scratch("corners.tmac2.bin")).unwrap();
    let mut at = 32;
    for (name, q, l, r, c) in layout(&s) {
        if name == "wk" {
            break;
        }
        at += if q {
            9 + l * r * (2 + c.div_ceil(4))
        } else {
            1 + 4 * l * r * c
        };
    }
    assert_eq!(v2[at], 1);
    let rows = i32::from_le_bytes(v2[at + 1..at + 5].try_into().unwrap());
    assert_eq!(rows as usize, s.layers * s.kv_heads * s.dim / s.heads);
    let row = |r: usize| &v2[at + 9 + r * 18..at + 9 + (r + 1) * 18];
    assert_eq!(
        f16::from_le_bytes([row(0)[0], row(0)[1]]),
        f16::from_f32(1e-6)
    );
    assert!(row(0)[2..].iter().all(|&b| b == 0));
    assert_eq!(f16::from_le_bytes([row(1)[0], row(1)[1]]), f16::ONE);
    // element j of row 1 is -tie when j % 3 == 0: code 11, else 01
    for j in 0..64 {
        let code = (row(1)[2 + j / 4] >> (2 * (j % 4))) & 3;
        assert_eq!(code, if j % 3 == 0 { 3 } else { 1 }, "row 1 element {j}");
    }

    // v1 (odd model): wv is all zero, so t = 0 and |w| == t everywhere: code 00
    let _ = files(&ODD, "corners-odd");
    let v1 = std::fs::read(scratch("corners-odd.tmac.bin")).unwrap();
    let mut at = 32;
    for (name, q, l, r, c) in layout(&ODD) {
        let n = l * r * c;
        if name == "wv" {
            assert!(v1[at..at + n.div_ceil(4)].iter().all(|&b| b == 0));
        }
        at += if q { n.div_ceil(4) } else { 4 * n };
    }
    assert_eq!(at, v1.len());
}

/// An independent decoder: the f32 value of element (row, col) of layer `layer` of tensor
/// `name` in a legacy file, from the byte layout alone.
fn decode(
    s: &Spec,
    file: &[u8],
    kind: LegacyType,
    name: &str,
    layer: usize,
    row: usize,
    col: usize,
) -> f32 {
    let mut at = 32 + if kind == LegacyType::Q4V1 { 4 } else { 0 };
    for (n, q, l, r, c) in layout(s) {
        let e = l * r * c;
        if n == name {
            assert!(q);
            let el = (layer * r + row) * c + col;
            let tern = |code: u8| match code {
                0 => 0.0,
                1 => 1.0,
                _ => -1.0,
            };
            return match kind {
                LegacyType::V1 => tern((file[at + el / 4] >> (2 * (el % 4))) & 3),
                LegacyType::V2 => {
                    let rb = 2 + c.div_ceil(4);
                    let rec = &file[at + 9 + (layer * r + row) * rb..];
                    f16::from_le_bytes([rec[0], rec[1]]).to_f32()
                        * tern((rec[2 + col / 4] >> (2 * (col % 4))) & 3)
                }
                LegacyType::Q4V1 => {
                    let b = &file[at + 1 + el / 32 * 18..];
                    let j = el % 32;
                    let nib = (b[2 + j / 2] >> (4 * (j % 2))) & 15;
                    (nib as f32 - 8.0) * f16::from_le_bytes([b[0], b[1]]).to_f32()
                }
            };
        }
        at += match (kind, q) {
            (LegacyType::V1, true) => e.div_ceil(4),
            (LegacyType::V1, false) => 4 * e,
            (LegacyType::V2, true) => 9 + l * r * (2 + c.div_ceil(4)),
            (LegacyType::Q4V1, true) => 1 + e.div_ceil(32) * 18,
            (_, false) => 1 + 4 * e,
        };
    }
    panic!("no tensor {name}")
}

#[test]
fn legacy_files_load_decode_and_run() {
    for (s, name) in [(ALIGNED, "run-aligned"), (ODD, "run-odd")] {
        let (ckpt, tok) = files(&s, name);
        let f32_model = load(&ckpt, &tok, Compute::Kernels);
        assert_eq!(f32_model.file_kind(), tmac::testing::format::Kind::Llama2c);
        assert_eq!(
            f32_model.config().rope_base,
            s.rope_base as f32,
            "RoPE base from freq_cis"
        );
        assert_eq!(
            tmac::testing::weights(&f32_model).layers[0].wq.kind(),
            "f32"
        );
        let tokens: Vec<u32> = (0..s.seq_len.min(12) as u32)
            .map(|i| (i * 7 + 1) % s.vocab as u32)
            .collect();
        let reference = logits(f32_model, &tokens);
        for t in TYPES {
            let path = scratch(&format!("{name}.{}", ext(t)));
            let bytes = std::fs::read(&path).unwrap();
            let m = load(&path, &tok, Compute::Kernels);
            let want_kind = match (t, s.dim % 32) {
                (LegacyType::Q4V1, 0) => "lut-q4",
                (LegacyType::Q4V1, _) => "f32", // blocks across rows: dequantized
                _ => "lut-ternary",
            };
            let layer1 = &tmac::testing::weights(&m).layers[1];
            assert_eq!(layer1.wq.kind(), want_kind, "{name} {t:?}");
            // every loaded weight of layer 1's wq and w2, and the embedding, is what the bytes say
            let mut row = vec![0f32; s.hidden.max(s.dim)];
            for (tn, lin, cols) in [("wq", &layer1.wq, s.dim), ("w2", &layer1.w_down, s.hidden)] {
                for r in 0..lin.rows() {
                    lin.dequantize_row(r, &mut row[..cols]);
                    for (c, &v) in row[..cols].iter().enumerate() {
                        assert_eq!(
                            v,
                            decode(&s, &bytes, t, tn, 1, r, c),
                            "{name} {t:?} {tn}[{r}][{c}]"
                        );
                    }
                }
            }
            for id in [0, s.vocab - 1] {
                tmac::testing::weights(&m)
                    .tok_embd
                    .row(m.file(), id, &mut row[..s.dim])
                    .unwrap();
                for (c, &v) in row[..s.dim].iter().enumerate() {
                    assert_eq!(v, decode(&s, &bytes, t, "token_embedding", 0, id, c));
                    if t == LegacyType::V1 {
                        assert!([-1.0, 0.0, 1.0].contains(&v), "v1 has no scale");
                    }
                }
            }
            // the kernels agree with the same weights dequantized to f32
            let kern = logits(m, &tokens);
            let f = logits(load(&path, &tok, Compute::F32), &tokens);
            let scale = f.iter().flatten().fold(0f32, |a, v| a.max(v.abs()));
            let d = max_diff(&kern, &f);
            assert!(kern.iter().flatten().all(|v| v.is_finite()));
            assert!(
                d <= 0.05 * scale.max(1.0),
                "{name} {t:?}: kernels vs f32 differ by {d} (scale {scale})"
            );
            if t == LegacyType::Q4V1 {
                // int4 stays close to the f32 checkpoint
                let dr = max_diff(&f, &reference);
                eprintln!("{name} Q4V1 vs f32 checkpoint: max logit diff {dr:.4} (logits up to {scale:.2})");
            }
            eprintln!("{name} {t:?}: {want_kind}, kernels vs dequantized f32: {d:.2e}");
        }
    }
}

#[test]
fn legacy_files_convert_exactly_to_tmac_files() {
    let s = ALIGNED;
    let (ckpt, tok) = files(&s, "conv");
    let tokens: Vec<u32> = (3..15).collect();
    for (src, target) in [
        (ckpt.clone(), Target::F32),
        (scratch("conv.tmac.bin"), Target::Tq(Scope::Tensor)),
        (scratch("conv.tmac2.bin"), Target::Tq(Scope::Row)),
        (scratch("conv.q4.bin"), Target::Q(4, 32)),
    ] {
        let dst = scratch("conv.tmac");
        legacy_to_tmac(
            &src,
            Some(&tok),
            &dst,
            &QuantizeOptions {
                target,
                head: target,
                tensor_types: Vec::new(),
            },
            |_, _, _| {},
        )
        .unwrap();
        let a = logits(load(&src, &tok, Compute::Kernels), &tokens);
        let converted = Model::load(&dst, &LoadOptions::default()).unwrap();
        assert_eq!(converted.file_kind(), tmac::testing::format::Kind::Gguf);
        assert_eq!(converted.config().rope_base, s.rope_base as f32);
        assert_eq!(converted.vocab().len(), s.vocab);
        let b = logits(converted, &tokens);
        assert_eq!(
            a,
            b,
            "{}: the tmac file computes something else",
            src.display()
        );
    }
    // quantize_file finds tokenizer.bin next to the model, like `tmac run`
    let dir = scratch("conv-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(scratch("conv.tmac2.bin"), dir.join("m.tmac2.bin")).unwrap();
    std::fs::copy(&tok, dir.join("tokenizer.bin")).unwrap();
    tmac::convert::quantize::quantize_file(
        &dir.join("m.tmac2.bin"),
        &dir.join("m.tmac"),
        &QuantizeOptions {
            target: Target::Q(4, 32),
            head: Target::Q8,
            tensor_types: Vec::new(),
        },
        |_, _, _| {},
    )
    .unwrap();
    assert!(Model::load(dir.join("m.tmac"), &LoadOptions::default()).is_ok());
}

#[test]
fn tokenizer_bin_follows_llama2c() {
    // <unk>, BOS, EOS, 256 byte tokens <0x00>..<0xFF>, then pieces
    let mut toks: Vec<(Vec<u8>, f32)> = vec![
        (b"<unk>".to_vec(), 0.0),
        (b"\n<s>\n".to_vec(), 0.0),
        (b"\n</s>\n".to_vec(), 0.0),
    ];
    toks.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>").into_bytes(), 0.0)));
    for (t, s) in [
        (" ", -5.0),
        ("a", -5.0),
        ("b", -5.0),
        ("ab", -1.0),
        (" ab", -2.0),
        (" a", -9.0),
    ] {
        toks.push((t.as_bytes().to_vec(), s));
    }
    let id = |t: &str| toks.iter().position(|(x, _)| x == t.as_bytes()).unwrap() as u32;
    let bin = tmac::testing::format::llama2c::write_tokenizer(&toks);
    let v = tmac::testing::model::legacy::vocab_from_tokenizer_bin(&bin, toks.len()).unwrap();
    // llama2.c: BOS, a dummy " " before the text, best-score merges (leftmost on ties)
    assert_eq!(
        v.encode("ab ab", true, false),
        vec![1, id(" ab"), id(" ab")]
    );
    // a character missing from the vocabulary falls back to its UTF-8 bytes: <0xNN> = 3 + byte
    assert_eq!(
        v.encode("ü", false, false),
        vec![id(" "), 3 + 0xC3, 3 + 0xBC]
    );
    // pieces are bytes: the two byte tokens print as one whole character, not mojibake
    let mut st = tmac::testing::tokenizer::stream::Utf8Stream::default();
    let text: String = [id(" ab"), 3 + 0xC3, 3 + 0xBC, 3 + 0x0A]
        .iter()
        .map(|&t| st.push(v.piece(t)))
        .collect();
    assert_eq!(text, " abü\n");
    // EOS ends a generation, and so does BOS (as in run.c); neither prints
    assert!(v.is_eog(2) && v.is_eog(1) && !v.is_eog(id("ab")));
    assert!(v.piece(1).is_empty() && v.piece(2).is_empty());
}

fn tmac_cli(args: &[&str]) -> (bool, String, String) {
    let out = common::tmac_cli().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_runs_legacy_files_with_the_originals_flags() {
    let s = ALIGNED;
    let (_, tok) = files(&s, "cli");
    // the format comes from the magic: a v2 file under a misleading name
    let odd_name = scratch("cli-v2-named.gguf");
    std::fs::copy(scratch("cli.tmac2.bin"), &odd_name).unwrap();
    let tok = tok.to_str().unwrap();
    for model in [
        scratch("cli.tmac.bin"),
        odd_name,
        scratch("cli.q4.bin"),
        scratch("cli.bin"),
    ] {
        let m = model.to_str().unwrap();
        let args = [
            "run", m, "-z", tok, "-n", "8", "-t", "0.8", "-p", "0.9", "-i", "ab", "-s", "42",
        ];
        let (ok, out, err) = tmac_cli(&args);
        assert!(ok, "{m}: {err}");
        let (_, out2, _) = tmac_cli(&args);
        assert_eq!(out, out2, "{m}: the same seed gives the same text");
        // steps are capped by the context: seq_len 32
        let (ok, _, err) = tmac_cli(&["run", m, "-z", tok, "-n", "500", "-t", "0"]);
        assert!(ok, "{err}");
        let generated: usize = err
            .split("generated ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            generated < s.seq_len,
            "{m}: {generated} tokens past seq_len {}",
            s.seq_len
        );
    }
    // without -z: tokenizer.bin next to the model; if there is none, a clear error
    let (ok, _, err) = tmac_cli(&["run", scratch("cli.q4.bin").to_str().unwrap(), "-n", "2"]);
    assert!(
        !ok && err.contains("tokenizer.bin") && err.contains("-z"),
        "{err}"
    );
    std::fs::copy(tok, scratch("tokenizer.bin")).unwrap();
    let (ok, _, err) = tmac_cli(&["run", scratch("cli.q4.bin").to_str().unwrap(), "-n", "2"]);
    assert!(ok, "{err}");
    let _ = std::fs::remove_file(scratch("tokenizer.bin"));

    // `tmac quantize` to a tmac file that runs; its progress, when stderr is not a terminal,
    // is whole lines (no bar redrawn with carriage returns in a log), ending at all matrices
    let q = scratch("cli-q4.tmac");
    let (ok, out, err) = tmac_cli(&[
        "quantize",
        scratch("cli.bin").to_str().unwrap(),
        q.to_str().unwrap(),
        "--type",
        "q4",
        "-z",
        tok,
    ]);
    assert!(ok && out.contains("bits per weight"), "{out}{err}");
    let last = err
        .lines()
        .rfind(|l| l.starts_with("quantized "))
        .unwrap_or("");
    let n = last.split(['/', ' ']).nth(1).unwrap_or("?");
    assert!(
        !err.contains('\r') && last.ends_with(&format!("{n}/{n} matrices")),
        "{err:?}"
    );
    let (ok, _, err) = tmac_cli(&["run", q.to_str().unwrap(), "-n", "2"]);
    assert!(ok, "{err}");
}

/// SmolLM2 through `tmac export --llama2c`: the same logits as the GGUF f32 path, readable
/// greedy text, and the three legacy files made from it.
#[test]
fn smollm2_exported_to_llama2c_matches_the_gguf_path() {
    let gguf = common::smollm2();
    let (bin, tok) = (scratch("smol.bin"), scratch("smol-tokenizer.bin"));
    let (ok, out, err) = tmac_cli(&[
        "export",
        "--llama2c",
        gguf.to_str().unwrap(),
        bin.to_str().unwrap(),
        tok.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    eprint!("{out}");
    let f32_opts = |tok: Option<PathBuf>| LoadOptions {
        compute: Compute::F32,
        tokenizer: tok,
        ..Default::default()
    };
    let g = Model::load(&gguf, &f32_opts(None)).unwrap();
    let l = Model::load(&bin, &f32_opts(Some(tok.clone()))).unwrap();
    assert_eq!(l.config().rope_base, g.config().rope_base);
    assert_eq!(l.config().n_vocab, g.config().n_vocab);
    let text = "The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away,";
    let tokens = g.vocab().encode(text, false, false);
    let (a, b) = (logits(g.clone(), &tokens), logits(l.clone(), &tokens));
    let d = max_diff(&a, &b);
    let argmax = |v: &[f32]| tmac::testing::sampler::argmax(v);
    let same_argmax = a.iter().zip(&b).all(|(x, y)| argmax(x) == argmax(y));
    eprintln!(
        "llama2.c round trip: {} positions, max |logit diff| vs GGUF f32 = {d:e}, argmax equal: {same_argmax}",
        tokens.len()
    );
    assert!(d <= 1e-4 && same_argmax, "max diff {d}");

    // llama2.c-style tokenization of the exported vocabulary vs the GGUF's BPE
    let fixture = common::fixture("tokens.tsv");
    let (mut same, mut total) = (0, 0);
    for line in common::lines(&fixture) {
        let s = common::unhex(line.split('\t').next().unwrap());
        total += 1;
        same += (l.vocab().encode(&s, false, false)
            == g.vocab().encode(&format!(" {s}"), false, false)) as usize;
    }
    eprintln!(
        "exported tokenizer.bin: {same} of {total} fixture strings tokenize as the GGUF's BPE does"
    );
    drop((a, b, g, l));

    let run = |model: &Path| {
        let (ok, out, err) = tmac_cli(&[
            "run",
            model.to_str().unwrap(),
            "-z",
            tok.to_str().unwrap(),
            "-n",
            "24",
            "-t",
            "0",
            "-i",
            "The capital of France is",
        ]);
        assert!(ok, "{err}");
        out
    };
    let greedy = run(&bin);
    eprintln!("greedy, llama2.c f32: {greedy:?}");
    assert!(greedy.contains("Paris"), "{greedy}");

    for (t, size) in [
        (LegacyType::V1, 35_857_696u64),
        (LegacyType::V2, 36_267_117),
        (LegacyType::Q4V1, 77_882_673),
    ] {
        let out = scratch(&format!("smol.{}", ext(t)));
        let n = write_legacy(&bin, &out, t).unwrap();
        assert_eq!(n, size, "{t:?}");
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
        let text = run(&out);
        eprintln!(
            "SmolLM2 {t:?}: {size} bytes ({:.1} MiB); greedy: {text:?}",
            size as f64 / 1048576.0
        );
        if t == LegacyType::Q4V1 {
            assert!(text.contains("Paris"), "{text}");
        }
        let _ = std::fs::remove_file(out);
    }
    let _ = std::fs::remove_file(bin);
}

// ---- broken files ----

fn err_of(bytes: Vec<u8>, tok: &Path) -> tmac::Error {
    match Model::from_bytes(
        Arc::new(Bytes::Owned(bytes)),
        &LoadOptions {
            compute: Compute::Kernels,
            tokenizer: Some(tok.to_path_buf()),
            ..Default::default()
        },
    ) {
        Ok(_) => panic!("a broken file loaded"),
        Err(e) => e,
    }
}

fn assert_err(bytes: Vec<u8>, tok: &Path, want: &[&str]) {
    let e = err_of(bytes, tok);
    assert!(
        want.iter().all(|w| e.msg.contains(w)),
        "expected {want:?} in: {e}"
    );
}

#[test]
fn truncated_files_are_refused_everywhere() {
    for (s, name) in [(ALIGNED, "trunc-aligned"), (ODD, "trunc-odd")] {
        let (ckpt, tok) = files(&s, name);
        let mut all = vec![std::fs::read(&ckpt).unwrap()];
        for t in TYPES {
            all.push(std::fs::read(scratch(&format!("{name}.{}", ext(t)))).unwrap());
        }
        for full in all {
            let cuts = (0..64.min(full.len())).chain((64..full.len()).step_by(97));
            for n in cuts {
                let e = err_of(full[..n].to_vec(), &tok);
                assert_eq!(e.kind, ErrorKind::Format, "cut at {n}: {e}");
            }
            // and one byte too many
            let mut long = full.clone();
            long.push(0);
            let e = err_of(long, &tok);
            assert_eq!(e.kind, ErrorKind::Format, "{e}");
        }
    }
}

fn with_i32(mut b: Vec<u8>, at: usize, v: i32) -> Vec<u8> {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b
}

#[test]
fn inconsistent_headers_and_records_are_refused() {
    let s = ALIGNED;
    let (ckpt, tok) = files(&s, "bad");
    let ck = std::fs::read(&ckpt).unwrap();
    let v1 = std::fs::read(scratch("bad.tmac.bin")).unwrap();
    let v2 = std::fs::read(scratch("bad.tmac2.bin")).unwrap();
    let q4 = std::fs::read(scratch("bad.q4.bin")).unwrap();

    // llama2.c: no magic, so the header must be plausible and match the size
    assert_err(ck[..ck.len() - 4].to_vec(), &tok, &["llama2.c", "implies"]);
    assert_err(with_i32(ck.clone(), 0, 0), &tok, &["dim = 0"]);
    assert_err(with_i32(ck.clone(), 8, -2), &tok, &["n_layers = -2"]);
    assert_err(with_i32(ck.clone(), 16, 3), &tok, &["heads do not divide"]);
    // the same header in the T-MAC files, after the magic
    for f in [&v1, &v2, &q4] {
        assert_err(
            with_i32(f.clone(), 4, -64),
            &tok,
            &["dim = -64", "out of range"],
        );
        assert_err(with_i32(f.clone(), 4 + 24, 0), &tok, &["seq_len = 0"]);
        assert_err(with_i32(f.clone(), 4 + 4, 1 << 30), &tok, &["hidden_dim"]);
    }
    // a vocabulary the file does not have room for
    let big = |f: &Vec<u8>| with_i32(f.clone(), 4 + 20, -100_000);
    assert_err(big(&v1), &tok, &["truncated", "implies"]);
    assert_err(
        big(&v2),
        &tok,
        &["record says 67 x 64, the header implies 100000 x 64"],
    );
    assert_err(big(&q4), &tok, &["truncated", "token_embedding"]);
    assert_err(v1[..v1.len() - 1].to_vec(), &tok, &["truncated", "implies"]);

    // v2: flags and dimensions of records
    let emb = 32; // first record: token_embedding (quantized)
    let mut b = v2.clone();
    b[emb] = 0;
    assert_err(
        b,
        &tok,
        &["token_embedding", "record flag is 0, expected 1"],
    );
    let rows = s.vocab * (2 + s.dim / 4);
    let rms = emb + 9 + rows; // second record: rms_att_weight (float)
    assert_eq!(v2[rms], 0);
    let mut b = v2.clone();
    b[rms] = 1;
    assert_err(
        b,
        &tok,
        &[
            "rms_att_weight",
            "record flag is 1, expected 0",
            "TM2-BitNet",
        ],
    );
    assert_err(
        with_i32(v2.clone(), emb + 1, -5),
        &tok,
        &["token_embedding", "record says -5 x 64"],
    );
    assert_err(
        with_i32(v2.clone(), emb + 5, 0),
        &tok,
        &["record says 67 x 0"],
    );
    let mut b = v2.clone();
    b[emb + 9..emb + 11].copy_from_slice(&f16::NAN.to_le_bytes());
    assert_err(b, &tok, &["token_embedding", "not finite"]);
    let mut b = v2.clone();
    b[..4].copy_from_slice(b"TM2X");
    assert_err(b, &tok, &["unknown model format"]);

    // Q4V1
    assert_err(with_i32(q4.clone(), 32, 16), &tok, &["block_size is 16"]);
    let mut b = q4.clone();
    b[36] = 0;
    assert_err(b, &tok, &["token_embedding", "record flag is 0"]);
    let mut b = q4.clone();
    b[37..39].copy_from_slice(&f16::INFINITY.to_le_bytes());
    assert_err(b, &tok, &["token_embedding", "not finite"]);
    let (odd_ck, odd_tok) = files(&ODD, "bad-odd");
    let _ = odd_ck;
    let mut b = std::fs::read(scratch("bad-odd.q4.bin")).unwrap();
    b[37..39].copy_from_slice(&f16::NAN.to_le_bytes());
    assert_err(b, &odd_tok, &["token_embedding", "not finite"]);

    // freq_cis tables that are not RoPE
    let mut b = ck.clone();
    let freq = 28
        + 4 * layout(&s)
            .iter()
            .take_while(|t| t.0 != "freq_cis_real")
            .map(|t| t.2 * t.3 * t.4)
            .sum::<usize>();
    b[freq + 4 * 8 + 4..freq + 4 * 8 + 8].copy_from_slice(&0.5f32.to_le_bytes());
    assert_err(b, &tok, &["freq_cis"]);
    // a NaN in a norm
    let mut b = ck.clone();
    let rms = 28 + 4 * s.vocab * s.dim;
    b[rms..rms + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_err(b, &tok, &["rms_att_weight", "NaN"]);
}

#[test]
fn broken_tokenizers_are_refused() {
    let s = ALIGNED;
    let (ckpt, _) = files(&s, "badtok");
    let good = tokenizer_bin(s.vocab);
    let t = scratch("badtok-t.bin");
    let try_tok = |bytes: &[u8]| -> tmac::Error {
        std::fs::write(&t, bytes).unwrap();
        match Model::load(
            &ckpt,
            &LoadOptions {
                compute: Compute::Kernels,
                tokenizer: Some(t.clone()),
                ..Default::default()
            },
        ) {
            Ok(_) => panic!("a broken tokenizer loaded"),
            Err(e) => e,
        }
    };
    for n in [0, 3, 4, 11, good.len() / 2, good.len() - 1] {
        let e = try_tok(&good[..n]);
        assert!(
            e.msg.contains("truncated") && e.msg.contains("badtok-t.bin"),
            "{e}"
        );
    }
    let mut long = good.clone();
    long.extend_from_slice(&[0; 9]);
    assert!(try_tok(&long).msg.contains("9 bytes follow the 67 tokens"));
    let e = try_tok(&with_i32(good.clone(), 8, -3));
    assert!(e.msg.contains("negative length -3"), "{e}");
    let mut nan = good.clone();
    nan[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(try_tok(&nan).msg.contains("score is NaN"));
    let e = Model::load(
        &ckpt,
        &LoadOptions {
            compute: Compute::Kernels,
            tokenizer: Some(scratch("no-such-tokenizer.bin")),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.msg.contains("no-such-tokenizer.bin"), "{e}");
}
