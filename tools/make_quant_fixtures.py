#!/usr/bin/env python3
"""Make the ggml quantization fixtures: ggml's own quantize/dequantize of a few rows per type, and
a tiny random Llama model quantized by llama-quantize to each type, with what llama.cpp computes
with it.

blocks.gguf: for each of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS TQ1_0
TQ2_0, the same 4 x 512 f32 rows (seed below) quantized by libggml-base's ggml_quantize_chunk
(no imatrix) and stored raw as `<TYPE>.q` (ggml dims [512, 4], that type id), plus `<TYPE>.f32`,
ggml's own dequantization of those bytes (the `to_float` of ggml_get_type_traits). The rows:
  0  normal values, each 32-block scaled by one of 16 log-spaced scales 1e-3 .. 10 (so one K-quant
     super-block holds sub-blocks of very different magnitude)
  1  normal values * 0.02 with outliers +8 (element 77) and -5 (element 300)
  2  all negative, -0.3 * exp(normal) (K-quant mins, negative Q4_0/IQ4 scales)
  3  uniform(-3, 3) with whole 32-blocks of zeros (blocks 2, 5, 6, 11) and a block holding a
     single nonzero value (block 9)
Each `.q` is also checked against gguf-py's own dequantizer (printed, not stored).

The tiny model (seed below): arch `llama`, 256 embedding, 256 FFN (every matrix row is a multiple
of 256, so K-quants and IQ4_XS apply to every matrix), 1 layer, 4 heads / 2 KV heads, the
288-token vocabulary and metadata of make_bitnet_fixtures.py, matrices with std 1/sqrt(cols),
embedding std 0.2, norms 1 + 0.1 * normal, an untied output.weight (so the head is quantized too).
It is written in F32 to build/quant-fixtures/tiny-f32.gguf (2.2 MB: not committed; its llama.cpp
logits go next to it as tiny.f32.logits.txt), then quantized with build/llama.cpp's llama-quantize
(1 thread) to each of Q4_0 Q5_0 Q5_1 Q2_K Q3_K_S Q4_K_S Q5_K_S Q6_K IQ4_NL IQ4_XS Q4_K_M. For every
type but Q4_K_M (the mixture, kept as llama-quantize makes it) the default mixture is tried first;
if any matrix (token_embd and output included) is not of the named type, the file is remade with
--pure. None of these types needs an imatrix. The types each file really holds are in
tests/fixtures/quant/README.md (written by this script from gguf-py's reader); at llama.cpp
0c1e570 every non-mixture default but Q6_K put output.weight at Q6_K (Q2_K also bumps
attn_v/attn_output/ffn_down to Q3_K, Q4_K_S attn_v to Q5_K), so all but Q6_K are --pure: every
matrix of tiny.<type>.gguf, token_embd and output included, is the named type (Q3_K, Q4_K, Q5_K
for the _S names), norms F32, and llama-quantize reports no fallback. tiny.q4_k_m.gguf holds Q4_K for
attn_q/attn_k/attn_output/ffn_gate/ffn_up/token_embd and Q6_K for attn_v/ffn_down/output.

Written to tests/fixtures/quant/:
  blocks.gguf               as above
  tiny.<type>.gguf          the quantized models (type lowercase: q4_0 ... q4_k_m)
  tiny.<type>.logits.txt    llama.cpp's teacher-forced logits (every vocabulary entry) of a fixed
                            24-token sequence, in the format of tests/fixtures/bitnet/logits.txt
  README.md                 the tensor types of every tiny.<type>.gguf

llama.cpp runs single-threaded, F32 KV cache, no flash attention (make_bitnet_fixtures.llama).

struct ggml_type_traits (ggml/include/ggml.h) as read here, x86-64 / LP64:
  0 const char *type_name; 8 int64_t blck_size; 16 int64_t blck_size_interleave;
  24 size_t type_size; 32 bool is_quantized (+7 padding); 40 ggml_to_float_t to_float;
  48 ggml_from_float_t from_float_ref; sizeof 56 (ctypes.Structure lays it out the same way).

Usage: python3 tools/make_quant_fixtures.py   (rerun any time; output is stable)
"""
import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")
WORK = os.path.join(ROOT, "build", "quant-fixtures")
GGUF_PY = os.path.join(ROOT, "build", "llama.cpp", "llama_cpp_python-0.3.36", "vendor", "llama.cpp",
                       "gguf-py")
