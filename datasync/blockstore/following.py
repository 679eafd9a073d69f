"""Following another writer: a multi-tab follower's catch-up, a deposed leader's reset.

Example::

    version = await store.catch_up()        # load what the leader flushed since ours
    await store.discard_unflushed()         # deposed: forget what was never durable

A follower's store never writes; it reads from the shared backend the records
written after its version (``changed_since``) and lays them over its resident
blocks, checking (for an encrypted store) that the versions move the way the new
metadata authenticates. If another writer rekeyed the store, the codec for the new
metadata comes from :attr:`~.store.BlockStore.rekeyed_codec`: the listener
interface the multi-tab layer sets (without it, or without the key,
``WrongKeyError``).

This is a mixin of :class:`~.store.BlockStore`; the state it shares with it is
documented there.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..backends.contract import EVERYTHING
from ..errors import CorruptBlockError, UnflushedWritesError, WrongKeyError
from ..format import MAIN, Codec, Meta, Record, key_identity
from .flushing import INSTALLS
from .tiers import Tier, record_versions


class Following:
    """Catch-up and reset of a :class:`~.store.BlockStore` (see the module docstring)."""

    def _fork(self) -> None:
        """Start a new generation of the history (under the store lock): connections
        drop their cached pages and schema at their next lock (``StoreFile``,
        ``DatabaseCore.turn``), and what was durable when the old one ended is kept,
        so waits on its later commits learn they were dropped (see
        ``durable_in_generation``)."""
        store: Any = self
        store._durable_by_generation[store._generation] = store.durable_seq
        store._generation += 1

    async def discard_unflushed(self) -> None:
        """Forget every write not yet durable (a deposed leader's: nobody was told
        they were stored). Waits for a flush in flight first, so its failure cannot
        put the discarded blocks back."""
        store: Any = self
        while store._flush_done is not None:
            await asyncio.wait([store._flush_done])
        with store._flush_mutex, store._lock:
            self._fork()
            store.durable_seq = store.commit_seq  # nothing left to wait for: dropped
            store._pending, store._committed, store._inflight = Tier(), Tier(), Tier()
            store._size = store._committed_size = store.meta.file_size
            store._cache.clear()
        if store._resident is not None:
            # Everything stored now, with its metadata: the tab that deposed us may
            # have flushed since, even rekeyed (then its old records are gone).
            meta, raw = await store.backend.changed_since(MAIN, EVERYTHING)
            store._check_complete(raw, meta)
            codec = await self._codec_matching(meta)
            fresh = await store._decode_many(raw, meta.block_count, codec)
            with store._lock:
                store._resident = fresh
                store._versions = record_versions(raw, meta.block_count)
                store.codec, store.meta = codec, meta
                store._size = store._committed_size = meta.file_size

    def install(self, blocks: dict[int, bytes], file_size: int) -> None:
        """Make the file another writer's image: ``blocks`` (index -> ``block_size``
        bytes) replace ours, and the file becomes ``file_size`` bytes; blocks not
        given keep their content. One commit point, flushed like any other (a
        replica installing what it pulled from its primary: :mod:`datasync.sync`).

        Example: ``store.install({0: page0, 3: page3}, 16384); await store.flush()``

        The history forks here (``generation`` moves on, as for a deposed leader), so
        every connection reloads its page cache and schema even when both images
        carry the same change counter; the flush that stores it counts it in
        ``meta.extra["installs"]``, so a follower's :meth:`catch_up` forks too. Only
        with nothing unflushed and no write transaction open
        (``UnflushedWritesError``): flush first, under the turn."""
        store: Any = self
        bs = store.block_size
        for idx, data in blocks.items():
            if len(data) != bs:
                raise ValueError(f"block {idx} is {len(data)} bytes, not {bs}")
        with store._lock:
            if store._pending or store._committed or store._inflight or store.has_unflushed:
                raise UnflushedWritesError(
                    f"{store.backend.location}: install() with unflushed writes; flush "
                    "first, with no write transaction open")
            self._fork()
            store._installed = True
            self.truncate(min(file_size, store._size))  # type: ignore[attr-defined]
            for idx in sorted(blocks):
                self.write(idx * bs, blocks[idx])  # type: ignore[attr-defined]
            self.truncate(file_size)  # type: ignore[attr-defined]
        self.commit()  # type: ignore[attr-defined]

    async def _codec_matching(self, meta: Meta) -> Codec:
        """The codec for stored ``meta``: ours, unless another writer rekeyed it."""
        store: Any = self
        if key_identity(meta) == key_identity(store.meta):
            return store.codec  # type: ignore[no-any-return]
        if store.rekeyed_codec is None:
            raise WrongKeyError(
                f"{store.backend.location} was re-encrypted by another writer (version "
                f"{meta.version}): open it again with the new key")
        return await store.rekeyed_codec(meta)  # type: ignore[no-any-return]

    async def catch_up(self) -> int:
        """Load what another writer (the leader tab) flushed since our version.

        Only for a store that does not write itself (a follower): it must hold no
        unflushed blocks (``UnflushedWritesError``), and no connection may be inside
        a read transaction (the caller checks ``vfs.in_use``). Returns the version
        now held. Raises ``CorruptBlockError`` if the blocks read are not the ones
        the metadata authenticates, ``WrongKeyError`` after a rekey without the key.
        """
        store: Any = self
        meta, records = await store.backend.changed_since(MAIN, store.meta.version)
        codec = store.codec
        if meta.version > store.meta.version:
            codec = await self._codec_matching(meta)
        rekeyed = codec is not store.codec  # another writer re-encrypted (or decrypted)
        decoded = await store._decode_many(records, meta.block_count, codec)
        with store._lock:
            if meta.version <= store.meta.version:
                return int(store.meta.version)
            if store._pending or store._committed or store._inflight or store.has_unflushed:
                raise UnflushedWritesError(
                    f"{store.backend.location}: catch_up() on a store with unflushed "
                    "writes; only a follower (which never writes) catches up")
            count = meta.block_count
            if rekeyed:
                self._switch_codec(codec, meta, records)
            elif store._resident is not None or store.codec.tracks_versions:
                changes = store._version_changes(
                    {i: records[i].version for i in decoded}, count, store.meta.block_count)
                if not store.codec.moves_authentic(store.meta, meta, changes, store._versions):
                    raise CorruptBlockError(
                        f"{store.backend.location} (version {meta.version}): the blocks read "
                        "while catching up are not at the versions its metadata authenticates")
                store._apply_version_changes(changes)
            if store._resident is not None:
                if count < store.meta.block_count:  # shrank: drop what lies past the end
                    for idx in [i for i in store._resident if i >= count]:
                        del store._resident[idx]
                store._resident.update(decoded)
            else:
                store._cache.drop_where(lambda i: i >= count or i in records)
                for idx, data in decoded.items():
                    store._cache.put(idx, data)
            if meta.extra.get(INSTALLS) != store.meta.extra.get(INSTALLS):
                # The writer installed another image (a replica's pull): a fork, so
                # connections drop cached pages even under an equal change counter.
                self._fork()
            store.meta = meta
            # store.epoch (what our flushes claim) stays: only a new leadership
            # raises it, so a deposed writer that caught up is still refused.
            store._size = store._committed_size = meta.file_size
            return int(meta.version)

    def _switch_codec(self, codec: Codec, meta: Meta, records: dict[int, Record]) -> None:
        """Catching up across another writer's rekey (under the lock): that rekey
        wrote every block again, so ``records`` holds them all; check them against
        the new metadata as a whole, then decode with ``codec``."""
        store: Any = self
        versions = record_versions(records, meta.block_count)
        if len(versions) < meta.block_count:
            raise CorruptBlockError(
                f"{store.backend.location} (version {meta.version}) was re-encrypted, but "
                f"only {len(versions)} of its {meta.block_count} blocks were rewritten")
        if not codec.versions_authentic(versions, meta):
            raise CorruptBlockError(
                f"{store.backend.location} (version {meta.version}): the re-encrypted "
                "blocks are not at the versions its metadata authenticates")
        store.codec = codec
        if store._resident is None and not codec.decodes_sync:
            store._resident = {}  # filled with every block by the caller
        tracking = store._resident is not None or codec.tracks_versions
        store._versions = versions if tracking else {}
