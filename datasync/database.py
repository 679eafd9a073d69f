"""The async database API.

Example::

    import datasync
    db = await datasync.open("app.dsdb")                 # created if missing
    await db.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
    await db.execute("INSERT INTO notes(body) VALUES (?)", ("hello",))
    rows = await db.query("SELECT * FROM notes")         # [{'id': 1, 'body': 'hello'}]
    async with db.transaction():
        await db.execute("UPDATE notes SET body = upper(body)")
    version = await db.sync()                            # durable up to here
    await db.close()

Statements run on one SQLite connection through the datasync VFS; a
:meth:`Database.transaction` holds that connection for the task that opened it
(other tasks wait). Durability:

* ``relaxed`` (default): a commit returns at once; committed blocks are flushed
  soon after, many commits per backend transaction (group commit). ``sync()``
  waits until everything committed so far is durable.
* ``strict``: an awaited write returns only once its flush is durable.
"""
from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from . import cdc as _cdc
from .cdc_connection import CapturingConnection, run_ddl
from . import encryption, runtime, vfs
from .backends import Backend, KeepsHistory, make_backend
from .backends.contract import no_history
from .blockstore import DEFAULT_CACHE_BYTES, BlockStore
from .errors import DatabaseClosedError, DatasyncError, InvalidOptionError, StoreBusyError
from .encryption import EncryptionKey
from .format import DEFAULT_BLOCK_SIZE
from .options import check_open_options, pragma_statements

_RETRY_MIN, _RETRY_MAX = 0.05, 5.0

#: (database, task) of the transaction the current context is inside, if any. The
#: task is part of it: a task created inside a transaction inherits the context,
#: but not the transaction.
_in_transaction: contextvars.ContextVar[tuple["Database", Any] | None] = contextvars.ContextVar(
    "datasync_transaction", default=None
)


