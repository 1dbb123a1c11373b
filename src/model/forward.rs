//! The transformer forward pass for one token, in the order llama.cpp's graph computes it.

use super::config::{Activation, Config};
use super::Model;
use crate::error::{Error, Result};
use crate::kernel::f32 as kf32;
use crate::kernel::lut::Activations;
use crate::kernel::rotate;
use crate::kernel::Isa;
use crate::layout::linear::Linear;
use crate::math;

/// Keys and values of every past position: `[layer][kv head][pos][head_dim]`, in f32 or
/// (optionally, as llama.cpp's default) f16, which halves attention's memory traffic on long
/// contexts. Each head's rows lie back to back, so that attention reads one unbroken run of
/// memory per head (rows of all heads side by side would have it skip over the other heads'
/// bytes, which the caches fetch anyway).
pub(crate) struct KvCache {
    data: KvData,
    n_head_kv: usize,
    head_dim: usize,
    pub n_ctx: usize,
}

enum KvData {
    F32 {
        k: Vec<f32>,
        v: Vec<f32>,
    },
    /// f16 bits, rounded to nearest even when written; read back exactly.
    F16 {
        k: Vec<u16>,
        v: Vec<u16>,
    },
}

impl KvCache {
    pub(crate) fn new(cfg: &Config, n_ctx: usize, f16: bool) -> KvCache {
        let n = cfg.n_layer * n_ctx * cfg.kv_dim();
        let data = if f16 {
            KvData::F16 {
                k: vec![0; n],
                v: vec![0; n],
            }
        } else {
            KvData::F32 {
                k: vec![0.0; n],
                v: vec![0.0; n],
            }
        };
        KvCache {
            data,
            n_head_kv: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            n_ctx,
        }
    }
    pub(crate) fn bytes(cfg: &Config, n_ctx: usize, f16: bool) -> usize {
        2 * (if f16 { 2 } else { 4 }) * cfg.n_layer * n_ctx * cfg.kv_dim()
    }
    /// Where the row of (layer, kv head, pos) starts.
    fn at(&self, layer: usize, head: usize, pos: usize) -> usize {
        ((layer * self.n_head_kv + head) * self.n_ctx + pos) * self.head_dim
    }
    /// Store the key and value rows of (layer, pos): `k` and `v` hold every kv head's.
    fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.n_head_kv {
            let at = self.at(layer, h, pos);
            let (kh, vh) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            match &mut self.data {
                KvData::F32 { k: kc, v: vc } => {
                    kc[at..at + hd].copy_from_slice(kh);
                    vc[at..at + hd].copy_from_slice(vh);
                }
                KvData::F16 { k: kc, v: vc } => {
                    kf32::to_f16(kh, &mut kc[at..at + hd]);
                    kf32::to_f16(vh, &mut vc[at..at + hd]);
                }
            }
        }
    }
    /// Attention of `qs` (the query heads sharing kv head `head`) over positions `span` of
    /// layer `layer` (see `kf32::attend`).
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        qs: &[f32],
        (layer, head): (usize, usize),
        span: std::ops::Range<usize>,
        scaling: (f32, Option<f32>),
        att: &mut [f32],
        outs: &mut [f32],
        isa: Isa,
    ) {
        let rows = self.at(layer, head, span.start)..self.at(layer, head, span.end);
        let shape = (self.head_dim, self.head_dim, 0);
        match &self.data {
            KvData::F32 { k, v } => kf32::attend(
                qs,
                &k[rows.clone()],
                &v[rows],
                shape,
                scaling,
                att,
                outs,
                isa,
            ),
            KvData::F16 { k, v } => kf32::attend(
                qs,
                &k[rows.clone()],
                &v[rows],
                shape,
                scaling,
                att,
                outs,
                isa,
            ),
        }
    }
}

/// Tokens run through the layers together during prefill: each weight tile is read once per
/// batch and reused from cache for every token of it.
pub(crate) const MAX_BATCH: usize = 64;

