"""The Python side of ``js/datasync.js``: one JS handle per open database.

Example (what ``js/datasync.js`` does through Pyodide)::

    bridge = pyodide.pyimport("datasync.browser.bridge")
    handle = (await bridge.open("app", '{"durability": "strict"}')).ok   # a JsDatabase
    text = handle.execute("SELECT ?", "[1]")   # '{"columns":...}': done at once
    tx = await handle.begin("DEFERRED")        # a task: await it -> {ok: JsTransaction}
    tx.ok.execute("INSERT INTO t VALUES (1)"); await tx.ok.commit()

Every call answers a JS object ``{ok: value}`` or ``{error: {name, message}}`` so
that the JS module can throw an ``Error`` whose ``name`` is the Python exception's
class name (``StorageFullError``, ``IntegrityError``...), with option names spelt as
in JS (:mod:`.values` converts values); or, for a statement's result, JSON text
(a string is always a success: one string crosses instead of a proxy per value).
Whatever the database (one tab's, or one shared by the app's tabs:
:class:`datasync.api.DatabaseAPI`), the calls are the same; the app layer's
(migrations, live and cached queries, metrics, plans) are :mod:`.bridge_app`'s.

Calls start at once (an *eager* task, :func:`.bridge_calls._start`): a call that needs no wait
(a read, a relaxed write, a statement of an idle transaction) is done when the JS
call returns, and answers its value; one that must wait (for the connection, for
IndexedDB, for the leader tab) answers its task, which JS awaits. Each JS call
costs no trip through the event loop that way (each costs about 0.1-0.3 ms), and
calls still start in the order JS makes them.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from .bridge_app import JsAppCalls
from .bridge_calls import _eager
from .values import (
    OPEN_OPTIONS,
    SYNC_OPTIONS,
    guard,
    js_value,
    plain_to_js,
    reply,
    result_json,
    results_json,
    rows_json,
    to_py_param,
    to_py_params,
)


def _key_from_json(value: Any) -> Any:
    """An encryption key as datasync.js sends it: a passphrase (str), a list of
    byte values (from a Uint8Array), or null."""
    if isinstance(value, list):
        from ..errors import InvalidOptionError

        if not all(isinstance(b, int) and 0 <= b < 256 for b in value):
            raise InvalidOptionError("encryptionKey must be a string or a Uint8Array")
        return bytes(value)
    return value


def _open_kwargs(options_json: str, *, allowed: tuple[str, ...] = tuple(OPEN_OPTIONS)
                 ) -> dict[str, Any]:
    """JS open options (JSON, JS names) -> :func:`datasync.open` keyword arguments."""
    options = json.loads(options_json or "{}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        from ..errors import InvalidOptionError

        raise InvalidOptionError(
            f"unknown option(s) {', '.join(unknown)}: use {', '.join(allowed)}")
    kwargs = {OPEN_OPTIONS[k]: v for k, v in options.items()}
    if "encryption_key" in kwargs:
        kwargs["encryption_key"] = _key_from_json(kwargs["encryption_key"])
    return kwargs


def _rows_as_objects(res: Any) -> Any:
    import js

    arr = js.Array.new()
    for row in res.rows:
        obj = js.Object.new()
        for col, value in zip(res.columns, row):
            setattr(obj, col, js_value(value))
        arr.push(obj)
    return arr


def _statements(statements: Any) -> list[tuple[str, Any]]:
    """``[[sql, params], ...]`` from JS (or as JSON) -> ``[(sql, params), ...]``."""
    if isinstance(statements, str):
        return [(str(item[0]), item[1] if len(item) > 1 else ()) for item in json.loads(statements)]
    out = []
    for item in statements:
        params = item[1] if item.length > 1 else None
        out.append((str(item[0]), to_py_params(params)))
    return out


def _rows(res: Any) -> Any:
    """A query's rows: ``[columns, rows]`` as JSON (JS makes the objects), or objects."""
    return rows_json(res) or _rows_as_objects(res)


