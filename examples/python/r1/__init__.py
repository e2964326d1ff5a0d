"""r1: a pure-Python (ctypes) binding of libr1, which runs DeepSeek-R1-class models locally.

    import r1
    with r1.Model("model.r1m") as model:
        for text, kind in model.session().generate("Why is the sky blue?", max_tokens=256):
            print(text, end="", flush=True)

The library is found, in order, from load_library(path), $R1_LIBRARY,
ctypes.util.find_library("r1"), the loader's search for libr1.so.1, then
``pkg-config --variable=libdir r1``. Failures raise an R1Error subclass carrying .status and the
library's message (r1_last_error()).
"""

from __future__ import annotations

from typing import Optional

from . import _ffi
from .core import (
    Backend,
    Chat,
    ExpertCacheStats,
    GenOptions,
    Model,
    ModelInfo,
    PLAN_IN_MEMORY,
    PLAN_NO_FIT,
    PLAN_STREAMS,
    Plan,
    Sampler,
    Session,
    Step,
    backends,
    convert,
    describe_backend,
    generate_many,
    plan,
    version,
    version_number,
)
from .errors import (
    ERRORS,
    R1BackendError,
    R1BadState,
    R1BufferTooSmall,
    R1Budget,
    R1Checksum,
    R1ContextFull,
    R1Error,
    R1Format,
    R1Internal,
    R1InvalidArgument,
    R1InvalidUTF8,
    R1IOError,
    R1NoMemory,
    R1NotFound,
    R1OutOfRange,
    R1Unsupported,
    status_name,
)


def load_library(path: Optional[str] = None) -> str:
    """Load libr1 now, from *path* if given (else the default search); returns the path used.

    Optional: the first use of any other function loads the library with the default search.
    """
    return _ffi.load(path).path


def library_path() -> str:
    """The path libr1 was loaded from (loading it if needed)."""
    return _ffi.lib().path


__all__ = [
    "Backend",
    "Chat",
    "ERRORS",
    "ExpertCacheStats",
    "GenOptions",
    "Model",
    "ModelInfo",
    "PLAN_IN_MEMORY",
    "PLAN_NO_FIT",
    "PLAN_STREAMS",
    "Plan",
    "R1BackendError",
    "R1BadState",
    "R1BufferTooSmall",
    "R1Budget",
    "R1Checksum",
    "R1ContextFull",
    "R1Error",
    "R1Format",
    "R1IOError",
    "R1Internal",
    "R1InvalidArgument",
    "R1InvalidUTF8",
    "R1NoMemory",
    "R1NotFound",
    "R1OutOfRange",
    "R1Unsupported",
    "Sampler",
    "Session",
    "Step",
    "backends",
    "convert",
    "describe_backend",
    "generate_many",
    "library_path",
    "load_library",
    "plan",
    "status_name",
    "version",
    "version_number",
]
