"""Web Locks, wrapped once: a lock held until released, stolen or its tab dies.

Example (Pyodide)::

    held = await hold_lock("datasync-leader:app", steal=False)
    await held.lost.wait()          # stolen by another tab, or released
    held.release()

``navigator.locks.request`` keeps a lock while the promise its callback returned is
pending; we return one we resolve to release it. The request's own promise settles
when the lock ends (released, stolen, or refused before it was granted, as when a
timeout ``signal`` fires), which sets ``lost``. Used by the multi-tab leader lock
(:class:`~.tabs.WebLocks`) and the open lock (:mod:`.open_lock`).
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import StorageUnavailableError


class HeldLock:
    """A Web Lock this tab holds; ``lost`` is set once it is no longer held."""

    def __init__(self, name: str, resolve: Any) -> None:
        self.name = name
        self.lost = asyncio.Event()
        self._resolve = resolve

    def release(self) -> None:
        """Let go (idempotent)."""
        resolve, self._resolve = self._resolve, None
        if resolve is not None:
            resolve()
        self.lost.set()


def web_locks(required: bool = True) -> Any:
    """``navigator.locks``, or None where Web Locks do not exist (a non-secure
    context); ``required``: raise StorageUnavailableError instead."""
    import js

    locks = getattr(getattr(js, "navigator", None), "locks", None)
    if locks is None and required:
        raise StorageUnavailableError(
            "Web Locks (navigator.locks) are not available here: multi-tab datasync "
            "needs a secure context (https or localhost)")
    return locks


class LockRefused(Exception):
    """The lock was not granted (the wait ran out, or it was refused)."""


async def hold_lock(name: str, *, mode: str = "exclusive", steal: bool = False,
                    wait: float | None = None) -> HeldLock:
    """Wait until lock ``name`` is granted and return it held. ``wait`` seconds:
    give up after that (:class:`LockRefused`); ``steal``: take it from its holder
    now (the holder's ``lost`` is set). Cancelling the wait gives the lock back."""
    import js
    from pyodide.ffi import create_proxy, to_js

    locks = web_locks()
    granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    hold = js.Promise.withResolvers()
    held = HeldLock(name, hold.resolve)

    def on_grant(lock: Any) -> Any:
        if not granted.done():
            granted.set_result(None)
        return hold.promise  # held until it resolves (at once if we gave up)

    def on_end(*_: Any) -> None:
        held.lost.set()
        if not granted.done():  # refused, or the wait ran out, before a grant
            granted.set_exception(LockRefused(name))
        for proxy in proxies:
            proxy.destroy()

    proxies = [create_proxy(on_grant), create_proxy(on_end)]
    options: dict[str, Any] = {"mode": mode}
    if steal:
        options["steal"] = True
    if wait is not None:
        options["signal"] = js.AbortSignal.timeout(max(1, int(wait * 1000)))
    locks.request(name, to_js(options, dict_converter=js.Object.fromEntries),
                  proxies[0]).then(proxies[1], proxies[1])
    try:
        await granted
    except BaseException:
        held.release()  # should it be granted after all, let go at once
        raise
    return held
