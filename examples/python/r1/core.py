"""core: Model, Session, Sampler and GenOptions over libr1's handles, with deterministic release."""

from __future__ import annotations

import array
import ctypes
import dataclasses
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _ffi
from .errors import CANCELLED, DONE, OK, R1BadState, R1Error, check, error

# Flags and enums of r1.h.
TOKENIZE_ADD_BOS = 0x1
TOKENIZE_PARSE_SPECIAL = 0x2
TOKENIZE_REPLACE_INVALID = 0x4
DETOKENIZE_SKIP_SPECIAL = 0x1
CONVERT_NO_SHUFFLE = 0x1
ROLES: Dict[str, int] = {"system": 0, "user": 1, "assistant": 2}
KINDS: Dict[int, Optional[str]] = {-1: None, 0: "reasoning", 1: "answer"}
_ERR_BUFFER_TOO_SMALL = -8

Message = Dict[str, str]
Prompt = Union[str, Sequence[Message], Sequence[int], None]


def version() -> str:
    """The loaded library's version string, e.g. ``"1.1.0"``."""
    return _ffi.lib().r1_version_string().decode()


def version_number() -> int:
    """The loaded library's version as major*1000000 + minor*1000 + patch."""
    return int(_ffi.lib().r1_version_number())


class Backend(NamedTuple):
    """A compute backend built into the library, and whether it can run on this machine."""

    name: str
    available: bool


def backends() -> List[Backend]:
    """Every backend the library was built with (``cpu`` always), with its availability."""
    lib = _ffi.lib()
    out = []
    for i in range(lib.r1_backend_count()):
        name = lib.r1_backend_name(i)
        if name is None:
            raise error(-1)
        out.append(Backend(name.decode(), bool(lib.r1_backend_available(name))))
    return out


def _encode(text: str) -> bytes:
    return text.encode("utf-8")


def _ids_array(ids: Iterable[int]) -> Tuple[ctypes.Array, int]:
    values = list(ids)
    return (ctypes.c_int32 * max(len(values), 1))(*values), len(values)


def _grow_text(call: Callable[[Any, int, Any], int], first_cap: int = 256) -> bytes:
    """Runs a caller-buffer call (buf, cap, len_out), growing the buffer once if r1 asks."""
    length = ctypes.c_size_t(0)
    buf = ctypes.create_string_buffer(first_cap)
    st = call(buf, first_cap, ctypes.byref(length))
    if st == _ERR_BUFFER_TOO_SMALL:
        buf = ctypes.create_string_buffer(length.value + 1)
        st = call(buf, length.value + 1, ctypes.byref(length))
    check(st)
    return buf.raw[: length.value]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """r1_model_info as plain Python values (see r1.h for each field)."""

    architecture: int
    architecture_name: str
    n_layers: int
    n_mtp_layers: int
    hidden_size: int
    n_heads: int
    n_routed_experts: int
    n_experts_per_token: int
    n_shared_experts: int
    vocab_size: int
    n_tokenizer_ids: int
    max_position_embeddings: int
    bos_token_id: int
    eos_token_id: int
    file_bytes: int
    dense_bytes: int
    expert_bytes: int
    max_expert_bytes: int
    n_tensors: int
    n_expert_blobs: int
    expert_dtype: str


