"""_ffi: finding libr1, and the ctypes declaration (argtypes and restype) of every function."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading
from typing import Dict, List, Optional, Sequence, Tuple

# Opaque handles: distinct pointer types, so passing a session where a model is expected fails
# in ctypes instead of in C.


class _Model(ctypes.Structure):
    pass


class _ModelOpts(ctypes.Structure):
    pass


class _Session(ctypes.Structure):
    pass


class _SessionOpts(ctypes.Structure):
    pass


class _Sampler(ctypes.Structure):
    pass


class _GenOpts(ctypes.Structure):
    pass


class _Backend(ctypes.Structure):
    pass


ModelP = ctypes.POINTER(_Model)
ModelOptsP = ctypes.POINTER(_ModelOpts)
SessionP = ctypes.POINTER(_Session)
SessionOptsP = ctypes.POINTER(_SessionOpts)
SamplerP = ctypes.POINTER(_Sampler)
GenOptsP = ctypes.POINTER(_GenOpts)
BackendP = ctypes.POINTER(_Backend)


class ModelInfoC(ctypes.Structure):
    """Mirror of r1_model_info (size-first: struct_size is set to sizeof before each call)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("architecture", ctypes.c_int32),
        ("architecture_name", ctypes.c_char * 32),
        ("n_layers", ctypes.c_int64),
        ("n_mtp_layers", ctypes.c_int64),
        ("hidden_size", ctypes.c_int64),
        ("n_heads", ctypes.c_int64),
        ("n_routed_experts", ctypes.c_int64),
        ("n_experts_per_token", ctypes.c_int64),
        ("n_shared_experts", ctypes.c_int64),
        ("vocab_size", ctypes.c_int64),
        ("n_tokenizer_ids", ctypes.c_int64),
        ("max_position_embeddings", ctypes.c_int64),
        ("bos_token_id", ctypes.c_int64),
        ("eos_token_id", ctypes.c_int64),
        ("file_bytes", ctypes.c_uint64),
        ("dense_bytes", ctypes.c_uint64),
        ("expert_bytes", ctypes.c_uint64),
        ("max_expert_bytes", ctypes.c_uint64),
        ("n_tensors", ctypes.c_uint64),
        ("n_expert_blobs", ctypes.c_uint64),
        ("expert_dtype", ctypes.c_char * 16),
    ]


class ExpertCacheStatsC(ctypes.Structure):
    """Mirror of r1_expert_cache_stats (size-first, like ModelInfoC)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("hits", ctypes.c_uint64),
        ("misses", ctypes.c_uint64),
        ("evictions", ctypes.c_uint64),
        ("bytes_read", ctypes.c_uint64),
        ("bytes_decompressed", ctypes.c_uint64),
        ("load_ns", ctypes.c_uint64),
        ("current_bytes", ctypes.c_uint64),
        ("peak_bytes", ctypes.c_uint64),
        ("budget_bytes", ctypes.c_uint64),
        # appended in 1.1 (the asynchronous expert store)
        ("prefetch_issued", ctypes.c_uint64),
        ("prefetch_used", ctypes.c_uint64),
        ("prefetch_wasted_bytes", ctypes.c_uint64),
        ("misses_prefetched", ctypes.c_uint64),
        ("stall_ns", ctypes.c_uint64),
        ("io_workers", ctypes.c_uint32),
        ("direct_io", ctypes.c_uint32),
    ]


class PlanC(ctypes.Structure):
    """Mirror of r1_plan (size-first), filled by r1_model_plan()."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("fits", ctypes.c_int32),
        ("file_bytes", ctypes.c_uint64),
        ("dense_bytes", ctypes.c_uint64),
        ("expert_bytes", ctypes.c_uint64),
        ("expert_stored_bytes", ctypes.c_uint64),
        ("expert_bytes_per_token", ctypes.c_uint64),
        ("kv_bytes_per_token", ctypes.c_uint64),
        ("context", ctypes.c_int64),
        ("ram_bytes", ctypes.c_uint64),
        ("headroom_bytes", ctypes.c_uint64),
        ("min_expert_budget_bytes", ctypes.c_uint64),
        ("expert_budget_bytes", ctypes.c_uint64),
        ("hit_rate", ctypes.c_double),
        ("memory_bytes_per_token", ctypes.c_uint64),
        ("drive_bytes_per_token", ctypes.c_uint64),
        ("mem_bytes_per_s", ctypes.c_double),
        ("drive_bytes_per_s", ctypes.c_double),
        ("memory_tokens_per_s", ctypes.c_double),
        ("drive_tokens_per_s", ctypes.c_double),
        ("decode_tokens_per_s", ctypes.c_double),
    ]