/// Activation buffers for up to MAX_BATCH tokens, allocated once per session. Vectors hold one
/// row per token: `x` is (batch, n_embd) and so on.
pub(crate) struct Scratch {
    x: Vec<f32>,               // (batch, n_embd) residual stream
    xb: Vec<f32>,              // (batch, n_embd) normed input
    q: Vec<f32>,               // (batch, q_dim)
    k: Vec<f32>,               // (batch, kv_dim)
    v: Vec<f32>,               // (batch, kv_dim)
    attn: Vec<f32>,            // (batch, q_dim) attention output
    att: Vec<f32>,             // (n_head / n_head_kv, n_ctx) scores of one query group
    d: Vec<f32>,               // (batch, n_embd) projection output
    hb: Vec<f32>,              // (batch, n_ff) gate
    hb2: Vec<f32>,             // (batch, n_ff) up
    rope: Vec<(f32, f32)>,     // (batch, rope_dim / 2) cos and sin at each token's position
    rope_swa: Vec<(f32, f32)>, // the same for sliding-window layers with their own base
    pub logits: Vec<f32>,      // (n_vocab)
    acts: Vec<Activations>,    // (batch) matmul inputs, quantized, with their lookup tables
}

impl Scratch {
    /// Bytes `new` allocates (activation tables excluded: they grow with the widest input).
    pub(crate) fn bytes(cfg: &Config, n_ctx: usize) -> usize {
        let per_token =
            3 * cfg.n_embd + 2 * cfg.q_dim() + 2 * cfg.kv_dim() + 2 * cfg.n_ff + 2 * cfg.rope_dim;
        4 * (MAX_BATCH * per_token + n_ctx * (cfg.n_head / cfg.n_head_kv) + cfg.n_vocab)
            + MAX_BATCH * cfg.n_embd.max(cfg.n_ff) * 17
    }

    pub(crate) fn new(cfg: &Config, n_ctx: usize) -> Scratch {
        let z = |n: usize| vec![0f32; MAX_BATCH * n];
        Scratch {
            x: z(cfg.n_embd),
            xb: z(cfg.n_embd),
            q: z(cfg.q_dim()),
            k: z(cfg.kv_dim()),
            v: z(cfg.kv_dim()),
            attn: z(cfg.q_dim()),
            att: vec![0f32; n_ctx * (cfg.n_head / cfg.n_head_kv)],
            d: z(cfg.n_embd),
            hb: z(cfg.n_ff),
            hb2: z(cfg.n_ff),
            rope: vec![(1.0, 0.0); MAX_BATCH * (cfg.rope_dim / 2)],
            rope_swa: vec![(1.0, 0.0); MAX_BATCH * (cfg.rope_dim / 2)],
            logits: vec![0f32; cfg.n_vocab],
            acts: (0..MAX_BATCH).map(|_| Activations::new()).collect(),
        }
    }
}

/// out = x / sqrt(mean(x^2) + eps) * w, with ggml's f64 sum of squares.
pub(crate) fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (ss / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// `rmsnorm` of each row of x (rows of w.len()) into the rows of out.
fn rmsnorm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    for (o, row) in out.chunks_exact_mut(w.len()).zip(x.chunks_exact(w.len())) {
        rmsnorm(o, row, w, eps);
    }
}

/// In-place rmsnorm.
fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let src = x.to_vec();
    rmsnorm(x, &src, w, eps);
}

/// RoPE angles for position `pos` as ggml computes them: pair i turns by
/// `freq_scale * pos * base^(-2i/rope_dim)` (divided by `freqs[i]` if given), the angle stepped in
/// f32 as ggml does. Fills (cos, sin) for the rope_dim/2 pairs; the same for every head.
pub(crate) fn rope_angles(
    cs: &mut [(f32, f32)],
    pos: usize,
    theta_scale: f32,
    freqs: Option<&[f32]>,
    freq_scale: Option<f32>,
) {
    let mut theta = pos as f32;
    for (i, c) in cs.iter_mut().enumerate() {
        let t = freqs.map_or(theta, |f| theta / f[i]);
        let t = freq_scale.map_or(t, |s| s * t);
        let (sin, cos) = math::sin_cos(t);
        *c = (cos, sin);
        theta *= theta_scale;
    }
}

