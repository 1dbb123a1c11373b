//! The f32 reference path against llama.cpp F32 on SmolLM2 (fixtures: tools/make_fixtures.py).

mod common;
use common::*;
use tmac::{Compute, LoadOptions, Model, SamplerParams, Session, SessionOptions, Step};

fn f32_model() -> std::sync::Arc<Model> {
    Model::load(
        smollm2(),
        &LoadOptions {
            compute: Compute::F32,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn token_ids_match_llama_cpp() {
    let m = f32_model();
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
    assert!(n >= 20, "only {n} token fixtures");
}

#[test]
fn teacher_forced_logits_match_llama_cpp() {
    let m = f32_model();
    let text = fixture("logits.txt");
    let mut it = lines(&text);
    let seq = ids(it.next().unwrap());
    let mut s = Session::new(
        m,
        &SessionOptions {
            n_ctx: 128,
            ..Default::default()
        },
    )
    .unwrap();
    let (mut agree, mut max_diff, mut n_vals) = (0, 0f32, 0);
    for (pos, line) in it.enumerate() {
        s.feed(&seq[pos..pos + 1]).unwrap();
        let logits = s.logits();
        let mut want_argmax = None;
        for item in line.split_whitespace().filter(|t| *t != "|") {
            let (id, v) = item.split_once(':').unwrap();
            let (id, v): (usize, f32) = (id.parse().unwrap(), v.parse().unwrap());
            want_argmax.get_or_insert(id as u32);
            max_diff = max_diff.max((logits[id] - v).abs());
            n_vals += 1;
        }
        agree += (tmac::testing::sampler::argmax(logits) == want_argmax.unwrap()) as usize;
    }
    eprintln!("argmax agrees at {agree}/{} positions; max |logit diff| = {max_diff:.5} over {n_vals} logits", seq.len());
    assert!(agree >= 63, "argmax agrees at only {agree}/64 positions");
    assert!(max_diff < 0.05, "max |logit diff| {max_diff}");
}

#[test]
fn greedy_generation_matches_llama_cpp() {
    let m = f32_model();
    for (prompt, want) in greedy_cases() {
        let opts = SessionOptions {
            n_ctx: 256,
            sampler: SamplerParams::greedy(),
            ..Default::default()
        };
        let mut s = Session::new(m.clone(), &opts).unwrap();
        s.prompt(&prompt).unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            match s.next_token().unwrap() {
                Step::Token { id, .. } => got.push(id),
                Step::Done { reason, .. } => {
                    // llama.cpp's list ends with the end-of-text token tmac stops on
                    assert_eq!(reason, tmac::StopReason::EndOfText);
                    got.push(*want.last().unwrap());
                    assert!(m.vocab().is_eog(got[got.len() - 1]));
                    break;
                }
            }
        }
        assert_eq!(got, want, "greedy continuation of {prompt:?}");
    }
}

#[test]
fn cli_prints_llama_cpp_greedy_text() {
    let m = f32_model();
    for (prompt, want) in greedy_cases() {
        let out = tmac_cli()
            .args(["run", "--f32"])
            .arg(smollm2())
            .args(["-i", &prompt, "-n", "48", "-t", "0"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text: Vec<u8> = want
            .iter()
            .flat_map(|&t| m.vocab().piece(t).to_vec())
            .collect();
        let mut expect = String::from_utf8(text).unwrap();
        expect.push('\n');
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            expect,
            "tmac run -i {prompt:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("tok/s") && err.contains("stop:"),
            "stats missing: {err}"
        );
    }
}
