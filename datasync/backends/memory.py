"""A backend that keeps the store in this process's memory (tests, scratch data).

Example::

    db = await datasync.open("scratch", backend="memory")

Stores are kept by name for the life of the process, so closing and reopening
the same name returns the data (as a persistent backend would); ``destroy()``
drops it. A flush builds the new state aside and swaps it in whole: atomic.
Capabilities: :class:`~.contract.SyncReads`, :class:`~.contract.KeepsHistory`
(also from records the store sends, when a flush carries them).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import BackendError, FormatVersionError, StoreNotFoundError, VersionNotRetainedError
from ..format import MAIN, READABLE_FORMATS, Flush, Meta, Record
from .contract import KeepsHistory, SyncReads, check_writer
from .history import Superseded, records_as_of, write_history


@dataclass
class _Stored:
    meta: Meta
    blocks: dict[tuple[str, int], Record] = field(default_factory=dict)
    #: (file, index, version) -> the record and the version that superseded it
    history: dict[tuple[str, int, int], Superseded] = field(default_factory=dict)
    metas: dict[int, Meta] = field(default_factory=dict)  # retained old versions


_STORES: dict[str, _Stored] = {}


class _History:
    """:class:`~.history.HistoryTxn` over a new state being built."""

    def __init__(self, old: _Stored, new: _Stored) -> None:
        self.old, self.new = old, new

    def keep_superseded(self, file: str, indices: Iterable[int], from_index: int,
                        superseded: int) -> None:
        wanted = set(indices)
        for (f, idx), rec in self.old.blocks.items():
            if f == file and (idx in wanted or idx >= from_index):
                self.new.history[(f, idx, rec.version)] = Superseded(idx, superseded, rec)

    def keep_sent(self, file: str, records: dict[int, Record], superseded: int) -> None:
        for idx, rec in records.items():
            self.new.history[(file, idx, rec.version)] = Superseded(idx, superseded, rec)

    def keep_meta(self, meta: Meta) -> None:
        self.new.metas[meta.version] = meta

    def drop_through(self, superseded: int) -> None:
        self.new.history = {k: h for k, h in self.new.history.items()
                            if h.superseded > superseded}
        self.new.metas = {v: m for v, m in self.new.metas.items() if v >= superseded}

    def drop_all(self) -> None:
        self.new.history, self.new.metas = {}, {}


class MemoryBackend(SyncReads, KeepsHistory):
    """Process-local store, atomic by swapping whole dictionaries."""

    def __init__(self, name: str, *, instance: str = "") -> None:
        self.name = name
        self.instance = instance  # simulated tabs: one store view per tab, same data

    @property
    def key(self) -> str:
        return f"memory:{self.name}" + (f"@{self.instance}" if self.instance else "")

    @property
    def location(self) -> str:
        return f"memory store {self.name!r}"

    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        stored = _STORES.get(self.name)
        if stored is None:
            if not create:
                raise StoreNotFoundError(f"{self.location} does not exist (create=False)")
            stored = _STORES[self.name] = _Stored(initial)
        if stored.meta.format_version not in READABLE_FORMATS:
            raise FormatVersionError(
                f"{self.location} uses stored format {stored.meta.format_version}; "
                f"this release reads formats {READABLE_FORMATS}")
        return stored.meta

    def _stored(self) -> _Stored:
        try:
            return _STORES[self.name]
        except KeyError:
            raise BackendError(f"{self.location} was destroyed") from None

    def read_block(self, file: str, index: int) -> Record | None:
        return self._stored().blocks.get((file, index))

    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        return {i: r for (f, i), r in self._stored().blocks.items() if f == file}

    async def write(self, flush: Flush) -> None:
        stored = self._stored()
        check_writer(stored.meta, flush, self.location)
        # Build the new state aside, then swap it in: a failure midway leaves the
        # stored state untouched.
        keep = flush.meta.block_count
        new = _Stored(flush.meta, {k: r for k, r in stored.blocks.items()
                                   if k[0] != flush.file or k[1] < keep},
                      dict(stored.history), dict(stored.metas))
        for index, record in flush.blocks.items():
            self._fault("block", index)
            new.blocks[(flush.file, index)] = record
        new.blocks = {k: r for k, r in new.blocks.items() if k[0] != flush.file or k[1] < keep}
        write_history(_History(stored, new), stored.meta, flush, cleared=False)
        self._fault("meta", flush.meta.version)
        _STORES[self.name] = new

    async def retained(self, file: str = MAIN) -> list[Meta]:
        stored = self._stored()
        return [*sorted(stored.metas.values(), key=lambda m: m.version), stored.meta]

    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        stored = self._stored()
        meta = stored.meta if version == stored.meta.version else stored.metas.get(version)
        if meta is None:
            raise VersionNotRetainedError(
                f"version {version} of {self.location} is not retained")
        current = {i: r for (f, i), r in stored.blocks.items() if f == file}
        history = [h for (f, _, _), h in stored.history.items() if f == file]
        return meta, records_as_of(meta, current, history, where=self.location)

    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        stored = self._stored()
        return stored.meta, {
            i: r for (f, i), r in stored.blocks.items() if f == file and r.version > version}

    async def close(self) -> None:
        pass

    async def destroy(self) -> None:
        _STORES.pop(self.name, None)
