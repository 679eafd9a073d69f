"""The app layer's calls from ``js/datasync.js`` (``js/app.js``): migrations, live
and cached queries, metrics, query plans. Mixed into :class:`.bridge.JsDatabase`,
so every database JS opens has them (one tab's, shared by tabs, a replica).

Example (what ``js/local.js`` does through Pyodide)::

    spec = '[{"version": 1, "name": "notes", "up": "CREATE TABLE notes(x)"},'
           ' {"version": 2, "name": "seed", "up": {"fn": 0}}]'
    await handle.migrate(spec, [seed], None)     # -> {ok: {from, to, applied, reverted}}
    off = (await handle.live("SELECT * FROM notes", "[]", callback)).ok
    handle.metrics()                             # '{"statements": ...}' (JSON text)

Values cross as :func:`.values.plain_json` makes them: JSON text when JSON carries
them exactly (JS parses it), else JS objects. Keys are Python's (``applied_at``,
``latency_ms``...): the shapes are :mod:`datasync.app`'s. Errors answer ``{error:
{name, message}}`` like every bridge call (``MigrationChecksumError``...).

A migration step written in JS (``up: async (tx) => ...``) crosses as ``{"fn": i}``,
``functions[i]`` being a JS function of a bridge :class:`.bridge.JsTransaction`;
:func:`js_step` makes it the callable :mod:`datasync.app.migrations` runs. Its
statements are *relayed*: JS calls arrive as tasks of their own, so they are handed
to the task running the step, which owns the migration's transaction, and run there.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from .bridge_calls import _eager
from .values import guard, plain_json, reply, to_py_params


class _Relay:
    """The transaction a JS step sees: each statement is queued for the task that
    runs the step (:func:`js_step`), which runs it on the real transaction."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = (
            asyncio.Queue())
        self.ended = False

    async def _call(self, method: str, *args: Any) -> Any:
        if self.ended:
            from ..errors import TransactionAbortedError

            raise TransactionAbortedError(
                "this migration step has ended: await every statement of tx inside its function")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((method, args, done))
        return await done

    async def execute(self, sql: str, params: Any = ()) -> Any:
        return await self._call("execute", sql, params)

    async def executemany(self, sql: str, seq_of_params: Any) -> Any:
        return await self._call("executemany", sql, list(seq_of_params))

    async def batch(self, statements: Any) -> Any:
        return await self._call("batch", list(statements))


def js_step(fn: Any) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A migration's ``up``/``down`` for the JS function ``fn(tx)`` (``tx``: a
    :class:`.bridge.JsTransaction`; it may return a Promise). Its error, thrown or
    rejected, is raised here (a ``JsException``): the migration fails with it.
    Statements it made without awaiting them run after it returned, in order (the
    first that fails fails the step)."""

    async def step(tx: Any) -> None:
        from pyodide.ffi import create_proxy

        from .bridge import JsTransaction

        async def run(method: str, args: tuple[Any, ...], answer: asyncio.Future[Any]
                      ) -> Exception | None:
            try:
                answer.set_result(await getattr(tx, method)(*args))
            except Exception as exc:  # the statement's error goes to JS
                answer.set_exception(exc)
                return exc
            return None

        relay = _Relay()
        proxy = create_proxy(JsTransaction(relay))
        try:
            done = asyncio.ensure_future(_settled(fn(proxy)))
            while True:
                get = asyncio.ensure_future(relay.queue.get())
                await asyncio.wait({done, get}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                await run(*get.result())
            done.result()
            while not relay.queue.empty():  # made, not awaited, before it returned
                error = await run(*relay.queue.get_nowait())
                if error is not None:  # nobody awaits it: the step fails with it
                    raise error
        finally:
            relay.ended = True
            while not relay.queue.empty():  # the step failed: never run
                relay.queue.get_nowait()[2].cancel()
            proxy.destroy()

    return step


async def _settled(value: Any) -> Any:
    """``value``, or what it resolves to if it is a Promise (an async JS function)."""
    if hasattr(value, "then"):
        return await value
    return value


def migrations_from_js(spec_json: str, functions: Any) -> list[dict[str, Any]]:
    """JS migrations (JSON; a step written in JS is ``{"fn": i}``) -> the dicts
    :mod:`datasync.app.migrations` takes, those steps made callables (:func:`js_step`)."""
    items = json.loads(spec_json or "[]")
    out = []
    for item in items:
        migration = dict(item)
        for key in ("up", "down"):
            value = migration.get(key)
            if isinstance(value, dict) and "fn" in value:
                migration[key] = js_step(functions[int(value["fn"])])
        out.append(migration)
    return out


def _now(call: Callable[[], Any]) -> Any:
    """A synchronous call's answer: JSON text (or JS values), or ``{error}``."""
    try:
        value = plain_json(call())
    except Exception as exc:  # the error boundary, as guard()'s
        return reply(error=exc)
    return str(value) if isinstance(value, str) else reply(value)


