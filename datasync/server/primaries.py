"""The primary databases a sync server holds: pushes applied once, pulls of blocks.

Example::

    primaries = Primaries("/srv/datasync")       # or Primaries(PostgresPlace(dsn))
    version, results = await primaries.push("notes", check_push_request(body))
    reply = await primaries.pull("notes", PullRequest(since=0))   # a bootstrap
    await primaries.close()

Each database ``NAME`` (:data:`~datasync.sync.protocol.NAME_PATTERN`) is a store of
the server's *place* (:mod:`.places`): ``DIR/NAME.dsdb``, written by this process
alone, or the store ``NAME`` in PostgreSQL, written by every server process that
serves it. It is opened on first use with ``durability="strict"`` and kept open
until :meth:`Primaries.close`; a shared one is checked against the stored version
before each use (``place.fresh``), and a write whose flush loses the version race
to another process is applied again on the winner's version, at most
:data:`RACE_ATTEMPTS` times (then 503: the replica sends it again later).

Exactly once: each write runs in its own transaction, which first looks its id up
in ``_datasync_applied`` (the table the multi-tab leader uses, same shape) and
answers from the stored outcome, else runs the statements in a savepoint and
records the id with its outcome (results, or the error that rolled them back) in
the same transaction. A push is answered once all its writes are durable.
Because the id and the write's changes are flushed together (one PostgreSQL
transaction, for a shared place), a write applied by another process is found by
its id once this one has loaded that version, and is never applied twice.
Records older than ``applied_retention`` seconds (30 days by default) are pruned
at most every ``prune_interval`` seconds: a replica that lost the reply to a push
and resends it after longer than that gets its write applied a second time.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ..database import Database
from ..errors import (
    ConnectionPragmaError,
    DatabaseClosedError,
    BackendError,
    DeposedLeaderError,
    LocalObjectError,
    ReplicaMismatchError,
    StorageUnavailableError,
    SyncUnavailableError,
    TransactionStatementError,
    VersionConflictError,
)
from ..sync.protocol import PullReply, PullRequest, Status, Write
from ..tabs.wire import APPLIED_TABLE, decode_params, result_to_wire
from .places import FilePlace, PostgresPlace, check_name

T = TypeVar("T")

APPLIED_DDL = (f"CREATE TABLE IF NOT EXISTS {APPLIED_TABLE}"
               "(id TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL)")
#: Default seconds an applied write's id is remembered (30 days).
DEFAULT_APPLIED_RETENTION = 30 * 86400.0
#: Times a write (or a pull) of a shared primary is tried on fresh state when
#: other processes keep committing first.
RACE_ATTEMPTS = 30
#: SQLite primary result codes that are the server's trouble, not the write's:
#: BUSY, LOCKED, NOMEM, INTERRUPT, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_SERVER_FAULTS = frozenset({5, 6, 7, 9, 10, 11, 13, 14, 15, 26})
#: The only PRAGMAs a write may set: they change the database, not how the server's
#: one connection runs (hard_heap_limit, max_page_count, cache_size... would stay for
#: every later write of every replica, or of every database).
_SETTABLE_PRAGMAS = frozenset({"user_version", "application_id"})
#: PRAGMAs a write may run with an argument that names what to report on (a table,
#: an index, a count): they only read.
_REPORTING_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"})
#: PRAGMAs a write may read, without an argument (with one, some would set).
_READABLE_PRAGMAS = _SETTABLE_PRAGMAS | _REPORTING_PRAGMAS | {
    "schema_version", "data_version", "page_count", "freelist_count", "collation_list",
    "function_list", "pragma_list", "compile_options"}
#: Tables of the server's own bookkeeping (``_datasync_applied``): no replica SQL may
#: name them, in any action (a trigger or a rename would undo exactly-once).
_PRIVATE_PREFIX = "_datasync_"
#: ... except the app layer's migrations table (datasync.app.migrations): replicas
#: write its rows as ordinary data, in the batch of the migration they record.
_SHARED_TABLES = frozenset({"_datasync_migrations"})
_TEMP_CREATES = frozenset({sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX,
                           sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_VIEW})


def _private(name: str | None) -> bool:
    name = (name or "").lower()
    return name.startswith(_PRIVATE_PREFIX) and name not in _SHARED_TABLES


class _Guard:
    """The SQLite authorizer that runs while a replica's statements do: it refuses
    what would outlive the write on the server's connection, or escape it."""

    def __init__(self) -> None:
        self.refused: Exception | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None,
                 dbname: str | None, source: str | None) -> int:
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            self.refused = TransactionStatementError(
                "a write may not BEGIN, COMMIT, ROLLBACK, SAVEPOINT or RELEASE: the server "
                "runs each write in a transaction of its own; send the statements alone")
        elif action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) or action in _TEMP_CREATES:
            self.refused = LocalObjectError(
                "a write may not ATTACH or DETACH databases or create TEMP objects on the "
                "primary: use ordinary tables")
        elif action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in (
                _SETTABLE_PRAGMAS | _REPORTING_PRAGMAS if arg2 is not None
                else _READABLE_PRAGMAS):
            self.refused = ConnectionPragmaError(
                f"a write may not run PRAGMA {arg1}{'' if arg2 is None else ' = ...'} on the "
                "primary: it would change the server's connection for every later write; "
                "only user_version and application_id may be set")
        elif any(_private(arg) for arg in (arg1, arg2)):
            self.refused = LocalObjectError(
                f"a write may not name {arg1 if _private(arg1) else arg2}: "
                f"the server keeps it ({APPLIED_TABLE}: to apply each write once)")
        else:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


