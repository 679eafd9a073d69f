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
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..cdc.connection import split_script
from ..database import Result
from ..errors import DatasyncError, DeposedLeaderError, LeaderUnavailableError
from .classify import Kind
from .session import ConnState
from .wire import Statement, encode_params, rebuild_error, result_from_wire


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
                if not sent:  # one write, however often it is resent
                    self.forwarded_writes += 1
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
        return await self._ask_leader(
            req_id, lambda: {"t": "write", "id": req_id, "tab": self.tab_id,
                             "to": self.leader_id, "stmts": [[s, p] for s, p in stmts],
                             "state": self._session.state.to_wire(),
                             "pragmas": self._write_pragmas},
            deadline, "the write was not applied (it is safe to retry)")

    async def _ask_leader(self, key: str, message: Callable[[], dict[str, Any]],
                          deadline: float, not_done: str) -> dict[str, Any] | None:
        """Post ``message()`` to the leader until its answer for ``key`` arrives (in
        ``_pending``), again each ``resend_interval`` and whenever leadership moves;
        returns it, or None once this tab leads (the caller does it itself). Raises
        LeaderUnavailableError (``not_done`` says what that left undone) at
        ``deadline`` (``time.monotonic()``)."""
        loop = asyncio.get_running_loop()
        fut = self._pending.get(key) or loop.create_future()
        self._pending[key] = fut
        try:
            while not fut.done():
                self._check_open()  # closed while waiting: close() answered it
                if self.is_leader:
                    return None
                if time.monotonic() > deadline:
                    raise LeaderUnavailableError(
                        f"no leader of {self.name!r} answered within {self.write_timeout} s; "
                        f"{not_done}")
                if self.leader_id is None:
                    self._post({"t": "who", "tab": self.tab_id})
                else:
                    self._post(message())
                self._leader_changed.clear()
                waiters = [fut, asyncio.ensure_future(self._leader_changed.wait())]
                await asyncio.wait(waiters, timeout=self.resend_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiters[1].cancel()
            return fut.result()
        finally:
            self._pending.pop(key, None)
