"""The ctypes layer over libtmac: constants, structs and SIGNATURES (checked against
include/tmac.h by bindings/check_bindings.py), and finding the library: the copy inside this
package (a wheel), else $TMAC_LIB (a path), else target/release/ of the source tree this
package sits in, else the system loader (libtmac.so after `make install`).
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
TMAC_FLAG_KV_F16 = 64
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


class TmacError(RuntimeError):
    """A failed tmac call: `status` is the tmac_status code, the message tmac_last_error's."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_lib = None


def lib():
    """The loaded libtmac (loaded on first use, so importing this module never fails)."""
    global _lib
    if _lib is None:
        name = {"darwin": "libtmac.dylib", "win32": "tmac.dll"}.get(sys.platform, "libtmac.so")
        here = os.path.dirname(os.path.abspath(__file__))
        bundled = os.path.join(here, name)
        tree = os.path.join(here, "..", "..", "..", "target", "release", name)
        path = (bundled if os.path.exists(bundled) else os.environ.get("TMAC_LIB")
                or (tree if os.path.exists(tree) else name))
        so = ctypes.CDLL(path)
        for fn, (restype, argtypes) in SIGNATURES.items():
            getattr(so, fn).restype = restype
            getattr(so, fn).argtypes = argtypes
        if so.tmac_abi_version() != TMAC_ABI_VERSION:
            raise ImportError(f"{path} has ABI {so.tmac_abi_version()}, "
                              f"this binding needs {TMAC_ABI_VERSION}")
        _lib = so
    return _lib


def version() -> str:
    """The library's version, e.g. "0.1.0"."""
    return lib().tmac_version().decode()


def _check(status, handle):
    if status < 0:
        raise TmacError(status, lib().tmac_last_error(handle).decode(errors="replace"))
    return status
