"""Multi-tab benchmark: forwarded writes and change propagation in real Chromium.

Usage::

    python benchmarks/tabs.py              # 200 writes per measurement
    python benchmarks/tabs.py --writes 50  # quicker

Two pages of one app open the same database with ``DataSync.open(name, {tabs: true})``
(``js/datasync.js``; Pyodide and the wheel come from the local server, built from this
checkout by ``datasync.tools.build.ensure_web``). The first page leads, the second
follows. Every time is taken inside the pages with ``performance.now()``; to compare
two pages' clocks, ``performance.timeOrigin + performance.now()`` (one monotonic clock
per browser). Measurements, each a sequence of single-row INSERTs awaited one by one:

* **local**: the leader's ``await db.execute(INSERT)`` (runs in its own Pyodide, then
  flushes to IndexedDB before resolving, as every multi-tab write does).
* **forwarded**: the follower's ``await db.execute(INSERT)``: SQLite refuses it
  read-only, it goes to the leader over BroadcastChannel, is applied and flushed
  there, and resolves once the follower's own copy holds it (read-your-writes).
* **queued**: the follower's ``await db.queueWrite(INSERT)`` (durable outbox first).
* **propagation**: the leader inserts; the time until the follower's ``onChange``
  callback runs, from the leader's call and from the moment that call resolved.
* **single tab**: the same INSERTs on a database opened without ``tabs`` and
  ``durability: "strict"`` (each durable before resolving), the one-tab reference.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from browser import load_config  # noqa: E402
from report import fmt, p95, table  # noqa: E402  (the browser benchmark's tables)

PAGE = "tests/browser/blank.html"

OPEN = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, options);
  window.seen = [];
  window.db.onChange((c) => window.seen.push({at: performance.timeOrigin + performance.now(),
                                               version: c.version, tables: c.tables}));
  return window.db.getLeaderInfo();
}"""

WRITES = """async ([n, how, tag]) => {
  await window.db.execute('CREATE TABLE IF NOT EXISTS b(tag TEXT, i INTEGER, at REAL)');
  const out = [];
  for (let i = 0; i < n + 5; i++) {  // the first 5 warm up
    const t0 = performance.now();
    const sql = 'INSERT INTO b VALUES (?, ?, ?)';
    const params = [tag, i, performance.timeOrigin + t0];
    if (how === 'queued') await window.db.queueWrite(sql, params);
    else await window.db.execute(sql, params);
    if (i >= 5) out.push(performance.now() - t0);
  }
  return out;
}"""

LEADER_STREAM = """async ([n]) => {
  const out = [];
  for (let i = 0; i < n + 5; i++) {
    const start = performance.timeOrigin + performance.now();
    await window.db.execute('INSERT INTO b VALUES (?, ?, ?)', ['prop', i, start]);
    const resolved = performance.timeOrigin + performance.now();
    out.push({i, start, resolved});
    await new Promise((r) => setTimeout(r, 20));  // let the follower catch up: one change each
  }
  return out;
}"""

FOLLOWER_SEEN = """async ([n]) => {
  // the follower's onChange times, matched to the leader's rows by the version they hold
  const rows = await window.db.query("SELECT i, at FROM b WHERE tag = 'prop' ORDER BY i");
  return {rows, seen: window.seen};
}"""


def propagation(stream: list[dict[str, Any]], seen: list[dict[str, Any]],
                warmup: int = 5) -> tuple[list[float], list[float]]:
    """Per leader write: ms from its call, and from its resolution, to the first
    follower onChange at or after the call (each write is followed by a pause, so
    the first change after a call is the one carrying it)."""
    from_call, from_resolve = [], []
    times = sorted(s["at"] for s in seen)
    for w in stream[warmup:]:
        later = [t for t in times if t >= w["start"]]
        if later:
            from_call.append(later[0] - w["start"])
            from_resolve.append(later[0] - w["resolved"])
    return from_call, from_resolve


def run(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    from datasync.tools.build import ensure_web

    config = load_config()
    ensure_web("web")
    started = time.perf_counter()
    load_before = os.getloadavg()
    with config.server() as srv, sync_playwright() as pw, \
            tempfile.TemporaryDirectory(prefix="datasync-tabs-bench-") as profile:
        ctx = config.launch_persistent(pw, profile)
        try:
            def page() -> Any:
                p = ctx.new_page()
                p.goto(srv.url + PAGE)
                return p

            leader, follower, single = page(), page(), page()
            leader.evaluate(OPEN, ["bench", {"tabs": True}])
            leader.evaluate("() => window.db.waitForLeadership()")
            follower.evaluate(OPEN, ["bench", {"tabs": True}])
            assert not follower.evaluate("() => window.db.isLeader()")
            single.evaluate(OPEN, ["bench-single", {"durability": "strict"}])
            n = args.writes
            local = leader.evaluate(WRITES, [n, "execute", "local"])
            forwarded = follower.evaluate(WRITES, [n, "execute", "forwarded"])
            queued = follower.evaluate(WRITES, [n, "queued", "queued"])
            one_tab = single.evaluate(WRITES, [n, "execute", "single"])
            follower.evaluate("() => { window.seen = []; }")
            stream = leader.evaluate(LEADER_STREAM, [n])
            time.sleep(0.5)
            seen = follower.evaluate(FOLLOWER_SEEN, [n])
            from_call, from_resolve = propagation(stream, seen["seen"])
            count = leader.evaluate("() => window.db.query('SELECT count(*) AS n FROM b')")
            version = leader.evaluate("() => window.db.getLeaderInfo()")
            browser_version = ctx.browser.version if ctx.browser else "?"
        finally:
            ctx.close()
    elapsed = time.perf_counter() - started
    print(f"Chromium {browser_version} (headless) | {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after | {n} writes per "
          f"measurement after 5 warm-up writes | run took {elapsed:.0f} s\n")
    print("### Writes from two tabs of one database (each awaited before the next)\n")
    base = statistics.median(local)
    rows = []
    for label, xs in [("leader: `execute(INSERT)` (local)", local),
                      ("follower: `execute(INSERT)` (forwarded)", forwarded),
                      ("follower: `queueWrite(INSERT)` (outbox, then forwarded)", queued),
                      ("one tab, no `tabs`, durability strict", one_tab)]:
        med = statistics.median(xs)
        rows.append([label, fmt(med), fmt(p95(xs)), fmt(min(xs)), f"{med / base:.2f}x"])
    table(["write", "median", "p95", "min", "median / local"], rows)
    print("### Change propagation: leader write → follower `onChange`\n")
    table(["measured from", "median", "p95", "max", "changes matched"], [
        ["the leader's `execute()` call", fmt(statistics.median(from_call)),
         fmt(p95(from_call)), fmt(max(from_call)), f"{len(from_call)} of {n}"],
        ["the moment that call resolved", fmt(statistics.median(from_resolve)),
         fmt(p95(from_resolve)), fmt(max(from_resolve)), f"{len(from_resolve)} of {n}"],
    ])
    print(f"Notes: the leader's call resolves after its flush's IndexedDB transaction "
          f"completed and the `changed` notice was posted; the follower then reads the "
          f"blocks newer than its version from IndexedDB and runs `onChange` (negative "
          f"values: the follower saw it before the leader's promise resolved). Rows in the "
          f"leader's table: {count[0]['n']}; leadership epoch {version['epoch']}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=200, help="writes per measurement")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
