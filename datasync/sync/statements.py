"""A replica's statements: reads on the local copy, writes to the primary.

Example::

    await replica.execute("INSERT INTO notes(body) VALUES (?)", ("hi",))  # the primary
    rows = await replica.query("SELECT * FROM notes")                     # local

Whether a statement writes is SQLite's answer (``sqlite3_stmt_readonly`` on the
local connection). A write goes through :meth:`ReplicaStatements.write`: online, one
push (after the older waiting writes) and a pull before the answer; otherwise the
offline path (durable outbox, then applied locally with its mark in
``_datasync_local``). A part of :class:`~.replica.Replica`.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ..cdc.connection import split_script
from ..database import Result
from ..errors import ReplicaWriteError, SyncUnavailableError
from ..tabs.wire import decode_params, rebuild_error, result_from_wire, result_to_wire
from ..vfs import capi
from .pulling import LOCAL_TABLE
from .pushing import new_entry

Params = Sequence[Any] | dict[str, Any]


#: Why a replica refuses an interactive transaction (BEGIN, transaction(), begin()).
NO_TRANSACTIONS = ("a replica has no interactive transactions: its writes reach the "
                   "primary as whole transactions; send the statements together with "
                   "batch([...])")


class ReplicaRefusals:
    """The calls a replica cannot send to its primary (single-tab and shared)."""

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplicaWriteError(NO_TRANSACTIONS)

    async def begin(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplicaWriteError(NO_TRANSACTIONS)

    async def import_(self, data: bytes) -> Any:
        raise ReplicaWriteError("a replica cannot replace its primary's database: import "
                                "on the server (python -m datasync import), then pull")

    async def restore(self, version: int) -> int:
        raise ReplicaWriteError("a replica cannot restore its primary: restore on the "
                                "server, then pull")


class ReplicaStatements(ReplicaRefusals):
    """The database calls of :class:`~.replica.Replica` (see the module docstring)."""

    db: Any
    outbox: Any
    offline: bool
    remember_results: bool
    _lock: asyncio.Lock
    _queue: dict[str, dict[str, Any]]
    _resolving: dict[str, Any]
    _last_at: float
    _wake: asyncio.Event
    pull: Callable[..., Awaitable[int]]
    push_locked: Callable[[], Awaitable[int]]
    resolve_conflicts: Callable[[], Awaitable[int]]
    send: Callable[[list[dict[str, Any]]], Awaitable[dict[str, Any]]]
    _mark_online: Callable[..., None]
    replica_state: Callable[[], dict[str, Any] | None]
    sync_url: str

    def _prepares_readonly(self, sql: str) -> bool | None:
        """SQLite's own answer (``sqlite3_stmt_readonly``), None if SQLite cannot
        prepare ``sql`` on the local copy (a syntax error, a table not pulled yet)."""
        return capi.statement_readonly(self.db.connection.handle, sql)

    async def _is_read(self, sql: str) -> bool:
        """Whether ``sql`` only reads. One SQLite cannot prepare here is looked at
        again after a pull (the primary may have the table already); if it still
        cannot, it runs locally, which raises its error."""
        readonly = self._prepares_readonly(sql)
        if readonly is None and not self.offline:
            try:
                await self.pull()
            except SyncUnavailableError:
                return True
            readonly = self._prepares_readonly(sql)
        return True if readonly is None else readonly

    def _entry(self, statements: list[tuple[str, Any]]) -> dict[str, Any]:
        self._last_at = max(time.time(), self._last_at + 1e-6)
        state = self.replica_state()
        return {**new_entry(statements, self._last_at),
                "db_id": state["db_id"] if state else None, "url": self.sync_url}

    async def write(self, statements: list[tuple[str, Any]]) -> list[Result]:
        """Apply ``statements`` as one transaction on the primary (or queue them);
        returns one Result per statement (see the module docstring)."""
        for sql, _params in statements:
            if sqlite3.complete_statement(sql) and sql.strip().rstrip(";").upper() in (
                    "BEGIN", "COMMIT", "ROLLBACK", "END"):
                raise ReplicaWriteError(
                    f"{sql!r} on a replica: its writes are sent as whole transactions; "
                    "send the statements together with batch([...])")
        return await self.write_entry(self._entry(statements))

    async def write_entry(self, entry: dict[str, Any]) -> list[Result]:
        """:meth:`write` for a write whose id is already chosen (``{id, at,
        statements: [[sql, wire params], ...]}``): another tab's, sent here once
        and perhaps again. One still waiting in the outbox answers with what it
        did locally."""
        waiting = self._queue.get(entry["id"])
        if waiting is not None and "local" in waiting:
            return [result_from_wire(r) for r in waiting["local"]]
        if not self.offline:
            async with self._lock:
                try:
                    if self._queue:
                        await self.push_locked()
                    # Writes the primary refused, waiting for the handler, do not
                    # hold this one back (the handler itself may be writing).
                    if all(wid in self._resolving for wid in self._queue):
                        reply = await self.send([entry])
                        outcome = reply["results"][0]
                    else:
                        outcome = None  # older writes still wait (conflicts kept)
                except SyncUnavailableError:
                    outcome = None
            await self.resolve_conflicts()  # (older writes the primary refused)
            if outcome is not None:
                if "error" in outcome:
                    name, message = outcome["error"]
                    raise rebuild_error(name, message)
                try:
                    await self.pull()
                except SyncUnavailableError as exc:  # applied there; shown at the next pull
                    self._mark_online(False, exc)
                return [result_from_wire(r) for r in outcome["ok"]]
        return await self._write_offline(entry)

    async def _write_offline(self, entry: dict[str, Any]) -> list[Result]:
        await self.outbox.put(entry)  # durable before it is applied or answered
        try:
            async with self.db.turn():
                results = self.apply_in_turn(entry)
        except BaseException:
            await self.outbox.delete(entry["id"])
            raise
        if self.remember_results:  # so that a resend of its id gets the same answer
            entry = {**entry, "local": [result_to_wire(r) for r in results]}
            await self.outbox.put(entry)
        self._queue[entry["id"]] = entry
        self._wake.set()
        return results

    def apply_in_turn(self, entry: dict[str, Any]) -> list[Result]:
        """Apply a waiting write locally, in one transaction with its mark in
        ``_datasync_local`` (inside the database's turn)."""
        run = self.db.run
        plain = sqlite3.Connection.execute
        query_only = plain(self.db.connection, "PRAGMA query_only").fetchone()[0]
        if query_only:  # a leader tab's connection: writes are lifted only here
            plain(self.db.connection, "PRAGMA query_only = OFF")
        try:
            run("BEGIN IMMEDIATE", ())
            try:
                results = [run(sql, decode_params(params))
                           for sql, params in entry["statements"]]
                run(f"CREATE TABLE IF NOT EXISTS {LOCAL_TABLE}(id TEXT PRIMARY KEY)", ())
                run(f"INSERT INTO {LOCAL_TABLE}(id) VALUES (?)", (entry["id"],))
                run("COMMIT", ())
            except BaseException:
                if self.db.connection.in_transaction:
                    run("ROLLBACK", ())
                raise
        finally:
            if query_only:
                plain(self.db.connection, "PRAGMA query_only = ON")
        return results

    async def _locally(self, call: Any, *args: Any) -> Any:
        """A read on the local copy. SQLite counts BEGIN and SAVEPOINT as reads: one
        that opened a transaction is rolled back and refused."""
        try:
            return await call(*args)
        finally:
            if self.db.connection.in_transaction:
                async with self.db.turn():
                    self.db.run("ROLLBACK", ())
                raise ReplicaWriteError(f"{NO_TRANSACTIONS} (BEGIN and SAVEPOINT too)")

    async def execute(self, sql: str, params: Params = ()) -> Result:
        """Example: ``await db.execute("INSERT INTO t VALUES (?)", (1,))``

        A read runs on the local copy; a write goes to the primary (see the module
        docstring) and returns its Result. Raises the primary's error (``sqlite3``'s
        classes by name), :class:`~datasync.SyncAuthError` /
        :class:`~datasync.SyncForbiddenError`, :class:`~datasync.ReplicaWriteError`."""
        if await self._is_read(sql):
            return await self._locally(self.db.execute, sql, params)  # type: ignore[no-any-return]
        return (await self.write([(sql, params)]))[0]

    async def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Example: ``rows = await db.query("SELECT * FROM t")``: ``[{column: value}]``,
        as :meth:`execute` routes it."""
        if await self._is_read(sql):
            return await self._locally(self.db.query, sql, params)  # type: ignore[no-any-return]
        res = (await self.write([(sql, params)]))[0]
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Result:
        """Example: ``await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])``:
        one transaction on the primary; ``rowcount`` is the total."""
        if await self._is_read(sql):
            return await self._locally(self.db.executemany, sql, seq_of_params)  # type: ignore[no-any-return]
        results = await self.write([(sql, p) for p in seq_of_params])
        return Result([], [], sum(max(r.rowcount, 0) for r in results),
                      results[-1].lastrowid if results else None)

    async def batch(self, statements: Iterable[tuple[str, Params]]) -> list[Result]:
        """Example: ``await db.batch([("INSERT INTO t VALUES (?)", (1,)), ("DELETE FROM
        u", ())])``: one transaction on the primary (all reads: local); a Result each."""
        stmts = [(sql, params) for sql, params in statements]
        kinds = [self._prepares_readonly(sql) for sql, _ in stmts]
        if False not in kinds and all([k or await self._is_read(sql)
                                       for k, (sql, _) in zip(kinds, stmts)]):
            return await self._locally(self.db.batch, stmts)  # type: ignore[no-any-return]
        return await self.write(stmts)

    async def executescript(self, script: str) -> None:
        """The statements of ``script`` as one :meth:`batch` (where each ends is
        SQLite's answer: :func:`datasync.cdc.connection.split_script`)."""
        stmts: list[tuple[str, Params]] = [(sql.strip(), ()) for sql in split_script(script)]
        if stmts:
            await self.batch(stmts)

    async def queue_write(self, sql: str, params: Sequence[Any] = (), *,
                          timeout: float | None = None) -> Result:
        """Queue the write in the durable outbox (applied locally now, pushed by the
        background sync or :meth:`push`)."""
        return (await self._write_offline(self._entry([(sql, params)])))[0]
