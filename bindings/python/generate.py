#!/usr/bin/env python3
"""generate.py: one prompt, one streamed answer (the Python twin of examples-c/generate.c).

    python3 bindings/python/generate.py [--chat] MODEL "PROMPT" [max_tokens]

Greedy (tmac's default sampling), so the output equals the C example's for the same arguments.
"""
import sys

import tmac

args = sys.argv[1:]
chat = bool(args) and args[0] == "--chat"
args = args[chat:]
if len(args) < 2:
    sys.exit('usage: generate.py [--chat] MODEL "PROMPT" [max_tokens]')
max_tokens = int(args[2]) if len(args) > 2 else 128

try:
    with tmac.Model(args[0]) as model:
        for piece in model.generate(args[1], max_tokens=max_tokens, chat=chat):
            print(piece, end="", flush=True)
        print()
except tmac.TmacError as e:
    sys.exit(f"generate.py: {e}")
