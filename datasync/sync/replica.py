"""An embedded replica: a local database that follows a primary on a sync server.

Example::

    db = await datasync.open("notes.dsdb", sync_url="http://127.0.0.1:8765/notes",
                             auth_token=token, sync_interval=5.0)
    await db.execute("INSERT INTO notes(body) VALUES (?)", ("hi",))   # on the primary
    print(await db.query("SELECT * FROM notes"))                       # local read
    print(db.sync_status())    # {local_version, remote_version, waiting, online, ...}
    await db.close()

``sync_url`` is the server's address followed by the database's name there
(``http://HOST:PORT/NAME``). Reads run on the local copy. A statement that writes
(SQLite says so: ``sqlite3_stmt_readonly``) goes to the primary: online, it is
applied there exactly once and answered with the primary's result once the copy
has pulled the version that holds it (read-your-writes). Offline (the server does
not answer, or ``offline=True``), it is applied locally at once and kept in a
durable outbox (:mod:`.pushing`), pushed when the server answers again; while older
writes wait, new ones wait behind them, in order. ``sync_interval`` (seconds; 0:
never in the background) is the period of the background sync: push what waits,
then a long poll that returns as soon as the primary commits (:mod:`.pulling`).

A replica is one :class:`~datasync.Database` underneath; the calls it cannot send
to the primary raise :class:`~datasync.ReplicaWriteError`: ``transaction()`` and
``begin()`` (send the statements together with ``batch``), ``import_`` and
``restore`` (replace the primary on the server). ``connect()`` connections are
read-only (``PRAGMA query_only``).
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..app import AppCalls
from ..database import Database
from ..errors import (
    InvalidOptionError,
    ReplicaMismatchError,
    SyncError,
    SyncUnavailableError,
)
from .protocol import API_PREFIX, MAX_WAIT, NAME_PATTERN, error_for_status
from .pulling import Pulling
from .pushing import ConflictHandler, Pushing
from .statements import ReplicaStatements
from .transport import Transport

_log = logging.getLogger("datasync")


def split_sync_url(url: str) -> tuple[str, str]:
    """``("http://h:p", "notes")`` from ``http://h:p/notes`` (or ``.../v1/databases/notes``).
    Raises InvalidOptionError."""
    if not isinstance(url, str):
        raise InvalidOptionError(f"sync_url={url!r}: give the URL as a string")
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    base_path = path[: len(path) - len(name)].rstrip("/")
    if base_path.endswith(API_PREFIX):
        base_path = base_path[: -len(API_PREFIX)]
    if parts.scheme not in ("http", "https") or not parts.netloc or not NAME_PATTERN.match(name):
        raise InvalidOptionError(
            f"sync_url={url!r}: use http(s)://HOST:PORT/NAME, NAME being the database on "
            "the server (letters, digits, '.', '_', '-')")
    return urlunsplit((parts.scheme, parts.netloc, base_path, "", "")), name


class Replica(AppCalls, ReplicaStatements, Pulling, Pushing):
    """A local :class:`~datasync.Database` kept in sync with a primary (see the
    module docstring). Make one with :func:`datasync.open` and ``sync_url=``."""

    def __init__(self, db: Database, transport: Transport, remote: str, outbox: Any,
                 conflict_log: Any, *, sync_interval: float, offline: bool,
                 on_conflict: ConflictHandler | None, owns_db: bool = True) -> None:
        self.db, self.transport, self.remote = db, transport, remote
        #: False for a leader tab's engine (:mod:`datasync.sync.tabs`): the tab's
        #: database outlives it, and writes may be sent again by another tab.
        self.owns_db = owns_db
        self.remember_results = not owns_db
        #: Called with the version after a pull installed it (the tab announces it).
        self.on_installed: Callable[[int], None] | None = None
        self.outbox, self.conflict_log, self.on_conflict = outbox, conflict_log, on_conflict
        self.sync_interval, self.offline = sync_interval, offline
        self._lock = asyncio.Lock()
        self._queue: dict[str, dict[str, Any]] = {}
        #: Writes the primary refused, waiting for the conflict handler.
        self._resolving: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self._deciding: set[str] = set()  # (being decided by the handler now)
        self.remote_version: int | None = None
        self.last_pull: float | None = None
        self.last_push: float | None = None
        self.online: bool | None = None
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._last_at = 0.0
        self.sync_url = f"{transport.base_url}/{remote}"

    # -- opening and closing -------------------------------------------------------
    async def start(self) -> None:
        """Load the outbox, repair what a crash left, pull once if online, then
        start the background sync."""
        state = self.replica_state()
        if state is None and self.db.store.meta.file_size > 0:
            raise ReplicaMismatchError(
                f"{self.db.store.backend.location} holds a database that is not a replica: "
                "a replica starts from an empty store (open another name)")
        entries = sorted(await self.outbox.entries(), key=lambda e: e.get("at", 0))
        primary = state["db_id"] if state else None
        # A write made before any pull carries no db_id, but the URL it was for.
        foreign = [e for e in entries if e.get("db_id") not in (None, primary) or (
            e.get("db_id") is None and e.get("url") not in (None, self.sync_url))]
        if foreign:
            raise ReplicaMismatchError(
                f"the outbox {getattr(self.outbox, 'location', '')} holds {len(foreign)} "
                f"waiting write(s) for primary {foreign[0].get('db_id') or foreign[0].get('url')}, but "
                f"{self.db.store.backend.location} follows "
                f"{primary or 'none yet (a new store)'}: push them from the store they were "
                "made in, or delete that outbox to drop them")
        self._queue = {e["id"]: e for e in entries}
        self._last_at = max([e.get("at", 0) for e in entries], default=0.0)
        async with self._lock:
            if self._stopped:  # (a leader tab that stepped down meanwhile)
                return
            async with self.db.turn():
                conflicts = await self._settle_outbox()
            for entry, error in conflicts:
                self._conflict(entry, error)
        await self.resolve_conflicts()
        if not self.offline and not self._stopped:
            try:
                if self._queue:
                    await self.push()
                else:
                    await self.pull()
            except SyncUnavailableError as exc:
                self._mark_online(False, exc)
        if self.sync_interval and not self._stopped:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the background sync (the database stays open); a start still under
        way starts none."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def close(self) -> None:
        await self.stop()
        try:
            if self.owns_db:
                await self.db.close()
        finally:
            await self.transport.close()
            self.outbox.close()
            self.conflict_log.close()

    async def __aenter__(self) -> "Replica":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- talking to the server -------------------------------------------------------
    async def _request(self, method: str, path: str, body: Any, *,
                       timeout: float) -> tuple[bytes, str]:
        data = None if body is None else json.dumps(body).encode()
        try:
            status, raw, ctype = await self.transport.request(
                method, f"{API_PREFIX}/{self.remote}{path}", data, timeout=timeout)
        except SyncUnavailableError as exc:
            self._mark_online(False, exc)
            raise
        if status != 200:
            error = error_for_status(status, raw)
            self.last_error = f"{type(error).__name__}: {error}"
            if status >= 500:
                self._mark_online(False, error)
                raise SyncUnavailableError(str(error)) from error
            raise error
        return raw, ctype

    def _mark_online(self, online: bool, error: BaseException | None = None) -> None:
        self.online = online
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"
        elif online:
            self.last_error = None

    async def _run(self) -> None:
        """The background sync: push what waits, then long-poll for the next commit."""
        while True:
            try:
                if self.offline:
                    await self._sleep(self.sync_interval)
                    continue
                if self._queue:
                    await self.push()
                await self.pull(wait=min(self.sync_interval, MAX_WAIT))
                if not self.deferred:
                    continue
                self.deferred = False  # a connect() reader holds a transaction: later
            except asyncio.CancelledError:
                raise
            except SyncError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug or a local failure: said, and retried
                _log.warning("background sync of %s failed: %s: %s", self.db.name,
                             type(exc).__name__, exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
            await self._sleep(self.sync_interval)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def sync_status(self) -> dict[str, Any]:
        """Example: ``if db.sync_status()["waiting"]: show_badge()``

        ``{local_version, remote_version, pulled_version, waiting, last_pull,
        last_push, online, offline, last_error, url}``: versions are
        integers (None: not known yet), times seconds since the epoch, ``online``
        whether the server answered last time (None: not asked yet)."""
        state = self.replica_state() or {}
        return {"local_version": self.db.version, "remote_version": self.remote_version,
                "pulled_version": state.get("version"), "waiting": len(self._queue),
                "last_pull": self.last_pull, "last_push": self.last_push,
                "online": self.online, "offline": self.offline,
                "last_error": self.last_error,
                "url": self.sync_url}

    async def conflicts(self) -> list[dict[str, Any]]:
        """Example: ``for c in await db.conflicts(): print(c["error"], c["statements"])``

        Every write the primary refused, oldest first (see
        :meth:`~datasync.sync.pushing.Pushing.conflicts_recorded` for the keys)."""
        return await self.conflicts_recorded()

    def set_auth_token(self, token: str | None) -> None:
        """Example: ``db.set_auth_token(fresh_token)``

        Use ``token`` from the next request on (one about to expire, refreshed: an
        expired token makes every request fail with SyncAuthError). Raises
        InvalidOptionError for a token that is not a string."""
        if token is not None and not isinstance(token, str):
            raise InvalidOptionError(f"auth_token={token!r}: give the token as a string")
        self.transport.set_token(token)
        self._wake.set()

    def set_offline(self, offline: bool) -> None:
        """Example: ``db.set_offline(True)  # writes now wait in the outbox``

        Stop (True) or resume (False) talking to the server; resuming wakes the
        background sync, which pushes what waits."""
        self.offline = bool(offline)
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Example: ``db.stats()["sync"]["waiting"]``: the local database's
        :meth:`~datasync.Database.stats` with ``sync``: :meth:`sync_status`."""
        return {**self.db.stats(), "sync": self.sync_status()}

    def __getattr__(self, name: str) -> Any:
        # Everything else a Database answers, on the local copy (reads, sync, export,
        # backup, versions, rekey, on_change, changes, leader_info...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.db, name)
