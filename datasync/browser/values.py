"""Values between JS and Python for :mod:`.bridge`: parameters in, results and
error replies out.

Example::

    params = to_py_params(js_array)          # [1, "a", b"..."] (null -> None)
    reply(result_to_js(res))                   # {ok: {columns, rows, ...}}
    reply(error=exc)                           # {error: {name, message}}

SQL NULL <-> ``null``, BLOB <-> ``Uint8Array``, integers beyond 2**53 <-> ``BigInt``
(Pyodide converts Python ints that large to BigInt). ``js/datasync.js`` refuses what
it cannot bind faithfully (a Date, an object, a Symbol) before calling Python.
"""
from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

#: JS open option names -> Python keyword names (None: handled by the bridge).
OPEN_OPTIONS = {
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
    "tabs": "tabs",  # false: this tab only; default: shared with the app's tabs
    # a replica (datasync.sync): ``onConflict`` is a function, passed apart (.sync_bridge)
    "syncUrl": "sync_url",
    "authToken": "auth_token",
    "syncInterval": "sync_interval",
    "offline": "offline",
}
#: The JS options of a replica only (a backup's target cannot take them).
SYNC_OPTIONS = ("syncUrl", "authToken", "syncInterval", "offline")
_PY_NAMES = re.compile(r"\b(" + "|".join(v for k, v in OPEN_OPTIONS.items() if k != v) + r")\b")
_JS_NAMES = {v: k for k, v in OPEN_OPTIONS.items()}


def js_message(exc: BaseException) -> str:
    """An error's message with option names as JS spells them (``cacheBytes``)."""
    from ..errors import InvalidOptionError

    message = str(exc)
    if isinstance(exc, InvalidOptionError):
        message = _PY_NAMES.sub(lambda m: _JS_NAMES[m.group(1)], message)
    return message


def to_py_param(value: Any) -> Any:
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


def to_py_params(params: Any) -> Any:
    """JS params -> sqlite3 params: a JSON text (``js/local.js`` sends one when JSON
    carries every value exactly: see ``paramsJSON``), an array or a plain object."""
    if params is None:
        return ()
    if isinstance(params, str):
        return json.loads(params)
    if hasattr(params, "to_py") and not hasattr(params, "length"):
        return {k: to_py_param(v) for k, v in params.object_entries()}
    return [to_py_param(v) for v in params]


def js_value(value: Any) -> Any:
    """A SQLite value -> what to_js should see (None -> null, bytes -> Uint8Array)."""
    from pyodide.ffi import jsnull, to_js

    if value is None:
        return jsnull
    if isinstance(value, (bytes, bytearray, memoryview)):
        return to_js(bytes(value))
    return value


def reply(value: Any = None, error: BaseException | None = None) -> Any:
    import js

    out = js.Object.new()
    if error is not None:
        err = js.Object.new()
        err.name = type(error).__name__
        err.message = js_message(error)
        out.error = err
    else:
        out.ok = value
    return out


def rows_to_js(rows: list[tuple[Any, ...]]) -> Any:
    import js
    from pyodide.ffi import to_js

    arr = js.Array.new()
    for row in rows:
        arr.push(to_js([js_value(v) for v in row]))
    return arr


async def guard(call: Callable[[], Awaitable[Any]]) -> Any:
    """``{ok: value}`` or ``{error: {name, message}}``; a :class:`Json` value is
    returned as its text (JS tells a string, always a success, from a reply)."""
    try:
        value = await call()
    except Exception as exc:  # the error boundary between Python and JS
        return reply(error=exc)
    return str(value) if isinstance(value, Json) else reply(value)


def result_to_js(res: Any) -> Any:
    import js
    from pyodide.ffi import to_js

    out = js.Object.new()
    out.columns = to_js(res.columns)
    out.rows = rows_to_js(res.rows)
    out.rowsAffected = res.rowcount
    out.lastInsertRowid = res.lastrowid
    return out


#: Integers JS numbers hold exactly; beyond them Pyodide makes a BigInt.
_SAFE_INT = 2**53 - 1


class Json(str):
    """A successful call's value as JSON text, which the JS side parses: one string
    crosses into JS instead of a proxy per value (``js/local.js`` knows the shape)."""


def _json_safe(rows: list[tuple[Any, ...]]) -> bool:
    """JSON carries these values as JS would get them from Pyodide: no bytes
    (Uint8Array), no integer beyond 2**53 (BigInt), no inf (json refuses it)."""
    for row in rows:
        for v in row:
            if type(v) is int and not -_SAFE_INT <= v <= _SAFE_INT:
                return False
    return True


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps(value: Any) -> str | None:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):  # bytes; inf or nan
        return None


def _carries(res: Any) -> bool:
    """JSON carries ``res`` exactly: its rows, and a lastrowid JS holds exactly (a
    rowid beyond 2**53 is a BigInt through Pyodide: JSON would round it)."""
    return (res.lastrowid is not None and -_SAFE_INT <= res.lastrowid <= _SAFE_INT
            and _json_safe(res.rows))


def result_json(res: Any) -> Any:
    """A Result for ``execute()``: ``{columns, rows, rowsAffected, lastInsertRowid}``
    as :class:`Json`, or (values JSON cannot carry) as :func:`result_to_js` does."""
    if _carries(res):
        text = _dumps({"columns": res.columns, "rows": res.rows, "rowsAffected": res.rowcount,
                       "lastInsertRowid": res.lastrowid})
        if text is not None:
            return Json(text)
    return result_to_js(res)


def results_json(results: list[Any]) -> Any:
    """Several Results (``batch()``): a JSON array of them, or a JS array."""
    if all(_carries(r) for r in results):
        text = _dumps([{"columns": r.columns, "rows": r.rows, "rowsAffected": r.rowcount,
                        "lastInsertRowid": r.lastrowid} for r in results])
        if text is not None:
            return Json(text)
    import js

    out = js.Array.new()
    for res in results:
        out.push(result_to_js(res))
    return out


def rows_json(res: Any) -> Json | None:
    """A Result for ``query()``: ``[columns, rows]`` as :class:`Json` (JS makes the
    objects), or None if JSON cannot carry its values."""
    if _json_safe(res.rows):
        text = _dumps([res.columns, res.rows])
        if text is not None:
            return Json(text)
    return None


def plain_to_js(value: Any) -> Any:
    """A change's JSON-like value -> JS (objects, arrays, null, Uint8Array, BigInt)."""
    import js

    if isinstance(value, dict):
        obj = js.Object.new()
        for k, v in value.items():
            setattr(obj, str(k), plain_to_js(v))
        return obj
    if isinstance(value, (list, tuple)):
        arr = js.Array.new()
        for v in value:
            arr.push(plain_to_js(v))
        return arr
    return js_value(value)




def _exact(value: Any) -> bool:
    """JSON carries ``value`` as JS would get it from Pyodide (no integer beyond 2**53)."""
    if type(value) is int:
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, dict):
        return all(_exact(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_exact(v) for v in value)
    return True


def plain_json(value: Any) -> Any:
    """A JSON-like value (rows as dicts, metrics, a plan) for JS: :class:`Json` text
    when JSON carries it exactly, else JS values as :func:`plain_to_js` makes them
    (bytes -> Uint8Array, big integers -> BigInt, inf)."""
    if _exact(value):
        text = _dumps(value)
        if text is not None:
            return Json(text)
    return plain_to_js(value)
