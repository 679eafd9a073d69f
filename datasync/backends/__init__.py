"""Storage backends: where a datasync database's blocks live.

Example::

    from datasync.backends import make_backend
    backend = make_backend("app.dsdb")            # SqliteFileBackend natively
    backend = make_backend("scratch", "memory")   # MemoryBackend

The contract every backend fulfils is :mod:`.contract` (core protocol and
capabilities); retained history is :mod:`.history`; names are :mod:`.registry`.
``memory`` keeps blocks in this process; ``sqlitefile`` in one SQLite file on
disk; ``indexeddb`` (browser) in IndexedDB (:mod:`datasync.browser.indexeddb`).
"""
from __future__ import annotations

from .contract import (
    EVERYTHING,
    Backend,
    HistoryFromStore,
    KeepsHistory,
    SyncReads,
    check_writer,
    run_now,
)
from .memory import MemoryBackend
from .registry import BackendOptions, make_backend, register_backend
from .sqlitefile import SqliteFileBackend

__all__ = ["EVERYTHING", "Backend", "BackendOptions", "HistoryFromStore", "KeepsHistory",
           "MemoryBackend", "SqliteFileBackend", "SyncReads", "check_writer", "make_backend",
           "register_backend", "run_now"]
