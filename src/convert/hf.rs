//! Hugging Face checkpoints of trained ternary models (BitNet b1.58 2B-4T, 1bitLLM's
//! bitnet_b1_58, Falcon3 1.58-bit): safetensors + config.json + tokenizer.json, read as a GGUF
//! in memory so that `tmac quantize` converts them like any GGUF.
//!
//! The GGUF is what llama.cpp's converter would write, with the ternary matrices kept exact:
//! - `BitnetForCausalLM` / `BitNetForCausalLM` become arch `bitnet` (sub-norms, NEOX RoPE: no
//!   Q/K permutation); `LlamaForCausalLM` with `quantization_config.quant_method = "bitnet"`
//!   (Falcon3 1.58-bit) becomes arch `llama`, Q and K rows permuted as llama.cpp does.
//! - Packed uint8 weights (4 codes per byte along the output dimension, transformers'
//!   `unpack_weights`) with their `weight_scale`: the real weight is code - 1 divided by
//!   weight_scale for `linear_class` "bitlinear" (the default, 2B-4T; llama.cpp's converter
//!   does the same: "the scale is inverted"), multiplied by it for "autobitlinear".
//!   Full-precision weights (1bitLLM) are ternarized by absmean, as BitNet does at inference.
//!   Either way they are stored as I2_S (codes and an f32 scale, exact).
//! - Embedding and head in their own dtype (F32, F16, BF16); norms as F32.
//! - The byte-level BPE vocabulary of tokenizer.json (Llama 3, Qwen2 or GPT-2 pre-tokenizer),
//!   padded to the embedding's rows with `[PADn]` tokens; BOS/EOS, add_bos and the chat template
//!   from tokenizer_config.json and config.json.

use crate::bytes::{map_file, Bytes};
use crate::error::{Error, Result};
use crate::format::gguf::{Array, Value};
use crate::format::gguf_write::GgufWriter;
use crate::format::json::Json;
use crate::format::safetensors::{self, Dtype, Safetensors, Tensor};
use crate::layout::ggml::GgmlType;
use crate::layout::ternary::{self, Ternary};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Llama 3's pre-tokenizer regex as tokenizer.json holds it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: the same with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Sizes above this in config.json are refused.
const MAX_DIM: u64 = 1 << 20;

/// Is `path` a Hugging Face model: a directory (with config.json), or a `.safetensors` file?
pub(crate) fn is_hf(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "safetensors")
}

/// The Hugging Face model at `path` (a directory, or one of its `.safetensors` files) as GGUF
/// bytes. Errors name the directory and the file or tensor at fault.
pub(crate) fn to_gguf(path: &Path) -> Result<Vec<u8>> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let file = (!path.is_dir()).then_some(path);
    convert(&dir, file).map_err(|e| e.context(dir.display()))
}

fn read_json(path: &Path) -> Result<Json> {
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Io,
            format!("{name}: cannot read: {e}"),
        )
    })?;
    Json::parse(&bytes).map_err(|e| e.context(&name))
}

/// The safetensors files of the model, their maps and parsed headers.
struct Files {
    maps: Vec<Arc<Bytes>>,
    st: Vec<Safetensors>,
    used: std::collections::HashSet<String>,
}

impl Files {
    fn open(dir: &Path, file: Option<&Path>) -> Result<Files> {
        let paths: Vec<PathBuf> = if let Some(f) = file {
            vec![f.to_path_buf()]
        } else if dir.join("model.safetensors.index.json").is_file() {
            let idx = read_json(&dir.join("model.safetensors.index.json"))?;
            let map = idx
                .get("weight_map")
                .and_then(Json::as_object)
                .ok_or_else(|| Error::format("model.safetensors.index.json: no weight_map"))?;
            let mut v: Vec<PathBuf> = Vec::new();
            for (_, f) in map {
                let f = f
                    .as_str()
                    .filter(|f| {
                        !f.contains('/') && !f.contains('\\') && f.ends_with(".safetensors")
                    })
                    .ok_or_else(|| {
                        Error::format("model.safetensors.index.json: bad file name in weight_map")
                    })?;
                if !v.iter().any(|p| p.file_name().is_some_and(|n| n == f)) {
                    v.push(dir.join(f));
                }
            }
            v
        } else {
            vec![dir.join("model.safetensors")]
        };
        let mut maps = Vec::new();
        let mut st = Vec::new();
        for p in paths {
            let name = p
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            let m = map_file(&p)?;
            st.push(Safetensors::parse(m.as_slice()).map_err(|e| e.context(&name))?);
            maps.push(m);
        }
        Ok(Files {
            maps,
            st,
            used: Default::default(),
        })
    }

