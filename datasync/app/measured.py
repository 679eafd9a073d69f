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

import asyncio
import contextlib
import contextvars
from asyncio import current_task
from asyncio.events import _get_running_loop
from collections.abc import Iterable, Iterator
from time import perf_counter
from typing import Any

__all__ = ["Measured", "MeasuredTransaction", "kind_of", "unmeasured"]

#: The task inside a measured call (or _ANY: every task, while begin() starts the
#: task that will hold its transaction, whose statement calls are the wrapper's).
_inside: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "datasync_measured_call", default=None)
#: The task inside a measured transaction() block (a nested one is a savepoint).
_in_tx: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "datasync_measured_transaction", default=None)
_ANY = object()
_NO_TASK = object()  # a call driven outside any task (a coroutine stepped by hand)
#: Longest text a batch or a script is known by in the per-statement figures.
LABEL_CHARS = 1000


def _task_portable() -> Any:
    """The current task, else _NO_TASK (no running loop, or outside a task)."""
    try:
        return current_task() or _NO_TASK
    except RuntimeError:  # no running loop
        return _NO_TASK


def _task_by_loop() -> Any:
    """The same answer, without current_task()'s Python frame and exception."""
    return _by_loop.get(_get_running_loop(), _NO_TASK) or _NO_TASK  # type: ignore[union-attr]


_by_loop = getattr(asyncio.tasks, "_current_tasks", None)
#: CPython 3.11's current_task() is Python (a frame, get_running_loop() raising when
#: there is no loop, a dict lookup); 3.12's is C. _task is on the hot path.
_task = (_task_by_loop if type(current_task).__name__ == "function"
         and isinstance(_by_loop, dict) else _task_portable)


def _nested(me: Any) -> bool:
    guard = _inside.get()
    return guard is not None and (guard is me or guard is _ANY)


@contextlib.contextmanager
def unmeasured() -> Iterator[None]:
    """Statement calls this task makes inside the block are not counted: for the app
    layer's own bookkeeping (a schema version check, the tables a query reads), so
    that ``db.metrics()`` counts what the application asked for.

    Example::

        with unmeasured():
            version = (await db.query("PRAGMA schema_version"))[0]["schema_version"]

    Tasks started inside the block are counted as usual."""
    token = _inside.set(_task())
    try:
        yield
    finally:
        _inside.reset(token)


def kind_of(result: Any) -> str:
    """``"read"`` for a statement's Result with columns and no row changed, else
    ``"write"`` (see the module docstring).

    Example: ``kind_of(await db.execute("SELECT 1")) == "read"``"""
    return "read" if result.columns and result.rowcount < 0 else "write"


def _batch_kind(results: Any) -> str:
    return "read" if results and all(kind_of(r) == "read" for r in results) else "write"


def _label(texts: Iterable[str]) -> str:
    """The statements of a batch as one text: joined by ``; ``, cut at
    :data:`LABEL_CHARS` characters."""
    out: list[str] = []
    size = 0
    for text in texts:
        out.append(text)
        size += len(text) + 2
        if size > LABEL_CHARS:
            return "; ".join(out)[:LABEL_CHARS] + " ..."
    return "; ".join(out)


async def _measure(metrics: Any, label: str | None, kind: Any, call: Any, *args: Any) -> Any:
    """``await call(*args)`` as one measured call: ``kind(value)`` names its kind."""
    token = _inside.set(_task())
    start = perf_counter()
    try:
        value = await call(*args)
        seconds = perf_counter() - start
    except Exception as exc:
        metrics.failed(exc)
        raise
    finally:
        _inside.reset(token)
    metrics.ran(kind(value), label, seconds)
    return value


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
        if getattr(type(self), "execute_is_leaf", False):
            # (Database's: it calls nothing measured, so no guard to set)
            start = perf_counter()
            try:
                result = await super().execute(sql, params)  # type: ignore[misc]
                seconds = perf_counter() - start
            except Exception as exc:
                metrics.failed(exc)
                raise
        else:
            token = _inside.set(me or _task())
            start = perf_counter()
            try:
                result = await super().execute(sql, params)  # type: ignore[misc]
                seconds = perf_counter() - start
            except Exception as exc:
                metrics.failed(exc)
                raise
            finally:
                _inside.reset(token)
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


