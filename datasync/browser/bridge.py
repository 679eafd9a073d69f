"""The Python side of ``js/datasync.js``: value conversion and error records.

Example (what ``js/datasync.js`` does through Pyodide)::

    bridge = pyodide.pyimport("datasync.jsbridge")
    handle = await bridge.open("app", '{"durability": "strict"}')
    reply = await handle.execute("SELECT ?", [1])   # {ok: {columns, rows, ...}}

Every call returns a JS object ``{ok: value}`` or ``{error: {name, message}}`` so
that the JS module can throw an ``Error`` whose ``name`` is the Python exception's
class name (``StorageFullError``, ``IntegrityError``...). Values: SQL NULL <->
``null``, BLOB <-> ``Uint8Array``, integers beyond 2**53 <-> ``BigInt``.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..database import Database
from ..database import open as open_database

_OPEN_OPTIONS = {
    "backend": "backend",
    "blockSize": "block_size",
    "cacheBytes": "cache_bytes",
    "durability": "durability",
    "flushInterval": "flush_interval",
    "create": "create",
    "retainVersions": "retain_versions",
    "cdc": "cdc",
    "cdcRetention": "cdc_retention",
    "encryptionKey": "encryption_key",  # a passphrase, or 32 key bytes as a list
    "tabs": None,  # True: share the database with the app's other tabs
}


def _key_from_json(value: Any) -> Any:
    """An encryption key as datasync.js sends it: a passphrase (str), a list of
    byte values (from a Uint8Array), or null."""
    if isinstance(value, list):
        from ..errors import InvalidOptionError

        if not all(isinstance(b, int) and 0 <= b < 256 for b in value):
            raise InvalidOptionError("encryptionKey must be a string or a Uint8Array")
        return bytes(value)
    return value


def _open_kwargs(options_json: str, *, tabs: bool) -> dict[str, Any]:
    """JS open options (JSON, JS names) -> :func:`datasync.open` keyword arguments;
    ``tabs`` says whether the ``tabs`` option is allowed (it is left in, as is)."""
    options = json.loads(options_json or "{}")
    allowed = [k for k, v in _OPEN_OPTIONS.items() if v or tabs]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        from ..errors import InvalidOptionError

        raise InvalidOptionError(
            f"unknown option(s) {', '.join(unknown)}: use {', '.join(allowed)}")
    kwargs = {_OPEN_OPTIONS[k] or k: v for k, v in options.items()}
    if "encryption_key" in kwargs:
        kwargs["encryption_key"] = _key_from_json(kwargs["encryption_key"])
    return kwargs


def _to_py_param(value: Any) -> Any:
    """A parameter arriving from JS -> a value sqlite3 binds."""
    from pyodide.ffi import JsNull

    if isinstance(value, JsNull):
        return None
    if hasattr(value, "to_py"):  # a JsProxy: typed array, ArrayBuffer, object
        converted = value.to_py()
        if isinstance(converted, memoryview):
            return converted.tobytes()
        return converted
    return value


def _params(params: Any) -> Any:
    if params is None:
        return ()
    if hasattr(params, "to_py") and not hasattr(params, "length"):
        return {k: _to_py_param(v) for k, v in params.object_entries()}
    return [_to_py_param(v) for v in params]


def _js_value(value: Any) -> Any:
    """A SQLite value -> what to_js should see (None -> null, bytes -> Uint8Array)."""
    from pyodide.ffi import jsnull, to_js

    if value is None:
        return jsnull
    if isinstance(value, (bytes, bytearray, memoryview)):
        return to_js(bytes(value))
    return value


def _reply(value: Any = None, error: BaseException | None = None) -> Any:
    import js

    out = js.Object.new()
    if error is not None:
        err = js.Object.new()
        err.name = type(error).__name__
        err.message = str(error)
        out.error = err
    else:
        out.ok = value
    return out


def _rows_to_js(rows: list[tuple[Any, ...]]) -> Any:
    import js
    from pyodide.ffi import to_js

    arr = js.Array.new()
    for row in rows:
        arr.push(to_js([_js_value(v) for v in row]))
    return arr


async def _guard(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return _reply(await call())
    except Exception as exc:  # the error boundary between Python and JS
        return _reply(error=exc)


def _result_to_js(res: Any) -> Any:
    import js
    from pyodide.ffi import to_js

    out = js.Object.new()
    out.columns = to_js(res.columns)
    out.rows = _rows_to_js(res.rows)
    out.rowsAffected = res.rowcount
    out.lastInsertRowid = res.lastrowid
    return out


def _plain_to_js(value: Any) -> Any:
    """A change's JSON-like value -> JS (objects, arrays, null, Uint8Array, BigInt)."""
    import js

    if isinstance(value, dict):
        obj = js.Object.new()
        for k, v in value.items():
            setattr(obj, str(k), _plain_to_js(v))
        return obj
    if isinstance(value, (list, tuple)):
        arr = js.Array.new()
        for v in value:
            arr.push(_plain_to_js(v))
        return arr
    return _js_value(value)


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
            return _plain_to_js(change.to_dict())

        return await _guard(call)

    async def close(self) -> Any:
        async def call() -> None:
            if self._waiting is not None and not self._waiting.done():
                self._waiting.cancel()  # the generator's finally unsubscribes
            else:
                await self._changes.aclose()

        return await _guard(call)