    /// Tensor `name` and the bytes of its file.
    fn get(&mut self, name: &str) -> Option<(Tensor, Arc<Bytes>)> {
        for (s, m) in self.st.iter().zip(&self.maps) {
            if let Some(t) = s.tensor(name) {
                self.used.insert(name.to_string());
                return Some((t.clone(), m.clone()));
            }
        }
        None
    }

    fn require(&mut self, name: &str) -> Result<(Tensor, Arc<Bytes>)> {
        self.get(name)
            .ok_or_else(|| Error::format(format!("missing tensor {name}")))
    }

    /// A float tensor of the given shape as f32.
    fn floats(&mut self, name: &str, shape: &[u64]) -> Result<Vec<f32>> {
        let (t, m) = self.require(name)?;
        check_shape(&t, shape)?;
        safetensors::floats(&t, m.as_slice())
    }
}

fn check_shape(t: &Tensor, want: &[u64]) -> Result<()> {
    if t.shape != want {
        return Err(Error::format(format!(
            "tensor {} has shape {:?}, expected {want:?}",
            t.name, t.shape
        )));
    }
    Ok(())
}

struct Hparams {
    arch: &'static str,
    n_embd: u64,
    n_ff: u64,
    n_layer: u64,
    n_head: u64,
    n_head_kv: u64,
    head_dim: u64,
    n_ctx: u64,
    eps: f32,
    rope_theta: f32,
    act: String,
    tied: bool,
    /// weight_scale divides (BitLinear) rather than multiplies (AutoBitLinear).
    divide: bool,
}

fn hparams(c: &Json) -> Result<Hparams> {
    let num = |k: &str| -> Result<Option<u64>> {
        match c.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= MAX_DIM => Ok(Some(n)),
                _ => Err(Error::format(format!("config.json: {k} is not a size"))),
            },
        }
    };
    let req = |k: &str| -> Result<u64> {
        num(k)?.ok_or_else(|| Error::format(format!("config.json: {k} is missing")))
    };
    let arch_name = c
        .get("architectures")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str)
        .unwrap_or("");
    let quant = c.get("quantization_config");
    let quant_method = quant
        .and_then(|q| q.get("quant_method"))
        .and_then(Json::as_str);
    let model_type = c.get("model_type").and_then(Json::as_str);
    let arch = match arch_name {
        "BitnetForCausalLM" | "BitNetForCausalLM" => "bitnet",
        "LlamaForCausalLM" if quant_method == Some("bitnet") => "llama",
        _ if model_type == Some("bitnet") => "bitnet",
        a => {
            return Err(Error::unsupported(format!(
                "config.json: architecture '{a}' is not a ternary (BitNet b1.58) model; tmac \
                 reads BitNet models and Llama models with BitNet weights from Hugging Face \
                 files, anything else from GGUF (llama.cpp's convert_hf_to_gguf.py)"
            )))
        }
    };
    let divide = match quant
        .and_then(|q| q.get("linear_class"))
        .and_then(Json::as_str)
    {
        None | Some("bitlinear") => true,
        Some("autobitlinear") => false,
        Some(other) => {
            return Err(Error::unsupported(format!(
                "config.json: quantization_config.linear_class '{other}'"
            )))
        }
    };
    if quant
        .and_then(|q| q.get("use_rms_norm"))
        .and_then(Json::as_bool)
        == Some(true)
    {
        return Err(Error::unsupported(
            "config.json: quantization_config.use_rms_norm (an RMSNorm inside every BitLinear)",
        ));
    }
    if let Some(r) = c.get("rope_scaling").filter(|r| !r.is_null()) {
        let linear1 = r.get("type").and_then(Json::as_str) == Some("linear")
            && r.get("factor").and_then(Json::as_f64) == Some(1.0);
        if !linear1 {
            return Err(Error::unsupported("config.json: rope_scaling"));
        }
    }
    let n_embd = req("hidden_size")?;
    let n_head = req("num_attention_heads")?;
    let n_head_kv = num("num_key_value_heads")?.unwrap_or(n_head);
    let head_dim = num("head_dim")?.unwrap_or(n_embd / n_head);
    if n_head % n_head_kv != 0 || head_dim % 2 != 0 || head_dim == 0 {
        return Err(Error::format(format!(
            "config.json: {n_head} heads, {n_head_kv} kv heads, head size {head_dim}"
        )));
    }
    let float = |k: &str, default: f64| -> Result<f32> {
        match c.get(k) {
            None | Some(Json::Null) => Ok(default as f32),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| x as f32)
                .ok_or_else(|| Error::format(format!("config.json: {k} is not a number"))),
        }
    };
    let act = c
        .get("hidden_act")
        .and_then(Json::as_str)
        .unwrap_or("silu")
        .to_ascii_lowercase();
    if !matches!(act.as_str(), "silu" | "relu2") {
        return Err(Error::unsupported(format!(
            "config.json: hidden_act '{act}'"
        )));
    }
    Ok(Hparams {
        arch,
        n_embd,
        n_ff: req("intermediate_size")?,
        n_layer: req("num_hidden_layers")?,
        n_head,
        n_head_kv,
        head_dim,
        n_ctx: num("max_position_embeddings")?.unwrap_or(2048),
        eps: float("rms_norm_eps", if arch == "bitnet" { 1e-5 } else { 1e-6 })?,
        rope_theta: float("rope_theta", 10000.0)?,
        act,
        tied: c
            .get("tie_word_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(true),
        divide,
    })
}