class _TimedTransaction:
    """``transaction()``'s context manager, timed (see the module docstring)."""

    __slots__ = ("_db", "_cm", "_start", "_token")

    def __init__(self, db: Any, cm: Any) -> None:
        self._db, self._cm = db, cm
        self._start: float | None = None
        self._token: Any = None

    async def __aenter__(self) -> Any:
        me = _task()
        if _nested(me):  # inside batch() say: part of that call
            return await self._cm.__aenter__()
        guard = _inside.set(me)  # what entering calls (a tab's begin) is this call
        try:
            if _in_tx.get() is me:  # a savepoint: its statements count, not itself
                value = await self._cm.__aenter__()
            else:
                token = _in_tx.set(me)
                start = perf_counter()
                try:
                    value = await self._cm.__aenter__()
                except BaseException as exc:
                    _in_tx.reset(token)
                    if isinstance(exc, Exception):
                        self._db._app.metrics.failed(exc)
                    raise
                self._token, self._start = token, start
        finally:
            _inside.reset(guard)
        if value is self._db:
            return value
        return MeasuredTransaction(value, self._db._app.metrics, None)

    async def __aexit__(self, *exc_info: Any) -> Any:
        if self._start is None:
            return await self._cm.__aexit__(*exc_info)
        metrics = self._db._app.metrics
        guard = _inside.set(_task())
        try:
            suppress = await self._cm.__aexit__(*exc_info)
            seconds = perf_counter() - self._start
        except Exception as exc:
            if exc is not exc_info[1]:  # the commit (or the rollback) failed
                metrics.failed(exc)
            else:
                metrics.ran("transaction", None, perf_counter() - self._start)
            raise
        finally:
            _inside.reset(guard)
            _in_tx.reset(self._token)
        metrics.ran("transaction", None, seconds)
        return suppress


class MeasuredTransaction:
    """What a measured ``begin()`` returns (and ``transaction()`` yields when the
    database yields another object, as a tab does): the transaction ``tx``, whose
    ``execute``/``query``/``executemany``/``batch``/``execute_now`` are measured,
    and, when ``started`` is given (``begin``), whose ``commit``/``rollback`` end one
    timed ``"transaction"``. Any other attribute is ``tx``'s.

    Example: ``tx = await db.begin(); await tx.execute("INSERT ..."); await tx.commit()``
    """

    def __init__(self, tx: Any, metrics: Any, started: float | None) -> None:
        self._tx, self._metrics, self._started = tx, metrics, started

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._tx, name)
        if name == "execute_now" and value is not None:
            return self._now(value)
        return value

    def _now(self, run: Any) -> Any:
        metrics = self._metrics

        def execute_now(sql: str, params: Any = ()) -> Any:
            start = perf_counter()
            try:
                result = run(sql, params)
            except Exception as exc:
                metrics.failed(exc)
                raise
            if result is not None:  # None: not run (the caller uses execute)
                metrics.ran(kind_of(result), sql, perf_counter() - start)
            return result

        return execute_now

    async def execute(self, sql: str, params: Any = ()) -> Any:
        return await _measure(self._metrics, sql, kind_of, self._tx.execute, sql, params)

    async def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> Any:
        return await _measure(self._metrics, sql, lambda _: "write", self._tx.executemany,
                              sql, seq_of_params)

    async def batch(self, statements: Iterable[Any]) -> list[Any]:
        stmts = list(statements)
        return await _measure(self._metrics, _label(str(s[0]) for s in stmts),  # type: ignore[no-any-return]
                              _batch_kind, self._tx.batch, stmts)

    async def commit(self, *args: Any, **kwargs: Any) -> Any:
        return await self._end(self._tx.commit, *args, **kwargs)

    async def rollback(self) -> None:
        await self._end(self._tx.rollback)

    async def _end(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        started, self._started = self._started, None  # counted once
        if started is None:
            return await call(*args, **kwargs)
        try:
            value = await call(*args, **kwargs)
        except Exception as exc:
            self._metrics.failed(exc)
            raise
        self._metrics.ran("transaction", None, perf_counter() - started)
        return value
