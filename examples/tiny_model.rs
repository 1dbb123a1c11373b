//! Write a tiny random Llama model (GGUF) for tests that need a model file but not a real one:
//! `cargo run --release --example tiny_model -- OUT.gguf`

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tiny.gguf".to_string());
    let spec = tmac::testing::TinySpec {
        n_ctx: 256,
        ..Default::default()
    };
    if let Err(e) = std::fs::write(&out, tmac::testing::tiny_llama(&spec)) {
        eprintln!("tiny_model: {out}: {e}");
        std::process::exit(1);
    }
}
