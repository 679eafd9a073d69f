"""A transaction held open across calls: what ``begin()`` returns.

Example::

    tx = await db.begin()
    n = (await tx.query("SELECT n FROM counter"))[0]["n"]
    await tx.execute("UPDATE counter SET n = ?", (n + 1,))
    await tx.commit()                  # or: await tx.rollback()

``async with db.transaction():`` ties a transaction to the task that opened it.
Callers whose statements arrive as separate calls (each JS call into Pyodide is
a task of its own; a follower tab's statements arrive as messages) need a
transaction that outlives a call: one task (the *holder*) enters the database's
transaction and runs, in order, each statement handed to it; other tasks wait
for the database as they would for any transaction. The holder ends at
:meth:`Transaction.commit` / :meth:`Transaction.rollback`, after ``idle_timeout``
seconds without a call (the caller is presumed dead: rolled back), or at
:meth:`Transaction.abort`. With ``clock_from_creation=True`` (a caller that can say
it is alive while it waits, :meth:`Transaction.touch`: another tab resending its
``begin``) the idle clock runs from creation, not from entering, so a caller that
died while waiting for the database is refused the moment it gets it, instead of
holding it for one more ``idle_timeout`` (several dead callers queued for the
database would otherwise hold it one after the other).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, AsyncContextManager

from ..errors import TransactionAbortedError
from .core import Result

Params = Sequence[Any] | dict[str, Any]
Runner = Callable[[str, Params], Awaitable[Result]]
NowRunner = Callable[[str, Params], Result]


async def run_many(run: Runner, sql: str, seq_of_params: Iterable[Params]) -> Result:
    """``sql`` once per parameter set through ``run``, as ``executemany`` reports it:
    ``rowcount`` the total, ``lastrowid`` the last statement's."""
    total, last = 0, None
    for params in seq_of_params:
        res = await run(sql, params)
        total += max(res.rowcount, 0)
        last = res.lastrowid
    return Result([], [], total, last)


class _Rollback(Exception):
    """Raised inside the holder to leave the transaction by rolling it back."""