@dataclasses.dataclass(frozen=True)
class ExpertCacheStats:
    """r1_expert_cache_stats as plain Python values: counters of the model's expert store."""

    hits: int
    misses: int
    evictions: int
    bytes_read: int
    bytes_decompressed: int
    load_ns: int
    current_bytes: int
    peak_bytes: int
    budget_bytes: int

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0 before any request."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _from_struct(cls: type, s: ctypes.Structure) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(s, f.name)
        values[f.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else int(v)
    return cls(**values)


class _Handle:
    """Owns one C handle: close() destroys it once; __del__ is safe at interpreter shutdown
    because the destroy function is kept on the instance, not looked up in module globals."""

    _handle: Any = None
    _destroy: Optional[Callable[[Any], None]] = None

    def _own(self, handle: Any, destroy: Callable[[Any], None]) -> None:
        self._destroy = destroy
        self._handle = handle

    @property
    def closed(self) -> bool:
        """Whether close() has run (or construction failed)."""
        return not self._handle

    def _h(self) -> Any:
        if not self._handle:
            raise R1BadState(-11, f"{type(self).__name__} is closed", "R1_ERR_BAD_STATE")
        return self._handle

    def close(self) -> None:
        """Release the C object now. Idempotent; the object is unusable afterwards."""
        handle, self._handle = self._handle, None
        if handle and self._destroy is not None:
            self._destroy(handle)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer, even at interpreter shutdown
            pass


class Sampler(_Handle):
    """Token selection settings and random state (r1_sampler). One thread at a time.

    Defaults are DeepSeek-R1's: temperature 0.6, top-p 0.95. The same seed and logits give the
    same tokens on every run, platform and thread count. A generation borrows its sampler until
    it ends: do not close() a sampler that a running generation uses.
    """

    def __init__(
        self,
        seed: int = 0x5EED,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        penalty_last_n: int = 64,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        logit_bias: Optional[Dict[int, float]] = None,
    ) -> None:
        lib = _ffi.lib()
        h = _ffi.SamplerP()
        check(lib.r1_sampler_create(ctypes.byref(h), seed & 0xFFFFFFFFFFFFFFFF))
        self._own(h, lib.r1_sampler_destroy)
        self._lib = lib
        if temperature is not None:
            self.set_temperature(temperature)
        if top_p is not None:
            check(lib.r1_sampler_set_top_p(h, top_p))
        if top_k is not None:
            check(lib.r1_sampler_set_top_k(h, top_k))
        if min_p is not None:
            check(lib.r1_sampler_set_min_p(h, min_p))
        if repeat_penalty is not None or frequency_penalty or presence_penalty:
            self.set_penalties(
                penalty_last_n,
                1.0 if repeat_penalty is None else repeat_penalty,
                frequency_penalty,
                presence_penalty,
            )
        for token, bias in (logit_bias or {}).items():
            self.set_logit_bias(token, bias)

    def set_temperature(self, t: float) -> None:
        """0 means greedy."""
        check(self._lib.r1_sampler_set_temperature(self._h(), t))

    def set_top_k(self, k: int) -> None:
        """Keep the k most likely tokens; 0 turns top-k off."""
        check(self._lib.r1_sampler_set_top_k(self._h(), k))

    def set_top_p(self, p: float) -> None:
        """Nucleus sampling with mass p in (0, 1]."""
        check(self._lib.r1_sampler_set_top_p(self._h(), p))

    def set_min_p(self, p: float) -> None:
        """Drop tokens below p times the most likely one's probability."""
        check(self._lib.r1_sampler_set_min_p(self._h(), p))

    def set_penalties(
        self, last_n: int, repeat: float, frequency: float = 0.0, presence: float = 0.0
    ) -> None:
        """Repetition, frequency and presence penalties over the last *last_n* accepted ids."""
        check(self._lib.r1_sampler_set_penalties(self._h(), last_n, repeat, frequency, presence))

    def set_logit_bias(self, token: int, bias: float) -> None:
        """Add *bias* to *token*'s logit; ``float('-inf')`` bans it, 0 removes the bias."""
        check(self._lib.r1_sampler_set_logit_bias(self._h(), token, bias))

    def clear_logit_bias(self) -> None:
        """Remove every logit bias."""
        check(self._lib.r1_sampler_clear_logit_bias(self._h()))

    def reset(self) -> None:
        """Forget accepted ids and rewind the random draws to the seed."""
        check(self._lib.r1_sampler_reset(self._h()))

    def sample(self, logits: Any) -> int:
        """Choose a token from one row of logits (any buffer of float32, or a float sequence)."""
        try:
            view = memoryview(logits).cast("B").cast("f")
            row = (ctypes.c_float * len(view)).from_buffer_copy(view)
        except TypeError:
            values = list(logits)
            row = (ctypes.c_float * len(values))(*values)
        out = ctypes.c_int32()
        check(self._lib.r1_sampler_sample(self._h(), row, len(row), ctypes.byref(out)))
        return out.value

    def accept(self, token: int) -> None:
        """Record *token* in the penalty window (generation does this itself)."""
        check(self._lib.r1_sampler_accept(self._h(), token))


class GenOptions(_Handle):
    """Limits of one generation (r1_gen_opts): token limit, thinking budget, stop strings."""

    def __init__(
        self,
        max_tokens: Optional[int] = None,
        think_budget: Optional[int] = None,
        think_bridge: Optional[str] = None,
        stop: Iterable[str] = (),
    ) -> None:
        lib = _ffi.lib()
        h = _ffi.GenOptsP()
        check(lib.r1_gen_opts_create(ctypes.byref(h)))
        self._own(h, lib.r1_gen_opts_destroy)
        self._lib = lib
        if max_tokens is not None:
            check(lib.r1_gen_opts_set_max_tokens(h, max_tokens))
        if think_budget is not None:
            check(lib.r1_gen_opts_set_think_budget(h, think_budget))
        if think_bridge is not None:
            check(lib.r1_gen_opts_set_think_bridge(h, _encode(think_bridge)))
        if isinstance(stop, str):
            stop = [stop]
        for s in stop:
            check(lib.r1_gen_opts_add_stop(h, _encode(s)))

    def clear_stops(self) -> None:
        """Remove every stop string."""
        check(self._lib.r1_gen_opts_clear_stops(self._h()))


class Model(_Handle):
    """A loaded .r1m model (r1_model): shareable by any number of threads and sessions.

    Use as a context manager or call close(); sessions keep their own reference, so closing
    the model while sessions live only defers the free.
    """

    def __init__(
        self,
        path: str,
        threads: int = 0,
        backend: Optional[str] = None,
        expert_cache_bytes: int = 0,
        verify_weights: bool = False,
        device_expert_cache_bytes: int = 0,
        device: Optional[str] = None,
    ) -> None:
        lib = _ffi.lib()
        self._lib = lib
        opts = _ffi.ModelOptsP()
        check(lib.r1_model_opts_create(ctypes.byref(opts)))
        try:
            check(lib.r1_model_opts_set_threads(opts, threads))
            check(lib.r1_model_opts_set_expert_cache_bytes(opts, expert_cache_bytes))
            check(
                lib.r1_model_opts_set_device_expert_cache_bytes(opts, device_expert_cache_bytes)
            )
            check(lib.r1_model_opts_set_verify_weights(opts, 1 if verify_weights else 0))
            if backend is not None:
                check(lib.r1_model_opts_set_backend(opts, _encode(backend)))
            if device is not None:  # an index ("1") or part of the device's name
                check(lib.r1_model_opts_set_device(opts, _encode(device)))
            h = _ffi.ModelP()
            check(lib.r1_model_load(ctypes.byref(h), _encode(str(path)), None, opts))
        finally:
            lib.r1_model_opts_destroy(opts)
        self._own(h, lib.r1_model_destroy)
        self.path = str(path)

    def __repr__(self) -> str:
        return f"<r1.Model {self.path!r}{' closed' if self.closed else ''}>"

    # Description -------------------------------------------------------------------------

    def info(self) -> ModelInfo:
        """Architecture, sizes and special tokens of the model."""
        s = _ffi.ModelInfoC()
        s.struct_size = ctypes.sizeof(s)
        check(self._lib.r1_model_get_info(self._h(), ctypes.byref(s)))
        return _from_struct(ModelInfo, s)

    def expert_cache_stats(self) -> ExpertCacheStats:
        """A consistent snapshot of the expert store's counters."""
        s = _ffi.ExpertCacheStatsC()
        s.struct_size = ctypes.sizeof(s)
        check(self._lib.r1_model_get_expert_cache_stats(self._h(), ctypes.byref(s)))
        return _from_struct(ExpertCacheStats, s)

    def device_expert_cache_stats(self) -> ExpertCacheStats:
        """The device expert cache's counters (GPU backends; zeros on the CPU backend):
        misses are uploads to the device, bytes_read the bytes uploaded."""
        s = _ffi.ExpertCacheStatsC()
        s.struct_size = ctypes.sizeof(s)
        check(self._lib.r1_model_get_device_expert_cache_stats(self._h(), ctypes.byref(s)))
        return _from_struct(ExpertCacheStats, s)

    # Tokenizer ---------------------------------------------------------------------------

    def tokenize(
        self,
        text: Union[str, bytes],
        bos: bool = False,
        special: bool = False,
        replace_invalid: bool = False,
    ) -> List[int]:
        """Encode *text* (str or UTF-8 bytes) into token ids."""
        data = text if isinstance(text, bytes) else _encode(text)
        flags = (
            (TOKENIZE_ADD_BOS if bos else 0)
            | (TOKENIZE_PARSE_SPECIAL if special else 0)
            | (TOKENIZE_REPLACE_INVALID if replace_invalid else 0)
        )
        cap = len(data) + 2
        ids = (ctypes.c_int32 * cap)()
        n = ctypes.c_size_t(0)
        h = self._h()
        st = self._lib.r1_tokenize(h, data, len(data), flags, ids, cap, ctypes.byref(n))
        if st == _ERR_BUFFER_TOO_SMALL:
            cap = n.value
            ids = (ctypes.c_int32 * cap)()
            st = self._lib.r1_tokenize(h, data, len(data), flags, ids, cap, ctypes.byref(n))
        check(st)
        return list(ids[: n.value])

    def detokenize_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """Decode ids into raw bytes (ids that split a character give partial UTF-8)."""
        arr, n = _ids_array(ids)
        flags = DETOKENIZE_SKIP_SPECIAL if skip_special else 0
        h = self._h()
        return _grow_text(lambda b, c, l: self._lib.r1_detokenize(h, arr, n, flags, b, c, l))

    def detokenize(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Decode ids into text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.detokenize_bytes(ids, skip_special).decode("utf-8", "replace")

    @property
    def n_tokens(self) -> int:
        """Ids the tokenizer defines (may differ from ``info().vocab_size``)."""
        return int(self._lib.r1_token_count(self._h()))

    @property
    def bos(self) -> int:
        """Beginning-of-sentence id, or -1."""
        return int(self._lib.r1_token_bos(self._h()))

    @property
    def eos(self) -> int:
        """End-of-sentence id (ends generation), or -1."""
        return int(self._lib.r1_token_eos(self._h()))

    def token_id(self, piece: str) -> int:
        """The id of the token whose text is exactly *piece* (e.g. ``"</think>"``)."""
        out = ctypes.c_int32()
        check(self._lib.r1_token_find(self._h(), _encode(piece), ctypes.byref(out)))
        return out.value

    # Chat --------------------------------------------------------------------------------

    def chat_render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Render ``[{'role': 'user', 'content': ...}, ...]`` in the model's chat format."""
        n = len(messages)
        try:
            roles = (ctypes.c_int32 * max(n, 1))(*[ROLES[m["role"]] for m in messages])
        except KeyError as e:
            raise ValueError(f"unknown role {e.args[0]!r}; use one of {sorted(ROLES)}") from None
        contents = (ctypes.c_char_p * max(n, 1))(*[_encode(m["content"]) for m in messages])
        h, gen = self._h(), 1 if add_generation_prompt else 0
        text = _grow_text(
            lambda b, c, l: self._lib.r1_chat_render(h, roles, contents, n, gen, b, c, l), 1024
        )
        return text.decode("utf-8")

    def session(self, **kwargs: Any) -> "Session":
        """A new Session on this model (keyword arguments as for Session)."""
        return Session(self, **kwargs)

    def chat(
        self, messages: Union[str, Sequence[Message]], stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """Answer a conversation in a fresh session: the answer text, or with stream=True an
        iterator of answer pieces. Keyword arguments as for Session.generate (plus
        ``context``)."""
        session = Session(self, context=kwargs.pop("context", 4096))
        pieces = (t for t, kind in session.generate(messages, **kwargs) if kind == "answer")
        if stream:
            return _closing(pieces, session)
        try:
            return "".join(pieces)
        finally:
            session.close()


def _closing(it: Iterator[str], session: "Session") -> Iterator[str]:
    try:
        yield from it
    finally:
        session.close()


class Step(NamedTuple):
    """One r1_session_step(): the token id (-1 for prompt progress), its text and its kind
    ("reasoning", "answer", or None for prompt progress)."""

    id: int
    text: str
    kind: Optional[str]


class Session(_Handle):
    """One conversation (r1_session): its KV cache, position and last logits.

    A session must be used by one thread at a time; cancel() may be called from any thread.
    It keeps a reference to its Model (and libr1 keeps one on the C model), so models and
    sessions may be closed or collected in any order.
    """

    def __init__(self, model: Model, context: int = 4096, logits_all: bool = False) -> None:
        lib = _ffi.lib()
        self._lib = lib
        self.model = model
        opts = _ffi.SessionOptsP()
        check(lib.r1_session_opts_create(ctypes.byref(opts)))
        try:
            check(lib.r1_session_opts_set_context(opts, context))
            check(lib.r1_session_opts_set_logits_all(opts, 1 if logits_all else 0))
            h = _ffi.SessionP()
            check(lib.r1_session_create(ctypes.byref(h), model._h(), opts))
        finally:
            lib.r1_session_opts_destroy(opts)
        self._own(h, lib.r1_session_destroy)
        self.context = context
        self._cancel_requested = False
        self._generating = False
        #: How the last generation ended: "done", "cancelled", or None before any.
        self.last_status: Optional[str] = None

    def close(self) -> None:
        """Destroy the session (and its reference on the model). Idempotent."""
        self._generating = False
        super().close()

    # Evaluation --------------------------------------------------------------------------

    def eval(self, ids: Iterable[int]) -> None:
        """Evaluate token ids at the current position (prefill or decode)."""
        arr, n = _ids_array(ids)
        check(self._lib.r1_session_eval(self._h(), arr, n))

    def logits(self, row: int = -1) -> "array.array[float]":
        """A float32 copy of one row of the last evaluation's logits (-1: the last position).

        The result supports the buffer protocol: ``numpy.frombuffer(s.logits(), numpy.float32)``.
        """
        ptr = ctypes.POINTER(ctypes.c_float)()
        n = ctypes.c_size_t(0)
        check(self._lib.r1_session_logits(self._h(), row, ctypes.byref(ptr), ctypes.byref(n)))
        out = array.array("f", bytes(n.value * 4))
        ctypes.memmove(out.buffer_info()[0], ptr, n.value * 4)
        return out

    @property
    def position(self) -> int:
        """Positions in the session's cache."""
        return int(self._lib.r1_session_position(self._h()))

    def truncate(self, n_keep: int) -> None:
        """Keep the first n_keep positions (reuse a shared prompt prefix)."""
        check(self._lib.r1_session_truncate(self._h(), n_keep))

    def reset(self) -> None:
        """Empty the cache (position 0)."""
        check(self._lib.r1_session_reset(self._h()))

    # Generation --------------------------------------------------------------------------

    def feed(self, ids: Iterable[int]) -> None:
        """Queue prompt ids for the next generation."""
        arr, n = _ids_array(ids)
        check(self._lib.r1_session_feed(self._h(), arr, n))

    def feed_text(self, text: str, special: bool = True) -> None:
        """Tokenize and queue text (special tokens parsed by default, as chat prompts need)."""
        data = _encode(text)
        flags = TOKENIZE_PARSE_SPECIAL if special else 0
        check(self._lib.r1_session_feed_text(self._h(), data, len(data), flags))

    def cancel(self) -> None:
        """Ask the running generation to stop; safe from any thread. The generator then ends
        (last_status "cancelled") after the step in progress."""
        self._cancel_requested = True
        h = self._handle
        if h:
            check(self._lib.r1_session_cancel(h))

    def counts(self) -> Tuple[int, int, int]:
        """(prompt, reasoning, answer) token counts of the current or last generation."""
        p, r, a = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
        check(
            self._lib.r1_session_counts(
                self._h(), ctypes.byref(p), ctypes.byref(r), ctypes.byref(a)
            )
        )
        return p.value, r.value, a.value

    def _queue_prompt(self, prompt: Prompt, raw: bool, reset: bool) -> None:
        if prompt is None:
            return
        if reset:
            self.reset()
        if isinstance(prompt, str):
            if raw:
                self.feed_text(prompt)
                return
            prompt = [{"role": "user", "content": prompt}]
        items = list(prompt)
        if items and isinstance(items[0], dict):
            self.feed_text(self.model.chat_render(items))
        else:
            self.feed(items)

    def steps(
        self,
        prompt: Prompt = None,
        *,
        max_tokens: Optional[int] = None,
        think_budget: Optional[int] = None,
        think_bridge: Optional[str] = None,
        stop: Iterable[str] = (),
        seed: int = 0x5EED,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        logit_bias: Optional[Dict[int, float]] = None,
        sampler: Optional[Sampler] = None,
        options: Optional[GenOptions] = None,
        raw: bool = False,
        reset: bool = True,
    ) -> Iterator[Step]:
        """Generate, yielding every r1_session_step() as a Step (ids included).

        *prompt* is a user message (str), a list of ``{'role', 'content'}`` messages (rendered
        with the chat format), a list of token ids, raw text with ``raw=True``, or None to use
        what feed()/feed_text() queued. With ``reset=True`` (the default) a given prompt starts
        from an empty cache. Sampling keywords build a Sampler unless *sampler* is given; limit
        keywords build GenOptions unless *options* is given. Closing the iterator early (break)
        cancels the generation and leaves the session usable.
        """
        self._h()
        if self._generating:
            raise R1BadState(-11, "a generation is already running", "R1_ERR_BAD_STATE")
        own: List[_Handle] = []
        if sampler is None:
            sampler = Sampler(seed, temperature, top_p, top_k, min_p, repeat_penalty,
                              logit_bias=logit_bias)
            own.append(sampler)
        if options is None:
            options = GenOptions(max_tokens, think_budget, think_bridge, stop)
            own.append(options)
        # A cancel() from now on applies to this generation, even before its first step.
        self._cancel_requested = False
        return self._generation(prompt, raw, reset, sampler, options, own)

    def _generation(
        self,
        prompt: Prompt,
        raw: bool,
        reset: bool,
        sampler: Sampler,
        options: GenOptions,
        own: List[_Handle],
    ) -> Iterator[Step]:
        try:
            h = self._h()
            self._queue_prompt(prompt, raw, reset)
            check(self._lib.r1_session_begin(h, sampler._h(), options._h()))
            self._generating = True
            if self._cancel_requested:  # asked before begin cleared libr1's flag
                self._lib.r1_session_cancel(h)
            yield from self._run(h)
        finally:
            live = self._handle  # None when the session was closed under the iterator
            if self._generating and live:  # closed early: end the generation cleanly
                self._lib.r1_session_cancel(live)
                while self._lib.r1_session_step(live, None, None) == OK:
                    pass
                self.last_status = "cancelled"
            self._generating = False
            for obj in own:
                obj.close()

    def _run(self, h: Any) -> Iterator[Step]:
        token, kind = ctypes.c_int32(), ctypes.c_int32()
        text, length = ctypes.c_void_p(), ctypes.c_size_t()
        lib = self._lib
        while True:
            st = lib.r1_session_step(h, ctypes.byref(token), ctypes.byref(kind))
            if st < 0:
                self._generating = False
                raise error(st)
            if st == CANCELLED:
                self._generating = False
                self.last_status = "cancelled"
                return
            lib.r1_session_piece(h, ctypes.byref(text), ctypes.byref(length))
            n = length.value
            piece = ctypes.string_at(text.value, n).decode("utf-8", "replace") if n else ""
            if st == DONE:
                self._generating = False
                self.last_status = "done"
                if piece:
                    yield Step(-1, piece, KINDS.get(kind.value))
                return
            yield Step(token.value, piece, KINDS.get(kind.value))

    def generate(self, prompt: Prompt = None, **kwargs: Any) -> Iterator[Tuple[str, str]]:
        """Generate, yielding ``(text, kind)`` for each non-empty piece, kind being
        ``"reasoning"`` or ``"answer"``. Arguments as for steps(). cancel() from another thread
        ends the iteration early (last_status becomes "cancelled")."""
        for step in self.steps(prompt, **kwargs):
            if step.text:
                yield step.text, step.kind or "answer"

    def generate_callback(
        self,
        on_piece: Callable[[str, str], Optional[bool]],
        sampler: Sampler,
        options: Optional[GenOptions] = None,
    ) -> str:
        """r1_session_generate() on the queued prompt: calls ``on_piece(text, kind)`` for each
        piece; a true return value cancels. Returns "done" or "cancelled"; an exception raised
        by on_piece cancels and is re-raised."""
        raised: List[BaseException] = []

        def trampoline(piece: int, length: int, kind: int, _user: Any) -> int:
            try:
                text = ctypes.string_at(piece, length).decode()
                return 1 if on_piece(text, KINDS.get(kind) or "answer") else 0
            except BaseException as e:  # noqa: B902 - carried across the C frame
                raised.append(e)
                return 1

        fn = _ffi.PIECE_FN(trampoline)
        st = self._lib.r1_session_generate(
            self._h(), sampler._h(), options._h() if options else None, fn, None
        )
        if raised:
            raise raised[0]
        check(st)
        self.last_status = "done" if st == DONE else "cancelled"
        return self.last_status


def convert(
    hf_dir: str,
    out_path: str,
    quant: Optional[str] = None,
    threads: int = 1,
    no_shuffle: bool = False,
    progress: Optional[Callable[[int, int], Optional[bool]]] = None,
) -> None:
    """Convert a Hugging Face checkpoint into an .r1m file (r1_convert). *progress(done,
    total)* returning True cancels (R1Error is not raised then; the output is not written)."""
    lib = _ffi.lib()
    raised: List[BaseException] = []

    def trampoline(done: int, total: int, _user: Any) -> int:
        try:
            return 1 if progress is not None and progress(done, total) else 0
        except BaseException as e:  # noqa: B902
            raised.append(e)
            return 1

    fn = _ffi.PROGRESS_FN(trampoline) if progress else _ffi.PROGRESS_FN()
    st = lib.r1_convert(
        _encode(str(hf_dir)),
        _encode(str(out_path)),
        _encode(quant) if quant else None,
        threads,
        CONVERT_NO_SHUFFLE if no_shuffle else 0,
        fn,
        None,
    )
    if raised:
        raise raised[0]
    check(st)


__all__ = [
    "Backend",
    "ExpertCacheStats",
    "GenOptions",
    "Model",
    "ModelInfo",
    "R1Error",
    "Sampler",
    "Session",
    "Step",
    "backends",
    "convert",
    "version",
    "version_number",
]
