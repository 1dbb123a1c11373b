//! Tiny synthetic models for tests, fuzzing and examples: a real Llama-shaped GGUF with random
//! weights and a byte-level BPE vocabulary, small enough to build in a millisecond.

use crate::format::gguf::{Array, Value};
use crate::format::gguf_write::GgufWriter;
use crate::sampler::Rng;
use crate::tokenizer::unicode::byte_to_char;

pub struct TinySpec {
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ctx: usize,
    pub seed: u64,
    /// ggml type id the matrices are stored in (0 = F32, 2 = Q4_0, 3 = Q4_1, 8 = Q8_0).
    pub matrix_type: u32,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            n_embd: 64,
            n_ff: 96,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ctx: 64,
            seed: 1,
            matrix_type: 0,
        }
    }
}

/// Special tokens of the tiny vocabulary (ids 0, 1, 2).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The tiny model as GGUF bytes.
pub fn tiny_llama(spec: &TinySpec) -> Vec<u8> {
    tiny_llama_writer(spec).to_bytes()
}

/// The tiny model as a writer, for tests that alter it before writing.
pub fn tiny_llama_writer(spec: &TinySpec) -> GgufWriter {
    let mut rng = Rng::new(spec.seed);
    let mut w = GgufWriter::new(32);
    let a = "llama";
    w.set_str("general.architecture", a);
    w.set_str("general.name", "tmac tiny test model");
    let u = |v: usize| Value::U32(v as u32);
    w.set(&format!("{a}.context_length"), u(spec.n_ctx));
    w.set(&format!("{a}.embedding_length"), u(spec.n_embd));
    w.set(&format!("{a}.feed_forward_length"), u(spec.n_ff));
    w.set(&format!("{a}.block_count"), u(spec.n_layer));
    w.set(&format!("{a}.attention.head_count"), u(spec.n_head));
    w.set(&format!("{a}.attention.head_count_kv"), u(spec.n_head_kv));
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    w.set(&format!("{a}.rope.freq_base"), Value::F32(10000.0));

    // vocabulary: specials, the 256 byte characters, then a few merges
    let mut tokens: Vec<Vec<u8>> = SPECIALS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut types = vec![3i32; SPECIALS.len()];
    for b in 0..=255u8 {
        tokens.push(byte_to_char(b).to_string().into_bytes());
        types.push(1);
    }
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "o n", "Ġ s"];
    for m in merges {
        tokens.push(m.replace(' ', "").into_bytes());
        types.push(1);
    }
    let n_vocab = tokens.len();
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "gpt-2");
    w.set("tokenizer.ggml.tokens", Value::Array(Array::Str(tokens)));
    w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::Str(
            merges.iter().map(|m| m.as_bytes().to_vec()).collect(),
        )),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(1));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(2));
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    w.set_str(
        "tokenizer.chat_template",
        "{{'<|im_start|>' + m['role'] + '\\n'}}",
    );

    let (d, ff) = (spec.n_embd as u64, spec.n_ff as u64);
    let hd = d / spec.n_head as u64;
    let kv = hd * spec.n_head_kv as u64;
    let mut rand = |n: u64, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
            .collect()
    };
    let norm = |n: u64, rand: &mut dyn FnMut(u64, f32) -> Vec<f32>| -> Vec<f32> {
        rand(n, 0.2).iter().map(|x| 1.0 + x).collect()
    };
    let matrix = |w: &mut GgufWriter,
                  name: &str,
                  rows: u64,
                  cols: u64,
                  rand: &mut dyn FnMut(u64, f32) -> Vec<f32>| {
        let v = rand(rows * cols, 1.0 / (cols as f32).sqrt());
        let (t, data) = match crate::quant::ggml::quantize(spec.matrix_type, &v) {
            Some(q) => (spec.matrix_type, q),
            None => (0, to_bytes(&v)),
        };
        w.add_tensor(name, &[cols, rows], t, data);
    };
    let tok = rand(n_vocab as u64 * d, 1.0);
    w.add_f32("token_embd.weight", &[d, n_vocab as u64], &tok);
    for l in 0..spec.n_layer {
        let n = |s: &str| format!("blk.{l}.{s}");
        let v = norm(d, &mut rand);
        w.add_f32(&n("attn_norm.weight"), &[d], &v);
        matrix(&mut w, &n("attn_q.weight"), d, d, &mut rand);
        matrix(&mut w, &n("attn_k.weight"), kv, d, &mut rand);
        matrix(&mut w, &n("attn_v.weight"), kv, d, &mut rand);
        matrix(&mut w, &n("attn_output.weight"), d, d, &mut rand);
        let v = norm(d, &mut rand);
        w.add_f32(&n("ffn_norm.weight"), &[d], &v);
        matrix(&mut w, &n("ffn_gate.weight"), ff, d, &mut rand);
        matrix(&mut w, &n("ffn_up.weight"), ff, d, &mut rand);
        matrix(&mut w, &n("ffn_down.weight"), d, ff, &mut rand);
    }
    let v = norm(d, &mut rand);
    w.add_f32("output_norm.weight", &[d], &v);
    w
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
