"""core: Model, Session, Sampler and GenOptions over libr1's handles, with deterministic release.

Every C handle is guarded (see _Handle): a call on a closed or busy object raises R1BadState
instead of reaching freed memory or racing another thread, and every number and string is
checked against its C type before ctypes could silently truncate it.
"""

from __future__ import annotations

import array
import ctypes
import dataclasses
import math
import operator
import os
import threading
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
from .errors import CANCELLED, DONE, OK, R1BadState, R1Error, R1InvalidArgument, check, error

# Flags and enums of r1.h.
TOKENIZE_ADD_BOS = 0x1
TOKENIZE_PARSE_SPECIAL = 0x2
TOKENIZE_REPLACE_INVALID = 0x4
DETOKENIZE_SKIP_SPECIAL = 0x1
CONVERT_NO_SHUFFLE = 0x1
ROLES: Dict[str, int] = {"system": 0, "user": 1, "assistant": 2}
KINDS: Dict[int, Optional[str]] = {-1: None, 0: "reasoning", 1: "answer"}
#: Session(overflow=...) names of the R1_OVERFLOW_* policies.
OVERFLOW: Dict[str, int] = {"fail": 0, "shift": 1}
_ERR_BUFFER_TOO_SMALL = -8
_ERR_BAD_STATE = -11

Message = Dict[str, str]
Prompt = Union[str, Sequence[Message], Sequence[int], None]
PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


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


def describe_backend(name: str) -> str:
    """The devices of backend *name* that can run here, for a person to read (one entry per
    device, "INDEX: NAME (KIND)"; KIND tells a GPU from a software renderer on the CPU).
    Raises R1NotFound for a backend not built, R1Unsupported for one that cannot run here."""
    data = _cstr(name, "backend name")
    lib = _ffi.lib()
    return _grow_text(lambda b, c, l: lib.r1_backend_describe(data, b, c, l)).decode(
        "utf-8", "replace"
    )


# Arguments: checked against their C types, because ctypes wraps integers modulo 2^bits and
# cuts strings at the first NUL without a word (threads=2**64 would become 0).

_INT32 = (-(1 << 31), (1 << 31) - 1, "int32_t")
_UINT64 = (0, (1 << 64) - 1, "uint64_t")
_FLT_MAX = 3.4028234663852886e38
#: array typecode of a 32-bit C int (token ids are int32_t).
_I32 = "i" if array.array("i").itemsize == 4 else "l"


def _int(value: Any, name: str, ctype: Tuple[int, int, str] = _INT32) -> int:
    """*value* as a Python int that fits the C integer type *ctype*, else TypeError/OverflowError."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    lo, hi, cname = ctype
    if not lo <= v <= hi:
        raise OverflowError(f"{name}={v} does not fit the C type {cname} ({lo} to {hi})")
    return v


def _float(value: Any, name: str) -> float:
    """*value* as a float that a C float holds (infinities and NaN pass: libr1 judges them)."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}") from None
    if math.isfinite(v) and abs(v) > _FLT_MAX:
        raise OverflowError(f"{name}={v!r} does not fit the C type float (at most {_FLT_MAX:.7g})")
    return v


def _flag(value: Any) -> int:
    return 1 if value else 0


def _cstr(text: Union[str, bytes], name: str) -> bytes:
    """A NUL-terminated UTF-8 argument: an embedded NUL would silently cut it, so it raises."""
    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, (bytes, bytearray)):
        data = bytes(text)
    else:
        raise TypeError(f"{name} must be a str, not {type(text).__name__}")
    if b"\0" in data:
        raise ValueError(f"{name} contains an embedded NUL character")
    return data


def _path(path: PathArg, name: str = "path") -> bytes:
    """A file name as the OS spells it: str, bytes or os.PathLike; an embedded NUL raises."""
    try:
        data = os.fsencode(path)
    except TypeError:
        raise TypeError(
            f"{name} must be str, bytes or os.PathLike, not {type(path).__name__}"
        ) from None
    if b"\0" in data:
        raise ValueError(f"{name} contains an embedded NUL character: {path!r}")
    return data


def _encode(text: str) -> bytes:
    return text.encode("utf-8")


def _ids_array(ids: Iterable[int], name: str = "token ids") -> Tuple[ctypes.Array, int]:
    """Token ids as an int32_t array and its length; an id outside int32_t raises."""
    values = ids if isinstance(ids, (list, tuple)) else list(ids)
    try:
        buf = array.array(_I32, values)
    except (OverflowError, TypeError):
        for i, v in enumerate(values):  # name the offending id
            _int(v, f"{name}[{i}]")
        raise
    if not buf:
        return (ctypes.c_int32 * 1)(), 0
    return (ctypes.c_int32 * len(buf)).from_buffer(buf), len(buf)


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


def _saved_bytes(call: Callable[[Any, int, Any], int]) -> bytes:
    """Runs a save-to-buffer call (buf, cap, size_out): asks the size, then fills a buffer."""
    size = ctypes.c_size_t(0)
    st = call(None, 0, ctypes.byref(size))
    if st != _ERR_BUFFER_TOO_SMALL:
        check(st)
    buf = bytearray(size.value)
    arr = (ctypes.c_char * len(buf)).from_buffer(buf)
    check(call(arr, len(buf), ctypes.byref(size)))
    del arr  # releases the export, so the bytearray can become bytes
    return bytes(buf)


def _bytes_arg(data: Any) -> Tuple[Any, int]:
    """A pointer to the bytes of *data* (bytes or any buffer) for a call, and their count."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data)
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise TypeError(
            f"data must be bytes or a buffer, not {type(data).__name__}"
        ) from None
    if view.readonly:
        return (ctypes.c_char * len(view)).from_buffer_copy(view), len(view)
    return (ctypes.c_char * len(view)).from_buffer(view), len(view)


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
    prefetch_issued: int
    prefetch_used: int
    prefetch_wasted_bytes: int
    misses_prefetched: int
    stall_ns: int
    io_workers: int
    direct_io: int

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0 before any request."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def prefetch_recall(self) -> float:
        """Share of the experts that would have missed without prefetch which a prefetch had
        read (a hit) or started (a shorter wait); 0 when there were none."""
        would_miss = self.misses - self.misses_prefetched + self.prefetch_used
        return self.prefetch_used / would_miss if would_miss else 0.0


def _is_auto(value: Any, name: str) -> bool:
    """Whether a budget argument is the string "auto" (any other string is a ValueError)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'{name} must be a number of bytes or "auto", not {value!r}')
        return True
    return False