def _number(value: Any, default: Any) -> Any:
    """A number from JS (a float), or ``default`` for null/undefined."""
    from pyodide.ffi import JsNull

    return default if value is None or isinstance(value, JsNull) else float(value)


class JsAppCalls:
    """migrate, rollback, migration_status, live, cached, metrics, slow_queries,
    explain on ``self.db`` (see :class:`datasync.app.AppCalls` for each)."""

    db: Any

    @_eager
    async def migrate(self, spec_json: str, functions: Any = None, target: Any = None) -> Any:
        """``db.migrate(migrations, {target})`` -> ``{from, to, applied, reverted}``."""
        async def call() -> Any:
            limit = _number(target, None)
            return plain_json(await self.db.migrate(migrations_from_js(spec_json, functions),
                                                    target=None if limit is None else int(limit)))

        return await guard(call)

    @_eager
    async def rollback(self, spec_json: str, functions: Any = None, steps: Any = 1) -> Any:
        """``db.rollback(migrations, {steps})`` -> ``{from, to, applied, reverted}``."""
        async def call() -> Any:
            return plain_json(await self.db.rollback(migrations_from_js(spec_json, functions),
                                                     steps=int(_number(steps, 1))))

        return await guard(call)

    @_eager
    async def migration_status(self, spec_json: str = "[]", functions: Any = None) -> Any:
        """``db.migrationStatus(migrations)`` -> ``[{version, name, checksum,
        applied_at, state}]``."""
        async def call() -> Any:
            return plain_json(await self.db.migration_status(
                migrations_from_js(spec_json, functions)))

        return await guard(call)

    @_eager
    async def live(self, sql: str, params: Any, callback: Any) -> Any:
        """``db.liveQuery(sql, params, callback)``: ``callback(rows)`` (JSON text or
        JS objects: rows as ``query`` returns them) now and after every commit that
        changes them; answers the unsubscriber (a proxy JS calls, then destroys)."""
        async def call() -> Any:
            from pyodide.ffi import create_proxy

            def forward(rows: list[dict[str, Any]]) -> Any:
                return callback(plain_json(rows))

            return create_proxy(await self.db.live(str(sql), to_py_params(params), forward))

        return await guard(call)

    @_eager
    async def cached(self, sql: str, params: Any = None, ttl: Any = None) -> Any:
        """``db.cached(sql, params, {ttl})``: rows (as ``query``), from the cache
        while fresh; ``ttl`` in seconds (default 60)."""
        async def call() -> Any:
            return plain_json(await self.db.cached(str(sql), to_py_params(params),
                                                   ttl=_number(ttl, 60.0)))

        return await guard(call)

    @_eager
    async def explain(self, sql: str, params: Any = None) -> Any:
        """``db.explain(sql, params)`` -> ``{sql, plan, full_scans, suggestions}``."""
        async def call() -> Any:
            return plain_json(await self.db.explain(str(sql), to_py_params(params)))

        return await guard(call)

    def metrics(self) -> Any:
        """``db.metrics()``: the snapshot (:meth:`datasync.app.AppCalls.metrics`)."""
        return _now(self.db.metrics)

    def slow_queries(self, threshold_ms: Any = None, limit: Any = None) -> Any:
        """``db.slowQueries({thresholdMs, limit})``: the slowest statements seen."""
        return _now(lambda: self.db.slow_queries(
            threshold_ms=_number(threshold_ms, 100.0), limit=int(_number(limit, 20))))

    def app_state(self, slow_threshold_ms: Any = None, slow_limit: Any = None) -> str:
        """``{metrics, slow}`` as JSON: what a Worker sends its page once the page
        asked for metrics (``slow``: :meth:`slow_queries` with these arguments, null
        if ``slow_limit`` is null). Measured in Pyodide: about 0.15 ms without
        ``slow``; ``slow`` costs more (1.5 ms for 100 of 600 statements), so a
        Worker reports it only once the page called ``slowQueries()``."""
        slow = None
        limit = _number(slow_limit, None)
        if limit is not None:
            slow = self.db.slow_queries(threshold_ms=_number(slow_threshold_ms, 100.0),
                                        limit=int(limit))
        return json.dumps({"metrics": self.db.metrics(), "slow": slow}, default=str)
