#!/usr/bin/env python3
"""Make the architecture fixtures: one tiny random F32 model per llama.cpp architecture tmac
implements beyond llama/bitnet, laid out as llama.cpp's converter (conversion/*.py) writes that
architecture, and what llama.cpp computes with it.

Every model (seed below, one stream per file): 32 embedding, 64 FFN, 2 layers, 4 heads / 2 KV
heads, head_dim 8 (16 for qwen3 and gemma3, so q_dim 64 != n_embd), RMS eps 1e-6, the 288-token
byte-level BPE vocabulary of make_bitnet_fixtures.py (tokenizer.ggml.model gpt2, pre llama-bpe,
BOS/EOS/EOT specials, 7 padding rows) and its tokenizer metadata. Matrices are normal with std
1/sqrt(cols), the embedding std 0.15, norms 1 + 0.1 * normal (Gemma norms are stored as the
converter stores them, the +1 already added, so they are simply values near 1). Per architecture
(the keys each file holds are in tests/fixtures/arch/README.md, written by this script):

  qwen2          q/k/v biases (std 0.3), rope.freq_base 1e6, NEOX, tied output
  qwen2-outbias  the same weights plus an untied output.weight and output.bias (std 0.5), which
                 llama.cpp's qwen2 graph adds after the LM head
  qwen3          key_length = value_length = 16, per-head attn_q_norm / attn_k_norm (1 + 0.3 N)
  gemma          embedding * sqrtf(n_embd), GEGLU (llama.cpp hard-codes gelu), Q * 1/sqrt(hd), tied
  gemma2         post_attention_norm / post_ffw_norm, attn_logit_softcapping 5, final 3 (Q and K
                 weights x2.5 so the attention scores reach the cap; the tied std-0.15 embedding
                 makes the logits exceed 3), sliding_window 4 with the default pattern 2
  gemma3         key_length 16, q/k norms, post norms, sliding_window 4, sliding_window_pattern 2
                 (u32), rope.freq_base 1e6 (global layer 1), rope.freq_base_swa 1e4 (layer 0)
  phi3           fused attn_qkv and ffn_up (gate rows, then up rows), untied output,
                 rope.dimension_count 8, attention.sliding_window 4 (which llama.cpp ignores)
  granite        embedding_scale 12, residual_scale 0.22, attention.scale 1/64 (Q and K weights
                 x3 so it changes the attention), logit_scale 8, NORM rope, tied output

The embedding std is small (0.15; Gemma scales it by sqrt(32), Granite by 12) so that the layers,
not the input token's own embedding, decide the logits (see the argmax counts in the README).
general.name is "tmac tiny random model" in every file: one containing "phi3" / "phi-3" switches on
llama.cpp's Phi-3 tokenizer attributes, which throw (unordered_map::at) without "</s>" etc.

Written to tests/fixtures/arch/:
  <name>.gguf         the model
  <name>.logits.txt   llama.cpp's teacher-forced logits (every vocabulary entry) for a fixed
                      32-token sequence (BOS + 31), in the format of tests/fixtures/bitnet/logits.txt
  README.md           per file: features, metadata keys, llama.cpp's view of it (from its load
                      log), the logit std at the last position, and the control runs below

Checks (the script fails if one does not hold): every tensor name is one gguf-py lists for the
architecture; llama.cpp loads the file (any missing / extra tensor or bad key throws); the logits
are finite, their std across the vocabulary at the last position is > 0.1 and the argmax is not
the same at every position. Control runs (temporary files, not kept) show each special feature
changes the logits, and where llama.cpp should ignore a key, that it does: e.g. gemma2/gemma3
with sliding_window 64 must give the same logits at positions 0-3 and different ones later, and
phi3 without its sliding_window key must give identical logits.

llama.cpp runs single-threaded, F32 KV cache, no flash attention, n_ctx 256
(make_bitnet_fixtures.llama).

Usage: python3 tools/make_arch_fixtures.py   (rerun any time; output is stable)
"""
import contextlib
import ctypes
import os
import re
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "arch")
GGUF_PY = os.path.join(ROOT, "build", "llama.cpp", "llama_cpp_python-0.3.36", "vendor", "llama.cpp",
                       "gguf-py")
