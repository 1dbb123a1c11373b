//! The `tmac` command-line tool. stdout carries only generated text (or the data asked for);
//! everything else goes to stderr. One module per group of commands: `run` (generation and the
//! chat REPL), `inspect` (info, tokenize), `convert` (quantize, export), `measure` (bench, tune,
//! perplexity).

use std::io::Write;
use std::process::ExitCode;
use tmac::{Compute, LoadOptions, Model};

const USAGE: &str = "\
usage: tmac <command> [args]

commands:
  run MODEL [options]        generate text; with --chat and no prompt, a chat in the terminal
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
  bench MODEL [-p N] [-n N] [-d N] [-r N] [--f32] [--kv-f16] [--json] [--bandwidth] [-z TOKENIZER]
                             decode and prefill tok/s on this machine (1 thread);
                             --bandwidth also measures one core's read bandwidth
  perplexity MODEL -f TEXT_FILE [-c N] [--chunks N] [--f32] [--kv-f16] [-z TOKENIZER]
                             perplexity as llama-perplexity computes it (n_ctx 512 default)

`tmac COMMAND --help` describes a command; `tmac --version` prints the version.
";

/// `print!`/`println!` for what a command prints on stdout: when the reader has gone
/// (`tmac info m | head -3`), the program ends quietly, as a C tool ends on SIGPIPE, instead of
/// panicking; any other write error ends it with a message.
macro_rules! out {
    ($($arg:tt)*) => { if let Err(e) = write!(std::io::stdout(), $($arg)*) { $crate::stdout_failed(e) } };
}
macro_rules! outln {
    ($($arg:tt)*) => { if let Err(e) = writeln!(std::io::stdout(), $($arg)*) { $crate::stdout_failed(e) } };
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("tmac: writing stdout: {e}");
    std::process::exit(1);
}

mod convert;
mod inspect;
mod measure;
mod run;

const COMMANDS: [&str; 8] = [
    "run",
    "info",
    "tokenize",
    "quantize",
    "export",
    "tune",
    "bench",
    "perplexity",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("run") => run::run(rest),
        Some("info") => inspect::info(rest),
        Some("tokenize") => inspect::tokenize(rest),
        Some("perplexity") => measure::perplexity(rest),
        Some("quantize") => convert::quantize(rest),
        Some("export") => convert::export(rest),
        Some("bench") => measure::bench(rest),
        Some("tune") => measure::tune(rest),
        Some("-h" | "--help" | "help") | None => {
            out!("{USAGE}");
            return if args.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        Some("-V" | "--version" | "version") => {
            outln!("tmac {}", tmac::VERSION);
            return ExitCode::SUCCESS;
        }
        Some(c) => Err(unknown_command(c)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tmac: {e}");
            ExitCode::FAILURE
        }
    }
}

/// "unknown command", with the command one typo away if there is one.
fn unknown_command(c: &str) -> String {
    let near = COMMANDS.iter().find(|k| edit_distance(c, k) <= 2);
    match near {
        Some(k) => format!("unknown command '{c}': did you mean '{k}'? (tmac --help lists them)"),
        None => format!("unknown command '{c}' (tmac --help lists the commands)"),
    }
}

/// Levenshtein distance of two short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != cb) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// If `args` ask for help (-h, --help), print `usage` on stdout and say so.
fn help(args: &[String], usage: &str) -> bool {
    let asked = args.iter().any(|a| a == "-h" || a == "--help");
    if asked {
        out!("{usage}");
    }
    asked
}

/// The error for an option a command does not know: one line, pointing at its help.
fn unknown_option(command: &str, option: &str) -> String {
    format!("{command}: unknown option {option} (tmac {command} --help lists them)")
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

/// The kernel settings the tool takes from the environment (TMAC_KERNEL, the tuning profile,
/// TMAC_TABLES; the library reads none of them itself), read once; what cannot be applied is
/// said on stderr.
fn env_settings() -> &'static tmac::settings::EnvSettings {
    static S: std::sync::OnceLock<tmac::settings::EnvSettings> = std::sync::OnceLock::new();
    S.get_or_init(|| tmac::settings::from_env(&mut |m| eprintln!("tmac: {m}")))
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
        .ok_or("no model given (tmac --help lists the commands)")?;
    Model::load(path, &load_options(Compute::default(), &z)).map_err(|e| e.to_string())
}