/// Rotate adjacent pairs `(x[2i], x[2i+1])` of each head by the angles in `cs`.
pub(crate) fn rope(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cs) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// Rotate pairs `(x[i], x[i + rope_dim/2])` of each head (ggml's NEOX mode, Hugging Face's
/// rotate_half), used by BitNet: its converters do not permute Q and K as Llama's do.
pub(crate) fn rope_neox(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
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

pub(crate) fn theta_scale(cfg: &Config) -> f32 {
    theta_scale_for(cfg.rope_base, cfg.rope_dim)
}

fn theta_scale_for(base: f32, rope_dim: usize) -> f32 {
    math::pow64(base as f64, -2.0 / rope_dim as f64) as f32
}

/// Add a bias (one value per output) to every token's row.
fn add_bias(y: &mut [f32], b: Option<&Vec<f32>>) {
    if let Some(b) = b {
        for row in y.chunks_exact_mut(b.len()) {
            for (v, &bi) in row.iter_mut().zip(b) {
                *v += bi;
            }
        }
    }
}

/// RMSNorm of each `n`-wide chunk of `x` with the weights `w` (n), if given: per-head Q/K
/// norms (the whole token row when `w` spans it).
fn norm_chunks(x: &mut [f32], w: Option<&Vec<f32>>, eps: f32) {
    if let Some(w) = w {
        for c in x.chunks_exact_mut(w.len()) {
            rmsnorm_inplace(c, w, eps);
        }
    }
}

/// x += y, each token row of y first normed with `post` (Gemma) and scaled (Granite).
fn residual(x: &mut [f32], y: &mut [f32], post: Option<&Vec<f32>>, scale: Option<f32>, eps: f32) {
    norm_chunks(y, post, eps);
    if let Some(s) = scale {
        scale_by(y, s);
    }
    for (x, dv) in x.iter_mut().zip(y.iter()) {
        *x += dv;
    }
}

/// Run `tokens` (at most MAX_BATCH) at positions pos.. and write their keys and values to the
/// cache. Afterwards `logits(.., b)` gives the logits after token b. `stop` is asked before
/// each layer: true abandons the batch (the cache rows it wrote lie past the caller's position
/// and are written again before they are read).
pub(crate) fn forward(
    m: &Model,
    kv: &mut KvCache,
    s: &mut Scratch,
    tokens: &[u32],
    (pos, stop): (usize, &dyn Fn() -> bool),
) -> Result<()> {
    embed(m, kv, s, tokens, pos)?;
    for l in 0..m.weights.layers.len() {
        if stop() {
            return Err(Error::new(
                crate::error::ErrorKind::Aborted,
                "aborted by the caller",
            ));
        }
        layer(m, kv, s, (l, tokens.len(), pos), &mut |_, _| {});
    }
    Ok(())
}

/// The inputs of a layer's matrices, as `layer` shows them to its tap, in the order it
/// computes them (`as usize` numbers them so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// The normed residual stream into wq, wk, wv: (batch, n_embd).
    Attention,
    /// The attention output into wo: (batch, q_dim).
    AttentionOut,
    /// The normed residual stream into w_gate, w_up: (batch, n_embd).
    Ffn,
    /// The FFN hidden vector into w_down: (batch, n_ff).
    FfnDown,
}

impl Scratch {
    /// The residual stream of the batch, (batch, n_embd): what `embed` writes and each
    /// `layer` updates (calibration keeps it between layers).
    pub(crate) fn stream(&mut self, n: usize, d: usize) -> &mut [f32] {
        &mut self.x[..n * d]
    }
}

/// Check `tokens` (at most MAX_BATCH) against the context and the vocabulary, put their
/// embeddings in the residual stream and their positions' RoPE angles in the scratch.
pub(crate) fn embed(
    m: &Model,
    kv: &KvCache,
    s: &mut Scratch,
    tokens: &[u32],
    pos: usize,
) -> Result<()> {
    let (cfg, w, file) = (&m.cfg, &m.weights, m.file());
    let n = tokens.len();
    assert!(n <= MAX_BATCH);
    if pos + n > kv.n_ctx {
        return Err(Error::new(
            crate::error::ErrorKind::ContextFull,
            "context is full",
        ));
    }
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= w.tok_embd.rows()) {
        return Err(Error::invalid(format!(
            "token id {t} is outside the vocabulary"
        )));
    }
    positions(m, s, n, pos);
    let (d, gr) = (cfg.n_embd, &cfg.graph);
    for (b, &t) in tokens.iter().enumerate() {
        let x = &mut s.x[b * d..(b + 1) * d];
        w.tok_embd.row(file, t as usize, x)?;
        if let Some(e) = gr.embd_scale {
            scale_by(x, e);
        }
        if let Some(signs) = &w.rotation {
            rotate::rotate(x, signs);
        }
    }
    Ok(())
}

