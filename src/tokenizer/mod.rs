//! Tokenizers built from a model's vocabulary: byte-level BPE (`gpt2`) and SentencePiece-style
//! BPE (`llama`), with special tokens, BOS/EOS rules and chat templates as the GGUF describes
//! them, matching llama.cpp token for token.

mod bpe;
pub(crate) mod chat;
pub(crate) mod pretok;
mod spm;
pub(crate) mod stream;
mod symbols;
pub(crate) mod unicode;
mod unicode_data;

use crate::error::{Error, Result};
use crate::format::gguf::{Array, Gguf};
pub(crate) use chat::ChatTemplate;
use pretok::PreTok;
use std::collections::HashMap;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    pub fn from_gguf(v: i64) -> TokenType {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
    fn is_special(self) -> bool {
        matches!(
            self,
            TokenType::Control | TokenType::UserDefined | TokenType::Unknown
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Byte-level BPE with this pre-tokenizer.
    Bpe(PreTok),
    /// SentencePiece-style, with `<0xNN>` byte fallback.
    Spm,
}

/// What a vocabulary is made of, whatever file it came from.
pub struct VocabSpec {
    pub model: Model,
    pub tokens: Vec<Vec<u8>>,
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    pub merges: Vec<Vec<u8>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub chat_template: Option<String>,
}

#[derive(Clone)]
pub struct Vocab {
    pub model: Model,
    tokens: Vec<Box<[u8]>>,
    scores: Vec<f32>,
    types: Vec<TokenType>,
    ids: HashMap<Box<[u8]>, u32>,
    merges: HashMap<Box<[u8]>, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Tokens that end a generation (EOS, end-of-turn and the like).
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    add_space_prefix: bool,
    /// Special tokens, longest text first, for splitting them out of raw text.
    special: Vec<u32>,
    /// What each token prints as (control tokens print nothing).
    pieces: Vec<Box<[u8]>>,
    byte_tokens: [Option<u32>; 256],
    pub chat: ChatTemplate,
}

// End-of-generation tokens llama.cpp recognises by their text (llama-vocab.cpp), with Qwen's
// fill-in-the-middle separators.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "</s>",
    "<eos>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

impl Vocab {
    /// Read `tokenizer.ggml.*` from a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Vocab> {
        let model_name = g.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
            Error::format("missing metadata key tokenizer.ggml.model (no tokenizer in file)")
        })?;
        let tokens = strings(g, "tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::format("missing metadata key tokenizer.ggml.tokens"))?;
        let n = tokens.len();
        let (model, add_space_prefix, add_bos) = match model_name {
            "gpt2" => {
                // bitnet.cpp's converters write no pre-tokenizer for BitNet b1.58 2B-4T, whose
                // vocabulary is Llama 3's: split it as Llama 3 does (llama.cpp falls back to
                // its 'default' splitting and warns that quality degrades)
                let llama3_vocab = || tokens.iter().any(|t| t == b"<|begin_of_text|>");
                let pre = match g.get_str("tokenizer.ggml.pre")? {
                    Some(p) => p,
                    None if llama3_vocab() => "llama-bpe",
                    None => "default",
                };
                let pt = PreTok::from_name(pre).ok_or_else(|| {
                    Error::unsupported(format!("pre-tokenizer '{pre}' is not supported"))
                })?;
                (Model::Bpe(pt), false, pt == PreTok::Llama3)
            }
            "llama" => (Model::Spm, true, true),
            other => return Err(Error::unsupported(format!("tokenizer model '{other}'"))),
        };
        let scores = match g.get_array("tokenizer.ggml.scores")? {
            None => vec![0.0; n],
            Some(a) => (0..n)
                .map(|i| a.f32_at(i))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| Error::format("tokenizer.ggml.scores is shorter than the vocab"))?,
        };
        let types = match g.get_array("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n],
            Some(a) => (0..n)
                .map(|i| a.i64_at(i).map(TokenType::from_gguf))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::format("tokenizer.ggml.token_type is shorter than the vocab")
                })?,
        };
        let merges = match model {
            Model::Bpe(_) => strings(g, "tokenizer.ggml.merges")?
                .ok_or_else(|| Error::format("missing metadata key tokenizer.ggml.merges"))?,
            Model::Spm => Vec::new(),
        };
        let id = |key: &str| -> Result<Option<u32>> {
            Ok(g.get_u64(key)?.filter(|&v| v < n as u64).map(|v| v as u32))
        };
        Vocab::new(VocabSpec {
            model,
            tokens,
            scores,
            types,
            merges,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            add_bos: g
                .get_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(add_bos),
            add_eos: g.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            add_space_prefix: g
                .get_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(add_space_prefix),
            chat_template: g.get_str("tokenizer.chat_template")?.map(str::to_string),
        })
    }

    pub fn new(spec: VocabSpec) -> Result<Vocab> {
        let n = spec.tokens.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(Error::format(format!("vocabulary of {n} tokens")));
        }
        if spec.scores.len() != n || spec.types.len() != n {
            return Err(Error::format(
                "token scores or types do not match the vocabulary size",
            ));
        }
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in spec.tokens.iter().enumerate() {
            // later duplicates win, as in llama.cpp's token_to_id map
            ids.insert(t.clone().into_boxed_slice(), i as u32);
        }
        let mut merges = HashMap::with_capacity(spec.merges.len());
        let mut key = Vec::new();
        for (rank, m) in spec.merges.iter().enumerate() {
            // "left right", split at the first space after the first byte
            let Some(sp) = m.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            bpe::merge_key(&mut key, &m[..sp], &m[sp + 1..]);
            merges
                .entry(key.clone().into_boxed_slice())
                .or_insert(rank as u32);
        }
        let mut types = spec.types;
        let mut eog: Vec<u32> = Vec::new();
        for text in EOG_TEXTS {
            if let Some(&id) = ids.get(text.as_bytes()) {
                // llama.cpp promotes these to control tokens even where the file says otherwise
                types[id as usize] = TokenType::Control;
                eog.push(id);
            }
        }
        if let Some(e) = spec.eos {
            eog.push(e);
        }
        eog.sort_unstable();
        eog.dedup();
        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&i| types[i as usize].is_special())
            .collect();
        special.sort_by_key(|&i| std::cmp::Reverse(spec.tokens[i as usize].len()));
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = ids.get(format!("<0x{b:02X}>").as_bytes()).copied();
        }
        let pieces = (0..n)
            .map(|i| piece_of(spec.model, &spec.tokens[i], types[i]).into_boxed_slice())
            .collect();
        let chat = ChatTemplate::detect(spec.chat_template.as_deref(), |t| {
            ids.contains_key(t.as_bytes())
        });
        Ok(Vocab {
            model: spec.model,
            tokens: spec.tokens.into_iter().map(Vec::into_boxed_slice).collect(),
            scores: spec.scores,
            types,
            ids,
            merges,
            bos: spec.bos,
            eos: spec.eos,
            eog,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            add_space_prefix: spec.add_space_prefix,
            special,
            pieces,
            byte_tokens,
            chat,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn id(&self, text: &[u8]) -> Option<u32> {
        self.ids.get(text).copied()
    }
    pub fn text(&self, id: u32) -> &[u8] {
        &self.tokens[id as usize]
    }
    pub fn token_type(&self, id: u32) -> TokenType {
        self.types[id as usize]
    }
    pub fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    fn byte_token(&self, b: u8) -> Option<u32> {
        self.byte_tokens[b as usize].or_else(|| self.id(&[b]))
    }
    /// The bytes a token prints as. Control tokens print as nothing.
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], |p| p)
    }

    /// Tokenize `text`. `add_special` adds BOS/EOS as the model asks; `parse_special` turns
    /// control-token text such as `<|im_start|>` into the control token (as llama.cpp's
    /// parse_special; user text should not, or a user could forge a turn). User-defined
    /// tokens are split out either way, as llama.cpp does.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let plain = if parse_special { 0..0 } else { 0..text.len() };
        self.encode_marked(text, &[plain], add_special)
    }

    /// Tokenize `text` parsing control tokens everywhere but in the byte ranges `plain` (a chat
    /// template's markup around the user's plain text, tokenized as one text).
    pub fn encode_marked(&self, text: &str, plain: &[Range<usize>], add_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for frag in self.split_special(text, plain) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match self.model {
                        Model::Bpe(pt) => {
                            for word in pt.split(t) {
                                bpe::encode_word(self, word, pt.ignores_merges(), &mut out);
                            }
                        }
                        Model::Spm => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if self.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            spm::encode(self, &s.replace(' ', spm::SPACE), &mut out);
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Split special-token text out of `text`, longest special token first; a control token
    /// is not split out where it overlaps a range in `plain`.
    fn split_special<'t>(&self, text: &'t str, plain: &[Range<usize>]) -> Vec<Fragment<'t>> {
        let mut frags = if text.is_empty() {
            vec![]
        } else {
            vec![Fragment::Text(text)]
        };
        let offset = |t: &str| t.as_ptr() as usize - text.as_ptr() as usize;
        let in_plain = |a: usize, b: usize| plain.iter().any(|r| a < r.end && r.start < b);
        for &id in &self.special {
            let user_defined = self.types[id as usize] == TokenType::UserDefined;
            let Ok(pat) = std::str::from_utf8(&self.tokens[id as usize]) else {
                continue;
            };
            if pat.is_empty()
                || !frags
                    .iter()
                    .any(|f| matches!(f, Fragment::Text(t) if t.contains(pat)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(mut t) = f else {
                    next.push(f);
                    continue;
                };
                let mut from = 0;
                while let Some(at) = t[from..].find(pat).map(|i| from + i) {
                    let start = offset(t) + at;
                    if !user_defined && in_plain(start, start + pat.len()) {
                        from = at + 1; // plain text here: look further on
                        while !t.is_char_boundary(from) {
                            from += 1;
                        }
                        continue;
                    }
                    if at > 0 {
                        next.push(Fragment::Text(&t[..at]));
                    }
                    next.push(Fragment::Token(id));
                    t = &t[at + pat.len()..];
                    from = 0;
                }
                if !t.is_empty() {
                    next.push(Fragment::Text(t));
                }
            }
            frags = next;
        }
        frags
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// What a token prints as, as llama.cpp's `token_to_piece` renders it without special tokens.
fn piece_of(model: Model, text: &[u8], ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unknown | TokenType::Unused => Vec::new(),
        TokenType::UserDefined => text.to_vec(),
        TokenType::Byte => {
            // "<0xNN>"
            let hex = std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.strip_prefix("<0x")?.strip_suffix('>'));
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => vec![b],
                None => text.to_vec(),
            }
        }
        TokenType::Normal => match model {
            // bytes, not text: a token may hold part of a character (llama.cpp's unescape)
            Model::Spm => {
                let (mut out, mut i) = (Vec::with_capacity(text.len()), 0);
                while i < text.len() {
                    if text[i..].starts_with(spm::SPACE.as_bytes()) {
                        out.push(b' ');
                        i += spm::SPACE.len();
                    } else {
                        out.push(text[i]);
                        i += 1;
                    }
                }
                out
            }
            Model::Bpe(_) => {
                let s = String::from_utf8_lossy(text);
                let mut out = Vec::with_capacity(text.len());
                for c in s.chars() {
                    match unicode::char_to_byte(c) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            }
        },
    }
}

fn strings(g: &Gguf, key: &str) -> Result<Option<Vec<Vec<u8>>>> {
    match g.get_array(key)? {
        None => Ok(None),
        Some(Array::Str(v)) => Ok(Some(v.clone())),
        Some(_) => Err(Error::format(format!(
            "metadata {key} should be a string array"
        ))),
    }
}