@dataclass
class Result:
    """What :meth:`Database.execute` returns."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None


@dataclass
class _Shared:
    store: BlockStore
    key: str
    users: int = 0


_shared: dict[str, _Shared] = {}
#: Stores being opened, by key: a second open of the same store waits for the first
#: (then shares it) instead of opening it twice.
_opening: dict[str, asyncio.Future[None]] = {}


async def open(
    name: str,
    *,
    backend: str | Backend | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    durability: str = "relaxed",
    flush_interval: float = 0.0,
    create: bool = True,
    retain_versions: int = 0,
    cdc: bool = False,
    cdc_retention: float | None = None,
    encryption_key: EncryptionKey | None = None,
    resident: bool = False,
    pragmas: dict[str, Any] | None = None,
    **unknown: Any,
) -> "Database":
    """Open (or create) the datasync database ``name``.

    Example: ``db = await datasync.open("app.dsdb", durability="strict")``

    ``name`` is natively the path of the store file. ``backend`` is ``"sqlitefile"``
    (native default), ``"memory"`` or a :class:`~datasync.backends.Backend`.
    ``block_size`` applies when the store is created (a power of two, 512..65536);
    ``cache_bytes`` bounds the clean-block cache; ``durability`` is ``"relaxed"`` or
    ``"strict"``; ``flush_interval`` (seconds) delays relaxed flushes to batch more
    commits. ``retain_versions=N`` keeps the last N versions restorable
    (:meth:`Database.restore`). Opening the same store twice in one process shares it.

    ``cdc=True`` turns on change data capture (see :meth:`Database.changes` and
    :mod:`datasync.cdc`); ``cdc_retention`` (seconds, ``None``: forever) is how long
    captured changes are kept once every registered consumer acknowledged them.

    ``encryption_key`` (32 raw bytes, or a passphrase ``str`` stretched with
    PBKDF2-HMAC-SHA256) encrypts every block with AES-256-GCM: a new store is
    created encrypted; an encrypted store needs its key (``WrongKeyError``
    otherwise, raised before anything is written); a key for an unencrypted store
    raises ``InvalidOptionError`` (encrypt it with :meth:`Database.rekey`).

    ``pragmas`` (``{"foreign_keys": True, "cache_size": -4000}``) are set on every
    connection this database makes, its own and :meth:`Database.connect`'s (with
    tabs, every tab's: give every tab the same ones).

    ``resident=True`` holds every block in memory (always so in the browser); the
    multi-tab layer asks for it, since another tab's flushes change the backend
    under a follower.
    Example: ``db = await datasync.open("app.dsdb", encryption_key="my passphrase")``

    Every option is checked before anything is created: a bad value or an unknown
    name raises :class:`~datasync.InvalidOptionError` (listing the valid names).
    A missing store with ``create=False`` raises :class:`~datasync.StoreNotFoundError`.
    """
    given = {k: v for k, v in locals().items() if k not in ("name", "unknown")}
    check_open_options({**given, **unknown})  # before anything is made or opened
    if backend is not None and not isinstance(backend, (str, Backend)):
        raise InvalidOptionError(
            f"backend={backend!r} is not allowed: use a backend name or a Backend")
    be = make_backend(name, backend, strict=durability == "strict")
    if retain_versions and not isinstance(be, KeepsHistory):
        raise no_history(be)
    key = be.key
    while key in _opening:  # the same store, being opened by another task
        await asyncio.wait([_opening[key]])
    shared = _shared.get(key)
    if shared is None:
        if vfs.attached(key) is not None:
            # Opened by the VFS for plain sqlite3 connections: if they are all
            # closed, finish closing it (its last flush may have failed); if not,
            # StoreBusyError says so.
            vfs.close_idle(key)
        if vfs.attached(key) is not None:
            raise StoreBusyError(
                f"{be.location} is served to sqlite3 connections by another owner in "
                "this process; close those connections first")
        opening = _opening[key] = asyncio.get_running_loop().create_future()
        try:
            store = await BlockStore.open(
                be, block_size=block_size, cache_bytes=cache_bytes, create=create,
                codecs=encryption.codecs(encryption_key), resident=resident,
            )
            try:
                vfs.register()
                vfs.attach(key, store)
            except BaseException:
                await store.close()
                raise
            shared = _shared[key] = _Shared(store, key)
        finally:
            del _opening[key]
            opening.set_result(None)
    else:
        # Shared with an earlier open: the key must open the store all the same.
        await encryption.open_codec(shared.store.meta, encryption_key,
                                    where=shared.store.backend.location)
    shared.store.retain_versions = max(shared.store.retain_versions, retain_versions)
    shared.users += 1
    try:
        db = Database(name, shared, durability=durability, flush_interval=flush_interval,
                      pragmas=pragma_statements(pragmas or {}))
    except BaseException:
        await _release(shared)
        raise
    if cdc:
        try:
            await db.enable_cdc(retention=cdc_retention)
        except BaseException:
            await db.close()
            raise
    return db


async def _release(shared: _Shared) -> None:
    shared.users -= 1
    if shared.users > 0:
        return
    await shared.store.flush()  # raises before anything is released: nothing lost
    _shared.pop(shared.key, None)
    # A connection from db.connect() still open in another thread keeps the store:
    # the VFS then flushes and closes it with that connection's last file.
    if vfs.detach(shared.key, hand_over=True):
        await shared.store.close()


class Database:
    """An open datasync database. Create it with :func:`datasync.open`."""

    def __init__(
        self, name: str, shared: _Shared, *, durability: str, flush_interval: float,
        pragmas: list[str] | None = None,
    ) -> None:
        self.name = name
        self._pragmas = pragmas or []
        self.durability = durability
        self.flush_interval = flush_interval
        self._shared = shared
        self._store = shared.store
        # The database's own connection runs statements as given (autocommit).
        self._conn = self._new_connection(check_same_thread=False, isolation_level=None)
        #: Connections from connect(): (connection, thread that made it, whether
        #: only that thread may use it).
        self._handed_out: list[tuple[sqlite3.Connection, int, bool]] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._flush_task: asyncio.Task[None] | None = None
        self._retry_delay = _RETRY_MIN
        self._remove_listener = self._store.add_commit_listener(self._on_commit)
        #: Change data capture: on or off, and how long acknowledged changes are kept.
        self._cdc = False
        self._cdc_retention: float | None = None
        #: Wake-ups of waiting change streams, called by close() (they then end).
        self._close_wakers: set[Callable[[], None]] = set()
        #: Flush when the page is hidden or unloaded (Pyodide; a no-op natively).
        self._remove_lifecycle = runtime.lifecycle_flush(self._store.flush)

    def _new_connection(self, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", vfs.Connection)
        vfs.take_last_error()
        try:
            conn = sqlite3.connect(vfs.uri(self._shared.key), uri=True, **kwargs)
        except sqlite3.Error as exc:
            _raise_translated(exc)  # a damaged first page: CorruptBlockError, say
        try:
            # Called by the change-capture triggers; registered on every connection
            # so that a store captured once stays writable by each of them.
            store = self._store

            def next_version() -> int:
                return store.next_version

            conn.create_function(_cdc.VERSION_FUNCTION, 0, next_version)
            conn.create_function(_cdc.REAL_FUNCTION, 1, _cdc.real_json, deterministic=True)
            if isinstance(conn, CapturingConnection):  # connect() with capture on
                conn.next_version = next_version  # type: ignore[method-assign]
            # The rollback journal only has to serve ROLLBACK: atomicity and
            # durability come from the block store. In memory it costs no VFS calls
            # (measured in Pyodide: autocommit point reads 23 -> 17 ms per 1000).
            conn.execute("PRAGMA journal_mode=MEMORY")
            for statement in self._pragmas:  # the user's (open(pragmas=...))
                conn.execute(statement)
        except sqlite3.Error as exc:
            conn.close()  # nothing of a connection that never became ready stays open
            _raise_translated(exc)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- state -----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def version(self) -> int:
        """The durable version of the store."""
        return self._store.version

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.name!r} is closed; open it again")

    # -- statements ------------------------------------------------------------
    def _owns_transaction(self) -> bool:
        return _in_transaction.get() == (self, asyncio.current_task())

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Hold the connection, unless this task's transaction already holds it."""
        self._check_open()
        if self._owns_transaction():
            yield
            return
        async with self._lock:
            self._check_open()
            yield

    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Result:
        vfs.take_last_error()
        if self._cdc and _cdc.is_ddl(sql):
            return self._run_ddl(sql, params)
        try:
            cur = self._conn.execute(sql, params)
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            _raise_translated(exc)
        columns = [d[0] for d in cur.description] if cur.description else []
        return Result(columns, rows, cur.rowcount, cur.lastrowid)

    def _run_ddl(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Result:
        """A schema change with capture on: in one transaction with its ``schema``
        changes and the rebuilt triggers."""
        store = self._store
        try:
            cur = run_ddl(self._conn, lambda: self._conn.execute(sql, params),
                          lambda: store.next_version)
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            _raise_translated(exc)
        columns = [d[0] for d in cur.description] if cur.description else []
        return Result(columns, rows, cur.rowcount, cur.lastrowid)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        """Run one statement; returns its columns, rows, rowcount and lastrowid.

        Example: ``res = await db.execute("SELECT id FROM t WHERE x > ?", (3,))``
        """
        async with self._turn():
            before = self._store.commits_in_this_thread()  # ours: counted in our turn
            result = self._run(sql, params)
            committed = self._store.commits_in_this_thread() != before
        await self._after_write(committed)
        return result

    async def executemany(
        self, sql: str, seq_of_params: Iterable[Sequence[Any] | dict[str, Any]]
    ) -> Result:
        """Run ``sql`` once per parameter set, atomically (in one transaction).

        Example: ``await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])``
        """
        async with self._turn():
            before = self._store.commits_in_this_thread()
            own_tx = not self._conn.in_transaction
            vfs.take_last_error()
            try:
                if own_tx:
                    self._conn.execute("BEGIN")
                cur = self._conn.executemany(sql, seq_of_params)
                if own_tx:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if own_tx and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                _raise_translated(exc)
            except BaseException:
                if own_tx and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            result = Result([], [], cur.rowcount, cur.lastrowid)
            committed = self._store.commits_in_this_thread() != before
        await self._after_write(committed)
        return result

    async def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Run a statement and return its rows as dictionaries.

        Example: ``[{'id': 1}] == await db.query("SELECT 1 AS id")``
        """
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    @asynccontextmanager
    async def transaction(self, mode: str = "DEFERRED") -> AsyncIterator["Database"]:
        """A transaction: committed when the block ends, rolled back on an exception.

        Example::

            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")
                await db.execute("INSERT INTO t VALUES (2)")

        ``mode`` is DEFERRED, IMMEDIATE or EXCLUSIVE. Nested, it is a savepoint.
        """
        mode = mode.upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise InvalidOptionError("mode must be DEFERRED, IMMEDIATE or EXCLUSIVE")
        if self._owns_transaction():
            async with self._savepoint():
                yield self
            return
        async with self._turn():
            before = self._store.commits_in_this_thread()
            token = _in_transaction.set((self, asyncio.current_task()))
            try:
                self._run(f"BEGIN {mode}", ())
                try:
                    yield self
                    self._run("COMMIT", ())
                except BaseException:
                    # Also when COMMIT itself failed (busy, full): never leave the
                    # connection inside a transaction others would silently join.
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            finally:
                _in_transaction.reset(token)
            committed = self._store.commits_in_this_thread() != before
        await self._after_write(committed)

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        name = f"datasync_sp_{id(asyncio.current_task())}"
        self._run(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self._run(f"RELEASE {name}", ())

    # -- durability --------------------------------------------------------------
    async def _after_write(self, committed: bool) -> None:
        """Strict durability: once a statement of ours committed (counted in our
        turn, so no other task's commit), wait until it is durable. A statement that
        committed nothing (a read) never waits for, or fails because of, a flush."""
        if self.durability == "strict" and committed and not self._owns_transaction():
            await self._store.flush()

    def _on_commit(self, store: BlockStore) -> None:
        """Commit-point listener (runs after SQLite's unlock, maybe in any thread,
        with no lock of the store held)."""
        if self.durability == "strict" and store.flushes_sync:
            # Commits from plain connections are durable too; a failure is recorded
            # (stats(), the datasync logger) and the background flusher retries.
            if store.flush_in_background():
                return
        try:
            self._loop.call_soon_threadsafe(self._ensure_flusher)
        except RuntimeError:
            pass  # the loop is closed: close() or the exit hook flushes

    def _ensure_flusher(self) -> None:
        if self._closed or (self._flush_task and not self._flush_task.done()):
            return
        self._flush_task = self._loop.create_task(self._flusher())

    async def _flusher(self) -> None:
        if self.flush_interval:
            await asyncio.sleep(self.flush_interval)
        while not self._closed and self._store.has_unflushed:
            try:
                await self._store.flush()
                self._retry_delay = _RETRY_MIN
            except DatasyncError:
                # Kept dirty; stats() shows the error. Retry with backoff.
                await asyncio.sleep(self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)

    async def sync(self) -> int:
        """Flush everything committed so far; returns the durable version.

        Example: ``version = await db.sync()``
        """
        self._check_open()
        return await self._store.flush()

    # -- change data capture ---------------------------------------------------------
    async def enable_cdc(self, *, retention: float | None = None, install: bool = True) -> None:
        """Capture every committed change from now on (what ``open(cdc=True)`` does).

        Example: ``await db.enable_cdc(retention=86400)``

        Creates the change log and the triggers (one write transaction) and prunes
        what ``retention`` allows. ``install=False`` only turns on the maintenance of
        triggers on schema changes (the multi-tab leader installs them itself).
        """
        self._cdc = True
        self._cdc_retention = retention
        if not install:
            return
        async with self.transaction("IMMEDIATE"):
            _cdc.refresh_triggers(self._conn)
            await _cdc.prune(self, retention)

    async def changes(
        self,
        tables: Iterable[str] | None = None,
        since: int | None = None,
        *,
        consumer: str | None = None,
        follow: bool = True,
        batch: int = 200,
    ) -> AsyncIterator[_cdc.Change]:
        """Stream captured changes in commit order, then wait for new ones.

        Example::

            async for change in db.changes(tables=["notes"], since=last_seq):
                print(change.seq, change.op, change.key, change.old, change.new)

        ``since``: yield changes with a larger ``seq`` (default: all kept). With
        ``consumer`` and no ``since`` it resumes after what that consumer acknowledged
        (see :meth:`ack`), registering it if new (pruning then keeps what it has not
        acknowledged). ``follow=False`` stops at the end of the log instead of waiting.
        A change is streamed once committed; it is durable once ``db.version >=
        change.version`` (in relaxed mode a crash before that loses it). A waiting
        stream ends when the database is closed.
        """
        self._check_open()
        loop = asyncio.get_running_loop()

        def subscribe(wake: Callable[[], None]) -> Callable[[], None]:
            def on_commit(store: BlockStore) -> None:
                try:
                    loop.call_soon_threadsafe(wake)
                except RuntimeError:
                    pass  # the loop is closed

            remove = self._store.add_commit_listener(on_commit)
            self._close_wakers.add(wake)
            return lambda: (remove(), self._close_wakers.discard(wake))

        async def register(name: str) -> None:
            await _cdc.register_consumer(self, name)

        async for change in _cdc.stream(self, subscribe, tables=tables, since=since,
                                        consumer=consumer, follow=follow, batch=batch,
                                        closed=lambda: self._closed, register=register):
            yield change

    async def ack(self, consumer: str, seq: int) -> None:
        """Consumer ``consumer`` is done with every change up to ``seq``; pruning may
        now drop them (once older than the retention).

        Example: ``await db.ack("search-index", change.seq)``
        """
        async with self.transaction():
            await _cdc.ack(self, consumer, seq)
            await _cdc.prune(self, self._cdc_retention)

    async def prune_changes(self) -> int:
        """Delete captured changes older than the retention and acknowledged by every
        registered consumer; returns how many. ``ack`` and opening also prune.

        Example: ``removed = await db.prune_changes()``
        """
        return await _cdc.prune(self, self._cdc_retention)

    # -- import / export -----------------------------------------------------------
    async def export(self) -> bytes:
        """The database as a standard SQLite file image (any sqlite3 opens it).

        Example: ``open("copy.sqlite", "wb").write(await db.export())``
        """
        async with self._turn():
            image = self._serialize()
            captured = _cdc.has_triggers(self._conn)
        # The capture triggers call a function only datasync registers: without
        # them, any sqlite3 can write to the exported copy.
        return _cdc.strip_triggers(image) if captured else image

    def _serialize(self) -> bytes:
        """The database's bytes. sqlite3_serialize() turns a page it cannot read into
        zeros and says nothing, so the VFS's error (a missing or damaged block) is
        raised here instead of a silently zeroed copy."""
        vfs.take_last_error()
        image = self._conn.serialize()
        error = vfs.take_last_error()
        if isinstance(error, DatasyncError):
            raise error
        return image

    async def import_(self, data: bytes, *, _reason: dict[str, Any] | None = None) -> None:
        """Replace the whole database with a standard SQLite file image, atomically.

        Example: ``await db.import_(open("app.sqlite", "rb").read())``

        With change data capture on, the change log and consumers carry over (the
        image's own are replaced) and a ``reset`` change records the replacement.
        """
        from .sqlite_image import as_rollback_image

        image = as_rollback_image(data)
        async with self._turn():
            before = self._store.commits_in_this_thread()
            if self._conn.in_transaction:
                raise DatasyncError("import_() cannot run inside a transaction")
            source = sqlite3.connect(":memory:")
            try:
                source.deserialize(image)
                if self._cdc:
                    _cdc.carry_log(self._conn, source, _reason or {"reason": "import"},
                                   self._store.next_version)
                vfs.take_last_error()
                try:
                    source.backup(self._conn)
                except sqlite3.Error as exc:
                    _raise_translated(exc)
            finally:
                source.close()
            if self._cdc:  # the image brings its own tables (and maybe change log)
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    _cdc.refresh_triggers(self._conn)
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    _raise_translated(exc)
            committed = self._store.commits_in_this_thread() != before
        await self._after_write(committed)

    async def backup(self, target: str, **options: Any) -> dict[str, Any]:
        """Copy this database into a new datasync database ``target`` while it stays
        in use: a consistent snapshot is taken in one turn (writes wait only for
        that in-memory copy), then written to ``target`` and flushed.

        Example: ``await db.backup("nightly.dsdb")``  (``options`` go to :func:`open`)

        Refuses a ``target`` that already holds a database. Returns ``{"target",
        "bytes", "source_version", "target_version"}``; ``source_version`` is the
        durable version when the snapshot was taken (it also holds any commits made
        before the snapshot and not flushed yet).
        """
        self._check_open()
        async with self._turn():
            if self._conn.in_transaction:
                raise DatasyncError("backup() cannot run inside a transaction")
            image = self._serialize()
            source_version = self._store.version
            captured = _cdc.has_triggers(self._conn)
        if captured and not options.get("cdc"):
            image = _cdc.strip_triggers(image)  # (they need cdc=True where they run)
        # Opened plain: with cdc=True opening would create the log, and the copy
        # brings its own log and triggers (kept when ``cdc=True`` is asked for).
        dest = await open(target, **{k: v for k, v in options.items()
                                     if k not in ("cdc", "cdc_retention")})
        try:
            if dest._store is self._store:
                raise DatasyncError(f"cannot back {self.name!r} up into itself")
            if dest._store.meta.file_size or dest._store.size:
                raise DatasyncError(
                    f"{target!r} already holds a database: back up into a new one")
            await dest.import_(image)
            target_version = await dest.sync()
        finally:
            await dest.close()
        return {"target": target, "bytes": len(image), "source_version": source_version,
                "target_version": target_version}

    # -- point-in-time restore -------------------------------------------------------
    async def versions(self) -> list[dict[str, Any]]:
        """The versions :meth:`restore` can return to, oldest first (the durable
        current one last): ``{"version", "file_size", "epoch"}`` each.

        Example: ``[v["version"] for v in await db.versions()]``
        """
        self._check_open()
        return [{"version": m.version, "file_size": m.file_size, "epoch": m.epoch}
                for m in await self._store.retained()]

    async def restore(self, version: int) -> int:
        """Return the database to a retained ``version``, atomically: the restored
        content becomes a new version (so the restore itself can be undone while it
        is retained). Returns that new durable version.

        Example: ``await db.restore((await db.versions())[0]["version"])``

        Raises :class:`~datasync.VersionNotRetainedError` for a version no longer
        (or never) kept; the database is then unchanged.
        """
        self._check_open()
        await self.sync()  # so the durable version is the current one
        image = await self._store.image_at(int(version))
        await self.import_(image, _reason={"reason": "restore", "version": int(version)})
        return await self.sync()

    # -- encryption -----------------------------------------------------------------
    @property
    def encrypted(self) -> bool:
        """True if the store's blocks are encrypted."""
        return "encryption" in self._store.meta.extra

    async def rekey(self, new_key: EncryptionKey | None) -> int:
        """Encrypt every block under ``new_key`` (32 raw bytes or a passphrase; a
        fresh salt), atomically: all blocks and the new metadata in ONE flush, so
        the store opens with either the old key or the new one, never a mix.
        ``None`` decrypts the store. Also encrypts an unencrypted store. Returns the
        durable version.

        Example: ``await db.rekey("a new passphrase")``
        """
        async with self._turn():
            if self._conn.in_transaction:
                raise DatasyncError("rekey() cannot run inside a transaction")
            codec, extra = await encryption.rekey_codec(self._store.meta, new_key)
            return await self._store.rekey(codec, extra)

    # -- other connections, stats, closing -----------------------------------------
    def connect(self, **kwargs: Any) -> sqlite3.Connection:
        """A plain ``sqlite3.Connection`` on the same store, for synchronous code.

        Example: ``pandas.read_sql("SELECT * FROM t", db.connect())``

        It behaves as ``sqlite3.connect`` does with the same arguments (by default
        an implicit transaction before INSERT/UPDATE/DELETE, committed by
        ``commit()`` or ``with conn:``; pass ``isolation_level=None`` for
        autocommit, or Python 3.12's ``autocommit=``). Its commits reach the same
        store (flushed like the database's own). It is closed by :meth:`close` if
        still open. With ``cdc=True`` it is a
        :class:`~datasync.cdc_connection.CapturingConnection`: its schema changes
        are captured as the database's own are (unless you pass a ``factory``).
        """
        self._check_open()
        if self._cdc and "factory" not in kwargs:
            # Schema changes made through it are captured too (cdc_connection.py).
            kwargs["factory"] = CapturingConnection
        conn = self._new_connection(**kwargs)
        self._handed_out.append(
            (conn, threading.get_ident(), bool(kwargs.get("check_same_thread", True))))
        return conn

    def stats(self) -> dict[str, Any]:
        """Counters: version, blocks, dirty blocks, cache hits/misses, flushes..."""
        s = self._store.stats()
        s.update(
            name=self.name,
            backend=type(self._store.backend).__name__,
            location=self._store.backend.location,
            durability=self.durability,
            encrypted=self.encrypted,
        )
        return s

    async def close(self) -> None:
        """Flush and close. If the final flush fails the error is raised and the
        database stays open (nothing committed is lost); call close() again.

        Connections from :meth:`connect` made in this thread are closed too. One
        made in another thread, or with ``check_same_thread=False`` (another thread
        may be using it: closing it then could crash the process), is left to its
        users: it keeps working, and the VFS flushes the store and closes it with
        the last such connection. A store that can only flush asynchronously
        (IndexedDB) cannot be handed over like that: close raises
        :class:`~datasync.StoreBusyError` first, and nothing changes."""
        if self._closed:
            return
        if self._owns_transaction():
            raise DatasyncError("close() inside transaction(): end the transaction first")
        async with self._lock:
            await self._store.flush()
            here = threading.get_ident()
            closable = [c for c, thread, same in self._handed_out if same and thread == here]
            # Files that stay open once ours close (each connection holds one).
            kept = vfs.open_files(self._shared.key) - 1 - len(closable)
            if kept > 0 and not self._store.flushes_sync and not runtime.SINGLE_THREAD:
                raise StoreBusyError(
                    f"{kept} other connection(s) are still open on {self.name!r} (from "
                    "db.connect() in another thread or with check_same_thread=False, or "
                    "plain sqlite3 ones), and this store cannot be flushed from their "
                    "threads: close them (in their threads) before closing the database")
            self._closed = True
            self._remove_listener()
            for wake in list(self._close_wakers):
                wake()
            self._remove_lifecycle()
            if self._flush_task and not self._flush_task.done():
                self._flush_task.cancel()
            # With a single thread no other can be using one: close them all.
            for conn in (c for c, _, _ in self._handed_out) if runtime.SINGLE_THREAD else closable:
                conn.close()
            self._conn.close()
            await _release(self._shared)

    async def __aenter__(self) -> "Database":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"version {self.version}"
        return f"<datasync.Database {self.name!r} {state}>"


def _raise_translated(exc: sqlite3.Error) -> None:
    """The error boundary of this layer: prefer the named error the VFS caught
    (``CorruptBlockError``, ``StorageFullError``...) over SQLite's generic message."""
    cause = vfs.take_last_error()
    if isinstance(cause, DatasyncError):
        raise cause from exc
    raise exc
