#!/usr/bin/env python3
"""`make bench-quant`: the quality of tmac's own low-bit files on SmolLM2-135M, rounded to
nearest and calibrated (GPTQ, `tmac quantize --calibrate`), against llama.cpp's files of the
same model. Writes the section between the quant-report markers of BENCHMARKS.md (tools/bench.py
keeps it when it rewrites the rest) and build/bench/quant.json. Then (alone with `--gemma`) the
same for 4-bit on Gemma 3 270M, whose weights are not a 4-bit type's to begin with: tmac's q4
against llama.cpp's Q4_1 of the same weights (section quant-gemma, build/bench/quant-gemma.json).

Calibration reads Python's own documentation (pydoc_data.topics, 80% of its topics); the
perplexities are measured on tests/data/gpl-3.0.txt, which calibration never sees, and on the
other 20% of the topics, as llama-perplexity measures them (512-token chunks, second halves
scored). Each quantization is timed, with its peak memory.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (llama.cpp's build and the requantized SmolLM2 files)

ROOT = bench.ROOT
OUT = os.path.join(ROOT, "build", "bench")
CALIB = os.path.join(ROOT, "build", "calib")
TMAC = os.path.join(OUT, "tmac-quant-report")  # a copy: rebuilding tmac meanwhile changes nothing
Q4_1 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
GPL = os.path.join(ROOT, "tests", "data", "gpl-3.0.txt")
MARK = ("<!-- quant-report -->", "<!-- /quant-report -->")
MARK_GEMMA = ("<!-- quant-gemma -->", "<!-- /quant-gemma -->")
CHUNKS = 14  # of the held-out text, as many as the GPL has

# name, quantize arguments, calibrated; a mix gives some matrices more bits, as llama.cpp's
# Q2_K and Q3_K_M do (see the section's text)
MIX2 = ["--tensor-type", "attn_v=q4", "--tensor-type", "ffn_down=q3", "--tensor-type", "attn_output=q3"]
MIX3 = ["--tensor-type", "attn_v=q4", "--tensor-type", "ffn_down=q4"]
# the K types' mixes, as llama.cpp's Q3_K_M and Q2_K: more bits for the matrices SmolLM2 is most
# sensitive to per byte, and (llama.cpp's use_more_bits) for the last eighth of the layers
MIX3K = ["--tensor-type", "attn_v=q4", "--tensor-type", "ffn_down=q4", "--tensor-type", "attn_output=q4",
         "--tensor-type", "blk.26-29.ffn_gate=q4", "--tensor-type", "blk.26-29.ffn_up=q4"]
MIX2K = ["--tensor-type", "attn_v=q4k", "--tensor-type", "ffn_down=q3k", "--tensor-type", "attn_output=q3k"]
# 2 bits where most of the weights are, ffn_gate and ffn_up, except in the first and last four
# layers (q3k there); every other matrix q4, which on this model is its Q4_1 source exactly
MIX2KF = ["--tensor-type", "attn_q=q4", "--tensor-type", "attn_k=q4", "--tensor-type", "attn_v=q4",
          "--tensor-type", "attn_output=q4", "--tensor-type", "ffn_down=q4",
          "--tensor-type", "blk.0-3.ffn_gate=q3k", "--tensor-type", "blk.0-3.ffn_up=q3k",
          "--tensor-type", "blk.26-29.ffn_gate=q3k", "--tensor-type", "blk.26-29.ffn_up=q3k"]
CONFIGS = [
    ("q4", ["--type", "q4"], False),
    ("q4 g128", ["--type", "q4", "--group", "128"], False),
    ("q4 g128", ["--type", "q4", "--group", "128"], True),
    ("q3", ["--type", "q3"], False),
    ("q3", ["--type", "q3"], True),
    ("q3 + rotation", ["--type", "q3", "--rotate"], True),
    ("q3 mix", ["--type", "q3"] + MIX3, True),
    ("q2", ["--type", "q2"], False),
    ("q2", ["--type", "q2"], True),
    ("q2 + rotation", ["--type", "q2", "--rotate"], True),
    ("q2 mix", ["--type", "q2"] + MIX2, True),
    ("q3k", ["--type", "q3k"], False),
    ("q3k", ["--type", "q3k"], True),
    ("q3k mix", ["--type", "q3k"] + MIX3K, True),
    ("q2k", ["--type", "q2k"], False),
    ("q2k", ["--type", "q2k"], True),
    ("q2k mix", ["--type", "q2k"] + MIX2K, True),
    ("q2k ffn mix", ["--type", "q2k"] + MIX2KF, False),
    ("q2k ffn mix", ["--type", "q2k"] + MIX2KF, True),
    ("tq", ["--type", "tq"], False),
    ("tq", ["--type", "tq"], True),
    ("tq + rotation", ["--type", "tq", "--rotate"], True),
]


def log(*a):
    print("[quant-report]", *a, file=sys.stderr, flush=True)


def run(cmd):
    """(stdout, stderr, seconds) of a command that must succeed."""
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    return p.stdout, p.stderr, time.time() - t0


def timed(cmd):
    """`run` under /usr/bin/time, with the peak memory (MiB) of that one process."""
    out, err, secs = run(["/usr/bin/time", "-f", "maxrss_kb=%M"] + cmd)
    rss = int(re.search(r"maxrss_kb=(\d+)", err).group(1)) / 1024
    return out, err, secs, rss


def texts():
    """(calibration, held-out) text files from Python's pydoc topics."""
    os.makedirs(CALIB, exist_ok=True)
    train, held = os.path.join(CALIB, "pydoc-train.txt"), os.path.join(CALIB, "pydoc-heldout.txt")
    import pydoc_data.topics as t
    keys = sorted(t.topics)
    cut = len(keys) * 4 // 5
    for path, ks in ((train, keys[:cut]), (held, keys[cut:])):
        with open(path, "w") as f:
            f.write("\n\n".join(t.topics[k].strip() for k in ks) + "\n")
    return train, held


