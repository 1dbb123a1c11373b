//! `tmac info` and `tmac tokenize`: what a model is.

use super::{env_settings, load_for_inspection, load_options, take_tokenizer, unknown_option};
use std::io::Write;
use tmac::{Compute, Model};

pub fn info(args: &[String]) -> Result<(), String> {
    if super::help(args, "usage: tmac info MODEL [-z TOKENIZER]\nprints a model's architecture, shapes, tensor types, size, tokenizer and kernels\n") {
        return Ok(());
    }
    if let Some(o) = args.iter().find(|a| a.starts_with('-') && *a != "-z") {
        return Err(unknown_option("info", o));
    }
    let m = load_for_inspection(args)?;
    let args = take_tokenizer(args)?.0;
    let c = &m.config();
    let v = &m.vocab();
    outln!(
        "file:          {} ({:.1} MiB, {:?})",
        args[0],
        m.file_size() as f64 / 1048576.0,
        m.file_kind()
    );
    outln!("architecture:  {}", c.arch_name);
    outln!(
        "shape:         embd {} | ffn {} | layers {} | heads {} (kv {}) | head dim {} | vocab {}",
        c.n_embd,
        c.n_ff,
        c.n_layer,
        c.n_head,
        c.n_head_kv,
        c.head_dim,
        c.n_vocab
    );
    outln!(
        "context:       {} trained, {} by default | rope base {} dim {} | rms eps {:e} | act {:?}",
        c.n_ctx_train,
        m.default_context(),
        c.rope_base,
        c.rope_dim,
        c.rms_eps,
        c.act
    );
    let types: Vec<String> = m
        .tensor_types()
        .iter()
        .map(|(t, n)| format!("{t} x{n}"))
        .collect();
    outln!("tensor types:  {}", types.join(", "));
    let (blocks, head) = m.matrix_kinds();
    outln!(
        "weights:       blocks {blocks}, head {head} ({:.1} MiB read per token, {:.2} bits per weight)",
        m.weight_bytes() as f64 / 1048576.0,
        m.bits_per_weight()
    );
    if let Some(q) = m.quantization() {
        outln!("quantized as:  {q}");
    }
    let profile = env_settings()
        .profile
        .as_ref()
        .map_or("defaults (no tuning profile)".to_string(), |p| {
            format!("profile {}", p.display())
        });
    outln!(
        "kernel:        {} | row_tile {} prefetch {} tables {} | {profile}",
        m.kernels().0.name(),
        m.kernels().1.row_tile,
        m.kernels().1.prefetch,
        m.kernels().1.tables.name()
    );
    let tok = |id: Option<u32>| {
        id.map_or("none".to_string(), |i| {
            format!("{i} {:?}", String::from_utf8_lossy(v.text(i)))
        })
    };
    outln!(
        "tokenizer:     {:?}, {} tokens | bos {} (add {}) | eos {} | chat template {}",
        v.model,
        v.len(),
        tok(v.bos),
        v.add_bos,
        tok(v.eos),
        v.chat.name()
    );
    Ok(())
}

pub fn tokenize(args: &[String]) -> Result<(), String> {
    if super::help(args, "usage: tmac tokenize MODEL -i TEXT [-z TOKENIZER]\nprints the token ids of TEXT (control tokens written in it are recognised); needs only\nthe model's vocabulary\n") {
        return Ok(());
    }
    let mut text = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => text = Some(it.next().ok_or("-i needs a value")?.clone()),
            "-z" => {
                rest.push(a.clone());
                rest.extend(it.next().cloned());
            }
            s if s.starts_with('-') => return Err(unknown_option("tokenize", s)),
            _ => rest.push(a.clone()),
        }
    }
    let text = text.ok_or("tokenize: give the text with -i")?;
    // only the vocabulary: a model tmac cannot run can still be tokenized
    let (args, z) = take_tokenizer(&rest)?;
    let path = args.first().ok_or("tokenize: no model given")?;
    let vocab = Model::load_vocab(path, &load_options(Compute::default(), &z))
        .map_err(|e| e.to_string())?;
    let ids = vocab.encode(&text, true, true);
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    outln!("{}", ids.join(" "));
    Ok(())
}
