//! tmac's own files: `tmac quantize` output loads in place (zero-copy) and computes exactly what
//! the same weights compute when repacked from GGUF at load; the quantizers round as documented;
//! files whose layout disagrees with their tensors are refused.

mod common;
use common::*;
use std::sync::Arc;
use tmac::convert::quantize::{quantize_file, QuantizeOptions, Scope, Target};
use tmac::testing::format::gguf::{Array, Value};
use tmac::testing::layout::linear::Linear;
use tmac::testing::layout::lut::{block_scale, sub_scale};
use tmac::testing::layout::quantize::quantize_matrix;
use tmac::testing::sampler::Rng;
use tmac::Bytes;
use tmac::{LoadOptions, Model, Session, SessionOptions};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tmac-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn logits_after(m: Arc<Model>, text: &str) -> Vec<f32> {
    let mut s = Session::new(
        m,
        &SessionOptions {
            n_ctx: 64,
            ..Default::default()
        },
    )
    .unwrap();
    s.prompt(text).unwrap();
    s.logits().to_vec()
}

#[test]
fn q4_tmac_file_is_mapped_and_matches_the_gguf_path_bit_for_bit() {
    let out = scratch("smollm2-q4.tmac");
    let opts = QuantizeOptions {
        target: Target::Q(4, 32),
        head: Target::Q8,
        tensor_types: Vec::new(),
    };
    let sum = quantize_file(&smollm2(), &out, &opts, |_, _, _| {}).unwrap();
    assert!(
        sum.bits_per_weight > 4.0 && sum.bits_per_weight < 6.5,
        "{}",
        sum.bits_per_weight
    );
    let t0 = std::time::Instant::now();
    let tm = Model::load(&out, &LoadOptions::default()).unwrap();
    let load = t0.elapsed();
    for l in &tmac::testing::weights(&tm).layers {
        for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
            assert!(
                matches!(m, Linear::Lut(_)),
                "expected LUT matrices, got {}",
                m.kind()
            );
            assert!(m.is_mapped());
        }
    }
    assert!(matches!(&tmac::testing::weights(&tm).output, m @ Linear::Q8(_) if m.is_mapped()));
    let gg = Model::load(smollm2(), &LoadOptions::default()).unwrap();
    let text = "The quick brown fox jumps over the lazy dog";
    let (a, b) = (logits_after(tm, text), logits_after(gg, text));
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    eprintln!(
        "tmac file: {:.1} MiB, loaded in {:.1} ms",
        sum.bytes as f64 / 1048576.0,
        load.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_file(out);
}

#[test]
fn every_type_quantizes_and_runs() {
    let src = scratch("tiny.gguf");
    std::fs::write(&src, tmac::testing::tiny_llama(&Default::default())).unwrap();
    for (i, t) in [
        Target::Tq(Scope::Tensor),
        Target::Tq(Scope::Row),
        Target::Tq(Scope::Group(32)),
        Target::Q(1, 64),
        Target::Q(2, 32),
        Target::Q(3, 32),
        Target::Q(4, 32),
        Target::Q(4, 64),
        Target::Q8,
        Target::F32,
    ]
    .into_iter()
    .enumerate()
    {
        let out = scratch(&format!("tiny-{i}.tmac"));
        quantize_file(
            &src,
            &out,
            &QuantizeOptions {
                target: t,
                head: Target::Q8,
                tensor_types: Vec::new(),
            },
            |_, _, _| {},
        )
        .unwrap();
        let m = Model::load(&out, &LoadOptions::default()).unwrap();
        let l = logits_after(m.clone(), "the cat sat");
        assert!(l.iter().all(|v| v.is_finite()), "{t:?}");
        // --f32 on a tmac file dequantizes its kernel-layout matrices
        let f = Model::load(
            &out,
            &LoadOptions {
                compute: tmac::Compute::F32,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(matches!(
            tmac::testing::weights(&f).layers[0].wq,
            Linear::F32 { .. }
        ));
        let lf = logits_after(f, "the cat sat");
        let diff = l
            .iter()
            .zip(&lf)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 0.5,
            "{t:?}: kernels vs f32 dequantized differ by {diff}"
        );
    }
}

#[test]
fn quantizers_round_as_documented() {
    let mut rng = Rng::new(5);
    let (rows, cols) = (20, 100);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
        .collect();
    let mut row = vec![0f32; cols];
    // each group's scale and minimum are fitted: never a larger squared error than min-max's
    // grid (the old rule, f16 as stored), and no weight off by more than one min-max step
    let h = |v: f32| half::f16::from_f32(v).to_f32();
    for bits in 1..=4 {
        let (t, levels) = (Target::Q(bits, 32), ((1 << bits) - 1) as f32);
        let m = quantize_matrix(t, rows, cols, &w).unwrap();
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            for g0 in (0..cols).step_by(32) {
                let span = &w[r * cols + g0..r * cols + (g0 + 32).min(cols)];
                let (lo, hi) = span
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let (d, mn) = (h((hi - lo) / levels), h(lo));
                let (mut fitted, mut minmax) = (0f64, 0f64);
                for (k, &v) in span.iter().enumerate() {
                    let q = ((v - mn) / d).round().clamp(0.0, levels);
                    minmax += ((v - (d * q + mn)) as f64).powi(2);
                    let e = row[g0 + k] - v;
                    fitted += (e as f64).powi(2);
                    assert!(e.abs() <= d + 2e-3, "{t:?} ({r},{})", g0 + k);
                }
                assert!(
                    fitted <= minmax * 1.001 + 1e-9,
                    "{t:?} row {r} group {g0}: {fitted} > {minmax}"
                );
            }
        }
    }
    // K types: every weight is the nearest point of its 16-column group's grid as stored
    // (8-bit integers under f16 factors), and the integers cost little: the error stays
    // within 10% of f16 parameters per 16 columns and below f16 ones per 32
    let sq_err = |m: &Linear| {
        let mut row = vec![0f32; cols];
        let mut e = 0f64;
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            e += row
                .iter()
                .zip(&w[r * cols..])
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
        }
        e
    };
    for bits in 2..=4 {
        let m = quantize_matrix(Target::K(bits), rows, cols, &w).unwrap();
        let Linear::Lut(lut) = &m else {
            panic!("q{bits}k is a LUT matrix")
        };
        let Some(sup) = lut.form().sup else {
            panic!("q{bits}k has sub-scales")
        };
        assert_eq!(lut.form().group, 16);
        let g = lut.geometry();
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            for (c, (&q, &v)) in row.iter().zip(&w[r * cols..(r + 1) * cols]).enumerate() {
                let (d, mn) = block_scale(lut.scales(), &g, r / 16, c / (16 * sup), r % 16);
                let (sc, n) = sub_scale(lut.scales(), &g, r / 16, c / 16, r % 16);
                let (step, low) = (d * sc as f32, mn * n as f32);
                let levels = ((1 << bits) - 1) as f32;
                let k = if step == 0.0 {
                    0.0
                } else {
                    ((v - low) / step).round().clamp(0.0, levels)
                };
                assert_eq!(q, step * k + low, "q{bits}k ({r},{c})");
            }
        }
        let flat = |g| sq_err(&quantize_matrix(Target::Q(bits, g), rows, cols, &w).unwrap());
        let (k, f16, f32) = (sq_err(&m), flat(16), flat(32));
        assert!(
            k <= 1.1 * f16 && k < f32,
            "q{bits}k {k}, g16 {f16}, g32 {f32}"
        );
    }
    // ternary: values are {-s, 0, s} with s the absmean of the row
    let m = quantize_matrix(Target::Tq(Scope::Row), rows, cols, &w).unwrap();
    for r in 0..rows {
        m.dequantize_row(r, &mut row);
        let s = w[r * cols..(r + 1) * cols]
            .iter()
            .map(|v| v.abs())
            .sum::<f32>()
            / cols as f32;
        for c in 0..cols {
            let q = (w[r * cols + c] / s).round().clamp(-1.0, 1.0);
            assert!(
                (row[c] - q * s).abs() < 2e-3 * s.max(1.0),
                "tq ({r},{c}): {} vs {}",
                row[c],
                q * s
            );
        }
    }
}

