"""The Python half of benchmarks/browser.py: runs INSIDE Pyodide (the page's runtime,
booted by js/datasync.js), never natively. Every function returns milliseconds taken
with ``time.perf_counter()``. The data comes from the page (``js.benchData``, the
same seeded rows every contender gets).

Example (from the host)::

    page.py(Path("benchmarks/pyodide_side.py").read_text())
    page.py("await w1_round(0, [1000, 1000, 100, 100], 42)")
"""
import os
import sqlite3
import time

import datasync
import js
from pyodide.ffi import to_js

perf = time.perf_counter
MS = 1000.0
SQL = js.benchData.SQL.to_py()
APP_DB = "/idb/app.db"
STATE = {}


def w1_work(sizes, seed):
    w = js.benchData.w1Work(to_js(sizes), seed)
    return w.to_py()


def users(rows, name_len, seed):
    return [tuple(r) for r in js.benchData.users(rows, name_len, seed).to_py()]


def updates(n, rows, seed):
    return [tuple(u) for u in js.benchData.w2Updates(n, rows, seed).to_py()]


def idb_bytes():
    return js.benchIdb.bytes


async def w1_api(name, work):
    """The async Python API: {phase: ms until durable}, blocks flushed, bytes to IDB."""
    db = await datasync.open(name, tabs=False)
    await db.execute(SQL["users"])
    await db.sync()
    times, blocks, nbytes = {}, {}, {}

    async def durable(phase, t0, b0, blk0):
        await db.sync()
        times[phase] = (perf() - t0) * MS
        blocks[phase] = db.stats()["blocks_flushed"] - blk0
        nbytes[phase] = idb_bytes() - b0

    def start():
        return perf(), idb_bytes(), db.stats()["blocks_flushed"]

    rows = [tuple(r) for r in work["rows"]]
    marks = start()
    await db.executemany(SQL["insert"], rows)
    await durable("insert", *marks)
    t0 = perf()
    for k in work["reads"]:
        (await db.execute(SQL["point"], (k,))).rows
    times["reads"] = (perf() - t0) * MS
    t0 = perf()
    async with db.transaction():
        for k in work["reads"]:
            (await db.execute(SQL["point"], (k,))).rows
    times["reads_tx"] = (perf() - t0) * MS
    marks = start()
    async with db.transaction():
        for j, k in enumerate(work["updates"]):
            await db.execute(SQL["update"], (f"changed{j}@example.org", k))
    await durable("update", *marks)
    marks = start()
    async with db.transaction():
        for k in work["deletes"]:
            await db.execute(SQL["del"], (k,))
    await durable("delete", *marks)
    await db.close()
    return {"times": times, "blocks": blocks, "bytes": nbytes}


async def w1_conn(conn, work, durable=None):
    """The same SQL on a plain sqlite3 connection; ``durable`` is awaited after writes."""
    out, nbytes = {}, {}
    rows = [tuple(r) for r in work["rows"]]

    async def phase(name, fn, write=True):
        b0, t0 = idb_bytes(), perf()
        fn()
        if durable is not None and write:
            await durable()
        out[name] = (perf() - t0) * MS
        nbytes[name] = idb_bytes() - b0

    def insert():
        conn.execute("BEGIN")
        conn.executemany(SQL["insert"], rows)
        conn.execute("COMMIT")

    def reads():
        for k in work["reads"]:
            conn.execute(SQL["point"], (k,)).fetchall()

    def reads_tx():
        conn.execute("BEGIN")
        reads()
        conn.execute("COMMIT")

    def update():
        conn.execute("BEGIN")
        for j, k in enumerate(work["updates"]):
            conn.execute(SQL["update"], (f"changed{j}@example.org", k))
        conn.execute("COMMIT")

    def delete():
        conn.execute("BEGIN")
        for k in work["deletes"]:
            conn.execute(SQL["del"], (k,))
        conn.execute("COMMIT")

    await phase("insert", insert)
    await phase("reads", reads, write=False)
    await phase("reads_tx", reads_tx, write=False)
    await phase("update", update)
    await phase("delete", delete)
    return {"times": out, "bytes": nbytes}


