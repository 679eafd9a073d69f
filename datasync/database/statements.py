"""Statements and transactions of a database.

Example::

    res = await db.execute("INSERT INTO t(v) VALUES (?)", ("a",))   # Result
    rows = await db.query("SELECT * FROM t")                          # list of dicts
    await db.executemany("INSERT INTO t(v) VALUES (?)", [("b",), ("c",)])
    async with db.transaction():
        ...

A mixin of :class:`~datasync.Database` over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from .. import vfs
from ..errors import InvalidOptionError
from ..cdc.connection import split_script
from .core import Result, _in_transaction, raise_translated
from .explicit import Transaction


class Statements:
    """execute, executemany, query, transaction."""

    #: :meth:`execute` makes no other statement call of the database (no query,
    #: batch, transaction...): the app layer's timing (datasync.app.measured) then
    #: needs no guard against counting it twice. Keep it true, or set it False.
    execute_is_leaf = True

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        """Run one statement; returns its columns, rows, rowcount and lastrowid.

        Example: ``res = await db.execute("SELECT id FROM t WHERE x > ?", (3,))``
        """
        if self.idle():
            # Nothing holds or awaits the connection: run now, without taking the
            # turn (nothing can come between: one thread). Saves a JS call most of
            # its cost, and lets it complete without a trip through the event loop.
            self._check_open()
            if self._store.generation != self._generation:
                self._after_fork()
            self._check_image()
            result, committed = self._run_counted(sql, params)
        else:
            async with self.turn():
                result, committed = self._run_counted(sql, params)
        await self._after_write(committed)
        return result

    def _run_counted(self, sql: str, params: Sequence[Any] | dict[str, Any]
                     ) -> tuple[Result, bool]:
        """Run in our turn: the result, and whether it committed (counted in our
        turn, so no other task's commit)."""
        before = self._store.commits_in_this_thread()
        result = self.run(sql, params)
        return result, self._store.commits_in_this_thread() != before

    async def executemany(
        self, sql: str, seq_of_params: Iterable[Sequence[Any] | dict[str, Any]]
    ) -> Result:
        """Run ``sql`` once per parameter set, atomically (in one transaction).

        Example: ``await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])``
        """
        async with self.turn():
            before = self._store.commits_in_this_thread()
            own_tx = not self._conn.in_transaction
            vfs.take_last_error()
            self._running_own = True
            try:
                if own_tx:
                    self._conn.execute("BEGIN")
                cur = self._conn.executemany(sql, seq_of_params)
                # sqlite3 leaves lastrowid None after executemany: the last insert's
                lastrowid = self._conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                if own_tx:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if own_tx and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise_translated(exc)
            except BaseException:
                if own_tx and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._running_own = False
            result = Result([], [], cur.rowcount, lastrowid)
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
    async def transaction(self, mode: str = "DEFERRED", *,
                          timeout: float | None = None) -> AsyncIterator[Any]:
        """A transaction: committed when the block ends, rolled back on an exception.

        Example::

            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")
                await db.execute("INSERT INTO t VALUES (2)")

        ``mode`` is DEFERRED, IMMEDIATE or EXCLUSIVE. Nested, it is a savepoint.
        ``timeout``: seconds to wait for another task's transaction, then
        :class:`~datasync.BusyTimeoutError` (None: wait as long as it takes).
        """
        if self._owns_transaction():
            async with self._savepoint():
                yield self
            return
        async with self.committing(mode, timeout=timeout):
            yield self

    @asynccontextmanager
    async def committing(self, mode: str = "DEFERRED", *, timeout: float | None = None,
                         receipt: dict[str, int] | None = None) -> AsyncIterator[None]:
        """A top-level :meth:`transaction` that tells the layer above which commit
        it made: ``receipt`` gets ``seq`` (the store's commit number, read while
        this task still holds the connection, so no other commit can be counted)
        and ``generation`` when it commits (see ``BlockStore.durable_in_generation``).

        Example::

            receipt = {}
            async with db.committing(receipt=receipt):
                await db.execute("INSERT INTO t VALUES (1)")
            stored = db.store.durable_in_generation(receipt["seq"], receipt["generation"])
        """
        mode = mode.upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise InvalidOptionError("mode must be DEFERRED, IMMEDIATE or EXCLUSIVE")
        async with self.turn(timeout):
            before = self._store.commits_in_this_thread()
            token = _in_transaction.set((self, asyncio.current_task()))
            try:
                self.run(f"BEGIN {mode}", ())
                try:
                    yield
                    self.run("COMMIT", ())
                    if receipt is not None:
                        receipt.update(seq=self._store.commit_seq,
                                       generation=self._store.generation)
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

    async def batch(self, statements: Iterable[tuple[str, Sequence[Any] | dict[str, Any]]]
                    ) -> list[Result]:
        """Run statements atomically (one transaction); one :class:`Result` each.

        Example::

            await db.batch([("INSERT INTO t VALUES (?)", [1]), ("DELETE FROM t WHERE x = 0", [])])

        A failing statement rolls every one of them back and raises its error."""
        stmts = [(str(sql), params) for sql, params in statements]
        async with self.transaction():
            return [await self.execute(sql, params) for sql, params in stmts]

    async def executescript(self, script: str) -> None:
        """Run the statements of ``script`` (separated by ``;``) in one transaction:
        all of them or none (JS: ``db.exec(script)``).

        Example: ``await db.executescript("CREATE TABLE a(x); CREATE TABLE b(y);")``

        Unlike ``sqlite3``'s ``executescript`` it is atomic, so the script may not
        hold BEGIN/COMMIT itself (SQLite refuses a nested BEGIN)."""
        await self.batch([(sql, ()) for sql in split_script(str(script))])

    exec = executescript

    async def begin(self, mode: str = "DEFERRED", *, timeout: float | None = None,
                    idle_timeout: float | None = None) -> Transaction:
        """A transaction that stays open across calls and tasks (see
        :mod:`datasync.database.explicit`); end it with ``commit()`` or
        ``rollback()``. Other tasks' statements wait until it ends.

        Example: ``tx = await db.begin(); await tx.execute(...); await tx.commit()``"""
        tx = Transaction(lambda: self.transaction(mode, timeout=timeout), self.execute,
                         name=self.name, idle_timeout=idle_timeout, holding=self,
                         run_now=self.run)
        return await tx.start()

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        name = f"datasync_sp_{id(asyncio.current_task())}"
        self.run(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self.run(f"RELEASE {name}", ())