SEED = 2025

sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_bitnet_fixtures as mbf  # noqa: E402  (vocabulary, metadata, llama(), write_logits())
from make_fixtures import setup_llama  # noqa: E402

BLOCK_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
               "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"]
N_ROWS, N_PER_ROW = 4, 512

# llama-quantize type -> the ggml type its matrices should hold (None: a mixture)
MODEL_TYPES = {"Q4_0": "Q4_0", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q2_K": "Q2_K", "Q3_K_S": "Q3_K",
               "Q4_K_S": "Q4_K", "Q5_K_S": "Q5_K", "Q6_K": "Q6_K", "IQ4_NL": "IQ4_NL",
               "IQ4_XS": "IQ4_XS", "Q4_K_M": None}
N_LAYER = 1
# the first 24 tokens (BOS included) of make_bitnet_fixtures' LOGIT_TEXT
LOGIT_TEXT = "the cat sat on the mat. the world is a cat, and the mat is on the"


class TypeTraits(ctypes.Structure):
    """struct ggml_type_traits of ggml/include/ggml.h (field order as declared)."""
    _fields_ = [("type_name", ctypes.c_char_p),
                ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool),
                ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def ggml_lib(bin_dir):
    lib = ctypes.CDLL(os.path.join(bin_dir, "libggml-base.so"))
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_free.argtypes = []
    lib.ggml_quantize_free.restype = None
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    return lib


