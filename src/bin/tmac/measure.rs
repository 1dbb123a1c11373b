//! `tmac bench`, `tmac tune` and `tmac perplexity`: how fast, how good.

use super::{env_settings, load_options, parse_num, take_tokenizer, unknown_option};
use std::io::Write;
use std::time::Instant;
use tmac::{Compute, LoadOptions, Model};

pub fn perplexity(args: &[String]) -> Result<(), String> {
    if super::help(args, "usage: tmac perplexity MODEL -f TEXT_FILE [-c N] [--chunks N] [--f32] [--kv-f16] [-z TOKENIZER]\nperplexity of TEXT_FILE as llama-perplexity computes it: chunks of N tokens (default 512),\nthe second half of each scored; --kv-f16 keeps the KV cache in f16 (llama.cpp's default)\n") {
        return Ok(());
    }
    let (args, z) = take_tokenizer(args)?;
    let (mut model, mut file, mut n_ctx, mut chunks, mut compute) =
        (None, None, 512, 0, Compute::default());
    let mut kv_f16 = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-f" => file = Some(val()?.clone()),
            "-c" => n_ctx = parse_num(a, val()?)?,
            "--chunks" => chunks = parse_num(a, val()?)?,
            "--f32" => compute = Compute::F32,
            "--kv-f16" => kv_f16 = true,
            s if s.starts_with('-') => return Err(unknown_option("perplexity", s)),
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
    let r = tmac::tools::perplexity::perplexity(&m, &text, (n_ctx, kv_f16), chunks, |c, p| {
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

pub fn bench(args: &[String]) -> Result<(), String> {
    if super::help(args, "usage: tmac bench MODEL [-p N] [-n N] [-d N] [-r N] [--f32] [--kv-f16] [--json] [--bandwidth] [-z TOKENIZER]\nprefill (-p tokens, default 64) and decode (-n tokens, default 64) speed on one thread, decode\nwith -d tokens already in the context (default 1; llama-bench's -d), -r repetitions (default 3);\n--kv-f16 keeps the KV cache in f16; --bandwidth also measures one core's read bandwidth (no model\nneeded); --json prints one line of JSON\n") {
        return Ok(());
    }
    let (args, z) = take_tokenizer(args)?;
    let (mut model, mut n_prompt, mut n_gen, mut reps, mut compute) =
        (None, 64, 64, 3, Compute::default());
    let (mut json, mut bandwidth, mut depth, mut kv_f16) = (false, false, 1, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "-p" => n_prompt = parse_num(a, val()?)?,
            "-n" => n_gen = parse_num(a, val()?)?,
            "-r" => reps = parse_num(a, val()?)?,
            "-d" => depth = parse_num(a, val()?)?,
            "--f32" => compute = Compute::F32,
            "--kv-f16" => kv_f16 = true,
            "--json" => json = true,
            "--bandwidth" => bandwidth = true,
            s if s.starts_with('-') => return Err(unknown_option("bench", s)),
            s => model = Some(s.to_string()),
        }
    }
    if bandwidth {
        // one core's streaming read bandwidth, for the roofline
        outln!(
            "read bandwidth: {:.2} GB/s",
            tmac::tools::bench::read_bandwidth(1024)
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
    let spec = tmac::tools::bench::BenchSpec {
        n_prompt: n_prompt.max(1),
        n_gen: n_gen.max(1),
        depth,
        reps: reps.max(1),
        kv_f16,
    };
    // the counts measured: at least one token each
    (n_prompt, n_gen) = (spec.n_prompt, spec.n_gen);
    let r = tmac::tools::bench::run(&m, &spec).map_err(|e| e.to_string())?;
    let (p, d) = (
        tmac::tools::bench::spread(&r.prefill),
        tmac::tools::bench::spread(&r.decode),
    );
    let (isa, tables, kind, wbytes, bpw) = (
        m.kernels().0.name(),
        m.kernels().1.tables.name(),
        m.matrix_kinds().0,
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

pub fn tune(args: &[String]) -> Result<(), String> {
    if super::help(args, "usage: tmac tune MODEL [-r ROUNDS] [--int8-tables]\ntimes the kernel knobs on this machine and saves the fastest exact setting as the tuning\nprofile (TMAC_PROFILE, else ~/.config/tmac/profile); --int8-tables may choose int8 lookup\ntables (faster, lossy)\n") {
        return Ok(());
    }
    let (mut model, mut rounds, mut int8) = (None, 30, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" => rounds = parse_num(a, it.next().ok_or("-r needs a value")?)?,
            "--int8-tables" => int8 = true,
            s if s.starts_with('-') => return Err(unknown_option("tune", s)),
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
        tmac::settings::cpu_id()
    );
    let results = tmac::tools::tune::tune(&m, isa, rounds);
    let default = tmac::Knobs::default_for(isa);
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
        .filter(|(k, _)| int8 || k.tables == tmac::Tables::Exact)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("no candidates")?;
    let path = tmac::settings::profile_path()
        .ok_or("no place for the profile: set TMAC_PROFILE or HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, tmac::settings::format_profile(isa, best))
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
