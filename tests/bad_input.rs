//! Broken and hostile model files: each gets an error that names the problem (and the file,
//! when loaded from a path); nothing panics and nothing is allocated from an unchecked count.

mod common;
use std::sync::Arc;
use tmac::testing::format::gguf::{Array, Value};
use tmac::testing::{tiny_llama, tiny_llama_writer, TinySpec};
use tmac::Bytes;
use tmac::{ErrorKind, LoadOptions, Model};

fn load(bytes: Vec<u8>) -> Result<Arc<Model>, tmac::Error> {
    Model::from_bytes(Arc::new(Bytes::Owned(bytes)), &LoadOptions::default())
}

fn err(bytes: Vec<u8>) -> tmac::Error {
    match load(bytes) {
        Ok(_) => panic!("a broken file loaded"),
        Err(e) => e,
    }
}

/// Offset of the tensor info for `name` (just after its name) in a GGUF header.
fn tensor_info_at(buf: &[u8], name: &str) -> usize {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let at = buf
        .windows(key.len())
        .position(|w| w == key)
        .expect("tensor name in header");
    at + key.len()
}

#[test]
fn tiny_model_loads_and_runs() {
    let m = load(tiny_llama(&TinySpec::default())).unwrap();
    let mut s = tmac::Session::new(m, &Default::default()).unwrap();
    s.prompt("the cat").unwrap();
    assert!(s.logits().iter().all(|x| x.is_finite()));
}

#[test]
fn truncated_anywhere_is_an_error() {
    let full = tiny_llama(&TinySpec::default());
    let header_end = tensor_info_at(&full, "output_norm.weight") + 32;
    // every offset through the header (all structural boundaries), then a stride through data
    let cuts = (0..header_end).chain((header_end..full.len()).step_by(331));
    for n in cuts {
        let e = err(full[..n].to_vec());
        assert!(
            matches!(e.kind, ErrorKind::Format),
            "cut at {n}: {e} ({:?})",
            e.kind
        );
    }
}

#[test]
fn wrong_magic_and_version() {
    let mut b = tiny_llama(&TinySpec::default());
    b[0] = b'X';
    assert!(err(b).msg.contains("unknown model format"));
    for v in [1u32, 4, 0xFFFF_FFFF] {
        let mut b = tiny_llama(&TinySpec::default());
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = err(b);
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.msg.contains(&format!("GGUF version {v}")), "{e}");
    }
}

#[test]
fn unknown_tensor_type() {
    let mut b = tiny_llama(&TinySpec::default());
    let at = tensor_info_at(&b, "blk.0.attn_q.weight") + 4 + 16;
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = err(b);
    assert!(
        e.msg.contains("blk.0.attn_q.weight") && e.msg.contains("unknown tensor type 99"),
        "{e}"
    );
}

#[test]
fn tensor_data_outside_the_file() {
    let mut b = tiny_llama(&TinySpec::default());
    let at = tensor_info_at(&b, "blk.1.ffn_down.weight") + 4 + 16 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(b);
    assert!(
        e.msg.contains("blk.1.ffn_down.weight") && e.msg.contains("outside the file"),
        "{e}"
    );
}

#[test]
fn misaligned_offset() {
    let mut b = tiny_llama(&TinySpec::default());
    let at = tensor_info_at(&b, "blk.0.ffn_up.weight") + 4 + 16 + 4;
    let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    b[at..at + 8].copy_from_slice(&(off + 4).to_le_bytes());
    assert!(err(b).msg.contains("not aligned"));
}

