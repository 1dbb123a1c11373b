#!/usr/bin/env python3
"""Make the llama.cpp reference fixtures for a real Gemma 3 model.

Runs llama.cpp (built by tools/llama_cpp.sh, driven through llama-cpp-python's ctypes layer as
tools/make_fixtures.py does) on Gemma 3 270M as published in Q4_K_M (Q4_K/Q5_0/Q6_K/Q8_0
tensors, 262144-entry SPM vocabulary with byte fallback, arch gemma3, sliding window 512), and
writes:

  tests/fixtures/gemma3/tokens.tsv   token ids (add_special, parse_special) for strings that
                                     stress an SPM vocabulary: English, space/tab/newline runs,
                                     digits, code, emoji, CJK, accented Latin, Cyrillic/Greek,
                                     byte-fallback characters, long runs, Gemma's control and
                                     user-defined tokens, "<bos>" inside text
  tests/fixtures/gemma3/logits.txt   teacher-forced logits of a fixed 48-token sequence (BOS
                                     included): per position the top 16 logits and 16 logits at
                                     fixed ids (the vocabulary is too big to keep every logit)
  tests/fixtures/gemma3/greedy.tsv   32-token greedy continuations of three prompts (one of them
                                     a Gemma chat turn), with the top-1 minus top-2 logit margin
                                     of each step; a continuation stops at <eos> (1) or
                                     <end_of_turn> (106), which is then its last id
  tests/fixtures/gemma3/README.md    what these are

Usage: python3 tools/make_gemma_fixtures.py [gemma-3-270m-q4_k_m.gguf]   (rerun any time; output
is stable)
The model runs as it is (no requantization), single-threaded, n_ctx 256 (below the 512 sliding
window, so every layer sees the whole context), F32 KV cache, flash attention off.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "gemma3")

sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_bitnet_fixtures as mbf  # noqa: E402  (llama(): n_ctx 256, 1 thread, F32 KV, no FA)
import make_fixtures as mf  # noqa: E402  (TOKEN_STRINGS, LOGIT_TEXT)

CHAT = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"

# make_fixtures' strings (its <|im_start|>-style specials are plain text to Gemma), then
# strings aimed at Gemma's vocabulary: user-defined tokens for runs of up to 31 spaces / 31
# newlines / 31 tabs and for HTML tags (llama.cpp splits these out of the raw text before SPM
# runs, whatever parse_special says), control tokens (split out only with parse_special), and
# characters outside the vocabulary (byte fallback, ids 238..493).
TOKEN_STRINGS = mf.TOKEN_STRINGS + [
    CHAT,
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    "<start_of_turn>user\nTranslate \"chat\" to French.<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text with <bos> inside<eos> and <pad><unk><mask><unused0>",
    "<start_of_image><end_of_image>[multimodal]",
    "<start_of_turn<end_of_turn> <start_of_turn >",
    "a  b   c    d     e\t\tf\t\t\tg\n\nh\n\n\ni",
    "trailing spaces   ",
    "\n\n leading newlines and spaces",
    " " * 40 + "|" + "\n" * 40 + "|" + "\t" * 40 + "|",
    " \t \n \r\n\t\n  \n\t",
    "<table><tr><td>1</td><td>2</td></tr></table> <b>bold</b> <i>it</i> <div class=\"x\">",
    "The year 1999, the number 3.14159265358979, and 1,234,567.89 km",
    "fn main() {\n\tlet v: Vec<u8> = vec![0x1f, 0xff];\n\tprintln!(\"{:?}\", v);\n}\n",
    "Привет, мир! Съешь же ещё этих мягких французских булок. Αλφα βήτα γάμμα ΔΕΛΤΑ",
    "Ça va? Él está aquí. Żółć gęślą jaźń. Ếch ngồi đáy giếng. Ölçü",
    "東京タワーは1958年に完成しました。北京是中国的首都。",
    "🤖🦀 👨‍👩‍👧‍👦 🏳️‍🌈 ✨🎉",
    "\x01\x02\x7f \ue000\U000f0001 \U0001d11e\U0001f9ff \u2fd5\u4dc0 \u0e3f",
    "=" * 80,
    "ab" * 60,
]

N_LOGIT_TOKENS = 48
N_GREEDY = 32
TOP = 16
FIXED_IDS = [0, 1, 2, 3, 106, 107, 108, 138, 255, 1000, 4000, 10000, 30000, 100000, 200000, 262143]
EOG = (1, 106)  # <eos>, <end_of_turn>
GREEDY_PROMPTS = [
    "The capital of France is",
    CHAT,
    "Water boils at a temperature of",
]


def main():
    llm = mbf.llama(MODEL)
    assert llm.n_vocab() == 262144 and llm.n_ctx() == 256, (llm.n_vocab(), llm.n_ctx())
    os.makedirs(OUT, exist_ok=True)

    with open(os.path.join(OUT, "tokens.tsv"), "w") as f:
        f.write("# utf-8 hex of the text, then llama.cpp's ids (add_special, parse_special)\n")
        for s in TOKEN_STRINGS:
            ids = llm.tokenize(s.encode(), add_bos=True, special=True)
            f.write("%s\t%s\n" % (s.encode().hex(), " ".join(map(str, ids))))
            n_byte = sum(238 <= i < 494 for i in ids)
            print("%4d ids, %3d byte, %d unk  %r" % (len(ids), n_byte, ids.count(3), s[:48]))

    seq = llm.tokenize(mf.LOGIT_TEXT.encode(), add_bos=True, special=True)[:N_LOGIT_TOKENS]
    assert len(seq) == N_LOGIT_TOKENS and seq[0] == 2, seq
    llm.reset()
    llm.eval(seq)
    scores = np.array(llm.scores[:N_LOGIT_TOKENS], dtype=np.float32)
    margins = []
    with open(os.path.join(OUT, "logits.txt"), "w") as f:
        f.write("# llama.cpp teacher-forced logits of gemma-3-270m-q4_k_m.gguf; line 1: the sequence;\n")
        f.write("# then per position: top %d as id:logit, '|', then the logits at fixed ids as id:logit\n" % TOP)
        f.write(" ".join(map(str, seq)) + "\n")
        for row in scores:
            top = np.argsort(-row, kind="stable")[:TOP]
            margins.append(float(row[top[0]] - row[top[1]]))
            f.write(" ".join("%d:%.6f" % (i, row[i]) for i in top))
            f.write(" | ")
            f.write(" ".join("%d:%.6f" % (i, row[i]) for i in FIXED_IDS) + "\n")
    print("logits: top-1 minus top-2 margin per position:")
    print(" ".join("%.4f" % m for m in margins))
    print("smallest margin %.4f at position %d" % (min(margins), int(np.argmin(margins))))

    with open(os.path.join(OUT, "greedy.tsv"), "w") as f:
        f.write("# utf-8 hex of the prompt, llama.cpp's %d greedy ids (stopping after <eos> 1 or\n"
                "# <end_of_turn> 106), then the top-1 minus top-2 logit margin of each step\n" % N_GREEDY)
        for p in GREEDY_PROMPTS:
            toks = llm.tokenize(p.encode(), add_bos=True, special=True)
            llm.reset()
            llm.eval(toks)
            out, steps = [], []
            for _ in range(N_GREEDY):
                row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                top = np.argsort(-row, kind="stable")[:2]
                out.append(int(top[0]))
                steps.append(float(row[top[0]] - row[top[1]]))
                if out[-1] in EOG:
                    break
                llm.eval([out[-1]])
            f.write("%s\t%s\t%s\n" % (p.encode().hex(), " ".join(map(str, out)),
                                      " ".join("%.4f" % m for m in steps)))
            print("%r %s -> %r %s (smallest margin %.4f at step %d)"
                  % (p, toks, llm.detokenize(out, special=True).decode("utf-8", "replace"), out,
                     min(steps), int(np.argmin(steps))))

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(
            "# Gemma 3 fixtures (tools/make_gemma_fixtures.py)\n\n"
            "What llama.cpp (0c1e570, through llama-cpp-python's ctypes layer) computes with the real "
            "Gemma 3 270M model in Q4_K_M, `models/gemma-3-270m-q4_k_m.gguf` (not kept here), run as it "
            "is, single-threaded, n_ctx 256 (inside the 512-token sliding window), F32 KV cache, flash "
            "attention off: `tokens.tsv` holds the token ids (BOS added, special tokens parsed) of %d "
            "strings that stress the SPM vocabulary with byte fallback (whitespace runs, digits, code, "
            "emoji, CJK, accented Latin, Cyrillic/Greek, bytes outside the vocabulary, long runs, the "
            "chat-turn control tokens, user-defined HTML tags, `<bos>` inside text), one line per "
            "string as utf-8 hex, tab, ids; `logits.txt` holds the teacher-forced logits of a fixed "
            "%d-token English sequence (BOS included; line 1 the ids, then per position the top %d "
            "logits by value and the logits at %d fixed ids, as `id:logit`); `greedy.tsv` holds "
            "%d-token greedy continuations of three prompts, one of them a Gemma chat turn (prompt as "
            "utf-8 hex, tab, ids, tab, the top-1 minus top-2 logit margin of each step; a "
            "continuation that reaches `<eos>` (1) or `<end_of_turn>` (106) stops there, with that "
            "id last). Regenerate with `python3 tools/make_gemma_fixtures.py "
            "[path/to/gemma-3-270m-q4_k_m.gguf]`; the output is deterministic.\n"
            % (len(TOKEN_STRINGS), N_LOGIT_TOKENS, TOP, len(FIXED_IDS), N_GREEDY))

    for n in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, n)
        print("%8d  %s" % (os.path.getsize(p), os.path.relpath(p, ROOT)))


if __name__ == "__main__":
    main()
