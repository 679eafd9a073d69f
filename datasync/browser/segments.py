"""Segments: how an IndexedDB store packs blocks, reads them back and compacts.

Example (Pyodide)::

    records = await backend.read_all(MAIN)     # segments + block records, merged
    folded = await backend.compact_all()       # every block record into its segment

A store keeps each flush's blocks as small records in ``blocks`` (cheap to write),
and *compaction* folds them into ``segments``: ``[file, n]`` -> ``{v, vs, cs, b, d}``,
blocks ``n*S .. n*S+S-1`` packed in one record (per-block versions and checksums,
version 0 = absent; ``b`` the length of each packed record, ``d`` their bytes up to
the last used slot: a *short* segment. A segment written before short ones has no
``b`` and ``d`` of ``S`` records), so a cold open reads a few large records instead
of thousands of small ones. For each block the record with the higher version
wins, so compaction (its own transaction) never changes content. It runs in the
background once more than ``compact_threshold`` block records wait, and on close.
A flush of 64 blocks or more that holds every block of a segment (up to the end of
the file) puts that segment packed at once instead (a bulk load: each block is
handed to IndexedDB about once, not once as a block record and again compacted).

This is a mixin of :class:`~.indexeddb.IndexedDBBackend`.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..format import MAIN, Flush, Meta, Record
from .idb import IdbFailure, Proxies, js as idb_js, map_error, request, transaction_done


class Segments:
    """Reading and compacting the packed blocks of an IndexedDB store."""

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
        js = idb_js()
        px = Proxies()
        try:
            tx = self._tx(["meta", "blocks", "segments"], "readonly")
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
            results = await asyncio.gather(*(request(r, px) for r in reqs))
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, "reading") from None
        finally:
            px.destroy()
        raw_meta, seg_keys, seg_vals, block_keys, block_vals = results
        meta = Meta.from_json(str(raw_meta), where=self.location)
        self._stored_count = meta.block_count
        floor = 0 if since is None else max(since, 0)  # a slot at version 0 is empty
        records: dict[int, Record] = {}
        seg_size = self._seg
        for key, seg in zip(seg_keys, seg_vals):
            if key[0] != file:
                continue
            base = int(key[1]) * seg_size
            checksums = seg.cs.to_py()
            data = seg.d.to_bytes()
            bs = record_length(seg, seg_size)
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

    def _whole_segments(self, flush: Flush) -> dict[int, list[int]]:
        """Segments this flush rewrites whole, so it puts them packed at once instead
        of as block records that a compaction would fold (and write a second time):
        every slot below the file's end (the last segment is then a short one). A
        bulk load hands IndexedDB each block about once. Only for flushes of 64
        blocks or more (a small one stays on the fast path) that do not shrink the
        file (a shrinking flush empties the slots past the end afterwards)."""
        seg_size, count = self._seg, flush.meta.block_count
        if count < self._stored_count or len(flush.blocks) < min(seg_size, 64):
            return {}
        lengths = {len(r.payload) for r in flush.blocks.values()}
        if len(lengths) != 1:
            return {}
        out: dict[int, list[int]] = {}
        for seg in sorted({i // seg_size for i in flush.blocks}):
            lo, hi = seg * seg_size, min(seg * seg_size + seg_size, count)
            if hi > lo and all(i in flush.blocks for i in range(lo, hi)):
                out[seg] = list(range(lo, hi))
        return out

    def _put_whole_segments(self, segs: Any, blocks: Any, flush: Flush,
                            whole: dict[int, list[int]]) -> None:
        """Put the segments of ``whole`` packed, and delete the (older) block records
        in their range, inside the flush's transaction."""
        from pyodide.ffi import to_js

        js = idb_js()
        seg_size = self._seg
        for seg, idxs in whole.items():
            records = [flush.blocks[i] for i in idxs]
            bs = len(records[0].payload)
            empty = [0] * (seg_size - len(idxs))
            value = js.Object.new()
            value.v = flush.meta.version
            value.vs = to_js([r.version for r in records] + empty)
            value.cs = to_js([r.checksum for r in records] + empty)
            value.b, value.d = bs, to_js(b"".join(r.payload for r in records))
            lo = seg * seg_size
            blocks.delete(self._range(flush.file, lo, lo + seg_size - 1))
            segs.put(value, to_js([flush.file, seg]))

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

        js = idb_js()
        targets = self._compaction_targets() if segments is None else segments
        if not targets:
            return 0
        px = Proxies()
        state: dict[str, Any] = {"folded": 0}
        seg_size = self._seg
        try:
            tx = self._tx(["blocks", "segments"], "readwrite")
            done = transaction_done(tx, px, state)
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
                        if old is None or record_length(old, seg_size) != bs:
                            # New, or packed before a rekey changed the record
                            # length: that rekey rewrote every live block, and all
                            # of them are block records here, so start afresh.
                            versions, checks = [0] * seg_size, [0] * seg_size
                            data = bytearray(seg_size * bs)
                        else:
                            versions, checks = old.vs.to_py(), old.cs.to_py()
                            data = bytearray(old.d.to_bytes())
                            data.extend(bytes(seg_size * bs - len(data)))  # a short one
                        for key, rec in found:
                            slot, v = int(key[1]) - lo, int(rec.v)
                            if v > versions[slot]:
                                versions[slot], checks[slot] = v, int(rec.c)
                                data[slot * bs : (slot + 1) * bs] = rec.d.to_bytes()
                            state["folded"] += 1
                        value = js.Object.new()
                        value.v = max(versions)
                        value.vs, value.cs = to_js(versions), to_js(checks)
                        used = max((i + 1 for i, v in enumerate(versions) if v), default=0)
                        value.b, value.d = bs, to_js(bytes(data[: used * bs]))
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
            except IdbFailure as exc:
                raise map_error(exc.error, self.location, "compacting") from None
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


