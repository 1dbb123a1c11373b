//! For tmac's own tests, examples and fuzz targets (hidden from the docs; not an API): tiny
//! synthetic models (a real Llama-shaped GGUF with random weights and a byte-level BPE
//! vocabulary, small enough to build in a millisecond), the fuzz bodies, and the internals the
//! integration tests check, re-exported under their module paths (`testing::kernel::lut_gemv`).

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
        let typ = crate::layout::ggml::GgmlType::from_id(spec.matrix_type);
        let (t, data) = match typ.and_then(|t| crate::layout::ggml::quantize(t, &v)) {
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

/// The bodies of the fuzz targets (fuzz/fuzz_targets/*.rs), shared with
/// tests/fuzz_regressions.rs, which replays every input the fuzzers ever crashed on.
pub mod fuzz {
    use crate::bytes::Bytes;
    use crate::capi::*;
    use crate::{Model, Session, SessionOptions};
    use std::ffi::{c_char, c_void};
    use std::sync::{Arc, OnceLock};

    fn load(data: &[u8]) -> crate::Result<Arc<Model>> {
        Model::from_bytes(Arc::new(Bytes::Owned(data.to_vec())), &Default::default())
    }

    /// Any bytes as a model file: parse and load return, never panic.
    pub fn model_file(data: &[u8]) {
        let _ = crate::format::gguf::Gguf::parse(data);
        if let Ok(m) = load(data) {
            // a model that loads must also run a token
            if let Ok(mut s) = Session::new(
                m,
                &SessionOptions {
                    n_ctx: 8,
                    ..Default::default()
                },
            ) {
                let _ = s.feed(&[0]);
            }
        }
    }

    #[cfg(feature = "tools")]
    /// Any bytes as a llama2.c tokenizer.bin (the vocabulary size, which a checkpoint would give,
    /// comes from the first two bytes), then as the vocabulary of a model: encode and decode.
    pub fn tokenizer_bin(data: &[u8]) {
        let Some((n, file)) = data.split_first_chunk::<2>() else {
            return;
        };
        if let Ok(v) =
            crate::model::legacy::vocab_from_tokenizer_bin(file, u16::from_le_bytes(*n) as usize)
        {
            let ids = v.encode(&String::from_utf8_lossy(data), true, true);
            assert!(ids.iter().all(|&i| (i as usize) < v.len()));
            for id in ids {
                let _ = v.piece(id);
            }
        }
    }

    fn tiny_model() -> &'static Arc<Model> {
        static M: OnceLock<Arc<Model>> = OnceLock::new();
        M.get_or_init(|| {
            load(&super::tiny_llama(&Default::default())).expect("the tiny model loads")
        })
    }

    /// Arbitrary text through the tokenizer and arbitrary ids through the streaming decoder:
    /// ids stay in the vocabulary, pre-tokenizers keep every byte, output is valid UTF-8.
    pub fn tokenizer(data: &[u8]) {
        let v = &tiny_model().vocab;
        let text = String::from_utf8_lossy(data);
        for (add, parse) in [(true, true), (false, false)] {
            assert!(v
                .encode(&text, add, parse)
                .iter()
                .all(|&i| (i as usize) < v.len()));
        }
        for pre in ["gpt-2", "smollm", "llama-bpe", "qwen2"] {
            let words = crate::tokenizer::pretok::PreTok::from_name(pre)
                .unwrap()
                .split(&text);
            assert_eq!(words.concat(), text, "{pre} lost text");
        }
        let mut stream = crate::tokenizer::stream::Utf8Stream::default();
        let mut out = String::new();
        for pair in data.chunks(2) {
            let id =
                u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]) as u32 % v.len() as u32;
            out += &stream.push(v.piece(id));
        }
        out += &stream.finish();
        assert!(std::str::from_utf8(out.as_bytes()).is_ok());
    }

    /// A sequence of C API calls driven by `data`, on a tiny model held in memory.
    pub fn capi(data: &[u8]) {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        let bytes = BYTES.get_or_init(|| {
            super::tiny_llama(&super::TinySpec {
                n_ctx: 32,
                ..Default::default()
            })
        });
        let mut p = tmac_params_default();
        p.n_ctx = 1 + data.first().copied().unwrap_or(16) as u32 % 32;
        p.max_tokens = data.get(1).copied().unwrap_or(4) as u32 % 8;
        let mut t: *mut tmac = std::ptr::null_mut();
        if tmac_load_from_memory(bytes.as_ptr() as *const c_void, bytes.len(), &p, &mut t)
            != tmac_status::TMAC_OK
        {
            return;
        }
        let mut buf = [0u8; 8];
        let mut n = 0usize;
        for op in data.chunks(3).skip(1) {
            let arg = op.get(1).copied().unwrap_or(0);
            let text = &op[op.len().min(1)..];
            let _ = match op[0] % 9 {
                0 => tmac_prompt(t, text.as_ptr() as *const c_char, text.len()),
                1 => tmac_prompt_chat(
                    t,
                    c"user".as_ptr(),
                    text.as_ptr() as *const c_char,
                    text.len(),
                ),
                2 => tmac_next_token(t, buf.as_mut_ptr() as *mut c_char, arg as usize % 9, &mut n),
                3 => tmac_reset(t),
                4 => tmac_set_temperature(t, arg as f32 / 50.0 - 0.5),
                5 => tmac_set_top_k(t, arg as u32),
                6 => tmac_set_top_p(t, arg as f32 / 200.0),
                7 => tmac_set_seed(t, arg as u64),
                _ => tmac_prompt(t, std::ptr::null(), arg as usize % 2),
            };
            let _ = tmac_last_error(t);
        }
        tmac_free(t);
    }
}