fn tiny_tmac() -> Vec<u8> {
    let src = scratch("tiny-bad-src.gguf");
    let out = scratch("tiny-bad.tmac");
    std::fs::write(&src, tmac::testing::tiny_llama(&Default::default())).unwrap();
    quantize_file(
        &src,
        &out,
        &QuantizeOptions {
            target: Target::Q(4, 32),
            head: Target::Q8,
            tensor_types: Vec::new(),
        },
        |_, _, _| {},
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

fn load_err(bytes: Vec<u8>) -> String {
    match Model::from_bytes(Arc::new(Bytes::Owned(bytes)), &LoadOptions::default()) {
        Ok(_) => panic!("a broken tmac file loaded"),
        Err(e) => e.msg,
    }
}

/// Rewrite one metadata value of a GGUF file, through the parser and writer.
fn rewrite(
    bytes: &[u8],
    f: impl FnOnce(&mut tmac::testing::format::gguf_write::GgufWriter),
) -> Vec<u8> {
    let g = tmac::testing::format::gguf::Gguf::parse(bytes).unwrap();
    let mut w = tmac::testing::format::gguf_write::GgufWriter::new(64);
    for (k, v) in &g.metadata {
        w.set(k, v.clone());
    }
    for t in &g.tensors {
        w.add_tensor(
            &t.name,
            &t.dims,
            t.typ.id(),
            bytes[t.offset..t.offset + t.size].to_vec(),
        );
    }
    f(&mut w);
    w.to_bytes()
}

#[test]
fn inconsistent_tmac_files_are_refused() {
    let good = tiny_tmac();
    assert!(Model::from_bytes(
        Arc::new(Bytes::Owned(good.clone())),
        &LoadOptions::default()
    )
    .is_ok());
    // layout keys that disagree with the model's shape or with the tensor's size
    let e = load_err(rewrite(&good, |w| {
        w.set(
            "tmac.lut.blk.0.attn_q.weight",
            Value::Array(Array::U32(vec![64, 48, 4, 32, 0, 0, 0])),
        )
    }));
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("layout says"),
        "{e}"
    );
    let e = load_err(rewrite(&good, |w| {
        w.set(
            "tmac.lut.blk.0.attn_q.weight",
            Value::Array(Array::U32(vec![64, 64, 2, 32, 0, 0, 0])),
        )
    }));
    assert!(e.contains("needs") && e.contains("bytes"), "{e}");
    let e = load_err(rewrite(&good, |w| {
        w.set(
            "tmac.lut.blk.1.ffn_up.weight",
            Value::Array(Array::U32(vec![1, 2])),
        )
    }));
    assert!(e.contains("should be 7 unsigned integers"), "{e}");
    // a NaN scale
    let e = load_err(rewrite(&good, |w| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name == "blk.1.ffn_down.weight.scales")
            .unwrap();
        t.data[2..4].copy_from_slice(&half::f16::NAN.to_le_bytes());
    }));
    assert!(
        e.contains("blk.1.ffn_down.weight") && e.contains("not finite"),
        "{e}"
    );
    let e = load_err(rewrite(&good, |w| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name == "token_embd.weight.scales")
            .unwrap();
        t.data[0..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    }));
    assert!(
        e.contains("token_embd.weight") && e.contains("not finite"),
        "{e}"
    );
}
