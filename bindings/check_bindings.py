#!/usr/bin/env python3
"""Checks the Python, Kotlin and Swift bindings against include/tmac.h, so that a change of the
C API cannot silently break them:

- every tmac_* name in a binding is a function or type of the header, every TMAC_* a constant,
  and a constant a binding defines has the header's value;
- each declared signature (Python's SIGNATURES, Kotlin's `external fun`) has the header's
  parameter count and compatible types, each mirrored struct the header's fields in order;
- every call `tmac_x(...)` in any binding (Swift calls the C module directly) passes as many
  arguments as the header's tmac_x takes.

`--self-test` breaks the sources and the header in memory in ways the check must catch, and
fails if any goes unnoticed. Prints each problem; exits 1 if there is any.
"""
import ast
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HEADER = "include/tmac.h"
SOURCES = ["bindings/python/**/*.py", "bindings/kotlin/**/*.kt", "bindings/kotlin/**/*.def",
           "bindings/swift/**/*.swift", "Package.swift", "bindings/swift/**/*.modulemap",
           "bindings/swift/**/*.h", "include/module.modulemap"]
# The binding classes that mirror the header's structs (same names in Python and Kotlin).
STRUCTS = {"Params": "tmac_params", "Params.ByValue": "tmac_params", "Info": "tmac_info"}
# TMAC_* names that are environment variables, not header constants.
ENV_VARS = {"TMAC_LIB", "TMAC_MODEL", "TMAC_TEMPERATURE"}


def norm(c_type):
    """'const struct tmac_params *' -> 'tmac_params *'; tmac_status -> int32_t."""
    t = re.sub(r"\b(const|struct)\b", " ", c_type).replace("*", " * ")
    words = t.split()
    base = " ".join(w for w in words if w != "*")
    base = "int32_t" if base in ("tmac_status", "tmac_stop") else base
    stars = words.count("*")
    return base + (" " + "*" * stars if stars else "")


def split_decl(decl):
    """'const char *path' -> ('char *', 'path')."""
    m = re.match(r"(.*?)(\w+)\s*$", decl.strip(), re.S)
    return norm(m.group(1)), m.group(2)


def parse_header(text):
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    funcs = {}
    for ret, name, params in re.findall(r"([\w \*]+?)\s*\b(tmac_\w+)\(([^)]*)\);", text):
        args = [] if params.strip() == "void" else [split_decl(p)[0] for p in params.split(",")]
        funcs[name] = (norm(ret), args)
    structs = {}
    for name, body in re.findall(r"typedef struct (tmac_\w+) \{(.*?)\} \1;", text, re.S):
        structs[name] = [split_decl(f)[::-1] for f in body.split(";") if f.strip()]
    consts = {k: int(v) for k, v in re.findall(r"\b(TMAC_\w+)\s*=\s*(-?\d+)", text)}
    consts.update({k: int(v) for k, v in re.findall(r"#define (TMAC_\w+) (-?\d+)", text)})
    names = set(funcs) | set(structs) | set(re.findall(r"\b(tmac_\w+)\b", text))
    macros = set(consts) | set(re.findall(r"#define (TMAC_\w+)", text))
    return funcs, structs, consts, names, macros


