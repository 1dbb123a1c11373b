//! Hyper-parameters of a Llama-family model, read from GGUF metadata (`{arch}.*` keys).

use crate::error::{Error, Result};
use crate::format::gguf::Gguf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama, Mistral, SmolLM, Falcon3 and other models llama.cpp runs as `llama`.
    Llama,
    /// BitNet b1.58: sub-norms before the output and down projections.
    Bitnet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up
    Silu,
    /// relu(gate)^2 * up (BitNet b1.58 2B-4T)
    Relu2,
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
            "llama" | "mistral" | "granite" => Arch::Llama,
            "bitnet" | "bitnet-b1.58" | "bitnet-25" => Arch::Bitnet,
            a => {
                return Err(Error::unsupported(format!(
                    "architecture '{a}' is not supported"
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
        let act = match act_name {
            Some("relu2") => Activation::Relu2,
            Some("silu" | "swish" | "swiglu") => Activation::Silu,
            None if matches!(arch_name.as_str(), "bitnet-b1.58" | "bitnet-25") => Activation::Relu2,
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
        Ok(Config {
            arch,
            n_embd,
            n_ff: dim("feed_forward_length", MAX_DIM * 4)?,
            n_layer: dim("block_count", MAX_LAYERS)?,
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
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