@dataclasses.dataclass(frozen=True)
class Plan:
    """r1_plan as plain Python values: what a model needs in memory and its expected decode
    speed (see r1.h and plan())."""

    fits: int  # PLAN_NO_FIT, PLAN_STREAMS or PLAN_IN_MEMORY
    file_bytes: int
    dense_bytes: int
    expert_bytes: int
    expert_stored_bytes: int
    expert_bytes_per_token: int
    kv_bytes_per_token: int
    context: int
    ram_bytes: int
    headroom_bytes: int
    min_expert_budget_bytes: int
    expert_budget_bytes: int
    hit_rate: float
    memory_bytes_per_token: int
    drive_bytes_per_token: int
    mem_bytes_per_s: float
    drive_bytes_per_s: float
    memory_tokens_per_s: float
    drive_tokens_per_s: float
    decode_tokens_per_s: float


#: Plan.fits values (R1_PLAN_*).
PLAN_NO_FIT, PLAN_STREAMS, PLAN_IN_MEMORY = 0, 1, 2


def plan(
    path: PathArg,
    ram_bytes: int = 0,
    context: int = 0,
    mem_bytes_per_s: float = 0.0,
    drive_bytes_per_s: float = 0.0,
) -> Plan:
    """Plan running the model at *path* in *ram_bytes* of memory (0: MemAvailable now) without
    loading it (r1_model_plan): reads only its header and index. A bandwidth of 0 is measured
    (about 2 s)."""
    lib = _ffi.lib()
    cpath = _path(path)
    ram = _int(ram_bytes, "ram_bytes", _UINT64)
    ctx = _int(context, "context")
    s = _ffi.PlanC()
    s.struct_size = ctypes.sizeof(s)
    check(
        lib.r1_model_plan(
            cpath,
            ram,
            ctx,
            _float(mem_bytes_per_s, "mem_bytes_per_s"),
            _float(drive_bytes_per_s, "drive_bytes_per_s"),
            ctypes.byref(s),
        )
    )
    return Plan(**{f.name: getattr(s, f.name) for f in dataclasses.fields(Plan)})


