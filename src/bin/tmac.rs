//! The `tmac` command-line tool. stdout carries only generated text (or the data asked for);
//! everything else goes to stderr.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;
use tmac::{Compute, LoadOptions, Model, SamplerParams, Session, SessionOptions, Step};

const USAGE: &str = "\
usage: tmac <command> [args]

commands:
  run MODEL [options]        generate text
  info MODEL                 print architecture, shapes, tensor types, size, tokenizer
  tokenize MODEL -i TEXT     print token ids (special tokens in TEXT are recognised)
  quantize IN OUT --type T [--group G] [--scale S] [--head H] [-z TOKENIZER]
                             convert a model to a tmac file, or a llama2.c checkpoint to
                             the original T-MAC engine's v1/v2/Q4V1 files (quantize -h)
  export --llama2c MODEL OUT.bin TOKENIZER.bin
                             write MODEL as a llama2.c checkpoint and tokenizer.bin
  tune MODEL [-r ROUNDS] [--int8-tables]
                             time the kernel knobs on this machine, save the fastest
                             (int8 lookup tables: faster, lossy, only with the flag)
  bench MODEL [-p N] [-n N] [-r N] [--f32] [--json] [--bandwidth] [-z TOKENIZER]
                             decode and prefill tok/s on this machine (1 thread);
                             --bandwidth also measures one core's read bandwidth
  perplexity MODEL -f TEXT_FILE [-c N] [--chunks N] [--f32] [-z TOKENIZER]
                             perplexity as llama-perplexity computes it (n_ctx 512 default)

