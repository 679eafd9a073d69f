"""IndexedDB plumbing, once: opening a database, requests and transactions as futures,
DOM errors as datasync errors. Used by the block backend and the outbox.

Example (Pyodide)::

    db = await open_database("datasync-outbox:app", 1, upgrade=make_stores,
                             location="outbox 'app'")
    px = Proxies()
    try:
        tx = transaction(db, ["outbox"], "readwrite", durability="strict")
        done = transaction_done(tx, px, {})
        tx.objectStore("outbox").put(value, key)
        await done
    except IdbFailure as exc:
        raise map_error(exc.error, "outbox 'app'", "queueing a write") from None
    finally:
        px.destroy()

Every callback runs inside the IDB event that fired it, so a transaction is still
active when a callback issues more requests (a Python ``await`` between two
requests would let it auto-commit). ``map_error`` is the error boundary of every
IndexedDB user: QuotaExceededError -> StorageFullError, a closed database ->
StorageUnavailableError, anything else -> BackendError.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import (
    BackendError,
    DatasyncError,
    NotADatasyncStoreError,
    StorageBlockedError,
    StorageFullError,
    StorageUnavailableError,
)


def js() -> Any:
    import js as module  # only in Pyodide

    return module


class Proxies:
    """Owns the JS proxies of one operation and destroys them together."""

    def __init__(self) -> None:
        from pyodide.ffi import create_proxy

        self._create = create_proxy
        self._made: list[Any] = []

    def __call__(self, fn: Callable[..., Any]) -> Any:
        proxy = self._create(fn)
        self._made.append(proxy)
        return proxy

    def destroy(self) -> None:
        for proxy in self._made:
            proxy.destroy()
        self._made.clear()


class IdbFailure(Exception):
    """Carries a DOM error (or a Python one raised inside an IDB callback)."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


def error_name(err: Any) -> str:
    return str(getattr(err, "name", "") or type(err).__name__)


def map_error(err: Any, location: str, doing: str) -> DatasyncError:
    """IDB/DOM errors -> datasync errors (the error boundary of IndexedDB users)."""
    if isinstance(err, DatasyncError):
        return err
    name = error_name(err)
    message = str(getattr(err, "message", "") or err)
    if name == "QuotaExceededError" or "QuotaExceeded" in message:
        then = ("the changes stay in memory and the next flush retries once space is freed"
                if doing == "flushing" else "nothing was changed")
        return StorageFullError(
            f"{location}: the browser's storage quota is exhausted while {doing}; "
            f"{then} (free space, or ask for persistent storage)")
    if name in ("InvalidStateError", "UnknownError") and "clos" in message.lower():
        return StorageUnavailableError(f"{location} was closed while {doing}: {message}")
    return BackendError(f"{location}: IndexedDB failed while {doing}: {name}: {message}")


def request(req: Any, px: Proxies) -> "asyncio.Future[Any]":
    """A future of ``req``'s result (``IdbFailure`` on error, handled: it does not
    abort the page's other work)."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def ok(event: Any) -> None:
        if not fut.done():
            fut.set_result(req.result)

    def bad(event: Any) -> None:
        event.preventDefault()
        if not fut.done():
            fut.set_exception(IdbFailure(req.error))

    req.onsuccess = px(ok)
    req.onerror = px(bad)
    return fut


def transaction_done(tx: Any, px: Proxies, state: dict[str, Any]) -> "asyncio.Future[None]":
    """A future resolved when ``tx`` commits; ``IdbFailure`` of ``state["error"]``
    (what a callback recorded before aborting) or of the transaction's error."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def complete(event: Any) -> None:
        if not fut.done():
            fut.set_result(None)

    def failed(event: Any) -> None:
        if not fut.done():
            fut.set_exception(IdbFailure(state.get("error") or tx.error))

    tx.oncomplete = px(complete)
    tx.onabort = px(failed)
    tx.onerror = px(lambda event: None)  # the abort event follows and reports it
    return fut


_TX_ARGS: dict[tuple[tuple[str, ...], str], tuple[Any, Any]] = {}


