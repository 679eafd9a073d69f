"""The browser's services for the multi-tab protocol: Web Locks and BroadcastChannel.

Example (Pyodide)::

    from datasync.tabs.web import WebLocks, WebChannel
    tab = await SharedDatabase.open("app", locks=WebLocks("tab-1"),
                                    channel=WebChannel("app"), tab_id="tab-1")

A lock requested with ``navigator.locks.request`` is held until we resolve the
promise our callback returned, or until the tab dies (the browser releases it) or
another tab steals it (our request's promise then rejects): the lease is lost.
Messages go through a ``BroadcastChannel`` named ``datasync:<name>`` as plain
objects (structured clone); datasync's messages hold only JSON-like values.
Queued writes wait in an IndexedDB database of their own, ``datasync-outbox:<name>``
(one object store, ``outbox``, keyed by the write's id), so that opening it never
needs a schema upgrade of the block store's database.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import json

from ..errors import BackendError, DatasyncError, StorageFullError, StorageUnavailableError
from .services import Lease, Message


class WebLocks:
    """:class:`~datasync.tabs.services.LockService` over ``navigator.locks``."""

    def __init__(self, owner: str) -> None:
        import js

        self.owner = owner
        locks = getattr(getattr(js, "navigator", None), "locks", None)
        if locks is None:
            raise StorageUnavailableError(
                "Web Locks (navigator.locks) are not available here: multi-tab datasync "
                "needs a secure context (https or localhost)")
        self._locks = locks
        self._held: dict[int, Any] = {}  # id(lease) -> resolver of the held promise
        self._proxies: dict[int, list[Any]] = {}

    async def acquire(self, name: str, *, steal: bool = False) -> Lease:
        import js
        from pyodide.ffi import create_proxy, to_js

        lease = Lease(name, self.owner)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hold = js.Promise.withResolvers()

        def on_grant(lock: Any) -> Any:
            if not granted.done():
                granted.set_result(None)
            return hold.promise

        def on_end(*_: Any) -> None:
            lease.lost.set()
            if not granted.done():  # refused before it was granted
                granted.cancel()
            for proxy in self._proxies.pop(id(lease), []):
                proxy.destroy()

        proxies = [create_proxy(on_grant), create_proxy(on_end)]
        self._proxies[id(lease)] = proxies
        options = to_js({"steal": bool(steal)}, dict_converter=js.Object.fromEntries)
        self._locks.request(name, options, proxies[0]).then(proxies[1], proxies[1])
        self._held[id(lease)] = hold.resolve
        try:
            await granted
        except asyncio.CancelledError:
            self.release(lease)
            raise
        return lease

    def release(self, lease: Lease) -> None:
        resolve = self._held.pop(id(lease), None)
        if resolve is not None:
            resolve()
        lease.lost.set()


class WebChannel:
    """:class:`~datasync.tabs.services.Channel` over ``BroadcastChannel``."""

    def __init__(self, name: str) -> None:
        import js

        if not hasattr(js, "BroadcastChannel"):
            raise StorageUnavailableError("BroadcastChannel is not available here")
        self._channel = js.BroadcastChannel.new(f"datasync:{name}")
        self._handlers: list[Any] = []

    def post(self, message: Message) -> None:
        import js
        from pyodide.ffi import to_js

        self._channel.postMessage(to_js(message, dict_converter=js.Object.fromEntries))

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        from pyodide.ffi import create_proxy

        def on_message(event: Any) -> None:
            data = event.data
            callback(data.to_py() if hasattr(data, "to_py") else data)

        handler = create_proxy(on_message)
        self._channel.addEventListener("message", handler)
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._channel.removeEventListener("message", handler)
                self._handlers.remove(handler)
                handler.destroy()

        return unsubscribe

    def close(self) -> None:
        for handler in list(self._handlers):
            self._channel.removeEventListener("message", handler)
            handler.destroy()
        self._handlers.clear()
        self._channel.close()


_OUTBOX_JS = """
const req = (r) => new Promise((ok, bad) => { r.onsuccess = () => ok(r.result); r.onerror = () => bad(r.error); });
const done = (tx) => new Promise((ok, bad) => {
  tx.oncomplete = () => ok();
  tx.onabort = () => bad(tx.error || new DOMException("the transaction was aborted", "AbortError"));
});
return {
  open(name) {
    return new Promise((ok, bad) => {
      const r = indexedDB.open(name, 1);
      r.onupgradeneeded = () => r.result.createObjectStore("outbox", { keyPath: "id" });
      r.onsuccess = () => { const db = r.result; db.onversionchange = () => db.close(); ok(db); };
      r.onerror = () => bad(r.error);
      r.onblocked = () => bad(new DOMException(name + " is blocked by another tab", "AbortError"));
    });
  },
  async put(db, id, json) {
    const tx = db.transaction("outbox", "readwrite", { durability: "strict" });
    tx.objectStore("outbox").put({ id, json });
    await done(tx);
  },
  async all(db) {
    const rows = await req(db.transaction("outbox", "readonly").objectStore("outbox").getAll());
    return rows.map((row) => row.json);
  },
  async remove(db, id) {
    const tx = db.transaction("outbox", "readwrite");
    tx.objectStore("outbox").delete(id);
    await done(tx);
  },
};
"""
_OUTBOX_HELPERS: Any = None


def _outbox_helpers() -> Any:
    global _OUTBOX_HELPERS
    if _OUTBOX_HELPERS is None:
        import js

        _OUTBOX_HELPERS = js.Function.new(_OUTBOX_JS)()
    return _OUTBOX_HELPERS


class IndexedDBOutbox:
    """:class:`~datasync.tabs.services.Outbox` in IndexedDB: an entry is stored
    with strict durability before :meth:`put` returns, so it survives its tab."""

    def __init__(self, name: str) -> None:
        self.db_name = f"datasync-outbox:{name}"
        self._db: Any = None

    async def _call(self, doing: str, op: Callable[[Any, Any], Any]) -> Any:
        helpers = _outbox_helpers()
        try:
            if self._db is None:
                self._db = await helpers.open(self.db_name)
            return await op(helpers, self._db)
        except DatasyncError:
            raise
        except Exception as exc:  # a JsException carrying a DOMException
            name = str(getattr(exc, "name", "") or "")
            text = f"IndexedDB database {self.db_name!r} failed while {doing}: {exc}"
            if "QuotaExceeded" in name or "QuotaExceeded" in str(exc):
                raise StorageFullError(text) from None
            if "closing" in str(exc) or "InvalidStateError" in str(exc):
                self._db = None  # closed under us (another tab deleted it): reopen next time
                raise StorageUnavailableError(text) from None
            raise BackendError(text) from None

    async def put(self, entry: Message) -> None:
        await self._call("queueing a write",
                         lambda js, db: js.put(db, str(entry["id"]), json.dumps(entry)))

    async def entries(self) -> list[Message]:
        raw = await self._call("reading queued writes", lambda js, db: js.all(db))
        found = [json.loads(str(item)) for item in raw.to_py()]
        return sorted(found, key=lambda e: e.get("at", 0))

    async def delete(self, entry_id: str) -> None:
        await self._call("removing an applied write", lambda js, db: js.remove(db, entry_id))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


async def open_shared(name: str, **options: Any) -> Any:
    """Open ``name`` in this tab as one of many (Pyodide): Web Locks elect the
    leader, BroadcastChannel carries the rest. ``options`` go to datasync.open."""
    import uuid

    from .coordinator import SharedDatabase

    tab_id = options.pop("tab_id", None) or uuid.uuid4().hex[:12]
    return await SharedDatabase.open(name, locks=WebLocks(tab_id), channel=WebChannel(name),
                                     outbox=IndexedDBOutbox(name), tab_id=tab_id, **options)