#[test]
fn dimensions_whose_product_overflows() {
    let mut b = tiny_llama(&TinySpec::default());
    let at = tensor_info_at(&b, "blk.0.attn_v.weight") + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    b[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(b);
    assert!(e.msg.contains("overflows"), "{e}");
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    for (field, what) in [(8, "tensor count"), (16, "metadata count")] {
        let mut b = tiny_llama(&TinySpec::default());
        b[field..field + 8].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert!(err(b).msg.contains(what));
    }
    // a metadata array claiming 2^40 elements
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.set("tmac.big", Value::Array(Array::U8(vec![1, 2, 3])));
    let mut b = w.to_bytes();
    let key = b"tmac.big";
    let at = b.windows(key.len()).position(|x| x == key).unwrap() + key.len() + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(b);
    assert!(
        e.msg.contains("tmac.big") && e.msg.contains("does not fit"),
        "{e}"
    );
}

#[test]
fn missing_tensor_and_missing_key() {
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.tensors.retain(|t| t.name != "blk.1.attn_q.weight");
    assert!(err(w.to_bytes())
        .msg
        .contains("missing tensor blk.1.attn_q.weight"));
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.metadata.retain(|(k, _)| k != "llama.block_count");
    assert!(err(w.to_bytes())
        .msg
        .contains("missing metadata key llama.block_count"));
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.metadata.retain(|(k, _)| k != "tokenizer.ggml.tokens");
    assert!(err(w.to_bytes()).msg.contains("tokenizer.ggml.tokens"));
}

#[test]
fn wrong_shapes_and_types_of_keys() {
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.set("llama.embedding_length", Value::U32(48));
    assert!(err(w.to_bytes()).msg.contains("shape"));
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.set("llama.block_count", Value::Str(b"two".to_vec()));
    assert!(err(w.to_bytes())
        .msg
        .contains("llama.block_count should be an unsigned integer"));
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.set("llama.attention.head_count", Value::U32(0));
    assert!(err(w.to_bytes()).msg.contains("out of range"));
}

#[test]
fn duplicate_tensor_names_and_non_utf8_names() {
    let mut w = tiny_llama_writer(&TinySpec::default());
    w.add_f32("output_norm.weight", &[64], &[1.0; 64]);
    assert!(err(w.to_bytes())
        .msg
        .contains("duplicate tensor name output_norm.weight"));
    let mut b = tiny_llama(&TinySpec::default());
    let at = tensor_info_at(&b, "output_norm.weight") - 6;
    b[at] = 0xFF;
    assert!(err(b).msg.contains("not UTF-8"));
}

#[test]
fn nan_weights_are_refused() {
    let mut w = tiny_llama_writer(&TinySpec::default());
    let t = w
        .tensors
        .iter_mut()
        .find(|t| t.name == "blk.0.ffn_norm.weight")
        .unwrap();
    t.data[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = err(w.to_bytes());
    assert!(
        e.msg.contains("blk.0.ffn_norm.weight") && e.msg.contains("NaN"),
        "{e}"
    );
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("tmac-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("broken.gguf");
    let b = tiny_llama(&TinySpec::default());
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let e = Model::load(&p, &LoadOptions::default()).err().unwrap();
    assert!(e.msg.starts_with(&p.display().to_string()), "{e}");
    let missing = dir.join("nope.gguf");
    let e = Model::load(&missing, &LoadOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.msg.contains("nope.gguf"), "{e}");
    std::fs::write(&p, b"").unwrap();
    assert!(Model::load(&p, &LoadOptions::default())
        .err()
        .unwrap()
        .msg
        .contains("empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantized_tiny_models_load() {
    for t in [2u32, 3, 8] {
        let m = load(tiny_llama(&TinySpec {
            matrix_type: t,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            m.tensor_types()
                .iter()
                .find(|(n, _)| n != "F32")
                .map(|(_, c)| *c),
            Some(14),
            "type {t}"
        );
    }
}

/// `tmac tokenize m -i TEXT | head -c 10`: the reader goes away long before the ids are written
/// (far more than a pipe buffer of them); the tool ends quietly, without a panic.
#[test]
fn cli_survives_a_closed_stdout() {
    let dir = std::env::temp_dir().join(format!("tmac-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, tiny_llama(&TinySpec::default())).unwrap();
    let text = "a b ".repeat(30_000); // 120 kB, under Linux's 128 KiB limit for one argument
    let mut child = common::tmac_cli()
        .arg("tokenize")
        .arg(&model)
        .args(["-i", &text])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the read end before reading anything
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
