"""The backend protocol: where blocks and metadata are kept.

Example::

    backend = MemoryBackend("scratch")
    meta = await backend.open(Meta.new(4096))     # creates it if it is new
    await backend.write(Flush(meta.version, meta.next(4096), {0: record}))
    assert backend.read_block("main", 0) == record

A backend stores the metadata and the block records of one datasync database.
Its I/O methods are coroutines so that asynchronous stores (IndexedDB) fit the
same protocol; a backend with ``sync_io = True`` never suspends inside them, so
they can also be driven synchronously (see :func:`run_now`), and it supports
:meth:`Backend.read_block` for reads on demand.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import BackendError, DeposedLeaderError, InvalidOptionError
from ..format import MAIN, Flush, Meta, Record

T = TypeVar("T")

#: A fault hook called as ``hook(stage, detail)`` while a backend writes a flush;
#: tests use it to make a flush fail midway. ``stage`` is "block" (detail: index)
#: or "meta" (detail: new version).
FaultHook = Callable[[str, int], None]


class Backend(abc.ABC):
    """Storage of one datasync database. Subclasses document where it lives."""

    #: True when the I/O coroutines never suspend and :meth:`read_block` works.
    sync_io: bool = False
    #: Set by tests to inject failures inside :meth:`write`.
    fault_hook: FaultHook | None = None

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Human-readable description of where the store lives (for messages)."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """The name the VFS serves this store under (unique in the process)."""

    @abc.abstractmethod
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        """Open the store and return its metadata.

        If the store does not exist yet and ``create`` is true, create it with
        ``initial`` as its metadata (version 0, no blocks). Raises
        ``FormatVersionError`` for a store of another format and
        ``NotADatasyncStoreError`` for something that is not a store; in both cases
        nothing is written.
        """

    def read_block(self, file: str, index: int) -> Record | None:
        """Return the stored record of one block, or None if it has none.
        Only for backends with ``sync_io``."""
        raise NotImplementedError(f"{type(self).__name__} cannot read synchronously")

    @abc.abstractmethod
    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        """Return every stored record of ``file``, by block index."""

    async def read_versions(self, file: str = MAIN) -> dict[int, int]:
        """The stored version of every block of ``file`` (an encrypted store checks
        its version map with it). Backends may answer without reading payloads."""
        return {i: r.version for i, r in (await self.read_all(file)).items()}

    @abc.abstractmethod
    async def write(self, flush: Flush) -> None:
        """Apply ``flush`` in ONE atomic transaction: delete the records at index
        ``>= flush.meta.block_count``, store ``flush.blocks`` and the new metadata.
        Either all of it is stored or none.

        Raises ``BackendError`` if the stored version is not ``flush.base_version``
        (another writer moved it), ``StorageFullError`` when out of space.
        """

    @abc.abstractmethod
    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """Return the current metadata and the records written after ``version``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store; the backend is unusable afterwards."""

    async def destroy(self) -> None:
        """Delete the store and everything in it (closing it first)."""
        raise NotImplementedError

    async def scrub(self) -> None:
        """Leave in the underlying storage no bytes that no live record uses (called
        after a rekey, so nothing stays readable without the new key: freed pages,
        log files, records packed under the old key). Default: nothing to do."""

    #: True when the backend keeps superseded records for point-in-time restore.
    keeps_history: bool = False
    #: True when it keeps the records the store sends in ``Flush.history`` (rather
    #: than reading what it replaces itself, inside its transaction).
    history_from_store: bool = False

    async def retained(self, file: str = MAIN) -> list[Meta]:
        """The metadata of every version that can be restored, oldest first (the
        current one last). Only for backends with ``keeps_history``."""
        raise self._no_history()

    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """The metadata and every block record of ``version`` (one it retained)."""
        raise self._no_history()

    def _no_history(self) -> InvalidOptionError:
        return InvalidOptionError(
            f"{type(self).__name__} does not keep old versions (retain_versions), so "
            "point-in-time restore is not available on it")

    def _check_base_version(self, stored: Meta, flush: Flush) -> None:
        """Refuse a flush from a deposed leader (lower epoch) or built on a version
        that is no longer the stored one."""
        if stored.epoch > flush.meta.epoch:
            raise DeposedLeaderError(
                f"{self.location} belongs to leadership epoch {stored.epoch}; this "
                f"writer's epoch {flush.meta.epoch} was deposed, so its flush is refused"
            )
        stored_version = stored.version
        if stored_version != flush.base_version:
            raise BackendError(
                f"{self.location} is at version {stored_version}, not "
                f"{flush.base_version}: another writer flushed first"
            )

    def _fault(self, stage: str, detail: int) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage, detail)


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending, and return its result.

    Example: ``meta = run_now(backend.open(Meta.new()))`` for a ``sync_io`` backend.
    Raises RuntimeError if the coroutine tries to wait for something.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError(
        "this backend needs to wait for I/O here; use the async API (await) instead"
    )
