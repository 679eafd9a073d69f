"""Many tabs, one database: leader election, forwarded writes, catch-up, changes.

Example (native simulation; in the browser the services are Web Locks and
BroadcastChannel)::

    locks, hub = FakeLocks(), FakeBroadcast()
    a = await SharedDatabase.open("app", backend="memory", tab_id="a",
                                  locks=locks.for_tab("a"), channel=hub.channel("a"))
    b = await SharedDatabase.open("app", backend="memory", tab_id="b",
                                  locks=locks.for_tab("b"), channel=hub.channel("b"))
    await a.wait_for_leadership()
    await b.execute("INSERT INTO t VALUES (1)")     # forwarded to a, applied once
    await b.query("SELECT * FROM t")                # b sees its own write

Protocol (messages are dicts with a type ``t``):

* ``leader {tab, epoch}``: the leader announces itself (at takeover and on ``who``).
* ``write {id, tab, to, stmts}`` -> ``result {id, to, ok | error, version}``: a
  follower's write. The leader runs the statements in one transaction together
  with an insert of ``id`` into ``_datasync_applied``, so a retry of the same id
  (after a lost reply or a failover) returns the stored result instead of applying
  twice. The follower resolves once its own copy reached ``version``.
* ``changed {version, epoch, tables}``: after each leader flush. Followers then
  read the blocks written after their version from the shared backend; they also
  poll, never trusting that they saw every message.
* ``queued {id}``: a write was put in the durable outbox (:meth:`queue_write`). The
  leader drains the outbox (also when it takes over, and at every poll): applies
  each entry under its id as above, recording a failure too, and then deletes it,
  so a queued write is applied exactly once even if its tab closed long before.

Leadership: a lock held for the tab's life. A new leader catches up, then writes
its epoch (stored epoch + 1) with a metadata flush; backends refuse flushes from a
lower epoch, so a deposed leader can never overwrite newer data. It discards what
it had not flushed and becomes a follower; its unacknowledged writes are retried
on the new leader under the same ids.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .. import cdc, vfs
from ..backends import Backend, make_backend
from ..database import Database, Result
from ..database import open as open_database
from ..encryption import EncryptionKey, open_codec
from ..options import check_open_options, pragma_values
from ..errors import (
    BackendError,
    ConnectionPragmaError,
    DatabaseClosedError,
    DatasyncError,
    DeposedLeaderError,
    WrongKeyError,
)
from ..format import Codec, Meta
from .services import Channel, Lease, LockService, MemoryOutbox, Message, Outbox
from .classify import WRITE_PRAGMAS, Kind
from .session import ConnState, TabSession

APPLIED_TABLE = "_datasync_applied"
#: How long the leader remembers a request id (a retry after that applies again).
APPLIED_RETENTION = 3600.0
Statement = tuple[str, Sequence[Any]]
ChangeCallback = Callable[[dict[str, Any]], Any]


class LeaderUnavailableError(DatasyncError):
    """No leader answered in time; the write was not applied (safe to retry)."""


class QueuedWriteTimeoutError(DatasyncError):
    """A queued write was not applied in time. It stays queued, durably, and a
    leader applies it later: do **not** queue it again. ``id`` names it."""

    def __init__(self, message: str, entry_id: str = "") -> None:
        super().__init__(message)
        self.id = entry_id


class RemoteError(DatasyncError):
    """A forwarded statement failed on the leader; ``name`` is the error's class."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$b" in value:
        return base64.b64decode(value["$b"])
    return value


def result_to_wire(res: Result) -> dict[str, Any]:
    return {"columns": res.columns, "rows": [[_encode(v) for v in row] for row in res.rows],
            "rowcount": res.rowcount, "lastrowid": res.lastrowid}


#: Seconds a tab waits for the key of a rekey it sees in the store (the
#: ``rekeyed`` message is posted right after the rekey's flush).
KEY_WAIT = 2.0


def key_to_wire(key: EncryptionKey | None) -> dict[str, Any] | None:
    """An encryption key as a channel message can carry it."""
    if key is None:
        return None
    if isinstance(key, str):
        return {"passphrase": key}
    return {"raw": base64.b64encode(bytes(key)).decode()}


def key_from_wire(raw: dict[str, Any] | None) -> EncryptionKey | None:
    if raw is None:
        return None
    if "passphrase" in raw:
        return str(raw["passphrase"])
    return base64.b64decode(str(raw["raw"]))


def result_from_wire(raw: dict[str, Any]) -> Result:
    return Result(list(raw["columns"]), [tuple(_decode(v) for v in row) for row in raw["rows"]],
                  raw["rowcount"], raw["lastrowid"])


