#!/usr/bin/env python3
"""Make the llama.cpp reference fixtures that tmac's model tests compare against.

Runs llama.cpp (built by tools/llama_cpp.sh, driven through llama-cpp-python's ctypes layer from
the same source distribution) on SmolLM2-135M-Instruct converted to F32, and writes:

  tests/fixtures/tokens.tsv   token ids for a set of strings (English, code, whitespace runs,
                              digits, emoji, CJK, accented Latin, special tokens)
  tests/fixtures/logits.txt   teacher-forced logits of a fixed 64-token sequence: per position
                              the top 16 logits and 16 logits at fixed ids
  tests/fixtures/greedy.tsv   48-token greedy continuations of three prompts

Usage: python3 tools/make_fixtures.py [MODEL_Q4_1.gguf]   (rerun any time; output is stable)
The F32 model is made with llama-quantize F32 --allow-requantize, so llama.cpp computes in f32
on exactly the weights tmac dequantizes; the KV cache is F32 and flash attention is off.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q4 = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures")

TOKEN_STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space and trailing space ",
    "Tabs\tand\nnewlines\r\n\r\nand    runs   of spaces",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "3.14159 1234567890 2024-11-26 $1,000,000",
    "I'm sure they'll say it's what we've done, isn't it? I'D SAY",
    "Emoji: 😀 🚀 👍🏽 🇫🇷 ❤️",
    "中文分词测试：你好，世界！",
    "日本語のテキストとカタカナ",
    "한국어 문장입니다",
    "Crème brûlée, naïve façade, Ångström, Straße, São Paulo",
    "Ελληνικά και Русский текст",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after<|endoftext|>",
    "<repo_name>tmac<file_sep>src/lib.rs",
    "   ",
    "\n\n\n",
    "a",
    "!!!???...",
    "ALL CAPS AND lower case AnD MiXeD",
    "https://example.com/path?query=1&x=y#frag",
    "x" * 300,
    "Ѐ\u00a0non-breaking\u2003em-space\u3000ideographic",
]

LOGIT_TEXT = (
    "The history of the bicycle spans more than two centuries. Early designs, such as the "
    "draisine of 1817, had no pedals: riders pushed themselves along with their feet. Pedals "
    "came in the 1860s, and by the 1890s the safety bicycle, with two wheels of equal size and a "
    "chain drive, had become the model for nearly every bicycle built since."
)

GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def add(a, b):\n",
]
N_LOGIT_TOKENS = 64
N_GREEDY = 48
TOP = 16
FIXED_IDS = [0, 1, 2, 13, 198, 314, 1000, 2020, 3000, 5000, 10000, 17000, 25000, 33000, 41000, 49151]


def setup_llama():
    bin_dir = subprocess.check_output([os.path.join(ROOT, "tools", "llama_cpp.sh")], text=True).strip().splitlines()[-1]
    src = os.path.join(os.path.dirname(os.path.dirname(bin_dir)), "llama_cpp_python-0.3.36")
    os.environ["LLAMA_CPP_LIB_PATH"] = bin_dir
    sys.path.insert(0, src)
    for mod, pkg in [("numpy", "numpy"), ("typing_extensions", "typing-extensions"),
                     ("diskcache", "diskcache"), ("jinja2", "jinja2")]:
        try:
            __import__(mod)
        except ImportError:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", pkg])
    return bin_dir


def main():
    bin_dir = setup_llama()
    f32 = os.path.join(ROOT, "build", "SmolLM2-135M-Instruct.F32.gguf")
    if not os.path.exists(f32):
        subprocess.check_call([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", Q4, f32, "F32"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import llama_cpp
    import numpy as np

    os.makedirs(OUT, exist_ok=True)
    llm = llama_cpp.Llama(model_path=f32, n_ctx=512, n_batch=512, logits_all=True, n_threads=1,
                          type_k=0, type_v=0, flash_attn=False, verbose=False)

    with open(os.path.join(OUT, "tokens.tsv"), "w") as f:
        f.write("# utf-8 hex of the text, then llama.cpp's ids (add_special, parse_special)\n")
        for s in TOKEN_STRINGS:
            ids = llm.tokenize(s.encode(), add_bos=True, special=True)
            f.write("%s\t%s\n" % (s.encode().hex(), " ".join(map(str, ids))))

    seq = llm.tokenize(LOGIT_TEXT.encode(), add_bos=True, special=True)[:N_LOGIT_TOKENS]
    assert len(seq) == N_LOGIT_TOKENS, len(seq)
    llm.reset()
    llm.eval(seq)
    scores = np.array(llm.scores[:N_LOGIT_TOKENS], dtype=np.float32)
    with open(os.path.join(OUT, "logits.txt"), "w") as f:
        f.write("# llama.cpp F32 teacher-forced logits; line 1: the sequence; then per position:\n")
        f.write("# top %d as id:logit, '|', then the logits at fixed ids as id:logit\n" % TOP)
        f.write(" ".join(map(str, seq)) + "\n")
        for row in scores:
            top = np.argsort(-row, kind="stable")[:TOP]
            f.write(" ".join("%d:%.6f" % (i, row[i]) for i in top))
            f.write(" | ")
            f.write(" ".join("%d:%.6f" % (i, row[i]) for i in FIXED_IDS) + "\n")

    with open(os.path.join(OUT, "greedy.tsv"), "w") as f:
        f.write("# utf-8 hex of the prompt, then the %d greedy token ids llama.cpp F32 continues with\n" % N_GREEDY)
        for p in GREEDY_PROMPTS:
            toks = llm.tokenize(p.encode(), add_bos=True, special=True)
            llm.reset()
            llm.eval(toks)
            out = []
            for _ in range(N_GREEDY):
                nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                out.append(nxt)
                if nxt in (llm.token_eos(),):
                    break
                llm.eval([nxt])
            f.write("%s\t%s\n" % (p.encode().hex(), " ".join(map(str, out))))
            print(repr(p), "->", repr(llm.detokenize(out).decode("utf-8", "replace")))


if __name__ == "__main__":
    main()
