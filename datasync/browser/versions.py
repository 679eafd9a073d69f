"""Retained versions in IndexedDB (point-in-time restore): written and read.

Example (Pyodide)::

    metas = await backend.retained()                 # oldest first, current last
    meta, records = await backend.read_as_of(MAIN, metas[0].version)

The retention rule is :mod:`datasync.backends.history`'s; IndexedDB cannot read
what a flush replaces inside its transaction (a record may sit in a block record or
inside a segment), so the block store sends those records (``Flush.history``).
They go to ``blocks`` under ``["h:<file>", superseded_version, index]`` as
``{hv, c, d}`` (no ``v``: outside the ``version`` index and the ``[file, ...]``
ranges), the metadata of each retained version to ``meta`` under
``["vmeta", version]``; pruning is two key-range deletes in the flush's transaction.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..backends.history import Superseded, records_as_of
from ..errors import BackendError, VersionNotRetainedError
from ..format import MAIN, Meta, Record
from .idb import IdbFailure, Proxies, js as idb_js, map_error, request


class RetainedVersions:
    """Reading the versions an IndexedDB store retains (a mixin of the backend)."""

    async def retained(self, file: str = MAIN) -> list[Meta]:
        from pyodide.ffi import to_js

        js = idb_js()
        px = Proxies()
        try:
            tx = self._tx(["meta"], "readonly")
            store = tx.objectStore("meta")
            old_req = store.getAll(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                        to_js(["vmeta", js.Infinity])))
            cur_req = store.get("meta")
            olds, current = await asyncio.gather(request(old_req, px),
                                                 request(cur_req, px))
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, "listing versions") from None
        finally:
            px.destroy()
        metas = [Meta.from_json(str(m), where=self.location) for m in olds]
        return [*sorted(metas, key=lambda m: m.version),
                Meta.from_json(str(current), where=self.location)]

    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        """Current records first, then the history: a flush in between only adds
        history the second read sees (or prunes ``version``: then an error)."""
        from pyodide.ffi import to_js

        current_meta, current, _ = await self._read(file, None)
        js = idb_js()
        px = Proxies()
        try:
            tx = self._tx(["meta", "blocks"], "readonly")
            hrange = js.IDBKeyRange.bound(to_js(["h:" + file, version + 1]),
                                          to_js(["h:" + file, js.Infinity]))
            blocks = tx.objectStore("blocks")
            reqs = (tx.objectStore("meta").get(to_js(["vmeta", version])),
                    blocks.getAllKeys(hrange), blocks.getAll(hrange))
            raw_meta, keys, vals = await asyncio.gather(*(request(r, px) for r in reqs))
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, "reading old versions") from None
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


class IdbHistory:
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

        js = idb_js()
        if superseded > 0:
            self.blocks.delete(js.IDBKeyRange.bound(to_js([f"h:{MAIN}", 0]),
                                                    to_js([f"h:{MAIN}", superseded, js.Infinity])))
            self.meta_store.delete(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                        to_js(["vmeta", superseded]), False, True))

    def drop_all(self) -> None:
        from pyodide.ffi import to_js

        js = idb_js()
        self.blocks.delete(js.IDBKeyRange.bound(to_js([f"h:{MAIN}", 0]),
                                                to_js([f"h:{MAIN}", js.Infinity])))
        self.meta_store.delete(js.IDBKeyRange.bound(to_js(["vmeta", 0]),
                                                    to_js(["vmeta", js.Infinity])))


_PUT_HISTORY: Any = None


def _put_history() -> Any:
    """A JS function putting superseded records in one call:
    ``(store, hfile, superseded, idx[], v[], c[], d[])``."""
    global _PUT_HISTORY
    if _PUT_HISTORY is None:
        _PUT_HISTORY = idb_js().Function.new(
            "store", "hfile", "s", "idx", "v", "c", "d",
            "for (let i = 0; i < idx.length; i++) store.put({hv: v[i], c: c[i], d: d[i]}, [hfile, s, idx[i]]);",
        )
    return _PUT_HISTORY
