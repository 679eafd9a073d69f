"""Browser benchmark: what one JS API call costs (issue 11), against Python ``connect()``
in the same page, on the main thread and in Worker mode, before and after a change.

Usage::

    python benchmarks/js_api.py                      # this checkout, 3 repeats
    python benchmarks/js_api.py --before ../base     # + another checkout, side by side
    python benchmarks/js_api.py --quick              # 1 repeat

``--before DIR``: a checkout whose ``web/`` was built (``python -m datasync build`` run
there); both are served at once (two origins, so two IndexedDB stores) in one headless
Chromium on a fresh persistent profile (IndexedDB on disk), and their rounds alternate,
so the ratios come from one run. Every time is taken in the page with
``performance.now()`` (Python's ``time.perf_counter()`` for the connect() reference).

W1 on ``users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)`` through the JS API
(``DataSync.open``; every write phase ends with ``await db.sync()``, so it counts once
durable): insert 1000 rows with ``executeMany`` / with 1000 ``tx.execute`` in one
``db.transaction``; 1000 autocommit point ``db.query``; 1000 ``tx.query`` in one
transaction; 100 updates and 100 deletes in one transaction each. Modes: main thread
and ``{worker: true}``, each with ``{tabs: false}`` and the default (shared by tabs: a
lone tab, which leads). The reference: the same SQL through ``db.connect()`` of a
``datasync.open(name, tabs=False)`` in Pyodide, in the same page. Floors: a JS call of
a Python no-op (main thread), a postMessage round trip to an echo Worker.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLANK = "tests/browser/blank.html"
MODES = {"main, tabs:false": {"tabs": False}, "main, shared (leader)": {},
         "worker, tabs:false": {"worker": True, "tabs": False},
         "worker, shared (leader)": {"worker": True}}
PHASES = ["insert executeMany", "insert 1000 tx.execute", "read autocommit (db.query)",
          "read in 1 txn (tx.query)", "update 100 in 1 txn", "delete 100 in 1 txn"]

W1 = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  const users = 'CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)';
  const insert = 'INSERT INTO users(id, name, email) VALUES (?, ?, ?)';
  const point = 'SELECT name, email FROM users WHERE id = ?';
  const rows = Array.from({length: 1000}, (_, i) => [i + 1, `user${String(i + 1).padStart(5, '0')}`,
                                                      `user${i + 1}@example.com`]);
  const keys = Array.from({length: 1000}, (_, i) => 1 + ((i * 7919) % 1000));
  const out = {};
  const timed = async (phase, fn) => { const t0 = performance.now(); await fn(); out[phase] = performance.now() - t0; };
  const a = await DataSync.open(name + '-a', options);
  await a.execute(users); await a.sync();
  await timed('insert executeMany', async () => { await a.executeMany(insert, rows); await a.sync(); });
  const b = await DataSync.open(name + '-b', options);
  await b.execute(users); await b.sync();
  await timed('insert 1000 tx.execute', async () => {
    await b.transaction(async (tx) => { for (const r of rows) await tx.execute(insert, r); });
    await b.sync();
  });
  await timed('read autocommit (db.query)', async () => { for (const k of keys) await a.query(point, [k]); });
  await timed('read in 1 txn (tx.query)', async () => {
    await a.transaction(async (tx) => { for (const k of keys) await tx.query(point, [k]); });
  });
  await timed('update 100 in 1 txn', async () => {
    await a.transaction(async (tx) => {
      for (let j = 0; j < 100; j++) await tx.execute('UPDATE users SET email = ? WHERE id = ?', [`changed${j}@example.org`, keys[j]]);
    });
    await a.sync();
  });
  await timed('delete 100 in 1 txn', async () => {
    await a.transaction(async (tx) => { for (let j = 0; j < 100; j++) await tx.execute('DELETE FROM users WHERE id = ?', [keys[500 + j]]); });
    await a.sync();
  });
  await a.close(); await b.close();
  return out;
}"""