SEED = 4242

sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_bitnet_fixtures as mbf  # noqa: E402  (vocabulary, gguf_writer(), llama(), write_logits())
from make_fixtures import setup_llama  # noqa: E402

N_EMBD, N_FF, N_LAYER, N_HEAD, N_KV, EPS = 32, 64, 2, 4, 2, 1e-6
EMBD_STD, NORM_STD, QK_NORM_STD, BIAS_STD, OUT_BIAS_STD = 0.15, 0.1, 0.3, 0.3, 0.5
N_SEQ = 32
# make_bitnet_fixtures' LOGIT_TEXT plus one token: BOS + 31 tokens with this vocabulary
LOGIT_TEXT = mbf.LOGIT_TEXT + "."

# file name -> (architecture, what it exercises)
MODELS = {
    "qwen2": ("qwen2", "q/k/v biases, rope base 1e6, NEOX, tied output"),
    "qwen2-outbias": ("qwen2", "as qwen2 + untied output.weight + output.bias"),
    "qwen3": ("qwen3", "head_dim 16 (q_dim 64 != n_embd), per-head q/k RMS norm, NEOX, tied"),
    "gemma": ("gemma", "embd x sqrt(n_embd), GEGLU (f16 GELU table), Q x 1/sqrt(hd), NEOX, tied"),
    "gemma2": ("gemma2", "post-attn/post-ffw norms, attn softcap 5 (before mask), final softcap 3, "
                         "SWA window 4 on layer 0 (default pattern 2), embd scale, GEGLU, tied"),
    "gemma3": ("gemma3", "head_dim 16, q/k norms, post norms, SWA window 4 on layer 0 (pattern 2), "
                         "rope base 1e4 on SWA / 1e6 on global layers, no final softcap, tied"),
    "phi3": ("phi3", "fused attn_qkv, fused ffn_up (gate|up, SwiGLU), Q x 1/sqrt(hd), untied output, "
                     "sliding_window key ignored"),
    "granite": ("granite", "embedding_scale, residual_scale, attention.scale (kq scale), "
                           "logit_scale (divides), NORM rope, tied"),
}
HEAD_DIM = {"qwen3": 16, "gemma3": 16}  # others: n_embd / n_head = 8
# scales Wq and Wk: gemma2's attention scores reach the softcap; granite's are large enough that
# its attention.scale 1/64 (instead of 1/sqrt(16)) changes the attention a lot
QK_GAIN = {"gemma2": 2.5, "granite": 3.0}

# control runs: file name -> [(label, options, expectation)]; expectation "differs" (the feature
# matters), "same" (llama.cpp ignores the change) or "window" (positions < 4 the same, later differ)
CONTROLS = {
    "qwen2": [("no q/k/v biases", {"no_bias": True}, "differs"),
              ("rope base 1e4", {"theta": 10000.0}, "differs")],
    "qwen2-outbias": [("no output.bias", {"no_out_bias": True}, "differs")],
    "qwen3": [("q/k norms = 1", {"qk_norm_one": True}, "differs")],
    "gemma": [("norms = 1", {"norm_one": True}, "differs")],
    "gemma2": [("attn softcap 1e6", {"attn_cap": 1e6}, "differs"),
               ("final softcap 1e6", {"final_cap": 1e6}, "differs"),
               ("sliding_window 64", {"window": 64}, "window"),
               ("pattern key [true,false]", {"pattern": [True, False]}, "same")],
    "gemma3": [("sliding_window 64", {"window": 64}, "window"),
               ("pattern key [true,false]", {"pattern": [True, False]}, "same"),
               ("no pattern key (default 6: both layers SWA)", {"pattern": None}, "differs"),
               ("rope.freq_base_swa 1e6", {"theta_swa": 1e6}, "differs"),
               ("no rope.freq_base_swa key (default 1e4)", {"theta_swa": None}, "same"),
               ("q/k norms = 1", {"qk_norm_one": True}, "differs")],
    "phi3": [("no sliding_window key", {"window": None}, "same")],
    "granite": [("no embedding_scale", {"embedding_scale": None}, "differs"),
                ("no residual_scale", {"residual_scale": None}, "differs"),
                ("no attention.scale (1/sqrt(hd))", {"attention_scale": None}, "differs"),
                ("logit_scale 1", {"logit_scale": 1.0}, "differs")],
}


