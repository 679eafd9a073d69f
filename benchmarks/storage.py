"""Storage benchmark: the IndexedDB side of datasync, before vs after, side by side.

Usage::

    python benchmarks/storage.py                          # this checkout only
    python benchmarks/storage.py --baseline /tmp/base     # + another checkout, interleaved

``--baseline DIR`` is a checkout of another commit (``git archive REV | tar -x -C DIR``
with ``node_modules`` linked in); each checkout is served on its own origin (so each
has its own IndexedDB) and the measurements alternate between them in ONE browser
(Debian's Chromium, a fresh on-disk profile), so the ratios compare like with like.
Every time is taken inside the page (``time.perf_counter()`` in Pyodide,
``performance.now()`` in JS); every IndexedDB call is counted by wrappers on the
IDB prototypes (transactions, requests, bytes of the values put), and every
asyncio callback Pyodide schedules (a MessageChannel message: one event-loop hop).

* **load**: ``users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)``, 100,000 rows of
  ~210 bytes (~21 MB), inserted by ``executemany`` in batches of ``--batch`` rows,
  each batch its own transaction, then ``sync()`` and ``close()`` (which compacts):
  bytes handed to IndexedDB / database size.
* **W2**: that database reopened with ``durability="strict"``; ``--commits`` single-row
  autocommit UPDATEs, each timed until durable, ``tabs=False`` and the default
  (shared, a lone leader tab); the floor (C) is one readwrite transaction putting a
  4 KiB record, strict, timed to ``oncomplete``, measured between them.
* **W3**: the browser relaunched, then ``datasync.open`` + ``SELECT count(*)``;
  the floor: ``getAll()`` of the store's own ``segments`` and ``blocks`` stores.
* **memory**: tracemalloc's traced bytes held after a (warm) open + count, per
  database byte.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = "tests/browser/blank.html"

BOOT = """async ({manifest}) => {
  const web = new URL('/web/', location.href);
  const {loadPyodide} = await import(new URL(manifest.pyodide + 'pyodide.mjs', web));
  const py = await loadPyodide({indexURL: String(new URL(manifest.pyodide, web))});
  await py.loadPackage([String(new URL(manifest.wheels.packaging, web)),
                        String(new URL(manifest.wheels.micropip, web))]);
  await py.pyimport('micropip').install(String(new URL(manifest.wheels.datasync, web)), {deps: false});
  window.py = py;
  window.pyRun = async (code) => {
    const r = await py.runPythonAsync(code);
    if (r && typeof r.toJs === 'function') {
      const v = r.toJs({dict_converter: Object.fromEntries}); r.destroy(); return v;
    }
    return r;
  };
  await py.runPythonAsync('import datasync, sqlite3');
  return py.version;
}"""

#: Counts every IndexedDB call and event-loop hop (installed before the page loads).
INSTRUMENT = """(() => {
  const s = window.idbStats = {tx: 0, requests: 0, puts: 0, put_bytes: 0, hops: 0};
  const size = (v) => {
    if (v == null) return 0;
    if (typeof v === 'string') return v.length;
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return v.byteLength;
    let n = 0;
    if (typeof v === 'object') for (const k of Object.keys(v)) {
      const x = v[k];
      if (x instanceof ArrayBuffer || ArrayBuffer.isView(x)) n += x.byteLength;
      else if (Array.isArray(x)) n += 8 * x.length;
      else if (typeof x === 'string') n += x.length;
      else n += 8;
    }
    return n;
  };
  const wrap = (proto, names, extra) => {
    for (const name of names) {
      const orig = proto[name];
      proto[name] = function (...args) { s.requests++; if (extra) extra(name, args); return orig.apply(this, args); };
    }
  };
  wrap(IDBObjectStore.prototype, ['put', 'add'], (n, args) => { s.puts++; s.put_bytes += size(args[0]); });
  wrap(IDBObjectStore.prototype, ['get', 'getAll', 'getAllKeys', 'count', 'delete', 'openCursor', 'clear']);
  wrap(IDBIndex.prototype, ['get', 'getAll', 'getAllKeys', 'count', 'openCursor']);
  const tx = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (...args) { s.tx++; return tx.apply(this, args); };
  const post = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (...args) { s.hops++; return post.apply(this, args); };
  window.idbFloor = async (n) => {
    const open = indexedDB.open('storage-bench-floor', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('r');
    const db = await new Promise((res, rej) => { open.onsuccess = () => res(open.result); open.onerror = rej; });
    const out = [];
    for (let i = 0; i < n; i++) {
      const data = crypto.getRandomValues(new Uint8Array(4096));
      const t0 = performance.now();
      const t = db.transaction(['r'], 'readwrite', {durability: 'strict'});
      t.objectStore('r').put({v: i, c: 0, d: data}, i % 64);
      await new Promise((res, rej) => { t.oncomplete = res; t.onabort = rej; });
      out.push(performance.now() - t0);
    }
    db.close();
    return out;
  };
  // datasync's commit in plain JS: read the metadata, put two 4 KiB block records
  // (store with a 'version' index) and the metadata, commit() once the read answers.
  window.idbShape = async (n) => {
    const open = indexedDB.open('storage-bench-shape', 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore('meta');
      open.result.createObjectStore('blocks').createIndex('version', 'v');
      open.result.createObjectStore('segments').createIndex('version', 'v');
    };
    const db = await new Promise((res, rej) => { open.onsuccess = () => res(open.result); open.onerror = rej; });
    const out = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const t = db.transaction(['meta', 'blocks', 'segments'], 'readwrite', {durability: 'strict'});
      const meta = t.objectStore('meta'), blocks = t.objectStore('blocks');
      const get = meta.get('meta');
      get.onsuccess = () => t.commit();
      for (const k of [1, i % 64 + 2]) blocks.put({v: i, c: 0, d: crypto.getRandomValues(new Uint8Array(4096))}, ['main', k]);
      meta.put(JSON.stringify({version: i, file_size: 21e6, epoch: 0}), 'meta');
      await new Promise((res, rej) => { t.oncomplete = res; t.onabort = rej; });
      out.push(performance.now() - t0);
    }
    db.close();
    return out;
  };
  window.idbColdRead = async (name) => {
    const t0 = performance.now();
    const open = indexedDB.open(name);
    const db = await new Promise((res, rej) => { open.onsuccess = () => res(open.result); open.onerror = rej; });
    const t = db.transaction(['segments', 'blocks', 'meta'], 'readonly');
    const reqs = [t.objectStore('meta').get('meta'), t.objectStore('segments').getAll(),
                  t.objectStore('blocks').getAll()];
    const vals = await Promise.all(reqs.map((r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = rej; })));
    const ms = performance.now() - t0;
    let bytes = 0;
    for (const v of [...vals[1], ...vals[2]]) bytes += v.d ? v.d.byteLength : 0;
    db.close();
    return {ms, bytes, records: vals[1].length + vals[2].length};
  };
})();"""

IN_PYODIDE = r'''
import random, time, tracemalloc
import js
import datasync
perf = time.perf_counter
MS = 1000.0
USERS = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)"
INSERT = "INSERT INTO users(id, name, email) VALUES (?, ?, ?)"
UPDATE = "UPDATE users SET email = ? WHERE id = ?"
COUNT = "SELECT count(*) FROM users"

def counters():
    return dict(js.idbStats.to_py())

def delta(a, b):
    return {k: b[k] - a[k] for k in a}

def letters(rng, n):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))

async def load(rows, batch, seed):
    rng = random.Random(seed)
    c0 = counters()
    t0 = perf()
    db = await datasync.open("bench", tabs=False)
    await db.execute(USERS)
    for lo in range(1, rows + 1, batch):
        chunk = [(i, rng.randbytes(50).hex(), rng.randbytes(45).hex() + "@example.com")
                 for i in range(lo, min(lo + batch, rows + 1))]
        await db.executemany(INSERT, chunk)
    await db.sync()
    t1 = perf()
    size = db.stats()["file_size"]
    await db.close()
    t2 = perf()
    c = delta(c0, counters())
    return {"size": size, "bytes": c["put_bytes"], "tx": c["tx"], "puts": c["puts"],
            "load_ms": (t1 - t0) * MS, "close_ms": (t2 - t1) * MS}

async def w2(n, seed, tabs):
    rng = random.Random(seed)
    db = await (datasync.open("bench", durability="strict") if tabs else
                datasync.open("bench", durability="strict", tabs=False))
    rows = (await db.execute(COUNT)).rows[0][0]
    work = [(rng.randbytes(45).hex() + "@example.org", rng.randint(1, rows)) for _ in range(n + 5)]
    for params in work[:5]:  # warm
        await db.execute(UPDATE, params)
    lat, per = [], []
    for params in work[5:]:
        c0 = counters()
        t0 = perf()
        await db.execute(UPDATE, params)
        lat.append((perf() - t0) * MS)
        per.append(delta(c0, counters()))
    await db.close()
    med = lambda k: sorted(p[k] for p in per)[len(per) // 2]
    return {"lat": lat, "tx": med("tx"), "requests": med("requests"), "puts": med("puts"),
            "put_bytes": med("put_bytes"), "hops": med("hops")}

async def w3(tabs):
    t0 = perf()
    db = await (datasync.open("bench") if tabs else datasync.open("bench", tabs=False))
    t1 = perf()
    count = (await db.execute(COUNT)).rows[0][0]
    t2 = perf()
    size = db.stats()["file_size"]
    await db.close()
    return {"ms": (t2 - t0) * MS, "open": (t1 - t0) * MS, "query": (t2 - t1) * MS,
            "count": count, "size": size}

async def memory():
    import gc
    gc.collect()
    tracemalloc.start()
    db = await datasync.open("bench", tabs=False)
    count = (await db.execute(COUNT)).rows[0][0]
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = db.stats()["file_size"]
    await db.close()
    return {"held": held, "peak": peak, "size": size, "count": count}
'''


class Side:
    """One checkout: its web build, its server (its own origin), its pages."""

    def __init__(self, label: str, root: Path, stack: contextlib.ExitStack) -> None:
        from datasync.tools.build import ensure_web
        from datasync.tools.serve import serving

        self.label, self.root = label, root
        self.manifest = ensure_web("web", root=root, quiet=True)
        self.server = stack.enter_context(serving(root=root, port=0, coop_coep=True))

    def page(self, ctx: Any) -> Any:
        page = ctx.new_page()
        page.goto(self.server.url + PAGE)
        page.evaluate(BOOT, {"manifest": self.manifest})
        page.evaluate("(code) => window.pyRun(code)", IN_PYODIDE + "\nNone")
        return page


def py(page: Any, code: str) -> Any:
    return page.evaluate("(code) => window.pyRun(code)", code)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def run(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    from benchmarks.browser import load_config

    config = load_config()
    started = time.perf_counter()
    with sync_playwright() as pw, contextlib.ExitStack() as stack, \
            tempfile.TemporaryDirectory(prefix="datasync-storage-bench-") as tmp:
        sides = [Side("after (this checkout)", ROOT, stack)]
        if args.baseline:
            sides.insert(0, Side(f"before ({args.baseline})", Path(args.baseline), stack))
        profile = Path(tmp) / "profile"
        profile.mkdir()
        ctx = config.launch_persistent(pw, profile)
        ctx.add_init_script(INSTRUMENT)
        pages = [side.page(ctx) for side in sides]
        loads = [py(p, f"await load({args.rows}, {args.batch}, 1)") for p in pages]
        w2: dict[tuple[int, bool], list[Any]] = {}
        floor: list[float] = []
        shape: list[float] = []
        for rep in range(args.repeat if "w2" in args.parts else 0):
            for tabs in (False, True):
                for i, p in enumerate(pages):
                    w2.setdefault((i, tabs), []).append(
                        py(p, f"await w2({args.commits}, {rep}, {tabs})"))
                floor += pages[-1].evaluate("(n) => window.idbFloor(n)", args.commits)
                shape += pages[-1].evaluate("(n) => window.idbShape(n)", args.commits)
        mem = [py(p, "await memory()") for p in pages]
        ctx.close()
        cold: dict[tuple[int, Any], list[Any]] = {}
        for _ in range(args.cold if "w3" in args.parts else 0):
            for i, side in enumerate(sides):
                for what in (False, True, "floor"):
                    ctx = config.launch_persistent(pw, profile)
                    ctx.add_init_script(INSTRUMENT)
                    try:
                        p = side.page(ctx)
                        if what == "floor":
                            got = p.evaluate("() => window.idbColdRead('datasync:bench')")
                        else:
                            got = py(p, f"await w3({what})")
                        cold.setdefault((i, what), []).append(got)
                    finally:
                        ctx.close()
    elapsed = time.perf_counter() - started
    print(f"datasync storage benchmark | {args.rows:,} rows, batches of {args.batch}, "
          f"W2 {args.commits} commits x{args.repeat}, W3 x{args.cold} | {elapsed:.0f} s\n")
    c = med(floor) if floor else float("nan")
    print(f"C floor: one strict readwrite transaction putting a 4 KiB record: "
          f"median {c:.2f} ms (min {min(floor):.2f}, {len(floor)} commits); datasync's "
          f"transaction shape in JS (get meta, 2 block puts, meta put, commit()): "
          f"{med(shape):.2f} ms ({med(shape) / c:.2f}x)\n")
    print("| measurement | " + " | ".join(s.label for s in sides) + " |")
    print("|---|" + "---:|" * len(sides))

    def row(name: str, cells: list[str]) -> None:
        print(f"| {name} | " + " | ".join(cells) + " |")

    row("load: database size", [f"{ld['size'] / 1e6:.1f} MB" for ld in loads])
    row("load: bytes handed to IndexedDB", [f"{ld['bytes'] / 1e6:.1f} MB "
                                            f"({ld['bytes'] / ld['size']:.2f}x)" for ld in loads])
    row("load: transactions / puts", [f"{ld['tx']} / {ld['puts']}" for ld in loads])
    row("load: time to durable / close", [f"{ld['load_ms']:.0f} / {ld['close_ms']:.0f} ms"
                                          for ld in loads])
    for tabs in (False, True) if w2 else ():
        mode = "default (lone leader tab)" if tabs else "tabs=False"
        lats = [[x for r in w2[(i, tabs)] for x in r["lat"]] for i in range(len(sides))]
        row(f"W2 {mode}: median commit", [f"{med(xs):.2f} ms ({med(xs) / c:.2f}x C)"
                                          for xs in lats])
        row(f"W2 {mode}: min / p90", [
            f"{min(xs):.2f} / {statistics.quantiles(xs, n=10)[-1]:.2f} ms" for xs in lats])
        row(f"W2 {mode}: per commit tx / requests / puts / bytes / hops", [
            "{tx} / {requests} / {puts} / {put_bytes} / {hops}".format(**w2[(i, tabs)][-1])
            for i in range(len(sides))])
    for what, name in ((False, "tabs=False"), (True, "default")) if cold else ():
        row(f"W3 cold open + count ({name})", [
            f"{med([r['ms'] for r in cold[(i, what)]]):.0f} ms (open "
            f"{med([r['open'] for r in cold[(i, what)]]):.0f}, count "
            f"{med([r['query'] for r in cold[(i, what)]]):.0f})" for i in range(len(sides))])
    if cold:
        row("W3 floor: getAll of its segments + blocks", [
            f"{med([r['ms'] for r in cold[(i, 'floor')]]):.0f} ms "
            f"({cold[(i, 'floor')][0]['records']} records)" for i in range(len(sides))])
    row("memory: traced bytes held / database bytes", [
        f"{m['held'] / m['size']:.2f}x (peak {m['peak'] / m['size']:.2f}x)" for m in mem])
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="another checkout to measure alongside this one")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--commits", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cold", type=int, default=2)
    ap.add_argument("--parts", default="w2,w3", help="which of w2,w3 to run (load, memory: always)")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
