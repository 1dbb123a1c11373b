//! `tmac quantize --calibrate` (GPTQ) and `--rotate` on tiny models: the rotation leaves the
//! model's function alone, calibration is deterministic and moves the logits less than
//! rounding to nearest does, on text it did not see.

mod common;
use common::teacher_forced;
use std::path::{Path, PathBuf};
use tmac::convert::calibrate::Calibration;
use tmac::convert::quantize::{quantize_file_calibrated, QuantizeOptions, Target};
use tmac::{LoadOptions, Model};

fn fx(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tmac-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The GPL's text: calibration reads its first half, the checks its second.
fn text_halves() -> (String, String) {
    let t = std::fs::read_to_string(fx("../data/gpl-3.0.txt")).unwrap();
    let mid = t.len() / 2;
    let mid = (mid..t.len()).find(|&i| t.is_char_boundary(i)).unwrap();
    (t[..mid].to_string(), t[mid..].to_string())
}

fn calibration(text: &str, rotate: bool) -> Calibration {
    Calibration {
        text: text.to_string(),
        max_tokens: 1024,
        n_ctx: 128,
        rotate,
    }
}

fn quantize(src: &Path, dst: &Path, t: Target, cal: Option<&Calibration>) -> Vec<u8> {
    let opts = QuantizeOptions {
        target: t,
        head: Target::F32,
        tensor_types: Vec::new(),
    };
    quantize_file_calibrated(src, dst, &opts, cal, |_, _, _| {})
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    std::fs::read(dst).unwrap()
}

fn load(p: &Path) -> std::sync::Arc<Model> {
    Model::load(p, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Tokens of the held-out text, as many as the test contexts take.
fn held_out(m: &Model) -> Vec<u32> {
    let (_, text) = text_halves();
    let mut t = m.vocab().encode(&text, true, false);
    t.truncate(64);
    t
}

/// Turning the residual stream, folded into the weights, computes the same function: an f32
/// file rotated gives the source's logits up to float rounding, on every architecture it
/// accepts; those with norms on a matrix's output are refused by name.
#[test]
fn rotation_keeps_the_logits() {
    let (calib, _) = text_halves();
    for name in ["qwen2-outbias", "qwen3", "phi3", "granite", "gemma"] {
        let src = fx(&format!("arch/{name}.gguf"));
        let dst = scratch(&format!("{name}.rot.tmac"));
        let bytes = quantize(&src, &dst, Target::F32, Some(&calibration(&calib, true)));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("rotation.signs"),
            "{name}: no rotation stored"
        );
        let seq = held_out(&load(&src));
        let (a, b) = (
            teacher_forced(load(&src), &seq),
            teacher_forced(load(&dst), &seq),
        );
        let diff = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-3, "{name}: rotated logits differ by {diff}");
    }
    let opts = QuantizeOptions {
        target: Target::F32,
        head: Target::F32,
        tensor_types: Vec::new(),
    };
    let e = quantize_file_calibrated(
        &fx("arch/gemma2.gguf"),
        &scratch("gemma2.rot.tmac"),
        &opts,
        Some(&calibration(&calib, true)),
        |_, _, _| {},
    )
    .err()
    .expect("gemma2 refused");
    assert!(
        e.to_string().contains("norms on the matrices' outputs"),
        "{e}"
    );
}

/// Mean squared difference of two models' teacher-forced logits on `seq`.
fn logit_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let d = a.iter().flatten().zip(b.iter().flatten());
    let n = a.iter().map(Vec::len).sum::<usize>() as f64;
    d.map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / n
}

/// GPTQ on the first half of a text keeps the logits on the second half closer to the
/// source's than rounding each weight to nearest, at 2 and 3 bits (and 3 bits in K-quant
/// storage); the same inputs give the same bytes.
#[test]
fn calibration_beats_rounding_and_is_deterministic() {
    let src = fx("quant/tiny.q6_k.gguf");
    let (calib, _) = text_halves();
    let seq = held_out(&load(&src));
    let reference = teacher_forced(load(&src), &seq);
    let types = [
        (Target::Q(2, 32), "q2"),
        (Target::Q(3, 32), "q3"),
        (Target::K(3), "q3k"),
    ];
    for (t, name) in types {
        let near = scratch(&format!("{name}.near.tmac"));
        let cal = scratch(&format!("{name}.cal.tmac"));
        quantize(&src, &near, t, None);
        let bytes = quantize(&src, &cal, t, Some(&calibration(&calib, false)));
        let again = quantize(
            &src,
            &scratch("again.tmac"),
            t,
            Some(&calibration(&calib, false)),
        );
        assert!(bytes == again, "{name}: calibration is not deterministic");
        let e_near = logit_error(&reference, &teacher_forced(load(&near), &seq));
        let e_cal = logit_error(&reference, &teacher_forced(load(&cal), &seq));
        assert!(
            e_cal < 0.8 * e_near,
            "{name}: calibrated {e_cal:.5} vs nearest {e_near:.5}"
        );
    }
}

/// `--tensor-type`: a kind names that matrix in every layer, "blk.N.kind" one layer's,
/// "blk.A-B.kind" a range's; a
/// mixed file lies between its two types in size and says how it was made.
#[test]
fn tensor_types_pick_matrices() {
    use tmac::convert::quantize::matches_tensor;
    assert!(matches_tensor("attn_v", "blk.3.attn_v.weight"));
    assert!(matches_tensor("blk.3.attn_v", "blk.3.attn_v.weight"));
    assert!(!matches_tensor("blk.3.attn_v", "blk.13.attn_v.weight"));
    assert!(!matches_tensor("attn_v", "blk.3.attn_v_norm.weight"));
    assert!(!matches_tensor("", "blk.3.attn_v.weight"));
    assert!(matches_tensor("blk.26-29.ffn_up", "blk.26.ffn_up.weight"));
    assert!(matches_tensor("blk.26-29.ffn_up", "blk.29.ffn_up.weight"));
    assert!(!matches_tensor("blk.26-29.ffn_up", "blk.25.ffn_up.weight"));
    assert!(!matches_tensor("blk.26-29.ffn_up", "blk.30.ffn_up.weight"));
    assert!(!matches_tensor(
        "blk.26-29.ffn_up",
        "blk.27.ffn_gate.weight"
    ));
    let src = fx("quant/tiny.q6_k.gguf");
    let mut opts = QuantizeOptions {
        target: Target::Q(2, 64),
        head: Target::Q8,
        tensor_types: Vec::new(),
    };
    let size = |opts: &QuantizeOptions, name: &str| {
        let dst = scratch(name);
        quantize_file_calibrated(&src, &dst, opts, None, |_, _, _| {}).unwrap();
        (std::fs::metadata(&dst).unwrap().len(), load(&dst))
    };
    let (q2, _) = size(&opts, "q2.tmac");
    opts.tensor_types = vec![("ffn_down".into(), Target::Q(4, 32))];
    let (mixed, m) = size(&opts, "mixed.tmac");
    opts.tensor_types.clear();
    opts.target = Target::Q(4, 32);
    let (q4, _) = size(&opts, "q4.tmac");
    assert!(q2 < mixed && mixed < q4, "{q2} {mixed} {q4}");
    assert_eq!(
        m.quantization().as_deref(),
        Some("q2 (group 64), ffn_down q4 (group 32)")
    );
}