struct Tok {
    tokens: Vec<Vec<u8>>,
    types: Vec<i32>,
    merges: Vec<Vec<u8>>,
    pre: &'static str,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    template: Option<String>,
}

/// The pre-tokenizer name llama.cpp gives tokenizer.json's `pre_tokenizer`.
fn pre_name(pt: Option<&Json>) -> Result<&'static str> {
    let unsupported = |what: &str| {
        Err(Error::unsupported(format!(
            "tokenizer.json: pre-tokenizer {what} is not supported (tmac knows Llama 3, Qwen2 \
             and GPT-2 byte-level splitting)"
        )))
    };
    let Some(pt) = pt.filter(|p| !p.is_null()) else {
        return unsupported("none");
    };
    let items: Vec<&Json> = match pt.get("type").and_then(Json::as_str) {
        Some("Sequence") => pt
            .get("pretokenizers")
            .and_then(Json::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![pt],
    };
    let (mut regex, mut byte_regex, mut byte_level) = (None, false, false);
    for it in items {
        match it.get("type").and_then(Json::as_str) {
            Some("Split") => {
                let r = it
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Json::as_str);
                if regex.is_some() || r.is_none() {
                    return unsupported("with several or non-regex Split steps");
                }
                regex = r;
            }
            Some("ByteLevel") => {
                byte_level = true;
                byte_regex = it.get("use_regex").and_then(Json::as_bool).unwrap_or(true);
            }
            Some(t) => return unsupported(t),
            None => return unsupported("without a type"),
        }
    }
    match (regex, byte_level, byte_regex) {
        (Some(LLAMA3_REGEX), true, false) => Ok("llama-bpe"),
        (Some(QWEN2_REGEX), true, false) => Ok("qwen2"),
        (None, true, true) => Ok("gpt-2"),
        (Some(r), ..) => unsupported(&format!("regex {r:?}")),
        _ => unsupported("without byte-level splitting"),
    }
}

