//! `tmac export --llama2c`: any model tmac runs, written as a llama2.c "version 0" checkpoint
//! and tokenizer.bin (the reverse of `model::legacy`).

use crate::error::{Error, ErrorKind, Result};
use crate::format::gguf::Gguf;
use crate::format::legacy;
use crate::format::llama2c::{self, Header};
use crate::format::Kind;
use crate::layout::linear::Linear;
use crate::model::config::{Activation, Arch};
use crate::model::legacy::replace;
use crate::model::weights::Layer;
use crate::model::{Compute, LoadOptions, Model};
use crate::tokenizer::{Model as TokModel, TokenType};
use std::io::Write;
use std::path::Path;

/// What `export_llama2c` wrote.
pub struct ExportSummary {
    pub header: Header,
    pub model_bytes: u64,
    pub tokenizer_bytes: u64,
    pub rope_base: f32,
}

/// f32 values streamed to a file.
struct Out {
    w: std::io::BufWriter<std::fs::File>,
    n: u64,
}

impl Out {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.n += b.len() as u64;
        self.w.write_all(b)
    }
    fn f32s(&mut self, v: &[f32]) -> std::io::Result<()> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(&b)
    }
    fn matrix(&mut self, m: &Linear, row: &mut [f32]) -> std::io::Result<()> {
        let row = &mut row[..m.cols()];
        for r in 0..m.rows() {
            m.dequantize_row(r, row);
            self.f32s(row)?;
        }
        Ok(())
    }
}

/// Write the model at `src` (GGUF, or any file tmac loads) as a llama2.c "version 0" checkpoint
/// at `out_model` (f32 weights in the fixed order, freq_cis tables from the model's RoPE base,
/// negative vocab_size when the output head is not the embedding) and its vocabulary as a
/// tokenizer.bin at `out_tok`.
///
/// Q and K need no permutation: GGUF stores them for adjacent-pair ("normal") RoPE already,
/// which is what llama2.c rotates. A byte-level BPE vocabulary (SmolLM2, GPT-2 style) is
/// written as each token's raw bytes, with score -rank of the best merge that makes the token
/// (0 for bytes and special tokens), so llama2.c's best-score-first merging approximates the
/// BPE merge order; it does not reproduce BPE's pre-tokenizer splits.
pub fn export_llama2c(
    src: &Path,
    tokenizer: Option<&Path>,
    out_model: &Path,
    out_tok: &Path,
) -> Result<ExportSummary> {
    let m = Model::load(
        src,
        &LoadOptions {
            compute: Compute::F32,
            tokenizer: tokenizer.map(Path::to_path_buf),
            ..Default::default()
        },
    )?;
    let c = &m.cfg;
    let unsupported = |what: String| Err(Error::unsupported(format!("llama2.c export: {what}")));
    if c.arch != Arch::Llama || c.act != Activation::Silu {
        return unsupported(format!("architecture {} is not plain Llama", c.arch_name));
    }
    if c.head_dim * c.n_head != c.n_embd || c.rope_dim != c.head_dim {
        return unsupported(format!(
            "head size {} x {} heads != embedding {}, or partial RoPE ({} of {})",
            c.head_dim, c.n_head, c.n_embd, c.rope_dim, c.head_dim
        ));
    }
    if m.weights.rope_freqs.is_some() {
        return unsupported("per-dimension RoPE frequency factors (Llama 3.1)".into());
    }
    let shared = match m.format {
        Kind::Gguf => Gguf::parse(m.file())?.tensor("output.weight").is_none(),
        kind => legacy::parse(kind, m.file())?.header.shared_classifier,
    };
    let header = Header {
        dim: c.n_embd,
        hidden_dim: c.n_ff,
        n_layers: c.n_layer,
        n_heads: c.n_head,
        n_kv_heads: c.n_head_kv,
        vocab_size: c.n_vocab,
        shared_classifier: shared,
        seq_len: c.n_ctx_train,
    };
    if c.n_ctx_train > i32::MAX as usize || Header::parse(&header.to_bytes()).ok() != Some(header) {
        return unsupported(format!(
            "shape {} does not fit a llama2.c header",
            header.describe()
        ));
    }
    let tokens = export_vocab(&m)?;
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| Error::new(ErrorKind::Io, format!("{p}: {e}"))
    };
    let tok_bytes = llama2c::write_tokenizer(&tokens);
    std::fs::write(out_tok, &tok_bytes).map_err(io(out_tok))?;
    let file = std::fs::File::create(out_model).map_err(io(out_model))?;
    let mut o = Out {
        w: std::io::BufWriter::new(file),
        n: 0,
    };
    write_checkpoint(&m, &header, &mut o).map_err(io(out_model))?;
    o.w.flush().map_err(io(out_model))?;
    Ok(ExportSummary {
        header,
        model_bytes: o.n,
        tokenizer_bytes: tok_bytes.len() as u64,
        rope_base: c.rope_base,
    })
}

