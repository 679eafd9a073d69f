"""Browser benchmark: datasync in Pyodide vs Pyodide's sqlite3 on IDBFS vs raw IndexedDB.

Usage::

    python benchmarks/browser.py            # W1 median of 3, W2 50 commits, W3 3 cold opens
    python benchmarks/browser.py --quick    # W1 once, W3 one cold open per system
    python benchmarks/browser.py --profile  # + cProfile of A's point reads inside Pyodide
    python benchmarks/browser.py --json raw.json   # + every raw measurement

Headless Chromium (``playwright.config.py``: ``launch_persistent`` on a fresh temporary
profile, so IndexedDB is on disk) loads ``benchmarks/browser.html`` from the local
server (``config.server(coop_coep=True)``: a cross-origin-isolated page has a 5 µs
clock instead of 100 µs; ``web/`` is built from this checkout by
``datasync.tools.build.ensure_web``, nothing comes from a CDN). Every time is taken
inside the page: ``time.perf_counter()`` in Pyodide or ``performance.now()`` in JS,
never around Playwright calls. The page also counts the asyncio callbacks Pyodide
schedules (through a MessageChannel), which exposes a task that polls the event loop.
Systems:

* **A** datasync: ``db = await datasync.open(name)`` (IndexedDB backend), the async API;
  ``A conn`` runs the same SQL as D through ``db.connect()`` (a plain sqlite3
  connection on the datasync VFS) to separate the async API from the VFS.
* **B** Pyodide's sqlite3 on an IDBFS mount (``/idb/app.db``; ``FS.syncfs(false)`` after
  each write transaction), what Pyodide users do today. It runs on its own origin
  (``localhost`` instead of ``127.0.0.1``), so its whole-file rewrites do not share an
  IndexedDB backing store with A and C.
* **C** raw IndexedDB, the floor: the same bytes put in one readwrite transaction.
* **D** Pyodide's sqlite3 on ``:memory:`` (the before-flush reference).

Workloads (a write counts once durable: A ``await db.sync()`` or ``durability="strict"``,
B after ``syncfs`` completes, C after ``oncomplete``):

* W1 ``users(id, name, email)``: insert 1000 rows (1 transaction); 1000 point SELECTs;
  update 100 rows (1 transaction); delete 100 rows (1 transaction). Fresh databases
  each repeat, after one untimed warm-up round (the WebAssembly JIT tiers up over the
  first seconds; the first round after boot is 2-5x slower).
* W2 a ~20 MB database (20k rows of 1000 random bytes), then 50 single-row UPDATE
  transactions, each durable; A opens it with ``durability="strict"`` (strict IDB
  transactions). Then 20 more A commits instrumented to split the latency.
* W3 cold open of that database after closing and relaunching the browser on the same
  profile (one relaunch per measurement, Pyodide booted first but not timed).
* Boot and tabs (``benchmarks/boot.py``): main-thread long tasks from navigation to the
  first query result, main thread vs ``{worker: true}``; a lone tab's open and durable
  one-row commit with ``{tabs: true}`` (the default) vs ``{tabs: false}``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

PAGE = "benchmarks/browser.html"
W1_ROWS, W1_READS, W1_UPDATES, W1_DELETES = 1000, 1000, 100, 100
W2_ROWS, W2_PAYLOAD = 20_000, 1000
W2_PROFILED = 20


def load_config() -> Any:
    """playwright.config.py (its name has a dot: loaded by path)."""
    spec = importlib.util.spec_from_file_location("datasync_playwright_config",
                                                  ROOT / "playwright.config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------
# Python that runs inside Pyodide. Every function returns milliseconds.
# --------------------------------------------------------------------------------------
IN_PYODIDE = r'''
import os, random, sqlite3, time
import js
from pyodide.ffi import create_once_callable, to_js
import datasync

perf = time.perf_counter
MS = 1000.0
USERS = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)"
INSERT = "INSERT INTO users(id, name, email) VALUES (?, ?, ?)"
POINT = "SELECT name, email FROM users WHERE id = ?"
UPDATE = "UPDATE users SET email = ? WHERE id = ?"
DELETE = "DELETE FROM users WHERE id = ?"
BIG = "CREATE TABLE big(id INTEGER PRIMARY KEY, payload BLOB)"
BIG_INSERT = "INSERT INTO big(id, payload) VALUES (?, ?)"
BIG_UPDATE = "UPDATE big SET payload = ? WHERE id = ?"
COUNT = "SELECT count(*) FROM big"
APP_DB = "/idb/app.db"
STATE = {}

async def syncfs(populate=False):
    await js.bench.syncfs(populate)

def mount_idbfs():
    FS = js.pyodide.FS
    FS.mkdir("/idb")
    FS.mount(FS.filesystems.IDBFS, js.Object.new(), "/idb")

def users_work(rows, reads, updates, deletes, seed):
    rng = random.Random(seed)
    data = [(i, f"user{i:05d} {rng.choice('abcdefgh') * rng.randint(1, 12)}",
             f"user{i:05d}@example.com") for i in range(1, rows + 1)]
    return (data, [rng.randint(1, rows) for _ in range(reads)],
            rng.sample(range(1, rows + 1), updates), rng.sample(range(1, rows + 1), deletes))

async def w1_api(name, work):
    """A through the async API: {phase: [before flush, durable]} (ms) + blocks flushed."""
    rows, reads, updates, deletes = work
    db = await datasync.open(name)
    await db.execute(USERS)
    await db.sync()
    out, blocks = {}, {}
    async def durable(phase, t0, cb0):
        t1 = perf()
        before = db.stats()["blocks_flushed"]
        await db.sync()
        out[phase] = [(t1 - t0) * MS, (perf() - t0) * MS, js.benchCallbacks - cb0]
        blocks[phase] = db.stats()["blocks_flushed"] - before
    cb0, t0 = js.benchCallbacks, perf()
    await db.executemany(INSERT, rows)
    await durable("insert", t0, cb0)
    cb0, t0 = js.benchCallbacks, perf()
    for k in reads:
        (await db.execute(POINT, (k,))).rows
    out["reads"] = [(perf() - t0) * MS] * 2 + [js.benchCallbacks - cb0]
    cb0, t0 = js.benchCallbacks, perf()
    async with db.transaction():
        for j, k in enumerate(updates):
            await db.execute(UPDATE, (f"changed{j}@example.org", k))
    await durable("update", t0, cb0)
    cb0, t0 = js.benchCallbacks, perf()
    async with db.transaction():
        for k in deletes:
            await db.execute(DELETE, (k,))
    await durable("delete", t0, cb0)
    await db.close()
    return {"times": out, "blocks": blocks}

async def w1_conn(conn, work, durable=None):
    """The same SQL on a plain sqlite3 connection; ``durable`` is awaited after writes."""
    rows, reads, updates, deletes = work
    out = {}
    async def phase(name, fn, write=True):
        cb0, t0 = js.benchCallbacks, perf()
        fn()
        t1 = perf()
        if durable is not None and write:
            await durable()
        out[name] = [(t1 - t0) * MS, (perf() - t0) * MS, js.benchCallbacks - cb0]
    def insert():
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    def point_reads():
        for k in reads:
            conn.execute(POINT, (k,)).fetchall()
    def update():
        conn.execute("BEGIN")
        for j, k in enumerate(updates):
            conn.execute(UPDATE, (f"changed{j}@example.org", k))
        conn.execute("COMMIT")
    def delete():
        conn.execute("BEGIN")
        for k in deletes:
            conn.execute(DELETE, (k,))
        conn.execute("COMMIT")
    await phase("insert", insert)
    await phase("reads", point_reads, write=False)
    await phase("update", update)
    await phase("delete", delete)
    return out

async def w1_main(rep, sizes, seed):
    """One W1 round on the main origin: A (API), A (db.connect()), D, C floors."""
    work = users_work(*sizes, seed)
    res = {"A": await w1_api(f"w1-api-{rep}", work)}
    db = await datasync.open(f"w1-conn-{rep}")
    conn = db.connect()
    conn.execute(USERS)
    await db.sync()
    res["Aconn"] = await w1_conn(conn, work, db.sync)
    conn.close()
    await db.close()
    mem = sqlite3.connect(":memory:", isolation_level=None)
    mem.execute(USERS)
    res["D"] = await w1_conn(mem, work)
    mem.close()
    # C: as many 4 KiB records as A flushed for the phase, in one default-durability
    # transaction (A's relaxed database uses default IDB transactions too).
    res["C"] = {phase: await js.bench.putRecords(max(n, 1), "default")
                for phase, n in res["A"]["blocks"].items()}
    return res

async def w1_idbfs(sizes, seed):
    """One W1 round of B: sqlite3 on /idb/app.db, syncfs(false) after each write."""
    work = users_work(*sizes, seed)
    for suffix in ("", "-journal"):
        if os.path.exists(APP_DB + suffix):
            os.remove(APP_DB + suffix)
    conn = sqlite3.connect(APP_DB, isolation_level=None)
    conn.execute(USERS)
    await syncfs()
    out = await w1_conn(conn, work, syncfs)
    conn.close()
    os.remove(APP_DB)
    await syncfs()
    return out

def big_rows(seed):
    rng = random.Random(seed)
    return [(i, rng.randbytes(PAYLOAD)) for i in range(1, ROWS + 1)]

async def w2_build_a(seed):
    """A: build the 20 MB database (strict: executemany returns once flushed), wait
    for the background compaction it triggers, then write the C floors from its image."""
    rows = big_rows(seed)
    db = await datasync.open("w2", durability="strict")
    await db.execute(BIG)
    t0 = perf()
    await db.executemany(BIG_INSERT, rows)
    t1 = perf()
    task = getattr(db._store.backend, "_compaction", None)
    if task is not None:
        await task
    t2 = perf()
    STATE["w2"] = db
    image = await db.export()
    floor = (await js.bench.writeImage(to_js(image), "strict")).to_py()
    return {"build": (t1 - t0) * MS, "compaction": (t2 - t1) * MS, "bytes": len(image),
            "floor": floor, "stats": db.stats()}

async def w2_build_b(seed):
    rows = big_rows(seed)
    conn = sqlite3.connect(APP_DB, isolation_level=None)
    conn.execute(BIG)
    await syncfs()
    t0 = perf()
    conn.execute("BEGIN")
    conn.executemany(BIG_INSERT, rows)
    conn.execute("COMMIT")
    t1 = perf()
    await syncfs()
    STATE["w2b"] = conn
    return {"build": (perf() - t0) * MS, "sql": (t1 - t0) * MS}

def update_work(n, seed):
    rng = random.Random(seed)
    return [(rng.randbytes(PAYLOAD), rng.randint(1, ROWS)) for _ in range(n)]

async def w2_commits_a(n, seed):
    db = STATE["w2"]
    lat = []
    cb0 = js.benchCallbacks
    for params in update_work(n, seed):
        t0 = perf()
        await db.execute(BIG_UPDATE, params)
        lat.append((perf() - t0) * MS)
    stats = db.stats()
    return {"lat": lat, "callbacks": js.benchCallbacks - cb0,
            "stats": {k: v for k, v in stats.items()
                      if v is None or isinstance(v, (int, float, str))}}

async def w2_profile_a(n, seed):
    """More strict commits, split by wrappers on the store and backend instance:
    sql = statement + commit (execute() until store.flush() starts); encode = flush()
    until backend.write() (CRC + bookkeeping); js_prep = write() until its readwrite
    transaction exists; idb = transaction() to its 'complete' event; resume = that
    event until write() returns (event loop turn, proxies); settle = the rest of flush()."""
    db = STATE["w2"]
    store, be = db._store, db._store.backend
    cur = {}
    orig_flush, orig_write, orig_tx = store.flush, be.write, be._transaction
    async def flush():
        cur.setdefault("flush0", perf())
        try:
            return await orig_flush()
        finally:
            cur.setdefault("flush1", perf())
    async def write(f):
        cur["write0"] = perf()
        try:
            return await orig_write(f)
        finally:
            cur["write1"] = perf()
    def transaction(stores, mode):
        tx = orig_tx(stores, mode)
        if mode == "readwrite":
            cur["tx0"] = perf()
            tx.addEventListener("complete", create_once_callable(
                lambda event: cur.__setitem__("tx1", perf())))
        return tx
    store.flush, be.write, be._transaction = flush, write, transaction
    rows = []
    try:
        for params in update_work(n, seed):
            cur.clear()
            busy = be._compaction is not None and not be._compaction.done()
            t0 = perf()
            await db.execute(BIG_UPDATE, params)
            t1 = perf()
            c = cur
            busy = busy or (be._compaction is not None and not be._compaction.done())
            rows.append({"compacting": busy, "total": (t1 - t0) * MS,
                         "sql": (c["flush0"] - t0) * MS,
                         "encode": (c["write0"] - c["flush0"]) * MS,
                         "js_prep": (c["tx0"] - c["write0"]) * MS,
                         "idb": (c["tx1"] - c["tx0"]) * MS,
                         "resume": (c["write1"] - c["tx1"]) * MS,
                         "settle": (c["flush1"] - c["write1"]) * MS,
                         "after": (t1 - c["flush1"]) * MS})
    finally:
        del store.flush, be.write, be._transaction
    return rows

async def profile_reads(sizes, seed, top):
    """cProfile of the A point reads (async API, then db.connect()), by own time."""
    import cProfile, io, pstats
    rows, reads, _, _ = users_work(*sizes, seed)
    db = await datasync.open("profile-reads")
    await db.execute(USERS)
    await db.executemany(INSERT, rows)
    await db.sync()
    conn = db.connect()
    text = []
    for label, loop in (("async API: await db.execute(POINT, (k,))", None),
                        ("db.connect(): conn.execute(POINT, (k,)).fetchall()", conn)):
        for k in reads:  # warm
            if loop is None:
                (await db.execute(POINT, (k,))).rows
            else:
                loop.execute(POINT, (k,)).fetchall()
        prof = cProfile.Profile()
        prof.enable()
        if loop is None:
            for k in reads:
                (await db.execute(POINT, (k,))).rows
        else:
            for k in reads:
                loop.execute(POINT, (k,)).fetchall()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        body = out.getvalue()
        for prefix in ("/lib/python3.14/site-packages/", "/lib/python314.zip/"):
            body = body.replace(prefix, "")
        text.append(f"{label} ({len(reads)} reads)\n" + body.strip())
    conn.close()
    await db.close()
    return "\n\n".join(text)

async def w2_close_a():
    db = STATE.pop("w2")
    await db.close()
    return dict(getattr(db._store.backend, "counters", {}))

async def w2_commits_b(n, seed):
    conn = STATE["w2b"]
    lat, sql = [], []
    for params in update_work(n, seed):
        t0 = perf()
        conn.execute(BIG_UPDATE, params)
        t1 = perf()
        await syncfs()
        lat.append((perf() - t0) * MS)
        sql.append((t1 - t0) * MS)
    conn.close()
    return {"lat": lat, "sql": sql}

async def w3_cold_a():
    """From datasync.open() to the first count(*) result; BlockStore.open and the
    backend's open and read_all are timed by wrappers on the classes (a fresh page)."""
    from datasync.backends.indexeddb import IndexedDBBackend
    from datasync.blockstore import BlockStore
    parts = {}
    def timed(name, fn):
        async def wrapper(*args, **kwargs):
            t = perf()
            try:
                return await fn(*args, **kwargs)
            finally:
                parts[name] = (perf() - t) * MS
        return wrapper
    IndexedDBBackend.open = timed("idb_open_meta", IndexedDBBackend.open)
    BlockStore.open = classmethod(timed("store_open", BlockStore.open.__func__))
    request = IndexedDBBackend._request
    def traced_request(req, px):
        fut = request(req, px)  # resolved inside the IDB success event
        fut.add_done_callback(lambda f: parts.__setitem__("last_request", perf()))
        return fut
    IndexedDBBackend._request = staticmethod(traced_request)
    read_all = IndexedDBBackend.read_all
    async def traced_read_all(self, *args, **kwargs):
        parts["read_all_start"] = perf()
        return await read_all(self, *args, **kwargs)
    IndexedDBBackend.read_all = timed("read_all", traced_read_all)
    t0 = perf()
    db = await datasync.open("w2")
    t1 = perf()
    count = (await db.execute(COUNT)).rows[0][0]
    t2 = perf()
    be = db._store.backend
    parts["read_requests"] = (parts.pop("last_request") - parts.pop("read_all_start")) * MS
    return {"ms": (t2 - t0) * MS, "open": (t1 - t0) * MS, "query": (t2 - t1) * MS, **parts,
            "count": count, "block_records": sum(getattr(be, "_deltas", {}).values()),
            "bytes": db.stats()["file_size"]}

