"""The backend contract: what a store's storage must do, method by method.

Example::

    backend = MemoryBackend("scratch")
    meta = await backend.open(Meta.new(4096))             # created if missing
    await backend.write(Flush(meta.version, meta.next(4096), {0: record}))
    meta, records = await backend.changed_since(MAIN, EVERYTHING)

A backend stores the metadata and the block records of one datasync database.
:class:`Backend` is the core every backend implements (its I/O methods are
coroutines, so IndexedDB fits); optional *capabilities* are classes a backend also
derives from, and the layers above test for them with ``isinstance``:

* :class:`SyncReads`: its coroutines never suspend (they can be driven by
  :func:`run_now`) and it reads one block on demand (:meth:`SyncReads.read_block`);
  the block store then keeps only an LRU cache of clean blocks.
* :class:`KeepsHistory`: it keeps what flushes supersede, for point-in-time
  restore (``retain_versions``); the window rule is :mod:`.history`'s, once.
* :class:`HistoryFromStore`: a :class:`KeepsHistory` that cannot read what a
  flush replaces inside its transaction: the block store sends it
  (``Flush.history``).

Conformance: ``tests/backends/test_contract.py`` runs one suite over every
backend (memory, sqlitefile natively; IndexedDB in Chromium through Pyodide). A new
backend is done when it passes.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import AsyncOnlyError, DeposedLeaderError, InvalidOptionError, VersionConflictError
from ..format import MAIN, Flush, Meta, Record

T = TypeVar("T")

#: ``changed_since(file, EVERYTHING)``: every stored record, whatever its version.
EVERYTHING = -1

#: A fault hook called as ``hook(stage, detail)`` while a backend writes a flush;
#: tests use it to make a flush fail midway. ``stage`` is "block" (detail: index)
#: or "meta" (detail: new version). Raising from it must leave nothing written.
FaultHook = Callable[[str, int], None]


class Backend(abc.ABC):
    """Storage of one datasync database: the core every backend implements."""

    #: Set by tests to inject failures inside :meth:`write`.
    fault_hook: FaultHook | None = None

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store lives, for messages (``store '/data/app.dsdb'``)."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """The name the VFS serves this store under: unique in the process, equal
        for two backends of the same store (a real path, say)."""

    @abc.abstractmethod
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        """Open the store and return its metadata.

        A store that does not exist is created with ``initial`` as its metadata
        (version 0, no blocks) when ``create`` is true. Raises, with nothing written:
        ``StoreNotFoundError`` (missing, ``create=False``), ``FormatVersionError`` (a
        store of another stored format), ``NotADatasyncStoreError`` (something else
        lives there), ``CorruptBlockError`` (damaged metadata), ``StoreBusyError``
        (held by another writer), ``StorageUnavailableError``.
        """

    @abc.abstractmethod
    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        """Every stored record of ``file`` (for each block, the one with the highest
        version), by block index; records past the metadata's file size may be
        included and are ignored by the caller."""

    async def read_versions(self, file: str = MAIN) -> dict[int, int]:
        """The stored version of every block of ``file``; may answer without reading
        payloads (an encrypted store checks its version map with it)."""
        return {i: r.version for i, r in (await self.read_all(file)).items()}

    @abc.abstractmethod
    async def write(self, flush: Flush) -> None:
        """Apply ``flush`` in ONE atomic transaction, all of it or none:

        1. refuse a stale writer (:func:`check_writer`): ``DeposedLeaderError`` if
           the stored epoch is higher than ``flush.meta.epoch``;
           ``VersionConflictError`` (a ``BackendError``) if the stored version is
           not ``flush.base_version``;
        2. delete the records at index ``>= flush.meta.block_count``;
        3. store ``flush.blocks`` and the new metadata;
        4. a :class:`KeepsHistory` backend applies :func:`.history.write_history`.

        Raises ``StorageFullError`` when out of space and ``BackendError`` for other
        failures; after any error nothing of the flush is stored.
        """

    @abc.abstractmethod
    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """The current metadata and every record written after ``version``, read in
        one consistent snapshot; ``EVERYTHING`` (-1) returns every record."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store; the backend is unusable afterwards. Never raises for
        work it could not finish: nothing stored is at risk."""

    async def destroy(self) -> None:
        """Delete the store and everything in it (closing it first)."""
        raise NotImplementedError(f"{type(self).__name__} cannot destroy its stores")

    async def scrub(self) -> None:
        """Leave in the underlying storage no bytes that no live record uses (called
        after a rekey, so nothing stays readable without the new key: freed pages,
        log files, records packed under the old key). Default: nothing to do.
        Raises ``BackendError`` if it cannot."""

    def _fault(self, stage: str, detail: int) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage, detail)


class SyncReads(Backend):
    """Capability: every coroutine of this backend completes without suspending,
    and it reads one block on demand."""

    @abc.abstractmethod
    def read_block(self, file: str, index: int) -> Record | None:
        """The stored record of block ``index``, or None if it has none."""


class KeepsHistory(Backend):
    """Capability: keeps what flushes supersede (``Flush.retain`` > 0), so the last
    ``retain`` versions stay readable (see :mod:`.history`)."""

    @abc.abstractmethod
    async def retained(self, file: str = MAIN) -> list[Meta]:
        """The metadata of every version that can be read, oldest first (the
        current one last)."""

    @abc.abstractmethod
    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """The metadata and every block record of ``version`` (one it retained);
        ``VersionNotRetainedError`` otherwise, ``CorruptBlockError`` if a record is
        missing."""


class HistoryFromStore(KeepsHistory):
    """Capability: keeps history, but cannot read inside its write transaction what
    a flush replaces: the block store sends those records (``Flush.history``)."""


def check_writer(stored: Meta, flush: Flush, location: str) -> None:
    """The stale-writer rule, inside a backend's write transaction: refuse a flush
    from a deposed leader (a lower epoch) or built on a version that is no longer
    the stored one."""
    if stored.epoch > flush.meta.epoch:
        raise DeposedLeaderError(
            f"{location} belongs to leadership epoch {stored.epoch}; this writer's epoch "
            f"{flush.meta.epoch} was deposed, so its flush is refused")
    if stored.version != flush.base_version:
        raise VersionConflictError(
            f"{location} is at version {stored.version}, not {flush.base_version}: "
            "another writer flushed first")


def no_history(backend: Backend) -> InvalidOptionError:
    """The error for ``retain_versions`` on a backend that keeps no history."""
    return InvalidOptionError(
        f"{type(backend).__name__} does not keep old versions (retain_versions), so "
        "point-in-time restore is not available on it")


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending, and return its result.

    Example: ``meta = run_now(backend.open(Meta.new()))`` for a :class:`SyncReads`
    backend. Raises :class:`~datasync.AsyncOnlyError` if it tries to wait."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AsyncOnlyError(
        "this backend needs to wait for I/O here; use the async API (await) instead")
