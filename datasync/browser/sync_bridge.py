"""The Python side of a replica opened from ``js/datasync.js`` (``{syncUrl}``).

Example (what ``js/local.js`` does through Pyodide)::

    sync_bridge = pyodide.pyimport("datasync.browser.sync_bridge")
    handle = (await sync_bridge.open("notes", '{"syncUrl": "http://h:8765/notes",'
                                     ' "authToken": "...", "syncInterval": 5}', on_conflict)).ok
    await handle.pull()              # -> {ok: version}
    handle.sync_status()             # '{"localVersion": 3, ...}' (JSON text)

A :class:`JsReplica` is a :class:`~datasync.browser.bridge.JsDatabase` (the same
calls, replies and errors) with the replica's own: ``pull``, ``push``,
``sync_status``, ``conflicts``, ``set_offline``. Keys reaching JS are camelCase and
times are milliseconds since the epoch (``Date.now()``'s unit; Python's are
seconds). ``on_conflict``: a JS function, or null; :func:`conflict_handler` makes it
the callable :mod:`datasync.sync.pushing` expects.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidOptionError
from ..tabs.wire import decode_params
from .bridge import JsDatabase, _eager, _open_kwargs
from .values import guard, plain_to_js, to_py_params

#: ``sync_status()`` keys -> the JS ones; times are made milliseconds.
STATUS_KEYS = {"local_version": "localVersion", "remote_version": "remoteVersion",
               "pulled_version": "pulledVersion", "waiting": "waiting",
               "last_pull": "lastPull", "last_push": "lastPush", "online": "online",
               "offline": "offline", "last_error": "lastError", "url": "url"}
_TIMES = ("last_pull", "last_push", "at", "recorded")


def _ms(seconds: Any) -> Any:
    return None if seconds is None else round(float(seconds) * 1000, 3)


def status_for_js(status: dict[str, Any]) -> dict[str, Any]:
    """``Replica.sync_status()`` with JS keys, e.g. ``{"localVersion": 3, "lastPull":
    1764536400123.0, ...}`` (unknown keys kept, camelCased)."""
    out: dict[str, Any] = {}
    for key, value in status.items():
        js_key = STATUS_KEYS.get(key) or _camel(key)
        out[js_key] = _ms(value) if key in _TIMES else value
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def conflict_for_js(conflict: dict[str, Any]) -> dict[str, Any]:
    """A conflict (or a recorded one) as JS gets it: camelCase keys, times in ms,
    each statement ``[sql, params]`` with its parameters as bound (bytes, not their
    wire form)."""
    out: dict[str, Any] = {}
    for key, value in conflict.items():
        if key == "statements":
            value = [[sql, decode_params(params)] for sql, params in value]
        elif key in _TIMES:
            value = _ms(value)
        out[_camel(key)] = value
    return out


def decision_from_js(value: Any) -> Any:
    """What a JS ``onConflict`` returned -> ``"drop" | "keep" | {"replace": [(sql,
    params), ...]}`` (anything else is passed on: the replica records it as a
    handler error and drops the write)."""
    from pyodide.ffi import JsProxy

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, JsProxy) and hasattr(value, "object_entries"):
        replace = getattr(value, "replace", None)
        if replace is None or not hasattr(replace, "length"):
            return value.to_py()
        statements = []
        for item in replace:
            if not hasattr(item, "length") or item.length < 1:
                raise InvalidOptionError(
                    "onConflict returned {replace: ...} whose items are not [sql, params]: "
                    "return {replace: [[sql, params], ...]}")
            params = item[1] if item.length > 1 else None
            statements.append((str(item[0]), to_py_params(params)))
        return {"replace": statements}
    return value


def conflict_handler(fn: Any) -> Any:
    """The replica's ``on_conflict`` for the JS function ``fn`` (null: None).
    ``fn(conflict)`` may return the decision or a Promise of it; if it throws, the
    replica drops the write and records the error."""
    from pyodide.ffi import JsNull

    if fn is None or isinstance(fn, JsNull):
        return None
    if not callable(fn):
        raise InvalidOptionError("onConflict must be a function (conflict) => 'drop' | "
                                 "'keep' | {replace: [[sql, params], ...]}, or null")

    async def on_conflict(conflict: dict[str, Any]) -> Any:
        decision = fn(plain_to_js(conflict_for_js(conflict)))
        if hasattr(decision, "then"):
            decision = await decision
        return decision_from_js(decision)

    return on_conflict


class JsReplica(JsDatabase):
    """A replica (:class:`datasync.sync.replica.Replica`) seen from JavaScript."""

    @_eager
    async def pull(self) -> Any:
        """``db.pull()``: -> ``{ok: the primary's version now held}``."""
        return await guard(self.db.pull)

    @_eager
    async def push(self) -> Any:
        """``db.push()``: -> ``{ok: how many waiting writes the primary answered}``."""
        return await guard(self.db.push)

    def sync_status(self) -> str:
        """``db.syncStatus()``: JSON text of :func:`status_for_js`."""
        return json.dumps(status_for_js(self.db.sync_status()), default=str)

    @_eager
    async def conflicts(self) -> Any:
        """``db.conflicts()``: -> ``{ok: [conflict, ...]}`` oldest first (see
        :func:`conflict_for_js`)."""
        async def call() -> Any:
            return plain_to_js([conflict_for_js(c) for c in await self.db.conflicts()])

        return await guard(call)

    def state(self) -> str:
        """``{stats, leader, sync}`` as JSON: what a Worker sends the page (``sync``:
        as :meth:`sync_status`, so that ``db.syncStatus()`` stays synchronous)."""
        return json.dumps({"stats": self.db.stats(), "leader": self.db.leader_info(),
                           "sync": status_for_js(self.db.sync_status())}, default=str)

    def set_auth_token(self, token: Any) -> str:
        """``db.setAuthToken(token)``: send ``token`` (a string, or null) from the
        next request on; answers the status (as :meth:`sync_status`)."""
        self.db.set_auth_token(None if token is None else str(token))
        return self.sync_status()

    def set_offline(self, offline: Any) -> str:
        """``db.setOffline(bool)``: stop (true) or resume (false) talking to the
        server; answers the new status (as :meth:`sync_status`)."""
        self.db.set_offline(bool(offline))
        return self.sync_status()


async def open(name: str, options_json: str = "{}", on_conflict: Any = None) -> Any:
    """Open the replica ``name`` for JS: ``{ok: JsReplica}`` or ``{error}``.
    ``options_json`` uses the JS names and must hold ``syncUrl``; shared by the
    app's tabs unless ``tabs`` is false (:mod:`datasync.sync.tabs`)."""

    async def call() -> Any:
        from .. import open as open_any

        kwargs = _open_kwargs(options_json)
        if not kwargs.get("sync_url"):
            raise InvalidOptionError("a replica needs syncUrl: http(s)://HOST:PORT/NAME")
        return JsReplica(await open_any(str(name), on_conflict=conflict_handler(on_conflict),
                                        **kwargs))

    return await guard(call)
