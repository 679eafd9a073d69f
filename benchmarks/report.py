"""Tables of benchmarks/browser.py's raw figures (markdown, medians, ratios).

Example::

    from benchmarks.report import report
    report(json.loads(Path("bench.json").read_text()))   # what --json wrote
"""
from __future__ import annotations

import statistics
from typing import Any

PATHS = [  # key, label
    ("js_main", "datasync JS API, main thread, `{tabs:false}`, insert via `executeMany`"),
    ("js_main_tx", "datasync JS API, main thread, `{tabs:false}`, insert via `transaction`"),
    ("js_worker", "datasync JS API, `{worker:true, tabs:false}`"),
    ("js_shared", "datasync JS API, main thread, default shared mode (leader)"),
    ("py_api", "datasync Python API (`await db.execute`)"),
    ("py_conn", "datasync Python `db.connect()`"),
    ("sahpool", "sqlite-wasm `opfs-sahpool` in a module Worker"),
    ("idbfs", "Pyodide `sqlite3` on IDBFS + `syncfs`"),
    ("memory", "Pyodide `sqlite3` on `:memory:` (not durable)"),
    ("floor", "raw IndexedDB floor (4 KiB records, 1 tx per batch)"),
]
W1 = ["insert", "reads", "reads_tx", "update", "delete"]


