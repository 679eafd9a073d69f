"""The tiers a block is read through: dirty tiers, then a bounded LRU of clean blocks.

Example::

    pending = Tier()
    pending.blocks[3] = b"..."          # written by the open transaction
    pending.truncate(2)                 # blocks >= 2 now read as zeros here
    cache = CleanCache(limit=1 << 20)
    cache.put(7, data); cache.get(7)    # bounded in bytes, least recently used out
"""
from __future__ import annotations

from collections import OrderedDict

from ..format import Record


class Tier:
    """Blocks by index plus an optional truncation floor: blocks at or above it that
    the tier does not hold read as zeros, whatever the tiers below say."""

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

    def absorb(self, newer: "Tier") -> None:
        """Lay ``newer`` over this tier (newer truncations and blocks win)."""
        if newer.floor is not None:
            self.truncate(newer.floor)
        self.blocks.update(newer.blocks)

    def nbytes(self) -> int:
        return sum(len(b) for b in self.blocks.values())


class CleanCache:
    """Clean blocks, least recently used first out, at most ``limit`` bytes."""

    __slots__ = ("limit", "used", "_blocks")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, idx: int) -> bytes | None:
        data = self._blocks.get(idx)
        if data is not None:
            self._blocks.move_to_end(idx)
        return data

    def put(self, idx: int, data: bytes) -> None:
        self.drop(idx)
        if len(data) > self.limit:
            return
        self._blocks[idx] = data
        self.used += len(data)
        while self.used > self.limit:
            _, evicted = self._blocks.popitem(last=False)
            self.used -= len(evicted)

    def drop(self, idx: int) -> None:
        old = self._blocks.pop(idx, None)
        if old is not None:
            self.used -= len(old)

    def drop_where(self, condition: "object") -> None:
        """Drop every block whose index satisfies ``condition(index)``."""
        for idx in [i for i in self._blocks if condition(i)]:  # type: ignore[operator]
            self.drop(idx)

    def clear(self) -> None:
        self._blocks.clear()
        self.used = 0


def record_versions(records: dict[int, Record], count: int | None = None) -> dict[int, int]:
    """Index -> stored version of ``records`` (those below block ``count``, if given)."""
    return {i: r.version for i, r in records.items() if count is None or i < count}
