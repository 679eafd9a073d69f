"""Timing every statement call of a database: :class:`Measured`, the first base of
:class:`~datasync.app.AppCalls` (hence of ``Database``, ``SharedDatabase``,
``ReplicaTab`` and ``Replica``).

Example::

    db = await datasync.open("app.dsdb")
    await db.execute("SELECT 1")                      # one "read"
    async with db.transaction():                      # one "transaction" ...
        await db.execute("INSERT INTO t VALUES (1)")  # ... and one "write"
    db.metrics()["statements"]      # {"read": 1, "write": 1, "transaction": 1}

What is counted (into :class:`~datasync.app.metrics.Metrics`, the database's
``AppState.metrics``):

* every user call of ``execute``, ``query``, ``executemany``, ``batch``,
  ``executescript`` (and ``exec``) once, however the class implements it: a call
  made inside another measured call *of the same task* (``Database.batch`` runs
  ``self.transaction()`` and ``self.execute``; a tab's ``execute`` runs its
  ``batch``; a tab's ``execute`` runs its inner ``Database``'s) is not counted
  again (a context variable holds the task in a measured call; tasks started
  meanwhile, such as change callbacks, are counted on their own).
* its kind: ``"read"`` when the statement returned a result set and changed no row
  (``Result.columns`` not empty and ``rowcount < 0``: SELECT, a PRAGMA that reads),
  ``"write"`` otherwise (DML, with or without RETURNING: ``rowcount >= 0``; DDL,
  BEGIN/COMMIT, a PRAGMA that sets: no columns). A ``batch`` is a read when every
  one of its statements is; ``executemany`` and ``executescript`` are writes.
* ``query`` is ``execute`` then dicts: :meth:`Measured.query` calls
  ``self.execute`` (what every class's ``query`` does: ``Database``, a tab's
  ``Forwarding``, a replica's ``ReplicaStatements``), so it is timed there.
* ``transaction()`` (an async context manager): one ``"transaction"`` timed from
  entering (waiting for the connection included) to the end of its exit (the
  commit, or the rollback when the block raised: a rolled-back transaction is
  counted too); the statements inside count one by one. A nested one (a
  savepoint) is not counted as a transaction. ``begin()``: one ``"transaction"``
  timed from ``begin`` to ``commit()``/``rollback()``; the object returned times
  its statements (it is a thin wrapper: every other attribute is the
  transaction's own).
* errors: a call that raises an ``Exception`` counts one error under its class
  name and neither a statement nor a latency; a transaction counts one when
  entering or committing it fails (not when its block raised: a failing statement
  in it was counted where it failed). Cancellation is not an error.

A class whose ``execute`` calls nothing measured declares it
(``execute_is_leaf = True``, as ``Database``'s ``Statements`` does): its
``execute`` then sets no guard and skips finding the task, the hot path.

Cost: natively (CPython 3.11, a 2-core machine shared with other jobs, so the
figures are noisy), ``execute("SELECT 1")`` on an idle ``Database``, 300 blocks of
1,000 calls alternating with the unmeasured ``Statements.execute``, three runs:
the paired difference per call was 1.2-1.4 µs at the 10th percentile of blocks and
2.7-3.4 µs at the median (unmeasured: 5.8-6.2 µs p10, 9.5-11.1 µs median; the same
call took 5.4 µs on the quiet machine). The parts (timeit, same machine): two
clocks 0.2 µs, :meth:`~datasync.app.metrics.Metrics.ran` (histogram and
per-statement figures) 0.8 µs; where a guard is needed, finding the task 0.35 µs
and the context variable 0.2 µs more.
"""
from __future__ import annotations

from collections.abc import Iterable
from time import perf_counter
from typing import Any

from .timing import (_ANY, MeasuredTransaction, _batch_kind, _inside, _label, _measure,
                     _nested, _task, _TimedTransaction, kind_of, unmeasured)

__all__ = ["Measured", "MeasuredTransaction", "kind_of", "unmeasured"]


