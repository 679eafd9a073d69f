"""Storage backends: where a datasync database's blocks live.

Example::

    from datasync.backends import make_backend
    backend = make_backend("app.dsdb")            # SqliteFileBackend natively
    backend = make_backend("scratch", "memory")   # MemoryBackend

``memory`` keeps blocks in this process; ``sqlitefile`` in one SQLite file on disk;
``indexeddb`` (browser) in IndexedDB.
"""
from __future__ import annotations

from ..errors import InvalidOptionError
from ..platform import IN_PYODIDE
from .base import Backend, run_now
from .memory import MemoryBackend
from .sqlitefile import SqliteFileBackend

__all__ = ["Backend", "MemoryBackend", "SqliteFileBackend", "make_backend", "run_now"]

BACKENDS = ("memory", "sqlitefile", "indexeddb")


def make_backend(name: str, kind: str | Backend | None = None, *, strict: bool = False,
                 tabs: bool = False) -> Backend:
    """Return the backend for database ``name``: ``kind`` is a backend name, an
    instance (returned as is), or None for the platform default. ``strict`` asks
    IndexedDB for strict (flushed to disk) transactions; an IndexedDB store is held
    by this tab alone, or with ``tabs`` by the app's multi-tab opens only."""
    if isinstance(kind, Backend):
        return kind
    if kind is None:
        kind = "indexeddb" if IN_PYODIDE else "sqlitefile"
    if kind == "indexeddb":
        from .indexeddb import IndexedDBBackend  # imports `js`: browser only

        return IndexedDBBackend(name, durability="strict" if strict else "default",
                                sharing="tabs" if tabs else "alone")
    if kind == "memory":
        return MemoryBackend(name)
    if kind == "sqlitefile":
        return SqliteFileBackend(name)
    raise InvalidOptionError(
        f"backend={kind!r} is not known: use one of {', '.join(BACKENDS)} or a Backend instance"
    )
