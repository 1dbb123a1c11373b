//! A generated corpus of malformed model files: every structural field of a GGUF file (and of a
//! tmac file) set to hostile values, truncation at every structural boundary, NaN and infinite
//! scales, duplicate names, non-UTF-8 strings. Each case must give an error (or a model that
//! still loads consistently) without panicking, and without allocating more than the file's size
//! justifies: a counting allocator measures the peak of every load.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tmac::testing::format::gguf::{Array, Gguf, Value};
use tmac::testing::format::gguf_write::GgufWriter;
use tmac::testing::{tiny_llama_writer, TinySpec};
use tmac::Bytes;
use tmac::{LoadOptions, Model};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The allocation counters are process-wide: tests that measure take turns.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Load `bytes`; returns whether it loaded and the peak allocation above the starting point.
fn try_load(bytes: Vec<u8>) -> (bool, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = Model::from_bytes(Arc::new(Bytes::Owned(bytes)), &LoadOptions::default());
    let ok = r.is_ok();
    drop(r);
    (ok, PEAK.load(Ordering::Relaxed) - base)
}

fn tiny() -> GgufWriter {
    tiny_llama_writer(&TinySpec::default())
}

/// Every case must fail cleanly (or load) with allocations bounded by the file size: the tiny
/// model's own load peaks near 20x its size (f32 embedding lookups, vocab maps, KV-free), so a
/// hostile header may not push any load beyond that.
fn check_case(name: &str, bytes: Vec<u8>, limit: usize) -> bool {
    let (ok, peak) = try_load(bytes);
    assert!(
        peak <= limit,
        "{name}: a load allocated {peak} bytes (limit {limit})"
    );
    ok
}

/// Byte offsets of the header's structural fields: (offset, width, description).
fn fields(bytes: &[u8]) -> Vec<(usize, usize, String)> {
    let g = Gguf::parse(bytes).unwrap();
    let mut v = vec![
        (4, 4, "version".into()),
        (8, 8, "tensor count".into()),
        (16, 8, "metadata count".into()),
    ];
    let mut pos = 24;
    let rd = |p: usize| u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap()) as usize;
    for (k, val) in &g.metadata {
        v.push((pos, 8, format!("key length of {k}")));
        pos += 8 + k.len();
        v.push((pos, 4, format!("type of {k}")));
        pos += 4;
        match val {
            Value::Str(s) => {
                v.push((pos, 8, format!("string length of {k}")));
                pos += 8 + s.len();
            }
            Value::Array(a) => {
                v.push((pos, 4, format!("array type of {k}")));
                v.push((pos + 4, 8, format!("array length of {k}")));
                pos += 12;
                match a {
                    Array::Str(items) => {
                        if !items.is_empty() {
                            v.push((pos, 8, format!("first string length in {k}")));
                        }
                        for it in items {
                            pos += 8 + it.len();
                        }
                    }
                    other => {
                        pos += other.len()
                            * match other {
                                Array::U8(_) | Array::I8(_) | Array::Bool(_) => 1,
                                Array::U16(_) | Array::I16(_) => 2,
                                Array::U32(_) | Array::I32(_) | Array::F32(_) => 4,
                                _ => 8,
                            }
                    }
                }
            }
            Value::U8(_) | Value::I8(_) | Value::Bool(_) => pos += 1,
            Value::U16(_) | Value::I16(_) => pos += 2,
            Value::U32(_) | Value::I32(_) | Value::F32(_) => pos += 4,
            _ => pos += 8,
        }
    }
    for t in &g.tensors {
        assert_eq!(rd(pos), t.name.len());
        v.push((pos, 8, format!("name length of {}", t.name)));
        pos += 8 + t.name.len();
        v.push((pos, 4, format!("dims of {}", t.name)));
        pos += 4;
        for d in 0..t.dims.len() {
            v.push((pos, 8, format!("dim {d} of {}", t.name)));
            pos += 8;
        }
        v.push((pos, 4, format!("type of {}", t.name)));
        v.push((pos + 4, 8, format!("offset of {}", t.name)));
        pos += 12;
    }
    v
}

