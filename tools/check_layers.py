#!/usr/bin/env python3
"""Holds the library to its layers (ARCHITECTURE.md): a module may use only the modules listed
under it in LAYERS, so nothing imports upward and there are no cycles. It reads every
`crate::<module>` path in src/ (the binary in src/bin/ sees only the public API and is not
checked), leaving out comments and `#[cfg(test)]` modules.

`--self-test` adds upward imports in memory and fails if any goes unnoticed.
Prints each violation as file:line; exits 1 if there is any.
"""
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Each module and what it may use, bottom to top.
LAYERS = {
    # base: errors, numerics, where a model's bytes live
    "error": set(),
    "math": set(),
    "bytes": {"error"},
    # weight layouts: ggml block types, matrices in kernel layout, quantizers
    "layout": {"error", "math", "bytes"},
    # file formats and the tensors in them
    "format": {"error", "bytes", "layout"},
    # compute over layouts
    "kernel": {"error", "math", "layout"},
    "tokenizer": {"error", "format"},
    "sampler": {"error", "math"},
    # the transformer: config, weights, forward pass
    "model": {"error", "math", "bytes", "layout", "format", "kernel", "tokenizer"},
    # one conversation on a model
    "session": {"error", "model", "sampler", "tokenizer"},
    # edges: configuration from the environment, the C API, conversion, measurement, tests
    "settings": {"error", "kernel"},
    "capi": {"error", "bytes", "kernel", "model", "sampler", "session", "settings"},
    "convert": {"error", "bytes", "layout", "format", "kernel", "tokenizer", "model"},
    "tools": {"error", "math", "layout", "kernel", "sampler", "model", "session"},
    "testing": {"error", "bytes", "layout", "format", "kernel", "tokenizer", "sampler", "model",
                "session", "capi", "convert"},
}
# Names at the crate root that are re-exports, not modules: allowed to whoever may use their
# module (VERSION, a constant of the root, to anyone).
ROOT_REEXPORTS = {"Error": "error", "ErrorKind": "error", "Result": "error", "Model": "model",
                  "LoadOptions": "model", "Compute": "model", "Session": "session",
                  "SessionOptions": "session", "Step": "session", "StopReason": "session",
                  "AbortCheck": "session", "SamplerParams": "sampler", "VERSION": None}


def strip(src):
    """Comments blanked and #[cfg(test)] modules removed, newlines kept (for line numbers)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    src = re.sub(r"//[^\n]*", blank, src)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod \w+ \{", src):
        if m.start() < i:
            continue
        depth, j = 0, m.end() - 1
        while j < len(src):
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            if depth == 0:
                break
            j += 1
        out.append(src[i:m.start()])
        out.append(re.sub(r"[^\n]", " ", src[m.start():j + 1]))
        i = j + 1
    out.append(src[i:])
    return "".join(out)


def module_of(rel):
    """src/model/forward.rs -> model; src/lib.rs -> None (the root may name everything)."""
    parts = rel.split("/")[1:]
    if parts == ["lib.rs"]:
        return None
    return parts[0][:-3] if parts[0].endswith(".rs") else parts[0]


def check(sources):
    problems = []
    for rel, src in sorted(sources.items()):
        mod = module_of(rel)
        if mod is None:
            continue
        if mod not in LAYERS:
            problems.append(f"{rel}: module '{mod}' has no place in LAYERS (tools/check_layers.py)")
            continue
        code = strip(src)
        for m in re.finditer(r"\bcrate::(\w+)", code):
            target = ROOT_REEXPORTS.get(m.group(1), m.group(1))
            if target is not None and target != mod and target not in LAYERS[mod]:
                line = code.count("\n", 0, m.start()) + 1
                problems.append(f"{rel}:{line}: {mod} uses crate::{m.group(1)}, which is not "
                                f"below it (allowed: {', '.join(sorted(LAYERS[mod])) or 'nothing'})")
    return problems


def load():
    paths = [p for p in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True)
             if not os.path.relpath(p, ROOT).startswith(os.path.join("src", "bin"))]
    return {os.path.relpath(p, ROOT): open(p, encoding="utf-8").read() for p in paths}


def self_test(sources):
    mutations = [  # (file, an import that must be refused)
        ("src/layout/lut.rs", "use crate::model::Model;\n"),
        ("src/format/gguf.rs", "use crate::kernel::Isa;\n"),
        ("src/kernel/mod.rs", "use crate::session::Session;\n"),
        ("src/model/mod.rs", "use crate::convert::quantize;\n"),
        ("src/session.rs", "use crate::capi::tmac;\n"),
        ("src/tokenizer/mod.rs", "fn f() -> crate::Model { todo!() }\n"),
    ]
    failures = [f"self-test: the tree itself: {p}" for p in check(sources)]
    for path, line in mutations:
        src = dict(sources)
        src[path] = line + src[path]
        if not check(src):
            failures.append(f"self-test: '{line.strip()}' in {path} went unnoticed")
    # a test module may use anything
    src = dict(sources)
    src["src/layout/lut.rs"] += "\n#[cfg(test)]\nmod t {\n    use crate::testing::x;\n}\n"
    if check(src):
        failures.append("self-test: a #[cfg(test)] module was checked")
    return failures


def main():
    sources = load()
    if "--self-test" in sys.argv:
        failures = self_test(sources)
        for f in failures:
            print(f)
        if failures:
            sys.exit(1)
        print("check_layers self-test: 7 cases: OK")
        return
    problems = check(sources)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"check_layers: {len(sources)} files in src/ obey the layers: OK")


if __name__ == "__main__":
    main()
