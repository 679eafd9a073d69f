"""The block store: one file's blocks over a backend, read and written by the VFS.

Example::

    store = await BlockStore.open(MemoryBackend("demo"), cache_bytes=1 << 20)
    store.write(0, b"hello")
    store.commit()                 # a commit point: what is written so far is committed
    version = await store.flush()  # one atomic backend transaction
    assert store.read(0, 5) == b"hello"

A file is a sequence of ``block_size`` blocks. Reads go through tiers, newest
first (:mod:`.tiers`): ``pending`` (written by the write transaction still open),
``committed`` (committed, not yet flushed), ``inflight`` (being flushed now),
then the clean blocks: an LRU cache bounded in bytes over a backend that reads on
demand (:class:`~datasync.backends.SyncReads`), or, for backends that cannot read
synchronously, every block resident in memory.

Writes and *commit points* (:meth:`commit`, called by the VFS when the last write
lock on the file is released: ``pending`` moves into ``committed``) are
:mod:`.committing`. Flushing is :mod:`.flushing`; following another writer (a multi-tab follower) is
:mod:`.following`; versions kept for restore are :mod:`.history`.

State and its owner: ``meta`` (the durable metadata: version, file size, epoch...)
is the backend's last acknowledged state, held here only; ``_size`` is the file's
current size including uncommitted writes, ``_committed_size`` as of the last
commit point. Thread-safe: ``_lock`` guards every tier and the cache.
"""
from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..backends.contract import EVERYTHING, Backend, SyncReads, run_now
from ..errors import CorruptBlockError, InvalidOptionError, StoreBusyError, VersionConflictError
from ..format import (
    DEFAULT_BLOCK_SIZE,
    MAIN,
    Codec,
    Codecs,
    Meta,
    PlainCodecs,
    key_identity,
    validate_block_size,
)
from .committing import Committing
from .flushing import Flushing
from .following import Following
from .history import History
from .tiers import CleanCache, Tier, record_versions

DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
#: Opens retried when another writer flushes between reading the metadata and the blocks.
OPEN_ATTEMPTS = 10


