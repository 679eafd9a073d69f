"""Real Chromium: data written through datasync survives reloads and restarts."""
from __future__ import annotations

from typing import Any

from pyodide_page import PyPage, config

OPEN_AND_WRITE = """
import datasync
db = await datasync.open("notes")
await db.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
await db.execute("INSERT INTO notes(body) VALUES (?)", ("written before reload",))
version = await db.sync()
stats = db.stats()
[version, stats["backend"], stats["dirty_blocks"]]
"""

READ_BACK = """
import datasync
db = await datasync.open("notes")
rows = await db.query("SELECT body FROM notes")
check = await db.query("PRAGMA integrity_check")
await db.close()
[[r["body"] for r in rows], check[0]["integrity_check"]]
"""


def test_python_in_pyodide_data_survives_a_reload(pypage: PyPage) -> None:
    version, backend, dirty = pypage.run(OPEN_AND_WRITE)
    assert version >= 1 and backend == "IndexedDBBackend" and dirty == 0
    pypage.reload()
    assert pypage.run(READ_BACK) == [["written before reload"], "ok"]


def test_data_survives_a_browser_restart(pw: Any, profile, server, manifest) -> None:  # type: ignore[no-untyped-def]
    ctx = config.launch_persistent(pw, profile)
    PyPage(ctx.new_page(), server, manifest).open().run(OPEN_AND_WRITE)
    ctx.close()
    ctx = config.launch_persistent(pw, profile)
    try:
        assert PyPage(ctx.new_page(), server, manifest).open().run(READ_BACK) == [
            ["written before reload"], "ok"]
    finally:
        ctx.close()


JS_WRITE = """async () => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('jsnotes');
  await db.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, s TEXT, b BLOB, n INTEGER, f REAL, z)');
  await db.execute('INSERT INTO t(s, b, n, f, z) VALUES (?, ?, ?, ?, ?)',
                   ['héllo', new Uint8Array([0, 1, 254, 255]), 2n ** 62n + 1n, 1.5, null]);
  const version = await db.sync();
  await db.close();
  return version;
}"""

JS_READ = """async () => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('jsnotes');
  const res = await db.execute('SELECT s, b, n, f, z FROM t');
  const [s, b, n, f, z] = res.rows[0];
  const objs = await db.query('SELECT count(*) AS n FROM t');
  const check = await db.query('PRAGMA integrity_check');
  let error = null;
  try { await db.execute('INSERT INTO nope VALUES (1)'); } catch (e) { error = [e.name, e.message, e instanceof Error]; }
  await db.close();
  return {columns: res.columns, s, b: Array.from(b), bIsBytes: b instanceof Uint8Array,
          n: String(n), nType: typeof n, f, z, count: objs[0].n, check: check[0].integrity_check, error};
}"""


def test_js_module_data_survives_a_reload_and_values_round_trip(pw: Any, profile, server) -> None:  # type: ignore[no-untyped-def]
    ctx = config.launch_persistent(pw, profile)
    try:
        page = ctx.new_page()
        page.goto(server.url + "tests/browser/blank.html")
        assert page.evaluate(JS_WRITE) >= 1
        page.reload()
        got = page.evaluate(JS_READ)
    finally:
        ctx.close()
    assert got == {
        "columns": ["s", "b", "n", "f", "z"], "s": "héllo", "b": [0, 1, 254, 255],
        "bIsBytes": True, "n": str(2**62 + 1), "nType": "bigint", "f": 1.5, "z": None,
        "count": 1, "check": "ok",
        "error": ["OperationalError", "no such table: nope", True],
    }


BIG = """
import datasync, hashlib
db = await datasync.open("big")
await db.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)")
async with db.transaction():
    for i in range(2500):
        await db.execute("INSERT INTO blobs(data) VALUES (randomblob(8000))")
await db.sync()
size = db.stats()["file_size"]
digest = hashlib.sha256(b"".join(r[0] for r in (await db.execute("SELECT data FROM blobs ORDER BY id")).rows)).hexdigest()
await db.close()
[size, digest]
"""

BIG_CHECK = """
import datasync, hashlib
db = await datasync.open("big")
digest = hashlib.sha256(b"".join(r[0] for r in (await db.execute("SELECT data FROM blobs ORDER BY id")).rows)).hexdigest()
check = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
image = await db.export()
await db.execute("DELETE FROM blobs WHERE id % 2 = 0")
await db.import_(image)
after = hashlib.sha256(b"".join(r[0] for r in (await db.execute("SELECT data FROM blobs ORDER BY id")).rows)).hexdigest()
count = (await db.query("SELECT count(*) AS n FROM blobs"))[0]["n"]
await db.close()
[digest, check, after, count, len(image)]
"""


def test_a_20_mb_database_survives_a_reload_and_export_import_round_trips(pypage: PyPage) -> None:
    size, digest = pypage.run(BIG)
    assert size >= 20_000_000
    pypage.reload()
    again, check, after, count, image_len = pypage.run(BIG_CHECK)
    assert (again, check, after, count) == (digest, "ok", digest, 2500)
    assert image_len == size


STACK_SWITCHING = """async (opts) => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('runtime-' + JSON.stringify(opts).length, opts);
  await db.execute('CREATE TABLE IF NOT EXISTS t(x)');
  await db.execute('INSERT INTO t VALUES (1)');
  const canRunSync = await db.pyodide.runPythonAsync(
    'import asyncio\\nfrom pyodide.ffi import can_run_sync\\nawait asyncio.sleep(0)\\ncan_run_sync()');
  return {canRunSync, rows: (await db.query('SELECT count(*) AS n FROM t'))[0].n};
}"""


def test_js_module_boots_pyodide_without_stack_switching_unless_asked(context: Any, server: Any) -> None:
    # Stack switching (JSPI) crashed Chromium's renderer under a 4-tab write load; datasync
    # never needs it, so the runtime it boots calls Python without it by default.
    plain, jspi = context.new_page(), context.new_page()
    for page in (plain, jspi):
        page.goto(server.url + "tests/browser/blank.html")
    assert jspi.evaluate("'Suspending' in WebAssembly")  # this Chromium has JSPI at all
    assert plain.evaluate(STACK_SWITCHING, {}) == {"canRunSync": False, "rows": 1}
    assert jspi.evaluate(STACK_SWITCHING, {"stackSwitching": True}) == {"canRunSync": True, "rows": 1}
