"""A backend that keeps the store in the browser's IndexedDB (Pyodide only).

Example::

    db = await datasync.open("app")               # in Pyodide: IndexedDBBackend("app")

One IDB database per datasync database, named ``datasync:<name>``, with three
object stores:

* ``meta``: key ``"meta"`` -> the metadata JSON; key ``"layout"`` -> the layout.
* ``blocks``: key ``[file, index]`` -> ``{v, c, d}`` (version, checksum, bytes), with
  an index ``version`` on ``v``. Every flush writes its blocks here, so a one-row
  commit writes two small records.
* ``segments``: key ``[file, n]`` -> ``{v, vs, cs, d}``: blocks ``n*S .. n*S+S-1``
  packed in one record (``vs``/``cs``: per-block versions and checksums, version 0 =
  absent), index ``version`` on ``v`` (the newest block in it). A *compaction*
  folds block records into their segment, in its own transaction, so opening a
  database reads a few large records instead of thousands of small ones.

Point-in-time restore (``retain_versions``): the records a flush supersedes (sent
by the block store in ``Flush.history``) go to ``blocks`` under key
``["h:<file>", superseded_version, index]`` as ``{hv, c, d}`` (no ``v``: they stay
out of the ``version`` index and out of every ``[file, ...]`` range), and the
metadata of each retained version to ``meta`` under ``["vmeta", version]``; both
are pruned by key range in the same transaction.

For each block the record with the higher version wins. A flush is ONE readwrite
transaction (metadata checked and written in it), so it commits whole or not at
all. All I/O goes through ``js`` proxies; every callback runs inside the IDB
event that fired it, so the transaction is still active when it issues requests.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ..errors import (
    BackendError,
    CorruptBlockError,
    DatasyncError,
    InvalidOptionError,
    NotADatasyncStoreError,
    StorageBlockedError,
    StorageFullError,
    StorageUnavailableError,
    StoreNotFoundError,
)
from ..format import MAIN, Flush, Meta, Record
from ..backends.contract import HistoryFromStore, check_writer
from ..backends.history import Superseded, records_as_of, write_history
from .open_lock import OpenLock

IDB_PREFIX = "datasync:"
IDB_SCHEMA_VERSION = 1
#: Measured (Chromium 156, 20 MiB cold open): 4 KiB records 372-487 ms, 256 KiB
#: records 192-328 ms, 4 MiB records 121-130 ms, one 20 MiB record 106-138 ms.
SEGMENT_BYTES = 4 * 1024 * 1024
#: Each block record adds 0.1-0.2 ms to a cold open: fold them in past this many.
COMPACT_THRESHOLD = 128
#: On close, fold block records in if at least this many remain.
COMPACT_ON_CLOSE = 16


def _js() -> Any:
    import js  # only in Pyodide

    return js


class _Proxies:
    """Owns the JS proxies of one operation and destroys them together."""

    def __init__(self) -> None:
        from pyodide.ffi import create_proxy

        self._create = create_proxy
        self._made: list[Any] = []

    def __call__(self, fn: Callable[..., Any]) -> Any:
        proxy = self._create(fn)
        self._made.append(proxy)
        return proxy

    def destroy(self) -> None:
        for proxy in self._made:
            proxy.destroy()
        self._made.clear()


def _error_name(err: Any) -> str:
    return str(getattr(err, "name", "") or type(err).__name__)


def _map_error(err: Any, location: str, doing: str) -> DatasyncError:
    """IDB/DOM errors -> datasync errors (the error boundary of this backend)."""
    if isinstance(err, DatasyncError):
        return err
    name = _error_name(err)
    message = str(getattr(err, "message", "") or err)
    if name == "QuotaExceededError" or "QuotaExceeded" in message:
        then = (
            "the changes stay in memory and the next flush retries once space is freed"
            if doing == "flushing" else "nothing was changed"
        )
        return StorageFullError(
            f"{location}: the browser's storage quota is exhausted while {doing}; "
            f"{then} (free space, or ask for persistent storage)"
        )
    if name in ("InvalidStateError", "UnknownError") and "closed" in message.lower():
        return StorageUnavailableError(f"{location} was closed while {doing}: {message}")
    return BackendError(f"{location}: IndexedDB failed while {doing}: {name}: {message}")


class IndexedDBBackend(HistoryFromStore):
    """Blocks and metadata in IndexedDB; see the module docstring for the layout."""

    def __init__(
        self,
        name: str,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        compact_threshold: int = COMPACT_THRESHOLD,
        durability: str = "default",
        factory: Any = None,
        sharing: str | None = None,
    ) -> None:
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

    # -- small async helpers over IDB requests and transactions --------------------
    @staticmethod
    def _request(req: Any, px: _Proxies) -> "asyncio.Future[Any]":
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def ok(event: Any) -> None:
            if not fut.done():
                fut.set_result(req.result)

        def bad(event: Any) -> None:
            event.preventDefault()  # handled here: do not abort the whole page
            if not fut.done():
                fut.set_exception(_IdbFailure(req.error))

        req.onsuccess = px(ok)
        req.onerror = px(bad)
        return fut

    @staticmethod
    def _transaction_done(tx: Any, px: _Proxies, state: dict[str, Any]) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def complete(event: Any) -> None:
            if not fut.done():
                fut.set_result(None)

        def failed(event: Any) -> None:
            if not fut.done():
                fut.set_exception(_IdbFailure(state.get("error") or tx.error))

        tx.oncomplete = px(complete)
        tx.onabort = px(failed)
        tx.onerror = px(lambda event: None)  # the abort event follows and reports it
        return fut

    def _transaction(self, stores: list[str], mode: str) -> Any:
        from pyodide.ffi import to_js

        if self._db is None:
            raise StorageUnavailableError(
                f"{self.location} is not open (closed, or deleted by another tab)"
            )
        names = to_js(stores)
        if mode == "readwrite" and self.idb_durability != "default":
            opts = to_js({"durability": self.idb_durability}, dict_converter=_js().Object.fromEntries)
            return self._db.transaction(names, mode, opts)
        return self._db.transaction(names, mode)

    def _range(self, file: str, lo: float, hi: float | None = None) -> Any:
        from pyodide.ffi import to_js

        js = _js()
        upper = js.Infinity if hi is None else hi
        return js.IDBKeyRange.bound(to_js([file, lo]), to_js([file, upper]))

    # -- opening ---------------------------------------------------------------
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        js = _js()
        factory = self._factory or getattr(js, "indexedDB", None)
        if factory is None:
            raise StorageUnavailableError(
                "IndexedDB is not available in this context (a sandboxed frame, a "
                "browser setting, or a non-browser runtime); datasync cannot persist here"
            )
        if self._open_lock is not None:
            await self._open_lock.acquire()  # StoreBusyError: open in another tab
        try:
            return await self._open_idb(factory, initial, create)
        except BaseException:
            self._let_go()  # nothing written: just close and unlock
            raise

    async def _open_idb(self, factory: Any, initial: Meta, create: bool) -> Meta:
        js = _js()
        px = _Proxies()
        try:
            try:
                req = factory.open(self.db_name, IDB_SCHEMA_VERSION)
            except Exception as exc:  # SecurityError in opaque origins, etc.
                raise StorageUnavailableError(
                    f"IndexedDB refused to open {self.db_name!r}: {exc}"
                ) from exc
            blocked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            missing: dict[str, bool] = {}

            def upgrade(event: Any) -> None:
                db = req.result
                if event.oldVersion == 0 and not create:
                    missing["store"] = True  # create=False: leave nothing behind
                    req.transaction.abort()
                    return
                names = db.objectStoreNames
                if not names.contains("meta"):
                    db.createObjectStore("meta")
                for store in ("blocks", "segments"):
                    if not names.contains(store):
                        s = db.createObjectStore(store)
                        s.createIndex("version", "v")

            def on_blocked(event: Any) -> None:
                if not blocked.done():
                    blocked.set_result(None)

            req.onupgradeneeded = px(upgrade)
            req.onblocked = px(on_blocked)
            opened = self._request(req, px)
            done, _ = await asyncio.wait([opened, blocked], return_when=asyncio.FIRST_COMPLETED)
            if blocked in done and not opened.done():
                # We give up: should the request still go through later, undo it
                # (abort an upgrade, close a connection) rather than hold the
                # database open with nobody using it.
                req.onupgradeneeded = js.Function.new("e", "e.target.transaction.abort()")
                req.onsuccess = js.Function.new("e", "e.target.result.close()")
                req.onerror = js.Function.new("e", "e.preventDefault()")
                raise StorageBlockedError(
                    f"{self.location} is held open with an older schema by another tab; "
                    "close or reload the other tabs of this app, then try again"
                )
            try:
                self._db = opened.result()
            except _IdbFailure as exc:
                if missing:
                    raise StoreNotFoundError(
                        f"{self.location} does not exist (create=False)") from None
                if _error_name(exc.error) == "VersionError":
                    raise NotADatasyncStoreError(
                        f"IndexedDB database {self.db_name!r} has a newer schema than "
                        "this datasync reads: it was made by a newer datasync or by "
                        "something else; open it with that, or choose another name"
                    ) from None
                raise StorageUnavailableError(
                    f"IndexedDB could not open {self.db_name!r}: {_error_name(exc.error)}: "
                    f"{getattr(exc.error, 'message', exc.error)}"
                ) from None
        finally:
            px.destroy()
        names = self._db.objectStoreNames
        if not all(names.contains(store) for store in ("meta", "blocks", "segments")):
            self._db.close()
            self._db = None
            raise NotADatasyncStoreError(
                f"IndexedDB database {self.db_name!r} exists but is not a datasync store "
                "(it lacks the meta, blocks and segments object stores): something else "
                "made it; choose another database name")
        self._on_version_change = _make_proxy(self._close_for_version_change)
        self._db.onversionchange = self._on_version_change
        return await self._load_or_create_meta(initial, create)

    def _close_for_version_change(self, event: Any) -> None:
        """Another tab upgrades or deletes the database: let it, and stop using it."""
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _load_or_create_meta(self, initial: Meta, create: bool) -> Meta:
        px = _Proxies()
        state: dict[str, Any] = {}
        try:
            tx = self._transaction(["meta", "blocks", "segments"], "readwrite")
            done = self._transaction_done(tx, px, state)
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
                        meta = Meta.from_json(str(raw_meta), where=self.location)
                        layout = json.loads(str(layout_req.result or "{}"))
                        state["meta"] = meta
                        state["seg"] = int(layout.get("segment_blocks") or 1)
                except BaseException as exc:
                    state["error"] = exc
                    tx.abort()

            last_req.onsuccess = px(on_layout)
            try:
                await done
            except _IdbFailure as exc:
                raise _map_error(exc.error, self.location, "opening") from None
        finally:
            px.destroy()
        self._seg = state["seg"]
        self._block_size = state["meta"].block_size
        self._stored_count = state["meta"].block_count
        return state["meta"]  # type: ignore[no-any-return]

    # -- reading ---------------------------------------------------------------
    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        _, records, delta_indices = await self._read(file, None)
        self._deltas = {}
        for idx in delta_indices:
            seg = idx // self._seg
            self._deltas[seg] = self._deltas.get(seg, 0) + 1
        return records

    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        meta, records, _ = await self._read(file, version)
        return meta, records

    async def _read(
        self, file: str, since: int | None
    ) -> tuple[Meta, dict[int, Record], list[int]]:
        """Metadata plus the winning record of every block (of those written after
        ``since``, if given), and the indices that have block records."""
        js = _js()
        px = _Proxies()
        try:
            tx = self._transaction(["meta", "blocks", "segments"], "readonly")
            segs, blocks = tx.objectStore("segments"), tx.objectStore("blocks")
            if since is None:
                query = self._range(file, 0)
            else:
                query = js.IDBKeyRange.lowerBound(since, True)
                segs, blocks = segs.index("version"), blocks.index("version")
            reqs = (
                tx.objectStore("meta").get("meta"),
                segs.getAllKeys(query),
                segs.getAll(query),
                blocks.getAllKeys(query),
                blocks.getAll(query),
            )
            results = await asyncio.gather(*(self._request(r, px) for r in reqs))
        except _IdbFailure as exc:
            raise _map_error(exc.error, self.location, "reading") from None
        finally:
            px.destroy()
        raw_meta, seg_keys, seg_vals, block_keys, block_vals = results
        meta = Meta.from_json(str(raw_meta), where=self.location)
        self._stored_count = meta.block_count
        floor = -1 if since is None else since
        records: dict[int, Record] = {}
        seg_size = self._seg
        for key, seg in zip(seg_keys, seg_vals):
            if key[0] != file:
                continue
            base = int(key[1]) * seg_size
            checksums = seg.cs.to_py()
            data = seg.d.to_bytes()
            # Record length: the block size, plus the nonce and tag when encrypted.
            bs = len(data) // seg_size
            for slot, v in enumerate(seg.vs.to_py()):
                if v > floor:
                    records[base + slot] = Record(
                        int(v), int(checksums[slot]), data[slot * bs : (slot + 1) * bs]
                    )
        delta_indices = []
        for key, rec in zip(block_keys, block_vals):
            if key[0] != file:
                continue
            idx, v = int(key[1]), int(rec.v)
            delta_indices.append(idx)
            have = records.get(idx)
            if v > floor and (have is None or have.version < v):
                records[idx] = Record(v, int(rec.c), rec.d.to_bytes())
        return meta, records, delta_indices

    # -- writing ---------------------------------------------------------------
    async def write(self, flush: Flush) -> None:
        from pyodide.ffi import to_js

        px = _Proxies()
        state: dict[str, Any] = {}
        count = flush.meta.block_count
        idxs = list(flush.blocks)
        records = [flush.blocks[i] for i in idxs]
        try:
            tx = self._transaction(["meta", "blocks", "segments"], "readwrite")
            done = self._transaction_done(tx, px, state)
            meta_store = tx.objectStore("meta")
            blocks = tx.objectStore("blocks")
            segments = tx.objectStore("segments")

            def drop_past_end() -> None:
                blocks.delete(self._range(flush.file, count))
                segments.delete(self._range(flush.file, -(-count // self._seg)))

            def on_meta(event: Any) -> None:
                # Requests run in order: this is the metadata before our writes, which
                # are issued already; committing or aborting decides them all.
                try:
                    stored = Meta.from_json(str(meta_req.result), where=self.location)
                    check_writer(stored, flush, self.location)
                    if stored.block_count > count and not shrinking:
                        drop_past_end()
                    state["cleared"] = write_history(
                        _History(blocks, meta_store), stored, flush,
                        cleared=self._history_cleared)
                    for idx in idxs:  # tests inject failures here, mid-transaction
                        self._fault("block", idx)
                    self._fault("meta", flush.meta.version)
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
                _put_blocks()(blocks, flush.file, to_js(idxs),
                              to_js([r.version for r in records]),
                              to_js([r.checksum for r in records]),
                              to_js([r.payload for r in records]))
                meta_store.put(flush.meta.to_json(), "meta")
            except Exception as exc:  # a put refused at once (quota, clone error)
                state["error"] = exc
                tx.abort()
            try:
                await done
            except _IdbFailure as exc:
                raise _map_error(exc.error, self.location, "flushing") from None
        finally:
            px.destroy()
        self._stored_count = count
        self._history_cleared = state["cleared"]  # (only once the transaction committed)
        for seg in list(self._deltas):
            if seg * self._seg >= count:
                del self._deltas[seg]
        for idx in flush.blocks:
            seg = idx // self._seg
            self._deltas[seg] = self._deltas.get(seg, 0) + 1  # upper bound: may repeat
        self._schedule_compaction()

    async def retained(self, file: str = MAIN) -> list[Meta]:
        from pyodide.ffi import to_js

        js = _js()
        px = _Proxies()
        try:
            tx = self._transaction(["meta"], "readonly")
            store = tx.objectStore("meta")
            old_req = store.getAll(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                        to_js(["vmeta", js.Infinity])))
            cur_req = store.get("meta")
            olds, current = await asyncio.gather(self._request(old_req, px),
                                                 self._request(cur_req, px))
        except _IdbFailure as exc:
            raise _map_error(exc.error, self.location, "listing versions") from None
        finally:
            px.destroy()
        metas = [Meta.from_json(str(m), where=self.location) for m in olds]
        return [*sorted(metas, key=lambda m: m.version),
                Meta.from_json(str(current), where=self.location)]

    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """Current records first, then the history: a flush in between only adds
        history the second read sees (or prunes ``version``: then an error)."""
        from pyodide.ffi import to_js

        from ..errors import VersionNotRetainedError

        current_meta, current, _ = await self._read(file, None)
        js = _js()
        px = _Proxies()
        try:
            tx = self._transaction(["meta", "blocks"], "readonly")
            hrange = js.IDBKeyRange.bound(to_js(["h:" + file, version + 1]),
                                          to_js(["h:" + file, js.Infinity]))
            blocks = tx.objectStore("blocks")
            reqs = (tx.objectStore("meta").get(to_js(["vmeta", version])),
                    blocks.getAllKeys(hrange), blocks.getAll(hrange))
            raw_meta, keys, vals = await asyncio.gather(*(self._request(r, px) for r in reqs))
        except _IdbFailure as exc:
            raise _map_error(exc.error, self.location, "reading old versions") from None
        finally:
            px.destroy()
        if version == current_meta.version:
            meta = current_meta
        elif raw_meta is None:
            raise VersionNotRetainedError(f"version {version} of {self.location} is not retained")
        else:
            meta = Meta.from_json(str(raw_meta), where=self.location)
        history = [Superseded(int(k[2]), int(k[1]), Record(int(v.hv), int(v.c), v.d.to_bytes()))
                   for k, v in zip(keys, vals)]
        return meta, records_as_of(meta, current, history, where=self.location)

    # -- compaction --------------------------------------------------------------
    def _schedule_compaction(self) -> None:
        if self._compaction is not None and not self._compaction.done():
            return
        if not self._compaction_targets():
            return
        self._compaction = asyncio.ensure_future(self.compact())

    def _compaction_targets(self, threshold: int | None = None) -> list[int]:
        """Segments to fold, most block records first, once there are more than
        ``threshold`` records in all; folds until at most half of it remain."""
        limit = self.compact_threshold if threshold is None else threshold
        total = sum(self._deltas.values())
        if total <= limit:
            return []
        targets = []
        for seg in sorted(self._deltas, key=self._deltas.__getitem__, reverse=True):
            if total <= limit // 2:
                break
            targets.append(seg)
            total -= self._deltas[seg]
        return targets

    async def compact(self, segments: list[int] | None = None, file: str = MAIN) -> int:
        """Fold block records into their segments (one transaction); returns how
        many block records were folded. The stored content does not change."""
        from pyodide.ffi import to_js

        js = _js()
        targets = self._compaction_targets() if segments is None else segments
        if not targets:
            return 0
        px = _Proxies()
        state: dict[str, Any] = {"folded": 0}
        seg_size = self._seg
        try:
            tx = self._transaction(["blocks", "segments"], "readwrite")
            done = self._transaction_done(tx, px, state)
            blocks, segs = tx.objectStore("blocks"), tx.objectStore("segments")

            def fold(seg: int) -> None:
                lo, hi = seg * seg_size, seg * seg_size + seg_size - 1
                seg_req = segs.get(to_js([file, seg]))
                rng = self._range(file, lo, hi)
                keys_req, vals_req = blocks.getAllKeys(rng), blocks.getAll(rng)

                def merge(event: Any) -> None:
                    try:
                        old = seg_req.result
                        found = list(zip(keys_req.result, vals_req.result))
                        if not found:
                            return  # nothing to fold into this segment
                        # Records are block_size long, + 28 bytes when encrypted.
                        bs = int(found[0][1].d.byteLength)
                        if old is None or int(old.d.byteLength) != seg_size * bs:
                            # New, or packed before a rekey changed the record
                            # length: that rekey rewrote every live block, and all
                            # of them are block records here, so start afresh.
                            versions, checks = [0] * seg_size, [0] * seg_size
                            data = bytearray(seg_size * bs)
                        else:
                            versions, checks = old.vs.to_py(), old.cs.to_py()
                            data = bytearray(old.d.to_bytes())
                        for key, rec in found:
                            slot, v = int(key[1]) - lo, int(rec.v)
                            if v > versions[slot]:
                                versions[slot], checks[slot] = v, int(rec.c)
                                data[slot * bs : (slot + 1) * bs] = rec.d.to_bytes()
                            state["folded"] += 1
                        value = js.Object.new()
                        value.v = max(versions)
                        value.vs, value.cs = to_js(versions), to_js(checks)
                        value.d = to_js(bytes(data))
                        segs.put(value, to_js([file, seg]))
                        blocks.delete(rng)
                    except BaseException as exc:
                        state["error"] = exc
                        tx.abort()

                vals_req.onsuccess = px(merge)

            for seg in targets:
                fold(seg)
            try:
                await done
            except _IdbFailure as exc:
                raise _map_error(exc.error, self.location, "compacting") from None
        finally:
            px.destroy()
        for seg in targets:
            self._deltas.pop(seg, None)
        self.counters["compactions"] += 1
        self.counters["compacted_records"] += state["folded"]
        return int(state["folded"])

    async def scrub(self) -> None:
        """Fold every block record into its segment: no segment packed under an old
        key remains. (What IndexedDB's own files keep of deleted values is the
        browser's to reclaim.)"""
        await self.compact_all()

    async def compact_all(self) -> int:
        """Fold every block record into its segment. After a rekey this replaces
        the segments packed under the old key (or in plaintext), which would
        otherwise stay in IndexedDB until a later compaction reached them."""
        if self._compaction is not None and not self._compaction.done():
            await self._compaction
        return await self.compact(sorted(self._deltas))

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
        px = _Proxies()
        try:
            req = _js().indexedDB.deleteDatabase(self.db_name)
            await self._request(req, px)
        except _IdbFailure as exc:
            raise _map_error(exc.error, self.location, "deleting") from None
        finally:
            px.destroy()


_PUT_BLOCKS: Any = None


def _put_blocks() -> Any:
    """A JS function putting block records in one call (one proxy call, not four
    per record): ``(store, file, idx[], v[], c[], d[])``."""
    global _PUT_BLOCKS
    if _PUT_BLOCKS is None:
        _PUT_BLOCKS = _js().Function.new(
            "store", "file", "idx", "v", "c", "d",
            "for (let i = 0; i < idx.length; i++) store.put({v: v[i], c: c[i], d: d[i]}, [file, idx[i]]);",
        )
    return _PUT_BLOCKS


_PUT_HISTORY: Any = None


def _put_history() -> Any:
    """A JS function putting superseded records in one call:
    ``(store, hfile, superseded, idx[], v[], c[], d[])``."""
    global _PUT_HISTORY
    if _PUT_HISTORY is None:
        _PUT_HISTORY = _js().Function.new(
            "store", "hfile", "s", "idx", "v", "c", "d",
            "for (let i = 0; i < idx.length; i++) store.put({hv: v[i], c: c[i], d: d[i]}, [hfile, s, idx[i]]);",
        )
    return _PUT_HISTORY


class _IdbFailure(Exception):
    """Carries a DOM error (or a Python one raised inside an IDB callback)."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


def _make_proxy(fn: Callable[..., Any]) -> Any:
    from pyodide.ffi import create_proxy

    return create_proxy(fn)


class _History:
    """:class:`~.history.HistoryTxn` inside a flush's transaction: kept records in
    ``blocks`` under ``["h:<file>", superseded, index]`` (no ``v``: outside the
    version index and the ``[file, ...]`` ranges), old metadata in ``meta`` under
    ``["vmeta", version]``; drops are key-range deletes."""

    def __init__(self, blocks: Any, meta_store: Any) -> None:
        self.blocks, self.meta_store = blocks, meta_store

    def keep_superseded(self, file: str, indices: Any, from_index: int,
                        superseded: int) -> None:
        raise BackendError("IndexedDB keeps only the history the block store sends")

    def keep_sent(self, file: str, records: dict[int, Record], superseded: int) -> None:
        from pyodide.ffi import to_js

        if records:
            idxs = list(records)
            recs = [records[i] for i in idxs]
            _put_history()(self.blocks, "h:" + file, superseded, to_js(idxs),
                           to_js([r.version for r in recs]), to_js([r.checksum for r in recs]),
                           to_js([r.payload for r in recs]))

    def keep_meta(self, meta: Meta) -> None:
        from pyodide.ffi import to_js

        self.meta_store.put(meta.to_json(), to_js(["vmeta", meta.version]))

    def drop_through(self, superseded: int) -> None:
        from pyodide.ffi import to_js

        js = _js()
        if superseded > 0:
            self.blocks.delete(js.IDBKeyRange.bound(to_js([f"h:{MAIN}", 0]),
                                                    to_js([f"h:{MAIN}", superseded, js.Infinity])))
            self.meta_store.delete(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                        to_js(["vmeta", superseded]), False, True))

    def drop_all(self) -> None:
        from pyodide.ffi import to_js

        js = _js()
        self.blocks.delete(js.IDBKeyRange.bound(to_js([f"h:{MAIN}", 0]),
                                                to_js([f"h:{MAIN}", js.Infinity])))
        self.meta_store.delete(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                    to_js(["vmeta", js.Infinity])))