/// The RoPE angles of `n` tokens at positions pos.. into the scratch (`embed` does this; a
/// caller that brings its own residual stream does it alone).
pub(crate) fn positions(m: &Model, s: &mut Scratch, n: usize, pos: usize) {
    let (cfg, gr, half) = (&m.cfg, &m.cfg.graph, m.cfg.rope_dim / 2);
    let freqs = m.weights.rope_freqs.as_deref();
    let swa_ts = gr
        .swa
        .as_ref()
        .map(|w| theta_scale_for(w.rope_base, cfg.rope_dim));
    for b in 0..n {
        let cs = &mut s.rope[b * half..(b + 1) * half];
        rope_angles(cs, pos + b, theta_scale(cfg), freqs, gr.rope_scale);
        if let (Some(ts), Some(swa)) = (swa_ts, &gr.swa) {
            let cs = &mut s.rope_swa[b * half..(b + 1) * half];
            rope_angles(cs, pos + b, ts, freqs, swa.rope_scale);
        }
    }
}

/// Layer `l` on the batch of `n` tokens at positions pos.. (after `embed`): the residual
/// stream in, the stream out, their keys and values to the cache. `tap` sees each matrix
/// input as the matrices get it.
pub(crate) fn layer(
    m: &Model,
    kv: &mut KvCache,
    s: &mut Scratch,
    (l, n, pos): (usize, usize, usize),
    tap: &mut dyn FnMut(Input, &[f32]),
) {
    let (cfg, isa, knobs) = (&m.cfg, m.isa, &m.knobs);
    let layer = &m.weights.layers[l];
    let (d, q_dim, hd, kvd, ff) = (
        cfg.n_embd,
        cfg.q_dim(),
        cfg.head_dim,
        cfg.kv_dim(),
        cfg.n_ff,
    );
    let kv_mul = cfg.n_head / cfg.n_head_kv;
    let gr = &cfg.graph;
    // Q.K is scaled inside softmax unless the queries were scaled before (Gemma, Phi-3)
    let kq_scale = match (gr.kq_scale, gr.q_scale) {
        (Some(s), _) => s,
        (None, Some(_)) => 1.0,
        (None, None) => 1.0 / (hd as f32).sqrt(),
    };
    let half = cfg.rope_dim / 2;
    let has_swa = gr.swa.is_some();
    let rotate = if gr.rope_neox { rope_neox } else { rope };
    // x (n, cols) through `mats` into the outputs, each token's input prepared once for all
    macro_rules! matmul {
        ($site:expr, $x:expr, $cols:expr, [$(($mat:expr, $y:expr, $rows:expr)),+]) => {{
            tap($site, &$x[..n * $cols]);
            let users = [$(&$mat),+];
            Linear::prepare_batch(&mut s.acts[..n], &$x[..n * $cols], &users, knobs.tables, isa);
            $( $mat.forward_batch(&$x[..n * $cols], &s.acts[..n], &mut $y[..n * $rows], isa, knobs); )+
        }};
    }
    let ex = &layer.extra;
    let window = gr.swa.as_ref().filter(|w| w.layers[l]).map(|w| w.window);
    // attention
    rmsnorm_rows(
        &mut s.xb[..n * d],
        &s.x[..n * d],
        &layer.attn_norm,
        cfg.rms_eps,
    );
    matmul!(
        Input::Attention,
        s.xb,
        d,
        [
            (layer.wq, s.q, q_dim),
            (layer.wk, s.k, kvd),
            (layer.wv, s.v, kvd)
        ]
    );
    let [sq, sk, sv, so, sg, su, sd] = layer.scales;
    scale_by(&mut s.q[..n * q_dim], sq);
    scale_by(&mut s.k[..n * kvd], sk);
    scale_by(&mut s.v[..n * kvd], sv);
    add_bias(&mut s.q[..n * q_dim], ex.bq.as_ref());
    add_bias(&mut s.k[..n * kvd], ex.bk.as_ref());
    add_bias(&mut s.v[..n * kvd], ex.bv.as_ref());
    norm_chunks(&mut s.q[..n * q_dim], ex.q_norm.as_ref(), cfg.rms_eps);
    norm_chunks(&mut s.k[..n * kvd], ex.k_norm.as_ref(), cfg.rms_eps);
    let angles = if window.is_some() && has_swa {
        &s.rope_swa
    } else {
        &s.rope
    };
    for b in 0..n {
        let cs = &angles[b * half..(b + 1) * half];
        rotate(&mut s.q[b * q_dim..(b + 1) * q_dim], hd, cs);
        rotate(&mut s.k[b * kvd..(b + 1) * kvd], hd, cs);
        let (kr, vr) = (&s.k[b * kvd..(b + 1) * kvd], &s.v[b * kvd..(b + 1) * kvd]);
        kv.write(l, pos + b, kr, vr);
    }
    if let Some(qs) = gr.q_scale {
        scale_by(&mut s.q[..n * q_dim], qs);
    }
    // the query heads sharing key/value head kvh
    let group = kv_mul * hd;
    // key/value head outermost: the batch's tokens read the same head's rows one after the
    // other, while they are in cache (all heads' rows of a long prompt are not)
    for kvh in 0..cfg.n_head_kv {
        for b in 0..n {
            let p = pos + b; // token b sees positions first..=p
            let first = window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qs = &s.q[b * q_dim + kvh * group..][..group];
            let outs = &mut s.attn[b * q_dim + kvh * group..][..group];
            let att = &mut s.att[..kv_mul * (p + 1 - first)];
            let scaling = (kq_scale, gr.attn_softcap);
            kv.attend(qs, (l, kvh), first..p + 1, scaling, att, outs, isa);
        }
    }
    if let Some(sub) = &layer.attn_sub_norm {
        for b in 0..n {
            rmsnorm_inplace(&mut s.attn[b * q_dim..(b + 1) * q_dim], sub, cfg.rms_eps);
        }
    }
    matmul!(Input::AttentionOut, s.attn, q_dim, [(layer.wo, s.d, d)]);
    scale_by(&mut s.d[..n * d], so);
    add_bias(&mut s.d[..n * d], ex.bo.as_ref());
    let (post, rs) = (ex.post_attn_norm.as_ref(), gr.residual_scale);
    residual(&mut s.x[..n * d], &mut s.d[..n * d], post, rs, cfg.rms_eps);

    // feed-forward
    rmsnorm_rows(
        &mut s.xb[..n * d],
        &s.x[..n * d],
        &layer.ffn_norm,
        cfg.rms_eps,
    );
    matmul!(
        Input::Ffn,
        s.xb,
        d,
        [(layer.w_gate, s.hb, ff), (layer.w_up, s.hb2, ff)]
    );
    scale_by(&mut s.hb[..n * ff], sg);
    scale_by(&mut s.hb2[..n * ff], su);
    match cfg.act {
        Activation::Silu => kf32::silu_mul(&mut s.hb[..n * ff], &s.hb2[..n * ff], isa),
        Activation::Relu2 => {
            for (g, &u) in s.hb[..n * ff].iter_mut().zip(&s.hb2) {
                let r = g.max(0.0);
                *g = r * r * u;
            }
        }
        Activation::GeluTanh => {
            for (g, &u) in s.hb[..n * ff].iter_mut().zip(&s.hb2) {
                *g = math::gelu_tanh(*g) * u;
            }
        }
    }
    if let Some(sub) = &layer.ffn_sub_norm {
        for b in 0..n {
            rmsnorm_inplace(&mut s.hb[b * ff..(b + 1) * ff], sub, cfg.rms_eps);
        }
    }
    matmul!(Input::FfnDown, s.hb, ff, [(layer.w_down, s.d, d)]);
    scale_by(&mut s.d[..n * d], sd);
    let post = ex.post_ffn_norm.as_ref();
    residual(&mut s.x[..n * d], &mut s.d[..n * d], post, rs, cfg.rms_eps);
}

/// Fill `s.logits` with the logits after token `b` of the last `forward` batch.
pub(crate) fn logits(m: &Model, s: &mut Scratch, b: usize) {
    let (cfg, w) = (&m.cfg, &m.weights);
    let d = cfg.n_embd;
    let mut h = &s.x[b * d..(b + 1) * d];
    if let Some(signs) = &w.rotation {
        // back from the rotated stream of a calibrated file
        s.d[..d].copy_from_slice(h);
        rotate::unrotate(&mut s.d[..d], signs);
        h = &s.d[..d];
    }
    rmsnorm(&mut s.xb[..d], h, &w.out_norm, cfg.rms_eps);
    Linear::prepare(&mut s.acts[0], &s.xb[..d], &[&w.output], m.knobs.tables);
    w.output
        .forward(&s.xb[..d], &s.acts[0], &mut s.logits, m.isa, &m.knobs);
    add_bias(&mut s.logits, w.out_bias.as_ref());
    if let Some(l) = cfg.graph.logit_scale {
        scale_by(&mut s.logits, l);
    }
    if let Some(c) = cfg.graph.final_softcap {
        for v in &mut s.logits {
            *v = c * math::tanh(*v * (1.0 / c));
        }
    }
}