CONNECT = """async ([name]) => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open(name + '-js', {tabs: false});
  const py = db.pyodide;
  const r = await py.runPythonAsync(`
import datasync, time, json
perf = time.perf_counter
db = await datasync.open(${JSON.stringify(name)}, tabs=False)
conn = db.connect()
conn.execute('CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)')
await db.sync()
rows = [(i, f'user{i:05d}', f'user{i}@example.com') for i in range(1, 1001)]
keys = [1 + (i * 7919) % 1000 for i in range(1000)]
out = {}
t0 = perf(); conn.execute('BEGIN'); conn.executemany('INSERT INTO users(id, name, email) VALUES (?, ?, ?)', rows)
conn.execute('COMMIT'); await db.sync(); out['insert executeMany'] = (perf() - t0) * 1000
t0 = perf()
for k in keys: conn.execute('SELECT name, email FROM users WHERE id = ?', (k,)).fetchall()
out['read autocommit (db.query)'] = (perf() - t0) * 1000
t0 = perf(); conn.execute('BEGIN')
for k in keys: conn.execute('SELECT name, email FROM users WHERE id = ?', (k,)).fetchall()
conn.execute('COMMIT'); out['read in 1 txn (tx.query)'] = (perf() - t0) * 1000
t0 = perf(); conn.execute('BEGIN')
for j in range(100): conn.execute('UPDATE users SET email = ? WHERE id = ?', (f'changed{j}@example.org', keys[j]))
conn.execute('COMMIT'); await db.sync(); out['update 100 in 1 txn'] = (perf() - t0) * 1000
t0 = perf(); conn.execute('BEGIN')
for j in range(100): conn.execute('DELETE FROM users WHERE id = ?', (keys[500 + j],))
conn.execute('COMMIT'); await db.sync(); out['delete 100 in 1 txn'] = (perf() - t0) * 1000
conn.close(); await db.close()
def noop(*args): return None
json.dumps(out)
`);
  const out = JSON.parse(r);
  const noop = py.globals.get('noop');
  let t0 = performance.now();
  for (let i = 0; i < 1000; i++) await noop('SELECT 1', '[1]');
  out['floor: JS -> Python call (1000)'] = performance.now() - t0;
  noop.destroy();
  const echo = new Worker(URL.createObjectURL(new Blob(['onmessage = (e) => postMessage(e.data);'],
                                                        {type: 'text/javascript'})));
  const roundTrip = (m) => new Promise((resolve) => { echo.onmessage = (e) => resolve(e.data); echo.postMessage(m); });
  for (let i = 0; i < 100; i++) await roundTrip({id: i, args: ['SELECT 1', [1]]});
  t0 = performance.now();
  for (let i = 0; i < 1000; i++) await roundTrip({id: i, args: ['SELECT 1', [1]]});
  out['floor: postMessage round trip (1000)'] = performance.now() - t0;
  echo.terminate();
  await db.close();
  return out;
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="another checkout (web/ built) to compare")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    from playwright.sync_api import sync_playwright

    from datasync.tools.build import ensure_web
    from datasync.tools.serve import serving

    ensure_web("web")
    roots = {"after": ROOT}
    if args.before:
        roots = {"before": args.before.resolve(), **roots}
    from benchmarks.browser import load_config

    config = load_config()
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    with sync_playwright() as p, ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="datasync-js-api-"))
        context = config.launch_persistent(p, tmp)
        stack.callback(context.close)
        pages = {}
        for label, root in roots.items():
            server = stack.enter_context(serving(root=root, port=0, coop_coep=True))
            page = context.new_page()
            page.set_default_timeout(600_000)
            page.goto(server.url + BLANK)
            pages[label] = page
        for rep in range(repeat + 1):  # round 0 warms up (the JIT tiers up), not counted
            for label, page in pages.items():
                for mode, options in MODES.items():
                    out = page.evaluate(W1, [f"w1-{rep}-{mode[:4]}-{'t' if 'tabs' in mode else 's'}",
                                             options])
                    if rep:
                        for phase, ms in out.items():
                            results.setdefault((label, mode), {}).setdefault(phase, []).append(ms)
                out = page.evaluate(CONNECT, [f"conn-{rep}"])
                if rep:
                    for phase, ms in out.items():
                        results.setdefault((label, "Python connect()"), {}).setdefault(
                            phase, []).append(ms)
    report(results, list(roots), repeat)


def report(results: dict[tuple[str, str], dict[str, list[float]]], labels: list[str],
           repeat: int) -> None:
    def med(label: str, mode: str, phase: str) -> str:
        values = results.get((label, mode), {}).get(phase)
        return f"{statistics.median(values):.1f}" if values else "-"

    print(f"\nW1 through the JS API, ms for the phase (median of {repeat}; "
          f"{' | '.join(labels)} side by side)\n")
    for mode in MODES:
        print(f"### {mode}\n")
        print("| phase | " + " | ".join(labels) + " | Python connect() (" + labels[-1] + ") |")
        print("|---|" + "---|" * (len(labels) + 1))
        for phase in PHASES:
            cells = [med(label, mode, phase) for label in labels]
            print(f"| {phase} | " + " | ".join(cells) + f" | {med(labels[-1], 'Python connect()', phase)} |")
        print()
    print("Floors (same page, " + labels[-1] + "), ms per 1000:")
    for phase in ("floor: JS -> Python call (1000)", "floor: postMessage round trip (1000)"):
        print(f"- {phase}: {med(labels[-1], 'Python connect()', phase)}")
    point = "read autocommit (db.query)"
    conn = results.get((labels[-1], "Python connect()"), {}).get(point)
    if conn:
        for label in labels:
            for mode in MODES:
                values = results.get((label, mode), {}).get(point)
                if values:
                    print(f"- {label} {mode}: db.query point {statistics.median(values):.1f} µs/call, "
                          f"{statistics.median(values) / statistics.median(conn):.2f}x connect()")


if __name__ == "__main__":
    main()
