"""errors: r1 status codes as Python exceptions, each carrying the library's own message."""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _ffi

# Status codes of r1.h (frozen values).
OK = 0
DONE = 1
CANCELLED = 2


class R1Error(Exception):
    """A failure reported by libr1.

    Attributes:
        status: the r1_status code (negative).
        status_name: its symbolic name, e.g. ``"R1_ERR_IO"``.
        message: r1_last_error() of the failing call, e.g. the path that could not be opened.
    """

    status: int = 0

    def __init__(self, status: int, message: str, status_name: Optional[str] = None) -> None:
        self.status = status
        self.message = message
        self.status_name = status_name or f"R1_STATUS_{status}"
        super().__init__(f"{self.status_name}: {message}" if message else self.status_name)


class R1InvalidArgument(R1Error, ValueError):
    """R1_ERR_INVALID_ARG: an argument was NULL, out of range or malformed."""


class R1NoMemory(R1Error, MemoryError):
    """R1_ERR_NO_MEMORY: an allocation failed."""


class R1IOError(R1Error):
    """R1_ERR_IO: reading or writing a file failed."""


class R1Format(R1Error):
    """R1_ERR_FORMAT: a model file is malformed or truncated."""


class R1Checksum(R1Error):
    """R1_ERR_CHECKSUM: stored data does not match its checksum."""


class R1Unsupported(R1Error):
    """R1_ERR_UNSUPPORTED: valid input that this build cannot handle."""


class R1NotFound(R1Error):
    """R1_ERR_NOT_FOUND: a named thing (file, tensor, backend, token) does not exist."""


class R1BufferTooSmall(R1Error):
    """R1_ERR_BUFFER_TOO_SMALL: never seen by binding users (buffers are grown)."""


class R1OutOfRange(R1Error, IndexError):
    """R1_ERR_OUT_OF_RANGE: an index or token id is outside its valid range."""


class R1ContextFull(R1Error):
    """R1_ERR_CONTEXT_FULL: the session's context length would be exceeded."""


class R1BadState(R1Error):
    """R1_ERR_BAD_STATE: the call is not valid in the object's current state."""


class R1InvalidUTF8(R1Error, ValueError):
    """R1_ERR_INVALID_UTF8: text is not valid UTF-8."""


class R1BackendError(R1Error):
    """R1_ERR_BACKEND: a compute backend or device failed."""


class R1Budget(R1Error):
    """R1_ERR_BUDGET: a memory budget is too small for the request."""


class R1Internal(R1Error):
    """R1_ERR_INTERNAL: a bug in libr1."""


#: status code -> exception class; codes not listed (a newer library) raise R1Error itself.
ERRORS: Dict[int, Type[R1Error]] = {
    -1: R1InvalidArgument,
    -2: R1NoMemory,
    -3: R1IOError,
    -4: R1Format,
    -5: R1Checksum,
    -6: R1Unsupported,
    -7: R1NotFound,
    -8: R1BufferTooSmall,
    -9: R1OutOfRange,
    -10: R1ContextFull,
    -11: R1BadState,
    -12: R1InvalidUTF8,
    -13: R1BackendError,
    -14: R1Budget,
    -15: R1Internal,
}
for _code, _cls in ERRORS.items():
    _cls.status = _code


def status_name(status: int) -> str:
    """The symbolic name of a status code, from the library (``"R1_ERR_IO"``)."""
    return _ffi.lib().r1_status_name(status).decode()


def error(status: int) -> R1Error:
    """The exception for a failure *status*, with this thread's r1_last_error() message.

    Must be called right after the failing call, on the same thread, before any other r1 call
    but r1_status_name() (which leaves the message alone).
    """
    lib = _ffi.lib()
    message = (lib.r1_last_error() or b"").decode("utf-8", "replace")
    name = lib.r1_status_name(status).decode()
    return ERRORS.get(status, R1Error)(status, message, name)


def check(status: int) -> int:
    """Raise the matching R1Error when *status* is a failure; else return it (OK, DONE, ...)."""
    if status < 0:
        raise error(status)
    return status
