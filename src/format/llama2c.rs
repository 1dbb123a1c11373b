//! llama2.c's files: the "version 0" checkpoint (`model.bin`: a 7 x int32 header, then f32
//! tensors in a fixed order, no magic) and `tokenizer.bin`. The quantized files of the original
//! T-MAC engine (format/legacy.rs) reuse the same header and tensor list.
//! Byte layouts: legacy-formats.md sections 1 and 6 (and prior-art-c-api.md section 4).

use super::reader::Reader;
use crate::error::{Error, Result};

/// Size of the header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len.
pub(crate) const HEADER_BYTES: usize = 28;

/// Largest sizes accepted (as in model/config.rs); they keep every product far from overflow.
const MAX_DIM: i64 = 1 << 20;
const MAX_LAYERS: i64 = 1 << 12;
const MAX_SEQ: i64 = 1 << 24;

/// The 7-int header, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// |vocab_size|
    pub vocab_size: usize,
    /// vocab_size > 0 in the file: the classifier is the token embedding. Otherwise `wcls`
    /// follows the other tensors.
    pub shared_classifier: bool,
    pub seq_len: usize,
}

/// How the quantized legacy formats store a tensor: matrices are quantized, the rest stays f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Matrix,
    Float,
}

/// One tensor of the fixed order: `layers` stacked (rows, cols) matrices (vectors have rows 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub role: Role,
    pub layers: usize,
    pub rows: usize,
    pub cols: usize,
}

impl TensorSpec {
    /// Elements of the whole stacked tensor.
    pub fn n(&self) -> usize {
        self.layers * self.rows * self.cols
    }
    /// Rows of the stacked shape (what v2 records store as `rows`).
    pub fn stacked_rows(&self) -> usize {
        self.layers * self.rows
    }
}

impl Header {
    /// Parse and check the 7 ints at the start of `buf` (which may be longer).
    pub fn parse(buf: &[u8]) -> Result<Header> {
        let mut r = Reader::new(buf);
        let mut v = [0i64; 7];
        for (x, what) in v.iter_mut().zip([
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "seq_len",
        ]) {
            *x = r.i32(&format!("header field {what}"))? as i64;
        }
        let [dim, hidden, layers, heads, kv_heads, vocab, seq] = v;
        let check = |what: &str, x: i64, max: i64| -> Result<usize> {
            if x <= 0 || x > max {
                return Err(Error::format(format!(
                    "header: {what} = {x} is out of range (1..={max})"
                )));
            }
            Ok(x as usize)
        };
        let h = Header {
            dim: check("dim", dim, MAX_DIM)?,
            hidden_dim: check("hidden_dim", hidden, MAX_DIM * 4)?,
            n_layers: check("n_layers", layers, MAX_LAYERS)?,
            n_heads: check("n_heads", heads, MAX_DIM)?,
            n_kv_heads: check("n_kv_heads", kv_heads, MAX_DIM)?,
            vocab_size: check("|vocab_size|", vocab.abs(), MAX_DIM)?,
            shared_classifier: vocab > 0,
            seq_len: check("seq_len", seq, MAX_SEQ)?,
        };
        if !h.dim.is_multiple_of(h.n_heads) || !h.n_heads.is_multiple_of(h.n_kv_heads) {
            return Err(Error::format(format!(
                "header: heads do not divide: dim {}, n_heads {}, n_kv_heads {}",
                h.dim, h.n_heads, h.n_kv_heads
            )));
        }
        if !h.head_size().is_multiple_of(2) {
            return Err(Error::format(format!(
                "header: head size {} is odd (RoPE rotates pairs)",
                h.head_size()
            )));
        }
        Ok(h)
    }

