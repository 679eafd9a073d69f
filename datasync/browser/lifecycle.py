"""Browser integration: flush when the page is hidden or unloaded, or the Worker closes.

Example (done by :class:`datasync.Database` in Pyodide)::

    remove = install_lifecycle_flush(db.sync)
    ...
    remove()

A page can be closed, discarded or frozen without warning once it is hidden, so
committed data should be on its way to IndexedDB by then: on a page,
``visibilitychange`` (to hidden) and ``pagehide`` start a flush. IndexedDB
transactions started there complete even while the page goes away.

A Worker has no ``document``, no ``visibilitychange`` and no ``pagehide``, and it is
ended with its page without notice. What it has: messages, and its own ``close()``.
So in a Worker a flush starts when

* the page posts ``{datasync: "lifecycle", event: "pagehide" | "visibilitychange"}``
  to it (``forwardLifecycle(worker)`` of ``js/datasync.js`` does that on the page's
  ``pagehide`` and on its becoming hidden; ``{worker: true}`` databases get it), and
* the Worker calls ``self.close()``: the databases flush first, then it closes.

Elsewhere (Node.js) there is nothing to hook: a no-op.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Flush = Callable[[], Awaitable[Any]]

#: The JS side of the Worker hooks: a message filter (so ordinary messages never
#: enter Python) and a ``close()`` that flushes first.
_WORKER_HOOKS_JS = """(flushAll) => {
  const original = globalThis.close;
  const onMessage = (event) => {
    const data = event.data;
    if (data && typeof data === "object" && data.datasync === "lifecycle") flushAll();
  };
  function close() {
    Promise.resolve(flushAll()).finally(() => original.call(globalThis));
  }
  globalThis.addEventListener("message", onMessage);
  globalThis.close = close;
  return () => {
    globalThis.removeEventListener("message", onMessage);
    if (globalThis.close === close) globalThis.close = original;
  };
}"""


def install_lifecycle_flush(flush: Flush) -> Callable[[], None]:
    """Call ``flush()`` when the page is hidden or unloaded, or (in a Worker) when the
    page says so or the Worker closes; returns a remover. A no-op where neither
    applies (Node.js)."""
    import js

    document = getattr(js, "document", None)
    if document is not None:
        return _install_on_page(js, document, flush)
    if _in_worker(js):
        return _worker_hooks.add(flush)
    return lambda: None


def _install_on_page(js: Any, document: Any, flush: Flush) -> Callable[[], None]:
    from pyodide.ffi import create_proxy

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


def _in_worker(js: Any) -> bool:
    """True in a Worker's global scope (dedicated, shared or service)."""
    scope = getattr(js, "WorkerGlobalScope", None)
    if scope is None:
        return False
    from pyodide.code import run_js

    return bool(run_js("(scope) => globalThis instanceof scope")(scope))


class _WorkerHooks:
    """The flushes of every open database of this Worker, behind one set of hooks
    (installed with the first database, removed with the last)."""

    def __init__(self) -> None:
        self._flushes: list[Flush] = []
        self._remove_js: Any = None
        self._proxy: Any = None

    def add(self, flush: Flush) -> Callable[[], None]:
        if not self._flushes:
            self._install()
        self._flushes.append(flush)

        def remove() -> None:
            if flush in self._flushes:
                self._flushes.remove(flush)
                if not self._flushes:
                    self._uninstall()

        return remove

    async def flush_all(self) -> None:
        await asyncio.gather(*(_quietly(f) for f in list(self._flushes)))

    def _install(self) -> None:
        from pyodide.code import run_js
        from pyodide.ffi import create_proxy

        self._proxy = create_proxy(self.flush_all)
        self._remove_js = run_js(_WORKER_HOOKS_JS)(self._proxy)

    def _uninstall(self) -> None:
        if self._remove_js is not None:
            self._remove_js()  # a JS function (a JsProxy: nothing to destroy)
            self._remove_js = None
        if self._proxy is not None:
            self._proxy.destroy()
            self._proxy = None


_worker_hooks = _WorkerHooks()


async def _quietly(flush: Flush) -> None:
    from ..errors import DatasyncError

    try:
        await flush()
    except DatasyncError:
        pass  # kept dirty; stats() shows the error and the next flush retries