def block_rows(rng):
    n = N_PER_ROW
    rows = np.zeros((N_ROWS, n), dtype=np.float32)
    scales = np.logspace(-3, 1, n // 32)
    rows[0] = rng.standard_normal(n) * np.repeat(scales, 32)
    rows[1] = 0.02 * rng.standard_normal(n)
    rows[1, 77], rows[1, 300] = 8.0, -5.0
    rows[2] = -0.3 * np.exp(rng.standard_normal(n))
    rows[3] = rng.uniform(-3.0, 3.0, n)
    for b in (2, 5, 6, 11):
        rows[3, 32 * b:32 * (b + 1)] = 0.0
    rows[3, 32 * 9:32 * 10] = 0.0
    rows[3, 32 * 9 + 13] = -1.75
    return np.ascontiguousarray(rows, dtype=np.float32)


def write_blocks(gguf, lib, path):
    rows = block_rows(np.random.default_rng(SEED))
    w = gguf.GGUFWriter(path, "ggml-blocks")
    w.add_string("general.description",
                 "ggml_quantize_chunk (no imatrix) of %d x %d f32 rows: <TYPE>.q raw, <TYPE>.f32 "
                 "its to_float; tools/make_quant_fixtures.py" % (N_ROWS, N_PER_ROW))
    for name in BLOCK_TYPES:
        t = int(gguf.GGMLQuantizationType[name])
        assert not lib.ggml_quantize_requires_imatrix(t), name
        tr = lib.ggml_get_type_traits(t).contents
        assert tr.type_name.decode().lower() == name.lower() and tr.is_quantized and tr.to_float, name
        bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]
        assert (tr.blck_size, tr.type_size) == (bs, ts), (name, tr.blck_size, tr.type_size)
        row_bytes = lib.ggml_row_size(t, N_PER_ROW)
        dst = np.zeros((N_ROWS, row_bytes), dtype=np.uint8)
        lib.ggml_quantize_init(t)
        n = lib.ggml_quantize_chunk(t, rows.ctypes.data, dst.ctypes.data, 0, N_ROWS, N_PER_ROW, None)
        assert n == dst.nbytes, (name, n, dst.nbytes)
        deq = np.zeros((N_ROWS, N_PER_ROW), dtype=np.float32)
        TO_FLOAT(tr.to_float)(dst.ctypes.data, deq.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                              deq.size)
        # cross-check with gguf-py's numpy dequantizer (report only)
        try:
            ref = gguf.quants.dequantize(dst, gguf.GGMLQuantizationType[name]).reshape(deq.shape)
            cmp = "gguf-py max |diff| %.3g" % float(np.max(np.abs(ref - deq)))
        except NotImplementedError:
            cmp = "gguf-py: no dequantizer"
        err = np.max(np.abs(deq - rows), axis=1) / np.max(np.abs(rows), axis=1)
        print("%-7s id %2d  %4d bytes/row  max err/amax per row %s  %s"
              % (name, t, row_bytes, " ".join("%.3f" % e for e in err), cmp))
        w.add_tensor(name + ".q", dst, raw_dtype=gguf.GGMLQuantizationType[name])
        w.add_tensor(name + ".f32", deq)
    lib.ggml_quantize_free()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_model(rng):
    q, kv = mbf.N_HEAD * mbf.HEAD_DIM, mbf.N_KV * mbf.HEAD_DIM
    mat = lambda r, c: (rng.standard_normal((r, c)) / np.sqrt(c)).astype(np.float32)
    norm = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    w = {"token_embd.weight": (mbf.EMBD_STD * rng.standard_normal((mbf.N_ROWS, mbf.N_EMBD))).astype(np.float32)}
    for l in range(N_LAYER):
        p = "blk.%d." % l
        w[p + "attn_norm.weight"] = norm(mbf.N_EMBD)
        w[p + "attn_q.weight"] = mat(q, mbf.N_EMBD)
        w[p + "attn_k.weight"] = mat(kv, mbf.N_EMBD)
        w[p + "attn_v.weight"] = mat(kv, mbf.N_EMBD)
        w[p + "attn_output.weight"] = mat(mbf.N_EMBD, q)
        w[p + "ffn_norm.weight"] = norm(mbf.N_EMBD)
        w[p + "ffn_gate.weight"] = mat(mbf.N_FF, mbf.N_EMBD)
        w[p + "ffn_up.weight"] = mat(mbf.N_FF, mbf.N_EMBD)
        w[p + "ffn_down.weight"] = mat(mbf.N_EMBD, mbf.N_FF)
    w["output_norm.weight"] = norm(mbf.N_EMBD)
    w["output.weight"] = mat(mbf.N_ROWS, mbf.N_EMBD)
    return w


def write_f32(gguf, path):
    tokens, types, _ = mbf.vocabulary()
    bos, eos = tokens.index(mbf.SPECIALS[0]), tokens.index(mbf.SPECIALS[1])
    g = mbf.gguf_writer(gguf, path, "llama", N_LAYER, tokens, types, bos, eos)
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, v in tiny_model(np.random.default_rng(SEED)).items():
        g.add_tensor(name, v)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def tensor_types(gguf, path):
    r = gguf.GGUFReader(path)
    out = [(t.name, t.tensor_type.name) for t in r.tensors]
    del r
    return out


def matrices(types):
    return [(n, t) for n, t in types if "norm" not in n]


def quantize(bin_dir, src, dst, qtype, pure):
    cmd = [os.path.join(bin_dir, "llama-quantize")] + (["--pure"] if pure else []) + [src, dst, qtype, "1"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:])
        raise SystemExit("llama-quantize %s failed" % qtype)
    return [l for l in r.stdout.splitlines() if "fallback" in l or "imatrix" in l.lower()]


def summarize(types):
    """name pattern -> type, blk.N. folded to blk.*."""
    seen = {}
    for n, t in types:
        seen.setdefault(n.replace("blk.0.", "blk.*.").replace(".weight", ""), t)
    return seen


