"""tmac for Python: a ctypes binding over libtmac (no compiled extension).

    import tmac
    with tmac.Model("SmolLM2-135M-Instruct.Q4_1.gguf") as model:
        for piece in model.generate("The capital of France is", max_tokens=24):
            print(piece, end="", flush=True)

The library is found through $TMAC_LIB (a path), else target/release/ of the source tree this
file sits in, else the system loader (libtmac.so after `make install`). Failed calls raise
TmacError carrying tmac_last_error()'s message. A Model is one conversation: use it from one
thread at a time. SIGNATURES below is checked against include/tmac.h by check_bindings.py.
"""

import ctypes
import os
import sys
from ctypes import POINTER, c_char_p, c_float, c_int32, c_size_t, c_uint32, c_uint64, c_void_p

TMAC_ABI_VERSION = 1
TMAC_OK = 0
TMAC_DONE = 1
TMAC_ERR_BUFFER_TOO_SMALL = -7
TMAC_ERR_STATE = -9
TMAC_ERR_ABORTED = -10
TMAC_FLAG_F32 = 1
TMAC_FLAG_SLIDING_WINDOW = 2
TMAC_FLAG_INT8_TABLES = 4
TMAC_FLAG_EXACT_TABLES = 8
TMAC_FLAG_PARSE_SPECIAL = 16
TMAC_FLAG_READ_ENV = 32
TMAC_TOKENIZE_ADD_SPECIAL = 1
TMAC_TOKENIZE_PARSE_SPECIAL = 2
# tmac_stop_reason
STOP_REASONS = {0: None, 1: "end_of_text", 2: "max_tokens", 3: "context_full", 4: "stop_sequence",
                5: "aborted"}


class Params(ctypes.Structure):
    """struct tmac_params (load and generation settings)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_uint32),
        ("temperature", c_float),
        ("top_p", c_float),
        ("top_k", c_uint32),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("reserved0", c_uint32),
        ("seed", c_uint64),
        ("max_tokens", c_uint32),
        ("flags", c_uint32),
        ("memory_budget_mib", c_uint32),
        ("reserved1", c_uint32),
    ]


class Info(ctypes.Structure):
    """struct tmac_info (what a model is)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_vocab", c_uint32),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("n_ff", c_uint32),
        ("n_ctx", c_uint32),
        ("n_ctx_train", c_uint32),
        ("bits_per_weight", c_float),
        ("file_size", c_uint64),
        ("architecture", c_char_p),
        ("kernel", c_char_p),
    ]


