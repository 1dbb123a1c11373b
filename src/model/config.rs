//! Hyper-parameters of a model, read from GGUF metadata (`{arch}.*` keys), as llama.cpp reads
//! them for each architecture (llama-model.cpp's load_hparams and the graphs in src/models/).

use crate::error::{Error, Result};
use crate::format::gguf::Gguf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama, Mistral, SmolLM, Falcon3 and other models llama.cpp runs as `llama`.
    Llama,
    /// Granite: Llama with scales on the embedding, residuals, attention and logits.
    Granite,
    /// BitNet b1.58: sub-norms before the output and down projections.
    Bitnet,
    /// Qwen2 / Qwen2.5: Q, K, V biases, NEOX RoPE.
    Qwen2,
    /// Qwen3: per-head RMSNorm on Q and K, NEOX RoPE.
    Qwen3,
    /// Gemma: scaled embedding, GELU-gated FFN, pre-scaled queries.
    Gemma,
    /// Gemma 2: Gemma with post-attention and post-FFN norms, soft-capping, sliding windows.
    Gemma2,
    /// Gemma 3: Gemma 2 with Q/K norms instead of attention soft-capping, and a local RoPE base.
    Gemma3,
    /// Phi-3: fused QKV and gate/up matrices, pre-scaled queries.
    Phi3,
}

/// The architectures tmac runs, as `general.architecture` names them.
pub(crate) const SUPPORTED: &str =
    "llama (also mistral), granite, bitnet (also bitnet-b1.58, bitnet-25), qwen2, qwen3, gemma, gemma2, gemma3, phi3";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up
    Silu,
    /// relu(gate)^2 * up (BitNet b1.58 2B-4T)
    Relu2,
    /// GEGLU: gelu(gate) * up, tanh approximation through ggml's f16 table (Gemma)
    GeluTanh,
}

/// How an architecture's graph differs from Llama's. `Graph::default()` is Llama.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Rotate `(x[i], x[i + rope_dim/2])` (ggml's NEOX mode) instead of adjacent pairs.
    pub rope_neox: bool,
    /// Factor on the RoPE angles (1 / rope.scaling.factor with linear scaling); None = 1.
    pub rope_scale: Option<f32>,
    /// Sliding-window attention on some layers.
    pub swa: Option<Swa>,
    /// Embedding rows are multiplied by this (Gemma: sqrt(n_embd); Granite).
    pub embd_scale: Option<f32>,
    /// Queries are multiplied by this before attention (Gemma, Phi-3), and q.k then not scaled.
    pub q_scale: Option<f32>,
    /// Scale of q.k before softmax; None = 1 / sqrt(head_dim) (or 1 with `q_scale`).
    pub kq_scale: Option<f32>,
    /// q.k becomes cap * tanh(q.k / cap) (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits become cap * tanh(logits / cap) (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Attention and FFN outputs are multiplied by this before the residual add (Granite).
    pub residual_scale: Option<f32>,
    /// Logits are multiplied by this (Granite: 1 / logit_scale).
    pub logit_scale: Option<f32>,
}

/// Sliding-window attention: on the layers marked in `layers`, a token at position p attends to
/// the `window` positions p - window + 1 ..= p, with its own RoPE base and factor.
#[derive(Clone, Debug)]
pub struct Swa {
    pub window: usize,
    pub layers: Vec<bool>,
    pub rope_base: f32,
    pub rope_scale: Option<f32>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub arch_name: String,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// How many leading dimensions of each head RoPE rotates.
    pub rope_dim: usize,
    pub act: Activation,
    pub graph: Graph,
}

