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
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import StorageUnavailableError
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


async def open_shared(name: str, **options: Any) -> Any:
    """Open ``name`` in this tab as one of many (Pyodide): Web Locks elect the
    leader, BroadcastChannel carries the rest. ``options`` go to datasync.open."""
    import uuid

    from .coordinator import SharedDatabase

    tab_id = options.pop("tab_id", None) or uuid.uuid4().hex[:12]
    return await SharedDatabase.open(name, locks=WebLocks(tab_id), channel=WebChannel(name),
                                     tab_id=tab_id, **options)
