//! The transformer forward pass for one token, in the order llama.cpp's graph computes it.

use super::config::{Activation, Arch, Config};
use super::linear::Linear;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::kernel::f32 as kf32;
use crate::kernel::lut::Activations;
use crate::math;

/// Keys and values of every past position: [layer][pos][kv_dim].
pub struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    kv_dim: usize,
    pub n_ctx: usize,
}

impl KvCache {
    pub fn new(cfg: &Config, n_ctx: usize) -> KvCache {
        let n = cfg.n_layer * n_ctx * cfg.kv_dim();
        KvCache {
            k: vec![0.0; n],
            v: vec![0.0; n],
            kv_dim: cfg.kv_dim(),
            n_ctx,
        }
    }
    pub fn bytes(cfg: &Config, n_ctx: usize) -> usize {
        2 * 4 * cfg.n_layer * n_ctx * cfg.kv_dim()
    }
    fn at(&self, layer: usize, pos: usize) -> usize {
        (layer * self.n_ctx + pos) * self.kv_dim
    }
}

/// Activation buffers, allocated once per session.
pub struct Scratch {
    x: Vec<f32>,           // (n_embd) residual stream
    xb: Vec<f32>,          // (n_embd) normed input
    q: Vec<f32>,           // (q_dim)
    k: Vec<f32>,           // (kv_dim)
    v: Vec<f32>,           // (kv_dim)
    attn: Vec<f32>,        // (q_dim) attention output
    att: Vec<f32>,         // (n_ctx) scores of one head
    d: Vec<f32>,           // (n_embd) projection output
    hb: Vec<f32>,          // (n_ff) gate
    hb2: Vec<f32>,         // (n_ff) up
    rope: Vec<(f32, f32)>, // (rope_dim / 2) cos and sin at the current position
    pub logits: Vec<f32>,  // (n_vocab)
    act: Activations,      // the current matmul input, quantized, with its lookup tables
}

impl Scratch {
    pub fn new(cfg: &Config, n_ctx: usize) -> Scratch {
        let z = |n| vec![0f32; n];
        Scratch {
            x: z(cfg.n_embd),
            xb: z(cfg.n_embd),
            q: z(cfg.q_dim()),
            k: z(cfg.kv_dim()),
            v: z(cfg.kv_dim()),
            attn: z(cfg.q_dim()),
            att: z(n_ctx),
            d: z(cfg.n_embd),
            hb: z(cfg.n_ff),
            hb2: z(cfg.n_ff),
            rope: vec![(1.0, 0.0); cfg.rope_dim / 2],
            logits: z(cfg.n_vocab),
            act: Activations::new(),
        }
    }
}

/// out = x / sqrt(mean(x^2) + eps) * w, with ggml's f64 sum of squares.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (ss / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// In-place rmsnorm.
fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let src = x.to_vec();
    rmsnorm(x, &src, w, eps);
}

/// Softmax in place: max-subtracted, f64 sum, as ggml's soft_max.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = math::exp(*v - max);
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// RoPE angles for position `pos` as ggml computes them for `llama` GGUFs ("normal" mode):
/// pair i turns by pos * base^(-2i/rope_dim), the angle stepped in f32 as ggml does.
/// Fills (cos, sin) for the rope_dim/2 pairs; the same for every head and layer.
pub fn rope_angles(cs: &mut [(f32, f32)], pos: usize, theta_scale: f32, freqs: Option<&[f32]>) {
    let mut theta = pos as f32;
    for (i, c) in cs.iter_mut().enumerate() {
        let t = freqs.map_or(theta, |f| theta / f[i]);
        let (sin, cos) = math::sin_cos(t);
        *c = (cos, sin);
        theta *= theta_scale;
    }
}

/// Rotate adjacent pairs (x[2i], x[2i+1]) of each head by the angles in `cs`.
pub fn rope(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cs) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// Rotate pairs (x[i], x[i + rope_dim/2]) of each head (ggml's NEOX mode, Hugging Face's
/// rotate_half), used by BitNet: its converters do not permute Q and K as Llama's do.
pub fn rope_neox(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    let half = cs.len();
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(cos, sin)) in cs.iter().enumerate() {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos - b * sin;
            head[i + half] = a * sin + b * cos;
        }
    }
}

/// Multiply a matrix output by its scale (1 for most matrices).
fn scale_by(y: &mut [f32], s: f32) {
    if s != 1.0 {
        for v in y {
            *v *= s;
        }
    }
}

pub fn theta_scale(cfg: &Config) -> f32 {
    math::pow64(cfg.rope_base as f64, -2.0 / cfg.rope_dim as f64) as f32
}

