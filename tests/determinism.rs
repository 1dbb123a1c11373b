//! Identical output everywhere: the same model, prompt and seed give the same tokens on every
//! run, and the same logits bit for bit whichever kernel computes them (scalar, AVX2, NEON) and
//! on whichever CPU (a hash of SmolLM2's logits is committed; the aarch64 run under qemu checks
//! it too). Also the context limits: the memory budget and the sliding window.

mod common;
use common::*;
use std::sync::Arc;
use tmac::testing::kernel::lut::Tables;
use tmac::testing::kernel::Isa;
use tmac::{
    ErrorKind, LoadOptions, Model, SamplerParams, Session, SessionOptions, Step, StopReason,
};

fn load_with(path: &std::path::Path, kernel: Isa, tables: Tables) -> Arc<Model> {
    Model::load(
        path,
        &LoadOptions {
            kernel: Some(kernel),
            tables: Some(tables),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Logits after each token of `text`.
fn logits(m: &Arc<Model>, text: &str) -> Vec<u32> {
    logits_kv(m, text, false)
}

/// Logits after each token of `text`, the KV cache in f16 if `kv_f16`.
fn logits_kv(m: &Arc<Model>, text: &str, kv_f16: bool) -> Vec<u32> {
    let mut s = Session::new(
        m.clone(),
        &SessionOptions {
            n_ctx: 64,
            kv_f16,
            ..Default::default()
        },
    )
    .unwrap();
    let toks = m.vocab().encode(text, true, true);
    let mut bits = Vec::new();
    s.eval(&toks, |_, l| bits.extend(l.iter().map(|v| v.to_bits())))
        .unwrap();
    bits
}

/// The greedy token at each position of logits (as bits) over `n_vocab`.
fn greedy(logits: &[u32], n_vocab: usize) -> Vec<usize> {
    logits
        .chunks(n_vocab)
        .map(|row| {
            let v = row.iter().map(|&b| f32::from_bits(b));
            v.enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0
        })
        .collect()
}

fn fnv(bits: &[u32]) -> u64 {
    bits.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every SIMD kernel set this CPU has (avx2 and avx512, or neon).
fn simds() -> Vec<Isa> {
    Isa::all().into_iter().filter(|i| !i.is_scalar()).collect()
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog.";

/// With either kind of tables. Int8 tables are lossy but just as deterministic: they have their
/// own committed hash, and they differ from the exact logits but pick the same next token
/// nearly everywhere.
#[test]
fn every_kernel_gives_the_same_logits_and_so_does_every_cpu() {
    let path = smollm2();
    let hashes = fixture("logits_hash.txt");
    let (mut per_kind, mut n_vocab) = (Vec::new(), 0);
    for (kind, want) in [Tables::Exact, Tables::Int8]
        .into_iter()
        .zip(lines(&hashes))
    {
        let m = load_with(&path, Isa::SCALAR, kind);
        n_vocab = m.config().n_vocab;
        let scalar = logits(&m, TEXT);
        for isa in simds() {
            assert!(
                logits(&load_with(&path, isa, kind), TEXT) == scalar,
                "{} logits differ from scalar with {} tables",
                isa.name(),
                kind.name()
            );
        }
        // the committed hashes were computed on x86-64; any CPU must reproduce them
        assert_eq!(
            format!("{:016x}", fnv(&scalar)),
            want.trim(),
            "SmolLM2 logits hash, {} tables ({} values)",
            kind.name(),
            scalar.len()
        );
        per_kind.push(scalar);
    }
    let [exact, int8] = &per_kind[..] else {
        panic!("logits_hash.txt needs a hash per kind of tables")
    };
    assert_ne!(exact, int8, "int8 tables changed nothing");
    let (a, b) = (greedy(exact, n_vocab), greedy(int8, n_vocab));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(
        same * 10 >= a.len() * 8,
        "int8 tables change the greedy token at {} of {} positions",
        a.len() - same,
        a.len()
    );
}

/// A KV cache in f16 changes the logits (keys and values are rounded), the same way with every
/// kernel and on every CPU: its own committed hash. Its greedy tokens are nearly all f32's.
#[test]
fn kv_cache_in_f16_has_its_own_logits_everywhere() {
    let path = smollm2();
    let m = load_with(&path, Isa::SCALAR, Tables::Exact);
    let half = logits_kv(&m, TEXT, true);
    for isa in simds() {
        let v = logits_kv(&load_with(&path, isa, Tables::Exact), TEXT, true);
        assert!(
            v == half,
            "{} logits differ from scalar with a KV cache in f16",
            isa.name()
        );
    }
    let full = logits(&m, TEXT);
    assert_ne!(half, full, "an f16 KV cache changed nothing");
    let want = fixture("logits_hash_kv_f16.txt");
    assert_eq!(
        format!("{:016x}", fnv(&half)),
        lines(&want).next().unwrap_or("").trim(),
        "SmolLM2 logits hash with a KV cache in f16"
    );
    let n = m.config().n_vocab;
    let (a, b) = (greedy(&half, n), greedy(&full, n));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(
        same * 10 >= a.len() * 8,
        "f16 keys and values change the greedy token at {} of {} positions",
        a.len() - same,
        a.len()
    );
}

#[test]
fn the_same_seed_gives_the_same_text() {
    let m = Model::load(smollm2(), &LoadOptions::default()).unwrap();
    let run = |seed| {
        let sampler = SamplerParams {
            seed,
            temperature: 0.9,
            ..Default::default()
        };
        let mut s = Session::new(
            m.clone(),
            &SessionOptions {
                n_ctx: 128,
                sampler,
                ..Default::default()
            },
        )
        .unwrap();
        s.prompt("Once upon a time").unwrap();
        let mut ids = Vec::new();
        while ids.len() < 40 {
            match s.next_token().unwrap() {
                Step::Token { id, .. } => ids.push(id),
                Step::Done { .. } => break,
            }
        }
        ids
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // and across processes
    let cli = || {
        let out = tmac_cli()
            .arg("run")
            .arg(smollm2())
            .args(["-i", "Once upon a time", "-n", "24", "-t", "0.9", "-s", "7"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert_eq!(cli(), cli());
}

fn tiny() -> Arc<Model> {
    let spec = tmac::testing::TinySpec {
        n_ctx: 32,
        ..Default::default()
    };
    let bytes = tmac::testing::tiny_llama(&spec);
    Model::from_bytes(Arc::new(tmac::Bytes::Owned(bytes)), &LoadOptions::default()).unwrap()
}

#[test]
fn memory_budget_is_enforced_before_allocating() {
    let m = tiny();
    let opts = |budget| SessionOptions {
        n_ctx: 32,
        memory_budget: budget,
        ..Default::default()
    };
    let e = Session::new(m.clone(), &opts(1000)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Limit);
    assert!(
        e.msg.contains("memory budget") && e.msg.contains("KV cache"),
        "{e}"
    );
    assert!(Session::new(m, &opts(64 << 20)).is_ok());
}

#[test]
fn a_full_context_stops_or_slides() {
    let m = tiny();
    let gen = |slide: bool| {
        let opts = SessionOptions {
            n_ctx: 32,
            sampler: SamplerParams::greedy(),
            sliding_window: slide,
            ..Default::default()
        };
        let mut s = Session::new(m.clone(), &opts).unwrap();
        s.prompt("the cat sat on").unwrap();
        let mut n = 0;
        while n < 100 {
            match s.next_token_unchecked().unwrap() {
                Step::Token { .. } => n += 1,
                Step::Done { reason, .. } => return (n, Some(reason)),
            }
        }
        (n, None)
    };
    let (n, why) = gen(false);
    assert_eq!(why, Some(StopReason::ContextFull));
    assert!(n > 0 && n < 32, "{n}");
    assert_eq!(gen(true), (100, None));
}