def _from_struct(cls: type, s: ctypes.Structure) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(s, f.name)
        values[f.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else int(v)
    return cls(**values)


class _Handle:
    """Owns one C handle and guards every use of it, so that no Python call order can reach
    freed memory or run two calls at once on an object libr1 allows one thread at a time.

    Each call holds a *use* of the handle while in C (``with self._use() as h``). A use of a
    closed object raises R1BadState; so does a second use of an exclusive object (sessions,
    samplers, options) while one is in progress, on any thread. close() marks the object closed
    at once and frees the C object when the last use and the last *borrow* end: a borrow is
    another object's need of this one (a session needs its model, a running generation its
    sampler), so close() never frees what is still in use and never waits, not even when it
    is called from a callback. __del__ is safe at interpreter shutdown: the path that frees
    uses only attributes of the instance, never module globals.
    """

    _handle: Any = None
    _state: Any = None  # an RLock guarding _handle, _closed, _users, _borrows
    _closed = True  # until _own(): a failed constructor leaves a closed object
    _users = 0
    _borrows = 0
    _exclusive = True  # one use at a time (libr1: "one thread at a time")

    def _own(self, handle: Any) -> None:
        # Reentrant: a signal handler (chat.py's Ctrl-C calls cancel()) runs on the main thread,
        # possibly while that thread holds the lock.
        self._state = threading.RLock()
        self._users = 0
        self._borrows = 0
        self._closed = False
        self._handle = handle

    def _free(self, handle: Any) -> None:
        """Destroys the C object (subclasses); runs once, with no use or borrow left."""
        raise NotImplementedError

    def _closing(self) -> None:
        """Hook run by close() under the state lock, uses possibly in progress."""

    @property
    def closed(self) -> bool:
        """Whether close() has run (or construction failed)."""
        return self._closed

    def _gone(self) -> R1BadState:
        return R1BadState(_ERR_BAD_STATE, f"{type(self).__name__} is closed", "R1_ERR_BAD_STATE")

    def _acquire(self, borrowed: bool = False) -> Any:
        """Starts a use and returns the C handle. *borrowed*: the caller holds a borrow, so a
        closed object whose C side is still alive for it may be used."""
        state = self._state
        if state is None:
            raise self._gone()
        with state:
            if self._handle is None or (self._closed and not (borrowed and self._borrows)):
                raise self._gone()
            if self._exclusive and self._users:
                raise R1BadState(
                    _ERR_BAD_STATE,
                    f"{type(self).__name__} is busy: another call is using it (one thread at a "
                    "time; a callback must not call into the object that is calling it)",
                    "R1_ERR_BAD_STATE",
                )
            self._users += 1
            return self._handle

    def _release(self) -> None:
        with self._state:  # type: ignore[union-attr]
            self._users -= 1
            handle = self._take_if_unused()
        if handle is not None:
            self._free(handle)

    def _take_if_unused(self) -> Any:
        """With the state lock held: the handle to free now, or None while it is needed."""
        if self._closed and not self._users and not self._borrows and self._handle is not None:
            handle, self._handle = self._handle, None
            return handle
        return None

    def _use(self, borrowed: bool = False) -> "_Use":
        return _Use(self, borrowed)

    def _borrow(self, held: bool = False) -> None:
        """Keeps the C object alive for another object until _unborrow(). *held*: the caller
        holds a use, so the C object is alive even if close() has just run."""
        state = self._state
        if state is None:
            raise self._gone()
        with state:
            if self._handle is None or (self._closed and not held):
                raise self._gone()
            self._borrows += 1

    def _unborrow(self) -> None:
        with self._state:  # type: ignore[union-attr]
            self._borrows -= 1
            handle = self._take_if_unused()
        if handle is not None:
            self._free(handle)

    def close(self) -> None:
        """Release the C object. Idempotent; the object is unusable afterwards. A call in
        progress on another thread finishes first (the C object is freed when it returns)."""
        state = self._state
        if state is None:
            return
        with state:
            if self._closed:
                return
            self._closed = True
            self._closing()
            handle = self._take_if_unused()
        if handle is not None:
            self._free(handle)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer, even at interpreter shutdown
            pass


class _Use:
    """``with obj._use() as handle``: one use of a _Handle (see there)."""

    __slots__ = ("obj", "borrowed")

    def __init__(self, obj: _Handle, borrowed: bool) -> None:
        self.obj = obj
        self.borrowed = borrowed

    def __enter__(self) -> Any:
        return self.obj._acquire(self.borrowed)

    def __exit__(self, *exc: object) -> None:
        self.obj._release()


class _NoUse:
    """Stands in for _Use where an optional object is absent: the handle is NULL."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        pass


class Sampler(_Handle):
    """Token selection settings and random state (r1_sampler). One thread at a time: a call
    while another is in progress raises R1BadState.

    Defaults are DeepSeek-R1's: temperature 0.6, top-p 0.95. The same seed and logits give the
    same tokens on every run, platform and thread count. A generation borrows its sampler until
    it ends: close() during a generation takes effect when the generation ends.
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
        self._lib = lib
        seed = _int(seed, "seed", _UINT64)
        h = _ffi.SamplerP()
        check(lib.r1_sampler_create(ctypes.byref(h), seed))
        self._own(h)
        if temperature is not None:
            self.set_temperature(temperature)
        if top_p is not None:
            self.set_top_p(top_p)
        if top_k is not None:
            self.set_top_k(top_k)
        if min_p is not None:
            self.set_min_p(min_p)
        if repeat_penalty is not None or frequency_penalty or presence_penalty:
            self.set_penalties(
                penalty_last_n,
                1.0 if repeat_penalty is None else repeat_penalty,
                frequency_penalty,
                presence_penalty,
            )
        for token, bias in (logit_bias or {}).items():
            self.set_logit_bias(token, bias)

    def _free(self, handle: Any) -> None:
        self._lib.r1_sampler_destroy(handle)

    def set_temperature(self, t: float) -> None:
        """0 means greedy."""
        t = _float(t, "temperature")
        with self._use() as h:
            check(self._lib.r1_sampler_set_temperature(h, t))

    def set_top_k(self, k: int) -> None:
        """Keep the k most likely tokens; 0 turns top-k off."""
        k = _int(k, "top_k")
        with self._use() as h:
            check(self._lib.r1_sampler_set_top_k(h, k))

    def set_top_p(self, p: float) -> None:
        """Nucleus sampling with mass p in (0, 1]."""
        p = _float(p, "top_p")
        with self._use() as h:
            check(self._lib.r1_sampler_set_top_p(h, p))

    def set_min_p(self, p: float) -> None:
        """Drop tokens below p times the most likely one's probability."""
        p = _float(p, "min_p")
        with self._use() as h:
            check(self._lib.r1_sampler_set_min_p(h, p))

    def set_penalties(
        self, last_n: int, repeat: float, frequency: float = 0.0, presence: float = 0.0
    ) -> None:
        """Repetition, frequency and presence penalties over the last *last_n* accepted ids."""
        last_n = _int(last_n, "penalty_last_n")
        repeat = _float(repeat, "repeat_penalty")
        frequency = _float(frequency, "frequency_penalty")
        presence = _float(presence, "presence_penalty")
        with self._use() as h:
            check(self._lib.r1_sampler_set_penalties(h, last_n, repeat, frequency, presence))

    def set_logit_bias(self, token: int, bias: float) -> None:
        """Add *bias* to *token*'s logit; ``float('-inf')`` bans it, 0 removes the bias."""
        token = _int(token, "logit_bias token")
        bias = _float(bias, "logit_bias value")
        with self._use() as h:
            check(self._lib.r1_sampler_set_logit_bias(h, token, bias))

    def clear_logit_bias(self) -> None:
        """Remove every logit bias."""
        with self._use() as h:
            check(self._lib.r1_sampler_clear_logit_bias(h))

    def reset(self) -> None:
        """Forget accepted ids and rewind the random draws to the seed."""
        with self._use() as h:
            check(self._lib.r1_sampler_reset(h))

    def sample(self, logits: Any) -> int:
        """Choose a token from one row of logits (any buffer of float32, or a float sequence)."""
        try:
            view = memoryview(logits).cast("B").cast("f")
            row = (ctypes.c_float * len(view)).from_buffer_copy(view)
        except TypeError:
            try:
                values = array.array("d", logits)
            except TypeError:
                raise TypeError("logits must be a float32 buffer or a sequence of numbers") from None
            big = next((v for v in values if _FLT_MAX < abs(v) < math.inf), None)
            if big is not None:
                raise OverflowError(f"logit {big!r} does not fit the C type float")
            row = (ctypes.c_float * len(values))(*values)
        out = ctypes.c_int32()
        with self._use() as h:
            check(self._lib.r1_sampler_sample(h, row, len(row), ctypes.byref(out)))
        return out.value

    def accept(self, token: int) -> None:
        """Record *token* in the penalty window (generation does this itself)."""
        token = _int(token, "token")
        with self._use() as h:
            check(self._lib.r1_sampler_accept(h, token))

    def save_bytes(self) -> bytes:
        """The sampler's settings and state: logit biases, penalty window and history, seed and
        draw counter (r1_sampler_save_to_buffer). A generation's sampler is saved with its
        session (Session.save); this is for sampling by hand with sample()."""
        with self._use() as h:
            return _saved_bytes(lambda b, c, n: self._lib.r1_sampler_save_to_buffer(h, b, c, n))

    def load_bytes(self, data: Any) -> None:
        """Take the settings and state of save_bytes(): this sampler then draws what the saved
        one would have. A damaged or foreign *data* raises and changes nothing."""
        ptr, n = _bytes_arg(data)
        with self._use() as h:
            check(self._lib.r1_sampler_load_from_buffer(h, ptr, n))


class GenOptions(_Handle):
    """Limits of one generation (r1_gen_opts): token limit, thinking budget, stop strings.
    A generation copies them when it begins."""

    def __init__(
        self,
        max_tokens: Optional[int] = None,
        think_budget: Optional[int] = None,
        think_bridge: Optional[str] = None,
        stop: Iterable[str] = (),
    ) -> None:
        lib = _ffi.lib()
        self._lib = lib
        max_tokens = None if max_tokens is None else _int(max_tokens, "max_tokens")
        think_budget = None if think_budget is None else _int(think_budget, "think_budget")
        bridge = None if think_bridge is None else _cstr(think_bridge, "think_bridge")
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        stops = [_cstr(s, "stop string") for s in stop]
        h = _ffi.GenOptsP()
        check(lib.r1_gen_opts_create(ctypes.byref(h)))
        self._own(h)
        with self._use() as h:
            if max_tokens is not None:
                check(lib.r1_gen_opts_set_max_tokens(h, max_tokens))
            if think_budget is not None:
                check(lib.r1_gen_opts_set_think_budget(h, think_budget))
            if bridge is not None:
                check(lib.r1_gen_opts_set_think_bridge(h, bridge))
            for s in stops:
                check(lib.r1_gen_opts_add_stop(h, s))

    def _free(self, handle: Any) -> None:
        self._lib.r1_gen_opts_destroy(handle)

    def clear_stops(self) -> None:
        """Remove every stop string."""
        with self._use() as h:
            check(self._lib.r1_gen_opts_clear_stops(h))


class Model(_Handle):
    """A loaded .r1m model (r1_model): shareable by any number of threads and sessions.

    Use as a context manager or call close(). Each session keeps the model's C object alive
    (as libr1's sessions keep a reference on the C model), so closing the model while sessions
    live only defers the free: the sessions go on working, the Model object itself raises
    R1BadState from then on.
    """

    _exclusive = False  # libr1 models lock internally

    def __init__(
        self,
        path: PathArg,
        threads: int = 0,
        backend: Optional[str] = None,
        expert_cache_bytes: Union[int, str] = "auto",
        verify_weights: bool = False,
        device_expert_cache_bytes: Union[int, str] = "auto",
        device: Optional[str] = None,
        expert_io_threads: int = 0,
        expert_cache_policy: Optional[str] = None,
    ) -> None:
        # "auto" (the default): the expert budget is what MemAvailable leaves after the dense
        # weights, the KV cache of a default context and a headroom, sized by libr1 at load
        # (r1_model_opts_set_expert_cache_auto); 0 is unbounded. The device cache's auto is
        # its 0: bounded by the device's memory.
        lib = _ffi.lib()
        self._lib = lib
        cpath = _path(path)
        threads = _int(threads, "threads")
        io_threads = _int(expert_io_threads, "expert_io_threads")
        # None: libr1's default policy; "lru" for comparison (logits do not depend on it)
        policies = {"default": 1, "lru": 0}  # R1_CACHE_POLICY_*
        if expert_cache_policy is not None and expert_cache_policy not in policies:
            raise ValueError(
                f'expert_cache_policy must be "default" or "lru", not {expert_cache_policy!r}'
            )
        cache_auto = _is_auto(expert_cache_bytes, "expert_cache_bytes")
        cache = 0 if cache_auto else _int(expert_cache_bytes, "expert_cache_bytes", _UINT64)
        device_cache = (
            0
            if _is_auto(device_expert_cache_bytes, "device_expert_cache_bytes")
            else _int(device_expert_cache_bytes, "device_expert_cache_bytes", _UINT64)
        )
        cbackend = None if backend is None else _cstr(backend, "backend")
        cdevice = None if device is None else _cstr(device, "device")
        opts = _ffi.ModelOptsP()
        check(lib.r1_model_opts_create(ctypes.byref(opts)))
        try:
            check(lib.r1_model_opts_set_threads(opts, threads))
            # a libr1 older than auto keeps its own default, unbounded
            if cache_auto and lib.has("r1_model_opts_set_expert_cache_auto"):
                check(lib.r1_model_opts_set_expert_cache_auto(opts, 0))
            else:
                check(lib.r1_model_opts_set_expert_cache_bytes(opts, cache))
            check(lib.r1_model_opts_set_device_expert_cache_bytes(opts, device_cache))
            if expert_cache_policy is not None:
                policy = policies[expert_cache_policy]
                check(lib.r1_model_opts_set_expert_cache_policy(opts, policy))
            check(lib.r1_model_opts_set_verify_weights(opts, _flag(verify_weights)))
            if io_threads != 0:  # 0 keeps libr1's default (and works with an older libr1)
                check(lib.r1_model_opts_set_expert_io_threads(opts, io_threads))
            if cbackend is not None:
                check(lib.r1_model_opts_set_backend(opts, cbackend))
            if cdevice is not None:  # an index ("1") or part of the device's name
                check(lib.r1_model_opts_set_device(opts, cdevice))
            h = _ffi.ModelP()
            check(lib.r1_model_load(ctypes.byref(h), cpath, None, opts))
        finally:
            lib.r1_model_opts_destroy(opts)
        self.path = os.fsdecode(cpath)
        self._own(h)

    def _free(self, handle: Any) -> None:
        self._lib.r1_model_destroy(handle)

    def __repr__(self) -> str:
        return f"<r1.Model {self.path!r}{' closed' if self.closed else ''}>"

    # Description -------------------------------------------------------------------------

    def info(self) -> ModelInfo:
        """Architecture, sizes and special tokens of the model."""
        s = _ffi.ModelInfoC()
        s.struct_size = ctypes.sizeof(s)
        with self._use() as h:
            check(self._lib.r1_model_get_info(h, ctypes.byref(s)))
        return _from_struct(ModelInfo, s)

    def expert_cache_stats(self) -> ExpertCacheStats:
        """A consistent snapshot of the expert store's counters."""
        s = _ffi.ExpertCacheStatsC()
        s.struct_size = ctypes.sizeof(s)
        with self._use() as h:
            check(self._lib.r1_model_get_expert_cache_stats(h, ctypes.byref(s)))
        return _from_struct(ExpertCacheStats, s)

    def device_expert_cache_stats(self) -> ExpertCacheStats:
        """The device expert cache's counters (GPU backends; zeros on the CPU backend):
        misses are uploads to the device, bytes_read the bytes uploaded."""
        s = _ffi.ExpertCacheStatsC()
        s.struct_size = ctypes.sizeof(s)
        with self._use() as h:
            check(self._lib.r1_model_get_device_expert_cache_stats(h, ctypes.byref(s)))
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
        data = bytes(text) if isinstance(text, (bytes, bytearray)) else _encode(text)
        flags = (
            (TOKENIZE_ADD_BOS if bos else 0)
            | (TOKENIZE_PARSE_SPECIAL if special else 0)
            | (TOKENIZE_REPLACE_INVALID if replace_invalid else 0)
        )
        cap = len(data) + 2
        ids = (ctypes.c_int32 * cap)()
        n = ctypes.c_size_t(0)
        with self._use() as h:
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
        with self._use() as h:
            return _grow_text(lambda b, c, l: self._lib.r1_detokenize(h, arr, n, flags, b, c, l))

    def detokenize(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Decode ids into text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.detokenize_bytes(ids, skip_special).decode("utf-8", "replace")

    @property
    def n_tokens(self) -> int:
        """Ids the tokenizer defines (may differ from ``info().vocab_size``)."""
        with self._use() as h:
            return int(self._lib.r1_token_count(h))

    @property
    def bos(self) -> int:
        """Beginning-of-sentence id, or -1."""
        with self._use() as h:
            return int(self._lib.r1_token_bos(h))

    @property
    def eos(self) -> int:
        """End-of-sentence id (ends generation), or -1."""
        with self._use() as h:
            return int(self._lib.r1_token_eos(h))

    def token_id(self, piece: str) -> int:
        """The id of the token whose text is exactly *piece* (e.g. ``"</think>"``)."""
        data = _cstr(piece, "piece")
        out = ctypes.c_int32()
        with self._use() as h:
            check(self._lib.r1_token_find(h, data, ctypes.byref(out)))
        return out.value

    # Chat --------------------------------------------------------------------------------

    def chat_render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Render ``[{'role': 'user', 'content': ...}, ...]`` in the model's chat format."""
        return self._chat_render(messages, add_generation_prompt, False)

    def _chat_render(
        self, messages: Sequence[Message], add_generation_prompt: bool, borrowed: bool
    ) -> str:
        n = len(messages)
        try:
            roles = (ctypes.c_int32 * max(n, 1))(*[ROLES[m["role"]] for m in messages])
        except KeyError as e:
            raise ValueError(f"unknown role {e.args[0]!r}; use one of {sorted(ROLES)}") from None
        contents = (ctypes.c_char_p * max(n, 1))(
            *[_cstr(m["content"], "message content") for m in messages]
        )
        gen = _flag(add_generation_prompt)
        with self._use(borrowed) as h:
            text = _grow_text(
                lambda b, c, l: self._lib.r1_chat_render(h, roles, contents, n, gen, b, c, l),
                1024,
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
        ``context``, by default the library's: 4096 or the model's maximum if smaller)."""
        session = Session(self, context=kwargs.pop("context", None))
        try:
            pieces = (t for t, kind in session.generate(messages, **kwargs) if kind == "answer")
        except BaseException:
            session.close()
            raise
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


class _Generation:
    """One generation begun by Session.steps(): the sampler it borrows until it ends, and
    whether its iterator was given up while libr1's generation still runs."""

    __slots__ = ("sampler", "abandoned", "resumable")

    def __init__(self, sampler: Sampler, resumable: bool = False) -> None:
        self.sampler = sampler
        self.abandoned = False
        #: Restored by Session.load(): no iterator yet, Session.resume() makes one.
        self.resumable = resumable


class Session(_Handle):
    """One conversation (r1_session): its KV cache, position and last logits.

    One thread at a time: a call while another is in progress (on any thread) raises
    R1BadState; cancel() and close() may be called from any thread. close() during a
    generation ends it: the step in progress completes, then the iterator raises R1BadState.
    The session keeps its Model's C object alive, so models and sessions may be closed or
    collected in any order.
    """

    def __init__(
        self,
        model: Model,
        context: Optional[int] = None,
        logits_all: bool = False,
        overflow: str = "fail",
        keep: Optional[int] = None,
    ) -> None:
        """*overflow* is what happens when the context is full: "fail" (R1ContextFull) or
        "shift" (the oldest turns after the first *keep* positions are dropped and the rest of
        the cache moved down: r1_session_opts_set_overflow; *keep* None keeps everything before
        the first user turn, the system prompt)."""
        lib = _ffi.lib()
        self._lib = lib
        if not isinstance(model, Model):
            raise TypeError(f"model must be an r1.Model, not {type(model).__name__}")
        ctx = None if context is None else _int(context, "context")
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {sorted(OVERFLOW)}, not {overflow!r}")
        keep_n = -1 if keep is None else _int(keep, "keep")
        model._borrow()  # raises R1BadState when the model is closed
        try:
            opts = _ffi.SessionOptsP()
            check(lib.r1_session_opts_create(ctypes.byref(opts)))
            try:
                if ctx is not None:  # else the library's default (never above the model's)
                    check(lib.r1_session_opts_set_context(opts, ctx))
                check(lib.r1_session_opts_set_logits_all(opts, _flag(logits_all)))
                if overflow != "fail" or keep is not None:  # else any libr1 1.1 will do
                    check(lib.r1_session_opts_set_overflow(opts, OVERFLOW[overflow], keep_n))
                h = _ffi.SessionP()
                with model._use(borrowed=True) as mh:
                    check(lib.r1_session_create(ctypes.byref(h), mh, opts))
            finally:
                lib.r1_session_opts_destroy(opts)
        except BaseException:
            model._unborrow()
            raise
        self.model = model
        #: The context length asked for, or None for the library's default.
        self.context = ctx
        self._gen: Optional[_Generation] = None
        self._cancel_requested = False
        #: How the last generation ended: "done", "cancelled", or None before any.
        self.last_status: Optional[str] = None
        self._own(h)

    def _free(self, handle: Any) -> None:
        self._lib.r1_session_destroy(handle)
        self._end_generation()
        self.model._unborrow()

    def _closing(self) -> None:
        if self._users and self._handle is not None:  # a call runs: end a generation early
            self._lib.r1_session_cancel(self._handle)

    def _end_generation(self) -> None:
        """libr1's generation has ended: give its sampler back."""
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.sampler._unborrow()

    # Evaluation --------------------------------------------------------------------------

    def eval(self, ids: Iterable[int]) -> None:
        """Evaluate token ids at the current position (prefill or decode)."""
        arr, n = _ids_array(ids)
        with self._use() as h:
            check(self._lib.r1_session_eval(h, arr, n))

    def logits(self, row: int = -1) -> "array.array[float]":
        """A float32 copy of one row of the last evaluation's logits (-1: the last position).

        The result supports the buffer protocol: ``numpy.frombuffer(s.logits(), numpy.float32)``.
        """
        row = _int(row, "row")
        ptr = ctypes.POINTER(ctypes.c_float)()
        n = ctypes.c_size_t(0)
        with self._use() as h:
            check(self._lib.r1_session_logits(h, row, ctypes.byref(ptr), ctypes.byref(n)))
            out = array.array("f", bytes(n.value * 4))
            ctypes.memmove(out.buffer_info()[0], ptr, n.value * 4)
        return out

    @property
    def position(self) -> int:
        """Positions in the session's cache."""
        with self._use() as h:
            return int(self._lib.r1_session_position(h))

    def truncate(self, n_keep: int) -> None:
        """Keep the first n_keep positions (reuse a shared prompt prefix); ends a generation."""
        n_keep = _int(n_keep, "n_keep")
        with self._use() as h:
            check(self._lib.r1_session_truncate(h, n_keep))
            self._end_generation()

    def reset(self) -> None:
        """Empty the cache (position 0); ends a generation."""
        with self._use() as h:
            check(self._lib.r1_session_reset(h))
            self._end_generation()

    def shift(self, n_keep: int, n_drop: int) -> None:
        """Drop cached positions [n_keep, n_keep + n_drop) and move the rest down, their
        rotary part re-rotated, without evaluating again (r1_session_shift)."""
        n_keep, n_drop = _int(n_keep, "n_keep"), _int(n_drop, "n_drop")
        with self._use() as h:
            check(self._lib.r1_session_shift(h, n_keep, n_drop))

    def sync(self, ids: Iterable[int]) -> None:
        """Make *ids* the whole sequence the session holds: the cache keeps the longest prefix
        it shares with them and only the rest is queued for the next generation
        (r1_session_sync)."""
        arr, n = _ids_array(ids)
        with self._use() as h:
            check(self._lib.r1_session_sync(h, arr, n))

    def sync_text(self, text: str, special: bool = True) -> None:
        """sync() with the tokens of *text* (e.g. a whole rendered conversation)."""
        data = _encode(text)
        flags = TOKENIZE_PARSE_SPECIAL if special else 0
        with self._use() as h:
            check(self._lib.r1_session_sync_text(h, data, len(data), flags))

    # Generation --------------------------------------------------------------------------

    def feed(self, ids: Iterable[int]) -> None:
        """Queue prompt ids for the next generation."""
        arr, n = _ids_array(ids)
        with self._use() as h:
            check(self._lib.r1_session_feed(h, arr, n))

    def feed_text(self, text: str, special: bool = True) -> None:
        """Tokenize and queue text (special tokens parsed by default, as chat prompts need)."""
        data = _encode(text)
        flags = TOKENIZE_PARSE_SPECIAL if special else 0
        with self._use() as h:
            check(self._lib.r1_session_feed_text(h, data, len(data), flags))

    def cancel(self) -> None:
        """Ask the running generation to stop; safe from any thread. The generator then ends
        (last_status "cancelled") after the step in progress."""
        self._cancel_requested = True
        state = self._state
        if state is None:
            return
        with state:  # the C object cannot be freed meanwhile
            if self._handle is not None:
                check(self._lib.r1_session_cancel(self._handle))

    def counts(self) -> Tuple[int, int, int]:
        """(prompt, reasoning, answer) token counts of the current or last generation."""
        p, r, a = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
        with self._use() as h:
            check(
                self._lib.r1_session_counts(h, ctypes.byref(p), ctypes.byref(r), ctypes.byref(a))
            )
        return p.value, r.value, a.value

    # Saved state ---------------------------------------------------------------------------

    def save(self, path: PathArg) -> None:
        """Save the session's state to *path*: cache, tokens, last logits, and a generation in
        progress with its sampler's state (r1_session_save). The file is replaced atomically;
        a failure leaves an existing file as it was."""
        data = _path(path)
        with self._use() as h:
            check(self._lib.r1_session_save(h, data))

    def save_bytes(self) -> bytes:
        """The state save() writes, as bytes (r1_session_save_to_buffer)."""
        with self._use() as h:
            return _saved_bytes(lambda b, c, n: self._lib.r1_session_save_to_buffer(h, b, c, n))

    def load(self, path: PathArg, sampler: Optional[Sampler] = None) -> None:
        """Restore a state saved by save() (r1_session_load): the session then continues as the
        saved one would have. It must come from a session of the same model file, context
        length and cache type (else R1InvalidArgument); a damaged file raises R1Checksum or
        R1Format. Any failure leaves the session as it was. A state saved during a generation
        needs *sampler*, which takes the saved sampler's settings and state; resume() then
        continues that generation. A generation running here is ended."""
        data = _path(path)
        self._restore(lambda h, sh: self._lib.r1_session_load(h, data, sh), sampler)

    def load_bytes(self, data: Any, sampler: Optional[Sampler] = None) -> None:
        """load() from the bytes of save_bytes() (any bytes-like object)."""
        ptr, n = _bytes_arg(data)
        self._restore(lambda h, sh: self._lib.r1_session_load_from_buffer(h, ptr, n, sh), sampler)

    def _restore(self, call: Callable[[Any, Any], int], sampler: Optional[Sampler]) -> None:
        if sampler is not None and not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be an r1.Sampler, not {type(sampler).__name__}")
        with self._use() as h, (sampler._use() if sampler is not None else _NoUse()) as sh:
            check(call(h, sh))
            self._end_generation()  # libr1 ended the generation that was running, if any
            # Feeding nothing is refused exactly while a generation is in progress: the state
            # held one, which now draws from the sampler (libr1 keeps it until it ends).
            if sampler is not None and self._lib.r1_session_feed(h, None, 0) == _ERR_BAD_STATE:
                sampler._borrow(held=True)
                self._gen = _Generation(sampler, resumable=True)

    def resume(self) -> Iterator[Step]:
        """Continue the generation that load() restored (the state was saved during one),
        yielding Steps as steps() does. R1BadState when there is none."""
        gen = self._gen
        if gen is None or not gen.resumable:
            raise R1BadState(
                _ERR_BAD_STATE,
                "no restored generation to resume: load() a state saved during a generation, "
                "with a sampler",
                "R1_ERR_BAD_STATE",
            )
        gen.resumable = False
        return self._resumed(gen)

    def _resumed(self, gen: _Generation) -> Iterator[Step]:
        try:
            yield from self._run(gen)
        finally:
            self._finish(gen)

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
            # The model may be closed: this session's borrow keeps its C object alive.
            self.feed_text(self.model._chat_render(items, True, True))
        else:
            self.feed(items)

    def _drain_abandoned(self) -> None:
        """Ends libr1's generation of an iterator that was given up while the session was busy
        (see _finish), so that the session's history stays as it was."""
        gen = self._gen
        if gen is None or not gen.abandoned:
            return
        with self._use() as h:
            if self._gen is not gen:
                return
            self._lib.r1_session_cancel(h)
            with gen.sampler._use(borrowed=True):
                while self._lib.r1_session_step(h, None, None) == OK:
                    pass
            self._end_generation()
            self.last_status = "cancelled"

    def _finish(self, gen: _Generation) -> None:
        """The iterator of *gen* ends (exhausted, closed, collected): end libr1's generation
        too, now if the session is free, else before the next generation."""
        if self._gen is not gen:
            return  # ended already, or the session was closed
        gen.abandoned = True
        try:
            self._drain_abandoned()
        except Exception:  # closed (its free ends it) or busy (the next generation ends it)
            pass

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
        cancels the generation and leaves the session usable. After close() of the session,
        or reset()/truncate() during the generation, the iterator raises R1BadState.
        """
        if self.closed:
            raise self._gone()
        if self._gen is not None and not self._gen.abandoned:
            raise R1BadState(
                _ERR_BAD_STATE,
                "a generation is already running on this session: exhaust, break out of or "
                "close its iterator, or reset() the session",
                "R1_ERR_BAD_STATE",
            )
        own: List[_Handle] = []
        try:
            if sampler is None:
                sampler = Sampler(seed, temperature, top_p, top_k, min_p, repeat_penalty,
                                  logit_bias=logit_bias)
                own.append(sampler)
            if options is None:
                options = GenOptions(max_tokens, think_budget, think_bridge, stop)
                own.append(options)
        except BaseException:
            for obj in own:
                obj.close()
            raise
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
        gen: Optional[_Generation] = None
        try:
            self._drain_abandoned()
            self._queue_prompt(prompt, raw, reset)
            with self._use() as h, sampler._use() as sh, options._use() as oh:
                check(self._lib.r1_session_begin(h, sh, oh))
                sampler._borrow(held=True)  # libr1 keeps the sampler until the generation ends
                gen = self._gen = _Generation(sampler)
                if self._cancel_requested:  # asked before begin cleared libr1's flag
                    self._lib.r1_session_cancel(h)
            yield from self._run(gen)
        finally:
            if gen is not None:
                self._finish(gen)
            for obj in own:
                obj.close()

    def _run(self, gen: _Generation) -> Iterator[Step]:
        token, kind = ctypes.c_int32(), ctypes.c_int32()
        text, length = ctypes.c_void_p(), ctypes.c_size_t()
        lib = self._lib
        while True:
            # The session is held only during the step, never while the iterator is suspended,
            # so close(), cancel() and other threads see a free session between steps.
            with self._use() as h:
                if self._gen is not gen:
                    raise R1BadState(
                        _ERR_BAD_STATE,
                        "the generation was ended by reset() or truncate() of its session",
                        "R1_ERR_BAD_STATE",
                    )
                with gen.sampler._use(borrowed=True):
                    st = lib.r1_session_step(h, ctypes.byref(token), ctypes.byref(kind))
                    failure = error(st) if st < 0 else None
                if self._closed:  # by another thread during the step (which close() cancels)
                    raise self._gone()
                if st != OK:
                    self._end_generation()  # libr1's generation has ended
                if failure is not None:
                    raise failure
                if st == CANCELLED:
                    self.last_status = "cancelled"
                    return
                lib.r1_session_piece(h, ctypes.byref(text), ctypes.byref(length))
                n = length.value
                piece = ctypes.string_at(text.value, n).decode("utf-8", "replace") if n else ""
            if st == DONE:
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
        by on_piece cancels and is re-raised. on_piece must not call this session (that raises
        R1BadState), but may cancel() or close() it (close() then raises R1BadState here)."""
        raised: List[BaseException] = []

        def trampoline(piece: int, length: int, kind: int, _user: Any) -> int:
            try:
                text = ctypes.string_at(piece, length).decode()
                return 1 if on_piece(text, KINDS.get(kind) or "answer") else 0
            except BaseException as e:  # noqa: B902 - carried across the C frame
                raised.append(e)
                return 1

        fn = _ffi.PIECE_FN(trampoline)
        self._drain_abandoned()
        with self._use() as h, sampler._use() as sh:
            with options._use() if options is not None else _NoUse() as oh:
                st = self._lib.r1_session_generate(h, sh, oh, fn, None)
                failure = error(st) if st < 0 else None
            closed = self._closed
        if raised:
            raise raised[0]
        if closed:
            raise R1BadState(
                _ERR_BAD_STATE, "Session was closed during the generation", "R1_ERR_BAD_STATE"
            )
        if failure is not None:
            raise failure
        self.last_status = "done" if st == DONE else "cancelled"
        return self.last_status


def generate_many(
    sessions: Sequence[Session],
    prompts: Sequence[Prompt],
    *,
    max_tokens: Optional[int] = None,
    stop: Iterable[str] = (),
    seed: int = 0x5EED,
    temperature: Optional[float] = None,
    top_p: Optional[float] = None,
    logit_bias: Optional[Dict[int, float]] = None,
    raw: bool = False,
    reset: bool = True,
) -> Iterator[List[Tuple[int, Step]]]:
    """Generate on several sessions of one model together (r1_session_step_many): each round
    is one step of every session still generating, through shared forward passes (each weight
    read once for all of them). Yields, per round, ``[(index, Step), ...]`` for the sessions
    that stepped (prompt progress has id -1 and kind None; a session's final text, if any,
    comes as a last Step with id -1). A session leaves when its generation ends; its
    last_status then says "done" or "cancelled". Each session gets prompts[i] (as for
    Session.steps()) and a sampler of seed ``seed + i`` with the other keywords.

    Every session is held for the whole generation: other calls on them raise R1BadState until
    the iterator ends (exhausted, closed or collected: then the generations still running are
    cancelled); cancel() may be called from any thread.
    """
    sessions = list(sessions)
    prompts = list(prompts)
    if not sessions or len(prompts) != len(sessions):
        raise R1InvalidArgument(-1, "generate_many needs sessions and as many prompts")
    if len(set(map(id, sessions))) != len(sessions):
        raise R1InvalidArgument(-1, "generate_many: a session is listed twice")
    lib = _ffi.lib()
    own: List[_Handle] = []
    started: List[Tuple[Session, _Generation]] = []
    try:
        options = GenOptions(max_tokens, None, None, stop)
        own.append(options)
        for i, (sess, prompt) in enumerate(zip(sessions, prompts)):
            smp = Sampler(seed + i, temperature, top_p, logit_bias=logit_bias)
            own.append(smp)
            sess._drain_abandoned()
            sess._queue_prompt(prompt, raw, reset)
            with sess._use() as h, smp._use() as sh, options._use() as oh:
                check(lib.r1_session_begin(h, sh, oh))
                smp._borrow(held=True)
                gen = sess._gen = _Generation(smp)
                started.append((sess, gen))
        yield from _step_many_rounds(lib, started)
    finally:
        # Generations still running (the iterator was given up): cancelled, their samplers
        # given back.
        for sess, gen in started:
            if sess._gen is gen:
                gen.abandoned = True
                try:
                    sess._drain_abandoned()
                except Exception:
                    pass
        for obj in own:
            obj.close()


def _step_many_rounds(
    lib: Any, started: List[Tuple[Session, _Generation]]
) -> Iterator[List[Tuple[int, Step]]]:
    live = list(range(len(started)))
    text, length = ctypes.c_void_p(), ctypes.c_size_t()
    while live:
        n = len(live)
        handles = (_ffi.SessionP * n)()
        ids, kinds, sts = (ctypes.c_int32 * n)(), (ctypes.c_int32 * n)(), (ctypes.c_int32 * n)()
        out: List[Tuple[int, Step]] = []
        uses: List[Any] = []
        failure: Optional[R1Error] = None
        try:
            for k, i in enumerate(live):
                sess, gen = started[i]
                u = sess._use()
                handles[k] = u.__enter__()
                uses.append(u)
                su = gen.sampler._use(borrowed=True)
                su.__enter__()
                uses.append(su)
            check(lib.r1_session_step_many(handles, n, ids, kinds, sts))
            still = []
            for k, i in enumerate(live):
                sess, _gen = started[i]
                st = sts[k]
                if st != OK:
                    sess._end_generation()
                    ended = {DONE: "done", CANCELLED: "cancelled"}
                    sess.last_status = ended.get(st, sess.last_status)
                if st < 0:
                    failure = failure or error(st)
                    continue
                if st == CANCELLED:
                    continue
                lib.r1_session_piece(handles[k], ctypes.byref(text), ctypes.byref(length))
                m = length.value
                piece = ctypes.string_at(text.value, m).decode("utf-8", "replace") if m else ""
                if st == DONE:
                    if piece:
                        out.append((i, Step(-1, piece, KINDS.get(kinds[k]))))
                    continue
                out.append((i, Step(ids[k], piece, KINDS.get(kinds[k]))))
                still.append(i)
        finally:
            for u in reversed(uses):
                u.__exit__(None, None, None)
        if failure is not None:
            raise failure
        live = still
        if out:
            yield out


class Chat:
    """A conversation kept in one Session: each send() renders the whole conversation and
    gives it to Session.sync_text, so a turn evaluates only what follows the cached prefix (from
    the last answer on: R1's chat format drops earlier reasoning) instead of the whole history.

    ``overflow="shift"`` lets it go on past the context, dropping the oldest turns and keeping
    the system prompt. close() (or ``with``) releases the session; one thread at a time.
    """

    def __init__(
        self,
        model: Model,
        system: Optional[str] = None,
        context: Optional[int] = None,
        overflow: str = "fail",
        keep: Optional[int] = None,
    ) -> None:
        self.session = Session(model, context=context, overflow=overflow, keep=keep)
        #: The conversation so far (answers without their reasoning).
        self.messages: List[Message] = []
        if system is not None:
            self.messages.append({"role": "system", "content": system})

    def send(self, text: str, stream: bool = False, **kwargs: Any) -> Union[str, Iterator[str]]:
        """Add a user message and answer it: the answer text, or with stream=True an iterator
        of answer pieces. Keyword arguments as for Session.steps (sampling, limits). A failed
        turn (R1ContextFull with overflow "fail") leaves the conversation as it was."""
        self.messages.append({"role": "user", "content": text})
        try:
            prompt = self.session.model._chat_render(self.messages, True, True)
            self.session.sync_text(prompt)
            steps = self.session.steps(None, reset=False, **kwargs)
        except BaseException:
            self.messages.pop()
            raise
        pieces = self._answer(steps)
        return pieces if stream else "".join(pieces)

    def _answer(self, steps: Iterator[Step]) -> Iterator[str]:
        answer: List[str] = []
        ok = False
        try:
            for step in steps:
                if step.text and step.kind == "answer":
                    answer.append(step.text)
                    yield step.text
            ok = True
        finally:
            if ok or answer:  # an answer cut short stays, as r1 chat keeps it
                self.messages.append({"role": "assistant", "content": "".join(answer)})
            else:
                self.messages.pop()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Chat":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def convert(
    hf_dir: PathArg,
    out_path: PathArg,
    quant: Optional[str] = None,
    threads: int = 1,
    no_shuffle: bool = False,
    progress: Optional[Callable[[int, int], Optional[bool]]] = None,
) -> None:
    """Convert a Hugging Face checkpoint into an .r1m file (r1_convert). *progress(done,
    total)* returning True cancels (R1Error is not raised then; the output is not written)."""
    lib = _ffi.lib()
    src = _path(hf_dir, "hf_dir")
    dst = _path(out_path, "out_path")
    rules = _cstr(quant, "quant") if quant else None
    threads = _int(threads, "threads")
    raised: List[BaseException] = []

    def trampoline(done: int, total: int, _user: Any) -> int:
        try:
            return 1 if progress is not None and progress(done, total) else 0
        except BaseException as e:  # noqa: B902
            raised.append(e)
            return 1

    fn = _ffi.PROGRESS_FN(trampoline) if progress else _ffi.PROGRESS_FN()
    flags = CONVERT_NO_SHUFFLE if no_shuffle else 0
    st = lib.r1_convert(src, dst, rules, threads, flags, fn, None)
    if raised:
        raise raised[0]
    check(st)


__all__ = [
    "Backend",
    "Chat",
    "ExpertCacheStats",
    "GenOptions",
    "Model",
    "ModelInfo",
    "PLAN_IN_MEMORY",
    "PLAN_NO_FIT",
    "PLAN_STREAMS",
    "Plan",
    "R1Error",
    "Sampler",
    "Session",
    "Step",
    "backends",
    "convert",
    "describe_backend",
    "version",
    "version_number",
]
