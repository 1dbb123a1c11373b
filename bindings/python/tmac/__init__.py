"""tmac for Python: low-bit LLM inference on small CPUs (T-MAC lookup-table kernels), through
ctypes over libtmac; no compiled extension.

    import tmac
    llm = tmac.Model("SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=1024)
    out = llm("The capital of France is", max_tokens=16)         # a completion, as a dict
    print(out["choices"][0]["text"])
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=32)
    print(reply["choices"][0]["message"]["content"])
    for chunk in llm("Once upon a time", max_tokens=32, stream=True):
        print(chunk["choices"][0]["text"], end="", flush=True)
    chat = llm.chat(system="Be brief.")                           # a conversation that is kept
    print(chat.send("Hello!"))

The dicts are the ones llama-cpp-python (and OpenAI's API) return. Each completion is
independent: it starts from an empty context. Failed calls raise TmacError (a RuntimeError)
carrying tmac_last_error()'s message; bad arguments raise ValueError or TypeError. A Model (and
a Chat) may be used from several threads: calls on one handle take turns.
"""

import ctypes
import threading
import time
import uuid
from ctypes import c_char_p, c_int32, c_size_t, c_void_p
from typing import Dict, Iterator, List, Optional, Sequence, Union

from ._lib import (  # noqa: F401  (re-exported)
    Info,
    Params,
    STOP_REASONS,
    TMAC_DONE,
    TMAC_ERR_BUFFER_TOO_SMALL,
    TMAC_ERR_STATE,
    TMAC_FLAG_EXACT_TABLES,
    TMAC_FLAG_F32,
    TMAC_FLAG_INT8_TABLES,
    TMAC_FLAG_KV_F16,
    TMAC_FLAG_PARSE_SPECIAL,
    TMAC_FLAG_READ_ENV,
    TMAC_FLAG_SLIDING_WINDOW,
    TMAC_TOKENIZE_ADD_SPECIAL,
    TMAC_TOKENIZE_PARSE_SPECIAL,
    TmacError,
    _check,
    lib,
    version,
)

__version__ = "0.1.0"

Message = Dict[str, str]

# tmac_params fields a caller may set, with the check each value must pass
_U32 = (0, 2**32 - 1)
_PARAMS = {
    "n_ctx": ("int", (0, 1 << 20)),
    "temperature": ("float", (0.0, float("inf"))),
    "top_p": ("float", (0.0, 1.0)),
    "top_k": ("int", _U32),
    "min_p": ("float", (0.0, 1.0)),
    "repeat_penalty": ("float", (0.0, float("inf"))),
    "seed": ("int", (0, 2**64 - 1)),
    "max_tokens": ("int", _U32),
    "flags": ("int", _U32),
    "memory_budget_mib": ("int", _U32),
}

# what each stop reason is called in a completion's finish_reason
_FINISH = {"end_of_text": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "context_full": "length", "aborted": "abort", None: None}


def _params(values: Dict[str, object]) -> Params:
    p = lib().tmac_params_default()
    for k, v in values.items():
        if k not in _PARAMS:
            raise TypeError(f"unknown tmac_params field {k!r}")
        kind, (lo, hi) = _PARAMS[k]
        if kind == "int" and (not isinstance(v, int) or isinstance(v, bool)):
            raise TypeError(f"{k} must be an int, got {v!r}")
        if kind == "float" and not isinstance(v, (int, float)):
            raise TypeError(f"{k} must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{k} = {v!r} is out of range [{lo}, {hi}]")
        setattr(p, k, v)
    return p