def median(xs: list[float] | None) -> float | None:
    xs = [x for x in xs or [] if x is not None]
    return statistics.median(xs) if xs else None


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def fmt(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def mb(n: float | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def cell(a: float | None, floor: float | None) -> str:
    return "—" if a is None else f"{fmt(a)} ({ratio(a, floor)})" if floor else fmt(a)


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def w1_times(raw: dict[str, Any], key: str, phase: str) -> float | None:
    if key == "idbfs":
        return median([r["times"][phase] for r in raw["w1_idbfs"]])
    runs = [r.get(key) for r in raw["w1"] if r.get(key) is not None]
    if not runs:
        return None
    if key in ("sahpool", "floor"):
        return median([r[phase] for r in runs])
    return median([r["times"][phase] for r in runs])


def w2_lat(raw: dict[str, Any], key: str) -> list[float] | None:
    v = raw["w2"].get(key)
    return None if v is None else v["lat"] if isinstance(v, dict) else v


def report(raw: dict[str, Any]) -> None:
    meta, args = raw["meta"], raw["meta"]["args"]
    ds, sqlite, py, isolated = raw["env"]
    print(f"Chromium {raw['browser']} headless | Pyodide {raw['boot']['pyodide']} (Python {py}, "
          f"SQLite {sqlite}) | datasync {ds} ({meta['checkout']}) | sqlite-wasm "
          f"{raw['sah_env']['version']} | {meta['cpus']} CPUs, load {meta['load'][0]:.1f} "
          f"before / {meta['load'][1]:.1f} after | crossOriginIsolated={isolated} | W1 x"
          f"{args['repeat']}, W2 {args['commits']} commits on {args['rows']:,} rows, W3 x"
          f"{args['cold']}, boot x{args['boots']} | run took {meta['elapsed_s']:.0f} s\n")
    floor = {p: w1_times(raw, "floor", p) for p in W1}
    w2_floor = median(raw["w2"]["floor"])
    cold = {k: median([r["ms"] for r in v]) for k, v in raw["cold"].items()}
    bulk_floor = raw["floor_bulk"]["ms"]
    first = {k: median([v[1]["ms"] for v in runs]) for k, runs in raw["first"].items()}
    boot_of = {"js_main": "datasync", "js_main_tx": "datasync", "js_shared": "datasync",
               "sahpool": "sahpool", "idbfs": "pyodide", "memory": "pyodide"}
    db_mb = raw["bulk"]["js_main"]["db_bytes"] / 1e6
    print(f"### The issue's table (medians; in brackets the ratio to the raw IndexedDB floor "
          f"of the same column)\n")
    rows = []
    for key, label in PATHS:
        w2 = w2_lat(raw, key)
        bulk = raw["bulk"].get(key, {}).get("ms")
        rows.append([label] + [cell(w1_times(raw, key, p), floor[p]) if key != "floor"
                               else fmt(floor[p]) for p in W1] +
                    [cell(median(w2), w2_floor) if key != "floor" else fmt(w2_floor),
                     cell(cold.get(key), cold["floor"]) if key != "floor" else fmt(cold["floor"]),
                     cell(bulk, bulk_floor) if key != "floor" else fmt(bulk_floor),
                     fmt(first.get(boot_of.get(key, ""), None))])
    table(["path", "W1 insert 1000 (1 txn)", "W1 1000 point SELECTs, autocommit",
           "W1 the same, 1 txn", "W1 update 100", "W1 delete 100",
           f"W2 durable 1-row UPDATE ({db_mb:.1f} MB db)", "W3 cold open + count(*)",
           f"bulk load {args['rows']:,} rows", "boot, returning visit"], rows)
    js, conn = w1_times(raw, "js_main", "reads"), w1_times(raw, "py_conn", "reads")
    n = args["sizes"][1]
    print(f"**JS per call** (target ≤ 1.5x): a point SELECT through `db.query` costs "
          f"{js / n * 1000:.0f} µs, through Python `connect()` in the same page "
          f"{conn / n * 1000:.0f} µs: **{js / conn:.1f}x**; Worker mode "
          f"{w1_times(raw, 'js_worker', 'reads') / n * 1000:.0f} µs, Python API "
          f"{w1_times(raw, 'py_api', 'reads') / n * 1000:.0f} µs, sahpool (in its Worker) "
          f"{w1_times(raw, 'sahpool', 'reads') / n * 1000:.0f} µs, `:memory:` "
          f"{w1_times(raw, 'memory', 'reads') / n * 1000:.1f} µs. Python reads: `connect()` / "
          f"`:memory:` = {conn / w1_times(raw, 'memory', 'reads'):.1f}x (target ≤ 1.3x).\n")
    w2_detail(raw, w2_floor)
    idb_bytes(raw)
    boot_table(raw)
    memory(raw)
    notes(raw)


def w2_detail(raw: dict[str, Any], w2_floor: float) -> None:
    print("### W2 durable single-row commit, by mode\n")
    rows = []
    for key, label in PATHS:
        lat = w2_lat(raw, key)
        if not lat:
            continue
        opened = raw.get(f"open_{key}", {}).get("ms")
        rows.append([label, fmt(median(lat)), fmt(p95(lat)), fmt(min(lat)),
                     ratio(median(lat), w2_floor), fmt(opened) if opened else "—"])
    table(["path", "median", "p95", "min", "/ floor (1 strict 4 KiB put)",
           "open (runtime booted)"], rows)


def idb_bytes(raw: dict[str, Any]) -> None:
    print("### Bytes handed to IndexedDB (sum of value sizes passed to "
          "IDBObjectStore.put/add in the page)\n")
    rows = []
    for key, label in PATHS:
        if key in ("js_worker", "sahpool", "memory", "floor", "js_shared"):
            continue
        runs = raw["w1_idbfs"] if key == "idbfs" else [r[key] for r in raw["w1"]]
        cells = [mb(median([r["bytes"][p] for r in runs])) for p in ("insert", "update", "delete")]
        w2 = raw["w2"].get(key)
        per = (median(w2["bytes"]) if isinstance(w2, dict) else
               median(raw["w2"]["bytes_api" if key == "py_api" else "bytes_conn"])
               if key in ("py_api", "py_conn") else None)
        rows.append([label] + cells + [mb(per)])
    shared = raw["w2"].get("js_shared")
    if shared:
        rows.append([dict(PATHS)["js_shared"], "—", "—", "—", mb(median(shared["bytes"]))])
    table(["path", "W1 insert", "W1 update", "W1 delete", "W2 per commit"], rows)
    rows = []
    for key in ("js_main", "idbfs"):
        b = raw["bulk"][key]
        rows.append([dict(PATHS)[key], fmt(b["ms"]), mb(b["bytes_during"]),
                     mb(b.get("bytes_after")), mb(b["db_bytes"]),
                     ratio(b.get("bytes_after", b["bytes_during"]), b["db_bytes"])])
    s = raw["bulk"]["sahpool"]
    rows.append([dict(PATHS)["sahpool"], fmt(s["ms"]), "— (OPFS)", "—", mb(s["bytes"]), "—"])
    table(["bulk load", "time", "bytes to IDB until durable", "+ background compaction",
           "database size", "bytes / size (target ≤ 1.2x)"], rows)


def boot_table(raw: dict[str, Any]) -> None:
    print("### Boot: navigation to the first query result (fresh profile; first visit, then "
          "a returning visit with the HTTP cache warm)\n")
    rows = []
    for key, label in (("datasync", "datasync JS API (`DataSync.open`, default options)"),
                       ("pyodide", "Pyodide alone (`loadPyodide` + sqlite3 :memory:)"),
                       ("sahpool", "sqlite-wasm sahpool Worker (init + pool + open)")):
        runs = raw["first"][key]
        rows.append([label, fmt(median([r[0]["ms"] for r in runs])),
                     fmt(median([r[1]["ms"] for r in runs])),
                     mb(median([r[0]["weight"]["transfer"] for r in runs])),
                     mb(median([r[1]["weight"]["transfer"] for r in runs])),
                     mb(median([r[0]["weight"]["encoded"] for r in runs])),
                     str(runs[0][0]["weight"]["count"])])
    table(["system", "first visit", "returning visit", "bytes fetched, first",
           "bytes fetched, returning", "encoded body size", "resources"], rows)


def memory(raw: dict[str, Any]) -> None:
    print("### Memory after the cold open (W3 page): growth per database byte\n")
    rows = []
    for key in ("js_main", "js_shared", "idbfs"):
        runs = raw["cold"][key]
        size = runs[0].get("bytes") or raw["bulk"]["js_main"]["db_bytes"]

        def growth(stage: str, kind: str) -> float:
            return median([r[stage][kind] - r["mem0"][kind] for r in runs]) or 0.0
        cells = []
        for stage in ("mem1", "mem2"):
            wasm, ua = growth(stage, "wasm"), growth(stage, "ua")
            cells += [mb(wasm), mb(ua), f"{(wasm + ua) / size:.2f}"]
        rows.append([dict(PATHS)[key], mb(size)] + cells)
    s = raw["cold"]["sahpool"]
    size = s[0]["bytes"]
    heap = [median([r[k] - r["heap0"] for r in s]) for k in ("heap1", "heap2")]
    rows.append([dict(PATHS)["sahpool"], mb(size), mb(heap[0]), "—", f"{heap[0] / size:.2f}",
                 mb(heap[1]), "—", f"{heap[1] / size:.2f}"])
    table(["path", "database", "WASM heap growth, open+count", "UA memory growth",
           "per database byte", "WASM heap growth, + full scan", "UA memory growth",
           "per database byte"], rows)


def notes(raw: dict[str, Any]) -> None:
    print("""Notes (how each figure is taken; all inside the page):
- W1: fresh databases per repeat (one untimed warm-up round first); each phase from its first
  statement until durable. datasync JS/Python: default (relaxed) durability, `await db.sync()`
  ends each write phase; updates/deletes/in-txn reads inside `db.transaction(...)` (Python:
  `async with db.transaction()`, `connect()`: BEGIN/COMMIT). sahpool: the same SQL with oo1
  (`prepare` + `bind/stepReset` for the insert, `selectArray` for reads, `exec` otherwise),
  timed inside its Worker; each COMMIT returns after its OPFS `flush()`. IDBFS:
  `FS.syncfs(false)` ends each write phase. Floor: as many fresh 4 KiB records as datasync's
  Python API flushed for the phase put in one default-durability transaction (to
  `oncomplete`); reads (both columns): each of those inserted 4 KiB records `get()` once,
  in one readonly transaction (the pages a 1000-row table needs; 1000 separate `get()`s
  would cost ~100 ms here, more than any contender).
- W2: the bulk-loaded `users` database; single-row autocommit UPDATEs, each awaited until
  durable: datasync opened `durability: "strict"` (strict IDB transactions), JS `db.execute`
  in each mode on the same database in turn, Python `await db.execute`, `connect()` +
  `commit()` + `await db.sync()`; sahpool `exec` (journal + flush); IDBFS statement +
  `syncfs(false)`. Floor: one 4 KiB put per strict transaction, as many commits before
  and again after the contenders (the machine's load drifts), median of both.
- W3: browser closed and relaunched on the same profile per measurement; Pyodide booted
  first (untimed, as the sahpool runtime's init is); then open + `SELECT count(*)`.
  Floor: `indexedDB.open` + `getAll()` of the datasync image as 4 KiB records.
- Bulk load: one `db.executeMany` of all rows (strict, `{tabs:false}`) + `sync()`;
  bytes: `IDBObjectStore.prototype.put/add` wrapped in the page, summing value sizes
  (typed arrays: byteLength; strings: length; objects: their fields), until `sync()`
  resolved, then until the page has put nothing for 1.5 s (the background compaction).
  Worker mode and sahpool put from their Workers: not counted. Floor: the image as 4 KiB
  records in one strict transaction.
- Boot: `benchmarks/first.html?system=...`, performance.now() at the first result (0 =
  navigation start); page weight = Resource Timing `transferSize` (bytes over the wire;
  a 304 revalidation counts only headers: the server sends `Cache-Control: no-cache`) and
  `encodedBodySize`, of the page plus (sahpool) its Worker's own entries.
- Memory: growth from the booted page (Pyodide loaded, nothing open) to after open +
  count, then after a full scan (`sum(length(name) + length(email))`). WASM heap =
  `pyodide._module.HEAPU8.length` (sahpool: `sqlite3.wasm.heap8u().length` in its Worker);
  UA memory = `performance.measureUserAgentSpecificMemory()` (eager mode; it counts the JS
  heaps and ArrayBuffers, where IDBFS's MEMFS keeps the file, but not the WebAssembly
  Memory, as its totals show); per database byte = (WASM + UA growth) / database size.
  CDP `Performance.getMetrics` JSHeapUsedSize is in the JSON (it excludes ArrayBuffers).
""")