async def w3_cold_b():
    """Mount IDBFS + syncfs(true) + connect + the first count(*) result."""
    t0 = perf()
    mount_idbfs()
    await syncfs(True)
    t1 = perf()
    conn = sqlite3.connect(APP_DB)
    count = conn.execute(COUNT).fetchone()[0]
    t2 = perf()
    return {"ms": (t2 - t0) * MS, "mount_sync": (t1 - t0) * MS, "query": (t2 - t1) * MS,
            "count": count, "bytes": os.path.getsize(APP_DB)}
'''


# --------------------------------------------------------------------------------------
# The host side: Playwright drives pages; nothing here is timed.
# --------------------------------------------------------------------------------------
class BenchPage:
    """A page of benchmarks/browser.html; ``boot()`` loads Pyodide and the helpers."""

    def __init__(self, ctx: Any, url: str, manifest: dict[str, Any]) -> None:
        self.page = ctx.new_page()
        self.manifest = manifest
        self.console: list[str] = []
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        self.page.goto(url)
        self.page.wait_for_function("() => window.bench !== undefined")

    def boot(self, consts: dict[str, Any]) -> dict[str, Any]:
        boot = self.page.evaluate("(m) => window.bench.boot(m)", self.manifest)
        header = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
        self.py(header + IN_PYODIDE + "\nNone")
        return boot

    def py(self, code: str) -> Any:
        try:
            return self.page.evaluate("(code) => window.bench.py(code)", code)
        except Exception:
            if self.console:
                print("\n".join(self.console[-20:]), file=sys.stderr)
            raise

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def fmt(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def ratio(a: float, b: float, limit: float | None = None) -> str:
    if not b:
        return "—"
    text = f"{a / b:.2f}x"
    return f"**{text}**" if limit is not None and a / b > limit else text


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "datasync"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted datasync/ changes' if dirty else ''}"
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    from datasync.tools.build import ensure_web

    config = load_config()
    manifest = ensure_web("web")
    consts = {"PAYLOAD": W2_PAYLOAD, "ROWS": W2_ROWS}
    sizes = [W1_ROWS, W1_READS, W1_UPDATES, W1_DELETES]
    boots: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_before = os.getloadavg()
    # COOP/COEP: a cross-origin-isolated page gets 5 µs performance.now() instead of 100 µs.
    with sync_playwright() as pw, config.server(coop_coep=True) as srv, \
            tempfile.TemporaryDirectory(prefix="datasync-browser-bench-") as tmp:
        profile = Path(tmp) / "profile"
        profile.mkdir()
        url_main = srv.url + PAGE
        url_b = srv.url.replace("127.0.0.1", "localhost") + PAGE  # B: its own origin

        ctx = config.launch_persistent(pw, profile)
        browser_version = ctx.browser.version if ctx.browser else "?"
        # ---- W1 + W2 for A, C, D on the main origin --------------------------------
        page = BenchPage(ctx, url_main, manifest)
        boots.append(page.boot(consts))
        env = page.py("import sys, sqlite3\n[datasync.__version__, sqlite3.sqlite_version, "
                      "sys.version.split()[0], bool(js.crossOriginIsolated)]")
        page.py(f"await w1_main('warmup', {sizes}, 1)")  # untimed: JIT tier-up, caches
        w1_main = [page.py(f"await w1_main({rep}, {sizes}, {42 + rep})")
                   for rep in range(args.repeat)]
        w2a_build = page.py("await w2_build_a(7)")
        w2a = page.py(f"await w2_commits_a({args.commits}, 8)")
        w2c = {
            "strict": page.js("(n) => window.bench.commitLatency(n, 'strict')", args.commits),
            "default": page.js("(n) => window.bench.commitLatency(n, 'default')", args.commits),
            "shape": page.js("(n) => window.bench.commitLatency(n, 'strict', 'datasync')",
                             args.commits),
        }
        w2a_prof = page.py(f"await w2_profile_a({W2_PROFILED}, 9)")
        read_profile = (page.py(f"await profile_reads({sizes}, 42, {args.profile})")
                        if args.profile else None)
        counters = page.py("await w2_close_a()")
        page.page.close()
        # ---- W1 + W2 for B on its own origin ----------------------------------------
        page = BenchPage(ctx, url_b, manifest)
        boots.append(page.boot(consts))
        page.py("mount_idbfs()\nawait syncfs(True)")
        page.py(f"await w1_idbfs({sizes}, 1)")  # untimed warm-up
        w1_b = [page.py(f"await w1_idbfs({sizes}, {42 + rep})") for rep in range(args.repeat)]
        w2b_build = page.py("await w2_build_b(7)")
        w2b = page.py(f"await w2_commits_b({args.commits}, 8)")
        page.page.close()
        ctx.close()
        # ---- W3: one browser launch per cold open ----------------------------------
        cold: dict[str, list[dict[str, Any]]] = {"A": [], "B": [], "C4k": [], "C1": []}
        for _ in range(args.cold):
            for system in cold:
                ctx = config.launch_persistent(pw, profile)
                try:
                    page = BenchPage(ctx, url_b if system == "B" else url_main, manifest)
                    boots.append(page.boot(consts))  # same conditions for every system
                    if system == "A":
                        cold[system].append(page.py("await w3_cold_a()"))
                    elif system == "B":
                        cold[system].append(page.py("await w3_cold_b()"))
                    else:
                        which = "blocks" if system == "C4k" else "single"
                        cold[system].append(page.js("(w) => window.bench.coldRead(w)", which))
                finally:
                    ctx.close()
        # ---- boot on the main thread vs in a Worker; a lone tab's multi-tab cost ----
        from benchmarks.boot import measure as measure_boot

        boot_raw = measure_boot(pw, config, srv.url, boots=args.cold, opens=args.cold + 2,
                                commits=max(args.commits // 2, 10))
    elapsed = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps({
            "w1_main": w1_main, "w1_b": w1_b, "w2a_build": w2a_build, "w2b_build": w2b_build,
            "w2a": w2a, "w2b": w2b, "w2c": w2c, "w2a_profile": w2a_prof, "counters": counters,
            "cold": cold, "boots": boots, "boot": boot_raw}, indent=1, default=str))

    # ---- report --------------------------------------------------------------------
    ds_version, sqlite_version, py_version, isolated = env
    load_after = os.getloadavg()
    exe = config.chromium_executable() or "Playwright's"
    print(f"Chromium {browser_version} (headless, {exe}) | "
          f"Pyodide {boots[0]['pyodide']} (Python {py_version}, SQLite {sqlite_version}) | "
          f"datasync {ds_version} (checkout {git_state()}, wheel sources "
          f"{manifest.get('source_digest', '?')[:12]}) | {platform.system()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.1f} before / {load_after[0]:.1f} after | "
          f"crossOriginIsolated={isolated} (performance.now() resolution "
          f"{'5 µs' if isolated else '100 µs'}) | "
          f"{'--quick' if args.quick else 'full'}: W1 x{args.repeat}, W2 {args.commits} "
          f"commits, W3 x{args.cold} | run took {elapsed:.0f} s\n")
    print(f"Pyodide boot per page (median of {len(boots)}, not in any timing below): "
          f"runtime {fmt(median([b['runtime_ms'] for b in boots]))} + micropip and the datasync "
          f"wheel {fmt(median([b['install_ms'] for b in boots]))} + `import datasync, sqlite3` "
          f"{fmt(median([b['import_ms'] for b in boots]))}\n")

    phases = [("insert", f"insert {W1_ROWS:,} rows, 1 transaction"),
              ("reads", f"{W1_READS:,} point SELECTs by id (autocommit)"),
              ("update", f"update {W1_UPDATES} rows, 1 transaction"),
              ("delete", f"delete {W1_DELETES} rows, 1 transaction")]

    def w1(system: str, phase: str, durable: bool) -> float:
        if system == "B":
            return median([r[phase][int(durable)] for r in w1_b])
        if system == "A":
            return median([r["A"]["times"][phase][int(durable)] for r in w1_main])
        if system == "C":
            return median([r["C"][phase] for r in w1_main])
        return median([r[system][phase][int(durable)] for r in w1_main])

    print(f"### W1 users, durable (median of {args.repeat})\n")
    rows = []
    for key, label in phases:
        a, ac, b = w1("A", key, True), w1("Aconn", key, True), w1("B", key, True)
        c = w1("C", key, True) if key != "reads" else None
        blocks = median([r["A"]["blocks"][key] for r in w1_main]) if c is not None else None
        callbacks = median([r["A"]["times"][key][2] for r in w1_main])
        rows.append([label, fmt(a), fmt(ac), fmt(b),
                     f"{fmt(c)} ({blocks:.0f} rec)" if c is not None else "—",
                     ratio(a, b), ratio(a, c) if c else "—", f"{callbacks:,.0f}"])
    table(["phase", "A datasync API + sync()", "A conn + sync()", "B IDBFS + syncfs",
           "C floor: A's blocks, 1 tx", "A/B", "A/C", "A loop callbacks"], rows)
    print("Notes: each cell is one phase, from its first statement until its writes are "
          "durable: A `await db.execute/executemany` (updates and deletes inside `async with "
          "db.transaction()`) then `await db.sync()` (relaxed database, default-durability "
          "IDB transaction); A conn the same SQL on `db.connect()` then `await db.sync()`; B "
          "sqlite3 on `/idb/app.db` then `FS.syncfs(false)`; C puts as many fresh 4 KiB records "
          "as A flushed for that phase in one default-durability transaction (performance.now() "
          "to oncomplete). Reads write nothing, so nothing is flushed after them. "
          "A loop callbacks: "
          "asyncio callbacks Pyodide ran through its MessageChannel during A's phase (a healthy "
          "flush needs a handful; thousands mean a task is polling).\n")

    print(f"### W1 users, before the flush (median of {args.repeat}; target A ≤ 1.3x D)\n")
    rows = []
    for key, label in phases:
        a, ac, b, d = (w1("A", key, False), w1("Aconn", key, False), w1("B", key, False),
                       w1("D", key, False))
        rows.append([label, fmt(a), fmt(ac), fmt(b), fmt(d), ratio(a, d, 1.3),
                     ratio(ac, d, 1.3)])
    table(["phase", "A datasync API", "A conn", "B IDBFS file (MEMFS)", "D :memory:",
           "A/D", "A conn/D"], rows)
    print("Notes: the same phases stopped when the last statement (or COMMIT) returns, before "
          "any flush/syncfs: the SQLite + VFS cost with the data in memory. A is the async API "
          "(`await db.execute`: asyncio lock, Result objects), A conn runs exactly D's calls "
          "on a `db.connect()` connection (the datasync VFS), D is `sqlite3.connect(':memory:')`. "
          "Ratios over 1.3x in bold.\n")

    # W2
    c_strict = median(w2c["strict"])
    print(f"### W2 single-row UPDATE transactions on a {w2a_build['bytes'] / 1e6:.1f} MB "
          f"database, each durable ({args.commits} commits; target A ≤ 1.5x C strict)\n")
    w2rows = [
        ("A datasync, durability=\"strict\" (strict IDB tx)", w2a["lat"]),
        ("B sqlite3 on IDBFS + syncfs(false)", w2b["lat"]),
        ("C one 4 KiB put, {durability: \"strict\"}", w2c["strict"]),
        ("C one 4 KiB put, default durability", w2c["default"]),
        ("C strict, datasync's requests (get meta → 2×4 KiB + meta put)", w2c["shape"]),
    ]
    table(["system", "median", "p95", "min", "median / C strict"],
          [[name, fmt(median(xs)), fmt(p95(xs)), fmt(min(xs)),
            ratio(median(xs), c_strict, 1.5 if name.startswith("A") else None)]
           for name, xs in w2rows])
    print("Notes: per commit, A times `await db.execute(UPDATE ...)` in Pyodide (strict: returns "
          "after store.flush() and its IDB transaction's oncomplete); B times `conn.execute("
          "UPDATE ...)` (autocommit) + `await FS.syncfs(false)` (median statement alone "
          f"{fmt(median(w2b['sql']))}; syncfs rewrites the whole {w2a_build['bytes'] / 1e6:.0f} MB "
          "file record, IDBFS's default durability); C times transaction() to oncomplete in JS "
          "with 4 KiB random values. p95 = 95th percentile. Event-loop callbacks during A's "
          f"{args.commits} commits: {w2a['callbacks']:,}.\n")

    prof = w2a_prof
    parts = [("sql", "SQLite statement + commit (execute() until store.flush())"),
             ("encode", "flush(): snapshot + CRC encode until backend.write()"),
             ("js_prep", "backend.write() until its readwrite transaction exists"),
             ("idb", "IDB transaction: created → 'complete' event"),
             ("resume", "'complete' event → write() returns (event loop, proxies)"),
             ("settle", "rest of flush() (bookkeeping)"),
             ("after", "rest of execute() after flush()")]
    busy = sum(1 for r in prof if r["compacting"])
    print(f"A's commit latency split ({W2_PROFILED} further strict commits, wrappers on the "
          f"store/backend instance; median total {fmt(median([r['total'] for r in prof]))}; "
          f"{busy} of them overlapped a background compaction)\n")
    table(["part", "median", "p95"],
          [[label, fmt(median([r[k] for r in prof])), fmt(p95([r[k] for r in prof]))]
           for k, label in parts])

    floor = w2a_build["floor"]
    print("W2 build (one transaction, until durable)\n")
    table(["system", "time", "notes"], [
        ["A datasync strict: executemany + flush", fmt(w2a_build["build"]),
         f"then the background compaction into 4 MiB segments took "
         f"{fmt(w2a_build['compaction'])}"],
        ["B IDBFS: SQL + syncfs(false)", fmt(w2b_build["build"]),
         f"SQL alone {fmt(w2b_build['sql'])}"],
        [f"C {floor['records']:,} × 4 KiB records, 1 strict tx", fmt(floor["blocks_ms"]),
         "A's exported image"],
        ["C one record of the image, 1 strict tx", fmt(floor["single_ms"]), ""],
    ])
    if read_profile:
        print(f"cProfile of A's {W1_READS:,} point reads in Pyodide (after the timed runs; "
              f"top {args.profile} by own time):\n```\n{read_profile}\n```\n")
    stats = w2a["stats"]
    print(f"A `db.stats()` after W2's {args.commits} timed commits: "
          + ", ".join(f"{k}={stats.get(k)}" for k in (
              "version", "commits", "flushes", "blocks_flushed", "bytes_flushed",
              "flush_failures", "blocks", "file_size", "resident_blocks")))
    print(f"IndexedDB backend counters (after close): {json.dumps(counters)}\n")

    # W3
    def col(system: str, key: str = "ms") -> list[float]:
        return [r[key] for r in cold[system]]

    floor4k = median(col("C4k"))
    decode = median([r["store_open"] - r["idb_open_meta"] - r["read_all"] for r in cold["A"]])
    a_cold = cold["A"][0]
    print(f"### W3 cold open of the W2 database to the first `SELECT count(*)` "
          f"(browser relaunched per measurement, median of {args.cold}; target A < C 4 KiB)\n")
    table(["system", "median", "min", "max", "/ C 4 KiB floor"], [
        ["A `datasync.open()` → count(*)", fmt(median(col("A"))), fmt(min(col("A"))),
         fmt(max(col("A"))), ratio(median(col("A")), floor4k, 1.0)],
        ["B mount + syncfs(true) + connect → count(*)", fmt(median(col("B"))),
         fmt(min(col("B"))), fmt(max(col("B"))), ratio(median(col("B")), floor4k)],
        [f"C getAll() of {cold['C4k'][0]['records']:,} × 4 KiB records", fmt(floor4k),
         fmt(min(col("C4k"))), fmt(max(col("C4k"))), "1.00x"],
        [f"C get() of one {cold['C1'][0]['bytes'] / 1e6:.1f} MB record", fmt(median(col("C1"))),
         fmt(min(col("C1"))), fmt(max(col("C1"))), ratio(median(col("C1")), floor4k)],
    ])
    print(f"Notes: each measurement closes the browser, relaunches it on the same profile, "
          f"loads the page and boots Pyodide (untimed, also for C), then times in the page. A: "
          f"`await datasync.open('w2')` + `await db.execute('SELECT count(*) FROM big')` "
          f"(median split: IDB open + meta {fmt(median(col('A', 'idb_open_meta')))}; read_all "
          f"{fmt(median(col('A', 'read_all')))} (its IDB requests, getAll of the segments + "
          f"{a_cold['block_records']} block records: {fmt(median(col('A', 'read_requests')))}; "
          f"the rest is turning them into Records); CRC-checked decode of every "
          f"block {fmt(decode)}; "
          f"rest of open (VFS attach, connection) "
          f"{fmt(median([r['open'] - r['store_open'] for r in cold['A']]))}; first query "
          f"{fmt(median(col('A', 'query')))}); B: FS.mkdir + FS.mount(IDBFS) + "
          f"syncfs(true) {fmt(median(col('B', 'mount_sync')))}, then sqlite3.connect + count(*) "
          f"{fmt(median(col('B', 'query')))}; C: indexedDB.open + one readonly request, in JS. "
          f"Counts: A {a_cold['count']:,}, B {cold['B'][0]['count']:,}; sizes A "
          f"{a_cold['bytes'] / 1e6:.1f} MB, B {cold['B'][0]['bytes'] / 1e6:.1f} MB, C "
          f"{cold['C4k'][0]['bytes'] / 1e6:.1f} MB.")
    print()
    from benchmarks.boot import report as report_boot

    report_boot(boot_raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="W1 once, one cold open per system (about a minute)")
    ap.add_argument("--repeat", type=int, help="W1 repeats (default 3, --quick 1)")
    ap.add_argument("--commits", type=int, default=50, help="W2 durable commits per system")
    ap.add_argument("--cold", type=int, help="W3 cold opens per system (default 3, --quick 1)")
    ap.add_argument("--json", metavar="PATH", help="also write every raw measurement here")
    ap.add_argument("--profile", type=int, nargs="?", const=15, default=0, metavar="TOP",
                    help="also cProfile A's W1 point reads inside Pyodide (top TOP functions)")
    args = ap.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.cold = args.cold or (1 if args.quick else 3)
    run(args)


if __name__ == "__main__":
    main()