def tmac_ppl(model, text):
    out, _, _ = run([TMAC, "perplexity", model, "-f", text, "-c", "512", "--chunks", str(CHUNKS)])
    return float(re.search(r"PPL = ([0-9.]+)", out).group(1))


def llama_ppl(bin_dir, model, text):
    _, err, _ = run([os.path.join(bin_dir, "llama-perplexity"), "-m", model, "-f", text, "-c", "512",
                        "-t", "1", "--chunks", str(CHUNKS)])
    return float(re.search(r"Final estimate: PPL = ([0-9.]+)", err).group(1))


def greedy(model, prompt, chat):
    cmd = [TMAC, "run", model, "-i", prompt, "-n", "32", "-t", "0"] + (["--chat"] if chat else [])
    out, _, _ = run(cmd)
    return out.strip()


def main(only=None):
    """Every configuration, or with `only` (names as in CONFIGS, " cal" appended for the
    calibrated ones) just those, the other rows kept from the last run's quant.json."""
    old = {"configs": [], "llama": []}
    if only:
        with open(os.path.join(OUT, "quant.json")) as f:
            old = json.load(f)
        known = {tag(n, c) for n, _, c in CONFIGS}
        if only - known:
            sys.exit("unknown rows: %s (rows: %s)" % (", ".join(sorted(only - known)), ", ".join(sorted(known))))
    kept = {tag(r["name"], r["calibrated"]): r for r in old["configs"]}
    bin_dir, env = tools()
    f32 = bench.smollm2_f32(bin_dir, env)
    paths, _ = bench.requantized(bin_dir, env, ["Q3_K_M", "Q2_K"])
    llama = [("Q4_1", Q4_1), ("Q3_K_M", paths["Q3_K_M"]), ("Q2_K", paths["Q2_K"])]
    train, held = texts()
    rep = {"configs": [], "llama": []}
    for name, args, cal in CONFIGS:
        if only and tag(name, cal) not in only:
            if tag(name, cal) not in kept:
                sys.exit("no row '%s' in the last quant.json: run every row" % tag(name, cal))
            rep["configs"].append(kept[tag(name, cal)])
            continue
        path = os.path.join(OUT, "quant-%s.tmac" % re.sub(r"[^a-z0-9]+", "-", tag(name, cal)))
        cmd = [TMAC, "quantize", f32, path] + args + (["--calibrate", train] if cal else [])
        out, _, secs, rss = timed(cmd)
        bpw = float(re.search(r"([0-9.]+) bits per weight", out).group(1))
        row = {"name": name, "calibrated": cal, "args": args, "bpw": bpw, "mib": os.path.getsize(path) / 1048576,
               "seconds": secs, "rss": rss, "gpl": tmac_ppl(path, GPL), "held": tmac_ppl(path, held)}
        if name in ("q3", "q2", "q3 mix", "q2 mix", "q3k", "q2k", "q3k mix", "q2k mix", "q2k ffn mix") and cal:
            row["answers"] = [greedy(path, "The capital of France is", False),
                              greedy(path, "What is the capital of France?", True)]
        log(json.dumps(row))
        rep["configs"].append(row)
        os.remove(path)
    for name, path in llama:
        if only and old["llama"]:
            rep["llama"] = old["llama"]
            break
        row = {"name": name, "mib": os.path.getsize(path) / 1048576, "gpl": llama_ppl(bin_dir, path, GPL),
               "held": llama_ppl(bin_dir, path, held)}
        log(json.dumps(row))
        rep["llama"].append(row)
    with open(os.path.join(OUT, "quant.json"), "w") as f:
        json.dump(rep, f, indent=1)
    write(rep)


