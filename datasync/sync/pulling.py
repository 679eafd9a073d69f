"""A replica's pull: bring the local copy to the primary's latest version.

Example::

    version = await replica.pull()            # the primary's version now held
    version = await replica.pull(wait=25.0)   # a long poll: returns when it commits

The local store holds the primary's image at the version last pulled, with the
replica's waiting writes applied on top (each in a transaction that also records
its id in ``_datasync_local``). The replica's state is kept in the store's metadata
(``extra["replica"]``: the primary's ``db_id``, the ``version`` pulled, and
``installed_at``, the local version of the flush that installed it), written in the
same backend transaction as the blocks it describes.

A pull asks for the blocks changed after the version held, plus every block the
replica changed itself since ``installed_at`` (its waiting writes: stored at a
later local version), so the blocks it gets make the copy exactly the primary's.
It installs them (``BlockStore.install``: one commit point, one flush with the new
state), then settles the outbox against the image: a write whose id the primary
recorded in ``_datasync_applied`` is done (or, if it failed there, a conflict), and
every other one is applied again on top. A crash anywhere leaves a state the next
open or pull repairs: the state in the metadata can only lag the blocks, which makes
the next request ask for more blocks, never fewer, and a write is re-applied only
where the image does not record it.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import vfs
from ..errors import ReplicaMismatchError, SyncError, SyncProtocolError
from ..format import MAIN
from ..tabs.wire import APPLIED_TABLE
from .protocol import PULL_CONTENT_TYPE, PullReply, PullRequest, decode_pull_reply

#: The table that records, inside the local image, which waiting writes it holds.
LOCAL_TABLE = "_datasync_local"
#: Seconds a pull waits for db.connect() readers to leave their transaction.
READER_WAIT = 2.0
#: Extra seconds a long poll's HTTP request may take beyond its ``wait``.
POLL_MARGIN = 15.0


class Pulling:
    """The pull half of :class:`~.replica.Replica` (see the module docstring)."""

    db: Any
    _lock: asyncio.Lock
    _queue: dict[str, dict[str, Any]]
    remote_version: int | None
    last_pull: float | None
    sync_url: str
    last_error: str | None
    #: Set when a pull was deferred (a connect() reader); the background sync backs off.
    deferred: bool = False
    on_installed: Callable[[int], None] | None
    # (the replica's; see replica.py and pushing.py)
    _mark_online: Callable[[bool], None]
    _request: Callable[..., Awaitable[tuple[bytes, str]]]
    apply_in_turn: Callable[[dict[str, Any]], list[Any]]
    _done: Callable[[str], Awaitable[None]]
    _conflict: Callable[[dict[str, Any], list[str]], None]
    resolve_conflicts: Callable[[], Awaitable[int]]

    def replica_state(self) -> dict[str, Any] | None:
        """``extra["replica"]`` of the local store: ``{db_id, version, installed_at}``."""
        state = self.db.store.meta.extra.get("replica")
        return dict(state) if state else None

    async def _local_changes(self, state: dict[str, Any] | None) -> list[int]:
        """Blocks the replica changed itself since the image was installed."""
        store = self.db.store
        if state is None or store.meta.version <= int(state["installed_at"]):
            return []  # (no flush since the install: nothing of ours)
        _meta, records = await store.backend.changed_since(MAIN, int(state["installed_at"]))
        return sorted(records)

    async def pull(self, *, wait: float = 0.0) -> int:
        """Example: ``version = await db.pull()``

        Bring the local copy to the primary's latest version; returns it.

        ``wait`` (seconds, at most 60): if the primary is still at our version,
        let the server hold the request until it commits (a long poll). Raises
        :class:`~datasync.SyncUnavailableError` (no answer: the copy is unchanged),
        :class:`~datasync.SyncAuthError`, :class:`~datasync.ReplicaMismatchError`."""
        for _ in range(5):
            store = self.db.store
            await self.db.sync()
            local_version = store.meta.version
            state = self.replica_state()
            changed = await self._local_changes(state)
            request = PullRequest(int(state["version"]) if state else 0, changed,
                                  wait if not changed else 0.0,
                                  state["db_id"] if state else None)
            reply = await self._fetch(request)
            self._check_same_primary(reply, state)
            deadline = time.monotonic() + READER_WAIT  # readers leave, no lock held
            while vfs.in_use(store.backend.key) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            async with self._lock:
                if state is not None and not changed and reply.version == request.since \
                        and not reply.blocks:
                    self._saw(reply.version)
                    return reply.version
                async with self.db.turn():
                    if store.meta.version != local_version or store.has_unflushed \
                            or self.replica_state() != state:
                        wait = 0.0  # a write or a pull landed meanwhile: ask again, now
                        continue
                    if not await self._install(reply):
                        return int(state["version"]) if state else 0  # deferred
                    conflicts = await self._settle_outbox()
                for entry, error in conflicts:
                    self._conflict(entry, error)
            await self.resolve_conflicts()
            self._saw(reply.version)
            if self.on_installed is not None:
                self.on_installed(reply.version)
            return reply.version
        raise SyncError(
            f"{self.db.name}: local writes kept landing while pulling (5 attempts); "
            "pull again")

    def _saw(self, version: int) -> None:
        self.remote_version = max(self.remote_version or 0, version)
        self.last_pull = time.time()
        self._mark_online(True)

    async def _fetch(self, request: PullRequest) -> PullReply:
        body, ctype = await self._request("POST", "/pull", request.to_json(),
                                          timeout=request.wait + POLL_MARGIN)
        if not ctype.startswith(PULL_CONTENT_TYPE):
            raise SyncProtocolError(
                f"the server answered a pull with {ctype or 'no content type'!r}, not "
                f"{PULL_CONTENT_TYPE}: is sync_url the address of a datasync sync server?")
        return decode_pull_reply(body)

    def _check_same_primary(self, reply: PullReply, state: dict[str, Any] | None) -> None:
        store = self.db.store
        if state is not None and reply.db_id != state["db_id"]:
            raise ReplicaMismatchError(
                f"{store.backend.location} is a replica of primary {state['db_id']}, but the "
                f"server's database is {reply.db_id} (recreated, or another one): open "
                "another local name, or delete this store and its outbox (natively "
                "STORE.outbox) to start over")
        if reply.block_size != store.block_size:
            raise ReplicaMismatchError(
                f"the primary's blocks are {reply.block_size} bytes and "
                f"{store.backend.location}'s are {store.block_size}: open the replica with "
                f"block_size={reply.block_size}")

    async def _install(self, reply: PullReply) -> bool:
        """Inside the turn: the primary's blocks in, the state recorded with them.
        False (nothing installed: the next pull does it) while a ``db.connect()``
        connection stays inside a transaction for :data:`READER_WAIT` seconds: it
        would read pages of two versions."""
        store = self.db.store
        if vfs.in_use(store.backend.key):  # (pull() waited for them, with no lock held)
            self.deferred = True
            self.last_error = (
                "pull deferred: a db.connect() connection of this replica is inside a "
                "transaction (an open cursor or BEGIN); commit it or close the cursor")
            return False
        store.install(reply.blocks, reply.file_size)
        self.db.reload_after_install()
        await store.flush(extra=lambda version: {"replica": {
            "db_id": reply.db_id, "version": reply.version, "installed_at": version,
            "url": self.sync_url}})
        return True

    def _image_lookup(self, table: str, column: str, ids: list[str]) -> dict[str, Any]:
        """``{id: column}`` for the ids the image's ``table`` records."""
        run = self.db.run
        if not ids or not run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (table,)).rows:
            return {}
        marks = ",".join("?" * len(ids))
        rows = run(f"SELECT id, {column} FROM {table} WHERE id IN ({marks})", ids).rows
        return {str(r[0]): r[1] for r in rows}

    async def _settle_outbox(self) -> list[tuple[dict[str, Any], list[str]]]:
        """Inside the turn and the lock, after an install or at open: drop the
        waiting writes the primary recorded, and apply on top every other one the
        image does not hold yet. Returns the writes the primary refused
        ``(entry, [error name, message])``: conflicts, for the caller to hand to the
        handler once the turn is released (a handler may use the database)."""
        conflicts: list[tuple[dict[str, Any], list[str]]] = []
        ids = list(self._queue)
        applied = self._image_lookup(APPLIED_TABLE, "result", ids)
        held = self._image_lookup(LOCAL_TABLE, "id", ids)
        for wid in ids:
            entry = self._queue[wid]
            if wid in applied:
                outcome = json.loads(applied[wid])
                if "error" in outcome:
                    conflicts.append((entry, outcome["error"]))
                else:
                    await self._done(wid)
            elif wid not in held:
                try:
                    self.apply_in_turn(entry)
                except Exception:  # fails on the new image too: the primary will say
                    pass
        return conflicts

