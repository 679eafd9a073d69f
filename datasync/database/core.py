"""The database core: its connection, its turn, its state, and closing it.

Example::

    db = await datasync.open("app.dsdb")
    async with db.turn():                  # hold the connection (layers built on it)
        result = db.run("SELECT 1", ())
    conn = db.connect()                    # a plain sqlite3.Connection on the store

Statements run on one SQLite connection through the datasync VFS; a transaction
holds that connection for the task that opened it (other tasks wait for their
turn). This is the internal API the database's features (:mod:`.statements`,
:mod:`.durability`, :mod:`.capture`, :mod:`.copies`) and the layers above (tabs)
build on: :attr:`DatabaseCore.store`, :attr:`DatabaseCore.connection`,
:meth:`DatabaseCore.turn`, :meth:`DatabaseCore.run`, :meth:`DatabaseCore.on_close`.
"""
from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import cdc as _cdc
from .. import runtime, vfs
from ..cdc.connection import CapturingConnection, run_ddl
from ..errors import (
    BusyTimeoutError,
    DatabaseClosedError,
    DatasyncError,
    StoreBusyError,
    TransactionActiveError,
)

if TYPE_CHECKING:
    from .opening import Shared

#: (database, task) of the transaction the current context is inside, if any. The
#: task is part of it: a task created inside a transaction inherits the context,
#: but not the transaction.
_in_transaction: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "datasync_transaction", default=None)


@dataclass
class Result:
    """What :meth:`Database.execute` returns."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None



def raise_translated(exc: sqlite3.Error) -> None:
    """The error boundary of this layer: prefer the named error the VFS caught
    (``CorruptBlockError``, ``StorageFullError``...) over SQLite's generic message."""
    cause = vfs.take_last_error()
    if isinstance(cause, DatasyncError):
        raise cause from exc
    raise exc