class Transaction:
    """An open transaction whose statements may come from any task; see the module
    docstring. Raises :class:`~datasync.TransactionAbortedError` for a call after it
    ended (committed, rolled back, aborted)."""

    def __init__(self, enter: Callable[[], AsyncContextManager[Any]], run: Runner, *,
                 name: str, idle_timeout: float | None = None, holding: Any = None,
                 run_now: NowRunner | None = None, clock_from_creation: bool = False) -> None:
        self.name = name
        self.idle_timeout = idle_timeout
        self._clock_from_creation = clock_from_creation
        self._enter = enter
        self._run = run
        #: ``run`` without awaiting (for :meth:`execute_now`), if the caller has one.
        self._run_now = run_now
        self._busy = False  # the holder is running a call (it may await inside)
        self._ops: asyncio.Queue[tuple[str, Any, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ended: BaseException | None = None  # why calls are refused now
        self._last_call = time.monotonic()
        self.state = "new"  # -> open -> committed | rolled back | aborted
        #: The database it holds: while open, other callers' waits for it are bounded
        #: (DatabaseCore.turn), since only this transaction's calls can end it.
        self._holding = holding

    @property
    def open(self) -> bool:
        return self.state == "open"

    async def start(self) -> "Transaction":
        """Enter the transaction (waiting for the database like any transaction;
        raises what entering raises, e.g. :class:`~datasync.BusyTimeoutError`)."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._hold(ready))
        try:
            await asyncio.shield(ready)
        except asyncio.CancelledError:
            # Nobody awaits ready now: its outcome must not be reported as lost.
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.abort(TransactionAbortedError(f"begin() on {self.name!r} was cancelled"))
            raise
        return self

    def touch(self) -> None:
        """The caller is alive (resets the idle timeout)."""
        self._last_call = time.monotonic()

    def _idle_error(self) -> TransactionAbortedError:
        return TransactionAbortedError(
            f"the transaction on {self.name!r} was rolled back: its caller sent nothing "
            f"for {self.idle_timeout:g} s (a closed or crashed tab); run it again")

    def _silent_too_long(self) -> bool:
        return (self.idle_timeout is not None
                and time.monotonic() - self._last_call >= self.idle_timeout)

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` inside the transaction, after the calls before it."""
        return await self._send("call", fn)

    async def execute(self, sql: str, params: Params = ()) -> Result:
        return await self.call(lambda: self._run(sql, params))

    def execute_now(self, sql: str, params: Params = ()) -> Result | None:
        """Run one statement at once inside the transaction if its holder is idle
        (no call queued or running: nothing to overtake); None: use :meth:`execute`.

        Example: ``res = tx.execute_now("SELECT 1") or await tx.execute("SELECT 1")``

        The holder is parked waiting for its next call and keeps the database's
        turn, so the statement runs in the transaction as if the holder ran it."""
        if (self._run_now is None or self.state != "open" or self._ended is not None
                or self._busy or not self._ops.empty()):
            return None
        self.touch()
        return self._run_now(sql, params)

    async def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Result:
        return await self.call(lambda: run_many(self._run, sql, seq_of_params))

    async def batch(self, statements: Iterable[tuple[str, Params]]) -> list[Result]:
        async def run_all() -> list[Result]:
            return [await self._run(sql, params) for sql, params in statements]

        return await self.call(run_all)

    async def commit(self, before: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """Commit; ``before()`` runs inside first (its result is returned). A
        failing commit rolls back and raises."""
        return await self._send("commit", before)

    async def rollback(self) -> None:
        """Roll back (a no-op once the transaction ended without committing)."""
        if self.state in ("rolled back", "aborted"):
            return
        await self._send("rollback", None)

    def abort(self, error: BaseException) -> None:
        """Roll back as soon as the current call returns; every later call raises
        ``error``."""
        if self._ended is None:
            self._ended = error
        if self._task is not None and not self._task.done():
            fut = asyncio.get_running_loop().create_future()
            self._ops.put_nowait(("abort", error, fut))

    # -- the holder --------------------------------------------------------------
    async def _send(self, kind: str, payload: Any) -> Any:
        if self._ended is not None:
            raise self._ended
        if self.state != "open":
            raise TransactionAbortedError(
                f"the transaction on {self.name!r} is {self.state}: begin a new one")
        self.touch()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.put_nowait((kind, payload, fut))
        return await fut

    async def _next(self) -> tuple[str, Any, asyncio.Future[Any]]:
        while True:
            if self.idle_timeout is None:
                return await self._ops.get()
            left = self._last_call + self.idle_timeout - time.monotonic()
            try:
                return await asyncio.wait_for(self._ops.get(), max(left, 0.001))
            except asyncio.TimeoutError:
                if self._silent_too_long():
                    return ("abort", self._idle_error(),
                            asyncio.get_running_loop().create_future())

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        ending: asyncio.Future[Any] | None = None
        result: Any = None
        counted = False
        try:
            async with self._enter():
                # Ended while it waited for the database (abort(), or its caller fell
                # silent): give the database up at once, and start() raises.
                if self._ended is not None:
                    raise self._ended
                if not self._clock_from_creation:
                    self.touch()  # the idle clock starts once it holds the database
                elif self._silent_too_long():
                    raise self._idle_error()
                self.state = "open"
                if self._holding is not None:
                    self._holding._explicit_open += 1
                    counted = True
                ready.set_result(None)
                while True:
                    kind, payload, fut = await self._next()
                    self._busy = True  # until the call returns; for good once ending
                    if kind == "call":
                        try:
                            fut.set_result(await payload())
                        except Exception as exc:  # the caller's error; still open
                            fut.set_exception(exc)
                        finally:
                            self._busy = False
                        continue
                    ending = fut
                    if kind == "commit":
                        result = await payload() if payload is not None else None
                        break
                    if kind == "abort":
                        self._ended = self._ended or payload
                        self.state = "aborting"
                    raise _Rollback()
        except _Rollback:
            self.state = "aborted" if self.state == "aborting" else "rolled back"
            if ending is not None and not ending.done():
                ending.set_result(None)
        except BaseException as exc:
            self.state = "aborted"
            self._ended = self._ended or exc
            if not ready.done():
                ready.set_exception(exc)
            elif ending is not None and not ending.done():
                ending.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.state = "committed"
            if ending is not None and not ending.done():
                ending.set_result(result)
        finally:
            if counted:
                self._holding._explicit_open -= 1
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        """Calls queued behind the end get the reason it ended."""
        error = self._ended or TransactionAbortedError(
            f"the transaction on {self.name!r} is {self.state}: begin a new one")
        while not self._ops.empty():
            kind, _, fut = self._ops.get_nowait()
            if fut.done():
                continue
            if kind == "abort":
                fut.set_result(None)  # nobody awaits an abort: it is ended either way
            else:
                fut.set_exception(error)

    def add_done_callback(self, callback: Callable[["Transaction"], None]) -> None:
        """Call ``callback(tx)`` once the transaction ended (however it ended)."""
        assert self._task is not None, "start() first"
        self._task.add_done_callback(lambda _: callback(self))