run options (llama2.c style):
  -i PROMPT     prompt text (default: empty)
  -n N          number of tokens to generate (default 256; capped by the context)
  -t T          temperature, 0 = greedy (default 0.8)
  -p P          top-p, 1 = off (default 0.95)
  -k K          top-k, 0 = off (default 40)
  -s SEED       random seed (default: time-based; printed to stderr)
  -c N          context length in tokens (default: the model's, at most 2048)
  --min-p P     min-p, 0 = off (default 0.05)
  --repeat-penalty R   1 = off (default 1.0)
  --chat        wrap the prompt in the model's chat template
  --sliding-window     when the context fills, drop its older half and go on
  -y SYSTEM     system message for --chat
  --f32         reference path: all weights dequantized to f32
  -z FILE       tokenizer.bin of a llama2.c / original T-MAC model (default: the one next
                to the model, else ./tokenizer.bin); such models (detected by their first
                bytes, not their name) default to llama2.c's sampling: -t 1 -p 0.9, no
                top-k or min-p
  -h            this help
";

/// `print!`/`println!` for what a command prints on stdout: when the reader has gone
/// (`tmac info m | head -3`), the program ends quietly, as a C tool ends on SIGPIPE, instead of
/// panicking; any other write error ends it with a message.
macro_rules! out {
    ($($arg:tt)*) => { if let Err(e) = write!(std::io::stdout(), $($arg)*) { stdout_failed(e) } };
}
macro_rules! outln {
    ($($arg:tt)*) => { if let Err(e) = writeln!(std::io::stdout(), $($arg)*) { stdout_failed(e) } };
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("tmac: writing stdout: {e}");
    std::process::exit(1);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("info") => info(&args[1..]),
        Some("tokenize") => tokenize(&args[1..]),
        Some("perplexity") => perplexity(&args[1..]),
        Some("quantize") => quantize(&args[1..]),
        Some("export") => export(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("tune") => tune(&args[1..]),
        Some("-h" | "--help" | "help") => {
            out!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("expected a command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tmac: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed `run` flags.
struct RunArgs {
    model: String,
    prompt: String,
    steps: usize,
    sampler: SamplerParams,
    seed_given: bool,
    n_ctx: usize,
    chat: bool,
    system: Option<String>,
    compute: Compute,
    slide: bool,
    tokenizer: Option<String>,
    /// Sampling flags given on the command line (the others take the model's defaults).
    given: Vec<&'static str>,
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

fn parse_run(args: &[String]) -> Result<RunArgs, String> {
    let mut a = RunArgs {
        model: String::new(),
        prompt: String::new(),
        steps: 256,
        sampler: SamplerParams::default(),
        seed_given: false,
        n_ctx: 0,
        chat: false,
        system: None,
        compute: Compute::default(),
        slide: false,
        tokenizer: None,
        given: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_string()),
            "-i" => a.prompt = val()?.clone(),
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
            "-y" => a.system = Some(val()?.clone()),
            "--chat" => a.chat = true,
            "--sliding-window" => a.slide = true,
            "--f32" => a.compute = Compute::F32,
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n\n{USAGE}")),
            s if a.model.is_empty() => a.model = s.to_string(),
            s => return Err(format!("unexpected argument '{s}'")),
        }
    }
    if a.model.is_empty() {
        return Err(format!("run: no model given\n\n{USAGE}"));
    }
    if !a.seed_given {
        a.sampler.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    a.sampler.validate()?;
    Ok(a)
}

fn run(args: &[String]) -> Result<(), String> {
    let mut a = parse_run(args)?;
    let t0 = Instant::now();
    let model =
        Model::load(&a.model, &load_options(a.compute, &a.tokenizer)).map_err(|e| e.to_string())?;
    let load_s = t0.elapsed().as_secs_f64();
    // llama2.c and the original T-MAC engine: llama2.c's sampler (temperature and top-p only)
    let legacy = model.format.is_legacy();
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
    // as llama2.c prints it: the space SentencePiece puts before the first word goes after BOS
    let mut strip_space = legacy && a.prompt.is_empty() && !a.chat;
    let opts = SessionOptions {
        n_ctx: a.n_ctx,
        sampler: a.sampler.clone(),
        sliding_window: a.slide,
        ..Default::default()
    };
    let mut s = Session::new(model, &opts).map_err(|e| e.to_string())?;

    let t1 = Instant::now();
    let n_prompt = if a.chat {
        let mut n = 0;
        if let Some(sys) = &a.system {
            n += s.prompt_chat("system", sys).map_err(|e| e.to_string())?;
        }
        n + s
            .prompt_chat("user", &a.prompt)
            .map_err(|e| e.to_string())?
    } else {
        // a raw prompt may spell control tokens, as llama.cpp's tools allow
        s.prompt_with(&a.prompt, true).map_err(|e| e.to_string())?
    };
    if n_prompt == 0 {
        // an empty prompt without BOS: start from the BOS token if the vocabulary has one
        let bos = s
            .model
            .vocab
            .bos
            .ok_or("empty prompt and the model has no BOS token")?;
        s.feed(&[bos]).map_err(|e| e.to_string())?;
    }
    let prefill_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut generated = 0;
    let mut reason = tmac::StopReason::Limit;
    while generated < a.steps {
        match s.next_token().map_err(|e| e.to_string())? {
            Step::Token { mut text, .. } => {
                generated += 1;
                if strip_space && !text.is_empty() {
                    strip_space = false;
                    if let Some(t) = text.strip_prefix(' ') {
                        text = t.to_string();
                    }
                }
                out.write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .map_err(|e| e.to_string())?;
            }
            Step::Done { reason: r, text } => {
                out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
                reason = r;
                break;
            }
        }
    }
    if reason == tmac::StopReason::Limit {
        out.write_all(s.finish().as_bytes())
            .map_err(|e| e.to_string())?;
    }
    writeln!(out)
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
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

/// The kernel settings the tool takes from the environment (TMAC_KERNEL, the tuning profile,
/// TMAC_TABLES; the library reads none of them itself), read once; what cannot be applied is
/// said on stderr.
fn env_settings() -> &'static tmac::kernel::EnvSettings {
    static S: std::sync::OnceLock<tmac::kernel::EnvSettings> = std::sync::OnceLock::new();
    S.get_or_init(|| tmac::kernel::from_env(&mut |m| eprintln!("tmac: {m}")))
}

fn load_options(compute: Compute, tokenizer: &Option<String>) -> LoadOptions {
    let env = env_settings();
    LoadOptions {
        compute,
        kernel: Some(env.isa),
        knobs: Some(env.knobs),
        tokenizer: tokenizer.as_ref().map(std::path::PathBuf::from),
        ..Default::default()
    }
}

/// `args` without `-z FILE`, and FILE.
fn take_tokenizer(args: &[String]) -> Result<(Vec<String>, Option<String>), String> {
    let (mut rest, mut z) = (Vec::new(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-z" => z = Some(it.next().ok_or("-z needs a value")?.clone()),
            _ => rest.push(a.clone()),
        }
    }
    Ok((rest, z))
}

fn load_for_inspection(args: &[String]) -> Result<std::sync::Arc<Model>, String> {
    let (args, z) = take_tokenizer(args)?;
    let path = args
        .first()
        .ok_or_else(|| format!("no model given\n\n{USAGE}"))?;
    Model::load(path, &load_options(Compute::default(), &z)).map_err(|e| e.to_string())
}

fn info(args: &[String]) -> Result<(), String> {
    let m = load_for_inspection(args)?;
    let args = take_tokenizer(args)?.0;
    let c = &m.cfg;
    let v = &m.vocab;
    outln!(
        "file:          {} ({:.1} MiB, {:?})",
        args[0],
        m.file_size as f64 / 1048576.0,
        m.format
    );
    outln!("architecture:  {}", c.arch_name);
    outln!(
        "shape:         embd {} | ffn {} | layers {} | heads {} (kv {}) | head dim {} | vocab {}",
        c.n_embd,
        c.n_ff,
        c.n_layer,
        c.n_head,
        c.n_head_kv,
        c.head_dim,
        c.n_vocab
    );
    outln!(
        "context:       {} trained, {} by default | rope base {} dim {} | rms eps {:e} | act {:?}",
        c.n_ctx_train,
        m.default_context(),
        c.rope_base,
        c.rope_dim,
        c.rms_eps,
        c.act
    );
    let types: Vec<String> = m
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{t} x{n}"))
        .collect();
    outln!("tensor types:  {}", types.join(", "));
    let l0 = &m.weights.layers[0];
    outln!(
        "weights:       blocks {}, head {} ({:.1} MiB read per token, {:.2} bits per weight)",
        l0.wq.kind(),
        m.weights.output.kind(),
        m.weight_bytes() as f64 / 1048576.0,
        m.bits_per_weight()
    );
    let profile = env_settings()
        .profile
        .as_ref()
        .map_or("defaults (no tuning profile)".to_string(), |p| {
            format!("profile {}", p.display())
        });
    outln!(
        "kernel:        {} | row_tile {} prefetch {} tables {} | {profile}",
        m.isa.name(),
        m.knobs.row_tile,
        m.knobs.prefetch,
        m.knobs.tables.name()
    );
    let tok = |id: Option<u32>| {
        id.map_or("none".to_string(), |i| {
            format!("{i} {:?}", String::from_utf8_lossy(v.text(i)))
        })
    };
    outln!(
        "tokenizer:     {:?}, {} tokens | bos {} (add {}) | eos {} | chat template {}",
        v.model,
        v.len(),
        tok(v.bos),
        v.add_bos,
        tok(v.eos),
        v.chat.name()
    );
    Ok(())
}

fn tokenize(args: &[String]) -> Result<(), String> {
    let mut text = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => text = Some(it.next().ok_or("-i needs a value")?.clone()),
            _ => rest.push(a.clone()),
        }
    }
    let text = text.ok_or("tokenize: give the text with -i")?;
    // only the vocabulary: a model tmac cannot run can still be tokenized
    let (args, z) = take_tokenizer(&rest)?;
    let path = args
        .first()
        .ok_or_else(|| format!("no model given\n\n{USAGE}"))?;
    let vocab = Model::load_vocab(path, &load_options(Compute::default(), &z))
        .map_err(|e| e.to_string())?;
    let ids = vocab.encode(&text, true, true);
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    outln!("{}", ids.join(" "));
    Ok(())
}

fn perplexity(args: &[String]) -> Result<(), String> {
    let (args, z) = take_tokenizer(args)?;
    let (mut model, mut file, mut n_ctx, mut chunks, mut compute) =
        (None, None, 512, 0, Compute::default());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-f" => file = Some(val()?.clone()),
            "-c" => n_ctx = parse_num(a, val()?)?,
            "--chunks" => chunks = parse_num(a, val()?)?,
            "--f32" => compute = Compute::F32,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => model = Some(s.to_string()),
        }
    }
    let (model, file) = (
        model.ok_or("perplexity: no model given")?,
        file.ok_or("perplexity: give the text with -f")?,
    );
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let m = Model::load(&model, &load_options(compute, &z)).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let r = tmac::perplexity::perplexity(&m, &text, n_ctx, chunks, |c, p| {
        eprint!("[{}]{p:.4} ", c + 1)
    })
    .map_err(|e| e.to_string())?;
    eprintln!();
    outln!(
        "PPL = {:.4} +/- {:.4} ({} chunks of {n_ctx}, {} tokens scored, {:.1} s)",
        r.ppl,
        r.err,
        r.chunks,
        r.tokens_scored,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

const QUANTIZE_USAGE: &str = "\
usage: tmac quantize IN OUT --type T [--group G] [--scale S] [--head H] [-z TOKENIZER]

Converts IN into OUT, a tmac file: tensors already in kernel layout, mapped and used in place
at load. IN is a GGUF model, a tmac file, a llama2.c checkpoint or an original T-MAC v1/v2/Q4V1
file (these take their tokenizer.bin from -z, default: next to IN), or a Hugging Face BitNet
model (its directory with config.json, tokenizer.json and safetensors). Exactly ternary weights
(BitNet b1.58: TQ1_0, TQ2_0, I2_S, ternary F32/F16, packed safetensors; T-MAC v1/v2) carry over
exactly with --type tq, Q4V1 and GGUF Q4_0/Q4_1 with --type q4 (group 32).

types (--type for the transformer blocks, --head for the embedding and output head):
  tq    ternary {-1, 0, +1} times an absmean scale; --scale tensor|row|group (default tensor)
  q1    1-bit, scale and minimum per group of --group columns (default 64)
  q2    2-bit, the same (default 64)
  q3    3-bit, the same (default 32)
  q4    4-bit, the same (default 32; GGUF Q4_0/Q4_1 carried over exactly)
  q8    8-bit, one scale per 32 (the default --head)
  f32   unquantized

the original T-MAC engine's files, from a llama2.c checkpoint, by its scripts' exact rules:
  v1    .tmac.bin: ternary, threshold 0.7 x mean|w| per stacked tensor, no scales
  v2    .tmac2.bin: ternary, threshold 0.4 x mean|row|, f16 scale per row
  q4v1  .q4.bin: int4 baseline, blocks of 32, f16 scale max|x| / 7
";

fn quantize(args: &[String]) -> Result<(), String> {
    use tmac::quant::quantize::{quantize_file, QuantizeOptions, Target};
    let (args, tokenizer) = take_tokenizer(args)?;
    let args = args.as_slice();
    let (mut paths, mut typ, mut group, mut scale, mut head) = (
        Vec::new(),
        None,
        None,
        "tensor".to_string(),
        "q8".to_string(),
    );
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                out!("{QUANTIZE_USAGE}");
                return Ok(());
            }
            "--type" => typ = Some(val()?.clone()),
            "--group" => group = Some(parse_num::<usize>(a, val()?)?),
            "--scale" => scale = val()?.clone(),
            "--head" => head = val()?.clone(),
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}\n\n{QUANTIZE_USAGE}"))
            }
            s => paths.push(s.to_string()),
        }
    }
    let [src, dst] = paths.as_slice() else {
        return Err(format!("quantize: give IN and OUT\n\n{QUANTIZE_USAGE}"));
    };
    let typ = typ.ok_or_else(|| format!("quantize: --type is required\n\n{QUANTIZE_USAGE}"))?;
    if let Some(t) = tmac::quant::legacy::LegacyType::parse(&typ) {
        let t0 = Instant::now();
        let n = tmac::quant::legacy::write_legacy(src.as_ref(), dst.as_ref(), t)
            .map_err(|e| e.to_string())?;
        outln!(
            "{dst}: {typ} | {n} bytes ({:.1} MiB) | {:.1} s",
            n as f64 / 1048576.0,
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let default_group = if typ == "q1" || typ == "q2" {
        64
    } else if typ == "tq" {
        128
    } else {
        32
    };
    let target =
        Target::parse(&typ, group.unwrap_or(default_group), &scale).map_err(|e| e.to_string())?;
    let head = Target::parse(&head, 32, "tensor").map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    // a bar redrawn in place on a terminal; in a log, one line per tenth of the matrices
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize, name: &str| {
        let total = total.max(1);
        let width = 30;
        let fill = done * width / total;
        if tty {
            eprint!(
                "\r[{}{}] {done}/{total} {name:<32}",
                "#".repeat(fill),
                " ".repeat(width - fill)
            );
        } else if done > 0 && done * 10 / total != (done - 1) * 10 / total {
            eprintln!("quantized {done}/{total} matrices");
        }
    };
    let opts = QuantizeOptions { target, head };
    let summary = match &tokenizer {
        Some(z) => tmac::quant::legacy::legacy_to_tmac(
            src.as_ref(),
            Some(z.as_ref()),
            dst.as_ref(),
            &opts,
            progress,
        ),
        None => quantize_file(src.as_ref(), dst.as_ref(), &opts, progress),
    }
    .map_err(|e| e.to_string())?;
    if tty {
        eprintln!();
    }
    outln!(
        "{dst}: {} | {:.1} MiB | {:.2} bits per weight ({} matrices) | {:.1} s",
        target.name(),
        summary.bytes as f64 / 1048576.0,
        summary.bits_per_weight,
        summary.matrices,
        t0.elapsed().as_secs_f64()
    );
    for n in &summary.notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

fn export(args: &[String]) -> Result<(), String> {
    const EXPORT_USAGE: &str =
        "usage: tmac export --llama2c MODEL OUT.bin TOKENIZER.bin [-z TOKENIZER]
writes MODEL (GGUF, or any file tmac runs) as a llama2.c \"version 0\" checkpoint (f32) and its
vocabulary as a llama2.c tokenizer.bin";
    let (args, z) = take_tokenizer(args)?;
    let (mut llama2c, mut paths) = (false, Vec::new());
    for a in &args {
        match a.as_str() {
            "--llama2c" => llama2c = true,
            "-h" | "--help" => {
                outln!("{EXPORT_USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{EXPORT_USAGE}")),
            s => paths.push(s.to_string()),
        }
    }
    let ([src, out, tok], true) = (paths.as_slice(), llama2c) else {
        return Err(EXPORT_USAGE.to_string());
    };
    let t0 = Instant::now();
    let s = tmac::model::legacy::export_llama2c(
        src.as_ref(),
        z.as_deref().map(std::path::Path::new),
        out.as_ref(),
        tok.as_ref(),
    )
    .map_err(|e| e.to_string())?;
    outln!(
        "{out}: llama2.c checkpoint, {} | rope base {} | {} bytes ({:.1} MiB)\n{tok}: {} tokens, {} bytes | {:.1} s",
        s.header.describe(),
        s.rope_base,
        s.model_bytes,
        s.model_bytes as f64 / 1048576.0,
        s.header.vocab_size,
        s.tokenizer_bytes,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let (args, z) = take_tokenizer(args)?;
    let (mut model, mut n_prompt, mut n_gen, mut reps, mut compute) =
        (None, 64, 64, 3, Compute::default());
    let (mut json, mut bandwidth) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-p" => n_prompt = parse_num(a, val()?)?,
            "-n" => n_gen = parse_num(a, val()?)?,
            "-r" => reps = parse_num(a, val()?)?,
            "--f32" => compute = Compute::F32,
            "--json" => json = true,
            "--bandwidth" => bandwidth = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => model = Some(s.to_string()),
        }
    }
    if bandwidth {
        // one core's streaming read bandwidth, for the roofline
        outln!(
            "read bandwidth: {:.2} GB/s",
            tmac::bench::read_bandwidth(1024)
        );
        if model.is_none() {
            return Ok(());
        }
    }
    let model = model.ok_or("bench: no model given")?;
    let t0 = Instant::now();
    let m = Model::load(&model, &load_options(compute, &z)).map_err(|e| e.to_string())?;
    let load = t0.elapsed().as_secs_f64();
    let rss_load = rss_mib();
    let r = tmac::bench::run(&m, n_prompt.max(1), n_gen.max(1), reps.max(1))
        .map_err(|e| e.to_string())?;
    let (p, d) = (
        tmac::bench::spread(&r.prefill),
        tmac::bench::spread(&r.decode),
    );
    let (isa, tables, kind, wbytes, bpw) = (
        m.isa.name(),
        m.knobs.tables.name(),
        m.weights.layers[0].wq.kind(),
        m.weight_bytes(),
        m.bits_per_weight(),
    );
    if json {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!(
            "{{\"model\": {model:?}, \"kernel\": {isa:?}, \"tables\": {tables:?}, \"weights\": {kind:?}, \"load_s\": {load:.4}, \"rss_load_mib\": {rss_load:.1}, \"weight_bytes\": {wbytes}, \"bits_per_weight\": {bpw:.4}, \"prefill_tps\": [{}], \"decode_tps\": [{}]}}",
            list(&r.prefill),
            list(&r.decode)
        );
        return Ok(());
    }
    outln!(
        "{model}: {} | {:.1} MiB of weights per token ({bpw:.2} bits per weight)\nload {load:.3} s | RSS after load {rss_load:.0} MiB, after the run {:.0} MiB\nprefill {n_prompt} tokens: {:.1} tok/s (min {:.1}, max {:.1})\ndecode {n_gen} tokens: {:.1} tok/s (min {:.1}, max {:.1})",
        m.kernel_desc(),
        wbytes as f64 / 1048576.0,
        rss_mib(),
        p.1, p.0, p.2, d.1, d.0, d.2
    );
    Ok(())
}

/// Resident set size of this process (Linux), in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0 / 1048576.0)
}