def record_length(seg: Any, seg_size: int) -> int:
    """The length of each block record packed in segment ``seg``: its ``b`` (a
    segment may be short: data up to its last used slot), else data / slots (a
    full segment, as every segment was before short ones). The block size, plus
    the nonce and tag when encrypted."""
    length = getattr(seg, "b", None)
    return int(length) if length else int(seg.d.byteLength) // seg_size


_PUT_BLOCKS: Any = None


def put_blocks() -> Any:
    """A JS function putting block records in one call (one proxy call, not four
    per record): ``(store, file, idx[], v[], c[], d[])``."""
    global _PUT_BLOCKS
    if _PUT_BLOCKS is None:
        _PUT_BLOCKS = idb_js().Function.new(
            "store", "file", "idx", "v", "c", "d",
            "for (let i = 0; i < idx.length; i++) store.put({v: v[i], c: c[i], d: d[i]}, [file, idx[i]]);",
        )
    return _PUT_BLOCKS


_TRIM_SEGMENT: Any = None


def trim_segment() -> Any:
    """A JS function emptying the slots from ``first`` on of one segment, in the
    caller's transaction (a truncation that ends inside it): ``(store, key, first)``."""
    global _TRIM_SEGMENT
    if _TRIM_SEGMENT is None:
        _TRIM_SEGMENT = idb_js().Function.new(
            "store", "key", "first",
            "const req = store.get(key);"
            "req.onsuccess = () => {"
            "  const seg = req.result;"
            "  if (!seg || !seg.vs.slice(first).some((v) => v > 0)) return;"
            "  const d = ArrayBuffer.isView(seg.d) ? seg.d : new Uint8Array(seg.d);"
            "  if (seg.b) seg.d = d.slice(0, Math.min(d.byteLength, first * seg.b));"
            "  else d.fill(0, first * (d.byteLength / seg.vs.length));"
            "  seg.vs.fill(0, first);"
            "  seg.cs.fill(0, first);"
            "  seg.v = seg.vs.reduce((a, b) => Math.max(a, b), 0);"
            "  store.put(seg, key);"
            "};",
        )
    return _TRIM_SEGMENT


_FAST_WRITE: Any = None


def fast_write() -> Any:
    """A JS function doing a whole common flush in the transaction ``tx``:
    ``(tx, file, idx[], v[], c[], d[], metaJson, format, base, epoch, count)`` ->
    a promise of undefined (committed) or ``["refused", storedMeta]`` / ``["error",
    DOMException]`` (aborted: nothing of it stored). The metadata read is issued
    first and not waited for: the puts follow at once, and its success handler
    commits, or aborts (rolling the puts back) unless the stored metadata is of
    format ``format``, at version ``base``, of an epoch not above ``epoch`` and at
    most ``count`` blocks long. No Python runs until the transaction ends."""
    global _FAST_WRITE
    if _FAST_WRITE is None:
        _FAST_WRITE = idb_js().Function.new(
            "tx", "file", "idx", "v", "c", "d", "metaJson", "format", "base", "epoch", "count",
            """return new Promise((resolve) => {
  const meta = tx.objectStore('meta'), blocks = tx.objectStore('blocks');
  let refused = null;
  const get = meta.get('meta');
  get.onsuccess = () => {
    if (refused) return;
    let m = null;
    try { m = JSON.parse(get.result); } catch (e) { m = null; }
    const ok = m !== null && typeof m === 'object' && m.format_version === format &&
      m.version === base && (m.epoch || 0) <= epoch &&
      Math.ceil(m.file_size / m.block_size) <= count;
    if (ok) { tx.commit(); return; }
    refused = ['refused', String(get.result)];
    tx.abort();
  };
  tx.oncomplete = () => resolve(undefined);
  tx.onerror = () => {};  // (the abort event follows and reports it)
  tx.onabort = () => resolve(refused || ['error', tx.error]);
  try {
    for (let i = 0; i < idx.length; i++) blocks.put({v: v[i], c: c[i], d: d[i]}, [file, idx[i]]);
    meta.put(metaJson, 'meta');
  } catch (e) {  // a put refused at once (a clone error...): abort before anything commits
    refused = ['error', e];
    tx.abort();
  }
});""",
        )
    return _FAST_WRITE