class _Handle:
    """One tmac handle and the lock that makes its calls take turns."""

    def __init__(self, handle: c_void_p, max_tokens: int):
        self.handle = handle
        self.lock = threading.RLock()
        self.max_tokens = max_tokens
        self._free = lib().tmac_free  # kept: module globals may be gone when __del__ runs

    def live(self) -> c_void_p:
        if not self.handle:
            raise TmacError(TMAC_ERR_STATE, "the model is closed")
        return self.handle

    def check(self, status: int) -> int:
        return _check(status, self.handle)

    def context_used(self) -> int:
        n = c_size_t()
        self.check(lib().tmac_context_used(self.live(), ctypes.byref(n)))
        return n.value

    def set_stop_and_limit(self, stop: Optional[Sequence[str]], max_tokens: Optional[int]):
        stops = [s.encode() for s in (stop or [])]
        arr = (c_char_p * max(1, len(stops)))(*stops)
        self.check(lib().tmac_set_stop(self.live(), arr, len(stops)))
        limit = self.max_tokens if max_tokens is None else max_tokens
        if not 0 <= limit < 2**32:
            raise ValueError(f"max_tokens = {limit} is out of range")
        self.check(lib().tmac_set_max_tokens(self.live(), limit))

    def pieces(self) -> Iterator[str]:
        """The reply, piece by piece, until the library says it is done."""
        # Big enough for any token's text, so each TMAC_OK piece is exactly one token.
        buf = ctypes.create_string_buffer(1024)
        n = c_size_t()
        while True:
            s = lib().tmac_next_token(self.live(), buf, len(buf), ctypes.byref(n))
            if s == TMAC_ERR_BUFFER_TOO_SMALL:
                buf = ctypes.create_string_buffer(n.value)
                continue
            if self.check(s) == TMAC_DONE:
                return
            yield buf.raw[: n.value].decode()

    def stop_reason(self) -> Optional[str]:
        return STOP_REASONS.get(lib().tmac_stop_reason(self.live()))

    def close(self):
        if self.handle:
            self._free(self.handle)
            self.handle = None

    __del__ = close


def _prompt(h: _Handle, text: str, role: Optional[str] = None):
    data = text.encode()
    if role is None:
        h.check(lib().tmac_prompt(h.live(), data, len(data)))
    else:
        h.check(lib().tmac_prompt_chat(h.live(), role.encode(), data, len(data)))


def _completion(kind: str, model: str, text: str, reason: Optional[str], prompt_tokens: int,
                completion_tokens: int) -> dict:
    choice = {"index": 0, "logprobs": None, "finish_reason": _FINISH[reason]}
    if kind == "chat":
        choice.pop("logprobs")
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _chunk(kind: str, model: str, cid: str, created: int, delta: Optional[dict],
           text: Optional[str], finish: Optional[str]) -> dict:
    choice: dict = {"index": 0, "finish_reason": finish}
    if kind == "chat":
        choice["delta"] = delta or {}
    else:
        choice["text"] = text or ""
        choice["logprobs"] = None
    return {"id": cid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [choice]}


