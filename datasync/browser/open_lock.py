"""Who may open an IndexedDB store: one tab alone, or every tab together (Pyodide only).

Example::

    guard = OpenLock("app", shared=False)   # datasync.open("app") in Pyodide
    await guard.acquire()                    # StoreBusyError if another tab has it open
    ...
    guard.release()                          # at close; a closed or crashed tab lets go

Two tabs that each opened ``app`` on their own would both flush, and one of them
would fail much later with "another writer flushed first", its commits stranded in
memory. So every datasync open holds the Web Lock ``datasync-open:<name>`` while the
store is open: exclusively for a single-tab open, shared for multi-tab mode
(``{tabs: true}``), whose tabs coordinate through their own leader lock. An open
that cannot get it within ``wait`` seconds (the time a reloading page needs to let
go of it) raises :class:`~datasync.errors.StoreBusyError` before anything is read
or written. Where Web Locks do not exist (a non-secure context) single-tab opens go
ahead unguarded, as before; multi-tab mode needs Web Locks anyway.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import StoreBusyError

LOCK_PREFIX = "datasync-open:"
#: Seconds an open waits for the lock: a reloaded page's old document releases it
#: as it unloads, which can lag the new document's first request a little.
OPEN_WAIT = 2.0


class OpenLock:
    """The Web Lock ``datasync-open:<name>``, held while a store is open."""

    def __init__(self, name: str, *, shared: bool) -> None:
        self.name = name
        self.lock_name = LOCK_PREFIX + name
        self.shared = shared
        self._release: Any = None

    @property
    def held(self) -> bool:
        return self._release is not None

    async def acquire(self, wait: float = OPEN_WAIT) -> None:
        """Take the lock, or raise StoreBusyError after ``wait`` seconds."""
        import js
        from pyodide.ffi import create_proxy, to_js

        locks = getattr(getattr(js, "navigator", None), "locks", None)
        if locks is None or self.held:
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hold = js.Promise.withResolvers()

        def on_grant(lock: Any) -> Any:
            if not granted.done():
                granted.set_result(None)
            return hold.promise  # released when hold resolves (at once if given up)

        def on_end(*_: Any) -> None:
            if not granted.done():  # the wait ran out (or the request was refused)
                granted.set_exception(self._busy())
            for proxy in proxies:  # this request's own (another may have started)
                proxy.destroy()

        proxies = [create_proxy(on_grant), create_proxy(on_end)]
        options = to_js({"mode": "shared" if self.shared else "exclusive",
                         "signal": js.AbortSignal.timeout(max(1, int(wait * 1000)))},
                        dict_converter=js.Object.fromEntries)
        locks.request(self.lock_name, options, proxies[0]).then(proxies[1], proxies[1])
        try:
            await granted
        except BaseException:
            hold.resolve()  # should it be granted after all, let go at once
            raise
        self._release = hold.resolve

    def release(self) -> None:
        """Let go (idempotent): the next tab may open the store."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def _busy(self) -> StoreBusyError:
        if self.shared:
            return StoreBusyError(
                f"database {self.name!r} is open in another tab without multi-tab mode; "
                "open it with {tabs: true} (Python: datasync.tabs.web.open_shared) in "
                "every tab, or close the other tab")
        return StoreBusyError(
            f"database {self.name!r} is already open in another tab; to use it from "
            "several tabs at once open it with {tabs: true} (Python: "
            "datasync.tabs.web.open_shared) in every tab, or close the other tab")