#: Number of r1_profile_class values (R1_PROFILE_N_CLASSES).
PROFILE_N_CLASSES = 8


class SessionProfileC(ctypes.Structure):
    """Mirror of r1_session_profile (size-first, like ModelInfoC)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("n_tokens", ctypes.c_uint64),
        ("n_passes", ctypes.c_uint64),
        ("weight_bytes", ctypes.c_uint64),
        ("expert_bytes", ctypes.c_uint64),
        ("expert_uses", ctypes.c_uint64),
        ("total_ms", ctypes.c_double),
        ("ms", ctypes.c_double * PROFILE_N_CLASSES),
        ("class_weight_bytes", ctypes.c_uint64 * PROFILE_N_CLASSES),
        ("embed_bytes", ctypes.c_uint64),
    ]


#: r1_piece_fn: (piece, len, kind, user_data) -> non-zero cancels.
PIECE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p
)
#: r1_progress_fn: (done_bytes, total_bytes, user_data) -> non-zero cancels.
PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)

_st = ctypes.c_int32  # r1_status
_i32 = ctypes.c_int32
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_sz = ctypes.c_size_t
_f32 = ctypes.c_float
_str = ctypes.c_char_p
_i32p = ctypes.POINTER(ctypes.c_int32)
_szp = ctypes.POINTER(ctypes.c_size_t)
_charp = ctypes.c_char_p  # a writable buffer is passed as create_string_buffer(), which converts

#: Every public function of r1.h: name -> (restype, argtypes). restype None means void.
#: check_symbols.py fails when libr1 exports an r1_* symbol missing here.
DECLARATIONS: Dict[str, Tuple[Optional[type], List[type]]] = {
    # Library
    "r1_version_number": (_u32, []),
    "r1_version_string": (_str, []),
    "r1_status_name": (_str, [_st]),
    "r1_last_error": (_str, []),
    "r1_backend_count": (_i32, []),
    "r1_backend_name": (_str, [_i32]),
    "r1_backend_available": (_i32, [_str]),
    "r1_backend_describe": (_st, [_str, _charp, _sz, _szp]),
    # Models
    "r1_model_opts_create": (_st, [ctypes.POINTER(ModelOptsP)]),
    "r1_model_opts_destroy": (None, [ModelOptsP]),
    "r1_model_opts_set_expert_cache_bytes": (_st, [ModelOptsP, _u64]),
    "r1_model_opts_set_device_expert_cache_bytes": (_st, [ModelOptsP, _u64]),
    "r1_model_opts_set_expert_cache_auto": (_st, [ModelOptsP, _i32]),
    "r1_model_opts_set_expert_cache_policy": (_st, [ModelOptsP, _i32]),
    "r1_model_plan": (
        _st,
        [_str, _u64, _i32, ctypes.c_double, ctypes.c_double, ctypes.POINTER(PlanC)],
    ),
    "r1_model_opts_set_expert_prefetch": (_st, [ModelOptsP, _i32]),
    "r1_model_opts_set_expert_io_threads": (_st, [ModelOptsP, _i32]),
    "r1_model_opts_set_verify_weights": (_st, [ModelOptsP, _i32]),
    "r1_model_opts_set_threads": (_st, [ModelOptsP, _i32]),
    "r1_model_opts_set_backend": (_st, [ModelOptsP, _str]),
    "r1_model_opts_set_device": (_st, [ModelOptsP, _str]),
    "r1_model_load": (_st, [ctypes.POINTER(ModelP), _str, BackendP, ModelOptsP]),
    "r1_model_destroy": (None, [ModelP]),
    "r1_model_get_info": (_st, [ModelP, ctypes.POINTER(ModelInfoC)]),
    "r1_model_get_expert_cache_stats": (_st, [ModelP, ctypes.POINTER(ExpertCacheStatsC)]),
    "r1_model_get_device_expert_cache_stats": (_st, [ModelP, ctypes.POINTER(ExpertCacheStatsC)]),
    "r1_convert": (_st, [_str, _str, _str, _i32, _u32, PROGRESS_FN, ctypes.c_void_p]),
    # Sessions
    "r1_session_opts_create": (_st, [ctypes.POINTER(SessionOptsP)]),
    "r1_session_opts_destroy": (None, [SessionOptsP]),
    "r1_session_opts_set_context": (_st, [SessionOptsP, _i32]),
    "r1_session_opts_set_logits_all": (_st, [SessionOptsP, _i32]),
    "r1_session_opts_set_cache_type": (_st, [SessionOptsP, _str]),
    "r1_session_opts_set_overflow": (_st, [SessionOptsP, _i32, _i32]),
    "r1_session_create": (_st, [ctypes.POINTER(SessionP), ModelP, SessionOptsP]),
    "r1_session_destroy": (None, [SessionP]),
    "r1_session_eval": (_st, [SessionP, _i32p, _sz]),
    "r1_session_logits": (
        _st,
        [SessionP, _i32, ctypes.POINTER(ctypes.POINTER(ctypes.c_float)), _szp],
    ),
    "r1_session_position": (_i32, [SessionP]),
    "r1_session_truncate": (_st, [SessionP, _i32]),
    "r1_session_shift": (_st, [SessionP, _i32, _i32]),
    "r1_session_reset": (_st, [SessionP]),
    "r1_session_set_profiling": (_st, [SessionP, _i32]),
    "r1_session_get_profile": (_st, [SessionP, ctypes.POINTER(SessionProfileC)]),
    "r1_session_get_expert_counts": (_st, [SessionP, ctypes.POINTER(_u64), _sz]),
    "r1_session_save": (_st, [SessionP, _str]),
    "r1_session_save_to_buffer": (_st, [SessionP, ctypes.c_void_p, _sz, _szp]),
    "r1_session_load": (_st, [SessionP, _str, SamplerP]),
    "r1_session_load_from_buffer": (_st, [SessionP, ctypes.c_void_p, _sz, SamplerP]),
    # Tokenizer
    "r1_tokenize": (_st, [ModelP, _charp, _sz, _u32, _i32p, _sz, _szp]),
    "r1_detokenize": (_st, [ModelP, _i32p, _sz, _u32, _charp, _sz, _szp]),
    "r1_token_count": (_i32, [ModelP]),
    "r1_token_bos": (_i32, [ModelP]),
    "r1_token_eos": (_i32, [ModelP]),
    "r1_token_find": (_st, [ModelP, _str, _i32p]),
    # Generation
    "r1_gen_opts_create": (_st, [ctypes.POINTER(GenOptsP)]),
    "r1_gen_opts_destroy": (None, [GenOptsP]),
    "r1_gen_opts_set_max_tokens": (_st, [GenOptsP, _i32]),
    "r1_gen_opts_set_think_budget": (_st, [GenOptsP, _i32]),
    "r1_gen_opts_set_think_bridge": (_st, [GenOptsP, _str]),
    "r1_gen_opts_add_stop": (_st, [GenOptsP, _str]),
    "r1_gen_opts_clear_stops": (_st, [GenOptsP]),
    "r1_session_feed": (_st, [SessionP, _i32p, _sz]),
    "r1_session_feed_text": (_st, [SessionP, _charp, _sz, _u32]),
    "r1_session_sync": (_st, [SessionP, _i32p, _sz]),
    "r1_session_sync_text": (_st, [SessionP, _charp, _sz, _u32]),
    "r1_session_begin": (_st, [SessionP, SamplerP, GenOptsP]),
    "r1_session_step": (_st, [SessionP, _i32p, _i32p]),
    "r1_session_step_many": (_st, [ctypes.POINTER(SessionP), _sz, _i32p, _i32p, _i32p]),
    "r1_session_piece": (_st, [SessionP, ctypes.POINTER(ctypes.c_void_p), _szp]),
    "r1_session_cancel": (_st, [SessionP]),
    "r1_session_counts": (_st, [SessionP, _i32p, _i32p, _i32p]),
    "r1_session_generate": (_st, [SessionP, SamplerP, GenOptsP, PIECE_FN, ctypes.c_void_p]),
    # Chat format
    "r1_chat_render": (
        _st,
        [ModelP, _i32p, ctypes.POINTER(ctypes.c_char_p), _sz, _i32, _charp, _sz, _szp],
    ),
    # Samplers
    "r1_sampler_create": (_st, [ctypes.POINTER(SamplerP), _u64]),
    "r1_sampler_destroy": (None, [SamplerP]),
    "r1_sampler_set_temperature": (_st, [SamplerP, _f32]),
    "r1_sampler_set_top_k": (_st, [SamplerP, _i32]),
    "r1_sampler_set_top_p": (_st, [SamplerP, _f32]),
    "r1_sampler_set_min_p": (_st, [SamplerP, _f32]),
    "r1_sampler_set_penalties": (_st, [SamplerP, _i32, _f32, _f32, _f32]),
    "r1_sampler_set_logit_bias": (_st, [SamplerP, _i32, _f32]),
    "r1_sampler_clear_logit_bias": (_st, [SamplerP]),
    "r1_sampler_reset": (_st, [SamplerP]),
    "r1_sampler_sample": (_st, [SamplerP, ctypes.POINTER(ctypes.c_float), _sz, _i32p]),
    "r1_sampler_accept": (_st, [SamplerP, _i32]),
    "r1_sampler_save_to_buffer": (_st, [SamplerP, ctypes.c_void_p, _sz, _szp]),
    "r1_sampler_load_from_buffer": (_st, [SamplerP, ctypes.c_void_p, _sz]),
}


class Library:
    """A loaded libr1 with every declared function set up; functions it lacks are left out.

    Attributes are the C functions (``lib.r1_version_number()``). ``missing`` lists the declared
    names this library does not export (an older 1.x library); calling one raises AttributeError.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(path)
        self.missing: List[str] = []
        for name, (restype, argtypes) in DECLARATIONS.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError:
                self.missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)

    def has(self, name: str) -> bool:
        """Whether the loaded library provides function *name* (like ``hasattr``)."""
        return name in DECLARATIONS and name not in self.missing


