"""Opening a replica: ``datasync.open(name, sync_url=...)``.

Example::

    db = await open_replica("notes.dsdb", sync_url="http://127.0.0.1:8765/notes",
                            auth_token=token, sync_interval=5.0)

:func:`datasync.open` calls this when it is given ``sync_url``; the sync options are
checked before anything is created (:class:`~datasync.InvalidOptionError`).
"""
from __future__ import annotations

import math
from typing import Any

from .. import runtime
from ..database import open as open_database
from ..errors import InvalidOptionError
from .replica import Replica, split_sync_url

#: The options a replica adds to those of :func:`datasync.open`.
SYNC_OPTIONS = ("sync_url", "auth_token", "sync_interval", "offline", "on_conflict")


def check_sync_options(options: dict[str, Any], local: dict[str, Any] | None = None) -> None:
    """Refuse (InvalidOptionError) a replica option with a wrong value, or a local
    store option (``local``: the others of :func:`datasync.open`) a replica cannot
    take: ``cdc=True`` (capture changes on the primary; a replica's image is the
    primary's, so it cannot add triggers of its own)."""
    if (local or {}).get("cdc"):
        raise InvalidOptionError(
            "cdc=True on a replica: its image is the primary's, so capture changes on the "
            "primary; a replica cannot add triggers of its own")
    split_sync_url(options["sync_url"])
    token = options.get("auth_token")
    if token is not None and not isinstance(token, str):
        raise InvalidOptionError(f"auth_token={token!r}: give the token as a string")
    interval = options.get("sync_interval", 5.0)
    if interval is None:
        interval = 0.0
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not math.isfinite(interval) or interval < 0:
        raise InvalidOptionError(
            f"sync_interval={interval!r}: use seconds (0 or None: no background sync)")
    if not isinstance(options.get("offline", False), bool):
        raise InvalidOptionError(f"offline={options['offline']!r}: use True or False")
    handler = options.get("on_conflict")
    if handler is not None and not callable(handler):
        raise InvalidOptionError("on_conflict must be a function of the conflict, or None")


async def open_replica(name: str, *, sync_url: str, auth_token: str | None = None,
                       sync_interval: float | None = 5.0, offline: bool = False,
                       on_conflict: Any = None, **options: Any) -> Replica:
    """Open (or create) the local replica ``name`` of the primary at ``sync_url``.

    ``sync_url``: ``http(s)://HOST:PORT/NAME``; ``auth_token``: the server's bearer
    token for NAME (``python -m datasync token``); ``sync_interval``: seconds between
    background syncs, and the longest long poll (0 or None: only :meth:`pull` and
    :meth:`push`); ``offline``: start without talking to the server;
    ``on_conflict``: see :mod:`datasync.sync.pushing`. Other options are those of
    :func:`datasync.open` (the local store's). Raises InvalidOptionError,
    :class:`~datasync.SyncAuthError` / :class:`~datasync.SyncForbiddenError` (the
    token), :class:`~datasync.ReplicaMismatchError` (the store follows another
    primary); an unreachable server is not an error (``sync_status()["online"]``)."""
    check_sync_options({"sync_url": sync_url, "auth_token": auth_token,
                        "sync_interval": sync_interval, "offline": offline,
                        "on_conflict": on_conflict}, options)
    base, remote = split_sync_url(sync_url)
    db = await open_database(name, **options)
    db.read_only = True  # its connect() connections: writes go through the replica
    try:
        transport = runtime.make_transport(base, auth_token)
    except BaseException:
        await db.close()
        raise
    backend = options.get("backend")
    outbox, log = runtime.make_replica_outboxes(
        name, db.store.backend.key, backend if isinstance(backend, str) else "")
    replica = Replica(db, transport, remote, outbox, log,
                      sync_interval=float(sync_interval or 0.0), offline=offline,
                      on_conflict=on_conflict)
    try:
        await replica.start()
    except BaseException:
        await replica.close()
        raise
    return replica
