//! `tmac bench`: decode and prefill speed of a model on this machine, single-threaded.

use crate::error::Result;
use crate::model::Model;
use crate::sampler::SamplerParams;
use crate::session::{Session, SessionOptions, Step};
use std::sync::Arc;
use std::time::Instant;

pub struct BenchResult {
    /// Tokens per second for each repetition.
    pub prefill: Vec<f64>,
    pub decode: Vec<f64>,
}

/// Min, median and max of a sample.
pub fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

/// What `run` measures.
pub struct BenchSpec {
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Tokens in the context when decoding starts (at least one; llama-bench's `-d`).
    pub depth: usize,
    pub reps: usize,
    pub kv_f16: bool,
}

/// Prefill `n_prompt` tokens, then, from a fresh context holding `depth` tokens, decode `n_gen`
/// tokens greedily; `reps` times, after one untimed prefill and one token (llama-bench's
/// warmup: the first pass over a mapped file also faults its pages in, and allocates).
pub fn run(model: &Arc<Model>, spec: &BenchSpec) -> Result<BenchResult> {
    let (n_prompt, n_gen, reps) = (spec.n_prompt, spec.n_gen, spec.reps);
    let depth = spec.depth.max(1);
    // a deterministic prompt: token ids spread over the vocabulary (as llama-bench uses random ids)
    let n_vocab = model.cfg.n_vocab as u64;
    let prompt: Vec<u32> = (0..n_prompt.max(depth) as u64)
        .map(|i| ((i * 7919 + 13) % n_vocab) as u32)
        .collect();
    let opts = SessionOptions {
        n_ctx: (n_prompt.max(depth) + n_gen + 1).max(16),
        sampler: SamplerParams::greedy(),
        kv_f16: spec.kv_f16,
        ..Default::default()
    };
    let mut s = Session::new(model.clone(), &opts)?;
    let mut r = BenchResult {
        prefill: Vec::new(),
        decode: Vec::new(),
    };
    s.feed(&prompt[..n_prompt.max(1)])?;
    s.next_token_unchecked()?;
    for _ in 0..reps {
        s.reset();
        let t = Instant::now();
        s.feed(&prompt[..n_prompt])?;
        r.prefill.push(n_prompt as f64 / t.elapsed().as_secs_f64());
        s.reset();
        s.feed(&prompt[..depth])?;
        let t = Instant::now();
        let mut n = 0;
        while n < n_gen {
            match s.next_token_unchecked()? {
                Step::Token { .. } => n += 1,
                Step::Done { .. } => break,
            }
        }
        r.decode.push(n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(r)
}

/// One core's sustained read bandwidth in GB/s: stream a buffer much larger than the caches
/// several times and keep the best pass.
pub fn read_bandwidth(mib: usize) -> f64 {
    let n = mib * 1024 * 1024 / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let mut best = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // 8 independent lanes so the adds do not serialize
        let mut acc = [0u64; 8];
        for c in buf.chunks_exact(8) {
            for l in 0..8 {
                acc[l] = acc[l].wrapping_add(c[l]);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(acc);
        best = best.max((n * 8) as f64 / secs / 1e9);
    }
    best
}
