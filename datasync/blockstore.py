"""Block storage under the VFS: tiers of blocks, commit points, atomic flushes.

Example::

    store = await BlockStore.open(MemoryBackend("demo"), cache_bytes=1 << 20)
    store.write(0, b"hello")
    store.commit()                 # a commit point: what is written so far is committed
    version = await store.flush()  # one atomic backend transaction
    assert store.read(0, 5) == b"hello"

A file is a sequence of ``block_size`` blocks. Reads go through tiers, newest
first: ``pending`` (written by the write transaction still open), ``committed``
(committed, not yet flushed), ``inflight`` (being flushed now), then the clean
blocks: an LRU cache bounded in bytes over a backend that reads on demand, or,
for backends that cannot read synchronously, every block resident in memory.

Each tier can also carry a truncation floor: blocks at or above it that the tier
does not hold read as zeros, whatever the tiers below say.

A *commit point* (:meth:`BlockStore.commit`, called by the VFS when the last write
lock on the file is released) moves ``pending`` into ``committed``. A flush takes
``committed`` as an immutable snapshot and writes it with the next metadata in one
backend transaction; on failure the snapshot goes back under ``committed`` so
nothing is lost and the next flush retries it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import encryption
from .backends.base import Backend, run_now
from .errors import (
    BackendError,
    CorruptBlockError,
    DatasyncError,
    InvalidOptionError,
    VersionNotRetainedError,
    WrongKeyError,
)
from .format import DEFAULT_BLOCK_SIZE, MAIN, Codec, Flush, Meta, Record, validate_block_size

if TYPE_CHECKING:
    from .encryption import EncryptionKey

DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
_log = logging.getLogger("datasync")


def _record_versions(records: dict[int, Record], count: int | None = None) -> dict[int, int]:
    """Index -> stored version of ``records`` (those below block ``count``, if given)."""
    return {i: r.version for i, r in records.items() if count is None or i < count}


def _authenticated(codec: Codec, versions: dict[int, int], meta: Meta) -> bool:
    """Whether ``versions`` (every block's) are the ones ``meta``'s keyed version map
    authenticates; always true for a codec that keeps no map (no encryption)."""
    return not codec.tracks_versions or codec.version_map(  # type: ignore[attr-defined]
        versions) == encryption.stored_map(meta)


class _Tier:
    """Blocks by index plus an optional truncation floor."""

    __slots__ = ("blocks", "floor")

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}
        self.floor: int | None = None

    def __bool__(self) -> bool:
        return bool(self.blocks) or self.floor is not None

    def truncate(self, count: int) -> None:
        for idx in [i for i in self.blocks if i >= count]:
            del self.blocks[idx]
        self.floor = count if self.floor is None else min(self.floor, count)

    def absorb(self, newer: "_Tier") -> None:
        """Lay ``newer`` over this tier (newer truncations and blocks win)."""
        if newer.floor is not None:
            self.truncate(newer.floor)
        self.blocks.update(newer.blocks)

    def nbytes(self) -> int:
        return sum(len(b) for b in self.blocks.values())


class BlockStore:
    """One file's blocks over a backend. Thread-safe; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        meta: Meta,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        dirty_limit_bytes: int | None = None,
        codec: Codec | None = None,
    ) -> None:
        if cache_bytes < 0:
            raise InvalidOptionError("cache_bytes must be zero or more")
        self.backend = backend
        self.meta = meta
        self.block_size = meta.block_size
        self.cache_limit = cache_bytes
        self.dirty_limit = dirty_limit_bytes if dirty_limit_bytes is not None else max(
            cache_bytes, 4 * meta.block_size
        )
        self.codec = codec or Codec()
        self._zero = bytes(self.block_size)
        self._lock = threading.RLock()
        self._flush_mutex = threading.Lock()
        self._flush_done: asyncio.Future[None] | None = None  # set while a flush runs
        self._size = meta.file_size
        self._committed_size = meta.file_size
        self._pending = _Tier()
        self._committed = _Tier()
        self._inflight = _Tier()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_used = 0
        self._resident: dict[int, bytes] | None = None
        #: With ``_resident``: the version of each block's stored record (what a
        #: history-keeping flush needs to send the records it supersedes).
        self._versions: dict[int, int] = {}
        self._listeners: list[Callable[["BlockStore"], None]] = []
        #: Leadership epoch written with every flush (multi-tab fencing).
        self.epoch = meta.epoch
        self._generation = 0  # bumped by discard_unflushed()
        #: Keep the last N versions restorable (the backend keeps what flushes replace).
        self.retain_versions = 0
        #: Set by a multi-tab layer: the codec for metadata whose encryption another
        #: writer changed (a rekey); raises WrongKeyError without the key. Unset, a
        #: catch-up across a rekey raises WrongKeyError.
        self.rekeyed_codec: Callable[[Meta], Awaitable[Codec]] | None = None
        self.closed = False
        self.counters: dict[str, Any] = {
            "cache_hits": 0,
            "cache_misses": 0,
            "commits": 0,
            "flushes": 0,
            "blocks_flushed": 0,
            "bytes_flushed": 0,
            "flush_failures": 0,
            "last_flush_at": None,
            "last_flush_seconds": None,
            "last_flush_error": None,
            "last_flush_error_at": None,
            "recent_flush_errors": [],
        }
        self._this_thread = threading.local()

    # -- opening -----------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        backend: Backend,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        dirty_limit_bytes: int | None = None,
        create: bool = True,
        codec: Codec | None = None,
        encryption_key: "EncryptionKey | None" = None,
        resident: bool = False,
    ) -> "BlockStore":
        """Open (or create) the store behind ``backend``. An existing store keeps
        the block size it was created with. With ``encryption_key`` (32 raw bytes or
        a passphrase) a new store is created encrypted and an existing one must be
        encrypted under that key (see :mod:`datasync.encryption`): a wrong or
        missing key raises ``WrongKeyError`` before anything is written.
        ``resident`` holds every block in memory even over a backend that could be
        read on demand: a store another writer flushes to (a multi-tab follower)
        must never read a block newer than the version it holds."""
        validate_block_size(block_size)
        if cache_bytes < 0:  # before the backend is touched: nothing gets created
            raise InvalidOptionError("cache_bytes must be zero or more")
        initial = Meta.new(block_size)
        if encryption_key is not None:
            initial = replace(initial, extra={"encryption": encryption.new_scheme(encryption_key)})
        meta = await backend.open(initial, create=create)
        try:
            to_write = None
            if codec is None:
                codec, to_write = await encryption.open_codec(
                    meta, encryption_key, where=backend.location)
            store = cls(
                backend, meta, cache_bytes=cache_bytes,
                dirty_limit_bytes=dirty_limit_bytes, codec=codec,
            )
            if resident or not backend.sync_io or not codec.decodes_sync:
                # Every block resident: the backend cannot read on demand, or the
                # codec cannot decode synchronously (WebCrypto, in Pyodide).
                records = await backend.read_all(MAIN)
                store._check_complete(records, meta)
                store._resident = await store._decode_many(records, meta.block_count)
                store._versions = _record_versions(records, meta.block_count)
            elif codec.tracks_versions:
                store._versions = {i: v for i, v in (await backend.read_versions(MAIN)).items()
                                   if i < meta.block_count}
                store._check_complete(store._versions, meta)  # names a missing block
            if codec.tracks_versions and to_write is None:
                store._check_version_map(meta)
            if to_write is not None:
                # A store just created encrypted: write its key-check value now.
                store.meta = to_write
                await store.flush(force=True)
        except BaseException:
            await backend.close()
            raise
        return store

    @classmethod
    def open_sync(cls, backend: Backend, **options: Any) -> "BlockStore":
        """:meth:`open` for a backend with synchronous I/O."""
        return run_now(cls.open(backend, **options))

    # -- sizes and counters ------------------------------------------------------
    @property
    def size(self) -> int:
        """Current size of the file, including writes not yet committed."""
        return self._size

    @property
    def version(self) -> int:
        """The durable version: the last one the backend acknowledged."""
        return self.meta.version

    @property
    def next_version(self) -> int:
        """The version of the flush that will store what is committed now: the
        durable version + 1, or + 2 while a flush is in flight (a commit made now
        goes into the flush after it). A failed flush can make it one too high."""
        return self.meta.version + (2 if self._flush_mutex.locked() else 1)

    @property
    def generation(self) -> int:
        """Bumped by :meth:`discard_unflushed`: a write committed under one
        generation is durable only if a flush completed before it changed."""
        return self._generation

    @property
    def has_unflushed(self) -> bool:
        """True if committed changes wait for a flush."""
        return bool(self._committed) or self._committed_size != self.meta.file_size

    def stats(self) -> dict[str, Any]:
        with self._lock:
            dirty = set(self._pending.blocks) | set(self._committed.blocks) | set(
                self._inflight.blocks
            )
            return {
                "version": self.meta.version,
                "block_size": self.block_size,
                "blocks": -(-self._size // self.block_size),
                "file_size": self._size,
                "dirty_blocks": len(dirty),
                "cache_blocks": len(self._cache),
                "cache_bytes": self._cache_used,
                "cache_limit": self.cache_limit,
                "resident_blocks": None if self._resident is None else len(self._resident),
                **self.counters,
                "recent_flush_errors": list(self.counters["recent_flush_errors"]),
            }

    # -- reading -----------------------------------------------------------------
    def read_block(self, idx: int) -> bytes:
        """The current content of block ``idx`` (zeros if it was never written)."""
        for tier in (self._pending, self._committed, self._inflight):
            data = tier.blocks.get(idx)
            if data is not None:
                return data
            if tier.floor is not None and idx >= tier.floor:
                return self._zero
        return self._clean_block(idx)

    def _clean_block(self, idx: int) -> bytes:
        if self._resident is not None:
            return self._resident.get(idx, self._zero)
        with self._lock:
            data = self._cache.get(idx)
            if data is not None:
                self._cache.move_to_end(idx)
                self.counters["cache_hits"] += 1
                return data
            self.counters["cache_misses"] += 1
            if idx >= self.meta.block_count:
                return self._zero
            record = self.backend.read_block(MAIN, idx)
            if record is None:
                raise self._missing(idx, self.meta)
            if self.codec.tracks_versions \
                    and record.version != self._versions.get(idx):
                raise CorruptBlockError(
                    f"block {idx} of {self.backend.location} is at version {record.version}, "
                    f"not the authenticated {self._versions.get(idx)}: it was rolled back "
                    "or replaced outside datasync", index=idx)
            data = self._decode(idx, record)
            self._cache_put(idx, data)
            return data

    def _decode(self, idx: int, record: Any) -> bytes:
        return self._check_length(idx, self.codec.decode(
            MAIN, idx, record, where=self.backend.location))

    async def _decode_many(self, records: dict[int, Any], count: int,
                           codec: Codec | None = None) -> dict[int, bytes]:
        """Decode the records below block ``count`` (one batch: WebCrypto is async)."""
        decoded = await (codec or self.codec).decode_many(
            MAIN, {i: r for i, r in records.items() if i < count}, where=self.backend.location)
        return {i: self._check_length(i, d) for i, d in decoded.items()}

    @property
    def _tracking(self) -> bool:
        """Whether ``_versions`` holds every block's stored version."""
        return self._resident is not None or self.codec.tracks_versions

    def _check_version_map(self, meta: Meta) -> None:
        """An encrypted store: the stored versions must be the ones its metadata
        authenticates (a block rolled back to an older record fails here)."""
        if encryption.stored_map(meta) is None and meta.version == 0:
            return  # nothing written yet
        if not _authenticated(self.codec, self._versions, meta):
            raise CorruptBlockError(
                f"{self.backend.location} (version {meta.version}): the versions of its "
                "blocks are not the ones its metadata authenticates: a block was rolled "
                "back, replaced or removed outside datasync. Restore it from a backup.")

    def _version_changes(self, written: dict[int, int], count: int,
                         stored_count: int) -> dict[int, int | None]:
        """How the stored versions move when blocks ``written`` land (index ->
        version) and the file goes from ``stored_count`` to ``count`` blocks: None for
        a block dropped. Every tracked index is below ``stored_count``, so only a
        shrink looks at them (a flush costs what it writes, not the file's size)."""
        changes: dict[int, int | None] = {}
        if count < stored_count:
            changes = {i: None for i in self._versions if i >= count}
        changes.update(written)
        return changes

    def _apply_version_changes(self, changes: dict[int, int | None]) -> None:
        for i, version in changes.items():
            if version is None:
                self._versions.pop(i, None)
            else:
                self._versions[i] = version

    def _moved_version_map(self, codec: Codec, value: int,
                           changes: dict[int, int | None]) -> int:
        """Version map ``value`` updated for ``changes`` (from the tracked versions)."""
        tag = codec.version_tag  # type: ignore[attr-defined]
        for i, new in changes.items():
            old = self._versions.get(i)
            if old != new:
                if old is not None:
                    value ^= tag(i, old)
                if new is not None:
                    value ^= tag(i, new)
        return value

    def _next_version_map(self, codec: Codec, base: Meta, new_meta: Meta,
                          changes: dict[int, int | None], full: bool) -> Meta:
        """``new_meta`` carrying the version map after this flush."""
        if not codec.tracks_versions:
            return new_meta
        if full:  # every block is written (a rekey): start afresh
            value = codec.version_map(  # type: ignore[attr-defined]
                {i: v for i, v in changes.items() if v is not None})
        else:
            value = self._moved_version_map(codec, encryption.stored_map(base) or 0, changes)
        return encryption.with_map(new_meta, value)

    def _missing(self, idx: int, meta: Meta) -> CorruptBlockError:
        return CorruptBlockError(
            f"block {idx} of {self.backend.location} (version {meta.version}, "
            f"{meta.block_count} blocks) has no stored record: it was deleted outside "
            "datasync. Restore the store from a backup or export what is still readable.",
            index=idx)

    def _check_complete(self, records: dict[int, Any], meta: Meta) -> None:
        """Every block below the file size has a record (a flush stores even the
        zero blocks a file gains), so one missing was removed outside datasync:
        zeros are only for blocks the file never had."""
        count = meta.block_count
        if sum(1 for i in records if i < count) < count:
            raise self._missing(next(i for i in range(count) if i not in records), meta)

    def _check_length(self, idx: int, data: bytes) -> bytes:
        if len(data) != self.block_size:
            raise CorruptBlockError(
                f"block {idx} of {self.backend.location} has {len(data)} bytes, "
                f"expected {self.block_size}: the stored data is damaged",
                index=idx,
            )
        return data

    def _cache_put(self, idx: int, data: bytes) -> None:
        old = self._cache.pop(idx, None)
        if old is not None:
            self._cache_used -= len(old)
        if len(data) > self.cache_limit:
            return
        self._cache[idx] = data
        self._cache_used += len(data)
        while self._cache_used > self.cache_limit:
            _, evicted = self._cache.popitem(last=False)
            self._cache_used -= len(evicted)

    def read(self, offset: int, amount: int) -> bytes:
        """Up to ``amount`` bytes at ``offset``; shorter at the end of the file."""
        bs = self.block_size
        end = min(offset + amount, self._size)
        if end <= offset:
            return b""
        idx, off = divmod(offset, bs)
        if off + (end - offset) <= bs:
            block = self.read_block(idx)
            if off == 0 and end - offset == bs:
                return block
            return block[off : off + end - offset]
        parts = []
        pos = offset
        while pos < end:
            idx, off = divmod(pos, bs)
            n = min(bs - off, end - pos)
            parts.append(self.read_block(idx)[off : off + n])
            pos += n
        return b"".join(parts)

    # -- writing -----------------------------------------------------------------
    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (into the pending tier)."""
        bs = self.block_size
        n_total = len(data)
        with self._lock:
            pending = self._pending.blocks
            if offset % bs == 0 and n_total == bs:
                pending[offset // bs] = bytes(data)
            else:
                view = memoryview(data)
                pos = 0
                while pos < n_total:
                    idx, off = divmod(offset + pos, bs)
                    n = min(bs - off, n_total - pos)
                    if off == 0 and n == bs:
                        pending[idx] = bytes(view[pos : pos + n])
                    else:
                        block = bytearray(self.read_block(idx))
                        block[off : off + n] = view[pos : pos + n]
                        pending[idx] = bytes(block)
                    pos += n
            if offset + n_total > self._size:
                self._size = offset + n_total

    def truncate(self, size: int) -> None:
        """Set the file's size to ``size`` (smaller: drop the tail; larger: zeros)."""
        bs = self.block_size
        with self._lock:
            if size < self._size:
                count, rest = divmod(size, bs)
                tail = None
                if rest:
                    tail = bytearray(self.read_block(count))
                    tail[rest:] = bytes(bs - rest)
                self._pending.truncate(count)
                if tail is not None:
                    self._pending.blocks[count] = bytes(tail)
            self._size = size

    # -- commit points and flushing ---------------------------------------------
    def add_commit_listener(self, callback: Callable[["BlockStore"], None]) -> Callable[[], None]:
        """Call ``callback(store)`` after every commit point; returns a remover."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def commit(self) -> None:
        """A commit point: everything written so far is committed.

        Call it with no lock of this store held (the VFS's lock manager calls
        :meth:`commit_pending` under the lock and :meth:`after_commit` after it)."""
        if self.commit_pending():
            self.after_commit()

    def commit_pending(self) -> bool:
        """Move ``pending`` into ``committed``; True if anything was committed. Cheap
        and safe under the store lock: it never flushes and calls nobody."""
        with self._lock:
            if not self._pending and self._size == self._committed_size:
                return False
            self._committed.absorb(self._pending)
            self._pending = _Tier()
            self._committed_size = self._size
            self.counters["commits"] += 1
            self._this_thread.commits = getattr(self._this_thread, "commits", 0) + 1
            return True

    def after_commit(self) -> None:
        """What follows a commit point, run with NO lock of this store held (the lock
        order is flush mutex, then store lock: flushing under the store lock could
        deadlock with a flush waiting for it). Keeps memory bounded by flushing at
        once past ``dirty_limit`` (synchronous stores only), then calls the commit
        listeners. A failed flush here is recorded (``stats()``, the ``datasync``
        logger) and its blocks stay committed for the next flush."""
        with self._lock:
            over_limit = self.flushes_sync and self._committed.nbytes() > self.dirty_limit
        if over_limit:
            self.flush_in_background()
        for callback in list(self._listeners):
            callback(self)

    def commits_in_this_thread(self) -> int:
        """How many commit points this thread has made on this store (a caller can
        tell whether a statement it ran committed anything)."""
        return getattr(self._this_thread, "commits", 0)

    def flush_in_background(self) -> bool:
        """Flush synchronously for a caller that cannot report a failure (a commit
        listener, a bounded-memory flush): a failure is recorded, logged, and the
        blocks stay committed for the next flush. Returns True if it succeeded."""
        try:
            self.flush_sync()
            return True
        except Exception:  # recorded by _flush_locked (stats, logger); retried later
            return False

    async def flush(self, *, force: bool = False) -> int:
        """Write everything committed so far in one atomic backend transaction.

        Returns the durable version. Raises the backend's error (``StorageFullError``,
        ``BackendError``...) with every block still dirty; a later flush retries.
        ``force`` writes the metadata (a new version, the current epoch) even when
        nothing changed: how a new leader stakes its epoch.
        """
        return await self._flush_exclusive(force=force)

    async def rekey(self, codec: Codec, extra: dict[str, Any]) -> int:
        """Write EVERY block again with ``codec``, and the metadata with ``extra``,
        in one atomic flush (with whatever is committed); from then on ``codec``
        encodes and decodes. Returns the durable version. On failure nothing
        changes: the old codec and metadata stay.

        Example: ``await store.rekey(*await encryption.rekey_codec(store.meta, key))``
        """
        version = await self._flush_exclusive(rekey=(codec, extra))
        try:
            await self.backend.scrub()  # no bytes under the old key (or none) stay behind
        except DatasyncError as exc:
            raise BackendError(
                f"the rekey is done (version {version}, every block under the new key), "
                f"but old bytes may remain in {self.backend.location}: {exc}; "
                "rekey again once the cause is fixed") from exc
        return version

    @property
    def flushes_sync(self) -> bool:
        """True when a flush never suspends (a ``sync_io`` backend and a codec that
        encodes without awaiting): flushes then run synchronously, on any thread,
        holding the flush mutex only while they run."""
        return self.backend.sync_io and self.codec.decodes_sync

    async def _flush_exclusive(
        self, *, force: bool = False, rekey: tuple[Codec, dict[str, Any]] | None = None
    ) -> int:
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
                return run_now(self._flush_locked(force=force, rekey=rekey))
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
            await asyncio.sleep(0.01)  # (only flushes_sync stores flush in threads)
        loop = asyncio.get_running_loop()
        self._flush_done = loop.create_future()
        task = loop.create_task(self._run_flush(force, rekey))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen if orphaned
        # A cancelled caller (``wait_for(db.sync(), 1)``) must not cancel the flush:
        # a backend transaction already issued commits anyway, and the store would
        # then believe an older version is stored than the one that is.
        return await asyncio.shield(task)

    async def _run_flush(self, force: bool,
                         rekey: tuple[Codec, dict[str, Any]] | None) -> int:
        try:
            return await self._flush_locked(force=force, rekey=rekey)
        finally:
            done, self._flush_done = self._flush_done, None
            if done is not None and not done.done():
                done.set_result(None)
            self._flush_mutex.release()

    def flush_sync(self) -> int:
        """:meth:`flush`, synchronously, for a store whose flushes never suspend
        (:attr:`flushes_sync`); waits for a flush running in another thread. Never
        schedules anything on an event loop, so it may run inside one."""
        if not self.flushes_sync:
            raise DatasyncError(
                f"{self.backend.location} cannot flush synchronously; await flush() instead"
            )
        with self._flush_mutex:
            return run_now(self._flush_locked())

    async def _flush_locked(
        self, force: bool = False, rekey: tuple[Codec, dict[str, Any]] | None = None
    ) -> int:
        with self._lock:
            if not self.has_unflushed and not force and rekey is None:
                return self.meta.version
            snapshot, self._committed = self._committed, _Tier()
            self._inflight = snapshot
            generation = self._generation
            base = self.meta
            new_meta = base.next(self._committed_size, epoch=self.epoch)
            if rekey is not None:
                new_meta = replace(new_meta, extra=rekey[1])
        started = time.perf_counter()
        try:
            blocks = {i: d for i, d in snapshot.blocks.items() if i < new_meta.block_count}
            # Blocks the file lost (truncation) or gained (growth) without a write
            # read as zeros: store them as zeros, so no stale record can return.
            start = base.block_count if snapshot.floor is None else min(
                snapshot.floor, base.block_count)
            for i in range(start, new_meta.block_count):
                blocks.setdefault(i, self._zero)
            codec = self.codec
            if rekey is not None:
                # Every other block, read under the old key, is written again.
                for i in range(new_meta.block_count):
                    if i not in blocks:
                        blocks[i] = self._clean_block(i)
                codec = rekey[0]
            records = await codec.encode_many(MAIN, new_meta.version, blocks)
            changes = self._version_changes(dict.fromkeys(records, new_meta.version),
                                            new_meta.block_count, base.block_count)
            new_meta = self._next_version_map(
                codec, base, new_meta, changes,
                full=rekey is not None or not self.codec.tracks_versions)
            if rekey is None:
                await self.backend.write(Flush(
                    base.version, new_meta, records, retain=self.retain_versions,
                    history=await self._superseded(blocks, base.block_count,
                                                   new_meta.block_count)))
            else:
                # No reader thread may decode a rekeyed record with the old codec:
                # the write and the switch happen under the lock (a sync backend
                # never suspends here; in Pyodide every block is resident).
                # retain=0: the kept history is under the old key, so it goes.
                with self._lock:
                    await self.backend.write(Flush(base.version, new_meta, records))
                    self.codec = codec
        except BaseException as exc:
            with self._lock:
                if generation == self._generation:
                    # Put the snapshot back under anything committed since.
                    snapshot.absorb(self._committed)
                    self._committed = snapshot
                self._inflight = _Tier()
                self._record_failure(exc)
            raise
        with self._lock:
            self.meta = new_meta
            self.codec = codec
            if self._resident is None and not codec.decodes_sync:
                # Rekeyed to a codec that only decodes in batches: keep every
                # block resident from now on (``blocks`` holds all of them).
                self._resident = dict(blocks)
            self._settle(snapshot, new_meta.block_count, base.block_count)
            if self._tracking:
                self._apply_version_changes(changes)
            else:
                self._versions = {}
            self._inflight = _Tier()
            c = self.counters
            c["flushes"] += 1
            c["blocks_flushed"] += len(records)
            c["bytes_flushed"] += len(records) * self.block_size
            c["last_flush_at"] = time.time()
            c["last_flush_seconds"] = time.perf_counter() - started
            c["last_flush_error"] = None
        return new_meta.version

    async def _superseded(self, written: dict[int, bytes], old_count: int,
                          new_count: int) -> dict[int, Record]:
        """The stored records a flush replaces or drops, for a backend that keeps
        history from what the store sends (``history_from_store``), encoded again
        with the version each was stored at."""
        if not (self.retain_versions and self.backend.history_from_store
                and self._resident is not None):
            return {}
        indices = [i for i in written if i < old_count] + list(range(new_count, old_count))
        by_version: dict[int, dict[int, bytes]] = {}
        for i in indices:
            if i in self._versions:
                by_version.setdefault(self._versions[i], {})[i] = self._resident.get(i, self._zero)
        out: dict[int, Record] = {}
        for version, group in by_version.items():
            out.update(await self.codec.encode_many(MAIN, version, group))
        return out

    def _settle(self, flushed: _Tier, block_count: int, old_count: int) -> None:
        """Make the clean tier agree with what the backend now stores."""
        floor = block_count if flushed.floor is None else min(flushed.floor, block_count)
        shrank = floor < old_count  # else no clean block can lie at or past the floor
        if self._resident is not None:
            if shrank:
                for idx in [i for i in self._resident if i >= floor]:
                    del self._resident[idx]
            for idx, data in flushed.blocks.items():
                if idx < block_count:
                    self._resident[idx] = data
            return
        if shrank:
            for idx in [i for i in self._cache if i >= floor]:
                self._cache_used -= len(self._cache.pop(idx))
        for idx, data in flushed.blocks.items():
            if idx < block_count:
                self._cache_put(idx, data)

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
        _log.warning("flush of %s failed (its blocks stay committed and the next flush "
                     "retries them): %s", self.backend.location, message)

    # -- following another writer ----------------------------------------------
    async def discard_unflushed(self) -> None:
        """Forget every write not yet durable (a deposed leader's: nobody was told
        they were stored). Waits for a flush in flight first, so its failure cannot
        put the discarded blocks back."""
        while self._flush_done is not None:
            await asyncio.wait([self._flush_done])
        with self._flush_mutex, self._lock:
            self._generation += 1
            self._pending, self._committed, self._inflight = _Tier(), _Tier(), _Tier()
            self._size = self._committed_size = self.meta.file_size
            self._cache.clear()
            self._cache_used = 0
        if self._resident is not None:
            # Everything stored now, with its metadata: the tab that deposed us may
            # have flushed since, even rekeyed (then its old records are gone).
            meta, raw = await self.backend.changed_since(MAIN, -1)
            self._check_complete(raw, meta)
            codec = await self._codec_matching(meta)
            fresh = await self._decode_many(raw, meta.block_count, codec)
            with self._lock:
                self._resident = fresh
                self._versions = _record_versions(raw, meta.block_count)
                self.codec, self.meta = codec, meta
                self._size = self._committed_size = meta.file_size

    async def _codec_matching(self, meta: Meta) -> Codec:
        """The codec for stored ``meta``: ours, unless another writer rekeyed it."""
        if encryption.key_identity(meta) == encryption.key_identity(self.meta):
            return self.codec
        if self.rekeyed_codec is None:
            raise WrongKeyError(
                f"{self.backend.location} was re-encrypted by another writer (version "
                f"{meta.version}): open it again with the new key")
        return await self.rekeyed_codec(meta)

    async def catch_up(self) -> int:
        """Load what another writer (the leader tab) flushed since our version.

        Only for a store that does not write itself (a follower): it must hold no
        unflushed blocks, and no connection may be inside a read transaction (the
        caller checks the VFS locks). Returns the version now held.
        """
        meta, records = await self.backend.changed_since(MAIN, self.meta.version)
        codec = self.codec
        if meta.version > self.meta.version:
            codec = await self._codec_matching(meta)
        # another writer re-encrypted every block (or decrypted them)
        rekeyed = codec is not self.codec
        decoded = await self._decode_many(records, meta.block_count, codec)
        with self._lock:
            if meta.version <= self.meta.version:
                return self.meta.version
            if self._pending or self._committed or self._inflight or self.has_unflushed:
                raise DatasyncError(
                    "catch_up() on a store with unflushed writes: only followers catch up"
                )
            count = meta.block_count
            if rekeyed:
                self._switch_codec(codec, meta, records, decoded)
            elif self._tracking:
                changes = self._version_changes(
                    {i: records[i].version for i in decoded}, count, self.meta.block_count)
                if self.codec.tracks_versions and self._moved_version_map(
                        self.codec, encryption.stored_map(self.meta) or 0,
                        changes) != encryption.stored_map(meta):
                    raise CorruptBlockError(
                        f"{self.backend.location} (version {meta.version}): the blocks read "
                        "while catching up are not at the versions its metadata authenticates")
                self._apply_version_changes(changes)
            if self._resident is not None:
                if count < self.meta.block_count:  # shrank: drop what lies past the end
                    for idx in [i for i in self._resident if i >= count]:
                        del self._resident[idx]
                self._resident.update(decoded)
            else:
                for idx in [i for i in self._cache if i >= count or i in records]:
                    self._cache_used -= len(self._cache.pop(idx))
                for idx, data in decoded.items():
                    self._cache_put(idx, data)
            self.meta = meta
            # self.epoch (what our flushes claim) stays: only a new leadership
            # raises it, so a deposed writer that caught up is still refused.
            self._size = self._committed_size = meta.file_size
            return meta.version

    def _switch_codec(self, codec: Codec, meta: Meta, records: dict[int, Record],
                      decoded: dict[int, bytes]) -> None:
        """Catching up across another writer's rekey (under the lock): that rekey
        wrote every block again, so ``records`` holds them all; check them against
        the new metadata's version map as a whole, then decode with ``codec``."""
        versions = _record_versions(records, meta.block_count)
        if len(versions) < meta.block_count:
            raise CorruptBlockError(
                f"{self.backend.location} (version {meta.version}) was re-encrypted, but "
                f"only {len(versions)} of its {meta.block_count} blocks were rewritten")
        if not _authenticated(codec, versions, meta):
            raise CorruptBlockError(
                f"{self.backend.location} (version {meta.version}): the re-encrypted blocks "
                "are not at the versions its metadata authenticates")
        self.codec = codec
        if self._resident is None and not codec.decodes_sync:
            self._resident = {}  # filled with every block by the caller
        self._versions = versions if self._tracking else {}

    # -- point-in-time restore ---------------------------------------------------
    async def retained(self) -> list[Meta]:
        """The metadata of every version that can be restored, oldest first."""
        return await self.backend.retained(MAIN)

    async def image_at(self, version: int) -> bytes:
        """The file's bytes as they were at a retained ``version`` (checked records)."""
        if version < 0 or version > self.meta.version:
            raise VersionNotRetainedError(
                f"version {version} of {self.backend.location} does not exist (the durable "
                f"version is {self.meta.version})")
        meta, records = await self.backend.read_as_of(MAIN, version)
        where = f"{self.backend.location} at version {version}"
        if encryption.stored_map(meta) is not None:
            if not _authenticated(self.codec, _record_versions(records), meta):
                raise CorruptBlockError(
                    f"{where}: the kept records are not at the versions its metadata "
                    "authenticates")
        decoded = await self.codec.decode_many(MAIN, records, where=where)  # WebCrypto: async
        data = b"".join(self._check_length(i, decoded[i]) for i in range(meta.block_count))
        return data[:meta.file_size]

    async def close(self) -> None:
        """Flush what is committed and release the backend. If the flush fails the
        error is raised and the store stays open, so nothing committed is lost."""
        if self.closed:
            return
        await self.flush()
        self.closed = True
        await self.backend.close()

    def close_sync(self) -> None:
        """:meth:`close` for a store whose flushes never suspend: entirely
        synchronous (nothing is scheduled on an event loop, so it also works inside
        one). If the flush fails the error is raised and the store stays open."""
        if self.closed:
            return
        self.flush_sync()  # waits for another thread's flush
        self.closed = True
        run_now(self.backend.close())
