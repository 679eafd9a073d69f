"""Browser benchmark, boot and tabs: the page's main thread while datasync boots (main
thread vs ``{worker: true}``), and what multi-tab mode costs a lone tab.

Usage::

    python benchmarks/boot.py             # 3 boots per mode, 5 opens and 30 commits per tabs mode
    python benchmarks/boot.py --quick     # 1 boot per mode, 3 opens and 10 commits
    (also run by benchmarks/browser.py, after its workloads)

Headless Chromium on a fresh persistent profile (IndexedDB on disk), pages served by
``playwright.config.py``'s server. Every time is taken in the page with
``performance.now()``:

* **Long tasks**: a ``PerformanceObserver`` for ``longtask`` (buffered), installed
  before navigation, sees every main-thread task over 50 ms of a fresh page that
  imports ``js/datasync.js``, opens a database and runs its first query; reported from
  navigation to that first result: count, longest, their sum, and the time to it.
* **Lone tab**: one page, Pyodide booted once (untimed), then alternately
  ``DataSync.open(fresh name, {tabs: true | false, durability: "strict"})`` (open time)
  and one-row INSERT transactions, each resolving once durable in IndexedDB.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLANK = "tests/browser/blank.html"
OBSERVE = """
window.longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.longTasks.push([e.startTime, e.duration]);
}).observe({type: 'longtask', buffered: true});
"""
FIRST_RESULT = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open(name, options);
  await db.query('SELECT 1 AS one');
  const first = performance.now();
  await new Promise((r) => setTimeout(r, 200));  // let the observer deliver
  const tasks = window.longTasks.filter(([start]) => start < first).map(([, ms]) => ms);
  await db.close();
  return {first, tasks};
}"""
LONE_TAB = """async ([name, tabs, commits]) => {
  const { DataSync } = await import('/js/datasync.js');
  const t0 = performance.now();
  const db = await DataSync.open(name, {tabs, durability: 'strict'});
  const open = performance.now() - t0;
  await db.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
  const lat = [];
  for (let i = 0; i < commits; i++) {
    const t = performance.now();
    await db.execute('INSERT INTO t(v) VALUES (?)', ['row ' + i]);
    lat.push(performance.now() - t);
  }
  const leader = db.isLeader();
  await db.close();
  return {open, lat, leader};
}"""


def long_tasks(ctx: Any, url: str, worker: bool, rep: int) -> dict[str, Any]:
    """One fresh page from navigation to its first query result."""
    page = ctx.new_page()
    page.add_init_script(OBSERVE)
    page.goto(url + BLANK)
    out = page.evaluate(FIRST_RESULT, [f"boot-{'w' if worker else 'm'}-{rep}",
                                       {"worker": worker, "tabs": False}])
    page.close()
    return out


def lone_tab(ctx: Any, url: str, opens: int, commits: int) -> dict[bool, dict[str, list[float]]]:
    page = ctx.new_page()
    page.goto(url + BLANK)
    page.evaluate("async () => { const { DataSync } = await import('/js/datasync.js');"
                  " const db = await DataSync.open('warm', {tabs: false});"
                  " await db.execute('CREATE TABLE IF NOT EXISTS w(x)'); await db.close(); }")
    out: dict[bool, dict[str, list[float]]] = {True: {"open": [], "lat": []},
                                               False: {"open": [], "lat": []}}
    for rep in range(opens):
        for tabs in (rep % 2 == 0, rep % 2 != 0):  # alternate which goes first
            r = page.evaluate(LONE_TAB, [f"lone-{int(tabs)}-{rep}", tabs, commits])
            assert r["leader"], "a lone tab must lead"
            out[tabs]["open"].append(r["open"])
            out[tabs]["lat"].extend(r["lat"])
    page.close()
    return out


def measure(pw: Any, config: Any, url: str, *, boots: int, opens: int,
            commits: int) -> dict[str, Any]:
    """Every measurement, on a fresh persistent profile."""
    with tempfile.TemporaryDirectory(prefix="datasync-boot-bench-") as tmp:
        ctx = config.launch_persistent(pw, Path(tmp) / "profile")
        try:
            tasks = {mode: [] for mode in ("main", "worker")}
            for rep in range(boots):  # alternate, so both see the same machine
                for worker in ((False, True) if rep % 2 == 0 else (True, False)):
                    tasks["worker" if worker else "main"].append(long_tasks(ctx, url, worker, rep))
            tabs = lone_tab(ctx, url, opens, commits)
        finally:
            ctx.close()
    return {"tasks": tasks, "tabs": tabs}


def fmt(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def report(raw: dict[str, Any]) -> None:
    med = statistics.median
    print(f"### Main-thread long tasks (> 50 ms) from navigation to the first query result "
          f"(median of {len(raw['tasks']['main'])} fresh pages per mode)\n")
    print("| mode | long tasks | longest | sum of long tasks | first result at |")
    print("|---|---:|---:|---:|---:|")
    for mode, label in (("main", "main thread `DataSync.open(name)`"),
                        ("worker", "Worker `DataSync.open(name, {worker: true})`")):
        runs = raw["tasks"][mode]
        print(f"| {label} | {med([len(r['tasks']) for r in runs]):.0f} | "
              f"{fmt(med([max(r['tasks'], default=0) for r in runs]))} | "
              f"{fmt(med([sum(r['tasks']) for r in runs]))} | "
              f"{fmt(med([r['first'] for r in runs]))} |")
    print("\nNotes: every run is a fresh page of the same browser (Pyodide's files come from "
          "the HTTP cache after the first); the Worker's page still loads and parses "
          "datasync.js and its modules, and receives each reply as a message.\n")
    tabs = raw["tabs"]
    n_open, n_lat = len(tabs[True]["open"]), len(tabs[True]["lat"])
    print(f"### A lone tab: multi-tab mode `{{tabs: true}}` (the default) vs `{{tabs: false}}` "
          f"(median of {n_open} opens, {n_lat} one-row durable commits)\n")
    print("| | open (Pyodide already booted) | one-row commit, durable (median) | p90 |")
    print("|---|---:|---:|---:|")
    for flag in (True, False):
        lat = sorted(tabs[flag]["lat"])
        print(f"| `{{tabs: {str(flag).lower()}}}` | {fmt(med(tabs[flag]['open']))} | "
              f"{fmt(med(lat))} | {fmt(lat[int(len(lat) * 0.9) - 1])} |")
    cost_open = med(tabs[True]["open"]) - med(tabs[False]["open"])
    cost_commit = med(tabs[True]["lat"]) - med(tabs[False]["lat"])
    print(f"\nCost of multi-tab mode for a lone tab: open {cost_open:+.1f} ms, commit "
          f"{cost_commit:+.2f} ms (median differences; commits are `durability: \"strict\"`: "
          "each resolves once its IndexedDB transaction completed).\n")


def main() -> None:
    from playwright.sync_api import sync_playwright

    from benchmarks.browser import load_config
    from datasync.tools.build import ensure_web

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 boot per mode, fewer commits")
    args = ap.parse_args()
    ensure_web("web")
    config = load_config()
    with sync_playwright() as pw, config.server() as srv:
        raw = measure(pw, config, srv.url, boots=1 if args.quick else 3,
                      opens=3 if args.quick else 5, commits=10 if args.quick else 30)
    report(raw)


if __name__ == "__main__":
    main()