#[test]
fn hostile_header_values_fail_cleanly_within_the_allocation_bound() {
    let _turn = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let good = tiny().to_bytes();
    let limit = 24 * good.len() + (1 << 20);
    assert!(check_case("the unmodified model", good.clone(), limit));
    let hostile: [u64; 9] = [
        0,
        1,
        3,
        255,
        1 << 31,
        (1 << 32) - 1,
        1 << 40,
        (1 << 63) + 5,
        u64::MAX,
    ];
    let mut cases = 0;
    for (off, width, what) in fields(&good) {
        for &v in &hostile {
            let mut b = good.clone();
            b[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
            check_case(&format!("{what} = {v}"), b, limit);
            cases += 1;
        }
    }
    // truncation at every structural boundary
    for (off, width, what) in fields(&good) {
        for cut in [off, off + width / 2, off + width] {
            assert!(
                !check_case(&format!("cut inside {what}"), good[..cut].to_vec(), limit),
                "cut at {cut} loaded"
            );
            cases += 1;
        }
    }
    eprintln!(
        "{cases} malformed GGUF variants, all refused or loaded within {limit} bytes of allocation"
    );
    assert!(cases > 2000);
}

#[test]
fn hostile_content_is_refused() {
    let _turn = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let limit = 24 * tiny().to_bytes().len() + (1 << 20);
    let with = |f: &dyn Fn(&mut GgufWriter)| {
        let mut w = tiny();
        f(&mut w);
        w.to_bytes()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "NaN norm weight",
            with(&|w| {
                w.tensors
                    .iter_mut()
                    .find(|t| t.name == "output_norm.weight")
                    .unwrap()
                    .data[..4]
                    .copy_from_slice(&f32::NAN.to_le_bytes())
            }),
        ),
        (
            "infinite norm weight",
            with(&|w| {
                w.tensors
                    .iter_mut()
                    .find(|t| t.name == "blk.1.attn_norm.weight")
                    .unwrap()
                    .data[4..8]
                    .copy_from_slice(&f32::INFINITY.to_le_bytes())
            }),
        ),
        (
            "duplicate tensor",
            with(&|w| w.add_f32("blk.0.ffn_norm.weight", &[64], &[1.0; 64])),
        ),
        (
            "non-UTF-8 architecture",
            with(&|w| w.set("general.architecture", Value::Str(vec![0xff, 0xfe]))),
        ),
        (
            "non-UTF-8 token",
            with(&|w| {
                let toks = match w
                    .metadata
                    .iter()
                    .find(|(k, _)| k == "tokenizer.ggml.tokens")
                    .unwrap()
                    .1
                    .clone()
                {
                    Value::Array(Array::Str(mut t)) => {
                        t[100] = vec![0xc3, 0x28];
                        t
                    }
                    _ => unreachable!(),
                };
                w.set("tokenizer.ggml.tokens", Value::Array(Array::Str(toks)));
            }),
        ),
        (
            "vocab size disagrees",
            with(&|w| w.set("llama.vocab_size", Value::U32(7))),
        ),
        (
            "token types too short",
            with(&|w| {
                w.set(
                    "tokenizer.ggml.token_type",
                    Value::Array(Array::I32(vec![1; 3])),
                )
            }),
        ),
        (
            "scores wrong type",
            with(&|w| {
                w.set(
                    "tokenizer.ggml.scores",
                    Value::Array(Array::Str(vec![b"x".to_vec()])),
                )
            }),
        ),
        (
            "nested arrays",
            with(&|w| {
                w.set(
                    "x.nested",
                    Value::Array(Array::Nested(vec![Array::Nested(vec![Array::Nested(
                        vec![Array::Nested(vec![Array::Nested(vec![])])],
                    )])])),
                )
            }),
        ),
        (
            "huge head count",
            with(&|w| w.set("llama.attention.head_count", Value::U32(u32::MAX))),
        ),
        (
            "kv heads do not divide",
            with(&|w| w.set("llama.attention.head_count_kv", Value::U32(3))),
        ),
        (
            "rope dim odd",
            with(&|w| w.set("llama.rope.dimension_count", Value::U32(7))),
        ),
        (
            "negative epsilon",
            with(&|w| w.set("llama.attention.layer_norm_rms_epsilon", Value::F32(-1.0))),
        ),
        (
            "alignment not a power of two",
            with(&|w| w.set("general.alignment", Value::U32(48))),
        ),
    ];
    // out-of-range special token ids are ignored, as llama.cpp ignores them
    let eos = with(&|w| w.set("tokenizer.ggml.eos_token_id", Value::U32(u32::MAX)));
    assert!(check_case("eos out of range", eos, limit));
    for (name, bytes) in cases {
        // a non-UTF-8 token is legal in GGUF (tokens are bytes); everything else must fail
        let loaded = check_case(name, bytes, limit);
        assert!(!loaded || name == "non-UTF-8 token", "{name} loaded");
    }
}
