//! Perplexity as llama.cpp's `llama-perplexity` measures it: the text is cut into chunks of
//! `n_ctx` tokens, each evaluated from an empty context, and only the second half of each chunk
//! is scored (so every scored token has at least n_ctx/2 tokens of context).

use crate::error::{Error, Result};
use crate::math::{exp64, ln64};
use crate::model::Model;
use crate::session::{Session, SessionOptions};
use std::sync::Arc;

pub struct Perplexity {
    /// exp(mean negative log-likelihood)
    pub ppl: f64,
    /// Standard error of `ppl`, from the spread of the per-token log-likelihoods.
    pub err: f64,
    pub chunks: usize,
    pub tokens_scored: usize,
}

/// -log p(target) under `logits`.
fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| exp64(l as f64 - max)).sum();
    -(logits[target as usize] as f64 - max - ln64(sum))
}

/// Perplexity of `text` with chunks of `n_ctx` tokens, at most `max_chunks` of them (0 = all),
/// the KV cache in f16 if `kv_f16`. `progress` is called after each chunk with (chunk index,
/// running perplexity).
pub fn perplexity(
    model: &Arc<Model>,
    text: &str,
    (n_ctx, kv_f16): (usize, bool),
    max_chunks: usize,
    mut progress: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    let tokens = model.vocab.encode(text, true, false);
    let mut n_chunks = tokens.len() / n_ctx.max(1);
    if max_chunks > 0 {
        n_chunks = n_chunks.min(max_chunks);
    }
    if n_ctx < 16 || n_chunks == 0 {
        return Err(Error::invalid(format!(
            "the text has {} tokens: it needs at least one chunk of {n_ctx} (n_ctx >= 16)",
            tokens.len()
        )));
    }
    let mut s = Session::new(
        model.clone(),
        &SessionOptions {
            n_ctx,
            kv_f16,
            ..Default::default()
        },
    )?;
    let first = n_ctx / 2;
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let (true, Some(bos)) = (model.vocab.add_bos, model.vocab.bos) {
            chunk[0] = bos; // llama.cpp starts every chunk with BOS when the model wants one
        }
        s.reset();
        s.eval(&chunk, |pos, logits| {
            if pos >= first && pos + 1 < n_ctx {
                let v = nll(logits, chunk[pos + 1]);
                sum += v;
                sum2 += v * v;
                count += 1;
            }
        })?;
        progress(c, exp64(sum / count as f64));
    }
    let mean = sum / count as f64;
    let var = (sum2 / count as f64 - mean * mean).max(0.0);
    let ppl = exp64(mean);
    Ok(Perplexity {
        ppl,
        err: ppl * (var / (count as f64 - 1.0).max(1.0)).sqrt(),
        chunks: n_chunks,
        tokens_scored: count,
    })
}