@contextlib.contextmanager
def patched(mod, **values):
    old = {k: getattr(mod, k) for k in values}
    for k, v in values.items():
        setattr(mod, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(mod, k, v)


def weights(name, opt):
    """The tensors (name -> float32 array, numpy shape = (rows, cols)), in file order. Every
    random draw happens whatever the options, so a control run differs only where it says."""
    arch = MODELS[name][0]
    rng = np.random.default_rng(SEED + list(MODELS).index(name if name != "qwen2-outbias" else "qwen2"))
    hd = HEAD_DIM.get(arch, N_EMBD // N_HEAD)
    nq, nkv = N_HEAD * hd, N_KV * hd
    gain = QK_GAIN.get(arch, 1.0)
    f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
    mat = lambda r, c: f32(rng.standard_normal((r, c)) / np.sqrt(c))
    norm = lambda n, std=NORM_STD: f32(1.0 + std * rng.standard_normal(n))
    t = {"token_embd.weight": f32(EMBD_STD * rng.standard_normal((mbf.N_ROWS, N_EMBD)))}
    for l in range(N_LAYER):
        p = "blk.%d." % l
        t[p + "attn_norm.weight"] = norm(N_EMBD)
        if arch == "phi3":
            t[p + "attn_qkv.weight"] = mat(nq + 2 * nkv, N_EMBD)  # rows: Q, then K, then V
        else:
            t[p + "attn_q.weight"] = f32(gain * mat(nq, N_EMBD))
            t[p + "attn_k.weight"] = f32(gain * mat(nkv, N_EMBD))
            t[p + "attn_v.weight"] = mat(nkv, N_EMBD)
        if arch == "qwen2":
            for s, n in [("q", nq), ("k", nkv), ("v", nkv)]:
                b = f32(BIAS_STD * rng.standard_normal(n))
                if not opt.get("no_bias"):
                    t[p + "attn_%s.bias" % s] = b
        if arch in ("qwen3", "gemma3"):
            for s in ("q", "k"):
                w = norm(hd, QK_NORM_STD)
                t[p + "attn_%s_norm.weight" % s] = np.ones_like(w) if opt.get("qk_norm_one") else w
        t[p + "attn_output.weight"] = mat(N_EMBD, nq)
        if arch in ("gemma2", "gemma3"):
            t[p + "post_attention_norm.weight"] = norm(N_EMBD)
        t[p + "ffn_norm.weight"] = norm(N_EMBD)
        if arch == "phi3":
            t[p + "ffn_up.weight"] = f32(np.concatenate([mat(N_FF, N_EMBD), mat(N_FF, N_EMBD)]))
        else:
            t[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD)
            t[p + "ffn_up.weight"] = mat(N_FF, N_EMBD)
        t[p + "ffn_down.weight"] = mat(N_EMBD, N_FF)
        if arch in ("gemma2", "gemma3"):
            t[p + "post_ffw_norm.weight"] = norm(N_EMBD)
    t["output_norm.weight"] = norm(N_EMBD)
    if name in ("qwen2-outbias", "phi3"):
        t["output.weight"] = mat(mbf.N_ROWS, N_EMBD)
    if name == "qwen2-outbias":
        b = f32(OUT_BIAS_STD * rng.standard_normal(mbf.N_ROWS))
        if not opt.get("no_out_bias"):
            t["output.bias"] = b
    if opt.get("norm_one"):
        for k in t:
            if k.endswith("norm.weight"):
                t[k] = np.ones_like(t[k])
    return t


def theta(name, opt):
    """rope.freq_base as the converter writes it (None: not written)."""
    arch = MODELS[name][0]
    return opt.get("theta", {"qwen2": 1e6, "qwen3": 1e6, "gemma3": 1e6, "phi3": 10000.0,
                             "granite": 10000.0}.get(arch))


def metadata(w, name, opt):
    """The architecture keys the converter writes for this architecture, on top of the shared
    ones make_bitnet_fixtures.gguf_writer() wrote (context/embedding/feed_forward length,
    block_count, head counts, rms eps, rope.freq_base, rope.dimension_count)."""
    arch = MODELS[name][0]
    a = arch + "."
    hd = HEAD_DIM.get(arch, N_EMBD // N_HEAD)
    get = lambda k, d: opt.get(k, d)
    w.remove_key(a + "hidden_activation")  # no converter writes it for these architectures
    # rope.dimension_count: only LlamaModel subclasses (granite) and phi3 write it
    if arch not in ("granite", "phi3"):
        w.remove_key(a + "rope.dimension_count")
    if theta(name, opt) is None:  # Gemma/Gemma2 write no rope.freq_base (llama.cpp: 10000)
        w.remove_key(a + "rope.freq_base")
    if arch in ("qwen3", "gemma", "gemma2", "gemma3"):  # configs carrying head_dim
        w.add_key_length(hd)
        w.add_value_length(hd)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(get("attn_cap", 5.0))
        w.add_final_logit_softcapping(get("final_cap", 3.0))
        w.add_sliding_window(get("window", 4))
        if get("pattern", None) is not None:  # the converter writes none: llama.cpp's default 2
            w.add_sliding_window_pattern(get("pattern", None))
    if arch == "gemma3":
        if get("theta_swa", 10000.0) is not None:
            w.add_rope_freq_base_swa(get("theta_swa", 10000.0))
        w.add_sliding_window(get("window", 4))
        if get("pattern", 2) is not None:
            w.add_sliding_window_pattern(get("pattern", 2))
    if arch == "phi3":
        w.add_rope_scaling_orig_ctx_len(mbf.N_CTX)
        if get("window", 4) is not None:
            w.add_sliding_window(get("window", 4))
    if arch == "granite":
        w.add_vocab_size(mbf.N_ROWS)
        for key, add, default in [("attention_scale", w.add_attention_scale, 0.015625),
                                  ("embedding_scale", w.add_embedding_scale, 12.0),
                                  ("residual_scale", w.add_residual_scale, 0.22),
                                  ("logit_scale", w.add_logit_scale, 8.0)]:
            if get(key, default) is not None:
                add(get(key, default))


def write_gguf(gguf, path, name, opt):
    arch = MODELS[name][0]
    tokens, types, _ = mbf.vocabulary()
    bos, eos = tokens.index(mbf.SPECIALS[0]), tokens.index(mbf.SPECIALS[1])
    with patched(mbf, N_EMBD=N_EMBD, N_FF=N_FF, N_HEAD=N_HEAD, N_KV=N_KV, EPS=EPS,
                 HEAD_DIM=HEAD_DIM.get(arch, N_EMBD // N_HEAD), THETA=theta(name, opt) or 0.0):
        w = mbf.gguf_writer(gguf, path, arch, N_LAYER, tokens, types, bos, eos)
    w.add_type("model")
    # not the architecture's name: a general.name containing "phi3" or "phi-3" turns on
    # llama.cpp's Phi-3 tokenizer attributes, which need "</s>", "<unk>", "<s>", "<|endoftext|>"
    w.add_name("tmac tiny random model")
    metadata(w, name, opt)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # the converter's order: general.*, then the architecture's keys, then the tokenizer's
    kv = w.kv_data[0]
    rank = lambda k: 0 if k.startswith("general.") and k != "general.file_type" else \
        1 if k.startswith(arch + ".") else 2 if k == "general.file_type" else 3
    w.kv_data[0] = dict(sorted(kv.items(), key=lambda item: rank(item[0])))  # stable sort

    allowed = set()
    march = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    for t in gguf.MODEL_TENSORS[march]:
        allowed.update(gguf.TENSOR_NAMES[t].format(bid=l) for l in range(N_LAYER))
    for tname, v in weights(name, opt).items():
        assert tname.rsplit(".", 1)[0] in allowed, (arch, tname)
        w.add_tensor(tname, v)
    keys = [k for k in w.kv_data[0] if k.startswith(arch + ".")]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return keys


class Log:
    """llama.cpp's log (every level) while a model loads."""

    def __init__(self):
        import llama_cpp
        import llama_cpp._logger  # noqa: F401  (installs its own callback first)

        self.lines, self.level = [], 1

        @llama_cpp.llama_log_callback
        def cb(level, text, user_data):
            if level != 5:  # 5: continues the previous message
                self.level = level
            self.lines.append((self.level, text.decode("utf-8", "replace")))

        self.cb = cb  # keep the ctypes callback alive
        llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))

    def take(self):
        """The log since the last take(), and its warnings and errors."""
        text = "".join(t for _, t in self.lines)
        warn = "".join(t for l, t in self.lines if l in (3, 4))  # GGML_LOG_LEVEL_WARN, _ERROR
        self.lines = []
        return text, warn


def is_swa_layers(log):
    """Which layers llama.cpp's iSWA KV cache puts in the SWA cache (None: no iSWA cache)."""
    if "creating     SWA KV cache" not in log:
        return None
    swa_part = log.split("creating     SWA KV cache", 1)[1]
    return sorted({int(m) for m in re.findall(r"layer +(\d+): dev = ", swa_part)})


def run(log, path, out):
    try:
        llm = mbf.llama(path)  # throws on a missing / extra tensor or a bad key
    except ValueError:
        print(log.take()[0][-3000:])
        raise
    mbf.write_logits(llm, out, os.path.basename(path))  # an absolute name replaces mbf.OUT
    seq = llm.tokenize(mbf.LOGIT_TEXT.encode(), add_bos=True, special=True)
    scores = np.array(llm.scores[:len(seq)], dtype=np.float32)
    llm.close()
    del llm
    return (seq, scores) + log.take()


def info(log, keys):
    out = {}
    for k in keys:
        m = re.search(r"print_info: %s\s*= (.*)" % re.escape(k), log)
        if m:
            out[k] = m.group(1).strip()
    return out


def main():
    sys.path.insert(0, GGUF_PY)
    import gguf

    setup_llama()
    log = Log()
    os.makedirs(OUT, exist_ok=True)
    mbf.LOGIT_TEXT = LOGIT_TEXT  # write_logits() tokenizes the module's LOGIT_TEXT
    written, rows, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="tmac-arch-") as tmp:
        for name, (arch, features) in MODELS.items():
            path = os.path.join(OUT, name + ".gguf")
            keys = write_gguf(gguf, path, name, {})
            out = os.path.join(OUT, name + ".logits.txt")
            seq, scores, text, warn = run(log, path, out)
            written += [path, out]
            assert len(seq) == N_SEQ, len(seq)
            assert np.all(np.isfinite(scores)), name
            std = float(np.std(scores[-1]))
            argmax = np.argmax(scores, axis=1)
            assert std > 0.1, (name, std)
            assert len(set(argmax.tolist())) > 1, (name, argmax)
            assert not re.search(r"missing tensor|wrong number|error", text, re.I), text
            warns = [l.strip() for l in warn.splitlines() if l.strip()]
            view = info(text, ["n_rot", "n_swa", "is_swa_any", "n_embd_head_k", "f_attn_scale",
                               "f_logit_scale", "rope type", "freq_base_train", "freq_base_swa",
                               "f_embedding_scale", "f_residual_scale", "f_attention_scale"])
            swa = is_swa_layers(text)
            view["SWA-cache layers"] = "-" if swa is None else str(swa)
            same = int(np.sum(argmax == np.array(seq)))  # argmax = the position's own token
            extra = "; argmax = the position's own token at %d/%d positions" % (same, N_SEQ)
            if arch == "gemma2":
                a = np.abs(scores)
                extra += "; |logit| >= 2.5 (of cap 3) %.0f%%, exactly 3.0 (tanh saturated) %d of %d" % (
                    100 * np.mean(a >= 2.5), int(np.sum(a == 3.0)), a.size)
            print("%-14s std(last) %.4f  argmax %s%s" % (name, std, " ".join(map(str, argmax)), extra))
            print("    llama.cpp: %s" % ", ".join("%s=%s" % kv for kv in view.items()))
            for wl in warns:
                print("    log: %s" % wl)
            ctl = []
            for label, opt, want in CONTROLS.get(name, []):
                p = os.path.join(tmp, "control.gguf")
                write_gguf(gguf, p, name, opt)
                _, sc, _, _ = run(log, p, os.path.join(tmp, "control.logits.txt"))
                d = np.abs(sc - scores).max(axis=1)
                if want == "differs":
                    ok = d.max() > 1e-3
                elif want == "same":
                    ok = d.max() == 0.0
                else:
                    ok = d[:4].max() == 0.0 and d[4:].min() > 1e-4
                res = "max |dlogit| %.4g" % d.max() if want != "window" else \
                    "max |dlogit| pos 0-3 %.3g, min over pos 4-31 %.3g" % (d[:4].max(), d[4:].min())
                print("    control %-44s %s (expect %s)%s" % (label, res, want, "" if ok else "  FAILED"))
                assert ok, (name, label)
                ctl.append("%s: %s" % (label, res))
            rows.append((name, arch, features, keys, view, std, warns, ctl, extra))

    readme = ["# Architecture fixtures (tools/make_arch_fixtures.py)", "",
              "Tiny random F32 models (32 embd, 64 ffn, 2 layers, 4/2 heads, 288-token byte-level "
              "BPE vocabulary of make_bitnet_fixtures.py) laid out as llama.cpp's converter writes "
              "each architecture, and llama.cpp's (0c1e570) teacher-forced logits of a fixed 32-token "
              "sequence (BOS + 31), 1 thread, F32 KV cache, no flash attention: `<name>.gguf`, "
              "`<name>.logits.txt` (line 3: the ids; then one line of every logit per position).", "",
              "Every file also holds general.architecture, general.type, general.name, "
              "general.file_type (0, ALL_F32) and the tokenizer keys of make_bitnet_fixtures.py "
              "(tokenizer.ggml.model gpt2, pre llama-bpe, tokens, token_type, merges, bos/eos ids, "
              "add_bos_token, chat_template). Architecture keys are listed without the `<arch>.` prefix.", "",
              "| file | arch | features exercised | metadata keys written | logit std (last pos) |",
              "|---|---|---|---|---|"]
    for name, arch, features, keys, view, std, warns, ctl, extra in rows:
        ks = ", ".join(k[len(arch) + 1:] for k in keys)
        readme.append("| %s.gguf | %s | %s | %s | %.4f |" % (name, arch, features, ks, std))
    readme += ["", "## llama.cpp's view (its load log) and control runs", "",
               "A control run rewrites the file with one change and compares llama.cpp's logits "
               "with the fixture's (largest absolute difference over all positions and tokens).", ""]
    for name, arch, features, keys, view, std, warns, ctl, extra in rows:
        readme.append("- **%s**: %s%s" % (name, ", ".join("%s = %s" % kv for kv in view.items()), extra))
        for wl in warns:
            readme.append("  - log: `%s`" % wl)
        for c in ctl:
            readme.append("  - control, %s" % c)
    readme += ["", "## Notes", "",
               "- Keys the converter does not write are left to llama.cpp's defaults: no "
               "rope.freq_base in gemma/gemma2 (10000), no rope.dimension_count except granite/phi3 "
               "(= key_length), no key_length/value_length in qwen2/phi3/granite (n_embd/n_head), "
               "no sliding_window_pattern in gemma2 (default 2: layer 0 SWA, 1 global). gemma3's "
               "converter writes no sliding_window_pattern either (llama.cpp default 6 would make "
               "both layers SWA); this file carries it as u32 2 (llama.cpp reads an array first, "
               "then a u32; is_swa(il) = il % 2 < 1).",
               "- A window of W lets position p see keys p-W+1 .. p; with W = 4 positions 0-3 "
               "are unaffected (the sliding_window 64 controls).",
               "- phi3.attention.sliding_window is read and discarded (warning in the log); qwen2's "
               "output.bias is added after the LM head.",
               "- general.name must not contain `phi3`/`phi-3`: llama.cpp then sets Phi-3 "
               "tokenizer attributes on `</s>`, `<unk>`, `<s>`, `<|endoftext|>` and fails "
               "to load a vocabulary without them (unordered_map::at)."]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(readme) + "\n")
    written.append(os.path.join(OUT, "README.md"))

    total = 0
    for p in written:
        total += os.path.getsize(p)
        print("%8d  %s" % (os.path.getsize(p), os.path.relpath(p, ROOT)))
    print("%8d  total under %s" % (total, os.path.relpath(OUT, ROOT)))


if __name__ == "__main__":
    main()