fn write_checkpoint(m: &Model, h: &Header, o: &mut Out) -> std::io::Result<()> {
    let w = &m.weights;
    let mut row = vec![0f32; h.dim.max(h.hidden_dim)];
    o.bytes(&h.to_bytes())?;
    for id in 0..h.vocab_size {
        w.tok_embd
            .row(m.file(), id, &mut row[..h.dim])
            .map_err(|e| std::io::Error::other(e.msg))?;
        o.f32s(&row[..h.dim])?;
    }
    for l in &w.layers {
        o.f32s(&l.attn_norm)?;
    }
    type Pick = fn(&Layer) -> &Linear;
    let picks: [Pick; 4] = [|l| &l.wq, |l| &l.wk, |l| &l.wv, |l| &l.wo];
    for pick in picks {
        for l in &w.layers {
            o.matrix(pick(l), &mut row)?;
        }
    }
    for l in &w.layers {
        o.f32s(&l.ffn_norm)?;
    }
    // w1 = gate, w2 = down, w3 = up
    let picks: [Pick; 3] = [|l| &l.w_gate, |l| &l.w_down, |l| &l.w_up];
    for pick in picks {
        for l in &w.layers {
            o.matrix(pick(l), &mut row)?;
        }
    }
    o.f32s(&w.out_norm)?;
    let (re, im) = rope_tables(m.cfg.rope_base as f64, h.seq_len, h.head_size());
    o.f32s(&re)?;
    o.f32s(&im)?;
    if !h.shared_classifier {
        o.matrix(&w.output, &mut row)?;
    }
    Ok(())
}

/// freq_cis_real and freq_cis_imag: cos and sin of `pos * base^(-2i / head_size)`, `[pos][i]`.
fn rope_tables(base: f64, seq_len: usize, head_size: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_size / 2;
    let (mut re, mut im) = (
        Vec::with_capacity(seq_len * half),
        Vec::with_capacity(seq_len * half),
    );
    for p in 0..seq_len {
        for i in 0..half {
            let a = p as f64 * base.powf(-2.0 * i as f64 / head_size as f64);
            re.push(a.cos() as f32);
            im.push(a.sin() as f32);
        }
    }
    (re, im)
}

/// The vocabulary as tokenizer.bin entries (see `export_llama2c`).
fn export_vocab(m: &Model) -> Result<Vec<(Vec<u8>, f32)>> {
    let v = &m.vocab;
    let n = v.len() as u32;
    let raw = |id: u32| -> Vec<u8> {
        match (v.model, v.token_type(id)) {
            (TokModel::Spm, _) => replace(v.text(id), "\u{2581}".as_bytes(), b" "),
            (TokModel::Bpe(_), TokenType::Normal | TokenType::Byte) => v.piece(id).to_vec(),
            (TokModel::Bpe(_), _) => v.text(id).to_vec(),
        }
    };
    let scores: Vec<f32> = match v.model {
        TokModel::Spm => (0..n).map(|id| v.score(id)).collect(),
        TokModel::Bpe(_) => {
            let g = Gguf::parse(m.file())?;
            let merges = match g.get_array("tokenizer.ggml.merges")? {
                Some(a) => a.strings().unwrap_or_default().to_vec(),
                None => Vec::new(),
            };
            let unreachable = -(merges.len() as f32) - 1.0;
            let mut s: Vec<f32> = (0..n)
                .map(|id| {
                    // bytes and special tokens are never made by a merge
                    if v.token_type(id) != TokenType::Normal || v.piece(id).len() <= 1 {
                        0.0
                    } else {
                        unreachable
                    }
                })
                .collect();
            for (rank, mg) in merges.iter().enumerate() {
                // "left right", split at the first space after the first byte (as Vocab does)
                let Some(sp) = mg.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                    continue;
                };
                let joined = [&mg[..sp], &mg[sp + 1..]].concat();
                if let Some(id) = v.id(&joined) {
                    let sc = -(rank as f32);
                    if s[id as usize] == unreachable || s[id as usize] < sc {
                        s[id as usize] = sc;
                    }
                }
            }
            s
        }
    };
    Ok((0..n).map(|id| (raw(id), scores[id as usize])).collect())
}
