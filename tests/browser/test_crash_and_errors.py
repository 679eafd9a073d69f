"""Real Chromium: crashes lose nothing synced; storage errors are named and safe."""
from __future__ import annotations

import random
import re
from typing import Any

from pyodide_page import PyPage

WRITER = """
import asyncio, datasync, js
db = await datasync.open("crash")
await db.execute("CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, pad BLOB)")
start = (await db.query("SELECT coalesce(max(id), 0) AS m FROM log"))[0]["m"]

async def write_forever(i):
    while True:
        i += 1
        async with db.transaction():
            await db.execute("INSERT INTO log VALUES (?, randomblob(?))", (i, 100 + i * 7919 % 9000))
            if i % 7 == 0:
                await db.execute("DELETE FROM log WHERE id = ?", (i - 3,))
                await db.execute("INSERT INTO log VALUES (?, zeroblob(10))", (-i,))
        await db.sync()
        js.console.log(f"ack {i}")

writer = asyncio.ensure_future(write_forever(start))
start
"""

CHECK = """
import datasync
db = await datasync.open("crash")
ok = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
ids = [r[0] for r in (await db.execute("SELECT id FROM log")).rows]
await db.close()
[ok, ids]
"""


def _acks(console: list[str]) -> list[int]:
    return [int(m.group(1)) for line in console if (m := re.fullmatch(r"ack (\d+)", line))]


def test_page_crashes_at_random_moments_never_lose_a_synced_commit(
    context: Any, server: Any, manifest: dict[str, Any]
) -> None:
    rng = random.Random(156)
    acked: set[int] = set()
    crashes = 0
    for round_ in range(11):
        page = PyPage(context.new_page(), server, manifest).open()
        ok, ids = page.run(CHECK) if round_ else ("ok", [])
        present = set(ids)
        assert ok == "ok", f"round {round_}: integrity_check said {ok}"
        # Every acknowledged commit is there, except rows that a later commit that
        # landed (even unacknowledged) deleted: commit i % 7 == 0 deletes i - 3.
        lost = {i for i in acked if i not in present and -(i + 3) not in present}
        assert not lost, f"round {round_}: synced commits lost: {sorted(lost)[:10]}"
        assert all(-i in present for i in acked if i % 7 == 0)
        if round_ == 10:
            page.page.close()
            break
        page.run(WRITER)
        page.page.wait_for_timeout(rng.randint(150, 1200))
        session = context.new_cdp_session(page.page)
        try:
            session.send("Page.crash", timeout=2000)
        except Exception:
            pass  # a crashed target never answers
        crashes += 1
        acked |= set(_acks(page.console))
        page.page.close()
    assert crashes == 10
    assert len(acked) > 20, "the writer barely ran; the test would prove nothing"


# One tab's relaxed path (a commit returns before its flush): tabs=False. Shared by
# tabs, every write waits for its flush, so the error reaches the write itself.
OPEN_QUOTA = """
import datasync
db = await datasync.open("quota", flush_interval=3600, tabs=False)
await db.execute("CREATE TABLE IF NOT EXISTS t(x)")
await db.sync()
"""

QUOTA = """
await db.execute("INSERT INTO t VALUES ('kept through a full disk')")
failed = None
try:
    await db.sync()
except datasync.StorageFullError as exc:
    failed = str(exc)
stats = db.stats()
[failed, stats["dirty_blocks"], stats["last_flush_error"] is not None, db.version,
 (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]]
"""

INJECT_QUOTA = """() => {
  window.realPut = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function () {
    throw new DOMException('injected: quota exceeded', 'QuotaExceededError');
  };
}"""


