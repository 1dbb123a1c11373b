#!/usr/bin/env python3
"""Independent NumPy reference for the original T-MAC engine's quantizers.

Reads a llama2.c "version 0" checkpoint and writes, by the rules of legacy-formats.md
(sections 2, 4 and 5), the files the original scripts wrote:

  PREFIX.tmac.bin   T-MAC v1   (quantize_tmac.py):    ternary, 0.7 x mean|w| per stacked tensor
  PREFIX.tmac2.bin  T-MAC v2   (quantize_tmac_v2.py): ternary, 0.4 x mean|row|, f16 row scales
  PREFIX.q4.bin     int4 Q4V1  (quantize_int4.py):    blocks of 32, d = f16(max|x| / 7)

It is written the way those scripts compute, with plain NumPy (np.mean, np.round, astype
float16), and shares no code with tmac: tests/legacy.rs checks that `tmac quantize --type
v1|v2|q4v1` writes the same bytes.

usage: legacy_reference.py MODEL.bin PREFIX
"""
import struct
import sys

import numpy as np


def read_checkpoint(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = n_kv_heads * head
    L = n_layers
    # (name, quantized, stacked shape): legacy-formats.md section 1
    shapes = [
        ("token_embedding", True, (vocab, dim)),
        ("rms_att_weight", False, (L, dim)),
        ("wq", True, (L * dim, dim)),
        ("wk", True, (L * kv_dim, dim)),
        ("wv", True, (L * kv_dim, dim)),
        ("wo", True, (L * dim, dim)),
        ("rms_ffn_weight", False, (L, dim)),
        ("w1", True, (L * hidden, dim)),
        ("w2", True, (L * dim, hidden)),
        ("w3", True, (L * hidden, dim)),
        ("rms_final_weight", False, (dim,)),
        ("freq_cis_real", False, (seq_len, head // 2)),
        ("freq_cis_imag", False, (seq_len, head // 2)),
    ]
    if not shared:
        shapes.append(("wcls", True, (vocab, dim)))
    tensors, off = [], 28
    for name, quantized, shape in shapes:
        n = int(np.prod(shape))
        a = np.frombuffer(raw, dtype="<f4", count=n, offset=off).reshape(shape)
        off += 4 * n
        tensors.append((name, quantized, a))
    if off != len(raw):
        sys.exit(f"{path}: {len(raw)} bytes, the header implies {off}")
    return raw[:28], tensors


def pack_ternary(q):
    """q: flat array of -1/0/+1. Codes 00 = 0, 01 = +1, 11 = -1; element j of 4 at bits 2j."""
    codes = np.where(q == 1, 1, np.where(q == -1, 3, 0)).astype(np.uint8)
    codes = np.concatenate([codes, np.zeros((-len(codes)) % 4, np.uint8)]).reshape(-1, 4)
    return (codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)).tobytes()


def ternary(w, t):
    return np.where(w > t, 1, np.where(w < -t, -1, 0))


def v1_tensor(w):
    t = 0.7 * np.mean(np.abs(w))
    return pack_ternary(ternary(w, t).ravel())


def v2_record(w):
    rows, cols = w.shape
    out = [b"\x01", struct.pack("<ii", rows, cols)]
    for row in w:
        a = np.abs(row)
        t = 0.4 * np.mean(a)
        mask = a > t
        if mask.any():
            scale = np.float16(np.mean(a[mask]))
        else:
            scale = np.float16(np.mean(a) + 1e-6)
        out.append(scale.tobytes())
        out.append(pack_ternary(ternary(row, t)))
    return b"".join(out)


def q4_tensor(w):
    x = w.ravel()
    x = np.concatenate([x, np.zeros((-len(x)) % 32, np.float32)]).reshape(-1, 32)
    d = (np.max(np.abs(x), axis=1) / 7).astype(np.float16)
    df = d.astype(np.float32)
    zero = df == 0
    q = np.clip(np.round(x / np.where(zero, 1, df)[:, None]), -8, 7).astype(np.int32) + 8
    nib = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    nib[zero] = 0
    d[zero] = 0
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), nib], axis=1).tobytes()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    header, tensors = read_checkpoint(sys.argv[1])
    prefix = sys.argv[2]
    with open(prefix + ".tmac.bin", "wb") as f:
        f.write(b"TMAC" + header)
        for _, quantized, a in tensors:
            f.write(v1_tensor(a) if quantized else a.tobytes())
    with open(prefix + ".tmac2.bin", "wb") as f:
        f.write(b"TM2\x00" + header)
        for _, quantized, a in tensors:
            f.write(v2_record(a) if quantized else b"\x00" + a.tobytes())
    with open(prefix + ".q4.bin", "wb") as f:
        f.write(b"Q4V1" + header + struct.pack("<i", 32))
        for _, quantized, a in tensors:
            f.write(b"\x01" + q4_tensor(a) if quantized else b"\x00" + a.tobytes())
    if int(np.__version__.split(".")[0]) < 2:
        print("note: NumPy 1.x computes 0.7 * mean in float64; exact ties may differ",
              file=sys.stderr)


if __name__ == "__main__":
    main()
