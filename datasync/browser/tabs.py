"""The browser's services for the multi-tab protocol: Web Locks and BroadcastChannel.

Example (Pyodide)::

    from datasync.browser.tabs import open_shared
    tab = await open_shared("app")            # what DataSync.open(name) does in a browser

:class:`WebLocks` is the :class:`~datasync.tabs.services.LockService` over
``navigator.locks`` (:mod:`.locks`); :class:`WebChannel` the
:class:`~datasync.tabs.services.Channel` over a ``BroadcastChannel`` named
``datasync:<name>``, whose messages are plain objects (structured clone) holding
only JSON-like values. Queued writes wait in :class:`~.outbox.IndexedDBOutbox`.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ..errors import StorageUnavailableError
from ..tabs.services import Lease, Message
from .locks import HeldLock, hold_lock, web_locks
from .outbox import IndexedDBOutbox


class WebLocks:
    """:class:`~datasync.tabs.services.LockService` over ``navigator.locks``."""

    def __init__(self, owner: str) -> None:
        web_locks()  # StorageUnavailableError where there are none
        self.owner = owner
        self._held: dict[int, HeldLock] = {}

    async def acquire(self, name: str, *, steal: bool = False) -> Lease:
        lease = Lease(name, self.owner)
        held = await hold_lock(name, steal=steal)
        lease.lost = held.lost  # lost when the lock is: released, stolen, tab gone
        self._held[id(lease)] = held
        return lease

    def release(self, lease: Lease) -> None:
        held = self._held.pop(id(lease), None)
        if held is not None:
            held.release()
        lease.lost.set()

    async def count(self, name: str) -> int:
        """Tabs (clients) holding or waiting for ``name``: ``navigator.locks.query()``."""
        snapshot = await web_locks().query()
        return sum(1 for kind in ("held", "pending") for lock in (getattr(snapshot, kind) or [])
                   if lock.name == name)


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


def services_available() -> bool:
    """True where multi-tab mode can run: Web Locks and BroadcastChannel exist
    (a secure context; pages and workers alike)."""
    import js

    return web_locks(required=False) is not None and hasattr(js, "BroadcastChannel")


async def open_shared(name: str, **options: Any) -> Any:
    """Open ``name`` in this tab as one of many: Web Locks elect the leader,
    BroadcastChannel carries the rest, queued writes wait in IndexedDB.
    ``options`` go to :func:`datasync.open`; raises what it raises, and
    StorageUnavailableError where Web Locks or BroadcastChannel are missing."""
    from ..tabs import SharedDatabase

    tab_id = options.pop("tab_id", None) or uuid.uuid4().hex[:12]
    return await SharedDatabase.open(name, locks=WebLocks(tab_id), channel=WebChannel(name),
                                     outbox=IndexedDBOutbox(name), tab_id=tab_id, **options)



async def open_shared_replica(name: str, **options: Any) -> Any:
    """:func:`open_shared` for a replica (``sync_url=`` and the other options of
    :mod:`datasync.sync.opening`): the leader tab's engine talks to the server with
    ``fetch()``; the outbox and the conflict log are IndexedDB's, the app's."""
    from ..sync.opening import SYNC_OPTIONS
    from ..sync.replica import split_sync_url
    from ..sync.tabs import open_replica_tab
    from .fetch import FetchTransport

    sync = {k: options.pop(k) for k in SYNC_OPTIONS if k in options}
    base, _remote = split_sync_url(sync["sync_url"])
    tab_id = options.pop("tab_id", None) or uuid.uuid4().hex[:12]

    def engine_parts(db: Any) -> tuple[Any, Any, Any]:
        return (FetchTransport(base, sync.get("auth_token")),
                IndexedDBOutbox(f"replica:{name}"), IndexedDBOutbox(f"replica-conflicts:{name}"))

    return await open_replica_tab(name, sync=sync, locks=WebLocks(tab_id),
                                  channel=WebChannel(name), make_engine_parts=engine_parts,
                                  outbox=IndexedDBOutbox(name), tab_id=tab_id, **options)
