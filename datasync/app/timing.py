"""The primitives of the app layer's timing (:mod:`.measured`): the guard that
counts a call once, the kinds, one measured call, and the transaction wrappers.

Example::

    result = await _measure(metrics, sql, kind_of, tx.execute, sql, params)
    with unmeasured():                       # the app layer's own bookkeeping
        await db.query("PRAGMA schema_version")

See :mod:`datasync.app.measured` for what is counted and how.
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

__all__ = ["LABEL_CHARS", "MeasuredTransaction", "kind_of", "unmeasured"]

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


async def _measure(metrics: Any, label: str | None, kind: Any, call: Any, *args: Any,
                   task: Any = None) -> Any:
    """``await call(*args)`` as one measured call: ``kind(value)`` names its kind;
    ``task``: the current task when the caller found it already."""
    token = _inside.set(task or _task())
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