class Model:
    """A loaded model. `Model(path, n_ctx=..., seed=..., temperature=..., ...)`: every argument
    after `path` is a keyword, a tmac_params field (n_ctx, temperature, top_p, top_k, min_p,
    repeat_penalty, seed, max_tokens, flags, memory_budget_mib), checked here; the defaults
    are tmac_params_default()'s: greedy sampling, the model's context (at most 2048)."""

    def __init__(self, path: str, **params):
        import os

        self.path = os.fspath(path)
        out = c_void_p()
        p = _params(params)
        _check(lib().tmac_load(os.fsencode(path), ctypes.byref(p), ctypes.byref(out)), None)
        self._params = params
        self._h = _Handle(out, params.get("max_tokens", 0))
        self._lock = self._h.lock

    # completions ----------------------------------------------------------------------------

    def __call__(self, prompt: str, *, max_tokens: Optional[int] = 128,
                 stop: Optional[Sequence[str]] = None, temperature: Optional[float] = None,
                 top_p: Optional[float] = None, top_k: Optional[int] = None,
                 seed: Optional[int] = None, stream: bool = False) -> Union[dict, Iterator[dict]]:
        """A completion of `prompt`, from an empty context: llama-cpp-python's
        create_completion. `max_tokens` None or 0: until end of text or context. `stop`:
        strings that end the text (not included). With stream=True, an iterator of chunks."""
        return self.create_completion(prompt, max_tokens=max_tokens, stop=stop,
                                      temperature=temperature, top_p=top_p, top_k=top_k,
                                      seed=seed, stream=stream)

    def create_completion(self, prompt: str, *, max_tokens: Optional[int] = 128,
                          stop: Optional[Sequence[str]] = None,
                          temperature: Optional[float] = None, top_p: Optional[float] = None,
                          top_k: Optional[int] = None, seed: Optional[int] = None,
                          stream: bool = False) -> Union[dict, Iterator[dict]]:
        """See __call__."""
        run = self._run("text", [(None, prompt)], max_tokens, stop,
                        dict(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed))
        return run if stream else _collect("text", self.path, run)

    def create_chat_completion(self, messages: List[Message], *,
                               max_tokens: Optional[int] = None,
                               stop: Optional[Sequence[str]] = None,
                               temperature: Optional[float] = None,
                               top_p: Optional[float] = None, top_k: Optional[int] = None,
                               seed: Optional[int] = None,
                               stream: bool = False) -> Union[dict, Iterator[dict]]:
        """The assistant's reply to `messages` ([{"role": "system"|"user"|"assistant",
        "content": ...}, ...]), with the model's chat template, from an empty context:
        llama-cpp-python's create_chat_completion. With stream=True, an iterator of
        chat.completion.chunk dicts (the first delta carries the role)."""
        turns = []
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"a message is a dict with role and content, got {m!r}")
            turns.append((m["role"], m["content"]))
        if not turns or turns[-1][0] == "system":
            raise ValueError("the last message must be a user (or assistant) message")
        run = self._run("chat", turns, max_tokens, stop,
                        dict(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed))
        return run if stream else _collect("chat", self.path, run)

    def _run(self, kind, turns, max_tokens, stop, sampling) -> Iterator[dict]:
        """The chunks of one completion on this model's own handle, from an empty context.
        The handle is held (locked) from the first chunk to the last."""
        with self._lock:
            h = self._h
            lib().tmac_reset(h.live())
            self._sample(h, sampling)
            h.set_stop_and_limit(stop, max_tokens or 0)
            for role, content in turns:
                _prompt(h, content, role)
            prompt_tokens = h.context_used()
            cid = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
            created = int(time.time())
            if kind == "chat":
                yield _chunk(kind, self.path, cid, created, {"role": "assistant"}, None, None)
            for piece in h.pieces():
                delta = {"content": piece}
                yield _chunk(kind, self.path, cid, created, delta, piece, None)
            reason = h.stop_reason()
            used = h.context_used() - prompt_tokens
            final = _chunk(kind, self.path, cid, created, {}, "", _FINISH[reason])
            final["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                              "total_tokens": prompt_tokens + used}
            yield final
            # the next completion starts afresh; put the load-time sampling back
            self._sample(h, {k: self._params.get(k) for k in sampling})

    def _sample(self, h: _Handle, sampling: Dict[str, Optional[float]]):
        d = lib().tmac_params_default()
        for key, fn in (("temperature", lib().tmac_set_temperature),
                        ("top_k", lib().tmac_set_top_k), ("top_p", lib().tmac_set_top_p),
                        ("seed", lib().tmac_set_seed)):
            v = sampling.get(key)
            v = getattr(d, key) if v is None else _checked(key, v)
            h.check(fn(h.live(), v))

    # conversations ---------------------------------------------------------------------------

    def chat(self, system: Optional[str] = None, **params) -> "Chat":
        """A conversation of its own (a handle sharing this model's weights), kept from one
        message to the next. `params`: tmac_params fields for it (default: this model's)."""
        return Chat(self, system, {**self._params, **params})

    def generate(self, prompt: str, max_tokens: Optional[int] = None, chat: bool = False,
                 role: str = "user", stop: Optional[Sequence[str]] = None) -> Iterator[str]:
        """The low-level stream on this model's own conversation, which goes on from call to
        call (reset() forgets it): feed `prompt` (as a chat message of `role` if chat) and
        yield the reply piece by piece. A system message yields nothing. Prefer __call__,
        create_chat_completion or chat() for independent completions and conversations."""
        with self._lock:
            h = self._h
            h.set_stop_and_limit(stop, max_tokens)
            _prompt(h, prompt, role if chat else None)
            if chat and role == "system":
                return
            yield from h.pieces()

    def reset(self):
        """Forget generate()'s conversation; keep the model and settings."""
        with self._lock:
            self._h.check(lib().tmac_reset(self._h.live()))

    # tokens and facts --------------------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], add_special: bool = False,
                 parse_special: bool = False) -> List[int]:
        """Token ids of `text` (BOS/EOS as the model asks with add_special; control-token text
        such as "<|im_end|>" becomes the control token only with parse_special)."""
        data = text.encode() if isinstance(text, str) else text
        flags = (TMAC_TOKENIZE_ADD_SPECIAL if add_special else 0) | \
            (TMAC_TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        n = c_size_t()
        cap = len(data) + 8
        with self._lock:
            while True:
                ids = (c_int32 * cap)()
                s = lib().tmac_tokenize(self._h.live(), data, len(data), flags, ids, cap,
                                        ctypes.byref(n))
                if s != TMAC_ERR_BUFFER_TOO_SMALL:
                    self._h.check(s)
                    return list(ids[: n.value])
                cap = n.value

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The bytes of token ids (part of a character is not valid UTF-8 on its own)."""
        arr = (c_int32 * max(1, len(tokens)))(*tokens)
        n = c_size_t()
        cap = 64 + 16 * len(tokens)
        with self._lock:
            while True:
                buf = ctypes.create_string_buffer(cap)
                s = lib().tmac_detokenize(self._h.live(), arr, len(tokens), buf, cap,
                                          ctypes.byref(n))
                if s != TMAC_ERR_BUFFER_TOO_SMALL:
                    self._h.check(s)
                    return buf.raw[: n.value]
                cap = n.value

    def stop_reason(self) -> Optional[str]:
        """Why generate()'s last reply ended: "end_of_text", "max_tokens", "context_full",
        "stop_sequence", "aborted", or None."""
        with self._lock:
            return self._h.stop_reason()

    def set_sampling(self, temperature: Optional[float] = None, top_k: Optional[int] = None,
                     top_p: Optional[float] = None, seed: Optional[int] = None):
        """Change generate()'s sampling (None: leave as is)."""
        with self._lock:
            for value, key, fn in ((temperature, "temperature", lib().tmac_set_temperature),
                                   (top_k, "top_k", lib().tmac_set_top_k),
                                   (top_p, "top_p", lib().tmac_set_top_p),
                                   (seed, "seed", lib().tmac_set_seed)):
                if value is not None:
                    self._h.check(fn(self._h.live(), _checked(key, value)))

    def info(self) -> Dict[str, object]:
        """The model's shapes as a dict (tmac_model_info)."""
        info = Info(struct_size=ctypes.sizeof(Info))
        with self._lock:
            self._h.check(lib().tmac_model_info(self._h.live(), ctypes.byref(info)))
        d = {name: getattr(info, name) for name, _ in Info._fields_ if name != "struct_size"}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in d.items()}

    def close(self):
        """Free the model (also done when it is garbage-collected)."""
        self._h.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc):
        self.close()


