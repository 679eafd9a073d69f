"""Flushing: what is committed goes to the backend in one atomic transaction.

Example::

    version = await store.flush()        # durable up to here
    store.flush_sync()                   # the same, for a store that never suspends

A flush takes ``committed`` as an immutable snapshot (``inflight``), encodes it,
and hands it with the next metadata to the backend's ``write`` once. On failure
the snapshot is laid back *under* whatever was committed since (newer blocks and
truncations win): nothing is lost and nothing stale returns. The failure is
counted, kept in ``stats()`` and logged on the ``datasync`` logger.

One flush at a time (``_flush_mutex``). A flush that never suspends (a
:class:`~datasync.backends.SyncReads` backend and a codec that encodes without
awaiting: :attr:`Flushing.flushes_sync`) runs synchronously on whatever thread asks
and holds the mutex only while it runs; the others (IndexedDB, WebCrypto) run as a
task the caller awaits through a shield, so a cancelled caller cannot abandon a
backend transaction already issued. Lock order: flush mutex, then store lock.

This is a mixin of :class:`~.store.BlockStore`; the state it shares with it is
documented there.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from dataclasses import replace
from collections.abc import Callable
from typing import Any, Union

from ..backends.contract import HistoryFromStore, SyncReads, run_now
from ..errors import AsyncOnlyError, BackendError, DatasyncError, VersionConflictError
from ..format import MAIN, Codec, Flush, Record
from ..histogram import LogHistogram
from .tiers import Tier

_log = logging.getLogger("datasync")
#: ``flush(extra=)``: keys for the metadata's ``extra``, or a function of the new version.
#: ``meta.extra`` key counting the flushes that carried an install (a fork).
INSTALLS = "installs"
ExtraUpdate = Union[dict[str, Any], Callable[[int], dict[str, Any]]]


def _start_task(loop: asyncio.AbstractEventLoop, coro: Any) -> "asyncio.Task[Any]":
    """A task started eagerly (Python 3.12+: its first step runs now, in the caller's
    turn), else an ordinary one."""
    if sys.version_info >= (3, 12):
        try:
            return asyncio.Task(coro, loop=loop, eager_start=True)
        except TypeError:  # an event loop or Task without eager starts
            pass
    return loop.create_task(coro)


class Flushing:
    """Flushes of a :class:`~.store.BlockStore` (see the module docstring)."""

    def _init_flushing(self) -> None:
        self._flush_mutex = threading.Lock()
        self._flush_done: asyncio.Future[None] | None = None  # set while an async flush runs
        #: Every commit up to this number is durable (or was discarded).
        self.durable_seq = 0
        #: Seconds each successful flush took (encode + backend write), in log-scale
        #: buckets; its summary is ``counters["flush_latency_ms"]`` (``stats()``).
        self.flush_latency = LogHistogram()
        self.counters: dict[str, Any] = {
            "cache_hits": 0, "cache_misses": 0, "commits": 0, "flushes": 0,
            "blocks_flushed": 0, "bytes_flushed": 0, "flush_failures": 0,
            "last_flush_at": None, "last_flush_seconds": None, "last_flush_error": None,
            "last_flush_error_at": None, "recent_flush_errors": [],
            "flush_latency_ms": self.flush_latency.summary(),
        }

    @property
    def next_version(self) -> int:
        """The version of the flush that will store what is committed now: the
        durable version + 1, or + 2 while a flush is in flight (a commit made now
        goes into the flush after it). A failed flush can make it one too high."""
        return self.meta.version + (2 if self._flush_mutex.locked() else 1)  # type: ignore[attr-defined]

    @property
    def commit_seq(self) -> int:
        """How many commit points this store has had: the number of the last one."""
        return int(self.counters["commits"])

    @property
    def flushes_sync(self) -> bool:
        """True when a flush never suspends (see the module docstring)."""
        return isinstance(self.backend, SyncReads) and self.codec.decodes_sync  # type: ignore[attr-defined]

    async def flush(self, *, force: bool = False, extra: ExtraUpdate | None = None) -> int:
        """Write everything committed so far in one atomic backend transaction.

        Returns the durable version. Raises the backend's error (``StorageFullError``,
        ``BackendError``...) with every block still dirty; a later flush retries.
        ``force`` writes the metadata (a new version, the current epoch) even when
        nothing changed: how a new leader stakes its epoch. ``extra``: keys to set in
        the metadata's ``extra`` in the same transaction (a dict, or a function of
        the new version returning one: a record of which version wrote it); it
        implies ``force``. Later flushes carry the keys forward unchanged.
        """
        return await self._flush_exclusive(force=force or extra is not None, extra=extra)

    def flush_sync(self) -> int:
        """:meth:`flush`, synchronously, for a store whose flushes never suspend;
        waits for a flush running in another thread. Never schedules anything on an
        event loop, so it may run inside one. Raises AsyncOnlyError otherwise."""
        if not self.flushes_sync:
            raise AsyncOnlyError(
                f"{self.backend.location} cannot flush synchronously; await flush() "  # type: ignore[attr-defined]
                "instead")
        with self._flush_mutex:
            return run_now(self._flush_locked())

    def flush_in_background(self) -> bool:
        """Flush synchronously for a caller that cannot report a failure (a commit
        listener, a bounded-memory flush): a failure is recorded, logged, and the
        blocks stay committed for the next flush. Returns True if it succeeded."""
        try:
            self.flush_sync()
            return True
        except Exception:  # recorded by _flush_locked (stats, logger); retried later
            return False

    async def rekey(self, codec: Codec, extra: dict[str, Any]) -> int:
        """Write EVERY block again with ``codec``, and the metadata with ``extra``,
        in one atomic flush (with whatever is committed); from then on ``codec``
        encodes and decodes. Returns the durable version. On failure nothing
        changes: the old codec and metadata stay.

        Example: ``await store.rekey(*await encryption.rekey_codec(store.meta, key))``
        """
        version = await self._flush_exclusive(rekey=(codec, extra))
        try:
            await self.backend.scrub()  # type: ignore[attr-defined]
        except DatasyncError as exc:
            raise BackendError(
                f"the rekey is done (version {version}, every block under the new key), "
                f"but old bytes may remain in {self.backend.location}: {exc}; "  # type: ignore[attr-defined]
                "rekey again once the cause is fixed") from exc
        return version

    async def _flush_exclusive(self, *, force: bool = False,
                               rekey: tuple[Codec, dict[str, Any]] | None = None,
                               extra: ExtraUpdate | None = None) -> int:
        if self.flushes_sync and (rekey is None or rekey[0].decodes_sync):
            # Never suspends: run it here. The mutex is only ever held by a flush that
            # is running (never across an await), so waiting for it cannot deadlock.
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # driven by run_now(): wait for another thread's flush
                self._flush_mutex.acquire()
            else:
                while not self._flush_mutex.acquire(blocking=False):
                    await asyncio.sleep(0.001)  # another thread's flush; it never waits for us
            try:
                return run_now(self._flush_locked(force=force, rekey=rekey, extra=extra))
            finally:
                self._flush_mutex.release()
        while True:
            running = self._flush_done
            if running is not None:
                # Wait for the flush in flight (never poll: in Pyodide a short sleep
                # is an immediate callback, and polling starves IndexedDB's events).
                await asyncio.wait([running])
                continue
            if self._flush_mutex.acquire(blocking=False):
                break
            await asyncio.sleep(0.01)  # (only synchronous stores flush in threads)
        loop = asyncio.get_running_loop()
        self._flush_done = loop.create_future()
        # The flush runs as its own task, so a cancelled caller cannot abandon a
        # backend transaction already issued; the caller waits on a future of its
        # own that the task settles as its last step. Started eagerly (it runs here
        # until its first real wait, the backend's I/O), the task costs no event-loop
        # turn to start, and its end one turn to wake the caller: in Pyodide every
        # turn is a browser macrotask (measured: 9 turns per strict commit with
        # create_task + shield, 2 now; benchmarks/storage.py).
        result: asyncio.Future[int] = loop.create_future()
        task = _start_task(loop, self._run_flush(force, rekey, result, extra))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen if orphaned
        return await result

    async def _run_flush(self, force: bool, rekey: tuple[Codec, dict[str, Any]] | None,
                         result: "asyncio.Future[int]", extra: ExtraUpdate | None = None) -> int:
        try:
            version = await self._flush_locked(force=force, rekey=rekey, extra=extra)
        except BaseException as exc:
            if not result.done():
                if isinstance(exc, asyncio.CancelledError):
                    result.cancel()
                else:
                    result.set_exception(exc)
            raise
        else:
            if not result.done():
                result.set_result(version)
            return version
        finally:
            done, self._flush_done = self._flush_done, None
            if done is not None and not done.done():
                done.set_result(None)
            self._flush_mutex.release()

    async def _flush_locked(self, force: bool = False,
                            rekey: tuple[Codec, dict[str, Any]] | None = None,
                            extra: ExtraUpdate | None = None) -> int:
        store: Any = self
        with store._lock:
            if not store.has_unflushed and not force and rekey is None:
                store.durable_seq = store.commit_seq  # nothing committed waits
                return int(store.meta.version)
            snapshot, store._committed = store._committed, Tier()
            store._inflight = snapshot
            flushing_seq = store.commit_seq  # what this flush makes durable
            generation = store._generation
            base = store.meta
            new_meta = base.next(store._committed_size, epoch=store.epoch)
            if rekey is not None:
                new_meta = replace(new_meta, extra=rekey[1])
            if extra is not None:
                update = extra(new_meta.version) if callable(extra) else extra
                new_meta = replace(new_meta, extra={**new_meta.extra, **update})
            installed, store._installed = store._installed, False
            if installed:  # tells followers this version is a fork (catch_up)
                new_meta = replace(new_meta, extra={
                    **new_meta.extra, INSTALLS: int(base.extra.get(INSTALLS, 0)) + 1})
        started = time.perf_counter()
        try:
            blocks = {i: d for i, d in snapshot.blocks.items() if i < new_meta.block_count}
            # Blocks the file lost (truncation) or gained (growth) without a write
            # read as zeros: store them as zeros, so no stale record can return.
            start = base.block_count if snapshot.floor is None else min(
                snapshot.floor, base.block_count)
            for i in range(start, new_meta.block_count):
                blocks.setdefault(i, store._zero)
            codec = store.codec
            if rekey is not None:
                for i in range(new_meta.block_count):  # every other block, read with the old key
                    if i not in blocks:
                        blocks[i] = store._clean_block(i)
                codec = rekey[0]
            records = await codec.encode_many(MAIN, new_meta.version, blocks)
            changes = self._version_changes(dict.fromkeys(records, new_meta.version),
                                            new_meta.block_count, base.block_count)
            new_meta = codec.meta_after(base, new_meta, changes, store._versions,
                                        full=rekey is not None or not store.codec.tracks_versions)
            if rekey is None:
                sent = isinstance(store.backend, HistoryFromStore)
                await store.backend.write(Flush(
                    base.version, new_meta, records, retain=store.retain_versions,
                    history=await self._superseded(blocks, base.block_count,
                                                   new_meta.block_count) if sent else {},
                    history_sent=sent))
            else:
                # No reader thread may decode a rekeyed record with the old codec:
                # the write and the switch happen under the lock. retain=0: the kept
                # history is under the old key, so it goes.
                with store._lock:
                    await store.backend.write(Flush(base.version, new_meta, records))
                    store.codec = codec
        except BaseException as exc:
            with store._lock:
                if generation == store._generation:  # under anything committed since
                    snapshot.absorb(store._committed)
                    store._committed = snapshot
                    store._installed = store._installed or installed
                store._inflight = Tier()
                self._record_failure(exc)
            raise
        with store._lock:
            store.meta = new_meta
            store.durable_seq = max(store.durable_seq, flushing_seq)
            store.codec = codec
            if store._resident is None and not codec.decodes_sync:
                store._resident = dict(blocks)  # rekeyed to an async-only codec
            self._settle(snapshot, new_meta.block_count, base.block_count)
            if store._resident is not None or codec.tracks_versions:
                self._apply_version_changes(changes)
            else:
                store._versions = {}
            store._inflight = Tier()
            c = self.counters
            c["flushes"] += 1
            c["blocks_flushed"] += len(records)
            c["bytes_flushed"] += len(records) * store.block_size
            c["last_flush_at"] = time.time()
            c["last_flush_seconds"] = seconds = time.perf_counter() - started
            self.flush_latency.record(seconds)
            # A new dict each time: stats() hands this one out as it is.
            c["flush_latency_ms"] = self.flush_latency.summary()
            c["last_flush_error"] = None
        return int(new_meta.version)

    def _record_failure(self, exc: BaseException) -> None:
        """Keep a failed flush's error (under the store lock): counted, the last one
        and the ten most recent kept in ``stats()`` (a later success clears only
        ``last_flush_error``), and logged, so that no failure goes unseen."""
        message = f"{type(exc).__name__}: {exc}"
        c = self.counters
        c["flush_failures"] += 1
        c["last_flush_error"] = message
        c["last_flush_error_at"] = time.time()
        c["recent_flush_errors"] = [*c["recent_flush_errors"][-9:],
                                    {"at": c["last_flush_error_at"], "error": message}]
        if isinstance(exc, VersionConflictError):  # routine where writers share a store
            _log.info("flush of %s lost the version race to another writer: %s",
                      self.backend.location, message)  # type: ignore[attr-defined]
            return
        _log.warning("flush of %s failed (its blocks stay committed and the next flush "
                     "retries them): %s", self.backend.location, message)  # type: ignore[attr-defined]

    async def _superseded(self, written: dict[int, bytes], old_count: int,
                          new_count: int) -> dict[int, Record]:
        """The stored records a flush replaces or drops, for a backend that keeps the
        history the store sends, encoded again with the version each was stored at."""
        store: Any = self
        if not (store.retain_versions and store._resident is not None):
            return {}
        indices = [i for i in written if i < old_count] + list(range(new_count, old_count))
        by_version: dict[int, dict[int, bytes]] = {}
        for i in indices:
            if i in store._versions:
                by_version.setdefault(store._versions[i], {})[i] = store._resident.get(i, store._zero)
        out: dict[int, Record] = {}
        for version, group in by_version.items():
            out.update(await store.codec.encode_many(MAIN, version, group))
        return out

    def _settle(self, flushed: Tier, block_count: int, old_count: int) -> None:
        """Make the clean tier agree with what the backend now stores."""
        store: Any = self
        floor = block_count if flushed.floor is None else min(flushed.floor, block_count)
        shrank = floor < old_count  # else no clean block can lie at or past the floor
        if store._resident is not None:
            if shrank:
                for idx in [i for i in store._resident if i >= floor]:
                    del store._resident[idx]
            for idx, data in flushed.blocks.items():
                if idx < block_count:
                    store._resident[idx] = data
            return
        if shrank:
            store._cache.drop_where(lambda i: i >= floor)
        for idx, data in flushed.blocks.items():
            if idx < block_count:
                store._cache.put(idx, data)

    def _version_changes(self, written: dict[int, int], count: int,
                         stored_count: int) -> dict[int, int | None]:
        """How the stored versions move when blocks ``written`` land (index ->
        version) and the file goes from ``stored_count`` to ``count`` blocks: None for
        a block dropped. Only a shrink looks at the tracked versions (a flush costs
        what it writes, not the file's size)."""
        changes: dict[int, int | None] = {}
        if count < stored_count:
            changes = {i: None for i in self._versions if i >= count}  # type: ignore[attr-defined]
        changes.update(written)
        return changes

    def _apply_version_changes(self, changes: dict[int, int | None]) -> None:
        versions = self._versions  # type: ignore[attr-defined]
        for i, version in changes.items():
            if version is None:
                versions.pop(i, None)
            else:
                versions[i] = version
