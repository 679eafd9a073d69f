"""``datasync.open``: one database, however and wherever it is opened.

Example::

    db = await datasync.open("app.dsdb")     # natively: a Database on a file
    db = await datasync.open("app")          # in a browser tab: shared with the
                                             # app's other tabs (a SharedDatabase)
    db = await datasync.open("app", tabs=False)   # this tab only (exclusive)

Both kinds answer the same calls (:class:`datasync.api.DatabaseAPI`).
"""
from __future__ import annotations

import logging
from typing import Any

from . import runtime
from .database import open as open_database
from .errors import InvalidOptionError

_log = logging.getLogger("datasync")


async def open(name: str, *, tabs: bool | None = None, **options: Any) -> Any:
    """Open (or create) the database ``name``; ``options`` are those of
    :func:`datasync.database.open` (backend, block_size, cache_bytes, durability...).

    ``tabs``: share the database with the app's other browser tabs (and workers):
    one tab, the leader, writes; the others forward their writes and follow its
    changes (:mod:`datasync.tabs`). None (the default) means yes in the browser with
    its default backend (IndexedDB) where Web Locks and BroadcastChannel exist, and
    no elsewhere (natively one process writes a store; a ``backend=`` you pass is
    yours). ``tabs=False`` in the browser opens the database for this tab alone: a
    second tab's open raises :class:`~datasync.StoreBusyError`.

    ``sync_url=`` (with ``auth_token``, ``sync_interval``, ``offline``,
    ``on_conflict``) opens a replica of a primary on a sync server
    (:mod:`datasync.sync`): natively or with ``tabs=False`` a
    :class:`~datasync.sync.replica.Replica`, in a browser's shared mode a
    :class:`~datasync.sync.tabs.ReplicaTab` (the leader tab talks to the server).

    Returns once the tab knows its role (``leader_info()`` is right at once).
    Raises :class:`~datasync.InvalidOptionError` for ``tabs=True`` natively, and
    what :func:`datasync.database.open` raises."""
    replica = options.get("sync_url") is not None
    if not replica:
        options.pop("sync_url", None)
    if tabs is not None and not isinstance(tabs, bool):
        raise InvalidOptionError(f"tabs={tabs!r} is not allowed: use True, False or None")
    if tabs is None:
        tabs = runtime.IN_PYODIDE and options.get("backend") is None
        if tabs:
            from .browser.tabs import services_available
            tabs = services_available()  # else: one tab at a time, as before
    if not tabs:
        if replica:
            from .sync.opening import open_replica

            return await open_replica(name, **options)
        db = await open_database(name, **options)
        if db.store.meta.extra.get("replica"):
            # A replica's store opened without sync_url: its next pull would replace
            # whatever is written here, so nothing may be.
            await db.execute("PRAGMA query_only = ON")
            db.read_only = True  # and every db.connect() connection
            _log.warning("%s is a replica of %s: opened read-only; open it with sync_url= "
                         "to write", name, db.store.meta.extra["replica"].get("url"))
        return db
    if not runtime.IN_PYODIDE:
        raise InvalidOptionError(
            "tabs=True needs a browser (Web Locks and BroadcastChannel); natively, "
            "simulate tabs with datasync.tabs.SharedDatabase.open(name, locks=..., "
            "channel=...)")
    if replica:
        from .browser.tabs import open_shared_replica

        return await open_shared_replica(name, **options)
    from .browser.tabs import open_shared

    return await open_shared(name, **options)
