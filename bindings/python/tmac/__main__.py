"""`python -m tmac MODEL [-i PROMPT] [--chat] ...`: generate from a prompt, or, with --chat and
no prompt, chat in the terminal (/reset forgets, Ctrl-D quits)."""
import argparse
import sys

from . import Model, TmacError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tmac", description=__doc__)
    ap.add_argument("model", help="a GGUF model or tmac file")
    ap.add_argument("-i", "--prompt", help="prompt text (- reads standard input)")
    ap.add_argument("-n", "--max-tokens", type=int, default=256)
    ap.add_argument("-t", "--temperature", type=float, default=0.0)
    ap.add_argument("-c", "--n-ctx", type=int, default=0)
    ap.add_argument("-s", "--seed", type=int)
    ap.add_argument("--stop", action="append", help="stop text (repeatable)")
    ap.add_argument("--chat", action="store_true", help="use the model's chat template")
    ap.add_argument("-y", "--system", help="system message for --chat")
    a = ap.parse_args(argv)
    try:
        llm = Model(a.model, n_ctx=a.n_ctx)
        prompt = sys.stdin.read() if a.prompt == "-" else a.prompt
        if prompt is None and not sys.stdin.isatty():
            prompt = sys.stdin.read()
        if a.chat and prompt is None:
            chat = llm.chat(system=a.system, temperature=a.temperature,
                            **({"seed": a.seed} if a.seed is not None else {}))
            while True:
                try:
                    line = input("> ")
                except EOFError:
                    return 0
                if line.strip() == "/reset":
                    chat.reset()
                    continue
                for piece in chat.send(line, max_tokens=a.max_tokens, stop=a.stop, stream=True):
                    print(piece, end="", flush=True)
                print()
        opts = dict(max_tokens=a.max_tokens, stop=a.stop, temperature=a.temperature,
                    seed=a.seed, stream=True)
        if a.chat:
            msgs = ([{"role": "system", "content": a.system}] if a.system else [])
            msgs.append({"role": "user", "content": prompt})
            for c in llm.create_chat_completion(messages=msgs, **opts):
                print(c["choices"][0]["delta"].get("content", ""), end="", flush=True)
        else:
            for c in llm(prompt or "", **opts):
                print(c["choices"][0]["text"], end="", flush=True)
        print()
        return 0
    except (TmacError, ValueError, TypeError) as e:
        print(f"python -m tmac: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader has gone (`| head`): end quietly, as the tmac tool does
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
