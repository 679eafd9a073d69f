"""Block storage under the VFS: tiers of blocks, commit points, atomic flushes.

Example::

    store = await BlockStore.open(MemoryBackend("demo"), cache_bytes=1 << 20)
    store.write(0, b"hello"); store.commit()
    version = await store.flush()

Modules: :mod:`.store` (the store: tiers, reads, writes, commit points),
:mod:`.tiers` (dirty tiers and the clean-block LRU), :mod:`.flushing` (atomic
flushes), :mod:`.following` (a follower's catch-up), :mod:`.history` (restorable
versions). The store imports no encryption: a codec (``datasync.format.Codec``)
encodes, decodes and authenticates block versions.
"""
from .store import DEFAULT_CACHE_BYTES, BlockStore
from .tiers import CleanCache, Tier, record_versions

__all__ = ["DEFAULT_CACHE_BYTES", "BlockStore", "CleanCache", "Tier", "record_versions"]