/// Largest sizes tmac accepts; they keep every derived product far from overflow.
const MAX_DIM: u64 = 1 << 20;
const MAX_LAYERS: u64 = 1 << 12;

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch_name = g
            .get_str("general.architecture")?
            .ok_or_else(|| Error::format("missing metadata key general.architecture"))?
            .to_string();
        let arch = match arch_name.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "granite" => Arch::Granite,
            "bitnet" | "bitnet-b1.58" | "bitnet-25" => Arch::Bitnet,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            a => {
                return Err(Error::unsupported(format!(
                    "architecture '{a}' is not supported (tmac runs {SUPPORTED})"
                )))
            }
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        let dim = |key: &str, max: u64| -> Result<usize> {
            let v = g.require_u64(&k(key))?;
            if v == 0 || v > max {
                return Err(Error::format(format!("{} = {v} is out of range", k(key))));
            }
            Ok(v as usize)
        };
        let n_embd = dim("embedding_length", MAX_DIM)?;
        let n_head = dim("attention.head_count", MAX_DIM)?;
        let n_head_kv = match g.get_u64(&k("attention.head_count_kv"))? {
            None => n_head,
            Some(_) => dim("attention.head_count_kv", MAX_DIM)?,
        };
        if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(Error::format(format!(
                "heads do not divide: embedding {n_embd}, heads {n_head}, kv heads {n_head_kv}"
            )));
        }
        let head_dim = match g.get_u64(&k("attention.key_length"))? {
            None => n_embd / n_head,
            Some(_) => dim("attention.key_length", MAX_DIM)?,
        };
        let rope_dim = match g.get_u64(&k("rope.dimension_count"))? {
            None => head_dim,
            Some(_) => dim("rope.dimension_count", MAX_DIM)?,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 || head_dim % 2 != 0 {
            return Err(Error::format(format!(
                "rope dimension {rope_dim} does not fit head size {head_dim}"
            )));
        }
        // llama.cpp's key is `{arch}.hidden_activation`; `hidden_act` is HF's name. Without
        // either, bitnet.cpp's architectures (made for BitNet b1.58 2B-4T) use relu2, as its
        // graph did, and mainline `bitnet` (1bitLLM models) uses SiLU, as llama.cpp does.
        let act_name = match g.get_str(&k("hidden_activation"))? {
            Some(a) => Some(a),
            None => g.get_str(&k("hidden_act"))?,
        };
        let gemma = matches!(arch, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3);
        let act = match act_name {
            Some("relu2") => Activation::Relu2,
            Some("silu" | "swish" | "swiglu") => Activation::Silu,
            Some("gelu" | "gelu_pytorch_tanh") if gemma => Activation::GeluTanh,
            None if matches!(arch_name.as_str(), "bitnet-b1.58" | "bitnet-25") => Activation::Relu2,
            None if gemma => Activation::GeluTanh,
            None => Activation::Silu,
            Some(a) => return Err(Error::unsupported(format!("activation '{a}'"))),
        };
        let rms_eps = g
            .get_f32(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        let rope_base = g.get_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rms_eps.is_finite() && rms_eps >= 0.0 && rope_base.is_finite() && rope_base > 0.0) {
            return Err(Error::format(format!(
                "bad rms epsilon {rms_eps} or rope base {rope_base}"
            )));
        }
        let n_layer = dim("block_count", MAX_LAYERS)?;
        let graph = graph(g, arch, &k, n_embd, n_head, head_dim, n_layer, rope_base)?;
        Ok(Config {
            arch,
            n_embd,
            n_ff: dim("feed_forward_length", MAX_DIM * 4)?,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab: 0, // set from the vocabulary / embedding by the loader
            n_ctx_train: dim("context_length", u32::MAX as u64)?,
            rms_eps,
            rope_base,
            rope_dim,
            act,
            arch_name,
            graph,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// A finite, positive f32 metadata value, if present.
fn positive(g: &Gguf, key: &str) -> Result<Option<f32>> {
    match g.get_f32(key)? {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(Error::format(format!("{key} = {v} is out of range")))
        }
        v => Ok(v),
    }
}

/// The graph differences of `arch`, from its metadata (llama.cpp's rules and defaults).
#[allow(clippy::too_many_arguments)]
fn graph(
    g: &Gguf,
    arch: Arch,
    k: &dyn Fn(&str) -> String,
    n_embd: usize,
    n_head: usize,
    head_dim: usize,
    n_layer: usize,
    rope_base: f32,
) -> Result<Graph> {
    let rope_scale = match g.get_str(&k("rope.scaling.type"))? {
        None | Some("linear") | Some("none") => {
            let f = match positive(g, &k("rope.scaling.factor"))? {
                Some(f) => Some(f),
                None => positive(g, &k("rope.scale_linear"))?,
            };
            let none = g.get_str(&k("rope.scaling.type"))? == Some("none");
            f.filter(|&f| f != 1.0 && !none).map(|f| 1.0 / f)
        }
        Some(t) => {
            return Err(Error::unsupported(format!(
                "RoPE scaling '{t}' is not supported (only linear)"
            )))
        }
    };
    let mut gr = Graph {
        rope_neox: !matches!(arch, Arch::Llama | Arch::Granite),
        rope_scale,
        ..Graph::default()
    };
    let gemma = matches!(arch, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3);
    if gemma {
        gr.embd_scale = Some((n_embd as f32).sqrt());
        // llama.cpp: 1/sqrt(n_embd / n_head) for the 27B models (46 or 62 layers)
        let big = matches!((arch, n_layer), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
        let d = if big { n_embd / n_head } else { head_dim };
        gr.q_scale = Some(1.0 / (d as f32).sqrt());
    }
    if arch == Arch::Phi3 {
        gr.q_scale = Some(1.0 / (head_dim as f32).sqrt());
    }
    if arch == Arch::Gemma2 {
        gr.attn_softcap = Some(positive(g, &k("attn_logit_softcapping"))?.unwrap_or(50.0));
        gr.final_softcap = Some(positive(g, &k("final_logit_softcapping"))?.unwrap_or(30.0));
    }
    if arch == Arch::Gemma3 {
        gr.final_softcap = positive(g, &k("final_logit_softcapping"))?;
    }
    if arch == Arch::Granite {
        gr.embd_scale = positive(g, &k("embedding_scale"))?;
        gr.residual_scale = positive(g, &k("residual_scale"))?;
        gr.kq_scale = positive(g, &k("attention.scale"))?;
        let l = positive(g, &k("logit_scale"))?
            .ok_or_else(|| Error::format(format!("missing metadata key {}", k("logit_scale"))))?;
        gr.logit_scale = Some(1.0 / l);
    }
    let window = match (arch, g.get_u64(&k("attention.sliding_window"))?) {
        (Arch::Gemma2, w) => Some(w.unwrap_or(4096)),
        (Arch::Gemma3, w) => w,
        _ => None, // llama.cpp ignores the key elsewhere (Phi-3's window included)
    };
    if let Some(w) = window {
        if w == 0 || w > u32::MAX as u64 {
            return Err(Error::format(format!("sliding window {w} is out of range")));
        }
        let layers = swa_layers(g, &k("attention.sliding_window_pattern"), arch, n_layer)?;
        let (base, scale) = match arch {
            // Gemma 3's local layers: their own base, no scaling
            Arch::Gemma3 => (
                positive(g, &k("rope.freq_base_swa"))?.unwrap_or(10_000.0),
                None,
            ),
            _ => (
                positive(g, &k("rope.freq_base_swa"))?.unwrap_or(rope_base),
                rope_scale,
            ),
        };
        gr.swa = Some(Swa {
            window: w as usize,
            layers,
            rope_base: base,
            rope_scale: scale,
        });
    }
    Ok(gr)
}

/// Which layers slide: `{arch}.attention.sliding_window_pattern` as a period n (layers with
/// il % n < n - 1 slide: Gemma 3's default 6, Gemma 2's 2) or one flag per layer.
fn swa_layers(g: &Gguf, key: &str, arch: Arch, n_layer: usize) -> Result<Vec<bool>> {
    if let Some(crate::format::gguf::Value::Array(a)) = g.get(key) {
        let v: Option<Vec<bool>> = (0..a.len()).map(|i| a.i64_at(i).map(|x| x != 0)).collect();
        return match v {
            Some(v) if v.len() == n_layer => Ok(v),
            _ => Err(Error::format(format!(
                "{key} should hold one flag per layer ({n_layer})"
            ))),
        };
    }
    let n = match g.get_u64(key)? {
        Some(n) if (1..=n_layer as u64).contains(&n) => n as usize,
        Some(n) => return Err(Error::format(format!("{key} = {n} is out of range"))),
        None if arch == Arch::Gemma2 => 2,
        None => 6,
    };
    Ok((0..n_layer).map(|il| il % n < n - 1).collect())
}