def test_quota_error_raises_storage_full_loses_nothing_and_recovers(pypage: PyPage) -> None:
    pypage.run(OPEN_QUOTA)
    pypage.page.evaluate(INJECT_QUOTA)
    failed, dirty, recorded, version, count = pypage.run(QUOTA)
    assert failed and "quota" in failed
    assert dirty > 0 and recorded and count == 1
    pypage.page.evaluate("() => { IDBObjectStore.prototype.put = window.realPut; }")
    after = pypage.run("""
v = await db.sync()
s = db.stats()
await db.close()
[v, s["dirty_blocks"], s["last_flush_error"]]
""")
    assert after == [version + 1, 0, None]
    pypage.reload()
    assert pypage.run("""
import datasync
db = await datasync.open("quota", tabs=False)
rows = (await db.execute("SELECT x FROM t")).rows
await db.close()
[list(r) for r in rows]
""") == [["kept through a full disk"]]


def test_missing_indexeddb_raises_storage_unavailable(pypage: PyPage) -> None:
    pypage.page.evaluate("() => Object.defineProperty(window, 'indexedDB', {value: undefined})")
    assert pypage.run("""
import datasync
try:
    await datasync.open("nowhere")
    result = None
except datasync.StorageUnavailableError as exc:
    result = [type(exc).__name__, str(exc)]
result
""")[0] == "StorageUnavailableError"


def test_an_older_schema_held_open_by_another_tab_raises_storage_blocked(pypage: PyPage) -> None:
    pypage.page.evaluate("""() => new Promise((ok) => {
        const req = indexedDB.open('datasync:held', 1);
        req.onsuccess = () => { window.held = req.result; ok(); };  // never closes
    })""")
    name, message = pypage.run("""
import datasync
from datasync.browser import indexeddb
indexeddb.IDB_SCHEMA_VERSION = 2        # as a newer datasync release would
try:
    await datasync.open("held")
    result = [None, None]
except datasync.StorageBlockedError as exc:
    result = [type(exc).__name__, str(exc)]
finally:
    indexeddb.IDB_SCHEMA_VERSION = 1
result
""")
    assert name == "StorageBlockedError" and "other tabs" in message
    # The other tab lets go: the abandoned request must neither upgrade the database
    # nor leave a connection open (a delete would then be blocked).
    after = pypage.page.evaluate("""async () => {
        window.held.close();
        await new Promise((r) => setTimeout(r, 300));
        const version = await new Promise((ok) => { const r = indexedDB.open('datasync:held');
            r.onsuccess = () => { const v = r.result.version; r.result.close(); ok(v); }; });
        const deleted = await new Promise((ok) => { const r = indexedDB.deleteDatabase('datasync:held');
            r.onsuccess = () => ok('deleted'); r.onblocked = () => ok('blocked'); });
        return [version, deleted];
    }""")
    assert after == [1, "deleted"]


def test_a_store_of_a_newer_format_is_refused_and_left_untouched(pypage: PyPage) -> None:
    pypage.run("""
import datasync
db = await datasync.open("future")
await db.execute("CREATE TABLE t(x)")
await db.close()
""")
    rewrite = """() => new Promise((ok, fail) => {
        const req = indexedDB.open('datasync:future');
        req.onsuccess = () => {
          const db = req.result, tx = db.transaction('meta', 'readwrite'), store = tx.objectStore('meta');
          const get = store.get('meta');
          get.onsuccess = () => {
            const meta = JSON.parse(get.result); meta.format_version = 99;
            window.futureMeta = JSON.stringify(meta); store.put(window.futureMeta, 'meta');
          };
          tx.oncomplete = () => { db.close(); ok(); };
          tx.onerror = () => fail(tx.error);
        };
    })"""
    pypage.page.evaluate(rewrite)
    name = pypage.run("""
import datasync
try:
    await datasync.open("future")
    result = None
except datasync.FormatVersionError as exc:
    result = type(exc).__name__
result
""")
    assert name == "FormatVersionError"
    stored = pypage.page.evaluate("""() => new Promise((ok) => {
        const req = indexedDB.open('datasync:future');
        req.onsuccess = () => {
          const get = req.result.transaction('meta').objectStore('meta').get('meta');
          get.onsuccess = () => { ok(get.result); req.result.close(); };
        };
    })""")
    assert stored == pypage.page.evaluate("() => window.futureMeta")