/// The text of a special token in tokenizer_config.json ("<s>" or {"content": "<s>"}).
fn token_text(v: Option<&Json>) -> Option<&str> {
    let v = v?;
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

fn tokenizer(dir: &Path, config: &Json, n_rows: usize) -> Result<Tok> {
    let tj = read_json(&dir.join("tokenizer.json"))?;
    let tc = if dir.join("tokenizer_config.json").is_file() {
        read_json(&dir.join("tokenizer_config.json"))?
    } else {
        Json::Obj(Vec::new())
    };
    let e = |m: String| Error::format(format!("tokenizer.json: {m}"));
    let model = tj.get("model").ok_or_else(|| e("no model".into()))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(Error::unsupported(
            "tokenizer.json: only BPE vocabularies are supported",
        ));
    }
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true)
        || tj.get("normalizer").is_some_and(|n| !n.is_null())
    {
        return Err(Error::unsupported(
            "tokenizer.json: SentencePiece-style vocabularies (byte fallback, normalizer) are \
             not read from Hugging Face files; convert the model with llama.cpp's \
             convert_hf_to_gguf.py (F16/F32 ternary GGUF is accepted) instead",
        ));
    }
    let pre = pre_name(tj.get("pre_tokenizer"))?;
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| e("model.vocab is not an object".into()))?;
    let added = tj
        .get("added_tokens")
        .and_then(Json::as_array)
        .unwrap_or(&[]);
    let mut slots: Vec<Option<(Vec<u8>, i32)>> = vec![None; n_rows];
    let mut put = |id: Option<u64>, text: &str, typ: i32| -> Result<()> {
        let id = id.ok_or_else(|| e(format!("token {text:?} has no id")))? as usize;
        let slot = slots.get_mut(id).ok_or_else(|| {
            e(format!(
                "token id {id} is beyond the embedding's {n_rows} rows"
            ))
        })?;
        *slot = Some((text.as_bytes().to_vec(), typ));
        Ok(())
    };
    for (text, id) in vocab {
        put(id.as_u64(), text, 1)?;
    }
    for a in added {
        let text = a
            .get("content")
            .and_then(Json::as_str)
            .ok_or_else(|| e("added token without content".into()))?;
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
        put(
            a.get("id").and_then(Json::as_u64),
            text,
            if special { 3 } else { 4 },
        )?;
    }
    let (mut tokens, mut types) = (Vec::with_capacity(n_rows), Vec::with_capacity(n_rows));
    for (i, s) in slots.into_iter().enumerate() {
        let (t, ty) = s.unwrap_or_else(|| (format!("[PAD{i}]").into_bytes(), 5));
        tokens.push(t);
        types.push(ty);
    }
    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| e("model.merges is missing".into()))?
        .iter()
        .map(|m| match m {
            Json::Str(s) => Some(s.as_bytes().to_vec()),
            Json::Arr(p) => match p.as_slice() {
                [Json::Str(a), Json::Str(b)] => Some(format!("{a} {b}").into_bytes()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| e("a merge is neither \"a b\" nor [a, b]".into()))?;
    let id_of = |text: &str| {
        tokens
            .iter()
            .position(|t| t == text.as_bytes())
            .map(|i| i as u32)
    };
    let config_id = |k: &str| {
        let v = config.get(k)?;
        v.as_u64()
            .or_else(|| v.as_array()?.first()?.as_u64())
            .filter(|&i| (i as usize) < n_rows)
            .map(|i| i as u32)
    };
    let special = |k: &str, ck: &str| {
        token_text(tc.get(k))
            .and_then(id_of)
            .or_else(|| config_id(ck))
    };
    let bos = special("bos_token", "bos_token_id");
    let eos = special("eos_token", "eos_token_id");
    // add_bos: tokenizer_config.json says, or the post-processor's template starts with BOS
    let add_bos = match tc.get("add_bos_token").and_then(Json::as_bool) {
        Some(b) => b,
        None => {
            bos.is_some_and(|b| template_starts_with(tj.get("post_processor"), &tokens[b as usize]))
        }
    };
    let template = match tc.get("chat_template") {
        Some(Json::Str(s)) => Some(s.clone()),
        Some(Json::Arr(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_string),
        _ => None,
    };
    Ok(Tok {
        tokens,
        types,
        merges,
        pre,
        bos,
        eos,
        add_bos,
        template,
    })
}

/// Does a TemplateProcessing post-processor (possibly inside a Sequence) put `bos` first?
fn template_starts_with(pp: Option<&Json>, bos: &[u8]) -> bool {
    let Some(pp) = pp else { return false };
    match pp.get("type").and_then(Json::as_str) {
        Some("Sequence") => pp
            .get("processors")
            .and_then(Json::as_array)
            .is_some_and(|a| a.iter().any(|p| template_starts_with(Some(p), bos))),
        Some("TemplateProcessing") => pp
            .get("single")
            .and_then(Json::as_array)
            .and_then(|s| s.first())
            .and_then(|f| f.get("SpecialToken"))
            .and_then(|t| t.get("id"))
            .and_then(Json::as_str)
            .is_some_and(|id| id.as_bytes() == bos),
        _ => false,
    }
}

/// GGUF type id of a float dtype.
fn ggml_float(t: &Tensor) -> Result<u32> {
    Ok(match t.dtype {
        Dtype::F32 => GgmlType::F32.id(),
        Dtype::F16 => GgmlType::F16.id(),
        Dtype::BF16 => GgmlType::BF16.id(),
        d => {
            return Err(Error::unsupported(format!(
                "tensor {}: dtype {d:?} (expected F32, F16 or BF16)",
                t.name
            )))
        }
    })
}

/// Llama's Q/K row order for ggml's adjacent-pair RoPE (llama.cpp's `LlamaModel.permute`):
/// within each head, row j * hd/2 + i moves to i * 2 + j.
fn permute_rows(t: &mut Ternary, n_head: usize) {
    let (rows, cols) = (t.rows, t.cols);
    let hd = rows / n_head;
    let mut out = vec![0u8; t.codes.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = h * hd + j * (hd / 2) + i;
                let dst = h * hd + i * 2 + j;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.codes[src * cols..(src + 1) * cols]);
            }
        }
    }
    t.codes = out;
}

