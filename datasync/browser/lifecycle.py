"""Browser integration: flush when the page is hidden or unloaded.

Example (done by :class:`datasync.Database` in Pyodide)::

    remove = install_lifecycle_flush(db.sync)
    ...
    remove()

A page can be closed, discarded or frozen without warning once it is hidden, so
committed data should be on its way to IndexedDB by then: ``visibilitychange``
(to hidden) and ``pagehide`` start a flush. IndexedDB transactions started there
complete even while the page goes away.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def install_lifecycle_flush(flush: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
    """Call ``flush()`` when the page is hidden or unloaded; returns a remover.
    Does nothing (and returns a no-op) where there is no document (workers)."""
    import js
    from pyodide.ffi import create_proxy

    document = getattr(js, "document", None)
    if document is None:
        return lambda: None

    def on_event(event: Any) -> None:
        if event.type == "pagehide" or document.visibilityState == "hidden":
            asyncio.ensure_future(_quietly(flush))

    proxy = create_proxy(on_event)
    document.addEventListener("visibilitychange", proxy)
    js.globalThis.addEventListener("pagehide", proxy)

    def remove() -> None:
        document.removeEventListener("visibilitychange", proxy)
        js.globalThis.removeEventListener("pagehide", proxy)
        proxy.destroy()

    return remove


async def _quietly(flush: Callable[[], Awaitable[Any]]) -> None:
    from ..errors import DatasyncError

    try:
        await flush()
    except DatasyncError:
        pass  # kept dirty; stats() shows the error and the next flush retries
