#!/usr/bin/env python3
"""Make the BitNet fixtures: a tiny random BitNet b1.58 model in three forms, a tiny ternary
Llama-architecture model (the shape of Falcon3 1.58-bit) in two, and what llama.cpp computes
with them.

The model (seed below): arch `bitnet`, 256 embedding, 256 FFN (every matrix input is one of
llama.cpp's 256-element activation blocks, so its TQ2_0 arithmetic is BitNet's per-token
W1.58A8), 2 layers, 4 heads / 2 KV heads, SiLU (this llama.cpp's bitnet graph hard-codes SiLU),
RoPE base 500000, ternary matrices with one power-of-two scale per tensor (so the f16 scale of
TQ2_0 and the bf16 weight_scale of Hugging Face hold it exactly), a byte-level BPE vocabulary
with Llama 3 pre-tokenization (`llama-bpe`), BOS/EOS/EOT specials and 7 padding rows. Embedding
and norms are bf16 values.

Written to tests/fixtures/bitnet/:
  tiny.tq2_0.gguf      llama.cpp's form: TQ2_0 matrices (written with gguf-py's quantizer), F32
                       embedding and norms
  tiny.i2_s.gguf       bitnet.cpp's form: I2_S matrices (type 36, x86 layout, f32 scale tail)
  tiny-hf/             Hugging Face form: model.safetensors (uint8 weights packed 4 per byte
                       along the output dimension, bf16 weight_scale = 1/scale as BitLinear
                       divides by it, bf16 embedding and norms), config.json, tokenizer.json,
                       tokenizer_config.json
  tokens.tsv           llama.cpp's token ids for a few strings
  logits.txt           llama.cpp's teacher-forced logits (every vocabulary entry) for a sequence
  greedy.tsv           llama.cpp's greedy continuations, with the top-1/top-2 logit margin of
                       each step
  llama.tq2_0.gguf     the ternary Llama model (1 layer, no sub-norms, seed + 1) as llama.cpp's
                       converter writes it: Q and K rows permuted by its LlamaModel.permute
  llama-hf/            the same in Hugging Face form (LlamaForCausalLM, quant_method bitnet,
                       Q and K in Hugging Face's order)
  llama-logits.txt     llama.cpp's teacher-forced logits for llama.tq2_0.gguf

The two GGUF files carry exactly the metadata tmac derives from the Hugging Face files, in the
same order, so `tmac quantize` must turn all three into byte-identical tmac files.
llama.cpp runs the TQ2_0 file single-threaded, F32 KV cache, no flash attention.

Usage: python3 tools/make_bitnet_fixtures.py   (rerun any time; output is stable)
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "bitnet")
SEED = 1234

N_EMBD, N_FF, N_LAYER, N_HEAD, N_KV, N_CTX = 256, 256, 2, 4, 2, 256
HEAD_DIM = N_EMBD // N_HEAD
EPS, THETA, ACT = 1e-5, 500000.0, "silu"
N_ROWS = 288  # embedding rows; tokens beyond the tokenizer's are [PADn]
EMBD_STD = 0.2  # small enough that the layers, not the input token, decide the next token

# Llama 3's pre-tokenizer regex, as tokenizer.json holds it
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "o n", "Ġ s", "Ġ c", "a t", "Ġc at",
          "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ o", "Ġo n", "Ġ m", "Ġm at", "i s", "Ġ is"]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                 "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}")

TOKEN_STRINGS = ["the cat sat on the mat", "Hello world", " the world is on  the mat\n\n",
                 "<|begin_of_text|>the<|eot_id|>", "don't stop: 12345 cats!", "Ωmega ünïcode 日本"]
LOGIT_TEXT = "the cat sat on the mat. the world is a cat, and the mat is on the world; the end"
GREEDY_PROMPTS = ["the cat", "on the world", "Hello"]
N_GREEDY = 24


def byte_chars():
    """GPT-2's byte-to-unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocabulary():
    m = byte_chars()
    tokens = [m[b] for b in range(256)]
    for mg in MERGES:
        tokens.append(mg.replace(" ", ""))
    n_normal = len(tokens)
    tokens += SPECIALS
    types = [1] * n_normal + [3] * len(SPECIALS)
    for i in range(len(tokens), N_ROWS):
        tokens.append("[PAD%d]" % i)
        types.append(5)
    assert len(set(tokens)) == len(tokens) == N_ROWS
    return tokens, types, n_normal