def _checked(key: str, v):
    _params({key: v})  # raises on a bad value
    return v


def _collect(kind: str, model: str, chunks: Iterator[dict]) -> dict:
    """A whole completion from its chunks."""
    text, reason, usage = [], None, {}
    for c in chunks:
        ch = c["choices"][0]
        text.append(ch.get("text") or ch.get("delta", {}).get("content") or "")
        reason = ch["finish_reason"] or reason
        usage = c.get("usage", usage)
    out = _completion(kind, model, "".join(text), None, usage.get("prompt_tokens", 0),
                      usage.get("completion_tokens", 0))
    out["choices"][0]["finish_reason"] = reason
    return out


class Chat:
    """A conversation kept from one message to the next, on its own handle (the weights are
    shared with the Model). `send` returns the reply (or streams it)."""

    def __init__(self, model: Model, system: Optional[str], params: Dict[str, object]):
        out = c_void_p()
        p = _params(params)
        with model._lock:
            _check(lib().tmac_new_session(model._h.live(), ctypes.byref(p), ctypes.byref(out)),
                   model._h.handle)
        self._h = _Handle(out, params.get("max_tokens", 0))
        self.system = system
        self.messages: List[Message] = []
        if system:
            self._system()

    def _system(self):
        _prompt(self._h, self.system, "system")
        self.messages.append({"role": "system", "content": self.system})

    def send(self, content: str, *, max_tokens: Optional[int] = None,
             stop: Optional[Sequence[str]] = None, stream: bool = False
             ) -> Union[str, Iterator[str]]:
        """Add a user message; the assistant's reply as a string (stream=True: its pieces)."""
        pieces = self._send(content, max_tokens, stop)
        return pieces if stream else "".join(pieces)

    def _send(self, content, max_tokens, stop) -> Iterator[str]:
        with self._h.lock:
            self._h.set_stop_and_limit(stop, max_tokens)
            _prompt(self._h, content, "user")
            self.messages.append({"role": "user", "content": content})
            reply = []
            for piece in self._h.pieces():
                reply.append(piece)
                yield piece
            self.messages.append({"role": "assistant", "content": "".join(reply)})

    def stop_reason(self) -> Optional[str]:
        """Why the last reply ended (see Model.stop_reason)."""
        with self._h.lock:
            return self._h.stop_reason()

    def reset(self):
        """Forget the conversation (the system message stays)."""
        with self._h.lock:
            self._h.check(lib().tmac_reset(self._h.live()))
            self.messages = []
            if self.system:
                self._system()

    def close(self):
        self._h.close()

    def __enter__(self) -> "Chat":
        return self

    def __exit__(self, *exc):
        self.close()