def transaction(db: Any, stores: list[str], mode: str, *, durability: str = "default",
                location: str = "IndexedDB") -> Any:
    """A transaction over ``stores``; ``durability`` ("strict", "relaxed") for a
    readwrite one. StorageUnavailableError if the database was closed under us."""
    from pyodide.ffi import to_js

    if db is None:
        raise StorageUnavailableError(f"{location} is not open (closed, or deleted by another tab)")
    key = (tuple(stores), durability if mode == "readwrite" else "default")
    args = _TX_ARGS.get(key)
    if args is None:  # the JS arguments, made once (a flush is on the commit's path)
        args = _TX_ARGS[key] = (to_js(stores), None if key[1] == "default" else to_js(
            {"durability": durability}, dict_converter=js().Object.fromEntries))
    names, options = args
    try:
        if options is not None:
            return db.transaction(names, mode, options)
        return db.transaction(names, mode)
    except Exception as exc:  # InvalidStateError: closed by another tab's upgrade/delete
        raise map_error(exc, location, "starting a transaction") from None


class NotCreated(Exception):
    """Raised by an ``upgrade`` callback to abort the creation of a new database."""


async def open_database(name: str, version: int, *, upgrade: Callable[[Any, int], None],
                        location: str, factory: Any = None) -> Any:
    """Open IndexedDB database ``name`` at schema ``version``; ``upgrade(db,
    old_version)`` creates what is missing (raise :class:`NotCreated` to leave a new
    database uncreated: then NotCreated is raised here).

    Raises StorageUnavailableError (no IndexedDB here, refused), StorageBlockedError
    (another tab holds it open at an older schema), NotADatasyncStoreError (a newer
    schema: made by something else), NotCreated. The database closes itself when
    another tab upgrades or deletes it."""
    factory = factory or getattr(js(), "indexedDB", None)
    if factory is None:
        raise StorageUnavailableError(
            "IndexedDB is not available in this context (a sandboxed frame, a browser "
            "setting, or a non-browser runtime); datasync cannot persist here")
    px = Proxies()
    state: dict[str, Any] = {}
    try:
        try:
            req = factory.open(name, version)
        except Exception as exc:  # SecurityError in opaque origins, etc.
            raise StorageUnavailableError(f"IndexedDB refused to open {name!r}: {exc}") from exc
        blocked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_upgrade(event: Any) -> None:
            try:
                upgrade(req.result, int(event.oldVersion))
            except NotCreated as exc:
                state["not_created"] = exc
                req.transaction.abort()

        def on_blocked(event: Any) -> None:
            if not blocked.done():
                blocked.set_result(None)

        req.onupgradeneeded = px(on_upgrade)
        req.onblocked = px(on_blocked)
        opened = request(req, px)
        done, _ = await asyncio.wait([opened, blocked], return_when=asyncio.FIRST_COMPLETED)
        if blocked in done and not opened.done():
            # We give up: should the request still go through later, undo it (abort
            # an upgrade, close a connection) rather than hold the database open.
            req.onupgradeneeded = js().Function.new("e", "e.target.transaction.abort()")
            req.onsuccess = js().Function.new("e", "e.target.result.close()")
            req.onerror = js().Function.new("e", "e.preventDefault()")
            raise StorageBlockedError(
                f"{location} is held open with an older schema by another tab; close or "
                "reload the other tabs of this app, then try again")
        try:
            db = opened.result()
        except IdbFailure as exc:
            if "not_created" in state:
                raise state["not_created"] from None
            if error_name(exc.error) == "VersionError":
                raise NotADatasyncStoreError(
                    f"IndexedDB database {name!r} has a newer schema than this datasync "
                    "reads: it was made by a newer datasync or by something else; open it "
                    "with that, or choose another name") from None
            raise StorageUnavailableError(
                f"IndexedDB could not open {name!r}: {error_name(exc.error)}: "
                f"{getattr(exc.error, 'message', exc.error)}") from None
    finally:
        px.destroy()
    db.onversionchange = js().Function.new("e", "e.target.close()")
    return db


def key_range(lo: Any, hi: Any, lo_open: bool = False, hi_open: bool = False) -> Any:
    """``IDBKeyRange.bound`` of two keys given as Python lists or numbers."""
    from pyodide.ffi import to_js

    return js().IDBKeyRange.bound(to_js(lo), to_js(hi), lo_open, hi_open)
