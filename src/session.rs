//! A session: one conversation on a loaded model (KV cache, position, sampler, chat state,
//! output stream, limits and stop sequences). The C API is a thin layer over exactly this.

use crate::error::{Error, ErrorKind, Result};
use crate::model::forward::{self, KvCache, Scratch};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerParams};
use crate::tokenizer::chat::Rendered;
use crate::tokenizer::stream::Utf8Stream;
use std::sync::Arc;

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfText,
    /// The context window is full.
    ContextFull,
    /// The caller's token limit was reached.
    Limit,
    /// The text reached one of the caller's stop sequences (which is not part of the output).
    StopSequence,
    /// The caller's abort callback stopped a prompt.
    Aborted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndOfText => "end of text",
            StopReason::ContextFull => "context full",
            StopReason::Limit => "token limit",
            StopReason::StopSequence => "stop sequence",
            StopReason::Aborted => "aborted",
        }
    }
}

/// A caller's abort check, asked between batches of a prompt: true stops it.
pub type AbortCheck = Arc<dyn Fn() -> bool + Send + Sync>;

pub enum Step {
    /// A token was generated; `text` is what is now printable (possibly empty while a
    /// multi-byte character is incomplete).
    Token { id: u32, text: String },
    /// Generation ended; `text` holds anything flushed at the end.
    Done { reason: StopReason, text: String },
}

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Context length in tokens; 0 = the model's default.
    pub n_ctx: usize,
    pub sampler: SamplerParams,
    /// Bytes the session may allocate (KV cache and buffers); 0 = no limit.
    pub memory_budget: usize,
    /// When generation fills the context, drop its older half and go on instead of stopping.
    pub sliding_window: bool,
    /// Tokens per generation (each prompt starts one); 0 = no limit.
    pub max_tokens: usize,
    /// Keep keys and values in f16 (llama.cpp's default KV type) instead of f32: half the
    /// cache's memory and attention's reads on long contexts; slightly different logits, the
    /// same on every CPU.
    pub kv_f16: bool,
}

/// One conversation: KV cache, position, sampler and output stream.
pub struct Session {
    pub model: Arc<Model>,
    kv: KvCache,
    scratch: Scratch,
    /// Every token in the cache, in order.
    tokens: Vec<u32>,
    have_logits: bool,
    /// An end-of-turn token that was sampled but not yet written to the cache.
    unfed: Option<u32>,
    pub sampler: Sampler,
    stream: Utf8Stream,
    n_chat_messages: usize,
    /// A system message the chat template merges into the next user turn (Gemma).
    held_system: String,
    /// The assistant's chat turn is open (its end-of-turn marker is not in the cache yet).
    in_reply: bool,
    /// The last chat message was a system message: there is no turn to generate yet.
    no_turn: bool,
    sliding_window: bool,
    max_tokens: usize,
    /// Tokens generated since the last prompt.
    generated: usize,
    stop: Vec<String>,
    /// Generated text held back while it may be the start of a stop sequence.
    held_text: String,
    stop_reason: Option<StopReason>,
    abort: Option<AbortCheck>,
}