def bf16_round(x):
    """float32 values rounded to bf16 (nearest even), kept as float32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return (b.astype(np.uint32) << 16).view(np.float32)


def model(rng, arch, n_layer):
    """The weights: embedding, norms (bf16 values) and ternary codes with power-of-two scales."""
    q, kv = N_HEAD * HEAD_DIM, N_KV * HEAD_DIM
    w = {"token_embd": bf16_round(EMBD_STD * rng.standard_normal((N_ROWS, N_EMBD)).astype(np.float32))}
    shapes = {"attn_q": (q, N_EMBD), "attn_k": (kv, N_EMBD), "attn_v": (kv, N_EMBD),
              "attn_output": (N_EMBD, q), "ffn_gate": (N_FF, N_EMBD), "ffn_up": (N_FF, N_EMBD),
              "ffn_down": (N_EMBD, N_FF)}
    norm = lambda n: bf16_round((1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))
    for l in range(n_layer):
        w["blk.%d.attn_norm" % l] = norm(N_EMBD)
        if arch == "bitnet":
            w["blk.%d.attn_sub_norm" % l] = norm(q)
        w["blk.%d.ffn_norm" % l] = norm(N_EMBD)
        if arch == "bitnet":
            w["blk.%d.ffn_sub_norm" % l] = norm(N_FF)
        for name, shape in shapes.items():
            codes = rng.integers(0, 3, size=shape).astype(np.uint8)
            scale = 2.0 ** -int(rng.integers(3, 6))
            w["blk.%d.%s" % (l, name)] = (codes, np.float32(scale))
    w["output_norm"] = norm(N_EMBD)
    return w


def gguf_writer(gguf, path, arch, n_layer, tokens, types, bos, eos):
    """A GGUF writer with the metadata tmac's Hugging Face reader derives, in its order."""
    w = gguf.GGUFWriter(path, arch)
    a = arch
    w.add_uint32(a + ".context_length", N_CTX)
    w.add_uint32(a + ".embedding_length", N_EMBD)
    w.add_uint32(a + ".feed_forward_length", N_FF)
    w.add_uint32(a + ".block_count", n_layer)
    w.add_uint32(a + ".attention.head_count", N_HEAD)
    w.add_uint32(a + ".attention.head_count_kv", N_KV)
    w.add_float32(a + ".attention.layer_norm_rms_epsilon", EPS)
    w.add_float32(a + ".rope.freq_base", THETA)
    w.add_uint32(a + ".rope.dimension_count", HEAD_DIM)
    w.add_string(a + ".hidden_activation", ACT)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "llama-bpe")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", MERGES)
    w.add_uint32("tokenizer.ggml.bos_token_id", bos)
    w.add_uint32("tokenizer.ggml.eos_token_id", eos)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)
    return w


def tensor_order(w, n_layer):
    names = ["token_embd"]
    for l in range(n_layer):
        for t in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_sub_norm",
                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "ffn_sub_norm"]:
            names.append("blk.%d.%s" % (l, t))
    return [n for n in names + ["output_norm"] if n in w]


