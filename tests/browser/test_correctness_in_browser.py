"""Real Chromium: the replayed bug reports of issue 8 that involve IndexedDB or pages.

Each test packs several inputs into one page (booting Pyodide is the slow part).
"""
from __future__ import annotations

from typing import Any

from pyodide_page import PyPage, blank_pages

ERRORS = """
import datasync, js
from pyodide.ffi import to_js

async def names():
    return sorted(str(d.name) for d in (await js.indexedDB.databases()))

out = {}
try:
    await datasync.open("never-made", create=False)
except Exception as exc:
    out["missing"] = type(exc).__name__
try:
    await datasync.open("bad-option", cache_bytes=-1)
except Exception as exc:
    out["negative"] = type(exc).__name__
try:
    await datasync.open("bad-option", cache=1)
except Exception as exc:
    out["unknown"] = [type(exc).__name__, "cache_bytes" in str(exc)]
out["created"] = [n for n in await names() if n in ("datasync:never-made", "datasync:bad-option")]
try:
    await datasync.open("foreign")
except Exception as exc:
    out["foreign"] = type(exc).__name__
out
"""

MAKE_FOREIGN = """async () => {
  await new Promise((resolve, reject) => {
    const r = indexedDB.open('datasync:foreign', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('notes');
    r.onsuccess = () => { r.result.close(); resolve(); };
    r.onerror = () => reject(r.error);
  });
}"""

BLOB = """
import datasync
db = await datasync.open("blobs")
await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
await db.execute("INSERT INTO t VALUES (1, randomblob(51200))")
last = db.stats()["blocks"] - 1
await db.close()
last
"""

#: Remove block ``index`` from an IndexedDB store: its block record and its slot in
#: the segment that packs it (what a lost or hand-edited record looks like).
REMOVE_BLOCK = """async ({name, index}) => {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open('datasync:' + name);
    r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error);
  });
  const tx = db.transaction(['meta', 'blocks', 'segments'], 'readwrite');
  const get = (store, key) => new Promise((resolve) => {
    const r = tx.objectStore(store).get(key); r.onsuccess = () => resolve(r.result);
  });
  const n = JSON.parse(await get('meta', 'layout')).segment_blocks;
  const key = ['main', Math.floor(index / n)];
  tx.objectStore('blocks').delete(['main', index]);
  const seg = await get('segments', key);
  if (seg) { seg.vs[index % n] = -1; tx.objectStore('segments').put(seg, key); }
  await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
  db.close();
}"""

REOPEN_BLOB = """
import datasync
try:
    await datasync.open("blobs")
    out = None
except datasync.CorruptBlockError as exc:
    out = [exc.index, str(exc)]
out
"""


def test_store_errors_are_named_and_create_nothing(pypage: PyPage) -> None:
    pypage.page.evaluate(MAKE_FOREIGN)
    out = pypage.run(ERRORS)
    assert out == {"missing": "StoreNotFoundError", "negative": "InvalidOptionError",
                   "unknown": ["InvalidOptionError", True], "created": [],
                   "foreign": "NotADatasyncStoreError"}


def test_a_block_record_missing_from_indexeddb_is_named_at_open(pypage: PyPage) -> None:
    last = pypage.run(BLOB)
    pypage.page.evaluate(REMOVE_BLOCK, {"name": "blobs", "index": last})
    index, message = pypage.run(REOPEN_BLOB)
    assert index == last and f"block {last} " in message and "no stored record" in message
    # A store whose metadata record went missing is damage too, never a new store.
    pypage.page.evaluate(DELETE_META, "blobs")
    assert pypage.run(REOPEN_BLOB)[1].endswith("nothing was written")


DELETE_META = """async (name) => {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open('datasync:' + name);
    r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error);
  });
  const tx = db.transaction(['meta'], 'readwrite');
  tx.objectStore('meta').delete('meta');
  await new Promise((resolve) => { tx.oncomplete = resolve; });
  db.close();
}"""


OPEN_TAB = """async (name) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, {tabs: true});
  return true;
}"""

FOLLOWER_STATE = """async () => {
  const db = window.db, out = {};
  for (const sql of ['BEGIN', 'SAVEPOINT s', 'ROLLBACK']) {
    try { await db.execute(sql); out[sql] = 'ran'; } catch (e) { out[sql] = e.name; }
  }
  await db.execute('CREATE TEMP TABLE scratch(v)');
  await db.execute("INSERT INTO scratch VALUES ('mine')");
  await db.execute("INSERT INTO t(id, v) VALUES (100, 'follower')");
  out.rowid = await db.query('SELECT last_insert_rowid() AS r, changes() AS c');
  out.scratch = await db.query('SELECT v FROM scratch');
  try { await db.execute('INSERT INTO t(v) SELECT v FROM scratch'); } catch (e) { out.mixed = e.name; }
  return out;
}"""

LEADER_STATE = """async () => {
  const db = window.db;
  await db.execute('CREATE TEMP TABLE scratch(v)');   // its own: no "already exists"
  await db.execute("INSERT INTO t(id, v) VALUES (200, 'leader')");
  return {
    rowid: await db.query('SELECT last_insert_rowid() AS r'),
    scratch: await db.query('SELECT count(*) AS n FROM scratch'),
    t: await db.query('SELECT id, v FROM t ORDER BY id'),
  };
}"""


def test_each_page_keeps_its_own_transactions_temp_tables_and_rowids(context: Any, server: Any) -> None:
    leader, follower = blank_pages(context, server, 2)
    leader.evaluate(OPEN_TAB, "state")
    leader.evaluate("() => window.db.waitForLeadership()")
    leader.evaluate("() => window.db.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v)')")
    follower.evaluate(OPEN_TAB, "state")
    out = follower.evaluate(FOLLOWER_STATE)
    assert out["BEGIN"] == out["SAVEPOINT s"] == out["ROLLBACK"] == "TransactionStatementError"
    assert out["rowid"] == [{"r": 100, "c": 1}]
    assert out["scratch"] == [{"v": "mine"}]
    assert out["mixed"] == "LocalObjectError"
    mine = leader.evaluate(LEADER_STATE)
    assert mine["rowid"] == [{"r": 200}] and mine["scratch"] == [{"n": 0}]
    assert mine["t"] == [{"id": 100, "v": "follower"}, {"id": 200, "v": "leader"}]
    # The follower's last_insert_rowid() is still its own, after the leader wrote.
    assert follower.evaluate("() => window.db.query('SELECT last_insert_rowid() AS r')") == [{"r": 100}]