fn tune(args: &[String]) -> Result<(), String> {
    use tmac::kernel::lut::Tables;
    use tmac::kernel::{self, tune};
    let (mut model, mut rounds, mut int8) = (None, 30, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" => rounds = parse_num(a, it.next().ok_or("-r needs a value")?)?,
            "--int8-tables" => int8 = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => model = Some(s.to_string()),
        }
    }
    let isa = env_settings().isa;
    let m = Model::load(
        model.ok_or("tune: no model given")?,
        &LoadOptions {
            kernel: Some(isa),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "tuning the {} kernels on {} ({rounds} rounds)...",
        isa.name(),
        tune::cpu_id()
    );
    let results = tune::tune(&m, isa, rounds);
    let default = kernel::Knobs::default_for(isa);
    let base = results
        .iter()
        .find(|(k, _)| *k == default)
        .map_or(1.0, |r| r.1);
    for (k, t) in &results {
        outln!(
            "tables {:<5} row_tile {} prefetch {:>5}: {:>8.1} us  ({:.2}x the default){}",
            k.tables.name(),
            k.row_tile,
            k.prefetch,
            t * 1e6,
            base / t,
            if *k == default { "  <- default" } else { "" }
        );
    }
    // int8 tables change the results, so they are chosen only when asked for
    let (best, t) = results
        .iter()
        .filter(|(k, _)| int8 || k.tables == Tables::Exact)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("no candidates")?;
    let path = tune::profile_path().ok_or("no place for the profile: set TMAC_PROFILE or HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, tune::format_profile(isa, best))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    outln!(
        "best: tables {} row_tile {} prefetch {} ({:.2}x the default); saved to {}",
        best.tables.name(),
        best.row_tile,
        best.prefetch,
        base / t,
        path.display()
    );
    if !int8 {
        outln!("(int8 tables are faster but lossy; `tmac tune --int8-tables` may choose them)");
    }
    Ok(())
}