    /// The 7 ints as written, the sign of vocab_size included.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_BYTES] {
        let vocab = if self.shared_classifier {
            self.vocab_size as i32
        } else {
            -(self.vocab_size as i32)
        };
        let v = [
            self.dim as i32,
            self.hidden_dim as i32,
            self.n_layers as i32,
            self.n_heads as i32,
            self.n_kv_heads as i32,
            vocab,
            self.seq_len as i32,
        ];
        let mut out = [0u8; HEADER_BYTES];
        for (o, x) in out.chunks_exact_mut(4).zip(v) {
            o.copy_from_slice(&x.to_le_bytes());
        }
        out
    }

    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }

    /// The tensors in file order (section 1): 13, or 14 with an unshared classifier.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let (d, f, l, kv, v) = (
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.kv_dim(),
            self.vocab_size,
        );
        let t = |name, role, layers, rows, cols| TensorSpec {
            name,
            role,
            layers,
            rows,
            cols,
        };
        use Role::*;
        let mut out = vec![
            t("token_embedding", Matrix, 1, v, d),
            t("rms_att_weight", Float, l, 1, d),
            t("wq", Matrix, l, d, d),
            t("wk", Matrix, l, kv, d),
            t("wv", Matrix, l, kv, d),
            t("wo", Matrix, l, d, d),
            t("rms_ffn_weight", Float, l, 1, d),
            t("w1", Matrix, l, f, d),
            t("w2", Matrix, l, d, f),
            t("w3", Matrix, l, f, d),
            t("rms_final_weight", Float, 1, 1, d),
            t(
                "freq_cis_real",
                Float,
                1,
                self.seq_len,
                self.head_size() / 2,
            ),
            t(
                "freq_cis_imag",
                Float,
                1,
                self.seq_len,
                self.head_size() / 2,
            ),
        ];
        if !self.shared_classifier {
            out.push(t("wcls", Matrix, 1, v, d));
        }
        out
    }

    /// Bytes a tensor-by-tensor layout needs after the header and any magic, with `bytes_of`
    /// giving each tensor's stored size; None on overflow.
    pub fn payload_bytes(&self, bytes_of: impl Fn(&TensorSpec) -> Option<u64>) -> Option<u64> {
        self.tensors()
            .iter()
            .try_fold(0u64, |acc, t| acc.checked_add(bytes_of(t)?))
    }

    /// Size of the llama2.c checkpoint this header describes.
    pub fn checkpoint_bytes(&self) -> Option<u64> {
        self.payload_bytes(|t| n_u64(t)?.checked_mul(4))?
            .checked_add(HEADER_BYTES as u64)
    }

    pub fn describe(&self) -> String {
        format!(
            "dim {}, hidden {}, layers {}, heads {} (kv {}), vocab {}{}, seq_len {}",
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            if self.shared_classifier {
                ""
            } else {
                " (separate classifier)"
            },
            self.seq_len
        )
    }
}

/// Element count of a tensor as u64 (no overflow for checked headers, but checked anyway).
pub(crate) fn n_u64(t: &TensorSpec) -> Option<u64> {
    (t.layers as u64)
        .checked_mul(t.rows as u64)?
        .checked_mul(t.cols as u64)
}

/// Is `buf` a llama2.c checkpoint? It has no magic: it is one when its header is plausible and
/// the sizes that header implies add up to exactly the file's length. Err says why not.
pub(crate) fn detect(buf: &[u8]) -> std::result::Result<Header, String> {
    let h = Header::parse(buf).map_err(|e| format!("not a llama2.c checkpoint either ({e})"))?;
    match h.checkpoint_bytes() {
        Some(n) if n == buf.len() as u64 => Ok(h),
        Some(n) => Err(format!(
            "read as a llama2.c checkpoint ({}), the header implies {n} bytes but the file has {}",
            h.describe(),
            buf.len()
        )),
        None => Err("not a llama2.c checkpoint either (sizes overflow)".to_string()),
    }
}

/// A tokenizer.bin: (bytes, score) per token. (Its max_token_length, with which llama2.c sizes
/// a buffer, is read past: tmac does not need it.)
pub(crate) struct TokenizerBin {
    pub tokens: Vec<(Vec<u8>, f32)>,
}

/// Read a tokenizer.bin for a model of `n_vocab` tokens (the file does not store the count).
/// The file must hold exactly that many tokens.
pub(crate) fn read_tokenizer(buf: &[u8], n_vocab: usize) -> Result<TokenizerBin> {
    let mut r = Reader::new(buf);
    r.u32("max_token_length")?;
    // each token takes at least 8 bytes: never reserve more than the file can hold
    let mut tokens = Vec::with_capacity(n_vocab.min(buf.len() / 8));
    for i in 0..n_vocab {
        let what = format!("token {i} of {n_vocab}");
        let score = r.f32(&what)?;
        let len = r.i32(&what)?;
        if len < 0 {
            return Err(Error::format(format!("{what}: negative length {len}")));
        }
        if !score.is_finite() {
            return Err(Error::format(format!("{what}: score is {score}")));
        }
        let bytes = r.bytes(len as usize, &what)?;
        tokens.push((bytes.to_vec(), score));
    }
    if r.remaining() != 0 {
        return Err(Error::format(format!(
            "{} bytes follow the {n_vocab} tokens the model has (a tokenizer for another model?)",
            r.remaining()
        )));
    }
    Ok(TokenizerBin { tokens })
}

/// Write a tokenizer.bin: max_token_length, then score, length and bytes of each token.
pub fn write_tokenizer(tokens: &[(Vec<u8>, f32)]) -> Vec<u8> {
    let max = tokens.iter().map(|(t, _)| t.len()).max().unwrap_or(0) as u32;
    let mut out = max.to_le_bytes().to_vec();
    for (t, s) in tokens {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&(t.len() as i32).to_le_bytes());
        out.extend_from_slice(t);
    }
    out
}
