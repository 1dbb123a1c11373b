#!/usr/bin/env python3
"""The chat REPL of `tmac run MODEL --chat` in a real terminal (pexpect gives it a pty): two
turns that share a conversation, /reset, Ctrl-C in the middle of an answer, Ctrl-D to quit.

Usage: tests/cli_chat.py TMAC MODEL   (make test-cli runs it on SmolLM2)
"""
import sys

import pexpect

TMAC, MODEL = sys.argv[1], sys.argv[2]
PROMPT = "> "


def start(max_tokens):
    c = pexpect.spawn(TMAC, ["run", MODEL, "--chat", "-t", "0", "-n", str(max_tokens)],
                      encoding="utf-8", timeout=120)
    c.expect_exact(PROMPT)
    return c


def ask(c, text):
    """Send a message; the answer is what the tool prints before its next prompt."""
    c.sendline(text)
    c.expect_exact(PROMPT)
    answer = c.before.replace("\r", "")
    # the terminal echoes the typed line first
    return answer[answer.index(text) + len(text):].strip() if text in answer else answer.strip()


def main():
    c = start(40)
    first = ask(c, "What is the capital of France?")
    assert len(first) > 10, first
    second = ask(c, "What did I just ask you?")
    assert second, "no second answer"
    # a second turn is answered in the conversation: alone, the same question reads otherwise
    fresh = start(40)
    alone = ask(fresh, "What did I just ask you?")
    # Ctrl-C at the prompt ends the chat
    fresh.sendintr()
    fresh.expect(pexpect.EOF)
    fresh.close()
    assert fresh.exitstatus == 0, fresh.exitstatus
    assert second != alone, "the second turn did not see the first: %r" % second
    # /reset forgets: the first question gets the first answer again (greedy)
    c.sendline("/reset")
    c.expect_exact("(conversation forgotten)")
    c.expect_exact(PROMPT)
    again = ask(c, "What is the capital of France?")
    assert again == first, (again, first)
    # Ctrl-C stops a long answer and the chat goes on
    story = "Write a very long story about a dragon who learns to ride a bicycle."
    c.sendline(story)
    c.expect_exact(story)  # the terminal's echo: a Ctrl-C before tmac reads the line would drop it
    c.expect(r"\w+ \w+ \w+ \w+")  # some of the answer
    c.sendintr()
    c.expect_exact("(stopped)")
    c.expect_exact(PROMPT)
    after = ask(c, "What is the capital of France?")
    assert after, "no answer after Ctrl-C"
    # Ctrl-D quits cleanly
    c.sendeof()
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0, c.exitstatus
    print("cli chat: OK (two turns in one conversation, /reset, Ctrl-C mid-answer and at the prompt, Ctrl-D)")


if __name__ == "__main__":
    main()