def main():
    sys.path.insert(0, GGUF_PY)
    import gguf

    bin_dir = setup_llama()
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(WORK, exist_ok=True)
    written = []

    path = os.path.join(OUT, "blocks.gguf")
    write_blocks(gguf, ggml_lib(bin_dir), path)
    written.append(path)

    f32 = os.path.join(WORK, "tiny-f32.gguf")
    write_f32(gguf, f32)

    readme = ["# Quantization fixtures (tools/make_quant_fixtures.py)", "",
              "blocks.gguf: `<TYPE>.q` = ggml_quantize_chunk of 4 x 512 f32 rows (no imatrix), "
              "`<TYPE>.f32` = ggml's to_float of those bytes, for " + ", ".join(BLOCK_TYPES) + ".", "",
              "tiny.<type>.gguf: a 1-layer random Llama (256 embd, 256 ffn, 4/2 heads, 288 vocab, "
              "untied output) quantized by llama-quantize (llama.cpp 0c1e570); "
              "tiny.<type>.logits.txt: llama.cpp's teacher-forced logits of a 24-token sequence "
              "(1 thread, F32 KV cache, no flash attention). Tensor types per file "
              "(blk.* = blk.0; norms are F32 everywhere):", "",
              "| file | llama-quantize | token_embd | attn_q | attn_k | attn_v | attn_output | "
              "ffn_gate | ffn_up | ffn_down | output |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    cols = ["token_embd", "blk.*.attn_q", "blk.*.attn_k", "blk.*.attn_v", "blk.*.attn_output",
            "blk.*.ffn_gate", "blk.*.ffn_up", "blk.*.ffn_down", "output"]
    models = [("f32", f32)]
    for qtype, want in MODEL_TYPES.items():
        name = "tiny.%s.gguf" % qtype.lower()
        dst = os.path.join(OUT, name)
        trial = os.path.join(WORK, "tiny.%s.default.gguf" % qtype.lower())
        notes = quantize(bin_dir, f32, trial, qtype, pure=False)
        default = tensor_types(gguf, trial)
        how = "%s (default)" % qtype
        if want is not None and any(t != want for _, t in matrices(default)):
            print("%-7s default mixture: %s -> --pure" % (qtype, summarize(matrices(default))))
            notes += quantize(bin_dir, f32, dst, qtype, pure=True)
            how = "--pure %s" % qtype
        else:
            shutil.copyfile(trial, dst)
        for l in notes:
            print("  llama-quantize:", l)
        types = tensor_types(gguf, dst)
        if want is not None:
            assert all(t == want for _, t in matrices(types)), (qtype, types)
        assert all(t == "F32" for n, t in types if "norm" in n), types
        s = summarize(types)
        print("%-7s %s" % (qtype, s))
        readme.append("| %s | %s | %s |" % (name, how, " | ".join(s[c] for c in cols)))
        models.append((qtype.lower(), dst))
        written.append(dst)

    mbf.LOGIT_TEXT = LOGIT_TEXT  # write_logits() tokenizes the module's LOGIT_TEXT
    for kind, path in models:
        llm = mbf.llama(path)
        out = os.path.join(WORK if kind == "f32" else OUT, "tiny.%s.logits.txt" % kind)
        mbf.write_logits(llm, out, os.path.basename(path))  # an absolute name replaces mbf.OUT
        llm.close()
        del llm
        with open(out) as f:
            f.readline(), f.readline()
            n = len(f.readline().split())
        assert n == 24, n
        if kind != "f32":
            written.append(out)

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(readme) + "\n")
    written.append(os.path.join(OUT, "README.md"))

    total = 0
    for p in written:
        total += os.path.getsize(p)
        print("%8d  %s" % (os.path.getsize(p), os.path.relpath(p, ROOT)))
    print("%8d  total under %s" % (total, os.path.relpath(OUT, ROOT)))
    for p in [f32, os.path.join(WORK, "tiny.f32.logits.txt")]:
        print("%8d  %s (not committed)" % (os.path.getsize(p), os.path.relpath(p, ROOT)))


if __name__ == "__main__":
    main()
