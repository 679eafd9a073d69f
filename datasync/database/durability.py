"""Durability: one flusher per database, and writes that wait for it.

Example::

    db = await datasync.open("app.dsdb", durability="strict")
    await db.execute("INSERT INTO t VALUES (1)")    # returns once durable
    version = await db.sync()                       # everything so far is durable

Every commit point of the store calls :meth:`Durability._on_commit`, which wakes
the database's *flusher* task: the one place that flushes (group commit: every
commit made before it runs goes into one backend transaction; ``flush_interval``
seconds of delay batch more). A flush that fails keeps its blocks and is retried
with a backoff; the failure is recorded (``stats()``, the ``datasync`` logger).

``relaxed`` (default): a commit returns at once. ``strict``: a statement that
committed waits until the store is *durable through* its commit (the store's
commit sequence number), and raises the flush's error if the flush fails. A read
never waits. ``sync()`` waits the same way for everything committed so far.

One exception to "the flusher flushes": a commit made by a plain connection from
:meth:`connect` on a strict database is flushed in the committing thread at once
(a synchronous store only), so that ``commit()`` returns durable, as the
connection's own code expects.

A mixin of :class:`~datasync.Database` over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import asyncio

from ..blockstore import BlockStore
from ..errors import DatabaseClosedError, DatasyncError, DeposedLeaderError

_RETRY_MIN, _RETRY_MAX = 0.05, 5.0
#: When the flusher looks after a strict commit its own statement flushes.
_BACKUP_DELAY = 0.05


class Durability:
    """The flusher and the strict waits of a database (see the module docstring)."""

    def _init_durability(self) -> None:
        self._flush_task: asyncio.Task[None] | None = None
        self._retry_delay = _RETRY_MIN
        self._failing = False  # the last flush failed: the flusher retries, with backoff
        self._wake = asyncio.Event()  # cuts a flusher's wait (delay or backoff) short
        #: Strict waits: (commit sequence number, store generation then, future of
        #: the durable version).
        self._waiters: list[tuple[int, int, asyncio.Future[int]]] = []
        self._running_own = False  # the database's own statement is running
        self._remove_listener = self._store.add_commit_listener(self._on_commit)  # type: ignore[attr-defined]

    async def _after_write(self, committed: bool) -> None:
        """Strict durability: once a statement of ours committed (counted in our
        turn, so no other task's commit), wait until it is durable."""
        if self.durability == "strict" and committed and not self._owns_transaction():  # type: ignore[attr-defined]
            await self._durable_through(self._store.commit_seq)  # type: ignore[attr-defined]

    async def _durable_through(self, seq: int) -> int:
        """Wait until every commit up to commit number ``seq`` is durable; returns the
        durable version. Raises the flush's error if a flush fails meanwhile."""
        store: BlockStore = self._store  # type: ignore[attr-defined]
        if store.durable_seq >= seq:
            return store.version
        if self._closed:  # type: ignore[attr-defined]
            raise self._closed_before_durable()
        # The generation the commit was made in, read before any await: a fork
        # during the flush below must not let the wait count the new generation's
        # durable_seq (which discard_unflushed set past the dropped commit).
        generation = store.generation
        if not self._failing and not store.flushes_sync:
            # The fast path of a strict write: flush here rather than wake the
            # flusher, which would cost three event-loop turns (browser macrotasks in
            # Pyodide) before the backend transaction even starts. The flusher still
            # runs (woken by the commit) and flushes whatever this flush left.
            # Not while the flusher backs off after a failure: then it retries.
            try:
                await store.flush()
            except DatasyncError as exc:
                self._failing = True
                self._settle(exc)
                self._ensure_flusher()
                raise
            self._settle()
            if store.durable_in_generation(seq, generation):
                return store.version
            if self._closed:  # type: ignore[attr-defined]
                raise self._closed_before_durable()  # (close() settled the waits already)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, generation, fut))
        self._ensure_flusher()
        self._wake.set()
        return await asyncio.shield(fut)

    def _settle(self, error: BaseException | None = None) -> None:
        """Answer the strict waits: durable ones with the version, the others with
        ``error`` (a failed flush), if any. A wait for a commit the store dropped
        unflushed (a deposed leader tab) fails with DeposedLeaderError."""
        store: BlockStore = self._store  # type: ignore[attr-defined]
        left = []
        for seq, generation, fut in self._waiters:
            if fut.done():
                continue
            if store.durable_in_generation(seq, generation):
                fut.set_result(store.version)
            elif generation != store.generation:
                fut.set_exception(DeposedLeaderError(
                    f"{self.name!r} dropped this commit before it was durable: another "  # type: ignore[attr-defined]
                    "tab took the lead; the write was not stored"))
            elif error is not None:
                fut.set_exception(error)
            else:
                left.append((seq, generation, fut))
        self._waiters = left

    def _on_commit(self, store: BlockStore) -> None:
        """Commit-point listener (runs after SQLite's unlock, maybe in any thread,
        with no lock of the store held)."""
        if self.durability == "strict" and store.flushes_sync and not self._running_own:  # type: ignore[attr-defined]
            # A plain connection's commit on a strict database: durable at commit.
            if store.flush_in_background():
                return
        try:
            if (self.durability == "strict" and self._running_own  # type: ignore[attr-defined]
                    and not self._failing and asyncio._get_running_loop() is self._loop):  # type: ignore[attr-defined]
                # Our own statement's strict wait flushes it (_durable_through): the
                # flusher only backs that up, so it looks later, not in the middle
                # of the flush (in Pyodide its turns would delay the flush's events).
                self._loop.call_later(_BACKUP_DELAY, self._ensure_flusher)  # type: ignore[attr-defined]
                return
            self._loop.call_soon_threadsafe(self._ensure_flusher)  # type: ignore[attr-defined]
        except RuntimeError:
            pass  # the loop is closed: close() or the exit hook flushes

    def _ensure_flusher(self) -> None:
        if self._closed or (self._flush_task and not self._flush_task.done()):  # type: ignore[attr-defined]
            return
        self._flush_task = self._loop.create_task(self._flusher())  # type: ignore[attr-defined]

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a strict write or sync() wakes us."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _flusher(self) -> None:
        store: BlockStore = self._store  # type: ignore[attr-defined]
        if self.flush_interval and not self._waiters:  # type: ignore[attr-defined]
            await self._pause(self.flush_interval)  # type: ignore[attr-defined]
        while not self._closed and (store.has_unflushed or self._waiters):  # type: ignore[attr-defined]
            try:
                await store.flush()
                self._retry_delay, self._failing = _RETRY_MIN, False
                self._settle()
            except DatasyncError as exc:
                # Kept dirty; stats() shows the error. Strict waits get it; retry
                # with backoff (cut short by the next strict write or sync()).
                self._failing = True
                self._settle(exc)
                await self._pause(self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
        # Closed: no flush comes any more, so every wait ends here.
        self._settle(self._closed_before_durable() if self._closed else None)  # type: ignore[attr-defined]

    def _closed_before_durable(self) -> DatabaseClosedError:
        return DatabaseClosedError(
            f"{self.name!r} was closed before this commit was durable: open it again "  # type: ignore[attr-defined]
            "and check whether the commit is there")

    async def sync(self) -> int:
        """Make everything committed so far durable; returns the durable version.

        Example: ``version = await db.sync()``

        Raises the flush's error (``StorageFullError``, ``BackendError``...) if it
        fails; nothing is lost, and a later sync() or flush retries."""
        self._check_open()  # type: ignore[attr-defined]
        store: BlockStore = self._store  # type: ignore[attr-defined]
        return await self._durable_through(store.commit_seq)

