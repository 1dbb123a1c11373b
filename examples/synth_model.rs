//! Write a large model with random ternary weights as a GGUF that llama.cpp runs: TQ2_0 or
//! TQ1_0 matrices, an 8-bit (Q8_0) embedding and output head, and a filler vocabulary. Used by
//! the benchmark (`make bench`) to compare kernels at the shapes of real ternary models.
//!
//!   cargo run --release --example synth_model -- SHAPE TYPE OUT.gguf
//!   SHAPE: bitnet-2b (2560/6912, 30 layers, 20/5 heads, vocab 128256) or llama-7b
//!          (4096/11008, 32 layers, 32/32 heads, vocab 32000); TYPE: tq2_0 or tq1_0

use half::f16;
use std::io::Write;
use tmac::testing::format::gguf::{Array, Value};
use tmac::testing::format::gguf_write::GgufWriter;
use tmac::testing::sampler::Rng;

struct Shape {
    embd: u64,
    ff: u64,
    layers: usize,
    heads: u64,
    kv_heads: u64,
    vocab: u64,
}

/// Random ternary blocks (values in {-1, 0, 1}, code = value + 1) with one f16 scale each.
fn ternary_blocks(rng: &mut Rng, n: u64, typ: &str) -> Vec<u8> {
    let d = f16::from_f32(0.02).to_le_bytes();
    let blocks = n / 256;
    let mut out = Vec::with_capacity((blocks * 66) as usize);
    let mut bits = 0u64;
    let mut left = 0;
    let mut code = || {
        if left == 0 {
            bits = rng.next_u64();
            left = 32;
        }
        left -= 1;
        let c = (bits & 3) as u8;
        bits >>= 2;
        if c == 3 {
            1
        } else {
            c
        }
    };
    for _ in 0..blocks {
        match typ {
            "tq2_0" => {
                // byte j of each 32-byte half holds elements j, j+32, j+64, j+96
                for _ in 0..64 {
                    out.push(code() | code() << 2 | code() << 4 | code() << 6);
                }
            }
            _ => {
                // TQ1_0: 48 bytes of 5 trits and 4 bytes of 4 trits (shifted up one trit),
                // each stored as ceil(value * 256 / 243), as ggml's quantizer writes them
                for n in std::iter::repeat_n(5u32, 48).chain(std::iter::repeat_n(4u32, 4)) {
                    let mut q = 0u32;
                    for _ in 0..n {
                        q = q * 3 + code() as u32;
                    }
                    if n == 4 {
                        q *= 3;
                    }
                    out.push((q * 256).div_ceil(243) as u8);
                }
            }
        }
        out.extend_from_slice(&d);
    }
    out
}

fn q8_blocks(rng: &mut Rng, n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((n / 32 * 34) as usize);
    let d = f16::from_f32(0.01 / 127.0 * 100.0).to_le_bytes();
    for _ in 0..n / 32 {
        out.extend_from_slice(&d);
        for _ in 0..4 {
            out.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shape, typ, out] = args.as_slice() else {
        eprintln!("usage: synth_model bitnet-2b|llama-7b tq2_0|tq1_0 OUT.gguf");
        std::process::exit(2);
    };
    let s = match shape.as_str() {
        "bitnet-2b" => Shape {
            embd: 2560,
            ff: 6912,
            layers: 30,
            heads: 20,
            kv_heads: 5,
            vocab: 128256,
        },
        "llama-7b" => Shape {
            embd: 4096,
            ff: 11008,
            layers: 32,
            heads: 32,
            kv_heads: 32,
            vocab: 32000,
        },
        _ => {
            eprintln!("unknown shape {shape}");
            std::process::exit(2);
        }
    };
    let (type_id, name) = match typ.as_str() {
        "tq2_0" => (35, "TQ2_0"),
        "tq1_0" => (34, "TQ1_0"),
        _ => {
            eprintln!("unknown type {typ}");
            std::process::exit(2);
        }
    };
    let mut rng = Rng::new(0x7AC);
    let mut w = GgufWriter::new(32);
    let a = "llama";
    w.set_str("general.architecture", a);
    w.set_str("general.name", &format!("random ternary {shape} ({name})"));
    let u = |v: u64| Value::U32(v as u32);
    w.set(&format!("{a}.context_length"), u(4096));
    w.set(&format!("{a}.embedding_length"), u(s.embd));
    w.set(&format!("{a}.feed_forward_length"), u(s.ff));
    w.set(&format!("{a}.block_count"), u(s.layers as u64));
    w.set(&format!("{a}.attention.head_count"), u(s.heads));
    w.set(&format!("{a}.attention.head_count_kv"), u(s.kv_heads));
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    w.set(&format!("{a}.rope.freq_base"), Value::F32(500000.0));
    // a filler byte-level vocabulary: the 256 byte characters, then numbered tokens
    let mut tokens: Vec<Vec<u8>> = (0..=255u8)
        .map(|b| {
            tmac::testing::tokenizer::unicode::byte_to_char(b)
                .to_string()
                .into_bytes()
        })
        .collect();
    tokens.extend((256..s.vocab).map(|i| format!("tok{i}").into_bytes()));
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "gpt-2");
    w.set("tokenizer.ggml.tokens", Value::Array(Array::Str(tokens)));
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1; s.vocab as usize])),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::Str(Vec::new())),
    );
    w.set("tokenizer.ggml.bos_token_id", u(1));
    w.set("tokenizer.ggml.eos_token_id", u(2));
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(false));

    let (d, ff) = (s.embd, s.ff);
    let kv = d / s.heads * s.kv_heads;
    w.add_tensor(
        "token_embd.weight",
        &[d, s.vocab],
        8,
        q8_blocks(&mut rng, d * s.vocab),
    );
    for l in 0..s.layers {
        let n = |x: &str| format!("blk.{l}.{x}");
        w.add_f32(&n("attn_norm.weight"), &[d], &vec![1.0; d as usize]);
        w.add_f32(&n("ffn_norm.weight"), &[d], &vec![1.0; d as usize]);
        for (t, rows, cols) in [
            ("attn_q", d, d),
            ("attn_k", kv, d),
            ("attn_v", kv, d),
            ("attn_output", d, d),
            ("ffn_gate", ff, d),
            ("ffn_up", ff, d),
            ("ffn_down", d, ff),
        ] {
            w.add_tensor(
                &n(&format!("{t}.weight")),
                &[cols, rows],
                type_id,
                ternary_blocks(&mut rng, rows * cols, typ),
            );
        }
        eprint!("\rlayer {}/{}", l + 1, s.layers);
    }
    w.add_f32("output_norm.weight", &[d], &vec![1.0; d as usize]);
    w.add_tensor(
        "output.weight",
        &[d, s.vocab],
        8,
        q8_blocks(&mut rng, d * s.vocab),
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("create output"));
    w.write(&mut f)
        .and_then(|_| f.flush())
        .expect("write output");
    eprintln!("\r{out}: {shape} {name}");
}