/// A model's weights, for tests that check how they are held.
pub fn weights(m: &crate::Model) -> &crate::model::weights::Weights {
    &m.weights
}

// The internals the integration tests reach, under their paths in the crate.
pub mod bytes {
    pub use crate::bytes::Blob;
}
pub mod format {
    pub use crate::format::Kind;
    pub mod gguf {
        pub use crate::format::gguf::{Array, Gguf, TensorInfo, Value};
    }
    pub mod gguf_write {
        pub use crate::format::gguf_write::GgufWriter;
    }
    #[cfg(feature = "tools")]
    pub mod llama2c {
        pub use crate::format::llama2c::write_tokenizer;
    }
}
pub mod kernel {
    pub use crate::kernel::{
        candidates, lut_gemm, lut_gemv, lut_ints, q8_gemm, q8_gemv, tile_ints, Isa, Knobs,
    };
    pub mod linear {
        pub use crate::kernel::linear::act_group;
    }
    pub mod lut {
        pub use crate::kernel::lut::{entry8, Activations, Tables};
    }
}
pub mod layout {
    pub mod blocks {
        pub use crate::layout::blocks::form;
    }
    pub mod ggml {
        pub use crate::layout::ggml::{dequantize, quantize, GgmlType};
    }
    pub mod iq4 {
        pub use crate::layout::iq4::Iq4Matrix;
    }
    pub mod linear {
        pub use crate::layout::linear::Linear;
    }
    pub mod lut {
        pub use crate::layout::lut::{
            block_scale, from_ggml, pack, pack_with, sub_scale, Form, LutMatrix, Zero,
        };
    }
    pub mod q8 {
        pub use crate::layout::q8::Q8Matrix;
    }
    pub mod quantize {
        pub use crate::layout::quantize::quantize_matrix;
    }
    pub mod ternary {
        pub use crate::layout::ternary::Ternary;
    }
}
pub mod model {
    pub mod config {
        pub use crate::model::config::{Activation, Arch, Config};
    }
    #[cfg(feature = "tools")]
    pub mod legacy {
        pub use crate::model::legacy::vocab_from_tokenizer_bin;
    }
}
pub mod sampler {
    pub use crate::sampler::{argmax, Rng};
}
pub mod tokenizer {
    pub mod stream {
        pub use crate::tokenizer::stream::Utf8Stream;
    }
    pub mod unicode {
        pub use crate::tokenizer::unicode::byte_to_char;
    }
}