class _Primary:
    """One open primary, with the notice long polls wait on."""

    def __init__(self, name: str, db: Database) -> None:
        self.name, self.db = name, db
        self.notice = asyncio.Event()
        self.pruned_at = 0.0
        self.ready = False  # the applied table exists
        loop = asyncio.get_running_loop()
        self.remove_listener = db.store.add_commit_listener(
            lambda _store: loop.call_soon_threadsafe(self.wake))

    def wake(self) -> None:
        """Wake every long poll waiting now (after a commit, or at shutdown)."""
        notice, self.notice = self.notice, asyncio.Event()
        notice.set()


class Primaries:
    """The primary databases of one place (see the module docstring).

    Example: ``primaries = Primaries("/srv/datasync", applied_retention=7 * 86400)``

    ``place``: a directory (:class:`~.places.FilePlace`) or a place object
    (:class:`~.places.PostgresPlace`); ``applied_retention``: seconds an applied
    write's id is remembered; ``prune_interval``: seconds between prunes of older
    ones (per database)."""

    def __init__(self, place: str | FilePlace | PostgresPlace, *,
                 applied_retention: float = DEFAULT_APPLIED_RETENTION,
                 prune_interval: float = 3600.0) -> None:
        self.place = FilePlace(place) if isinstance(place, str) else place
        self.applied_retention = applied_retention
        self.prune_interval = prune_interval
        self.races_lost = 0  # flushes another process won (shared place), retried
        self._open: dict[str, _Primary] = {}
        self._opening = asyncio.Lock()
        self._closed = False
        self._listening = False

    def check_name(self, name: str) -> str:
        """``name`` if it may name a database; SyncRequestError otherwise.

        Example: ``primaries.check_name("notes")``"""
        return check_name(name)

    async def _get(self, name: str) -> _Primary:
        check_name(name)
        primary = self._open.get(name)
        if primary is not None:
            return primary
        async with self._opening:
            if self._closed:
                raise DatabaseClosedError("the sync server is shutting down; retry later")
            if not self._listening:
                self.place.start(self._heard)
                self._listening = True
            primary = self._open.get(name)
            if primary is None:
                primary = self._open[name] = _Primary(name, await self.place.open(name))
            return primary

    def _heard(self, name: str | None) -> None:
        """Another process committed to ``name`` (None: to any): wake its long polls."""
        for primary in ([self._open.get(name)] if name is not None else list(self._open.values())):
            if primary is not None:
                primary.wake()

    async def _racing(self, primary: _Primary, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` on fresh state; for a shared place, again on the winner's
        version each time another process flushed first (VersionConflictError; a
        DeposedLeaderError when the commit was dropped while its flush waited)."""
        for tries in range(RACE_ATTEMPTS):
            await self.place.fresh(primary.db)
            try:
                return await attempt()
            except (VersionConflictError, DeposedLeaderError):
                if not self.place.shared:
                    raise
                self.races_lost += 1
                await self.place.drop_unflushed(primary.db)
                await asyncio.sleep(random.uniform(0, min(0.002 * 2 ** tries, 0.2)))
            except (BackendError, StorageUnavailableError):
                # PostgreSQL away: answered 503, and the replica sends the write again,
                # so what this attempt committed and could not store is dropped now
                # rather than retried by the flusher (a commit that did land is
                # loaded back by the next fresh(), and then found by its id).
                await self.place.drop_unflushed(primary.db)
                raise
        raise SyncUnavailableError(
            f"database {primary.name!r} is written by other server processes so often that "
            f"this request lost the race {RACE_ATTEMPTS} times; send it again")

    async def status(self, name: str) -> Status:
        """The durable state of database ``name`` (created, empty, if missing).

        Example: ``status = await primaries.status("notes")  # Status(version=7, ...)``

        Raises SyncRequestError for a bad name, DatabaseClosedError once closed."""
        primary = await self._get(name)
        await self.place.fresh(primary.db)
        meta = primary.db.store.meta
        return Status(name, meta.db_id, meta.version, meta.block_size, meta.file_size)

    # -- push ------------------------------------------------------------------------
    async def push(self, name: str, writes: list[Write]) -> tuple[int, list[dict[str, Any]]]:
        """Apply ``writes`` in order, each once, in its own transaction.

        Example: ``version, results = await primaries.push("notes", [Write("w1", stmts)])``

        Returns the durable version holding them all and one result per write: ``{"id", "ok":
        [result, ...]}`` or ``{"id", "error": [name, message]}``. Raises the
        server's own failures (a full disk: StorageFullError...); writes done
        before one are durable and are answered from their record when resent."""
        primary = await self._get(name)
        db = primary.db
        await self._prepare(primary)
        results = []
        for write in writes:
            outcome = await self._racing(primary, lambda: self._applied_durably(db, write))
            results.append({"id": write.id, **outcome})
        if self.place.shared:  # each was durable when answered; later commits are
            return db.store.version, results  # other requests' (their flush may lose)
        return await db.sync(), results

    async def _applied_durably(self, db: Database, write: Write) -> dict[str, Any]:
        """The write applied (or found applied), and durable with all it read: the
        id may have been found in another request's commit whose flush has not
        run yet, and that flush may lose the race. So the answer waits for
        ``sync()``, inside the race loop: if it fails the write is tried again on
        the stored state, where its id is found, or not."""
        outcome = await self._apply(db, write)
        if self.place.shared:
            await db.sync()
        return outcome

    async def _prepare(self, primary: _Primary) -> None:
        """Create the applied table on first use; prune old ids now and then."""
        now = time.time()
        if primary.ready and now - primary.pruned_at < self.prune_interval:
            return

        async def prepare() -> None:
            async with primary.db.transaction():
                primary.db.run(APPLIED_DDL, ())
                primary.db.run(f"DELETE FROM {APPLIED_TABLE} WHERE at < ?",
                               (now - self.applied_retention,))
        await self._racing(primary, prepare)
        primary.ready, primary.pruned_at = True, now

    async def _apply(self, db: Database, write: Write) -> dict[str, Any]:
        async with db.transaction():
            done = db.run(f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?", (write.id,))
            if done.rows:
                return dict(json.loads(done.rows[0][0]))
            db.run("SAVEPOINT datasync_write", ())
            outcome = _run_guarded(db, write)
            if "error" in outcome:
                db.run("ROLLBACK TO datasync_write", ())
            db.run("RELEASE datasync_write", ())
            db.run(f"INSERT INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                   (write.id, json.dumps(outcome), time.time()))
        return outcome

    # -- pull ------------------------------------------------------------------------
    async def pull(self, name: str, request: PullRequest) -> PullReply:
        """The blocks a replica at ``request.since`` lacks, and those it names.

        Example: ``reply = await primaries.pull("notes", PullRequest(since=7, wait=30))``

        All of one durable version (after a long poll of up to ``request.wait`` s while
        the primary is still at ``since``). Raises ReplicaMismatchError when
        ``request.db_id`` names another primary."""
        primary = await self._get(name)
        db, store = primary.db, primary.db.store
        notice = primary.notice  # taken first: a commit from now on wakes it
        await self.place.fresh(db)
        if request.db_id is not None and request.db_id != store.meta.db_id:
            raise ReplicaMismatchError(
                f"this replica follows primary {request.db_id}, but database {name!r} on "
                f"the server is {store.meta.db_id} (it was created again): open another "
                "local name, or delete the local store and its outbox (STORE.outbox) to start over")
        if request.wait > 0 and request.since == store.version and not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(notice.wait(), request.wait)
        return await self._racing(primary, lambda: self._read(primary, request))

    async def _read(self, primary: _Primary, request: PullRequest) -> PullReply:
        db, store = primary.db, primary.db.store
        async with db.turn():
            if store.has_unflushed:
                await store.flush()  # (strict: a commit whose wait has not run yet)
            since = request.since if request.since > 0 else -1
            meta, blocks = await store.blocks_changed_since(since)
            if meta.version != store.version:
                if self.place.shared:  # another process committed since fresh()
                    raise VersionConflictError(f"{primary.name!r} moved on while read")
                raise DatabaseClosedError(
                    f"{primary.name!r} changed under the server (version {meta.version}, "
                    f"expected {store.version}): another process writes it; stop it and retry")
            for i in request.blocks:
                if i < meta.block_count and i not in blocks:
                    blocks[i] = store.read_block(i)
        return PullReply(meta.db_id, meta.version, meta.block_size, meta.file_size, blocks)

    async def close(self) -> None:
        """Wake every long poll, then flush and close every open primary.

        Example: ``await primaries.close()``  (the app's lifespan does it at shutdown)"""
        self._closed = True
        async with self._opening:
            primaries, self._open = list(self._open.values()), {}
        self.place.stop()
        for primary in primaries:
            primary.wake()
            primary.remove_listener()
        for primary in primaries:
            await primary.db.close()

    def wake_all(self) -> None:
        """Answer every long poll now, and let no new one wait (a shutdown starts).

        Example: ``loop.call_soon_threadsafe(primaries.wake_all)``  (from a signal)"""
        self._closed = True
        for primary in list(self._open.values()):
            primary.wake()


def _run_guarded(db: Database, write: Write) -> dict[str, Any]:
    """Run the write's statements (in the caller's turn and savepoint) under the
    guard; returns ``{"ok": [result, ...]}`` or ``{"error": [name, message]}``.
    Raises the server's own failures (see ``_SERVER_FAULTS``, datasync's errors)."""
    guard = _Guard()
    try:
        with _authorizer(db.connection, guard):
            results = [result_to_wire(db.run(sql, decode_params(params)))
                       for sql, params in write.statements]
        return {"ok": results}
    except sqlite3.Error as exc:
        if guard.refused is not None:
            return {"error": [type(guard.refused).__name__, str(guard.refused)]}
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _SERVER_FAULTS:
            raise
        return {"error": [type(exc).__name__, str(exc)]}
    except (ValueError, TypeError, OverflowError) as exc:  # a parameter sqlite3 refuses
        return {"error": [type(exc).__name__, str(exc)]}


@contextlib.contextmanager
def _authorizer(conn: sqlite3.Connection, guard: _Guard) -> Iterator[None]:
    # Setting or removing an authorizer expires every prepared statement, so a
    # statement cached from our own use is authorized again under the guard.
    conn.set_authorizer(guard)
    try:
        yield
    finally:
        conn.set_authorizer(None)