fn ternary_weight(
    f: &mut Files,
    hp: &Hparams,
    base: &str,
    rows: u64,
    cols: u64,
) -> Result<Ternary> {
    let name = format!("{base}.weight");
    let (t, m) = f.require(&name)?;
    let (r, c) = (rows as usize, cols as usize);
    if t.dtype == Dtype::U8 {
        if !rows.is_multiple_of(4) {
            return Err(Error::format(format!(
                "{name}: {rows} rows cannot be packed 4 per byte"
            )));
        }
        check_shape(&t, &[rows / 4, cols])?;
        let codes = ternary::hf_codes(&m.as_slice()[t.offset..t.offset + t.size], r / 4, c)
            .map_err(|e| e.context(&name))?;
        let sname = format!("{base}.weight_scale");
        let (st, sm) = f.require(&sname)?;
        if st.n_elements() != 1 {
            return Err(Error::format(format!("{sname} should hold one value")));
        }
        let ws = safetensors::floats(&st, sm.as_slice())?[0];
        let scale = if hp.divide { 1.0 / ws } else { ws };
        if !scale.is_finite() {
            return Err(Error::format(format!("{sname} is {ws}")));
        }
        Ok(Ternary {
            rows: r,
            cols: c,
            codes,
            scale,
        })
    } else if t.dtype.is_float() {
        // full-precision master weights (1bitLLM, online quantization): ternarize as BitNet does
        let w = f.floats(&name, &[rows, cols])?;
        Ok(ternary::absmean(&w, r, c))
    } else {
        Err(Error::unsupported(format!("{name}: dtype {:?}", t.dtype)))
    }
}