impl Session {
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Result<Session> {
        opts.sampler.validate().map_err(Error::invalid)?;
        let n_ctx = if opts.n_ctx == 0 {
            model.default_context()
        } else {
            opts.n_ctx
        };
        if n_ctx > model.cfg.n_ctx_train.max(1) * 4 || n_ctx > 1 << 20 {
            return Err(Error::invalid(format!(
                "context of {n_ctx} tokens is beyond what the model supports ({})",
                model.cfg.n_ctx_train
            )));
        }
        let (kv, buf) = (
            KvCache::bytes(&model.cfg, n_ctx, opts.kv_f16),
            Scratch::bytes(&model.cfg, n_ctx),
        );
        if opts.memory_budget > 0 && kv + buf > opts.memory_budget {
            let mib = |b: usize| b as f64 / 1048576.0;
            return Err(Error::new(
                ErrorKind::Limit,
                format!(
                    "a context of {n_ctx} tokens needs {:.1} MiB (KV cache {:.1} MiB, buffers {:.1} MiB), \
                     over the memory budget of {:.1} MiB: ask for a smaller context",
                    mib(kv + buf),
                    mib(kv),
                    mib(buf),
                    mib(opts.memory_budget)
                ),
            ));
        }
        Ok(Session {
            sliding_window: opts.sliding_window,
            kv: KvCache::new(&model.cfg, n_ctx, opts.kv_f16),
            scratch: Scratch::new(&model.cfg, n_ctx),
            tokens: Vec::new(),
            have_logits: false,
            unfed: None,
            sampler: Sampler::new(opts.sampler.clone()),
            stream: Utf8Stream::default(),
            n_chat_messages: 0,
            held_system: String::new(),
            in_reply: false,
            no_turn: false,
            max_tokens: opts.max_tokens,
            generated: 0,
            stop: Vec::new(),
            held_text: String::new(),
            stop_reason: None,
            abort: None,
            model,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }
    pub fn pos(&self) -> usize {
        self.tokens.len()
    }
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Logits after the last token fed (empty before any).
    pub fn logits(&self) -> &[f32] {
        if self.have_logits {
            &self.scratch.logits
        } else {
            &[]
        }
    }

    /// Forget the conversation; keeps the sampler settings.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.have_logits = false;
        self.unfed = None;
        self.stream = Utf8Stream::default();
        self.n_chat_messages = 0;
        self.held_system.clear();
        self.in_reply = false;
        self.no_turn = false;
        self.begin_generation();
        let seed = self.sampler.params.seed;
        self.sampler.reseed(seed);
    }

    /// Stop generating at any of these texts (they are not part of the output); empty = none.
    pub fn set_stop(&mut self, stop: Vec<String>) {
        self.stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
    }

    /// Sampling settings from now on (checked first; the random sequence goes on).
    pub fn set_sampler(&mut self, params: SamplerParams) -> Result<()> {
        params.validate().map_err(Error::invalid)?;
        self.sampler.params = params;
        Ok(())
    }

    /// Restart the sampler's random sequence from `seed` (also when it is the same seed).
    pub fn set_seed(&mut self, seed: u64) {
        self.sampler.params.seed = seed;
        self.sampler.reseed(seed);
    }

    /// Tokens per generation; 0 = no limit.
    pub fn set_max_tokens(&mut self, n: usize) {
        self.max_tokens = n;
    }

    /// Ask `check` between batches of every prompt; when it says true the prompt stops with
    /// `ErrorKind::Aborted` and the session is as it was before it. None = never.
    pub fn set_abort(&mut self, check: Option<AbortCheck>) {
        self.abort = check;
    }

    /// Why the last generation ended; None while one is going on (or before any).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// A prompt starts a new generation: count, reason and held-back text start afresh.
    fn begin_generation(&mut self) {
        self.generated = 0;
        self.stop_reason = None;
        self.held_text.clear();
    }

    /// Run `tokens` through the model. All or nothing: a batch that does not fit in the
    /// context is refused before anything is computed, and an aborted one is undone. No tokens
    /// is a no-op: the session (and a reply that was cut short) stays as it is.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let extra = self.unfed.is_some() as usize;
        if self.pos() + extra + tokens.len() > self.n_ctx() {
            return Err(Error::new(
                ErrorKind::ContextFull,
                format!(
                    "{} tokens do not fit: {} of {} context positions are used",
                    tokens.len(),
                    self.pos() + extra,
                    self.n_ctx()
                ),
            ));
        }
        let n_vocab = self.model.cfg.n_vocab as u32;
        if let Some(&t) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(Error::invalid(format!(
                "token id {t} is outside the vocabulary"
            )));
        }
        let (start, unfed, had_logits) = (self.pos(), self.unfed.take(), self.have_logits);
        let all: Vec<u32> = unfed.into_iter().chain(tokens.iter().copied()).collect();
        let r = self.run(&all, true);
        if let Err(e) = &r {
            if e.kind == ErrorKind::Aborted {
                // the cache past `start` is overwritten later; the last logits were not touched
                self.tokens.truncate(start);
                self.unfed = unfed;
                self.have_logits = had_logits;
                self.stop_reason = Some(StopReason::Aborted);
            }
        }
        r
    }

    /// Feed `tokens`, calling `f(position in tokens, logits)` after each one (for scoring).
    pub fn eval(&mut self, tokens: &[u32], mut f: impl FnMut(usize, &[f32])) -> Result<()> {
        if self.pos() + tokens.len() > self.n_ctx() {
            return Err(Error::new(
                ErrorKind::ContextFull,
                "the tokens do not fit in the context",
            ));
        }
        let mut i = 0;
        for batch in tokens.chunks(forward::MAX_BATCH) {
            self.have_logits = false;
            forward::forward(
                &self.model,
                &mut self.kv,
                &mut self.scratch,
                batch,
                (self.tokens.len(), &|| false),
            )?;
            self.tokens.extend_from_slice(batch);
            for b in 0..batch.len() {
                forward::logits(&self.model, &mut self.scratch, b);
                f(i, &self.scratch.logits);
                i += 1;
            }
            self.have_logits = true;
        }
        Ok(())
    }

    /// Run `tokens` through the model in batches; logits of the last one when `want_logits`.
    /// The abort check is asked before each layer of each batch (a batch of 64 tokens can take
    /// seconds on a small CPU).
    fn run(&mut self, tokens: &[u32], want_logits: bool) -> Result<()> {
        self.have_logits = false;
        let abort = &self.abort;
        let stop = || abort.as_ref().is_some_and(|a| a());
        for batch in tokens.chunks(forward::MAX_BATCH) {
            forward::forward(
                &self.model,
                &mut self.kv,
                &mut self.scratch,
                batch,
                (self.tokens.len(), &stop),
            )?;
            self.tokens.extend_from_slice(batch);
        }
        if want_logits && !tokens.is_empty() {
            let last = (tokens.len() - 1) % forward::MAX_BATCH;
            forward::logits(&self.model, &mut self.scratch, last);
            self.have_logits = true;
        }
        Ok(())
    }

    fn step(&mut self, token: u32, want_logits: bool) -> Result<()> {
        self.run(&[token], want_logits)
    }

    /// Tokenize and feed text, taken literally: control-token text in it (`<|im_end|>`) is
    /// plain text, so user input cannot forge a turn. BOS is added at the start of the context
    /// if the model asks. Starts a generation; empty text continues the last one (after a token
    /// limit, say).
    pub fn prompt(&mut self, text: &str) -> Result<usize> {
        self.prompt_with(text, false)
    }

    /// `prompt`, with control tokens written as text (`<|im_start|>`) parsed when `special`.
    pub fn prompt_with(&mut self, text: &str, special: bool) -> Result<usize> {
        let toks = self.model.vocab.encode(text, self.pos() == 0, special);
        self.feed(&toks)?;
        self.no_turn = false;
        self.begin_generation();
        Ok(toks.len())
    }

    /// Feed one chat message (role system, user or assistant) with the model's template and,
    /// but for a system message, open the assistant's reply. The content is plain text: control
    /// tokens are parsed only in the template's own markup.
    pub fn prompt_chat(&mut self, role: &str, content: &str) -> Result<usize> {
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(Error::invalid(format!(
                "chat role '{role}' is not system, user or assistant"
            )));
        }
        let chat = &self.model.vocab.chat;
        let mut r = Rendered::default();
        if self.in_reply {
            // close the previous reply, whether it ended on its own or was cut short
            r.markup(chat.end_of_turn());
        }
        let held = self.held_system.clone();
        let m = chat.message(
            role,
            content,
            self.n_chat_messages == 0,
            &mut self.held_system,
        );
        let at = r.text.len();
        r.text += &m.text;
        r.plain
            .extend(m.plain.into_iter().map(|p| p.start + at..p.end + at));
        if role != "system" {
            r.markup(chat.assistant_prefix());
        }
        let toks = self
            .model
            .vocab
            .encode_marked(&r.text, &r.plain, self.pos() == 0);
        let unfed = self.unfed;
        if self.in_reply {
            self.unfed = None; // the end-of-turn text above replaces it
        }
        if let Err(e) = self.feed(&toks) {
            self.unfed = unfed;
            self.held_system = held;
            return Err(e);
        }
        self.in_reply = role != "system";
        self.no_turn = role == "system";
        self.n_chat_messages += 1;
        self.begin_generation();
        Ok(toks.len())
    }

    /// Sample the next token and run it through the model. Generation ends at an
    /// end-of-generation token, a full context, the token limit (a character cut in two there
    /// is kept for a continuation, not printed broken) or a stop sequence; `stop_reason` then
    /// says which, and further calls return `Done` again until a prompt.
    pub fn next_token(&mut self) -> Result<Step> {
        match self.stop_reason {
            // an aborted prompt left the session as it was: go on from there
            Some(StopReason::Aborted) => self.stop_reason = None,
            Some(reason) => {
                return Ok(Step::Done {
                    reason,
                    text: String::new(),
                })
            }
            None => {}
        }
        if self.no_turn {
            return Err(Error::new(
                ErrorKind::State,
                "a system message opens no reply: add a user message first",
            ));
        }
        if self.max_tokens != 0 && self.generated >= self.max_tokens {
            return Ok(self.done(StopReason::Limit, false));
        }
        let id = self.sample()?;
        if self.model.vocab.is_eog(id) {
            self.have_logits = false;
            self.unfed = Some(id);
            return Ok(self.done(StopReason::EndOfText, true));
        }
        if !self.advance(id)? {
            self.have_logits = false;
            return Ok(self.done(StopReason::ContextFull, true));
        }
        self.generated += 1;
        self.held_text += &self.stream.push(self.model.vocab.piece(id));
        // a stop sequence ends the text before it
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.held_text.find(s.as_str()))
            .min()
        {
            self.held_text.truncate(at);
            let text = std::mem::take(&mut self.held_text);
            self.stop_reason = Some(StopReason::StopSequence);
            return Ok(Step::Done {
                reason: StopReason::StopSequence,
                text,
            });
        }
        // release all but the longest end that may still grow into a stop sequence
        let keep = (0..self.held_text.len())
            .filter(|&i| self.held_text.is_char_boundary(i))
            .find(|&i| {
                self.stop
                    .iter()
                    .any(|s| s.starts_with(&self.held_text[i..]))
            })
            .unwrap_or(self.held_text.len());
        let text = self.held_text.drain(..keep).collect();
        Ok(Step::Token { id, text })
    }

    /// End the generation for `reason`: the held-back text, and (when `flush`) the bytes of a
    /// character left incomplete.
    fn done(&mut self, reason: StopReason, flush: bool) -> Step {
        self.stop_reason = Some(reason);
        let mut text = std::mem::take(&mut self.held_text);
        if flush {
            text += &self.stream.finish();
        }
        Step::Done { reason, text }
    }

    /// Sample and run one token without stopping at end-of-text (for benchmarks, which must
    /// generate a fixed number of tokens).
    pub fn next_token_unchecked(&mut self) -> Result<Step> {
        let id = self.sample()?;
        if !self.advance(id)? {
            return Ok(Step::Done {
                reason: StopReason::ContextFull,
                text: String::new(),
            });
        }
        Ok(Step::Token {
            id,
            text: String::new(),
        })
    }

    /// The next token, drawn from the current logits.
    fn sample(&mut self) -> Result<u32> {
        if !self.have_logits {
            return Err(Error::new(
                ErrorKind::State,
                "nothing to continue: feed a prompt first",
            ));
        }
        Ok(self.sampler.sample(&self.scratch.logits, &self.tokens))
    }

    /// Run the sampled token `id`, sliding the context first if it is full and the session
    /// slides. False if the context is full.
    fn advance(&mut self, id: u32) -> Result<bool> {
        if self.pos() >= self.n_ctx() {
            if !self.sliding_window {
                return Ok(false);
            }
            self.slide()?;
        }
        self.step(id, true)?;
        Ok(true)
    }

    /// Keep the newer half of the context: recompute its keys and values at positions from 0.
    fn slide(&mut self) -> Result<()> {
        let keep = self.tokens.split_off(self.tokens.len() - self.n_ctx() / 2);
        self.tokens.clear();
        self.run(&keep, true)
    }

    /// End a generation early: the text held back and any partial character, flushed.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.held_text);
        held + &self.stream.finish()
    }
}
