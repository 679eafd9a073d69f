"""The VFS's error boundary: an exception in a callback becomes a SQLite result code.

Example::

    def _x_read(pfile, buf, amount, offset):
        try:
            ...
        except BaseException as exc:
            return fail(exc, SQLITE_IOERR_READ)

No exception may escape a ctypes callback (it would be printed and turned into
0, ``SQLITE_OK``), so every callback catches ``BaseException`` and hands it here.
The exception is kept per thread for ``xGetLastError`` and for the layer above
(:func:`take_last_error`), which raises it in place of SQLite's generic message.
Mapping is by exception class only.
"""
from __future__ import annotations

import threading

from ..errors import StorageFullError
from .capi import SQLITE_FULL

_errors = threading.local()


def fail(exc: BaseException, code: int) -> int:
    """Remember ``exc`` and return the SQLite code for it (``code`` unless the class
    has its own: ``SQLITE_FULL`` for a full store)."""
    _errors.last = exc
    if isinstance(exc, StorageFullError):
        return SQLITE_FULL
    return code


def last_error() -> BaseException | None:
    """The last exception a callback caught in this thread (not cleared)."""
    return getattr(_errors, "last", None)


def take_last_error() -> BaseException | None:
    """Return and clear the last exception the VFS caught in this thread."""
    exc = getattr(_errors, "last", None)
    _errors.last = None
    return exc