fn convert(dir: &Path, file: Option<&Path>) -> Result<Vec<u8>> {
    let config = read_json(&dir.join("config.json"))?;
    let hp = hparams(&config)?;
    let mut f = Files::open(dir, file)?;
    let (embd, emap) = f.require("model.embed_tokens.weight")?;
    let n_rows = match embd.shape.as_slice() {
        [r, c] if *c == hp.n_embd && *r > 0 => *r,
        _ => {
            return Err(Error::format(format!(
                "model.embed_tokens.weight has shape {:?}, expected [vocab, {}]",
                embd.shape, hp.n_embd
            )))
        }
    };
    let tok = tokenizer(dir, &config, n_rows as usize)?;

    let a = hp.arch;
    let mut w = GgufWriter::new(32);
    let k = |s: &str| format!("{a}.{s}");
    let u = |v: u64| Value::U32(v as u32);
    w.set_str("general.architecture", a);
    w.set(&k("context_length"), u(hp.n_ctx));
    w.set(&k("embedding_length"), u(hp.n_embd));
    w.set(&k("feed_forward_length"), u(hp.n_ff));
    w.set(&k("block_count"), u(hp.n_layer));
    w.set(&k("attention.head_count"), u(hp.n_head));
    w.set(&k("attention.head_count_kv"), u(hp.n_head_kv));
    w.set(&k("attention.layer_norm_rms_epsilon"), Value::F32(hp.eps));
    w.set(&k("rope.freq_base"), Value::F32(hp.rope_theta));
    w.set(&k("rope.dimension_count"), u(hp.head_dim));
    w.set_str(&k("hidden_activation"), &hp.act);
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", tok.pre);
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::Str(tok.tokens)),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(tok.types)),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::Str(tok.merges)),
    );
    if let Some(b) = tok.bos {
        w.set("tokenizer.ggml.bos_token_id", Value::U32(b));
    }
    if let Some(e) = tok.eos {
        w.set("tokenizer.ggml.eos_token_id", Value::U32(e));
    }
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(tok.add_bos));
    if let Some(t) = &tok.template {
        w.set_str("tokenizer.chat_template", t);
    }

    let raw = |t: &Tensor, m: &Arc<Bytes>| m.as_slice()[t.offset..t.offset + t.size].to_vec();
    w.add_tensor(
        "token_embd.weight",
        &[hp.n_embd, n_rows],
        ggml_float(&embd)?,
        raw(&embd, &emap),
    );
    drop(emap);
    let (d, ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
    let (q, kv) = (hp.n_head * hd, hp.n_head_kv * hd);
    let bitnet = a == "bitnet";
    for l in 0..hp.n_layer {
        let hf = |s: &str| format!("model.layers.{l}.{s}");
        let gg = |s: &str| format!("blk.{l}.{s}");
        let norm = |w: &mut GgufWriter, f: &mut Files, names: &[&str], to: &str, n: u64| {
            let name = names
                .iter()
                .map(|s| hf(s))
                .find(|s| f.st.iter().any(|st| st.tensor(s).is_some()))
                .unwrap_or_else(|| hf(names[0]));
            let v = f.floats(&name, &[n])?;
            w.add_f32(&gg(to), &[n], &v);
            Ok::<(), Error>(())
        };
        let matrix = |w: &mut GgufWriter,
                      f: &mut Files,
                      from: &str,
                      to: &str,
                      r: u64,
                      c: u64,
                      heads: u64| {
            let mut t = ternary_weight(f, &hp, &hf(from), r, c)?;
            if !bitnet && heads > 0 {
                permute_rows(&mut t, heads as usize);
            }
            if t.codes.len() % ternary::I2S_BLOCK == 0 {
                w.add_tensor(
                    &gg(to),
                    &[c, r],
                    GgmlType::I2S.id(),
                    ternary::encode_i2s(&t.codes, t.scale),
                );
            } else {
                w.add_f32(&gg(to), &[c, r], &t.to_f32());
            }
            Ok::<(), Error>(())
        };
        norm(
            &mut w,
            &mut f,
            &["input_layernorm.weight"],
            "attn_norm.weight",
            d,
        )?;
        matrix(
            &mut w,
            &mut f,
            "self_attn.q_proj",
            "attn_q.weight",
            q,
            d,
            hp.n_head,
        )?;
        matrix(
            &mut w,
            &mut f,
            "self_attn.k_proj",
            "attn_k.weight",
            kv,
            d,
            hp.n_head_kv,
        )?;
        matrix(
            &mut w,
            &mut f,
            "self_attn.v_proj",
            "attn_v.weight",
            kv,
            d,
            0,
        )?;
        matrix(
            &mut w,
            &mut f,
            "self_attn.o_proj",
            "attn_output.weight",
            d,
            q,
            0,
        )?;
        if bitnet {
            let names = [
                "self_attn.attn_sub_norm.weight",
                "self_attn.inner_attn_ln.weight",
            ];
            norm(&mut w, &mut f, &names, "attn_sub_norm.weight", q)?;
        }
        norm(
            &mut w,
            &mut f,
            &["post_attention_layernorm.weight"],
            "ffn_norm.weight",
            d,
        )?;
        matrix(&mut w, &mut f, "mlp.gate_proj", "ffn_gate.weight", ff, d, 0)?;
        matrix(&mut w, &mut f, "mlp.up_proj", "ffn_up.weight", ff, d, 0)?;
        matrix(&mut w, &mut f, "mlp.down_proj", "ffn_down.weight", d, ff, 0)?;
        if bitnet {
            let names = ["mlp.ffn_sub_norm.weight", "mlp.ffn_layernorm.weight"];
            norm(&mut w, &mut f, &names, "ffn_sub_norm.weight", ff)?;
        }
    }
    let v = f.floats("model.norm.weight", &[d])?;
    w.add_f32("output_norm.weight", &[d], &v);
    if !hp.tied {
        let (t, m) = f.require("lm_head.weight")?;
        check_shape(&t, &[n_rows, d])?;
        w.add_tensor("output.weight", &[d, n_rows], ggml_float(&t)?, raw(&t, &m));
    }
    // everything in the files must have been used (as llama.cpp's converter insists)
    let unused =
        f.st.iter()
            .flat_map(|s| s.tensors.iter())
            .map(|t| t.name.as_str())
            .find(|n| {
                !(f.used.contains(*n)
                    || n.ends_with("rotary_emb.inv_freq")
                    || (hp.tied && *n == "lm_head.weight"))
            });
    if let Some(n) = unused {
        return Err(Error::unsupported(format!("unexpected tensor {n}")));
    }
    Ok(w.into_bytes())
}