def tools():
    """Builds tmac (a copy runs) and llama.cpp: (llama.cpp's bin directory, its environment)."""
    subprocess.check_call(["cargo", "build", "--release", "--bin", "tmac"], cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "target", "release", "tmac"), TMAC)
    bin_dir = subprocess.check_output([os.path.join(ROOT, "tools", "llama_cpp.sh")], text=True).strip().splitlines()[-1]
    env = bench.llama_env(bin_dir)
    os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
    return bin_dir, env


def gemma():
    """Gemma 3 270M from its Q4_K_M file (a mix of Q5_0, Q4_K, Q6_K and Q8_0 matrices): tmac's q4
    (groups of 32, scale and minimum per group: Q4_1's size) rounded to nearest and calibrated,
    llama.cpp's Q4_1 requantized from the same file, both with the embedding in Q8_0, and the
    source file itself."""
    bin_dir, _ = tools()
    if not os.path.exists(GEMMA):
        subprocess.check_call(["make", "--no-print-directory", "gemma"], cwd=ROOT)
    train, held = texts()
    rep = {"tmac": [], "llama": []}
    for cal in (False, True):
        path = os.path.join(OUT, "gemma-q4%s.tmac" % ("-cal" if cal else ""))
        cmd = [TMAC, "quantize", GEMMA, path, "--type", "q4"] + (["--calibrate", train] if cal else [])
        _, _, secs, rss = timed(cmd)
        row = {"calibrated": cal, "mib": os.path.getsize(path) / 1048576, "seconds": secs, "rss": rss,
               "gpl": tmac_ppl(path, GPL), "held": tmac_ppl(path, held),
               "answer": greedy(path, "The capital of France is", False)}
        log(json.dumps(row))
        rep["tmac"].append(row)
        os.remove(path)
    q4_1 = os.path.join(OUT, "gemma-q4_1.gguf")
    run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", "--token-embedding-type", "q8_0",
         GEMMA, q4_1, "Q4_1"])
    for name, path in (("Q4_1 (requantized)", q4_1), ("Q4_K_M (the source)", GEMMA)):
        row = {"name": name, "mib": os.path.getsize(path) / 1048576, "gpl": llama_ppl(bin_dir, path, GPL),
               "held": llama_ppl(bin_dir, path, held)}
        log(json.dumps(row))
        rep["llama"].append(row)
    os.remove(q4_1)
    with open(os.path.join(OUT, "quant-gemma.json"), "w") as f:
        json.dump(rep, f, indent=1)
    write_gemma(rep)


