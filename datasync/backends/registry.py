"""Backends by name: ``datasync.open(name, backend="memory")``.

Example::

    register_backend("s3", lambda name, options: S3Backend(name))
    backend = make_backend("app.dsdb")           # the runtime's default (sqlitefile natively)
    backend = make_backend("scratch", "memory")

``memory`` and ``sqlitefile`` are built in; ``indexeddb`` (Pyodide) is made by
:mod:`datasync.browser`, imported only when asked for; ``postgres`` connects to the
database ``$DATASYNC_POSTGRES`` names (a libpq connection string; unset: the libpq
environment, PGHOST...), store ``name`` in it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidOptionError
from .contract import Backend


@dataclass(frozen=True)
class BackendOptions:
    """What :func:`datasync.open` tells a backend factory: ``strict`` asks for
    storage-level strict durability; ``tabs``: the store is shared by the app's tabs."""

    strict: bool = False
    tabs: bool = False


#: A factory: (database name, options) -> backend.
Factory = Callable[[str, BackendOptions], Backend]


def _memory(name: str, options: BackendOptions) -> Backend:
    from .memory import MemoryBackend

    return MemoryBackend(name)


def _sqlitefile(name: str, options: BackendOptions) -> Backend:
    from .sqlitefile import SqliteFileBackend

    return SqliteFileBackend(name)


def _indexeddb(name: str, options: BackendOptions) -> Backend:
    from ..browser.indexeddb import IndexedDBBackend  # imports `js`: browser only

    return IndexedDBBackend(name, durability="strict" if options.strict else "default",
                            sharing="tabs" if options.tabs else "alone")


def _postgres(name: str, options: BackendOptions) -> Backend:
    import os

    from .postgres import PostgresBackend  # needs psycopg: the [postgres] extra

    return PostgresBackend(os.environ.get("DATASYNC_POSTGRES", ""), name)


_FACTORIES: dict[str, Factory] = {"memory": _memory, "sqlitefile": _sqlitefile,
                                  "indexeddb": _indexeddb, "postgres": _postgres}


def register_backend(kind: str, factory: Factory) -> None:
    """Make ``backend=kind`` open stores with ``factory(name, options)``."""
    _FACTORIES[kind] = factory


def backend_names() -> list[str]:
    return sorted(_FACTORIES)


def make_backend(name: str, kind: str | Backend | None = None, *, strict: bool = False,
                 tabs: bool = False) -> Backend:
    """The backend of database ``name``: ``kind`` is a registered name, an instance
    (returned as is) or None for the runtime's default.

    Raises :class:`~datasync.InvalidOptionError` for an unknown name."""
    if isinstance(kind, Backend):
        return kind
    if kind is None:
        from ..runtime import default_backend

        kind = default_backend()
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise InvalidOptionError(
            f"backend={kind!r} is not known: use one of {', '.join(backend_names())} "
            "or a Backend instance")
    return factory(name, BackendOptions(strict=strict, tabs=tabs))