def permute(weights, n_head, n_head_kv):
    """llama.cpp's LlamaModel.permute (conversion/llama.py): Q/K rows for adjacent-pair RoPE."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def encode_i2s(codes, scale):
    """bitnet.cpp's quantize_i2_s (x86): 128 codes per 32 bytes over the flattened tensor, byte j
    holding elements j (bits 7-6), j+32, j+64, j+96 (bits 1-0); then the f32 scale in 32 bytes."""
    c = codes.reshape(-1, 4, 32).astype(np.uint8)
    packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
    tail = struct.pack("<f", float(scale)) + bytes(28)
    return packed.reshape(-1).tobytes() + tail


def write_ggufs(gguf, w, arch, n_layer, prefix, kinds, tokens, types, bos, eos):
    for kind in kinds:
        path = os.path.join(OUT, "%s.%s.gguf" % (prefix, kind))
        g = gguf_writer(gguf, path, arch, n_layer, tokens, types, bos, eos)
        for name in tensor_order(w, n_layer):
            v = w[name]
            full = name + ".weight"
            if isinstance(v, tuple):
                codes, scale = v
                if arch == "llama" and name.endswith("attn_q"):
                    codes = permute(codes, N_HEAD, N_HEAD)
                elif arch == "llama" and name.endswith("attn_k"):
                    codes = permute(codes, N_HEAD, N_KV)
                if kind == "tq2_0":
                    vals = (codes.astype(np.float32) - 1.0) * scale
                    q = gguf.quants.quantize(vals, gguf.GGMLQuantizationType.TQ2_0)
                    g.add_tensor(full, q, raw_dtype=gguf.GGMLQuantizationType.TQ2_0)
                else:
                    data = np.frombuffer(encode_i2s(codes, scale), dtype=np.uint8)
                    # type 36 is not in gguf-py's enum: register the tensor by hand
                    g.add_tensor_info(full, codes.shape, np.dtype(np.int8), len(data), raw_dtype=36)
                    g.tensors[-1][full].tensor = data
            else:
                g.add_tensor(full, np.ascontiguousarray(v, dtype=np.float32))
        g.write_header_to_file()
        g.write_kv_data_to_file()
        g.write_tensors_to_file()
        g.close()


def write_hf(w, arch, n_layer, dirname, tokens, types, n_normal):
    d = os.path.join(OUT, dirname)
    os.makedirs(d, exist_ok=True)
    hf_names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
                "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm"}

    def bf16(x):
        return (np.asarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)

    tensors = []  # (name, dtype, shape, bytes)
    tensors.append(("model.embed_tokens.weight", "BF16", [N_ROWS, N_EMBD], bf16(w["token_embd"]).tobytes()))
    for l in range(n_layer):
        for short, hf in hf_names.items():
            if "blk.%d.%s" % (l, short) not in w:
                continue
            v = w["blk.%d.%s" % (l, short)]
            name = "model.layers.%d.%s" % (l, hf)
            if isinstance(v, tuple):
                codes, scale = v
                rows, cols = codes.shape
                p = rows // 4
                packed = np.zeros((p, cols), dtype=np.uint8)
                for i in range(4):  # bit pair i of packed[j] is row i * rows/4 + j
                    packed |= codes[i * p:(i + 1) * p] << (2 * i)
                tensors.append((name + ".weight", "U8", [p, cols], packed.tobytes()))
                ws = bf16(np.float32(1.0 / scale))  # BitLinear divides by weight_scale
                assert int(ws) << 16 == int(np.float32(1.0 / scale).view(np.uint32))  # exact
                tensors.append((name + ".weight_scale", "BF16", [1], ws.reshape(1).tobytes()))
            else:
                tensors.append((name + ".weight", "BF16", [len(v)], bf16(v).tobytes()))
    tensors.append(("model.norm.weight", "BF16", [N_EMBD], bf16(w["output_norm"]).tobytes()))
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, data in tensors:
            f.write(data)

    bos, eos = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[1])
    config = {"architectures": ["BitNetForCausalLM" if arch == "bitnet" else "LlamaForCausalLM"],
              "model_type": arch,
              "hidden_size": N_EMBD, "intermediate_size": N_FF, "num_hidden_layers": n_layer,
              "num_attention_heads": N_HEAD, "num_key_value_heads": N_KV,
              "max_position_embeddings": N_CTX, "rms_norm_eps": EPS, "rope_theta": THETA,
              "hidden_act": ACT, "tie_word_embeddings": True, "vocab_size": N_ROWS,
              "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                                      "quantization_mode": "offline"}}
    added = [{"id": tokens.index(s), "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for s in SPECIALS]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
                "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                "use_regex": False}]},
           "post_processor": {"type": "Sequence", "processors": [
               {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                "use_regex": True},
               {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": SPECIALS[0], "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {SPECIALS[0]: {"id": SPECIALS[0], "ids": [bos],
                                                 "tokens": [SPECIALS[0]]}}}]},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                     "vocab": {t: i for i, t in enumerate(tokens[:n_normal])},
                     "merges": MERGES}}
    tcfg = {"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "chat_template": CHAT_TEMPLATE,
            "model_max_length": N_CTX, "tokenizer_class": "PreTrainedTokenizerFast"}
    for name, obj in [("config.json", config), ("tokenizer.json", tok),
                      ("tokenizer_config.json", tcfg)]:
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")


def llama(path):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from make_fixtures import setup_llama
    setup_llama()
    import llama_cpp

    return llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, logits_all=True,
                           n_threads=1, type_k=0, type_v=0, flash_attn=False, verbose=False)


def write_logits(llm, name, what):
    seq = llm.tokenize(LOGIT_TEXT.encode(), add_bos=True, special=True)
    llm.reset()
    llm.eval(seq)
    scores = np.array(llm.scores[:len(seq)], dtype=np.float32)
    with open(os.path.join(OUT, name), "w") as f:
        f.write("# llama.cpp teacher-forced logits of %s; line 1: the sequence;\n" % what)
        f.write("# then one line per position: the logit of every token id\n")
        f.write(" ".join(map(str, seq)) + "\n")
        for row in scores:
            f.write(" ".join("%.6f" % v for v in row) + "\n")


def run_llama(path):
    llm = llama(path)
    with open(os.path.join(OUT, "tokens.tsv"), "w") as f:
        f.write("# utf-8 hex of the text, then llama.cpp's ids (add_special, parse_special)\n")
        for s in TOKEN_STRINGS:
            ids = llm.tokenize(s.encode(), add_bos=True, special=True)
            f.write("%s\t%s\n" % (s.encode().hex(), " ".join(map(str, ids))))

    write_logits(llm, "logits.txt", "tiny.tq2_0.gguf")

    with open(os.path.join(OUT, "greedy.tsv"), "w") as f:
        f.write("# utf-8 hex of the prompt, llama.cpp's %d greedy ids, then the top-1 minus top-2\n"
                "# logit margin of each step\n" % N_GREEDY)
        for p in GREEDY_PROMPTS:
            toks = llm.tokenize(p.encode(), add_bos=True, special=True)
            llm.reset()
            llm.eval(toks)
            out, margins = [], []
            for _ in range(N_GREEDY):
                row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                top = np.argsort(-row, kind="stable")[:2]
                out.append(int(top[0]))
                margins.append(float(row[top[0]] - row[top[1]]))
                if out[-1] == llm.token_eos():
                    break
                llm.eval([out[-1]])
            f.write("%s\t%s\t%s\n" % (p.encode().hex(), " ".join(map(str, out)),
                                      " ".join("%.4f" % m for m in margins)))
            print("%r -> %s (smallest margin %.4f)" % (p, out, min(margins)))


def main():
    sys.path.insert(0, os.path.join(ROOT, "build", "llama.cpp", "llama_cpp_python-0.3.36", "vendor",
                                    "llama.cpp", "gguf-py"))
    import gguf

    os.makedirs(OUT, exist_ok=True)
    tokens, types, n_normal = vocabulary()
    bos, eos = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[1])
    w = model(np.random.default_rng(SEED), "bitnet", N_LAYER)
    write_ggufs(gguf, w, "bitnet", N_LAYER, "tiny", ["tq2_0", "i2_s"], tokens, types, bos, eos)
    write_hf(w, "bitnet", N_LAYER, "tiny-hf", tokens, types, n_normal)
    run_llama(os.path.join(OUT, "tiny.tq2_0.gguf"))
    w = model(np.random.default_rng(SEED + 1), "llama", 1)
    write_ggufs(gguf, w, "llama", 1, "llama", ["tq2_0"], tokens, types, bos, eos)
    write_hf(w, "llama", 1, "llama-hf", tokens, types, n_normal)
    write_logits(llama(os.path.join(OUT, "llama.tq2_0.gguf")), "llama-logits.txt",
                 "llama.tq2_0.gguf")
    for root, _, files in os.walk(OUT):
        for n in sorted(files):
            p = os.path.join(root, n)
            print("%8d  %s" % (os.path.getsize(p), os.path.relpath(p, ROOT)))


if __name__ == "__main__":
    main()