# name: (return type, argument types). `struct tmac *` is an opaque c_void_p.
SIGNATURES = {
    "tmac_params_default": (Params, []),
    "tmac_load": (c_int32, [c_char_p, POINTER(Params), POINTER(c_void_p)]),
    "tmac_new_session": (c_int32, [c_void_p, POINTER(Params), POINTER(c_void_p)]),
    "tmac_prompt": (c_int32, [c_void_p, c_char_p, c_size_t]),
    "tmac_prompt_chat": (c_int32, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "tmac_next_token": (c_int32, [c_void_p, c_char_p, c_size_t, POINTER(c_size_t)]),
    "tmac_reset": (c_int32, [c_void_p]),
    "tmac_set_temperature": (c_int32, [c_void_p, c_float]),
    "tmac_set_top_k": (c_int32, [c_void_p, c_uint32]),
    "tmac_set_top_p": (c_int32, [c_void_p, c_float]),
    "tmac_set_seed": (c_int32, [c_void_p, c_uint64]),
    "tmac_model_info": (c_int32, [c_void_p, POINTER(Info)]),
    "tmac_last_error": (c_char_p, [c_void_p]),
    "tmac_status_str": (c_char_p, [c_int32]),
    "tmac_version": (c_char_p, []),
    "tmac_abi_version": (c_uint32, []),
    "tmac_free": (None, [c_void_p]),
    "tmac_stop_reason": (c_int32, [c_void_p]),
    "tmac_set_stop": (c_int32, [c_void_p, POINTER(c_char_p), c_size_t]),
    "tmac_set_max_tokens": (c_int32, [c_void_p, c_uint32]),
    "tmac_tokenize": (c_int32, [c_void_p, c_char_p, c_size_t, c_uint32, POINTER(c_int32), c_size_t,
                                POINTER(c_size_t)]),
    "tmac_detokenize": (c_int32, [c_void_p, POINTER(c_int32), c_size_t, c_char_p, c_size_t,
                                  POINTER(c_size_t)]),
    "tmac_context_used": (c_int32, [c_void_p, POINTER(c_size_t)]),
}


class TmacError(Exception):
    """A failed tmac call: `status` is the tmac_status code, the message tmac_last_error's."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


_lib = None


def lib():
    """The loaded libtmac (loaded on first use, so importing this module never fails)."""
    global _lib
    if _lib is None:
        name = {"darwin": "libtmac.dylib", "win32": "tmac.dll"}.get(sys.platform, "libtmac.so")
        tree = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target",
                            "release", name)
        path = os.environ.get("TMAC_LIB") or (tree if os.path.exists(tree) else name)
        so = ctypes.CDLL(path)
        for fn, (restype, argtypes) in SIGNATURES.items():
            getattr(so, fn).restype = restype
            getattr(so, fn).argtypes = argtypes
        if so.tmac_abi_version() != TMAC_ABI_VERSION:
            raise ImportError(f"{path} has ABI {so.tmac_abi_version()}, "
                              f"this binding needs {TMAC_ABI_VERSION}")
        _lib = so
    return _lib


def version():
    return lib().tmac_version().decode()


def _check(status, handle):
    if status < 0:
        raise TmacError(status, lib().tmac_last_error(handle).decode(errors="replace"))
    return status


class Model:
    """A loaded model and one conversation on it. Keyword arguments set tmac_params fields
    (n_ctx, temperature, top_p, top_k, min_p, repeat_penalty, seed, max_tokens, flags,
    memory_budget_mib);
    the defaults are tmac_params_default()'s: greedy sampling."""

    def __init__(self, path, _handle=None, **params):
        self._handle = _handle
        self._free = lib().tmac_free  # kept: module globals may be gone when __del__ runs
        if _handle is None:
            out = c_void_p()
            p = _params(params)
            _check(lib().tmac_load(os.fsencode(path), ctypes.byref(p), ctypes.byref(out)), None)
            self._handle = out
        self._max_tokens = params.get("max_tokens", 0)

    def new_session(self, **params):
        """Another conversation on the same weights (shared, not reloaded)."""
        out = c_void_p()
        p = _params(params)
        _check(lib().tmac_new_session(self._live(), ctypes.byref(p), ctypes.byref(out)),
               self._handle)
        return Model(None, _handle=out, max_tokens=params.get("max_tokens", 0))

    def generate(self, prompt, max_tokens=None, chat=False, role="user", stop=None):
        """Feed `prompt` (as a chat message of `role` if chat) and yield the reply piece by
        piece (nothing happens until the first piece is asked for). The conversation goes on:
        the next call continues after this text. max_tokens > 0 stops after that many tokens;
        None or 0 leaves it to the load-time max_tokens (0 there = until end of text). `stop`:
        strings that end the reply (not yielded). A system message yields nothing: it opens no
        reply. The text is plain: control tokens in it are not parsed."""
        data = prompt.encode()
        stops = [x.encode() for x in (stop or [])]
        arr = (c_char_p * max(1, len(stops)))(*stops)
        _check(lib().tmac_set_stop(self._live(), arr, len(stops)), self._handle)
        limit = max_tokens or self._max_tokens
        _check(lib().tmac_set_max_tokens(self._live(), limit), self._handle)
        if chat:
            _check(lib().tmac_prompt_chat(self._live(), role.encode(), data, len(data)),
                   self._handle)
            if role == "system":
                return
        else:
            _check(lib().tmac_prompt(self._live(), data, len(data)), self._handle)
        # Big enough for any token's text, so each TMAC_OK piece is exactly one token.
        buf = ctypes.create_string_buffer(1024)
        n = c_size_t()
        while True:
            s = lib().tmac_next_token(self._live(), buf, len(buf), ctypes.byref(n))
            if s == TMAC_ERR_BUFFER_TOO_SMALL:
                buf = ctypes.create_string_buffer(n.value)
                continue
            if _check(s, self._handle) == TMAC_DONE:
                return
            yield buf.raw[: n.value].decode()

    def stop_reason(self):
        """Why the last reply ended: "end_of_text", "max_tokens", "context_full",
        "stop_sequence", "aborted", or None."""
        return STOP_REASONS.get(lib().tmac_stop_reason(self._live()))

    def tokenize(self, text, add_special=False, parse_special=False):
        """Token ids of `text`."""
        data = text.encode()
        flags = (TMAC_TOKENIZE_ADD_SPECIAL if add_special else 0) | \
            (TMAC_TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        n = c_size_t()
        cap = len(data) + 8
        while True:
            ids = (c_int32 * cap)()
            s = lib().tmac_tokenize(self._live(), data, len(data), flags, ids, cap, ctypes.byref(n))
            if s != TMAC_ERR_BUFFER_TOO_SMALL:
                _check(s, self._handle)
                return list(ids[: n.value])
            cap = n.value

    def detokenize(self, ids):
        """The bytes of token ids (a piece of a character may not be valid UTF-8 alone)."""
        arr = (c_int32 * max(1, len(ids)))(*ids)
        n = c_size_t()
        cap = 64 + 16 * len(ids)
        while True:
            buf = ctypes.create_string_buffer(cap)
            s = lib().tmac_detokenize(self._live(), arr, len(ids), buf, cap, ctypes.byref(n))
            if s != TMAC_ERR_BUFFER_TOO_SMALL:
                _check(s, self._handle)
                return buf.raw[: n.value]
            cap = n.value

    def reset(self):
        """Forget the conversation; keep the model and settings."""
        _check(lib().tmac_reset(self._live()), self._handle)

    def set_sampling(self, temperature=None, top_k=None, top_p=None, seed=None):
        for value, fn in ((temperature, lib().tmac_set_temperature), (top_k, lib().tmac_set_top_k),
                          (top_p, lib().tmac_set_top_p), (seed, lib().tmac_set_seed)):
            if value is not None:
                _check(fn(self._live(), value), self._handle)

    def info(self):
        """The model's shapes as a dict (tmac_model_info)."""
        info = Info(struct_size=ctypes.sizeof(Info))
        _check(lib().tmac_model_info(self._live(), ctypes.byref(info)), self._handle)
        d = {name: getattr(info, name) for name, _ in Info._fields_ if name != "struct_size"}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in d.items()}

    def close(self):
        if self._handle:
            self._free(self._handle)
            self._handle = None

    def _live(self):
        if not self._handle:
            raise TmacError(TMAC_ERR_STATE, "the model is closed")
        return self._handle

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _params(kwargs):
    p = lib().tmac_params_default()
    for k, v in kwargs.items():
        if k in ("struct_size", "reserved0", "reserved1") or k not in dict(Params._fields_):
            raise TypeError(f"unknown tmac_params field {k!r}")
        setattr(p, k, v)
    return p
