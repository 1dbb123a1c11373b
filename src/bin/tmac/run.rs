//! `tmac run`: generate from a prompt, or chat in the terminal.

use super::{load_options, parse_num, stdout_failed, unknown_option};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tmac::{Compute, Model, SamplerParams, Session, SessionOptions, Step, StopReason};

const RUN_USAGE: &str = "\
usage: tmac run MODEL [options]

Generates text from a prompt. The prompt is -i TEXT, or -f FILE, or standard input when it is
not a terminal (or with -i -). With --chat and no prompt on a terminal, tmac chats: type a
message and Enter; the conversation is kept; /reset forgets it, /bye (or Ctrl-D) quits, and
Ctrl-C stops an answer (at the prompt, it quits).

options (llama2.c style):
  -i PROMPT     prompt text (- reads standard input)
  -f FILE       read the prompt from FILE (without its final newline, as from stdin)
  -n N          number of tokens to generate (default 256; capped by the context)
  -t T          temperature, 0 = greedy (default 0.8)
  -p P          top-p, 1 = off (default 0.95)
  -k K          top-k, 0 = off (default 40)
  -s SEED       random seed (default: time-based; printed to stderr)
  -c N          context length in tokens (default: the model's, at most 2048)
  --min-p P     min-p, 0 = off (default 0.05)
  --repeat-penalty R   1 = off (default 1.0)
  --stop TEXT   stop when the output reaches TEXT (not printed); may be given several times
  --chat        wrap the prompt in the model's chat template (no prompt: chat in the terminal)
  --sliding-window     when the context fills, drop its older half and go on
  --kv-f16      keep the KV cache in f16 (half the memory; llama.cpp's default)
  -y SYSTEM     system message for --chat
  --f32         reference path: all weights dequantized to f32
  -z FILE       tokenizer.bin of a llama2.c / original T-MAC model (default: the one next
                to the model, else ./tokenizer.bin); such models (detected by their first
                bytes, not their name) default to llama2.c's sampling: -t 1 -p 0.9, no
                top-k or min-p
  -h, --help    this help
";

/// Parsed `run` flags.
struct RunArgs {
    model: String,
    /// None: no prompt given (a terminal chat with --chat, else from BOS).
    prompt: Option<String>,
    steps: usize,
    sampler: SamplerParams,
    seed_given: bool,
    n_ctx: usize,
    chat: bool,
    system: Option<String>,
    stop: Vec<String>,
    compute: Compute,
    slide: bool,
    kv_f16: bool,
    tokenizer: Option<String>,
    /// Sampling flags given on the command line (the others take the model's defaults).
    given: Vec<&'static str>,
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
        .map_err(|e| format!("reading the prompt from standard input: {e}"))?;
    Ok(without_final_newline(s))
}

/// `echo text |` and text files end with a newline that is not part of the prompt (llama.cpp
/// drops it from -f files too); a prompt that should end with one can have two.
fn without_final_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn parse_run(args: &[String]) -> Result<RunArgs, String> {
    let mut a = RunArgs {
        model: String::new(),
        prompt: None,
        steps: 256,
        sampler: SamplerParams::default(),
        seed_given: false,
        n_ctx: 0,
        chat: false,
        system: None,
        stop: Vec::new(),
        compute: Compute::default(),
        slide: false,
        kv_f16: false,
        tokenizer: None,
        given: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-i" => {
                let v = val()?;
                a.prompt = Some(if v == "-" { read_stdin()? } else { v.clone() });
            }
            "-f" => {
                let f = val()?;
                let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
                a.prompt = Some(without_final_newline(text));
            }
            "-n" => a.steps = parse_num(arg, val()?)?,
            "-t" => {
                a.sampler.temperature = parse_num(arg, val()?)?;
                a.given.push("-t");
            }
            "-p" => {
                a.sampler.top_p = parse_num(arg, val()?)?;
                a.given.push("-p");
            }
            "-k" => {
                a.sampler.top_k = parse_num(arg, val()?)?;
                a.given.push("-k");
            }
            "-z" => a.tokenizer = Some(val()?.clone()),
            "-s" => {
                a.sampler.seed = parse_num(arg, val()?)?;
                a.seed_given = true;
            }
            "-c" => a.n_ctx = parse_num(arg, val()?)?,
            "--min-p" => {
                a.sampler.min_p = parse_num(arg, val()?)?;
                a.given.push("--min-p");
            }
            "--repeat-penalty" => a.sampler.repeat_penalty = parse_num(arg, val()?)?,
            "--stop" => a.stop.push(val()?.clone()),
            "-y" => a.system = Some(val()?.clone()),
            "--chat" => a.chat = true,
            "--sliding-window" => a.slide = true,
            "--kv-f16" => a.kv_f16 = true,
            "--f32" => a.compute = Compute::F32,
            s if s.starts_with('-') => return Err(unknown_option("run", s)),
            s if a.model.is_empty() => a.model = s.to_string(),
            s => return Err(format!("run: unexpected argument '{s}'")),
        }
    }
    if a.model.is_empty() {
        return Err("run: no model given (tmac run --help)".into());
    }
    if a.prompt.is_none() && !std::io::stdin().is_terminal() {
        let text = read_stdin()?; // piped: `echo question | tmac run MODEL`
        if text.is_empty() && a.chat {
            return Err("run: standard input gave an empty message (give one with -i)".into());
        }
        a.prompt = Some(text);
    }
    if !a.seed_given {
        a.sampler.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    a.sampler.validate()?;
    Ok(a)
}

/// Write generated text; a reader that has gone (`| head`) ends the tool quietly.
fn emit(out: &mut impl Write, text: &str) {
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        stdout_failed(e);
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    if super::help(args, RUN_USAGE) {
        return Ok(());
    }
    let mut a = parse_run(args)?;
    let t0 = Instant::now();
    let model =
        Model::load(&a.model, &load_options(a.compute, &a.tokenizer)).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    // llama2.c and the original T-MAC engine: llama2.c's sampler (temperature and top-p only)
    let legacy = model.file_kind().is_legacy();
    if legacy {
        let (given, p) = (|f: &str| a.given.contains(&f), &mut a.sampler);
        if !given("-t") {
            p.temperature = 1.0;
        }
        if !given("-p") {
            p.top_p = 0.9;
        }
        if !given("-k") {
            p.top_k = 0;
        }
        if !given("--min-p") {
            p.min_p = 0.0;
        }
    }
    let opts = SessionOptions {
        n_ctx: a.n_ctx,
        sampler: a.sampler.clone(),
        sliding_window: a.slide,
        max_tokens: a.steps,
        kv_f16: a.kv_f16,
        ..Default::default()
    };
    let mut s = Session::new(model, &opts).map_err(|e| e.to_string())?;
    s.set_stop(a.stop.clone());
    if a.chat && a.prompt.is_none() {
        return repl(&mut s, &a);
    }
    let prompt = a.prompt.clone().unwrap_or_default();
    // as llama2.c prints it: the space SentencePiece puts before the first word goes after BOS
    let mut strip_space = legacy && prompt.is_empty() && !a.chat;

    let t1 = Instant::now();
    let n_prompt = if a.chat {
        let mut n = 0;
        if let Some(sys) = &a.system {
            n += s.prompt_chat("system", sys).map_err(|e| e.to_string())?;
        }
        n + s.prompt_chat("user", &prompt).map_err(|e| e.to_string())?
    } else {
        // a raw prompt may spell control tokens, as llama.cpp's tools allow
        s.prompt_with(&prompt, true).map_err(|e| e.to_string())?
    };
    if n_prompt == 0 {
        // an empty prompt without BOS: start from the BOS token if the vocabulary has one
        let bos = s
            .model
            .vocab()
            .bos
            .ok_or("empty prompt and the model has no BOS token")?;
        s.feed(&[bos]).map_err(|e| e.to_string())?;
    }
    let prefill_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut generated = 0;
    let reason = loop {
        match s.next_token().map_err(|e| e.to_string())? {
            Step::Token { mut text, .. } => {
                generated += 1;
                if strip_space && !text.is_empty() {
                    strip_space = false;
                    if let Some(t) = text.strip_prefix(' ') {
                        text = t.to_string();
                    }
                }
                emit(&mut out, &text);
            }
            Step::Done { reason, text } => {
                emit(&mut out, &text);
                break reason;
            }
        }
    };
    if reason == StopReason::Limit {
        emit(&mut out, &s.finish());
    }
    emit(&mut out, "\n");
    let gen_s = t2.elapsed().as_secs_f64();
    eprintln!(
        "tmac: load {load_s:.2} s | prompt {n_prompt} tokens, {:.1} tok/s | generated {generated} tokens, {:.1} tok/s | stop: {} | seed {}",
        n_prompt as f64 / prefill_s.max(1e-9),
        generated as f64 / gen_s.max(1e-9),
        reason.as_str(),
        a.sampler.seed
    );
    Ok(())
}

/// Set by Ctrl-C (SIGINT) while the chat runs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch Ctrl-C: it sets INTERRUPTED, and interrupts a blocked read (no SA_RESTART).
fn catch_sigint() {
    // SAFETY: installs an async-signal-safe handler (one atomic store); the sigaction struct is
    // zeroed and filled before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// One line of standard input (None at its end). `BufRead::read_line` retries a read that a
/// signal interrupts, so Ctrl-C at the prompt would do nothing (and the terminal drops the line
/// being typed); here it is `ErrorKind::Interrupted`, also when it came just before the read.
fn read_line(stdin: &std::io::Stdin) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut lock = stdin.lock();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match lock.read(&mut byte)? {
            0 if bytes.is_empty() => return Ok(None),
            0 => break,
            _ => {
                bytes.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
        }
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Chat in the terminal: each line is a user message; the conversation is kept. /reset
/// forgets it, /bye or Ctrl-D ends, Ctrl-C stops an answer (or, at the prompt, ends).
fn repl(s: &mut Session, a: &RunArgs) -> Result<(), String> {
    catch_sigint();
    let interrupted = || INTERRUPTED.load(Ordering::SeqCst);
    s.set_abort(Some(Arc::new(interrupted)));
    let mut system = a.system.clone();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    eprintln!("tmac chat: type a message and Enter; /reset forgets the conversation, /bye or Ctrl-D quits, Ctrl-C stops an answer");
    loop {
        INTERRUPTED.store(false, Ordering::SeqCst);
        eprint!("> ");
        let line = match read_line(&stdin) {
            Ok(Some(line)) => line,
            Ok(None) => break, // Ctrl-D
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => break, // Ctrl-C at the prompt
            Err(e) => return Err(format!("reading standard input: {e}")),
        };
        let line = line.trim_end_matches(['\r', '\n']);
        match line.trim() {
            "" => continue,
            "/bye" | "/exit" | "/quit" => break,
            "/reset" => {
                s.reset();
                system = a.system.clone();
                eprintln!("(conversation forgotten)");
                continue;
            }
            _ => {}
        }
        let fed = match system.take() {
            Some(sys) => s.prompt_chat("system", &sys).map(|_| ()),
            None => Ok(()),
        }
        .and_then(|_| s.prompt_chat("user", line).map(|_| ()));
        match fed {
            Ok(()) => {}
            Err(e) if e.kind == tmac::ErrorKind::Aborted => {
                eprintln!("\n(stopped)");
                continue;
            }
            Err(e) => {
                eprintln!("tmac: {e}");
                continue;
            }
        }
        loop {
            if interrupted() {
                emit(&mut out, &s.finish());
                eprintln!("\n(stopped)");
                break;
            }
            let step = match s.next_token() {
                // Ctrl-C during the step: the session's abort check saw it
                Err(e) if e.kind == tmac::ErrorKind::Aborted => {
                    emit(&mut out, &s.finish());
                    eprintln!("\n(stopped)");
                    break;
                }
                step => step.map_err(|e| e.to_string())?,
            };
            match step {
                Step::Token { text, .. } => emit(&mut out, &text),
                Step::Done { reason, text } => {
                    emit(&mut out, &text);
                    if reason == StopReason::Limit {
                        emit(&mut out, &s.finish());
                    }
                    emit(&mut out, "\n");
                    if reason == StopReason::ContextFull {
                        eprintln!("(the context is full: /reset to start again)");
                    }
                    break;
                }
            }
        }
    }
    Ok(())
}