class SharedDatabase:
    """One tab's view of a database shared by every tab; see the module docstring."""

    poll_interval = 0.5
    resend_interval = 1.0

    def __init__(self, db: Database, *, name: str, tab_id: str, locks: LockService,
                 channel: Channel, write_timeout: float, outbox: Outbox | None = None) -> None:
        self.db = db
        self.name = name
        self.tab_id = tab_id
        self.write_timeout = write_timeout
        self._locks = locks
        self._channel = channel
        self._outbox: Outbox = outbox if outbox is not None else MemoryOutbox(name)
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_again = False
        self._store = db._store
        self._lock_name = f"datasync-leader:{name}"
        self.is_leader = False
        self.leader_id: str | None = None
        self.epoch = self._store.meta.epoch
        self._lease: Lease | None = None
        self._closed = False
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._leader_changed = asyncio.Event()
        self._became_leader = asyncio.Event()
        self._caught_up = asyncio.Condition()
        self._callbacks: list[ChangeCallback] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._catchup_wanted = asyncio.Event()
        self._notice_tables: dict[int, list[str]] = {}
        #: Keys other tabs rekeyed to (newest last), and why this tab cannot follow.
        self._keys: list[EncryptionKey | None] = []
        self._key: EncryptionKey | None = None  # the key this tab reads with
        self._new_key = asyncio.Event()
        self._key_error: WrongKeyError | None = None
        self._store.rekeyed_codec = self._codec_for
        #: This tab's connection state: classification, temp objects, rowids.
        self._session = TabSession(db._conn)
        self._write_pragmas: dict[str, str] = {}
        self._unsubscribe = channel.subscribe(self._on_message)
        #: Every version this tab has seen, in order (tests check it only grows).
        self.versions_seen: list[int] = [self._store.version]
        #: The epochs of this tab's leaderships.
        self.leaderships: list[int] = []

    # -- opening and closing ---------------------------------------------------------
    @classmethod
    async def open(cls, name: str, *, locks: LockService, channel: Channel,
                   tab_id: str | None = None, write_timeout: float = 30.0,
                   outbox: Outbox | None = None, **options: Any) -> "SharedDatabase":
        """Open ``name`` as one tab among many; ``options`` go to :func:`datasync.open`.
        ``outbox`` holds :meth:`queue_write`'s writes (default: this process's memory)."""
        check_open_options(options)  # before anything is made
        capture = bool(options.pop("cdc", False))
        retention = options.pop("cdc_retention", None)
        if not isinstance(options.get("backend"), Backend):
            # In the browser: held with the other tabs' multi-tab opens, never with a
            # single-tab one (backends/open_lock.py).
            options["backend"] = make_backend(name, options.get("backend"), tabs=True,
                                              strict=options.get("durability") == "strict")
        # Another tab's flush changes the backend under a follower: never read a
        # block on demand (it could be newer than the version this tab holds).
        options.setdefault("resident", True)
        db = await open_database(name, **options)
        tab = cls(db, name=name, tab_id=tab_id or uuid.uuid4().hex[:12], locks=locks,
                  channel=channel, write_timeout=write_timeout, outbox=outbox)
        # The PRAGMAs that decide how writes run: every tab's must be the leader's.
        tab._write_pragmas = {k: v for k, v in pragma_values(options.get("pragmas") or {})
                              .items() if k in WRITE_PRAGMAS}
        tab._key = options.get("encryption_key")
        await tab.db.execute("PRAGMA query_only = ON")  # followers never write locally
        if capture:  # the triggers are writes: the leader installs them (_lead)
            await db.enable_cdc(retention=retention, install=False)
        tab._tasks = [asyncio.ensure_future(tab._campaign()),
                      asyncio.ensure_future(tab._follow())]
        tab._post({"t": "who", "tab": tab.tab_id})
        return tab

    async def close(self) -> None:
        """Leave: give up leadership (the next tab takes over) and close."""
        if self._closed:
            return
        self._closed = True
        self._session.close()  # no statement is classified on a closing connection
        for task in [*self._tasks, *self._background]:
            task.cancel()
        self._unsubscribe()
        if self._lease is not None:
            self._locks.release(self._lease)
        self._channel.close()
        self._outbox.close()
        try:
            await self.db.close()
        except DeposedLeaderError:
            # Deposed with writes nobody acknowledged: they are not ours to store.
            await self._store.discard_unflushed()
            await self.db.close()

    def crash(self) -> None:
        """Simulate the tab dying (tests): stop at once and write nothing more. The
        lock service and channel hub must drop the tab too (``kill``)."""
        from .. import database

        self._closed = True
        self._session.close()
        for task in [*self._tasks, *self._background]:
            task.cancel()
        self._unsubscribe()
        self._outbox.close()
        db = self.db
        db._closed = True
        db._remove_listener()
        for conn in [*(c for c, _, _ in db._handed_out), db._conn]:
            conn.close()
        database._shared.pop(db._shared.key, None)
        vfs.detach(db._shared.key)

    # -- leadership ------------------------------------------------------------------
    def leader_info(self) -> dict[str, Any]:
        return {"is_leader": self.is_leader, "leader_id": self.leader_id, "epoch": self.epoch,
                "tab_id": self.tab_id}

    async def wait_for_leadership(self) -> None:
        """Wait until this tab is the leader."""
        await self._became_leader.wait()

    async def request_leadership(self) -> None:
        """Take leadership now (the current leader steps down cleanly)."""
        if self.is_leader:
            return
        self._check_open()
        lease = await self._locks.acquire(self._lock_name, steal=True)
        hold = asyncio.ensure_future(self._hold(lease))
        self._tasks.append(hold)
        became = asyncio.ensure_future(self._became_leader.wait())
        await asyncio.wait([hold, became], return_when=asyncio.FIRST_COMPLETED)
        if became.done():
            return
        became.cancel()
        if hold.cancelled():
            raise DatabaseClosedError(f"database {self.name!r} was closed in this tab")
        if hold.exception() is not None:
            raise hold.exception()  # type: ignore[misc]
        raise DeposedLeaderError(
            f"leadership of {self.name!r} moved to another tab before this one could lead")

    async def _campaign(self) -> None:
        while not self._closed:
            if self._key_error is not None:
                # Cannot read the store (rekeyed elsewhere, key not received): not a
                # candidate until a catch-up succeeds again.
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                await self._hold(await self._locks.acquire(self._lock_name))
            except DatasyncError:
                await asyncio.sleep(self.poll_interval)  # lease released: others may lead

    async def _hold(self, lease: Lease) -> None:
        """Lead while ``lease`` is held, then step down."""
        if self._closed or self._key_error is not None:
            self._locks.release(lease)
            return
        try:
            await self._lead(lease)
        except DatasyncError:
            # Could not take over (rekeyed elsewhere and we lack the key, storage
            # trouble, deposed meanwhile): let another tab lead, and drop whatever
            # this attempt committed but did not flush.
            self._locks.release(lease)
            if self._lease is lease:
                self._lease = None
                self.is_leader = False
                self._became_leader.clear()
                if self.leader_id == self.tab_id:
                    self.leader_id = None
                with contextlib.suppress(DatasyncError):
                    await self._discard_unflushed()
            raise
        await lease.lost.wait()
        if self._lease is lease:
            await self._step_down()

    async def _lead(self, lease: Lease) -> None:
        self._lease = lease
        while not lease.lost.is_set():
            await self._catch_up_when_idle()
            self._store.epoch = self._store.meta.epoch + 1
            try:
                await self._store.flush(force=True)  # stakes the epoch
                break
            except BackendError:
                continue  # someone flushed meanwhile: catch up and try again
        if lease.lost.is_set():
            return
        self.leaderships.append(self._store.epoch)
        self._post({"t": "changed", "version": self._store.version, "epoch": self._store.epoch,
                    "tables": [], "tab": self.tab_id})
        self.epoch = self._store.epoch
        self.is_leader = True
        self.leader_id = self.tab_id
        try:  # ids still queued keep their record, however old, so none applies twice
            queued: list[str] | None = [str(e["id"]) for e in await self._outbox.entries()]
        except DatasyncError:
            queued = None  # the outbox is unreadable now: prune nothing this time
        async with self._writable():
            await self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {APPLIED_TABLE}"
                "(id TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL)")
            if queued is not None:
                await self.db.execute(
                    f"DELETE FROM {APPLIED_TABLE} WHERE at < ? AND id NOT IN "
                    "(SELECT value FROM json_each(?))",
                    (time.time() - APPLIED_RETENTION, json.dumps(queued)))
            if self.db._cdc:
                await self._install_cdc()
        await self._flush_and_announce(set())
        self._became_leader.set()
        self._leader_changed.set()
        self._post({"t": "leader", "tab": self.tab_id, "epoch": self.epoch})
        self._kick_drain()

    async def _step_down(self) -> None:
        self.is_leader = False
        self._became_leader.clear()
        self._lease = None
        if self.leader_id == self.tab_id:
            self.leader_id = None
        # Whatever we committed but did not flush was never acknowledged: drop it.
        await self._discard_unflushed()

    async def _discard_unflushed(self) -> None:
        async with self.db._lock:  # not in the middle of one of our statements
            await self._store.discard_unflushed()
        await self._catch_up_when_idle()

    # -- following -------------------------------------------------------------------
    async def _follow(self) -> None:
        """Catch up on notices, and poll (messages can be missed)."""
        while not self._closed:
            try:
                await asyncio.wait_for(self._catchup_wanted.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._catchup_wanted.clear()
            if self.is_leader:
                self._kick_drain()  # a "queued" notice may have been missed
            else:
                try:
                    await self._catch_up_when_idle()
                except DatasyncError:
                    pass  # storage trouble: try again at the next poll

    async def _catch_up_when_idle(self) -> int:
        before = self._store.version
        async with self.db._lock:  # not between a BEGIN and its COMMIT of ours
            key = self._store.backend.key
            if self._closed or vfs.attached(key) is None:
                return before
            while vfs.in_use(key):  # a reader is inside a transaction
                await asyncio.sleep(0.005)
            try:
                version = await self._store.catch_up()
            except WrongKeyError as exc:
                self._key_error = exc  # every call now says so (see _check_open)
                raise
            self._key_error = None
        if version > before:
            self._session.forget()  # another tab may have changed the schema
            self._saw(version)
            self.epoch = max(self.epoch, self._store.meta.epoch)
            self._notify({"version": version, "tables": self._tables_between(before, version),
                          "by": "remote"})
        async with self._caught_up:
            self._caught_up.notify_all()
        return version

    async def _reach(self, version: int) -> None:
        """Wait until this tab's copy holds ``version`` (read-your-writes)."""
        while self._store.version < version and not self._closed:
            await self._catch_up_when_idle()
            if self._store.version < version:
                await asyncio.sleep(0.002)

    def _saw(self, version: int) -> None:
        self.versions_seen.append(version)

    def _tables_between(self, before: int, after: int) -> list[str] | None:
        """Tables the notices say versions (before, after] wrote; None if a notice
        is missing (the change may touch any table)."""
        tables: set[str] = set()
        for v in range(before + 1, after + 1):
            known = self._notice_tables.pop(v, None)
            if known is None:
                return None
            tables.update(known)
        return sorted(tables)

    # -- changes -----------------------------------------------------------------------
    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback({version, tables, by})`` after every change from any tab;
        returns an unsubscriber."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _notify(self, change: dict[str, Any]) -> None:
        for cb in list(self._callbacks):
            out = cb(change)
            if asyncio.iscoroutine(out):
                asyncio.ensure_future(out)

    # -- change data capture (datasync.cdc) -------------------------------------------
    async def _install_cdc(self) -> None:
        """As the new leader, in its first transaction: the change log and the
        triggers (then forwarded statements capture on the leader, and every tab
        reads the log from its own copy)."""
        cdc.refresh_triggers(self.db._conn)
        await cdc.prune(self.db, self.db._cdc_retention)

    async def changes(self, tables: Sequence[str] | None = None, since: int | None = None, *,
                      consumer: str | None = None, follow: bool = True,
                      batch: int = 200) -> AsyncIterator[cdc.Change]:
        """:meth:`datasync.Database.changes` for any tab: reads this tab's copy of
        the log, waking up when a change from any tab reaches it.

        Example: ``async for change in tab.changes(tables=["notes"]): ...``
        """
        self._check_open()
        loop = asyncio.get_running_loop()

        def subscribe(wake: Callable[[], None]) -> Callable[[], None]:
            off_change = self.on_change(lambda change: wake())
            off_commit = self._store.add_commit_listener(  # the leader's own commits
                lambda store: loop.call_soon_threadsafe(wake))
            self.db._close_wakers.add(wake)  # closing this tab ends the stream
            return lambda: (off_change(), off_commit(), self.db._close_wakers.discard(wake))

        async def register(name: str) -> None:
            await self.execute(
                f"INSERT OR IGNORE INTO {cdc.CONSUMERS_TABLE}(name, acked, at) VALUES (?, 0, ?)",
                (name, time.time()))

        async for change in cdc.stream(self.db, subscribe, tables=tables, since=since,
                                       consumer=consumer, follow=follow, batch=batch,
                                       closed=lambda: self._closed, register=register):
            yield change

    async def ack(self, consumer: str, seq: int) -> None:
        """:meth:`datasync.Database.ack`, applied by the leader.

        Example: ``await tab.ack("search-index", change.seq)``
        """
        self._check_open()
        await cdc.ack(self, consumer, seq)
        await cdc.prune(self, self.db._cdc_retention)

    # -- statements ------------------------------------------------------------------
    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run a statement: reads run locally; writes (what SQLite says is not
        read-only) go to the leader, exactly once, in any tab including the leader.

        Connection state stays this tab's (see :mod:`datasync.tabs.session`):
        a write to the temp schema runs here; ``last_insert_rowid()``,
        ``changes()`` and ``total_changes()`` answer for this tab's statements;
        transaction statements raise :class:`~datasync.TransactionStatementError`
        (use :meth:`batch`) and a write that needs this tab's temp objects raises
        :class:`~datasync.LocalObjectError`.

        A follower's copy can lag the leader's by a notice, so a statement that
        fails here for another reason (``no such table`` for a table another tab
        just created) is run by the leader, whose copy is the latest; its result
        or error is the answer."""
        self._check_open()
        kind = await self._classify(sql)
        self._session.check(sql, kind, runs_here=True)
        if kind is not None and kind.temp_only:
            return await self._run_temp(sql, params, kind)
        if kind is None or kind.readonly or kind.pragma is not None:
            try:  # a read (or a PRAGMA: run, and forwarded if it writes the database)
                return await self.db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc) and self.is_leader:
                    raise
        results = await self.batch([(sql, params)])
        return results[0]

    async def _run_temp(self, sql: str, params: Sequence[Any], kind: Kind) -> Result:
        """A write to this tab's temp schema, on its own connection. Writes are
        allowed for it alone, and SQLite is told to refuse any outside temp."""
        db, session = self.db, self._session
        async with db._turn():
            plain = sqlite3.Connection.execute
            plain(db._conn, "PRAGMA query_only = OFF")
            session.guard_temp(True)
            session.begin(session.state)
            try:
                try:
                    result = db._run(sql, params)
                finally:
                    session.ran(kind)  # a failed statement sets changes() too (to 0)
            finally:
                session.state = session.end()
                session.guard_temp(False)
                plain(db._conn, "PRAGMA query_only = ON")
        session.forget()
        return result

    async def batch(self, statements: Sequence[Statement]) -> list[Result]:
        """Run statements atomically (one transaction) on the leader, exactly once.

        Raises :class:`~datasync.TransactionStatementError` for a transaction
        statement (the batch is the transaction) and
        :class:`~datasync.LocalObjectError` for one that uses this tab's temp objects.
        """
        self._check_open()
        stmts = [(str(sql), list(params)) for sql, params in statements]
        for sql, _ in stmts:
            self._session.check(sql, await self._classify(sql), runs_here=False)
        return await self._write(uuid.uuid4().hex, stmts)

    async def _classify(self, sql: str) -> Kind | None:
        """What ``sql`` does, as this tab's copy sees it; a copy that cannot prepare
        it (a table another tab just created) catches up once and looks again."""
        self._check_open()
        kind = self._session.classify(sql)
        if kind is None and not self.is_leader:
            with contextlib.suppress(DatasyncError):
                await self._catch_up_when_idle()
            self._check_open()  # closed while we waited: never touch the connection
            kind = self._session.classify(sql)
        return kind

    async def _write(self, req_id: str, stmts: list[tuple[str, list[Any]]]) -> list[Result]:
        deadline = time.monotonic() + self.write_timeout
        while True:
            self._check_open()
            if self.is_leader:
                try:
                    reply = await self._apply(req_id, stmts, state=self._session.state)
                except DeposedLeaderError:
                    continue  # now a follower: send it to the new leader, same id
            else:
                reply = await self._forward(req_id, stmts, deadline)
                if reply is None:
                    continue  # leadership moved while waiting: try again
            if "state" in reply:  # what SQLite counted for our statements, even failed
                self._session.state = ConnState.from_wire(reply["state"])
            if "error" in reply:
                name, message = reply["error"]
                raise _rebuild_error(name, message)
            await self._reach(reply["version"])
            return [result_from_wire(r) for r in reply["ok"]]

    async def _forward(self, req_id: str, stmts: list[tuple[str, list[Any]]],
                       deadline: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        fut = self._pending.get(req_id) or loop.create_future()
        self._pending[req_id] = fut
        try:
            while not fut.done():
                if self.is_leader:
                    return None
                if time.monotonic() > deadline:
                    raise LeaderUnavailableError(
                        f"no leader of {self.name!r} answered within {self.write_timeout} s; "
                        "the write was not applied (it is safe to retry)")
                if self.leader_id is None:
                    self._post({"t": "who", "tab": self.tab_id})
                else:
                    self._post({"t": "write", "id": req_id, "tab": self.tab_id,
                                "to": self.leader_id, "stmts": [[s, [_encode(v) for v in p]]
                                                                for s, p in stmts],
                                "state": self._session.state.to_wire(),
                                "pragmas": self._write_pragmas})
                self._leader_changed.clear()
                waiters = [fut, asyncio.ensure_future(self._leader_changed.wait())]
                await asyncio.wait(waiters, timeout=self.resend_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiters[1].cancel()
            return fut.result()
        finally:
            self._pending.pop(req_id, None)

    async def _apply(self, req_id: str, stmts: list[tuple[str, list[Any]]], *,
                     record_errors: bool = False, state: ConnState | None = None,
                     pragmas: dict[str, str] | None = None) -> dict[str, Any]:
        """As the leader: apply once, durably; returns the reply. ``record_errors``:
        a failure is recorded under the id too (a queued write is then done).
        ``state``: the sending tab's last_insert_rowid()/changes()/total_changes()."""
        task = self._inflight.get(req_id)
        if task is None:
            task = asyncio.ensure_future(self._apply_once(
                req_id, stmts, record_errors, state or ConnState(),
                self._write_pragmas if pragmas is None else pragmas))
            self._inflight[req_id] = task
            task.add_done_callback(lambda t: self._inflight.pop(req_id, None) and (
                t.cancelled() or t.exception()))  # retrieved: a dead caller may not
        return await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def _writable(self) -> AsyncIterator[None]:
        """A leader transaction in which writes are allowed (query_only is lifted
        only here, so SQLite itself tells every other statement it may not write)."""
        async with self.db.transaction():  # IMMEDIATE would count as a write
            if not self.is_leader:  # stepped down while waiting for our turn
                raise DeposedLeaderError(f"this tab no longer leads {self.name!r}")
            await self.db.execute("PRAGMA query_only = OFF")
            try:
                yield
            finally:
                await self.db.execute("PRAGMA query_only = ON")

    async def _apply_once(self, req_id: str, stmts: list[tuple[str, list[Any]]],
                          record_errors: bool, state: ConnState,
                          pragmas: dict[str, str]) -> dict[str, Any]:
        tables: set[str] = set()
        generation = self._store.generation
        failure: dict[str, Any] | None = None
        session = self._session
        try:
            async with self._writable():
                done = await self.db.execute(
                    f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?", (req_id,))
                if done.rows:
                    reply = json.loads(done.rows[0][0])
                else:
                    if pragmas != self._write_pragmas:
                        raise ConnectionPragmaError(
                            f"the tab that sent this write opened with pragmas {pragmas}, "
                            f"the leader tab with {self._write_pragmas}: its writes would "
                            "run under other rules; open every tab with the same pragmas=")
                    session.record_tables(tables)
                    session.begin(state)
                    results = []
                    try:
                        for sql, params in stmts:
                            # Checked here, just before it runs: a table an earlier
                            # statement of the batch created is known by now.
                            kind = session.classify(sql)
                            session.check(sql, kind, runs_here=False, for_another_tab=True)
                            try:
                                result = await self.db.execute(
                                    sql, [_decode(v) for v in params])
                            finally:
                                session.ran(kind)  # failed too: changes() is then 0
                            results.append(result)
                    finally:
                        session.record_tables(None)
                        state = session.end()
                    reply = {"ok": [result_to_wire(r) for r in results],
                             "state": state.to_wire()}
                    await self.db.execute(
                        f"INSERT INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                        (req_id, json.dumps(reply), time.time()))
        except Exception as exc:  # sqlite3, ours, or a bad parameter (OverflowError...)
            if isinstance(exc, DeposedLeaderError):
                raise
            failure = {"error": [type(exc).__name__, str(exc)], "state": state.to_wire()}
            if not record_errors:
                return {**failure, "version": self._store.version}
        if failure is not None:  # the statements rolled back; record only the outcome
            reply = failure
            async with self._writable():
                await self.db.execute(
                    f"INSERT OR IGNORE INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                    (req_id, json.dumps(failure), time.time()))
        version = await self._flush_and_announce(tables)
        if self._store.generation != generation:
            # We stepped down between our commit and the flush, and stepping down
            # dropped the write (or it reached storage first: the new leader's
            # applied table then says so). Either way the sender must ask the new
            # leader, with the same id.
            raise DeposedLeaderError(
                f"leadership of {self.name!r} moved before write {req_id} was durable")
        return {**reply, "version": version}

    async def _flush_and_announce(self, tables: set[str]) -> int:
        try:
            version = await self.db.sync()
        except DeposedLeaderError:
            if self._lease is not None:
                self._locks.release(self._lease)  # it was stolen; make sure we let go
            await self._step_down()
            raise
        self._saw(version)
        self._post({"t": "changed", "version": version, "epoch": self.epoch,
                    "tables": sorted(tables), "tab": self.tab_id})
        if tables:
            self._notify({"version": version, "tables": sorted(tables), "by": "local"})
        return version

    # -- the durable outbox ------------------------------------------------------------
    async def queue_write(self, sql: str, params: Sequence[Any] = (), *,
                          timeout: float | None = 30.0) -> Result:
        """Queue a write in the durable outbox, then wait for its result.

        Example::

            res = await tab.queue_write("INSERT INTO log VALUES (?)", ["bye"])

        Once queued (before anything else happens) the write is applied exactly once
        by whichever tab leads, even if this tab closes or crashes first. The call
        resolves like :meth:`execute` (read-your-writes included), or raises the
        statement's error, or after ``timeout`` seconds (``None``: no limit) raises
        :class:`QueuedWriteTimeoutError`: the write is still queued and will be
        applied later, so do not queue it again.
        """
        self._check_open()
        self._session.check(sql, await self._classify(sql), runs_here=False)
        entry_id = uuid.uuid4().hex
        await self._outbox.put({"id": entry_id, "tab": self.tab_id, "at": time.time(),
                                "stmts": [[str(sql), [_encode(v) for v in params]]],
                                "state": self._session.state.to_wire(),
                                "pragmas": self._write_pragmas})
        self._post({"t": "queued", "id": entry_id})
        if self.is_leader:
            self._kick_drain()
        reply = await self._await_queued(entry_id, timeout)
        if "error" in reply:
            name, message = reply["error"]
            raise _rebuild_error(name, message)
        if "state" in reply:
            self._session.state = ConnState.from_wire(reply["state"])
        return result_from_wire(reply["ok"][0])

    async def _await_queued(self, entry_id: str, timeout: float | None) -> dict[str, Any]:
        """The reply to queued write ``entry_id``: from the leader's ``result``
        message, or (should that be lost) from our own copy of the applied table."""
        loop = asyncio.get_running_loop()
        fut = self._pending.setdefault(entry_id, loop.create_future())
        deadline = None if timeout is None else loop.time() + timeout
        nudge_at = loop.time() + self.resend_interval
        try:
            while True:
                self._check_open()
                if fut.done():
                    reply = fut.result()
                    await self._reach(int(reply.get("version", 0)))
                    return reply
                # Our own copy's applied table, when it holds only durable data: a
                # follower's copy (caught up from storage), never a leader's, whose
                # record may be committed and not yet flushed.
                if not self.is_leader and not self._store.has_unflushed:
                    stored = await self._applied_reply(entry_id)
                    if stored is not None:
                        return stored
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise QueuedWriteTimeoutError(
                        f"queued write {entry_id} was not applied within {timeout} s; it "
                        "stays queued and a leader will apply it (do not queue it again)",
                        entry_id)
                if now >= nudge_at:
                    self._post({"t": "queued", "id": entry_id})
                    nudge_at = now + self.resend_interval
                wait = self.resend_interval / 4
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.001))
                await asyncio.wait([fut], timeout=wait)
        finally:
            self._pending.pop(entry_id, None)

    async def _applied_reply(self, req_id: str) -> dict[str, Any] | None:
        try:
            res = await self.db.execute(
                f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?", (req_id,))
        except sqlite3.OperationalError:
            return None  # no leader has created the table in our copy yet
        return json.loads(res.rows[0][0]) if res.rows else None

    def _kick_drain(self) -> None:
        """Drain the outbox (leader only); a drain already running goes round again."""
        if not self.is_leader or self._closed:
            return
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_again = True
            return
        self._drain_task = asyncio.ensure_future(self._drain())
        self._background.add(self._drain_task)
        self._drain_task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        while self.is_leader and not self._closed:
            self._drain_again = False
            try:
                entries = await self._outbox.entries()
                for entry in entries:
                    if not self.is_leader or self._closed:
                        return
                    entry_id = str(entry["id"])
                    stmts = [(str(sql), list(params)) for sql, params in entry["stmts"]]
                    reply = await self._apply(entry_id, stmts, record_errors=True,
                                              state=ConnState.from_wire(entry.get("state")),
                                              pragmas=dict(entry.get("pragmas") or {}))
                    self._post({"t": "result", "id": entry_id, "to": entry.get("tab"), **reply})
                    fut = self._pending.get(entry_id)  # queued by this very tab
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
                    await self._outbox.delete(entry_id)
            except DatasyncError:
                return  # deposed, or storage trouble: the next leader or poll retries
            if not self._drain_again:
                return

    # -- messages ----------------------------------------------------------------------
    def _post(self, message: Message) -> None:
        if not self._closed:
            self._channel.post(message)

    def _spawn(self, coro: Any) -> None:
        """A background task that dies with this tab."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_message(self, msg: Message) -> None:
        if self._closed:
            return
        kind = msg.get("t")
        if kind == "leader":
            if msg["epoch"] >= self.epoch and msg["tab"] != self.tab_id:
                self.epoch = msg["epoch"]
                self.leader_id = msg["tab"]
                self._leader_changed.set()
                self._catchup_wanted.set()
        elif kind == "who" and self.is_leader:
            self._post({"t": "leader", "tab": self.tab_id, "epoch": self.epoch})
        elif kind == "changed":
            self._notice_tables[int(msg["version"])] = list(msg.get("tables") or [])
            if msg["version"] > self._store.version and not self.is_leader:
                self._spawn(self._catch_up_for_notice())
        elif kind == "rekeyed":
            try:
                self._keys.append(key_from_wire(msg["key"]))
            except (KeyError, TypeError, ValueError):
                return  # malformed: not from a datasync tab
            self._new_key.set()
            if not self.is_leader:
                self._catchup_wanted.set()
        elif kind == "need-key" and self.is_leader and msg.get("tab") != self.tab_id:
            self._post({"t": "rekeyed", "key": key_to_wire(self._key), "tab": self.tab_id})
        elif kind == "queued" and self.is_leader:
            self._kick_drain()
        elif kind == "write" and self.is_leader and msg.get("to") == self.tab_id:
            self._spawn(self._serve_write(msg))
        elif kind == "result" and msg.get("to") == self.tab_id:
            fut = self._pending.get(msg["id"])
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def _catch_up_for_notice(self) -> None:
        try:
            await self._catch_up_when_idle()
        except DatasyncError:
            pass  # the poller retries

    async def _serve_write(self, msg: Message) -> None:
        stmts = [(s, list(p)) for s, p in msg["stmts"]]
        try:
            reply = await self._apply(msg["id"], stmts,
                                      state=ConnState.from_wire(msg.get("state")),
                                      pragmas=dict(msg.get("pragmas") or {}))
        except DeposedLeaderError:
            return  # the sender resends to the new leader
        self._post({"t": "result", "id": msg["id"], "to": msg["tab"], **reply})

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.name!r} is closed in this tab")
        if self._key_error is not None:
            raise WrongKeyError(
                f"database {self.name!r} was re-encrypted in another tab and this tab "
                f"cannot read it: open it again with the new key ({self._key_error})")

    # -- encryption ----------------------------------------------------------------
    async def rekey(self, new_key: EncryptionKey | None) -> int:
        """Re-encrypt the shared database under ``new_key`` (32 raw bytes, a
        passphrase, or None to decrypt), atomically, for every tab.

        Example: ``await tab.rekey("a new passphrase")``

        This tab takes leadership (:meth:`request_leadership`) and rekeys the store
        in one flush (:meth:`Database.rekey`), fenced like every leader flush. The
        key then goes to the other tabs over the channel (same origin, memory
        only), and each switches to it as it catches up. A tab that misses it (one
        asleep at that moment) gets ``WrongKeyError`` from then on: open it again with
        the new key. Tabs opened later must give the new key. Returns the version.
        """
        self._check_open()
        await self.request_leadership()
        # Sent first: a tab tries each key against the metadata it reads, so an
        # early or unused key is harmless, and the others have it when they see the
        # rekey (a slow scrub, or this tab dying after the flush, cannot strand them).
        self._post({"t": "rekeyed", "key": key_to_wire(new_key), "tab": self.tab_id})
        version = await self.db.rekey(new_key)
        self._key = new_key
        self._post({"t": "changed", "version": version, "epoch": self.epoch, "tables": [],
                    "tab": self.tab_id})
        return version

    async def _codec_for(self, meta: Meta) -> Codec:
        """The codec for ``meta`` after another tab's rekey, from the keys it sent.
        The key can trail the flush by a moment: wait a little for it."""
        where = self._store.backend.location
        deadline = asyncio.get_running_loop().time() + KEY_WAIT
        asked = False
        while True:
            self._new_key.clear()
            for key in reversed(self._keys):
                try:
                    codec, _ = await open_codec(meta, key, where=where)
                except DatasyncError:
                    continue  # a key for another rekey, or for a plain store
                self._key, self._keys = key, [key]
                return codec
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise WrongKeyError(
                    f"{where} was re-encrypted (version {meta.version}) and this tab was not "
                    "sent the new key")
            if not asked:  # opened as the key went round, say: the leader resends it
                self._post({"t": "need-key", "tab": self.tab_id})
                asked = True
            try:
                await asyncio.wait_for(self._new_key.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def stats(self) -> dict[str, Any]:
        return {**self.db.stats(), **self.leader_info()}

    async def sync(self) -> int:
        """The leader flushes; a follower has nothing of its own to flush (its
        writes are durable when they resolve). Returns the version this tab holds."""
        self._check_open()
        if self.is_leader:
            return await self.db.sync()
        return self._store.version

    async def export(self) -> bytes:
        """This tab's copy as a standard SQLite file."""
        self._check_open()
        return await self.db.export()

    async def import_(self, data: bytes) -> None:
        """Replace the database (leader tab only; other tabs follow)."""
        await self._replace_whole("import_", lambda: self.db.import_(data))

    async def _replace_whole(self, what: str, replace: Callable[[], Awaitable[Any]]) -> int:
        """Run ``replace`` (which rewrites the whole database) as the leader, with
        writes allowed, then announce it; returns the new version."""
        self._check_open()
        if not self.is_leader:
            raise DatasyncError(
                f"{what}() runs in the leader tab: call request_leadership() first")
        await self.db.execute("PRAGMA query_only = OFF")
        try:
            await replace()
        finally:
            await self.db.execute("PRAGMA query_only = ON")
        return await self._flush_and_announce({"*"})


    async def versions(self) -> list[dict[str, Any]]:
        """The versions :meth:`restore` can return to (see ``Database.versions``)."""
        self._check_open()
        return await self.db.versions()

    async def restore(self, version: int) -> int:
        """Return the database to a retained version (leader tab only; the other
        tabs follow like after any write). Returns the new version."""
        return await self._replace_whole("restore", lambda: self.db.restore(version))

    async def backup(self, target: str, **options: Any) -> dict[str, Any]:
        """Copy this tab's copy into a new database ``target`` (see ``Database.backup``)."""
        self._check_open()
        return await self.db.backup(target, **options)


def _rebuild_error(name: str, message: str) -> BaseException:
    """The leader's error, as the same class here when it is a known one."""
    import datasync

    cls = getattr(sqlite3, name, None) or getattr(datasync, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except TypeError:
            pass
    return RemoteError(name, message)

