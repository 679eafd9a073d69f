"""Where a sync server's primaries live: files on this host, or PostgreSQL, shared.

Example::

    place = FilePlace("/srv/datasync")                       # DIR/NAME.dsdb, this process only
    place = PostgresPlace("postgresql://sync@db.internal/app")  # any number of processes
    db = await place.open("notes")
    await place.fresh(db)          # PostgreSQL: load what other processes committed

A :class:`FilePlace` primary has one writer, this process (its file is locked), so
its open :class:`~datasync.Database` is always current. A :class:`PostgresPlace`
primary is written by every server process that serves it: each keeps its open
database only as a cache, and :meth:`PostgresPlace.fresh` checks it against the
stored version before every use (one ``changed_since`` query: the blocks stored
after the version it holds). A process whose flush loses the race to another
(:class:`~datasync.VersionConflictError`: the backend's version check under
``SELECT ... FOR UPDATE``) drops what it had not flushed, loads the winner's
version and applies the write again (:mod:`.primaries`). Commits made by other
processes arrive as PostgreSQL notices (:mod:`datasync.backends.pg_notices`), so a
long poll waiting here hears of them.
"""
from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

from .. import open as open_database
from ..database import Database
from ..errors import BackendError, SyncRequestError, VersionConflictError
from ..sync.protocol import NAME_PATTERN

STORE_SUFFIX = ".dsdb"
#: Times a shared primary is opened again when another process flushed meanwhile.
OPEN_ATTEMPTS = 10
#: ``on_change(name)``: another process committed to ``name`` (None: maybe any).
ChangeCallback = Callable[[str | None], None]


def check_name(name: str) -> str:
    """``name`` if it may name a primary; SyncRequestError otherwise.

    Example: ``check_name("notes")``"""
    if not NAME_PATTERN.match(name):
        raise SyncRequestError(
            f"database name {name!r} is not allowed: use 1 to 128 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit")
    return name


class FilePlace:
    """Primaries as ``DIR/NAME.dsdb`` files, written by this process alone."""

    shared = False

    def __init__(self, data_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)

    def describe(self) -> str:
        return f"data {self.data_dir}"

    def path_of(self, name: str) -> str:
        """The store file of database ``name`` (SyncRequestError for a bad name)."""
        return os.path.join(self.data_dir, check_name(name) + STORE_SUFFIX)

    async def open(self, name: str) -> Database:
        os.makedirs(self.data_dir, exist_ok=True)
        return await open_database(self.path_of(name), durability="strict")

    def start(self, on_change: ChangeCallback) -> None:
        """Nothing to hear: every commit is this process's own."""

    def stop(self) -> None:
        """Nothing to stop."""

    async def fresh(self, db: Database) -> None:
        """Nothing to load: this process is the only writer."""

    async def drop_unflushed(self, db: Database) -> None:
        """Nothing to drop: a failed flush is retried, and no other writer can win."""


class PostgresPlace:
    """Primaries in the PostgreSQL database ``dsn`` (a libpq connection string),
    one store per database name, shared by every server process given it."""

    shared = True

    def __init__(self, dsn: str) -> None:
        from ..backends.postgres import describe_dsn

        self.dsn = dsn
        self._where = describe_dsn(dsn)
        self._notices: object | None = None

    def describe(self) -> str:
        return f"postgres {self._where}"

    async def open(self, name: str) -> Database:
        """Open the store ``name`` (created if missing). Opening reads the file's
        first page: if another process flushes between the store's metadata and that
        read (VersionConflictError), it opens again, up to ``OPEN_ATTEMPTS`` times."""
        from ..backends.postgres import PostgresBackend

        for attempt in range(OPEN_ATTEMPTS):
            try:
                return await open_database(
                    check_name(name), backend=PostgresBackend(self.dsn, name),
                    durability="strict")
            except VersionConflictError:
                if attempt == OPEN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise AssertionError("unreachable")

    def start(self, on_change: ChangeCallback) -> None:
        """Listen for other processes' commits: ``on_change`` runs in the event loop
        this is called from."""
        from ..backends.pg_notices import ChangeNotices

        loop = asyncio.get_running_loop()

        def heard(store: str | None, _version: int | None) -> None:
            try:
                loop.call_soon_threadsafe(on_change, store)
            except RuntimeError:
                pass  # the loop closed: the server is gone

        notices = ChangeNotices(self.dsn, heard)
        notices.start()
        self._notices = notices

    def stop(self) -> None:
        if self._notices is not None:
            self._notices.stop()  # type: ignore[attr-defined]
            self._notices = None

    async def fresh(self, db: Database) -> None:
        """Make ``db`` hold the stored version (in its turn). A commit of this
        process not flushed yet (its flush failed: lost the version race, or
        PostgreSQL was away) is flushed now, or dropped if that fails again: its
        writer was answered with the failure, never with success, so nothing
        acknowledged is dropped. Raises BackendError, StorageUnavailableError
        when PostgreSQL cannot be reached."""
        store = db.store
        async with db.turn():
            if store.has_unflushed:
                try:
                    await store.flush()
                except BackendError:
                    await store.discard_unflushed()
            await store.catch_up()

    async def drop_unflushed(self, db: Database) -> None:
        """Drop what ``db`` committed and could not store (in its turn): after a
        failed write, whose writer is answered with the failure."""
        async with db.turn():
            if db.store.has_unflushed:
                await db.store.discard_unflushed()