class Measured:
    """Times the statement calls of the class after it in the MRO (see the module
    docstring); records into ``self._app.metrics`` (:class:`~datasync.app.AppCalls`).

    Example: ``class Database(AppCalls, ..., Statements, DatabaseCore)`` (AppCalls
    derives from Measured): ``await db.execute(sql)`` runs ``Statements.execute``,
    timed. Each method below is the database's own, documented there."""

    _app: Any

    async def execute(self, sql: str, params: Any = ()) -> Any:
        """Run one statement; returns its Result (the database's ``execute``, timed).

        Example: ``res = await db.execute("SELECT id FROM t WHERE x > ?", (3,))``"""
        # The hot path (its cost: see the module docstring).
        guard = _inside.get()
        me: Any = None
        if guard is not None:
            me = _task()
            if guard is me or guard is _ANY:
                return await super().execute(sql, params)  # type: ignore[misc]
        metrics = self._app.metrics
        if not getattr(type(self), "execute_is_leaf", False):
            return await _measure(metrics, sql, kind_of, super().execute,  # type: ignore[misc]
                                  sql, params, task=me)
        # Database's execute calls nothing measured, so no guard to set; written out
        # (kind_of inline too) rather than through _measure: the idle fast path.
        start = perf_counter()
        try:
            result = await super().execute(sql, params)  # type: ignore[misc]
            seconds = perf_counter() - start
        except Exception as exc:
            metrics.failed(exc)
            raise
        metrics.ran("read" if result.columns and result.rowcount < 0 else "write", sql, seconds)
        return result

    async def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """The rows of a statement as dicts: :meth:`execute`, then one dict a row.

        Example: ``[{'id': 1}] == await db.query("SELECT 1 AS id")``"""
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> Any:
        """Run ``sql`` once per parameter set, atomically (the database's own, timed).

        Example: ``await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])``"""
        call = super().executemany  # type: ignore[misc]
        if _nested(_task()):
            return await call(sql, seq_of_params)
        return await _measure(self._app.metrics, sql, lambda _: "write", call, sql,
                              seq_of_params)

    async def batch(self, statements: Iterable[Any]) -> list[Any]:
        """Run statements atomically; a Result each (the database's own, timed).

        Example: ``await db.batch([("INSERT INTO t VALUES (?)", [1]), ("SELECT 1", [])])``"""
        call = super().batch  # type: ignore[misc]
        if _nested(_task()):
            return await call(statements)  # type: ignore[no-any-return]
        stmts = list(statements)
        return await _measure(self._app.metrics, _label(str(s[0]) for s in stmts),  # type: ignore[no-any-return]
                              _batch_kind, call, stmts)

    async def executescript(self, script: str) -> None:
        """Run the statements of ``script`` atomically (the database's own, timed).

        Example: ``await db.executescript("CREATE TABLE a(x); CREATE TABLE b(y);")``"""
        call = super().executescript  # type: ignore[misc]
        if _nested(_task()):
            return await call(script)  # type: ignore[no-any-return]
        await _measure(self._app.metrics, _label([str(script)]), lambda _: "write",
                       call, script)

    async def exec(self, script: str) -> None:
        """:meth:`executescript` (JS: ``db.exec(script)``).

        Example: ``await db.exec("CREATE TABLE a(x); INSERT INTO a VALUES (1)")``"""
        await self.executescript(script)

    def transaction(self, mode: str = "DEFERRED", **kwargs: Any) -> Any:
        """A transaction block, committed at its end (the database's own, timed).

        Example: ``async with db.transaction() as tx: await tx.execute(...)``"""
        try:
            cm = super().transaction(mode, **kwargs)  # type: ignore[misc]
        except Exception as exc:  # refused at once (a replica has none)
            self._app.metrics.failed(exc)
            raise
        return _TimedTransaction(self, cm)

    async def begin(self, mode: str = "DEFERRED", **kwargs: Any) -> Any:
        """A transaction that stays open across calls (the database's own; the
        object returned is a :class:`MeasuredTransaction` around it).

        Example: ``tx = await db.begin(); await tx.execute(...); await tx.commit()``"""
        call = super().begin  # type: ignore[misc]
        if _nested(_task()):
            return await call(mode, **kwargs)
        metrics = self._app.metrics
        # The task begin() starts to hold the transaction inherits _ANY: its calls
        # of our execute are the wrapper's statements, not counted twice.
        token = _inside.set(_ANY)
        start = perf_counter()
        try:
            tx = await call(mode, **kwargs)
        except Exception as exc:
            metrics.failed(exc)
            raise
        finally:
            _inside.reset(token)
        return MeasuredTransaction(tx, metrics, start)