def code_only(path, src):
    """src with comments (and Python docstrings) blanked, newlines kept: prose like
    "tmac_free() the handle" is not a call."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    if path.endswith(".py"):
        return re.sub(r'"""(.*?)"""|#[^\n]*', blank, src, flags=re.S)
    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, src, flags=re.S)


def count_args(src, open_paren):
    """Top-level arguments of the call whose '(' is at src[open_paren]."""
    depth, n, empty = 0, 1, True
    i = open_paren
    while i < len(src):
        c = src[i]
        if c in "\"'":  # skip a string literal
            j = i + 1
            while j < len(src) and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return 0 if empty else n
        elif c == "," and depth == 1:
            n += 1
        if depth >= 1 and i > open_paren and not c.isspace():
            empty = False
        i += 1
    return -1


# ctypes names -> C types (by name: on 64-bit Linux c_size_t *is* c_uint64, objects can't tell).
PY_C = {"c_int32": "int32_t", "c_uint32": "uint32_t", "c_uint64": "uint64_t", "c_float": "float",
        "c_size_t": "size_t", "c_char_p": "char *", "c_void_p": "void *", "None": "void"}


def py_type(node):
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "POINTER":
        inner = py_type(node.args[0])
        return inner + ("*" if inner.endswith("*") else " *")
    name = ast.unparse(node)
    return STRUCTS.get(name) or PY_C.get(name, "?" + name)


def compatible(binding, c):
    """c_void_p is how Python spells the opaque `struct tmac *`."""
    return binding == c or (binding, c) in {("void *", "tmac *"), ("void **", "tmac **")}


def check_python(path, src, funcs, structs, err):
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SIGNATURES":
            for key, value in zip(node.value.keys, node.value.values):
                name = key.value
                if name not in funcs:
                    continue  # reported as an unknown name
                ret, args = funcs[name]
                got_ret = py_type(value.elts[0])
                got = [py_type(a) for a in value.elts[1].elts]
                if len(got) != len(args):
                    err(path, f"{name}: {len(got)} argtypes, tmac.h has {len(args)} parameters")
                for i, (g, c) in enumerate(zip(got, args)):
                    if not compatible(g, c):
                        err(path, f"{name}: argument {i + 1} is {g}, tmac.h has {c}")
                if not compatible(got_ret, ret):
                    err(path, f"{name}: returns {got_ret}, tmac.h returns {ret}")
        if isinstance(node, ast.ClassDef) and node.name in STRUCTS:
            for item in node.body:
                if isinstance(item, ast.Assign) and item.targets[0].id == "_fields_":
                    fields = [(e.elts[0].value, py_type(e.elts[1])) for e in item.value.elts]
                    check_struct(path, node.name, fields, structs, compatible, err)


# Kotlin/JVM (JNA direct mapping) types -> the C types each may stand for.
KT_C = {"Int": {"int32_t", "uint32_t"}, "Long": {"int64_t", "uint64_t"}, "Float": {"float"},
        "Unit": {"void"}, "SizeT": {"size_t"}, "SizeTByReference": {"size_t *"},
        "ByteArray": {"char *", "void *"}, "Pointer": {"tmac *", "char *", "void *"},
        "PointerByReference": {"tmac **"}, "Params": {"tmac_params *"},
        "Params.ByValue": {"tmac_params"}, "Info": {"tmac_info *"}}
KT_FIELD = dict(KT_C, Params=set(), Info=set(), Pointer={"char *"})


def check_kotlin(path, src, funcs, structs, err):
    for name, params, ret in re.findall(
            r"external fun (tmac_\w+)\(([^)]*)\)\s*(?::\s*([\w.?]+))?", src):
        if name not in funcs:
            continue
        c_ret, c_args = funcs[name]
        got = [p.split(":")[1].strip().rstrip("?") for p in params.split(",") if p.strip()]
        if len(got) != len(c_args):
            err(path, f"{name}: {len(got)} parameters, tmac.h has {len(c_args)}")
        for i, (g, c) in enumerate(zip(got, c_args)):
            if c not in KT_C.get(g, ()):
                err(path, f"{name}: parameter {i + 1} is {g}, tmac.h has {c}")
        ret = (ret or "Unit").rstrip("?")
        if c_ret not in KT_C.get(ret, ()):
            err(path, f"{name}: returns {ret}, tmac.h returns {c_ret}")
    for order, cls, body in re.findall(
            r"@Structure\.FieldOrder\(([^)]*)\)\s*(?:open )?class (\w+)[^{]*\{(.*?)\n\}", src, re.S):
        names = re.findall(r'"(\w+)"', order)
        types = dict(re.findall(r"@JvmField var (\w+): ([\w?]+)", body))
        if sorted(names) != sorted(types):
            err(path, f"{cls}: @FieldOrder {names} and the fields {list(types)} differ")
        fields = [(n, types.get(n, "?").rstrip("?")) for n in names]
        check_struct(path, cls, fields, structs, lambda kt, c: c in KT_FIELD.get(kt, ()), err)


def check_struct(path, cls, fields, structs, ok, err):
    c_fields = structs[STRUCTS[cls]]
    if [n for n, _ in fields] != [n for n, _ in c_fields]:
        err(path, f"{cls}: fields {[n for n, _ in fields]}, "
                  f"{STRUCTS[cls]} has {[n for n, _ in c_fields]}")
    for (n, t), (_, c) in zip(fields, c_fields):
        if not ok(t, c):
            err(path, f"{cls}.{n} is {t}, tmac.h has {c}")


def check(sources, header):
    """sources: {path: text}. Returns the list of problems."""
    problems = []

    def err(path, msg):
        problems.append(f"{path}: {msg}")

    funcs, structs, consts, names, macros = parse_header(header)
    for path, src in sorted(sources.items()):
        for name in sorted(set(re.findall(r"\b(tmac_[a-z0-9_]+)\b", src)) - names):
            err(path, f"{name} is not in tmac.h")
        for name in sorted(set(re.findall(r"\b(TMAC_[A-Z0-9_]+)\b", src)) - macros - ENV_VARS):
            err(path, f"{name} is not in tmac.h")
        for name, value in re.findall(r"\b(TMAC_\w+)\s*(?::\s*\w+\s*)?=\s*(-?\d+)", src):
            if name in consts and consts[name] != int(value):
                err(path, f"{name} = {value}, tmac.h has {consts[name]}")
        code = code_only(path, src)
        for m in re.finditer(r"\b(tmac_\w+)\s*\(", code):
            if m.group(1) in funcs and not re.search(r"fun\s+$", code[:m.start()]):
                n, want = count_args(code, m.end() - 1), len(funcs[m.group(1)][1])
                if n != want:
                    line = code.count("\n", 0, m.start()) + 1
                    err(f"{path}:{line}", f"{m.group(1)} called with {n} arguments, takes {want}")
        for header_name in re.findall(r'(?:header "|headers = )([\w.]+)', src):
            if not os.path.exists(os.path.join(ROOT, "include", header_name)) and \
                    not os.path.exists(os.path.join(ROOT, os.path.dirname(path), header_name)):
                err(path, f"header {header_name} does not exist")
        if path.endswith(".py"):
            check_python(path, src, funcs, structs, err)
        if path.endswith(".kt"):
            check_kotlin(path, src, funcs, structs, err)
    return problems


def load():
    paths = sorted({p for pat in SOURCES for p in glob.glob(os.path.join(ROOT, pat), recursive=True)})
    sources = {os.path.relpath(p, ROOT): open(p, encoding="utf-8").read() for p in paths}
    return sources, open(os.path.join(ROOT, HEADER), encoding="utf-8").read()


def self_test(sources, header):
    """Each mutation must produce a problem mentioning `expect`; the unmutated tree none."""
    py, kt = "bindings/python/tmac/_lib.py", "bindings/kotlin/src/main/kotlin/tmac/Tmac.kt"
    pyapi = "bindings/python/tmac/__init__.py"
    sw = "bindings/swift/Sources/TMac/TMac.swift"
    mutations = [  # (file or HEADER, old, new, a word the report must contain)
        (py, '"tmac_reset": (', '"tmac_foo": (', "tmac_foo"),
        (py, "[c_void_p, c_char_p, c_size_t]", "[c_void_p, c_char_p]", "tmac_prompt"),
        (py, "[c_void_p, c_char_p, c_size_t]", "[c_void_p, c_char_p, c_uint32]", "tmac_prompt"),
        (py, '("seed", c_uint64)', '("seed", c_uint32)', "seed"),
        (pyapi, "lib().tmac_reset(self._h.live())", "lib().tmac_reset(self._h.live(), 0)",
         "tmac_reset"),
        (kt, "len: SizeT): Int", "len: Int): Int", "tmac_prompt"),
        (kt, "fun tmac_reset(t: Pointer)", "fun tmac_reset(t: Pointer, x: Int)", "tmac_reset"),
        (kt, '"top_p", "top_k"', '"top_k", "top_p"', "Params"),
        (kt, "const val TMAC_DONE = 1", "const val TMAC_DONE = 2", "TMAC_DONE"),
        (sw, "tmac_free(handle)", "tmac_free(handle, nil)", "tmac_free"),
        (sw, "tmac_next_token(handle, &buf, cap, &n)", "tmac_next_token(handle, &buf, &n)",
         "tmac_next_token"),
        (sw, "tmac_last_error(nil)", "tmac_last_eror(nil)", "tmac_last_eror"),
        (sw, "TMAC_DONE: Int32 = 1", "TMAC_DONE: Int32 = 0", "TMAC_DONE"),
        (sw, "}, user))", "}))", "tmac_set_abort"),  # a closure argument is one argument
        # An API change in the header must break all three bindings' view of it.
        (HEADER, "char *buf, size_t cap, size_t *out_len", "char *buf, size_t *out_len", py),
        (HEADER, "char *buf, size_t cap, size_t *out_len", "char *buf, size_t *out_len", kt),
        (HEADER, "char *buf, size_t cap, size_t *out_len", "char *buf, size_t *out_len", sw),
        (HEADER, "tmac_status tmac_reset(", "tmac_status tmac_clear(", "tmac_reset"),
    ]
    failures = check(sources, header)
    for path, old, new, expect in mutations:
        src = dict(sources)
        hdr = header
        if old not in (hdr if path == HEADER else src[path]):
            failures.append(f"self-test: '{old}' is no longer in {path}: update the mutation")
            continue
        if path == HEADER:
            hdr = hdr.replace(old, new, 1)
        else:
            src[path] = src[path].replace(old, new, 1)
        if not any(expect in p for p in check(src, hdr)):
            failures.append(f"self-test: '{old}' -> '{new}' in {path} was not caught")
    return failures, len(mutations)


def main():
    sources, header = load()
    if "--self-test" in sys.argv:
        problems, n = self_test(sources, header)
        what = f"check_bindings self-test: {n} broken variants"
    else:
        problems = check(sources, header)
        what = f"check_bindings: {len(sources)} files against {HEADER}"
    for p in problems:
        print(p)
    print(f"{what}: {'FAILED' if problems else 'OK'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