class _Statements:
    """execute, query, execute_many, batch on ``target`` (a database or a transaction)."""

    target: Any

    def _now(self, sql: str, params: Any, encode: Callable[[Any], Any]) -> Any:
        """A transaction's statement run at once if its holder is idle (None: not)."""
        execute_now = getattr(self.target, "execute_now", None)
        if execute_now is None:
            return None
        try:
            res = execute_now(str(sql), to_py_params(params))
            if res is None:
                return None
            value = encode(res)
        except Exception as exc:  # the error boundary, as guard()'s
            return reply(error=exc)
        return str(value) if isinstance(value, str) else reply(value)

    def execute(self, sql: str, params: Any = None) -> Any:
        now = self._now(sql, params, result_json)
        return now if now is not None else self._execute(sql, params)

    def query(self, sql: str, params: Any = None) -> Any:
        now = self._now(sql, params, _rows)
        return now if now is not None else self._query(sql, params)

    @_eager
    async def _execute(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return result_json(await self.target.execute(str(sql), to_py_params(params)))

        return await guard(call)

    @_eager
    async def _query(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return _rows(await self.target.execute(str(sql), to_py_params(params)))

        return await guard(call)

    @_eager
    async def execute_many(self, sql: str, rows: Any) -> Any:
        """``executeMany(sql, rows)``: one call, one atomic transaction; ``rows``
        as JSON text, or an array of params."""
        async def call() -> Any:
            seq = to_py_params(rows) if isinstance(rows, str) else [to_py_params(r) for r in rows]
            return result_json(await self.target.executemany(str(sql), seq))

        return await guard(call)

    @_eager
    async def batch(self, statements: Any) -> Any:
        """``batch([[sql, params], ...])``: atomic; one result each."""
        async def call() -> Any:
            return results_json(await self.target.batch(_statements(statements)))

        return await guard(call)


class JsTransaction(_Statements):
    """What ``db.transaction(fn)`` calls in JS: an open transaction (``begin()``)."""

    def __init__(self, tx: Any) -> None:
        self.target = tx

    @_eager
    async def commit(self) -> Any:
        return await guard(self.target.commit)

    @_eager
    async def rollback(self) -> Any:
        return await guard(self.target.rollback)


class JsChangeStream:
    """What ``db.changes()`` iterates in JS: ``next()`` -> ``{ok: change | null}``
    (null: the stream ended); ``close()`` ends it, also while a ``next()`` waits."""

    def __init__(self, changes: Any) -> None:
        self._changes = changes
        self._waiting: asyncio.Future[Any] | None = None

    @_eager
    async def next(self) -> Any:
        async def call() -> Any:
            self._waiting = asyncio.ensure_future(self._changes.__anext__())
            try:
                change = await self._waiting
            except (StopAsyncIteration, asyncio.CancelledError):
                return None  # ended, or closed while waiting
            finally:
                self._waiting = None
            return plain_to_js(change.to_dict())

        return await guard(call)

    @_eager
    async def close(self) -> Any:
        async def call() -> None:
            if self._waiting is not None and not self._waiting.done():
                self._waiting.cancel()  # the generator's finally unsubscribes
            else:
                await self._changes.aclose()

        return await guard(call)


class JsDatabase(JsAppCalls, _Statements):
    """An open database (:class:`datasync.api.DatabaseAPI`) seen from JavaScript."""

    def __init__(self, db: Any) -> None:
        self.db = self.target = db

    def leader_info(self) -> str:
        return json.dumps(self.db.leader_info())

    @_eager
    async def wait_for_leadership(self) -> Any:
        return await guard(self.db.wait_for_leadership)

    @_eager
    async def request_leadership(self) -> Any:
        return await guard(self.db.request_leadership)

    def on_change(self, callback: Any) -> Any:
        """Call the JS ``callback({version, tables, by})``; returns an unsubscriber."""
        import js
        from pyodide.ffi import create_proxy, to_js

        def forward(change: dict[str, Any]) -> None:
            callback(to_js(change, dict_converter=js.Object.fromEntries))

        return create_proxy(self.db.on_change(forward))

    def changes(self, options_json: str = "{}") -> JsChangeStream:
        """A stream of captured changes; options ``{tables, since, consumer, follow}``."""
        options = json.loads(options_json or "{}")
        tables = options.get("tables")
        return JsChangeStream(self.db.changes(
            tables=None if tables is None else [str(t) for t in tables],
            since=options.get("since"), consumer=options.get("consumer"),
            follow=bool(options.get("follow", True))))

    @_eager
    async def ack(self, consumer: str, seq: Any) -> Any:
        async def call() -> None:
            await self.db.ack(str(consumer), int(seq))

        return await guard(call)

    @_eager
    async def queue_write(self, sql: str, params: Any = None, timeout_ms: Any = None) -> Any:
        """Queue a write (a durable outbox with tabs; a database of one tab applies
        and flushes it at once), resolving like :meth:`execute`."""
        async def call() -> Any:
            limit = to_py_param(timeout_ms)
            timeout = None if limit is None else float(limit) / 1000
            res = await self.db.queue_write(str(sql), to_py_params(params), timeout=timeout)
            return result_json(res)

        return await guard(call)

    @_eager
    async def exec_script(self, script: str) -> Any:
        """``db.exec(script)``: the script's statements, atomically."""
        async def call() -> None:
            await self.db.executescript(str(script))

        return await guard(call)

    @_eager
    async def begin(self, mode: str = "DEFERRED") -> Any:
        """``db.transaction(fn)`` begins with this: a :class:`JsTransaction`."""
        async def call() -> Any:
            from pyodide.ffi import create_proxy

            return create_proxy(JsTransaction(await self.db.begin(str(mode or "DEFERRED"))))

        return await guard(call)

    @_eager
    async def sync(self) -> Any:
        return await guard(self.db.sync)

    @_eager
    async def close(self) -> Any:
        return await guard(self.db.close)

    @_eager
    async def rekey(self, key_json: str) -> Any:
        """``db.rekey(newKey)``: the key comes as JSON (see ``_key_from_json``)."""
        async def call() -> Any:
            # With tabs: this tab leads the rekey and sends the key to the others.
            return await self.db.rekey(_key_from_json(json.loads(key_json)))

        return await guard(call)

    def stats(self) -> str:
        return json.dumps(self.db.stats(), default=str)

    def state(self) -> str:
        """``{stats, leader}`` as JSON: what a Worker sends the page (one call)."""
        return json.dumps({"stats": self.db.stats(), "leader": self.db.leader_info()},
                          default=str)

    @_eager
    async def versions(self) -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            return to_js(await self.db.versions(), dict_converter=js.Object.fromEntries)

        return await guard(call)

    @_eager
    async def restore(self, version: Any) -> Any:
        async def call() -> Any:
            return await self.db.restore(int(version))

        return await guard(call)

    @_eager
    async def backup(self, target: str, options_json: str = "{}") -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            allowed = tuple(k for k in OPEN_OPTIONS if k != "tabs" and k not in SYNC_OPTIONS)
            info = await self.db.backup(str(target), **_open_kwargs(options_json,
                                                                    allowed=allowed))
            return to_js(info, dict_converter=js.Object.fromEntries)

        return await guard(call)

    @_eager
    async def export_database(self) -> Any:
        async def call() -> Any:
            from pyodide.ffi import to_js

            return to_js(await self.db.export())

        return await guard(call)

    @_eager
    async def import_database(self, data: Any) -> Any:
        async def call() -> Any:
            raw = data.to_bytes() if hasattr(data, "to_bytes") else bytes(data)
            await self.db.import_(raw)
            return None

        return await guard(call)


async def open(name: str, options_json: str = "{}") -> Any:
    """Open a database for JS; ``options_json`` uses the JS option names. In a
    browser, a database is shared with the app's other tabs unless ``tabs`` is
    false (see :func:`datasync.open`)."""

    async def call() -> Any:
        from .. import open as open_any

        return JsDatabase(await open_any(str(name), **_open_kwargs(options_json)))

    return await guard(call)