def write_gemma(rep):
    src = os.path.relpath(GEMMA, ROOT)
    L = [MARK_GEMMA[0], "## 4-bit from weights that are not 4-bit: Gemma 3 270M\n",
         "Generated by `make bench-quant` (tools/quant_report.py --gemma). SmolLM2's only weights are its Q4_1 "
         "file's, so no 4-bit file can be closer to them than Q4_1 itself. Gemma 3 270M's file (`make gemma`) is "
         "llama.cpp's Q4_K_M mix (Q5_0, Q4_K, Q6_K and Q8_0 matrices); from those weights, tmac's q4 (groups of 32, "
         "a scale and a minimum each: Q4_1's size) against llama.cpp's Q4_1: `tmac quantize %s OUT --type q4 "
         "[--calibrate build/calib/pydoc-train.txt]` and `llama-quantize --allow-requantize --token-embedding-type "
         "q8_0 %s OUT Q4_1` (the embedding, which is also the head, in Q8_0 in every file). Perplexity as above "
         "(c 512, %d chunks).\n" % (src, src, CHUNKS),
         "| engine | type | file MiB | ppl GPL-3 | ppl held-out pydoc | quantize s | peak MiB |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for r in rep["tmac"]:
        L.append("| tmac | q4, %s | %.1f | %.2f | %.2f | %.0f | %.0f |" % (
            "GPTQ" if r["calibrated"] else "nearest", r["mib"], r["gpl"], r["held"], r["seconds"], r["rss"]))
    for r in rep["llama"]:
        L.append("| llama.cpp | %s | %.1f | %.2f | %.2f | - | - |" % (r["name"], r["mib"], r["gpl"], r["held"]))
    L.append("\nGreedy continuations of \"The capital of France is\" (`tmac run FILE -i PROMPT -n 32 -t 0`; this "
             "is the base model, not a chat model):\n")
    for r in rep["tmac"]:
        L.append("- q4 %s: \"%s\"" % ("GPTQ" if r["calibrated"] else "nearest", r["answer"].replace("\n", "\\n")))
    L.append(MARK_GEMMA[1])
    write_section(MARK_GEMMA, L)


def write_section(marks, lines):
    """Replaces the section between `marks` in BENCHMARKS.md where it is (or appends it)."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    if marks[0] in text:
        text = text[:text.index(marks[0])] + "\n".join(lines) + text[text.index(marks[1]) + len(marks[1]):]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    log("wrote the %s section of BENCHMARKS.md" % marks[0][5:-4])


def tag(name, cal):
    return name + (" cal" if cal else "")


def bpw(mib):
    """Bits per weight of a whole SmolLM2 file (134,515,008 weights)."""
    return mib * 1048576 * 8 / 134515008


def write(rep):
    L = [MARK[0], "## Low-bit quality: rounding to nearest and calibrated (GPTQ)\n",
         "Generated by `make bench-quant` (tools/quant_report.py). SmolLM2-135M-Instruct from its F32 GGUF, which "
         "is the published Q4_1 file dequantized (no other weights of this model are on hand), so q4 with groups of "
         "32 reproduces those weights exactly and any other type is measured against them. Calibrated files: "
         "`tmac quantize build/SmolLM2-135M-Instruct.F32.gguf OUT --type T --calibrate build/calib/pydoc-train.txt` "
         "(GPTQ, then each row's scales and minimums refitted to its codes against the same Hessian, on 4096 tokens "
         "of 80%% of Python's pydoc topics). Perplexity (lower is better) on the GPL-3 text "
         "and on the other 20%% of the topics, both unseen by calibration: `tmac perplexity FILE -f TEXT -c 512 "
         "--chunks %d`, `llama-perplexity -m FILE -f TEXT -c 512 -t 1 --chunks %d`. Embedding and head are q8 in "
         "every tmac file (`--head`); bits per weight count the whole file. (`--only ROWS` re-runs some rows and "
         "keeps the others' last figures.)\n" % (CHUNKS, CHUNKS),
         "| engine | type | calibrated | bits/weight | file MiB | ppl GPL-3 | ppl held-out pydoc | quantize s | peak MiB |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rep["configs"]:
        L.append("| tmac | %s | %s | %.2f | %.1f | %.2f | %.2f | %.0f | %.0f |" % (
            r["name"], "GPTQ" if r["calibrated"] else "nearest", bpw(r["mib"]), r["mib"], r["gpl"], r["held"],
            r["seconds"], r["rss"]))
    for r in rep["llama"]:
        L.append("| llama.cpp | %s | - | %.2f | %.1f | %.2f | %.2f | - | - |" % (
            r["name"], bpw(r["mib"]), r["mib"], r["gpl"], r["held"]))
    L.append("\nq3k and q2k store scale and minimum per 16 columns as 8-bit integers under f16 factors per "
             "super-block (ggml's K-quant scheme, read by the same kernels as ggml's K-quant files). Mixes: "
             "`q3 mix` = `--type q3 %s`, `q2 mix` = `--type q2 %s`, `q3k mix` = `--type q3k %s`, `q2k mix` = "
             "`--type q2k %s`, `q2k ffn mix` = `--type q2k %s` (2-bit ffn_gate and ffn_up in 22 of the 30 layers, "
             "37%% of the blocks' weights; the other matrices q4, which on this model is their Q4_1 source "
             "exactly). llama.cpp's Q2_K and Q3_K_M mix types the same way; on this model most of their matrices "
             "fall back to Q4_0 and Q5_0, as 576 columns are not a multiple of 256 (see the fallbacks listed "
             "above): its Q2_K here is Q4_0 but for ffn_down, which is Q3_K, and has no 2-bit matrix.\n"
             % (" ".join(MIX3), " ".join(MIX2), " ".join(MIX3K), " ".join(MIX2K), " ".join(MIX2KF)))
    L.append("Greedy answers of the calibrated files (`tmac run FILE -i PROMPT -n 32 -t 0`, the second with `--chat`):\n")
    for r in rep["configs"]:
        for prompt, a in zip(["The capital of France is", "What is the capital of France? (chat)"],
                             r.get("answers", [])):
            L.append("- %s, \"%s\": \"%s\"" % (r["name"], prompt, a.replace("\n", "\\n")))
    L.append(MARK[1])
    write_section(MARK, L)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-only"]:  # the section again from the last run's quant.json
        with open(os.path.join(OUT, "quant.json")) as f:
            write(json.load(f))
    elif sys.argv[1:2] == ["--only"]:  # some rows again: --only "q3k cal,q3k mix cal"
        main({r.strip() for r in sys.argv[2].split(",")})
    elif sys.argv[1:] == ["--gemma"]:  # the Gemma 3 section alone
        gemma()
    else:
        main()
        gemma()
