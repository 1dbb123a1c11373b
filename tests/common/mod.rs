//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// SmolLM2-135M-Instruct Q4_1, fetched by `make model` (TMAC_MODEL overrides the path).
pub fn smollm2() -> PathBuf {
    let p = std::env::var_os("TMAC_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "{} is missing: run `make model` first",
        p.display()
    );
    p
}

/// The `tmac` tool built with the tests. Under qemu-user without binfmt_misc (the cross-target
/// runs of `make test-aarch64`), a child process must be started through the emulator as well:
/// `TMAC_TEST_RUNNER` (e.g. `qemu-aarch64`, split on whitespace) is put in front of it.
pub fn tmac_cli() -> Command {
    let exe = env!("CARGO_BIN_EXE_tmac");
    let runner = std::env::var("TMAC_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Non-comment lines of a fixture.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
}

pub fn unhex(h: &str) -> String {
    let bytes: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

pub fn ids(s: &str) -> Vec<u32> {
    s.split_whitespace().map(|t| t.parse().unwrap()).collect()
}

/// The three greedy fixtures: (prompt, llama.cpp's continuation ids).
pub fn greedy_cases() -> Vec<(String, Vec<u32>)> {
    let text = fixture("greedy.tsv");
    lines(&text)
        .map(|l| {
            let (p, ids_s) = l.split_once('\t').unwrap();
            (unhex(p), ids(ids_s))
        })
        .collect()
}

/// A teacher-forced logits fixture (line 1: the sequence; then one row of logits per position).
pub fn logits_fixture(path: &std::path::Path) -> (Vec<u32>, Vec<Vec<f32>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut it = lines(&text);
    let seq = ids(it.next().unwrap());
    let rows = it
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    (seq, rows)
}

/// The logits after each token of `seq`, fed in one go.
pub fn teacher_forced(m: std::sync::Arc<tmac::Model>, seq: &[u32]) -> Vec<Vec<f32>> {
    let opts = tmac::SessionOptions {
        n_ctx: 64,
        ..Default::default()
    };
    let mut s = tmac::Session::new(m, &opts).unwrap();
    let mut out = Vec::new();
    s.eval(seq, |_, l| out.push(l.to_vec())).unwrap();
    out
}
