"""Real Chromium: point-in-time restore and backup through js/datasync.js."""
from __future__ import annotations

from typing import Any

WRITE = """async () => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('pitr', { retainVersions: 4 });
  await db.execute('CREATE TABLE t(x TEXT)');
  const at = {};
  for (const x of ['one', 'two', 'three']) {
    await db.execute('INSERT INTO t VALUES (?)', [x]);
    at[x] = await db.sync();
  }
  const versions = (await db.versions()).map((v) => v.version);
  const restoredTo = await db.restore(at.one);
  const rows = (await db.query('SELECT x FROM t')).map((r) => r.x);
  let gone = null;
  try { await db.restore(1000); } catch (e) { gone = e.name; }
  const backup = await db.backup('pitr-copy');
  await db.close();
  return { at, versions, restoredTo, rows, gone, backup };
}"""

READ = """async (restoredTo) => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('pitr', { retainVersions: 4 });
  const rows = (await db.query('SELECT x FROM t')).map((r) => r.x);
  const versions = (await db.versions()).map((v) => v.version);
  const copy = await DataSync.open('pitr-copy');
  const copied = (await copy.query('SELECT x FROM t')).map((r) => r.x);
  // undo the restore: the version before it is still retained (the versions after
  // it are this tab's takeover: a new leader stakes its epoch with a version)
  await db.restore(versions[versions.indexOf(restoredTo) - 1]);
  const undone = (await db.query('SELECT x FROM t ORDER BY rowid')).map((r) => r.x);
  return { rows, versions, copied, undone };
}"""


def test_restore_and_backup_in_indexeddb_survive_a_reload(context: Any, server: Any) -> None:
    page = context.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    out = page.evaluate(WRITE)
    assert out["rows"] == ["one"]
    assert out["versions"][-1] == out["at"]["three"] and out["at"]["one"] in out["versions"]
    assert out["restoredTo"] > out["at"]["three"]
    assert out["gone"] == "VersionNotRetainedError"
    assert out["backup"]["target"] == "pitr-copy" and out["backup"]["bytes"] > 0
    page.reload()
    got = page.evaluate(READ, out["restoredTo"])
    assert got["rows"] == ["one"]  # the restore is durable
    assert got["copied"] == ["one"]  # the backup was taken after it
    assert out["restoredTo"] in got["versions"]
    assert got["undone"] == ["one", "two", "three"]
    raw = page.evaluate("""async () => {
      const db = await new Promise((ok) => { const r = indexedDB.open('datasync:pitr');
                                              r.onsuccess = () => ok(r.result); });
      const count = (store, range) => new Promise((ok) => {
        const r = db.transaction(store).objectStore(store).count(range); r.onsuccess = () => ok(r.result); });
      const h = await count('blocks', IDBKeyRange.bound(['h:main', 0], ['h:main', Infinity]));
      const m = await count('meta', IDBKeyRange.bound(['vmeta', 0], ['vmeta', Infinity]));
      db.close();
      return [h, m];
    }""")
    assert raw[0] > 0 and 1 <= raw[1] <= 4  # history kept, and pruned to the window


def test_a_backup_can_be_encrypted_with_a_uint8array_key(context: Any, server: Any) -> None:
    page = context.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    got = page.evaluate("""async () => {
      const { DataSync } = await import('/js/datasync.js');
      const key = new Uint8Array(32).map((_, i) => 255 - i);
      const db = await DataSync.open('plain-src');
      await db.execute('CREATE TABLE t(x TEXT)');
      await db.execute("INSERT INTO t VALUES ('backed up')");
      await db.backup('sealed-copy', { encryptionKey: key });
      let unknown = null;
      try { await db.backup('other', { tabs: true }); } catch (e) { unknown = e.name; }
      await db.close();
      const copy = await DataSync.open('sealed-copy', { encryptionKey: key });
      const rows = await copy.query('SELECT x FROM t');
      await copy.close();
      let keyless = null;
      try { await DataSync.open('sealed-copy'); } catch (e) { keyless = e.name; }
      return { rows, unknown, keyless };
    }""")
    assert got == {"rows": [{"x": "backed up"}], "unknown": "InvalidOptionError",
                   "keyless": "WrongKeyError"}