class BlockStore(Committing, Flushing, Following, History):
    """One file's blocks over a backend. Thread-safe; see the module docstring."""

    def __init__(self, backend: Backend, meta: Meta, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 dirty_limit_bytes: int | None = None, codec: Codec | None = None) -> None:
        if cache_bytes < 0:
            raise InvalidOptionError("cache_bytes must be zero or more")
        self.backend = backend
        self.meta = meta
        self.block_size = meta.block_size
        self.cache_limit = cache_bytes
        self.dirty_limit = dirty_limit_bytes if dirty_limit_bytes is not None else max(
            cache_bytes, 4 * meta.block_size)
        self.codec = codec or Codec()
        self._zero = bytes(self.block_size)
        self._lock = threading.RLock()
        self._size = meta.file_size
        self._committed_size = meta.file_size
        self._pending, self._committed, self._inflight = Tier(), Tier(), Tier()
        self._cache = CleanCache(cache_bytes)
        self._resident: dict[int, bytes] | None = None
        #: With ``_resident`` or a codec that tracks versions: the version of each
        #: block's stored record.
        self._versions: dict[int, int] = {}
        self._listeners: list[Callable[["BlockStore"], None]] = []
        #: Leadership epoch written with every flush (multi-tab fencing).
        self.epoch = meta.epoch
        self._generation = 0  # bumped by discard_unflushed() and install()
        self._installed = False  # an install() not yet flushed (see Following.install)
        self._durable_by_generation: dict[int, int] = {}  # ended generation -> durable_seq
        #: Keep the last N versions restorable (the backend keeps what flushes replace).
        self.retain_versions = 0
        #: Set by a multi-tab layer (the listener interface of following.py): the
        #: codec for metadata another writer rekeyed.
        self.rekeyed_codec: Callable[[Meta], Awaitable[Codec]] | None = None
        self.closed = False
        self._this_thread = threading.local()
        self._init_flushing()

    # -- opening -----------------------------------------------------------------
    @classmethod
    async def open(cls, backend: Backend, *, block_size: int = DEFAULT_BLOCK_SIZE,
                   cache_bytes: int = DEFAULT_CACHE_BYTES, dirty_limit_bytes: int | None = None,
                   create: bool = True, codecs: Codecs | None = None,
                   resident: bool = False) -> "BlockStore":
        """Open (or create) the store behind ``backend``.

        An existing store keeps the block size it was created with. ``codecs``
        gives the store its codec (``datasync.encryption.codecs(key)``; default: no
        key, and an encrypted store raises WrongKeyError before anything is
        written). ``resident`` holds every block in memory even over a backend that
        could read on demand: a store another writer flushes to (a multi-tab
        follower) must never read a block newer than the version it holds.

        Raises what the backend's ``open`` raises, ``InvalidOptionError`` for a bad
        size, ``WrongKeyError``, ``CorruptBlockError`` for a damaged store, and
        ``StoreBusyError`` if another writer flushed between every one of
        ``OPEN_ATTEMPTS`` reads of its metadata and its blocks.
        """
        validate_block_size(block_size)
        if cache_bytes < 0:  # before the backend is touched: nothing gets created
            raise InvalidOptionError("cache_bytes must be zero or more")
        codecs = codecs or PlainCodecs()
        initial = replace(Meta.new(block_size), extra=codecs.new_store_extra())
        meta = await backend.open(initial, create=create)
        try:
            for _ in range(OPEN_ATTEMPTS):
                codec, to_write = await codecs.codec_for(meta, where=backend.location)
                store = cls(backend, meta, cache_bytes=cache_bytes,
                            dirty_limit_bytes=dirty_limit_bytes, codec=codec)
                moved_on = await store._load(resident)
                if moved_on is None:
                    break
                meta = moved_on  # another writer flushed meanwhile: again, from its metadata
            else:
                raise StoreBusyError(
                    f"{backend.location} changed {OPEN_ATTEMPTS} times while it was being "
                    "opened: another writer flushes without pause; open it again")
            if to_write is not None:
                # A store just created with a key: write its key-check value now.
                store.meta = to_write
                await store.flush(force=True)
        except BaseException:
            await backend.close()
            raise
        return store

    async def _load(self, resident: bool) -> Meta | None:
        """Read what must be in memory from the start, checking it is whole.

        Returns None, or the newer metadata another writer stored since ``meta``
        was read (the blocks read belong to it: the caller opens again from it)."""
        backend, meta, codec = self.backend, self.meta, self.codec
        if resident or not isinstance(backend, SyncReads) or not codec.decodes_sync:
            # Every block resident: the backend cannot read on demand, or the codec
            # cannot decode synchronously (WebCrypto, in Pyodide). One snapshot of
            # metadata and records, so both belong to one version.
            now, records = await backend.changed_since(MAIN, EVERYTHING)
            if now.version != meta.version:
                if key_identity(now) != key_identity(meta):
                    return now  # rekeyed meanwhile: the codec must be found again
                meta = self._adopt(now)  # same key: the snapshot is whole, use it
            self._check_complete(records, meta)
            self._resident = await self._decode_many(records, meta.block_count)
            self._versions = record_versions(records, meta.block_count)
        elif codec.tracks_versions:
            self._versions = {i: v for i, v in (await backend.read_versions(MAIN)).items()
                              if i < meta.block_count}
            try:
                self._check_complete(self._versions, meta)  # names a missing block
            except CorruptBlockError:
                moved = await self._moved_on()
                if moved is None:
                    raise  # at an unchanged version: damage
                return moved  # a truncating flush landed after our metadata
        if codec.tracks_versions and meta.version > 0 \
                and not codec.versions_authentic(self._versions, meta):
            moved = await self._moved_on()
            if moved is not None:
                return moved  # not damage: the versions were read after another flush
            raise CorruptBlockError(
                f"{backend.location} (version {meta.version}): the versions of its blocks "
                "are not the ones its metadata authenticates: a block was rolled back, "
                "replaced or removed outside datasync. Restore it from a backup.")
        return None

    async def _moved_on(self) -> Meta | None:
        """The stored metadata, if another writer flushed since ours was read."""
        now, _ = await self.backend.changed_since(MAIN, self.meta.version)
        return now if now.version != self.meta.version else None

    def _adopt(self, meta: Meta) -> Meta:
        """Take newer stored ``meta`` (same key) as this store's, before any use."""
        self.meta, self.epoch = meta, meta.epoch
        self._size = self._committed_size = meta.file_size
        return meta

    @classmethod
    def open_sync(cls, backend: Backend, **options: Any) -> "BlockStore":
        """:meth:`open` for a :class:`~datasync.backends.SyncReads` backend."""
        return run_now(cls.open(backend, **options))

    def durable_in_generation(self, seq: int, generation: int) -> bool:
        """Whether commit number ``seq``, made in ``generation``, is durable: in the
        current generation once ``durable_seq`` reaches it; in an ended one only if
        it was durable before :meth:`discard_unflushed` dropped the rest."""
        if generation == self._generation:
            return seq <= self.durable_seq
        return seq <= self._durable_by_generation.get(generation, -1)

    @property
    def state_lock(self) -> threading.RLock:
        """The lock guarding every tier and the cache (``_lock``): the VFS's lock
        manager takes it to make a commit point atomic with its lock change; its
        place in the lock order is in docs/architecture.md."""
        return self._lock  # type: ignore[return-value]

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
    def generation(self) -> int:
        """Bumped by :meth:`discard_unflushed`: a write committed under one
        generation is durable only if a flush completed before it changed."""
        return self._generation

    @property
    def has_unflushed(self) -> bool:
        """True if committed changes wait for a flush."""
        return bool(self._committed) or self._committed_size != self.meta.file_size

    def stats(self) -> dict[str, Any]:
        """Counters: version, sizes, dirty and cached blocks, flushes and failures."""
        with self._lock:
            dirty = set(self._pending.blocks) | set(self._committed.blocks) | set(
                self._inflight.blocks)
            return {
                "version": self.meta.version,
                "block_size": self.block_size,
                "blocks": -(-self._size // self.block_size),
                "file_size": self._size,
                "dirty_blocks": len(dirty),
                "cache_blocks": len(self._cache),
                "cache_bytes": self._cache.used,
                "cache_limit": self.cache_limit,
                "resident_blocks": None if self._resident is None else len(self._resident),
                **self.counters,
                "recent_flush_errors": list(self.counters["recent_flush_errors"]),
            }

    # -- reading -----------------------------------------------------------------
    def read_block(self, idx: int) -> bytes:
        """The current content of block ``idx`` (zeros if the file never had it)."""
        data = self._dirty_block(idx)
        return data if data is not None else self._clean_block(idx)

    def cached_block(self, idx: int) -> bytes | None:
        """Block ``idx`` if it is in memory (a dirty tier, resident, the clean
        cache), else None: never any I/O, so never an error of the backend's."""
        data = self._dirty_block(idx)
        if data is not None:
            return data
        if self._resident is not None:
            return self._resident.get(idx, self._zero)
        with self._lock:
            return self._cache.get(idx)

    def _dirty_block(self, idx: int) -> bytes | None:
        """Block ``idx`` from the newest dirty tier that decides it (zeros past a
        tier's truncation floor), else None: the clean block stands."""
        for tier in (self._pending, self._committed, self._inflight):
            data = tier.blocks.get(idx)
            if data is not None:
                return data
            if tier.floor is not None and idx >= tier.floor:
                return self._zero
        return None

    def _clean_block(self, idx: int) -> bytes:
        if self._resident is not None:
            return self._resident.get(idx, self._zero)
        with self._lock:
            data = self._cache.get(idx)
            if data is not None:
                self.counters["cache_hits"] += 1
                return data
            self.counters["cache_misses"] += 1
            if idx >= self.meta.block_count:
                return self._zero
            record = self.backend.read_block(MAIN, idx)  # type: ignore[attr-defined]
            if record is None or record.version > self.meta.version:
                self._check_not_moved_on(idx, record)
            if self.codec.tracks_versions and record.version != self._versions.get(idx):
                raise CorruptBlockError(
                    f"block {idx} of {self.backend.location} is at version {record.version}, "
                    f"not the authenticated {self._versions.get(idx)}: it was rolled back "
                    "or replaced outside datasync", index=idx)
            data = self._check_length(idx, self.codec.decode(
                MAIN, idx, record, where=self.backend.location))
            self._cache.put(idx, data)
            return data

    def _check_not_moved_on(self, idx: int, record: Any) -> None:
        """A block read on demand is missing or newer than our version: if another
        writer of a shared backend (PostgreSQL) flushed since, the block belongs to
        a later image than the ones we hold (VersionConflictError: catch up, read
        again); else the store lost it (CorruptBlockError)."""
        if record is None:
            stored, _ = run_now(self.backend.changed_since(MAIN, self.meta.version))
            if stored.version == self.meta.version:
                raise self._missing(idx, self.meta)
        raise VersionConflictError(
            f"block {idx} of {self.backend.location} was changed by another writer after "
            f"version {self.meta.version}, the one held here: catch up (catch_up) and "
            "read again")

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

    async def _decode_many(self, records: dict[int, Any], count: int,
                           codec: Codec | None = None) -> dict[int, bytes]:
        """Decode the records below block ``count`` (one batch: WebCrypto is async)."""
        decoded = await (codec or self.codec).decode_many(
            MAIN, {i: r for i, r in records.items() if i < count}, where=self.backend.location)
        return {i: self._check_length(i, d) for i, d in decoded.items()}

    def _check_length(self, idx: int, data: bytes) -> bytes:
        if len(data) != self.block_size:
            raise CorruptBlockError(
                f"block {idx} of {self.backend.location} has {len(data)} bytes, "
                f"expected {self.block_size}: the stored data is damaged", index=idx)
        return data

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