/// Run token `token` at position `pos`; when `want_logits`, fill `s.logits`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    cfg: &Config,
    w: &Weights,
    file: &[u8],
    kv: &mut KvCache,
    s: &mut Scratch,
    token: u32,
    pos: usize,
    want_logits: bool,
) -> Result<()> {
    if pos >= kv.n_ctx {
        return Err(Error::new(
            crate::error::ErrorKind::ContextFull,
            "context is full",
        ));
    }
    if token as usize >= w.tok_embd.rows() {
        return Err(Error::invalid(format!(
            "token id {token} is outside the vocabulary"
        )));
    }
    let (hd, kvd) = (cfg.head_dim, cfg.kv_dim());
    let kv_mul = cfg.n_head / cfg.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    rope_angles(&mut s.rope, pos, theta_scale(cfg), w.rope_freqs.as_deref());
    let rotate = if cfg.arch == Arch::Bitnet {
        rope_neox
    } else {
        rope
    };
    w.tok_embd.row(file, token as usize, &mut s.x)?;

    for (l, layer) in w.layers.iter().enumerate() {
        // attention
        rmsnorm(&mut s.xb, &s.x, &layer.attn_norm, cfg.rms_eps);
        Linear::prepare(&mut s.act, &s.xb, &[&layer.wq, &layer.wk, &layer.wv]);
        layer.wq.forward(&s.xb, &s.act, &mut s.q);
        layer.wk.forward(&s.xb, &s.act, &mut s.k);
        layer.wv.forward(&s.xb, &s.act, &mut s.v);
        let [sq, sk, sv, so, sg, su, sd] = layer.scales;
        scale_by(&mut s.q, sq);
        scale_by(&mut s.k, sk);
        scale_by(&mut s.v, sv);
        rotate(&mut s.q, hd, &s.rope);
        rotate(&mut s.k, hd, &s.rope);
        let at = kv.at(l, pos);
        kv.k[at..at + kvd].copy_from_slice(&s.k);
        kv.v[at..at + kvd].copy_from_slice(&s.v);

        let base = kv.at(l, 0);
        for h in 0..cfg.n_head {
            let q = &s.q[h * hd..(h + 1) * hd];
            let kvh = (h / kv_mul) * hd;
            let att = &mut s.att[..=pos];
            for (t, a) in att.iter_mut().enumerate() {
                let k = &kv.k[base + t * kvd + kvh..][..hd];
                *a = kf32::dot(q, k) * scale;
            }
            softmax(att);
            let out = &mut s.attn[h * hd..(h + 1) * hd];
            out.fill(0.0);
            for (t, &a) in att.iter().enumerate() {
                kf32::axpy(a, &kv.v[base + t * kvd + kvh..][..hd], out);
            }
        }
        if let Some(n) = &layer.attn_sub_norm {
            rmsnorm_inplace(&mut s.attn, n, cfg.rms_eps);
        }
        Linear::prepare(&mut s.act, &s.attn, &[&layer.wo]);
        layer.wo.forward(&s.attn, &s.act, &mut s.d);
        scale_by(&mut s.d, so);
        for (x, d) in s.x.iter_mut().zip(&s.d) {
            *x += d;
        }

        // feed-forward
        rmsnorm(&mut s.xb, &s.x, &layer.ffn_norm, cfg.rms_eps);
        Linear::prepare(&mut s.act, &s.xb, &[&layer.w_gate, &layer.w_up]);
        layer.w_gate.forward(&s.xb, &s.act, &mut s.hb);
        layer.w_up.forward(&s.xb, &s.act, &mut s.hb2);
        scale_by(&mut s.hb, sg);
        scale_by(&mut s.hb2, su);
        for (g, &u) in s.hb.iter_mut().zip(&s.hb2) {
            *g = match cfg.act {
                Activation::Silu => *g / (1.0 + math::exp(-*g)) * u,
                Activation::Relu2 => {
                    let r = g.max(0.0);
                    r * r * u
                }
            };
        }
        if let Some(n) = &layer.ffn_sub_norm {
            rmsnorm_inplace(&mut s.hb, n, cfg.rms_eps);
        }
        Linear::prepare(&mut s.act, &s.hb, &[&layer.w_down]);
        layer.w_down.forward(&s.hb, &s.act, &mut s.d);
        scale_by(&mut s.d, sd);
        for (x, d) in s.x.iter_mut().zip(&s.d) {
            *x += d;
        }
    }
    if want_logits {
        rmsnorm(&mut s.xb, &s.x, &w.out_norm, cfg.rms_eps);
        Linear::prepare(&mut s.act, &s.xb, &[&w.output]);
        w.output.forward(&s.xb, &s.act, &mut s.logits);
    }
    Ok(())
}
