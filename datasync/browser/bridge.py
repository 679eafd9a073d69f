"""The Python side of ``js/datasync.js``: one JS handle per open database.

Example (what ``js/datasync.js`` does through Pyodide)::

    bridge = pyodide.pyimport("datasync.browser.bridge")
    handle = await bridge.open("app", '{"durability": "strict"}')   # {ok: JsDatabase}
    reply = await handle.execute("SELECT ?", [1])   # {ok: {columns, rows, ...}}
    tx = (await handle.begin("DEFERRED")).ok        # a JsTransaction
    await tx.execute("INSERT INTO t VALUES (1)"); await tx.commit()

Every call returns a JS object ``{ok: value}`` or ``{error: {name, message}}`` so
that the JS module can throw an ``Error`` whose ``name`` is the Python exception's
class name (``StorageFullError``, ``IntegrityError``...), with option names spelt as
in JS (:mod:`.values` converts values). Whatever the database (one tab's, or one
shared by the app's tabs: :class:`datasync.api.DatabaseAPI`), the calls are the same.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from .values import (
    OPEN_OPTIONS,
    guard,
    js_value,
    plain_to_js,
    result_to_js,
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
    """``[[sql, params], ...]`` from JS -> ``[(sql, params), ...]``."""
    out = []
    for item in statements:
        params = item[1] if item.length > 1 else None
        out.append((str(item[0]), to_py_params(params)))
    return out


class JsTransaction:
    """What ``db.transaction(fn)`` calls in JS: an open transaction (``begin()``)."""

    def __init__(self, tx: Any) -> None:
        self.tx = tx

    async def execute(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return result_to_js(await self.tx.execute(str(sql), to_py_params(params)))

        return await guard(call)

    async def query(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return _rows_as_objects(await self.tx.execute(str(sql), to_py_params(params)))

        return await guard(call)

    async def execute_many(self, sql: str, rows: Any) -> Any:
        async def call() -> Any:
            seq = [to_py_params(r) for r in rows]
            return result_to_js(await self.tx.executemany(str(sql), seq))

        return await guard(call)

    async def batch(self, statements: Any) -> Any:
        async def call() -> Any:
            import js

            out = js.Array.new()
            for res in await self.tx.batch(_statements(statements)):
                out.push(result_to_js(res))
            return out

        return await guard(call)

    async def commit(self) -> Any:
        return await guard(self.tx.commit)

    async def rollback(self) -> Any:
        return await guard(self.tx.rollback)


class JsChangeStream:
    """What ``db.changes()`` iterates in JS: ``next()`` -> ``{ok: change | null}``
    (null: the stream ended); ``close()`` ends it, also while a ``next()`` waits."""

    def __init__(self, changes: Any) -> None:
        self._changes = changes
        self._waiting: asyncio.Future[Any] | None = None

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

    async def close(self) -> Any:
        async def call() -> None:
            if self._waiting is not None and not self._waiting.done():
                self._waiting.cancel()  # the generator's finally unsubscribes
            else:
                await self._changes.aclose()

        return await guard(call)


class JsDatabase:
    """An open database (:class:`datasync.api.DatabaseAPI`) seen from JavaScript."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def leader_info(self) -> str:
        return json.dumps(self.db.leader_info())

    async def wait_for_leadership(self) -> Any:
        return await guard(self.db.wait_for_leadership)

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

    async def ack(self, consumer: str, seq: Any) -> Any:
        async def call() -> None:
            await self.db.ack(str(consumer), int(seq))

        return await guard(call)

    async def execute(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return result_to_js(await self.db.execute(str(sql), to_py_params(params)))

        return await guard(call)

    async def queue_write(self, sql: str, params: Any = None, timeout_ms: Any = None) -> Any:
        """Queue a write (a durable outbox with tabs; a database of one tab applies
        and flushes it at once), resolving like :meth:`execute`."""
        async def call() -> Any:
            limit = to_py_param(timeout_ms)
            timeout = None if limit is None else float(limit) / 1000
            res = await self.db.queue_write(str(sql), to_py_params(params), timeout=timeout)
            return result_to_js(res)

        return await guard(call)

    async def execute_many(self, sql: str, rows: Any) -> Any:
        """``db.executeMany(sql, rows)``: one call, one atomic transaction."""
        async def call() -> Any:
            seq = [to_py_params(r) for r in rows]
            return result_to_js(await self.db.executemany(str(sql), seq))

        return await guard(call)

    async def batch(self, statements: Any) -> Any:
        """``db.batch([[sql, params], ...])``: atomic; one result each."""
        async def call() -> Any:
            import js

            out = js.Array.new()
            for res in await self.db.batch(_statements(statements)):
                out.push(result_to_js(res))
            return out

        return await guard(call)

    async def exec_script(self, script: str) -> Any:
        """``db.exec(script)``: the script's statements, atomically."""
        async def call() -> None:
            await self.db.executescript(str(script))

        return await guard(call)

    async def begin(self, mode: str = "DEFERRED") -> Any:
        """``db.transaction(fn)`` begins with this: a :class:`JsTransaction`."""
        async def call() -> Any:
            from pyodide.ffi import create_proxy

            return create_proxy(JsTransaction(await self.db.begin(str(mode or "DEFERRED"))))

        return await guard(call)

    async def query(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return _rows_as_objects(await self.db.execute(str(sql), to_py_params(params)))

        return await guard(call)

    async def sync(self) -> Any:
        return await guard(self.db.sync)

    async def close(self) -> Any:
        return await guard(self.db.close)

    async def rekey(self, key_json: str) -> Any:
        """``db.rekey(newKey)``: the key comes as JSON (see ``_key_from_json``)."""
        async def call() -> Any:
            # With tabs: this tab leads the rekey and sends the key to the others.
            return await self.db.rekey(_key_from_json(json.loads(key_json)))

        return await guard(call)

    def stats(self) -> str:
        return json.dumps(self.db.stats(), default=str)

    async def versions(self) -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            return to_js(await self.db.versions(), dict_converter=js.Object.fromEntries)

        return await guard(call)

    async def restore(self, version: Any) -> Any:
        async def call() -> Any:
            return await self.db.restore(int(version))

        return await guard(call)

    async def backup(self, target: str, options_json: str = "{}") -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            allowed = tuple(k for k in OPEN_OPTIONS if k != "tabs")
            info = await self.db.backup(str(target), **_open_kwargs(options_json,
                                                                    allowed=allowed))
            return to_js(info, dict_converter=js.Object.fromEntries)

        return await guard(call)

    async def export_database(self) -> Any:
        async def call() -> Any:
            from pyodide.ffi import to_js

            return to_js(await self.db.export())

        return await guard(call)

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