class DatabaseCore:
    """The connection, turn and state of a :class:`~datasync.Database`."""

    def __init__(
        self, name: str, shared: "Shared", *, durability: str, flush_interval: float,
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
        #: Transactions begun with begin() (explicit.Transaction) holding the lock:
        #: while one is open, other waits are bounded by ``busy_timeout``.
        self._explicit_open = 0
        self.busy_timeout = 5.0
        self._generation = self._store.generation  # see _after_fork()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._init_durability()  # type: ignore[attr-defined]
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
            raise_translated(exc)  # a damaged first page: CorruptBlockError, say
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
            raise_translated(exc)
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

    @property
    def commits(self) -> int:
        """A count that moves at every commit point of this database's copy (any of
        its connections; an install or reset of its history too), synchronously, at
        the commit: before ``on_change`` announces it. No I/O. Compare two readings
        to tell whether anything was committed in between (the query cache does)."""
        return int(self._store.commit_seq + self._store.generation)

    @property
    def store(self) -> Any:
        """The :class:`~datasync.blockstore.BlockStore` under this database (for the
        layers built on it, such as tabs)."""
        return self._store

    @property
    def connection(self) -> sqlite3.Connection:
        """The database's own SQLite connection (autocommit). Use it only inside
        :meth:`turn`."""
        return self._conn

    @property
    def capturing(self) -> bool:
        """True once change data capture is on (``cdc=True``)."""
        return self._cdc

    @property
    def cdc_retention(self) -> float | None:
        """Seconds acknowledged changes are kept (None: forever)."""
        return self._cdc_retention

    #: True: every :meth:`connect` connection is ``query_only``: set for a replica's
    #: store (its writes go to the primary; a pull waits up to 2 s for such a reader
    #: to leave its transaction, then defers), and opened without ``sync_url`` its
    #: own connection is too (:func:`datasync.open`).
    read_only = False

    def on_close(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` when the database closes; returns a remover."""
        self._close_wakers.add(wake)
        return lambda: self._close_wakers.discard(wake)

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.name!r} is closed; open it again")

    # -- statements ------------------------------------------------------------
    def _owns_transaction(self) -> bool:
        return _in_transaction.get() == (self, asyncio.current_task())

    def idle(self) -> bool:
        """True if no task holds the connection's turn or waits for it: a statement
        run now, synchronously, can neither overtake nor interleave with another
        (one thread runs the loop and every statement of this connection).

        Example: ``if db.idle(): result = db.run("SELECT 1", ())``"""
        lock = self._lock
        if lock.locked():
            return False
        waiters = lock._waiters  # asyncio.Lock's queue: a new turn goes after it
        return not waiters or all(w.cancelled() for w in waiters)

    @asynccontextmanager
    async def turn(self, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold the connection, unless this task's transaction already holds it.
        ``timeout``: seconds to wait for another task's turn (or transaction) to
        end, then :class:`~datasync.BusyTimeoutError` (None: no limit).

        Example: ``async with db.turn(): db.run("PRAGMA query_only = ON", ())``"""
        self._check_open()
        if self._owns_transaction():
            yield
            return
        await self._acquire(timeout)
        try:
            self._check_open()
            if self._store.generation != self._generation:
                self._after_fork()
            self._check_image()
            yield
        finally:
            self._lock.release()

    async def _acquire(self, timeout: float | None) -> None:
        if timeout is None and self._explicit_open:
            timeout = self.busy_timeout  # only the open transaction's calls can end it
        if timeout is None or not self._lock.locked():
            await self._lock.acquire()
            return
        waiter = asyncio.ensure_future(self._lock.acquire())
        try:
            done, _ = await asyncio.wait([waiter], timeout=timeout)
        except BaseException:
            # Cancelled while waiting (a closing or killed tab): the waiter must not
            # take the lock for nobody later, or every other turn (close() too)
            # waits for ever; released at once if it was granted already.
            waiter.cancel()
            waiter.add_done_callback(
                lambda w: w.cancelled() or w.exception() is not None or self._lock.release())
            raise
        if not done:
            waiter.cancel()
            try:
                await waiter  # granted just as it was cancelled: then it is ours
            except asyncio.CancelledError:
                inside = (" A transaction begun with begin() or db.transaction(fn) is open:"
                          " inside it, run statements through its tx, not through db."
                          if self._explicit_open else "")
                raise BusyTimeoutError(
                    f"database {self.name!r} is busy: another transaction held it for "
                    f"more than {timeout:g} s, and this was not applied. Retry it, and "
                    f"keep transactions short.{inside}") from None

    def reload_after_install(self) -> None:
        """Inside :meth:`turn`, right after the store installed another writer's
        image (``BlockStore.install``: a replica's pull): reload the schema now, for
        the statements of this same turn (a later turn would do it itself)."""
        self._after_fork()
        self.after_new_image()

    def _after_fork(self) -> None:
        """The store dropped unflushed commits and may have taken another writer's
        history since (a deposed leader tab): SQLite's cached schema can be stale
        under an unchanged schema cookie, so reload it. (The VFS makes the page
        cache reload; see :mod:`datasync.vfs.files`. Forks happen in multi-tab
        mode only, which hands out no other connection.)"""
        self._generation = self._store.generation
        sqlite3.Connection.execute(self._conn, "PRAGMA writable_schema = RESET")
        self.expire_statements()  # (the cookie may be the same: see above)

    def run(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Result:
        """Run one statement now, on the database's connection (inside :meth:`turn`).
        Raises the VFS's named error, or SQLite's. With capture on, a schema change
        runs in one transaction with its ``schema`` changes and the rebuilt triggers."""
        vfs.take_last_error()
        conn, store = self._conn, self._store
        if self._cdc and _cdc.is_ddl(sql):
            def execute() -> sqlite3.Cursor:
                return run_ddl(conn, lambda: conn.execute(sql, params), lambda: store.next_version)
        else:
            def execute() -> sqlite3.Cursor:
                return conn.execute(sql, params)
        self._running_own = True  # (durability: our commit is not a plain connection's)
        try:
            cur = execute()
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise_translated(exc)
        finally:
            self._running_own = False
        columns = [d[0] for d in cur.description] if cur.description else []
        return Result(columns, rows, cur.rowcount, cur.lastrowid)

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
        :class:`~datasync.cdc.connection.CapturingConnection`: its schema changes
        are captured as the database's own are (unless you pass a ``factory``).
        """
        self._check_open()
        if self._cdc and "factory" not in kwargs:
            # Schema changes made through it are captured too (datasync.cdc.connection).
            kwargs["factory"] = CapturingConnection
        conn = self._new_connection(**kwargs)
        if self.read_only:  # (a replica's store opened without sync_url)
            sqlite3.Connection.execute(conn, "PRAGMA query_only = ON")
        self._handed_out.append(
            (conn, threading.get_ident(), bool(kwargs.get("check_same_thread", True))))
        return conn

    def stats(self) -> dict[str, Any]:
        """Counters: version, blocks, dirty blocks, cache hits/misses, flushes,
        flush latency, open connections..."""
        s = self._store.stats()
        s.update(
            name=self.name,
            backend=type(self._store.backend).__name__,
            location=self._store.backend.location,
            durability=self.durability,
            encrypted=self.encrypted,
            # SQLite connections open on this store in this process (ours, connect()'s)
            connections=vfs.open_files(self._shared.key),
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
            raise TransactionActiveError("close() inside transaction(): end the transaction first")
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
            self._settle(self._closed_before_durable())  # flushed above: all durable
            # With a single thread no other can be using one: close them all.
            for conn in (c for c, _, _ in self._handed_out) if runtime.SINGLE_THREAD else closable:
                conn.close()
            self._conn.close()
            from .opening import release

            await release(self._shared)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"version {self.version}"
        return f"<datasync.Database {self.name!r} {state}>"


