"""Statements: reads here, writes forwarded to the leader and applied exactly once.

Example::

    rows = await tab.query("SELECT * FROM t")
    await tab.execute("INSERT INTO t VALUES (?)", [1])    # applied once, read back at once
    await tab.batch([("INSERT INTO t VALUES (2)", []), ("DELETE FROM t WHERE x = 1", [])])

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from ..cdc.connection import split_script
from ..database import Result
from ..errors import (
    BusyTimeoutError,
    ConnectionPragmaError,
    DatasyncError,
    DeposedLeaderError,
    LeaderUnavailableError,
)
from .classify import Kind
from .services import Message
from .session import ConnState
from .wire import (
    APPLIED_TABLE,
    Statement,
    decode_params,
    encode_params,
    rebuild_error,
    result_from_wire,
    result_to_wire,
)


class Forwarding:
    """Statements: reads here, writes forwarded to the leader and applied exactly once."""

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
        or error is the answer. Inside :meth:`transaction` it joins the transaction."""
        self._check_open()
        joined = self._joined()
        if joined is not None:
            return await joined.execute(sql, params)
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
        async with db.turn():
            plain = sqlite3.Connection.execute
            plain(db.connection, "PRAGMA query_only = OFF")
            session.guard_temp(True)
            session.begin(session.state)
            try:
                try:
                    result = db.run(sql, params)
                finally:
                    session.ran(kind)  # a failed statement sets changes() too (to 0)
            finally:
                session.state = session.end()
                session.guard_temp(False)
                plain(db.connection, "PRAGMA query_only = ON")
        session.forget()
        return result

    async def batch(self, statements: Sequence[Statement]) -> list[Result]:
        """Run statements atomically (one transaction) on the leader, exactly once.

        Raises :class:`~datasync.TransactionStatementError` for a transaction
        statement (the batch is the transaction) and
        :class:`~datasync.LocalObjectError` for one that uses this tab's temp objects.
        """
        self._check_open()
        joined = self._joined()
        if joined is not None:
            return await joined.batch(statements)
        stmts = [(str(sql), encode_params(params)) for sql, params in statements]
        for sql, _ in stmts:
            self._session.check(sql, await self._classify(sql), runs_here=False)
        return await self._write(uuid.uuid4().hex, stmts)

    async def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Result:
        """Run ``sql`` once per parameter set, atomically, in one message to the
        leader; ``rowcount`` is the total, ``lastrowid`` the last one's."""
        joined = self._joined()
        if joined is not None:
            return await joined.executemany(sql, seq_of_params)
        results = await self.batch([(sql, params) for params in seq_of_params])
        return Result([], [], sum(max(r.rowcount, 0) for r in results),
                      results[-1].lastrowid if results else None)

    async def executescript(self, script: str) -> None:
        """Run the statements of ``script`` (separated by ``;``) atomically, as
        one :meth:`batch` (JS: ``db.exec(script)``)."""
        await self.batch([(sql, ()) for sql in split_script(str(script))])

    exec = executescript

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

    async def _write(self, req_id: str, stmts: list[tuple[str, Any]]) -> list[Result]:
        deadline = time.monotonic() + self.write_timeout
        sent = False  # to another tab once: a leader may have applied it under its id
        while True:
            self._check_open()
            if self.is_leader:
                try:
                    reply = await self._apply(req_id, stmts, state=self._session.state,
                                              recorded=sent)
                except DeposedLeaderError:
                    continue  # now a follower: send it to the new leader, same id
            else:
                sent = True
                reply = await self._forward(req_id, stmts, deadline)
                if reply is None:
                    continue  # leadership moved while waiting: try again
            if "state" in reply:  # what SQLite counted for our statements, even failed
                self._session.state = ConnState.from_wire(reply["state"])
            if "error" in reply:
                name, message = reply["error"]
                raise rebuild_error(name, message)
            await self._reach(reply["version"])
            return [result_from_wire(r) for r in reply["ok"]]

    async def _forward(self, req_id: str, stmts: list[tuple[str, Any]],
                       deadline: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        fut = self._pending.get(req_id) or loop.create_future()
        self._pending[req_id] = fut
        try:
            while not fut.done():
                self._check_open()  # closed while waiting: close() answered it
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
                                "to": self.leader_id, "stmts": [[s, p] for s, p in stmts],
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

    async def _apply(self, req_id: str, stmts: list[tuple[str, Any]], *,
                     record_errors: bool = False, state: ConnState | None = None,
                     pragmas: dict[str, str] | None = None, local: bool = True,
                     recorded: bool = True) -> dict[str, Any]:
        """As the leader: apply once, durably; returns the reply. ``record_errors``:
        a failure is recorded under the id too (a queued write is then done).
        ``state``: the sending tab's last_insert_rowid()/changes()/total_changes();
        ``local``: this tab's own write (else another tab's: ``by: "remote"``);
        ``recorded=False``: no row in the applied table, for a write whose caller
        waits here for its outcome (this tab's own ``execute``, never sent to another
        tab): it learns whether the commit was stored from the store itself, so its
        retry with the same id after DeposedLeaderError was never applied."""
        if not (recorded or record_errors):  # nobody else knows the id: no dedup task
            return await self._apply_once(
                req_id, stmts, False, state or ConnState(),
                self._write_pragmas if pragmas is None else pragmas, local, False)
        task = self._inflight.get(req_id)
        if task is None:
            task = asyncio.ensure_future(self._apply_once(
                req_id, stmts, record_errors, state or ConnState(),
                self._write_pragmas if pragmas is None else pragmas, local,
                recorded or record_errors))
            self._inflight[req_id] = task
            task.add_done_callback(lambda t: self._inflight.pop(req_id, None) and (
                t.cancelled() or t.exception()))  # retrieved: a dead caller may not
        return await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def _writable(self, timeout: float | None = None,
                        receipt: dict[str, int] | None = None) -> AsyncIterator[None]:
        """A leader transaction in which writes are allowed (query_only is lifted
        only here, so SQLite itself tells every other statement it may not write).
        ``timeout``: seconds to wait for the connection (BusyTimeoutError);
        ``receipt``: gets the commit's number and generation (``Database.committing``)."""
        # DEFERRED: with query_only on, BEGIN IMMEDIATE counts as a write; and with
        # one connection writing, IMMEDIATE or EXCLUSIVE would change nothing.
        async with self.db.committing(timeout=timeout, receipt=receipt):
            if not self.is_leader:  # stepped down while waiting for our turn
                raise DeposedLeaderError(f"this tab no longer leads {self.name!r}")
            self.db.run("PRAGMA query_only = OFF", ())  # (our turn: no await needed)
            try:
                yield
            finally:
                self.db.run("PRAGMA query_only = ON", ())

    async def _apply_once(self, req_id: str, stmts: list[tuple[str, Any]],
                          record_errors: bool, state: ConnState,
                          pragmas: dict[str, str], local: bool = True,
                          recorded: bool = True) -> dict[str, Any]:
        tables: set[str] = set()
        generation = self._store.generation
        failure: dict[str, Any] | None = None
        session = self._session
        receipt: dict[str, int] = {}
        try:
            async with self._writable(timeout=self.busy_timeout, receipt=receipt):
                done = await self.db.execute(
                    f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?",
                    (req_id,)) if recorded else None
                if done and done.rows:
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
                                    sql, decode_params(params))
                            finally:
                                session.ran(kind)  # failed too: changes() is then 0
                            results.append(result)
                    finally:
                        session.record_tables(None)
                        state = session.end()
                    reply = {"ok": [result_to_wire(r) for r in results],
                             "state": state.to_wire()}
                    if recorded:
                        await self.db.execute(
                            f"INSERT INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                            (req_id, json.dumps(reply), time.time()))
        except Exception as exc:  # sqlite3, ours, or a bad parameter (OverflowError...)
            if isinstance(exc, DeposedLeaderError) or (
                    isinstance(exc, BusyTimeoutError) and record_errors):
                raise  # (a queued write waits in the outbox for the next drain)
            if isinstance(exc, BusyTimeoutError):  # not applied, nothing to record
                return {"error": [type(exc).__name__, str(exc)], "state": state.to_wire(),
                        "version": self._store.version}
            failure = {"error": [type(exc).__name__, str(exc)], "state": state.to_wire()}
            if not record_errors:
                return {**failure, "version": self._store.version}
        if failure is not None:  # the statements rolled back; record only the outcome
            reply = failure
            async with self._writable():
                await self.db.execute(
                    f"INSERT OR IGNORE INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                    (req_id, json.dumps(failure), time.time()))
        try:
            version = await self._flush_and_announce(tables, local=local)
        except DeposedLeaderError:
            if not self._stored(receipt):
                raise
            version = self._store.version  # stored before the drop: it stands
        if self._store.generation != generation and not self._stored(receipt):
            # We stepped down between our commit and the flush, and stepping down
            # dropped the write: the sender must ask the new leader, with the same
            # id. (Stored before the drop, it stands; a recorded write's row then
            # also tells the new leader so.)
            raise DeposedLeaderError(
                f"leadership of {self.name!r} moved before write {req_id} was durable")
        return {**reply, "version": version}

    def _stored(self, receipt: dict[str, int]) -> bool:
        """Whether the commit ``receipt`` names (``Database.committing``) is in
        storage, in whatever generation it was made (False: none was made)."""
        return bool(receipt) and self._store.durable_in_generation(
            receipt["seq"], receipt["generation"])

    async def _flush_and_announce(self, tables: set[str], *, local: bool = True) -> int:
        """Make our commits durable, announce the durable version and return it.
        That is the store's version when we resume, not the one the flush that
        carried our commit reached: another task's later flush may have landed
        while this task waited to resume, and what a tab announces only grows."""
        try:
            await self.db.sync()
            version = self._store.version
        except DeposedLeaderError:
            if self._lease is not None:
                self._locks.release(self._lease)  # it was stolen; make sure we let go
            await self._step_down()
            raise
        self._saw(version)
        self._post({"t": "changed", "version": version, "epoch": self.epoch,
                    "tables": sorted(tables), "tab": self.tab_id})
        if tables:  # (tables written, created, dropped or altered)
            self._notify({"version": version, "tables": sorted(tables),
                          "by": "local" if local else "remote"})
        return version

    async def _serve_write(self, msg: Message) -> None:
        stmts = [(s, p) for s, p in msg["stmts"]]
        try:
            reply = await self._apply(msg["id"], stmts,
                                      state=ConnState.from_wire(msg.get("state")),
                                      pragmas=dict(msg.get("pragmas") or {}), local=False)
        except DeposedLeaderError:
            return  # the sender resends to the new leader
        self._post({"t": "result", "id": msg["id"], "to": msg["tab"], **reply})