class JsDatabase:
    """A :class:`Database` (or a multi-tab ``SharedDatabase``) seen from JavaScript."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.shared = not isinstance(db, Database)

    def leader_info(self) -> str:
        if not self.shared:
            return json.dumps({"is_leader": True, "leader_id": None, "epoch": 0,
                               "tab_id": None})
        return json.dumps(self.db.leader_info())

    async def wait_for_leadership(self) -> Any:
        async def call() -> None:
            if self.shared:
                await self.db.wait_for_leadership()

        return await _guard(call)

    async def request_leadership(self) -> Any:
        async def call() -> None:
            if self.shared:
                await self.db.request_leadership()

        return await _guard(call)

    def on_change(self, callback: Any) -> Any:
        """Call the JS ``callback({version, tables, by})``; returns an unsubscriber."""
        import js
        from pyodide.ffi import create_proxy, to_js

        def forward(change: dict[str, Any]) -> None:
            callback(to_js(change, dict_converter=js.Object.fromEntries))

        if not self.shared:
            remove = self.db.store.add_commit_listener(
                lambda store: forward({"version": store.version, "tables": None, "by": "local"}))
        else:
            remove = self.db.on_change(forward)
        return create_proxy(remove)

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

        return await _guard(call)

    async def execute(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            return _result_to_js(await self.db.execute(str(sql), _params(params)))

        return await _guard(call)

    async def queue_write(self, sql: str, params: Any = None, timeout_ms: Any = None) -> Any:
        """Queue a write (durable outbox with tabs; a plain database applies and
        flushes it at once), resolving like :meth:`execute`."""
        async def call() -> Any:
            limit = _to_py_param(timeout_ms)
            timeout = None if limit is None else float(limit) / 1000
            if self.shared:
                res = await self.db.queue_write(str(sql), _params(params), timeout=timeout)
            else:
                res = await self.db.execute(str(sql), _params(params))
                await self.db.sync()
            return _result_to_js(res)

        return await _guard(call)

    async def query(self, sql: str, params: Any = None) -> Any:
        async def call() -> Any:
            import js

            res = await self.db.execute(str(sql), _params(params))
            arr = js.Array.new()
            for row in res.rows:
                obj = js.Object.new()
                for col, value in zip(res.columns, row):
                    setattr(obj, col, _js_value(value))
                arr.push(obj)
            return arr

        return await _guard(call)

    async def sync(self) -> Any:
        return await _guard(self.db.sync)

    async def close(self) -> Any:
        return await _guard(self.db.close)

    async def rekey(self, key_json: str) -> Any:
        """``db.rekey(newKey)``: the key comes as JSON (see ``_key_from_json``)."""
        async def call() -> Any:
            # With tabs: this tab leads the rekey and sends the key to the others.
            return await self.db.rekey(_key_from_json(json.loads(key_json)))

        return await _guard(call)

    def stats(self) -> str:
        return json.dumps(self.db.stats(), default=str)

    async def versions(self) -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            return to_js(await self.db.versions(), dict_converter=js.Object.fromEntries)

        return await _guard(call)

    async def restore(self, version: Any) -> Any:
        async def call() -> Any:
            return await self.db.restore(int(version))

        return await _guard(call)

    async def backup(self, target: str, options_json: str = "{}") -> Any:
        async def call() -> Any:
            import js
            from pyodide.ffi import to_js

            kwargs = _open_kwargs(options_json, tabs=False)
            info = await self.db.backup(str(target), **kwargs)
            return to_js(info, dict_converter=js.Object.fromEntries)

        return await _guard(call)

    async def export_database(self) -> Any:
        async def call() -> Any:
            from pyodide.ffi import to_js

            return to_js(await self.db.export())

        return await _guard(call)

    async def import_database(self, data: Any) -> Any:
        async def call() -> Any:
            raw = data.to_bytes() if hasattr(data, "to_bytes") else bytes(data)
            await self.db.import_(raw)
            return None

        return await _guard(call)


async def open(name: str, options_json: str = "{}") -> Any:
    """Open a database for JS; ``options_json`` uses the JS option names."""

    async def call() -> Any:
        kwargs = _open_kwargs(options_json, tabs=True)
        tabs = bool(kwargs.pop("tabs", False))
        if tabs:
            from .tabs import open_shared

            return JsDatabase(await open_shared(str(name), **kwargs))
        return JsDatabase(await open_database(str(name), **kwargs))

    return await _guard(call)
