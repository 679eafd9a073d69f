"""A backend that keeps the store in the browser's IndexedDB (Pyodide only).

Example::

    db = await datasync.open("app")               # in Pyodide: IndexedDBBackend("app")

One IDB database per datasync database, named ``datasync:<name>``, with three
object stores:

* ``meta``: key ``"meta"`` -> the metadata JSON; key ``"layout"`` -> the layout.
* ``blocks``: key ``[file, index]`` -> ``{v, c, d}`` (version, checksum, bytes), with
  an index ``version`` on ``v``. Every flush writes its blocks here, so a one-row
  commit writes two small records.
* ``segments``: blocks packed by the thousand (:mod:`.segments`).

Retained versions: :mod:`.versions`. A flush is ONE readwrite transaction
(metadata checked and written in it), so it commits whole or not at all. The
common flush (no history, no truncation, no whole segment) is one call into JS
(:func:`.segments.fast_write`): the metadata read is issued first and not waited
for, the puts follow, and the read's handler commits or, on a stale epoch or
version, aborts (IndexedDB rolls the puts back); no Python runs inside it. All I/O
goes through ``js`` proxies and the plumbing of :mod:`.idb`. Capability:
:class:`~datasync.backends.HistoryFromStore` (every coroutine may suspend, so the
block store keeps every block resident).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from ..backends.contract import HistoryFromStore, check_writer
from ..backends.history import write_history
from ..errors import (
    CorruptBlockError,
    DatasyncError,
    InvalidOptionError,
    NotADatasyncStoreError,
    StoreNotFoundError,
)
from ..format import FORMAT_VERSION, Flush, Meta
from .idb import (
    IdbFailure,
    NotCreated,
    Proxies,
    js as idb_js,
    key_range,
    map_error,
    open_database,
    request,
    transaction,
    transaction_done,
)
from .open_lock import OpenLock
from .segments import Segments, fast_write, put_blocks, trim_segment
from .versions import IdbHistory, RetainedVersions

IDB_PREFIX = "datasync:"
IDB_SCHEMA_VERSION = 1
#: Measured (Chromium 156, 20 MiB cold open): 4 KiB records 372-487 ms, 256 KiB
#: records 192-328 ms, 4 MiB records 121-130 ms, one 20 MiB record 106-138 ms.
SEGMENT_BYTES = 4 * 1024 * 1024
#: Each block record adds 0.1-0.2 ms to a cold open: fold them in past this many.
COMPACT_THRESHOLD = 128
#: On close, fold block records in if at least this many remain.
COMPACT_ON_CLOSE = 16
_STORES = ("meta", "blocks", "segments")


class IndexedDBBackend(Segments, RetainedVersions, HistoryFromStore):
    """Blocks and metadata in IndexedDB; see the module docstring for the layout."""

    def __init__(self, name: str, *, segment_bytes: int = SEGMENT_BYTES,
                 compact_threshold: int = COMPACT_THRESHOLD, durability: str = "default",
                 factory: Any = None, sharing: str | None = None) -> None:
        self.name = name
        self.db_name = IDB_PREFIX + name
        self._segment_bytes = segment_bytes
        if durability not in ("default", "relaxed", "strict"):
            raise InvalidOptionError("IndexedDB durability is 'default', 'relaxed' or 'strict'")
        self.compact_threshold = compact_threshold
        self.idb_durability = durability
        self._factory = factory
        if sharing not in (None, "alone", "tabs"):
            raise InvalidOptionError("IndexedDB sharing is None, 'alone' or 'tabs'")
        #: Held while open: "alone" keeps other tabs out, "tabs" admits only
        #: multi-tab opens (see open_lock.py); None (low-level use) takes no lock.
        self._open_lock = None if sharing is None else OpenLock(name, shared=sharing == "tabs")
        self._db: Any = None
        self._seg = 0  # blocks per segment (from the stored layout)
        self._block_size = 0
        self._deltas: dict[int, int] = {}  # segment -> number of block records in it
        self._stored_count = 0  # block count of the stored metadata, as last seen
        self._compaction: asyncio.Task[None] | None = None
        self._history_cleared = False  # retain 0: old history dropped once
        self.counters = {"compactions": 0, "compacted_records": 0}

    @property
    def key(self) -> str:
        return f"indexeddb:{self.name}"

    @property
    def location(self) -> str:
        return f"IndexedDB database {self.db_name!r}"

    def _tx(self, stores: list[str], mode: str) -> Any:
        return transaction(self._db, stores, mode, durability=self.idb_durability,
                           location=self.location)

    def _range(self, file: str, lo: float, hi: float | None = None) -> Any:
        return key_range([file, lo], [file, idb_js().Infinity if hi is None else hi])

    # -- opening ---------------------------------------------------------------
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        if self._open_lock is not None:
            await self._open_lock.acquire()  # StoreBusyError: open in another tab
        try:
            self._db = await open_database(self.db_name, IDB_SCHEMA_VERSION,
                                           upgrade=lambda db, old: _upgrade(db, old, create),
                                           location=self.location, factory=self._factory)
            names = self._db.objectStoreNames
            if not all(names.contains(store) for store in _STORES):
                raise NotADatasyncStoreError(
                    f"IndexedDB database {self.db_name!r} exists but is not a datasync "
                    "store (it lacks the meta, blocks and segments object stores): "
                    "something else made it; choose another database name")
            return await self._load_or_create_meta(initial, create)
        except NotCreated:
            self._let_go()
            raise StoreNotFoundError(f"{self.location} does not exist (create=False)") from None
        except BaseException:
            self._let_go()  # nothing written: just close and unlock
            raise

    async def _load_or_create_meta(self, initial: Meta, create: bool) -> Meta:
        px = Proxies()
        state: dict[str, Any] = {}
        try:
            tx = self._tx(list(_STORES), "readwrite")
            done = transaction_done(tx, px, state)
            store = tx.objectStore("meta")
            meta_req, layout_req = store.get("meta"), store.get("layout")
            # Requests complete in order: the last one's callback sees every result.
            blocks_req = tx.objectStore("blocks").count()
            last_req = tx.objectStore("segments").count()

            def on_layout(event: Any) -> None:
                try:
                    raw_meta = meta_req.result
                    if raw_meta is None and (blocks_req.result or last_req.result):
                        raise CorruptBlockError(
                            f"{self.location} holds blocks but no metadata: it was damaged "
                            "outside datasync. Restore it from a backup; nothing was "
                            "written", file="meta")
                    if raw_meta is None:
                        if not create:
                            raise StoreNotFoundError(
                                f"{self.location} does not exist (create=False)")
                        seg = max(1, self._segment_bytes // initial.block_size)
                        store.put(initial.to_json(), "meta")
                        store.put(json.dumps({"segment_blocks": seg}), "layout")
                        state["meta"], state["seg"] = initial, seg
                    else:
                        layout = json.loads(str(layout_req.result or "{}"))
                        state["meta"] = Meta.from_json(str(raw_meta), where=self.location)
                        state["seg"] = int(layout.get("segment_blocks") or 1)
                except BaseException as exc:
                    state["error"] = exc
                    tx.abort()

            last_req.onsuccess = px(on_layout)
            try:
                await done
            except IdbFailure as exc:
                raise map_error(exc.error, self.location, "opening") from None
        finally:
            px.destroy()
        self._seg = state["seg"]
        self._block_size = state["meta"].block_size
        self._stored_count = state["meta"].block_count
        return state["meta"]  # type: ignore[no-any-return]

    # -- writing ---------------------------------------------------------------
    async def write(self, flush: Flush) -> None:
        if await self._write_fast(flush):
            return
        await self._write_checked(flush)

    async def _write_fast(self, flush: Flush) -> bool:
        """The common flush (no history to keep, nothing to delete, no whole
        segment, no fault hook) in ONE call into JS: it issues the metadata read,
        the block puts and the metadata put at once, and the read's success
        handler, in JS, commits, or aborts the transaction (the puts issued
        before it are rolled back) if the stored metadata is not exactly the one
        this flush was built on: another epoch, another version, grown, or
        unreadable. Returns False, with nothing written, when the checked path
        must decide (it re-reads and raises the right error, or writes)."""
        from pyodide.ffi import to_js

        count = flush.meta.block_count
        if (flush.retain > 0 or not self._history_cleared or self.fault_hook is not None
                or count < self._stored_count or self._whole_segments(flush)):
            return False
        idxs = list(flush.blocks)
        records = [flush.blocks[i] for i in idxs]
        tx = self._tx(list(_STORES), "readwrite")
        outcome = await fast_write()(
            tx, flush.file, to_js(idxs), to_js([r.version for r in records]),
            to_js([r.checksum for r in records]), to_js([r.payload for r in records]),
            flush.meta.to_json(), FORMAT_VERSION, flush.base_version, flush.meta.epoch, count)
        if outcome is not None:
            if str(outcome[0]) == "error":
                raise map_error(outcome[1], self.location, "flushing")
            return False  # refused by the check: the checked path says why
        self._written(flush, idxs, {})
        return True

    async def _write_checked(self, flush: Flush) -> None:
        from pyodide.ffi import to_js

        px = Proxies()
        state: dict[str, Any] = {}
        count = flush.meta.block_count
        whole = self._whole_segments(flush)
        packed = {i for idxs in whole.values() for i in idxs}
        idxs = [i for i in flush.blocks if i not in packed]
        records = [flush.blocks[i] for i in idxs]
        try:
            tx = self._tx(list(_STORES), "readwrite")
            done = transaction_done(tx, px, state)
            meta_store, blocks = tx.objectStore("meta"), tx.objectStore("blocks")
            segments = tx.objectStore("segments")

            def drop_past_end() -> None:
                blocks.delete(self._range(flush.file, count))
                segments.delete(self._range(flush.file, -(-count // self._seg)))
                if count % self._seg:  # and the slots past the end in the segment it ends in
                    trim_segment()(segments, to_js([flush.file, count // self._seg]),
                                   count % self._seg)
                    state["trimming"] = True  # its put comes after on_meta: no commit()

            def on_meta(event: Any) -> None:
                # Requests run in order: this is the metadata before our writes, which
                # are issued already; committing or aborting decides them all.
                try:
                    stored = Meta.from_json(str(meta_req.result), where=self.location)
                    check_writer(stored, flush, self.location)
                    if stored.block_count > count and not shrinking:
                        drop_past_end()  # another backend of this store grew it since
                    state["cleared"] = write_history(IdbHistory(blocks, meta_store), stored,
                                                     flush, cleared=self._history_cleared)
                    for idx in flush.blocks:  # tests inject failures here, mid-transaction
                        self._fault("block", idx)
                    self._fault("meta", flush.meta.version)
                    if not state.get("trimming"):
                        tx.commit()  # nothing more to ask: commit without waiting a turn
                except BaseException as exc:
                    state["error"] = exc
                    tx.abort()

            meta_req = meta_store.get("meta")
            meta_req.onsuccess = px(on_meta)
            shrinking = count < self._stored_count
            try:
                if shrinking:
                    drop_past_end()
                self._put_whole_segments(segments, blocks, flush, whole)
                put_blocks()(blocks, flush.file, to_js(idxs), to_js([r.version for r in records]),
                             to_js([r.checksum for r in records]),
                             to_js([r.payload for r in records]))
                meta_store.put(flush.meta.to_json(), "meta")
            except Exception as exc:  # a put refused at once (quota, clone error)
                state["error"] = exc
                tx.abort()
            try:
                await done
            except IdbFailure as exc:
                raise map_error(exc.error, self.location, "flushing") from None
        finally:
            px.destroy()
        self._history_cleared = state["cleared"]  # (only once the transaction committed)
        self._written(flush, idxs, whole)

    def _written(self, flush: Flush, idxs: list[int], whole: dict[int, list[int]]) -> None:
        """Bookkeeping once a flush committed: ``idxs`` went in as block records,
        the segments of ``whole`` were put packed."""
        count = self._stored_count = flush.meta.block_count
        for seg in list(self._deltas):
            if seg * self._seg >= count:
                del self._deltas[seg]
        for seg in whole:
            self._deltas.pop(seg, None)  # its block records were deleted
        for idx in idxs:
            seg = idx // self._seg
            self._deltas[seg] = self._deltas.get(seg, 0) + 1  # upper bound: may repeat
        self._schedule_compaction()

    # -- lifecycle -------------------------------------------------------------
    async def close(self) -> None:
        try:
            if self._compaction is not None and not self._compaction.done():
                await self._compaction
            if self._db is not None:
                # Leave the next cold open few records to read.
                await self.compact(self._compaction_targets(COMPACT_ON_CLOSE - 1))
        except DatasyncError:
            pass  # block records stay as they are: nothing lost
        finally:
            self._let_go()  # even if cancelled: never keep the lock or the connection

    def _let_go(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._open_lock is not None:
            self._open_lock.release()

    async def destroy(self) -> None:
        await self.close()
        px = Proxies()
        try:
            await request(idb_js().indexedDB.deleteDatabase(self.db_name), px)
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, "deleting") from None
        finally:
            px.destroy()


def _upgrade(db: Any, old_version: int, create: bool) -> None:
    """Schema version 1: the three object stores (a new database only)."""
    if old_version == 0 and not create:
        raise NotCreated()  # create=False: leave nothing behind
    names = db.objectStoreNames
    if not names.contains("meta"):
        db.createObjectStore("meta")
    for store in ("blocks", "segments"):
        if not names.contains(store):
            db.createObjectStore(store).createIndex("version", "v")