async def w1_round(rep, sizes, seed):
    """One W1 round of the Python paths: the async API, db.connect(), :memory:."""
    work = w1_work(sizes, seed)
    res = {"py_api": await w1_api(f"w1-pyapi-{rep}", work)}
    db = await datasync.open(f"w1-pyconn-{rep}", tabs=False)
    conn = db.connect()
    conn.execute(SQL["users"])
    await db.sync()
    res["py_conn"] = await w1_conn(conn, work, db.sync)
    conn.close()
    await db.close()
    mem = sqlite3.connect(":memory:", isolation_level=None)
    mem.execute(SQL["users"])
    res["memory"] = await w1_conn(mem, work)
    mem.close()
    return res


async def w2_python(name, n, rows, seed):
    """W2 on the bulk-loaded database: the async API (strict: each execute durable),
    then db.connect() + await db.sync() per commit."""
    db = await datasync.open(name, tabs=False, durability="strict")
    out = {"py_api": [], "py_conn": [], "bytes_api": [], "bytes_conn": []}
    for params in updates(n, rows, seed):
        b0, t0 = idb_bytes(), perf()
        await db.execute(SQL["update"], params)
        out["py_api"].append((perf() - t0) * MS)
        out["bytes_api"].append(idb_bytes() - b0)
    conn = db.connect()
    for params in updates(n, rows, seed + 1):
        b0, t0 = idb_bytes(), perf()
        conn.execute(SQL["update"], params)
        conn.commit()  # the module's default isolation level opened a transaction
        await db.sync()
        out["py_conn"].append((perf() - t0) * MS)
        out["bytes_conn"].append(idb_bytes() - b0)
    conn.close()
    await db.close()
    return out


# ---- B: Pyodide's sqlite3 on IDBFS (its own origin), FS.syncfs(false) after writes ----
async def syncfs(populate=False):
    await js.bench.syncfs(populate)


def mount_idbfs():
    fs = js.pyodide.FS
    fs.mkdir("/idb")
    fs.mount(fs.filesystems.IDBFS, js.Object.new(), "/idb")


async def w1_idbfs(sizes, seed):
    work = w1_work(sizes, seed)
    for suffix in ("", "-journal"):
        if os.path.exists(APP_DB + suffix):
            os.remove(APP_DB + suffix)
    conn = sqlite3.connect(APP_DB, isolation_level=None)
    conn.execute(SQL["users"])
    await syncfs()
    out = await w1_conn(conn, work, syncfs)
    conn.close()
    os.remove(APP_DB)
    await syncfs()
    return out


async def build_idbfs(rows, name_len, seed):
    data = users(rows, name_len, seed)
    conn = sqlite3.connect(APP_DB, isolation_level=None)
    conn.execute(SQL["users"])
    await syncfs()
    b0, t0 = idb_bytes(), perf()
    conn.execute("BEGIN")
    conn.executemany(SQL["insert"], data)
    conn.execute("COMMIT")
    await syncfs()
    STATE["b"] = conn
    return {"ms": (perf() - t0) * MS, "bytes_during": idb_bytes() - b0,
            "db_bytes": os.path.getsize(APP_DB)}


async def commits_idbfs(n, rows, seed):
    conn = STATE["b"]
    lat, nbytes = [], []
    for params in updates(n, rows, seed):
        b0, t0 = idb_bytes(), perf()
        conn.execute(SQL["update"], params)
        await syncfs()
        lat.append((perf() - t0) * MS)
        nbytes.append(idb_bytes() - b0)
    conn.close()
    return {"lat": lat, "bytes": nbytes}


async def cold_idbfs():
    t0 = perf()
    mount_idbfs()
    await syncfs(True)
    conn = sqlite3.connect(APP_DB)
    count = conn.execute(SQL["count"]).fetchone()[0]
    ms = (perf() - t0) * MS
    STATE["b"] = conn
    return {"ms": ms, "count": count, "bytes": os.path.getsize(APP_DB)}


def scan_idbfs():
    return STATE["b"].execute(SQL["scan"]).fetchone()[0]
