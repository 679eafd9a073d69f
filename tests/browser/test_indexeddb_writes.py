"""Real Chromium: how the IndexedDB backend writes (issue 11).

* A flush on a stale base (another epoch, another version) is refused INSIDE its
  transaction, after its puts were issued: IndexedDB rolls them back, nothing of it
  is stored; on the fast path (one JS call) and on the packed path (whole segments).
* A bulk load hands IndexedDB each block about once (bytes counted on the values
  given to ``IDBObjectStore.put``), and what it packed reads back after a cold open.
"""
from __future__ import annotations

from typing import Any

from pyodide_page import PyPage, config

#: Counts what IndexedDB is handed: puts, and the bytes of their values.
COUNT_PUTS = """() => {
  if (window.putStats) return;
  const s = window.putStats = {puts: 0, bytes: 0, tx: 0};
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (value, ...rest) {
    s.puts++;
    if (value && typeof value === 'object') for (const x of Object.values(value)) {
      if (x instanceof ArrayBuffer || ArrayBuffer.isView(x)) s.bytes += x.byteLength;
    }
    if (typeof value === 'string') s.bytes += value.length;
    return put.call(this, value, ...rest);
  };
  const tx = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (...args) { s.tx++; return tx.apply(this, args); };
}"""

FENCE = """
import js
from datasync.blockstore import BlockStore
from datasync.browser.indexeddb import IndexedDBBackend
from datasync.errors import BackendError, DeposedLeaderError

BS = 4096
def block(ch):
    return ch.encode() * BS

async def stored(name):
    reader = await BlockStore.open(IndexedDBBackend(name, segment_bytes=SEG), create=False)
    try:
        return [reader.version, reader.size, reader.read(0, reader.size)]
    finally:
        await reader.backend.close()

async def case(name, blocks, stale):
    a = await BlockStore.open(IndexedDBBackend(name, segment_bytes=SEG), resident=True)
    for ch in "ab":  # the first flush of an opening clears history; the second is the common one
        for i in range(blocks):
            a.write(i * BS, block(ch))
        a.commit()
        await a.flush()
    b = await BlockStore.open(IndexedDBBackend(name, segment_bytes=SEG), resident=True)
    if stale == "epoch":
        b.epoch = a.epoch + 1  # a new leader stakes its epoch
    b.write(0, block("x"))  # (both: another writer moves the version on)
    b.commit()
    await b.flush(force=True)
    before = await stored(name)
    for i in range(blocks + 3):
        a.write(i * BS, block("c"))
    a.commit()
    puts = js.putStats.puts
    try:
        await a.flush()
        refused = None
    except DeposedLeaderError:
        refused = "DeposedLeaderError"
    except BackendError as exc:
        refused = type(exc).__name__
    issued = js.putStats.puts - puts
    after = await stored(name)
    await a.backend.close()
    await b.backend.close()
    await IndexedDBBackend(name).destroy()
    return [refused, issued, before == after, after[0], after[2][:1] == b"x", after[1]]
"""


def test_a_stale_writer_is_refused_inside_its_transaction_and_nothing_of_it_is_stored(
        pypage: PyPage) -> None:
    pypage.page.evaluate(COUNT_PUTS)
    # Segments of 8 blocks: the 2-block store's stale flush takes the fast path
    # (one JS call); the 70-block one's puts whole segments (the checked path).
    pypage.run("SEG = 8 * 4096\n" + FENCE)
    cases = {(blocks, stale): pypage.run(
        f"await case('fence-{blocks}-{stale}', {blocks}, {stale!r})")
        for blocks in (2, 70) for stale in ("epoch", "version")}
    for (blocks, stale), (refused, issued, unchanged, version, head, size) in cases.items():
        where = f"{blocks} blocks, stale {stale}"
        assert refused == ("DeposedLeaderError" if stale == "epoch" else "VersionConflictError"), where
        # Its puts (a record per block, or per segment when packed) were issued in
        # the transaction before the check refused it...
        assert issued >= (blocks + 3 if blocks < 64 else -(-(blocks + 3) // 8)), where
        # ... and none of them is stored: the other writer's version, whole.
        assert unchanged and head and size == blocks * 4096, where
        assert version == 3, where


BULK = """
import js, datasync
ROWS = %d
async def bulk():
    s0 = dict(js.putStats.to_py())
    db = await datasync.open("bulk", tabs=False)
    await db.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    await db.executemany("INSERT INTO users VALUES (?, ?, ?)",
                         [(i, f"name {i:07d} " + "n" * 90, f"user{i:07d}@" + "e" * 80)
                          for i in range(1, ROWS + 1)])
    await db.sync()
    size = db.stats()["file_size"]
    await db.close()
    s1 = js.putStats.to_py()
    return [size, s1["bytes"] - s0["bytes"], s1["puts"] - s0["puts"]]
""" % 40_000

CHECK = """
import datasync
db = await datasync.open("bulk", tabs=False)
rows = (await db.execute("SELECT count(*), sum(length(name) + length(email)) FROM users")).rows[0]
await db.execute("UPDATE users SET name = 'changed' WHERE id % 997 = 0")
await db.sync()
check = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
await db.close()
db = await datasync.open("bulk", tabs=False)
changed = (await db.execute("SELECT count(*) FROM users WHERE name = 'changed'")).rows[0][0]
await db.close()
[list(rows), check, changed]
"""


def test_a_bulk_load_hands_indexeddb_each_block_about_once_and_reads_back_cold(
        pw: Any, profile: Any, server: Any, manifest: Any) -> None:
    ctx = config.launch_persistent(pw, profile)
    try:
        page = PyPage(ctx.new_page(), server, manifest).open()
        page.page.evaluate(COUNT_PUTS)
        size, handed, puts = page.run(BULK + "\nawait bulk()")
    finally:
        ctx.close()
    assert size > 8_000_000
    # Before: every block went in as a block record and again when compacted (2x+).
    assert handed <= 1.2 * size, (handed, size)
    assert puts < 200, puts  # packed segments, not one record per block
    ctx = config.launch_persistent(pw, profile)  # a cold open reads the packed store
    try:
        got = PyPage(ctx.new_page(), server, manifest).open().run(CHECK)
    finally:
        ctx.close()
    expected_len = sum(len(f"name {i:07d} ") + 90 + len(f"user{i:07d}@") + 80
                       for i in range(1, 40_001))
    assert got == [[40_000, expected_len], "ok", 40_000 // 997]