def _pkg_config_libdir() -> Optional[str]:
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "r1"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    return libdir if out.returncode == 0 and libdir else None


def installed_library() -> Optional[str]:
    """The libr1 installed together with this package (`meson install` writes _config.py with
    its path), or None for a copy that was not installed by meson (source tree, pip)."""
    try:
        from . import _config  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_config, "LIBRARY", None) or None


def candidates(path: Optional[str] = None) -> List[str]:
    """The library paths tried, in order: *path*, $R1_LIBRARY, the library installed with this
    package (installed_library()), ctypes.util.find_library('r1'), 'libr1.so.1' (the dynamic
    loader's search), then pkg-config's libdir."""
    out: List[str] = []
    if path:
        out.append(path)
    env = os.environ.get("R1_LIBRARY")
    if env:
        out.append(env)
    installed = installed_library()
    if installed:
        out.append(installed)
    found = ctypes.util.find_library("r1")
    if found:
        out.append(found)
    out.append("libr1.so.1")
    libdir = _pkg_config_libdir()
    if libdir:
        out.append(os.path.join(libdir, "libr1.so.1"))
    return out


_lock = threading.Lock()
_loaded: Optional[Library] = None


def load(path: Optional[str] = None) -> Library:
    """Load libr1 once per process (see candidates() for the search order).

    An explicit *path* or $R1_LIBRARY must load: a wrong one is an error, never skipped.
    Later calls return the same library; asking for a different explicit path then fails.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            if path and os.path.realpath(path) != os.path.realpath(_loaded.path):
                raise RuntimeError(f"libr1 is already loaded from {_loaded.path}")
            return _loaded
        errors: List[str] = []
        explicit = [p for p in (path, os.environ.get("R1_LIBRARY")) if p]
        for candidate in candidates(path):
            try:
                _loaded = Library(candidate)
                return _loaded
            except OSError as e:
                if candidate in explicit:
                    raise OSError(f"cannot load libr1 from {candidate}: {e}") from e
                errors.append(f"{candidate}: {e}")
        raise OSError(
            "libr1 not found: install it (meson install), or set R1_LIBRARY to the path of "
            "libr1.so.1 (in a build directory: BUILD/lib/libr1.so.1). Tried: " + "; ".join(errors)
        )


def lib() -> Library:
    """The loaded library, loading it with the default search on first use."""
    return _loaded if _loaded is not None else load()


def declared_names() -> Sequence[str]:
    """Names of every function the binding declares."""
    return tuple(DECLARATIONS)

