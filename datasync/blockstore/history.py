"""Versions kept for point-in-time restore, as the block store reads them back.

Example::

    metas = await store.retained()           # restorable versions, oldest first
    image = await store.image_at(metas[0].version)
    meta, blocks = await store.blocks_changed_since(7)   # what a sync pull sends

What is kept, and for how long, is the backends' rule (:mod:`datasync.backends.history`);
this mixin of :class:`~.store.BlockStore` reads a kept version whole and checks it.
"""
from __future__ import annotations

from typing import Any

from ..backends.contract import EVERYTHING, KeepsHistory, no_history
from ..errors import CorruptBlockError, VersionNotRetainedError
from ..format import MAIN, Meta, version_map_of
from .tiers import record_versions


class History:
    """Reading retained versions (see the module docstring)."""

    async def retained(self) -> list[Meta]:
        """The metadata of every version that can be restored, oldest first.
        Raises InvalidOptionError for a backend that keeps no history."""
        backend = self.backend  # type: ignore[attr-defined]
        if not isinstance(backend, KeepsHistory):
            raise no_history(backend)
        return await backend.retained(MAIN)

    async def blocks_changed_since(self, version: int) -> tuple[Meta, dict[int, bytes]]:
        """The stored metadata and the decoded blocks (below its block count) whose
        stored record is newer than ``version``, read in one backend snapshot;
        ``version`` :data:`~datasync.backends.contract.EVERYTHING` (-1), 0, or one
        past the stored version: every block (each checked: none may be missing).

        Example: ``meta, blocks = await store.blocks_changed_since(7)``  # {index: bytes}

        What is stored, not what is committed and unflushed: flush first for the
        store's current state. Raises CorruptBlockError for a damaged or missing
        record, and what the backend's ``changed_since`` raises."""
        store: Any = self
        since = version if version >= 0 else EVERYTHING
        meta, records = await store.backend.changed_since(MAIN, since)
        if since > meta.version:  # a version never stored here: everything
            since = EVERYTHING
            meta, records = await store.backend.changed_since(MAIN, EVERYTHING)
        if since <= 0:
            store._check_complete(records, meta)
        decoded = await store._decode_many(records, meta.block_count)
        return meta, decoded

    async def image_at(self, version: int) -> bytes:
        """The file's bytes as they were at a retained ``version`` (checked records).
        Raises VersionNotRetainedError, or CorruptBlockError for damaged records."""
        store: Any = self
        backend = store.backend
        if version < 0 or version > store.meta.version:
            raise VersionNotRetainedError(
                f"version {version} of {backend.location} does not exist (the durable "
                f"version is {store.meta.version})")
        if not isinstance(backend, KeepsHistory):
            raise no_history(backend)
        meta, records = await backend.read_as_of(MAIN, version)
        where = f"{backend.location} at version {version}"
        if version_map_of(meta) is not None \
                and not store.codec.versions_authentic(record_versions(records), meta):
            raise CorruptBlockError(
                f"{where}: the kept records are not at the versions its metadata "
                "authenticates")
        decoded = await store.codec.decode_many(MAIN, records, where=where)  # WebCrypto: async
        data = b"".join(store._check_length(i, decoded[i]) for i in range(meta.block_count))
        return bytes(data[:meta.file_size])
