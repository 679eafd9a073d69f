"""Versions kept for point-in-time restore, as the block store reads them back.

Example::

    metas = await store.retained()           # restorable versions, oldest first
    image = await store.image_at(metas[0].version)

What is kept, and for how long, is the backends' rule (:mod:`datasync.backends.history`);
this mixin of :class:`~.store.BlockStore` reads a kept version whole and checks it.
"""
from __future__ import annotations

from typing import Any

from ..backends.contract import KeepsHistory, no_history
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
