"""Browser benchmark (issue 11): every datasync path against its peers, side by side.

Usage::

    python benchmarks/browser.py                   # full: 3 repeats, medians (~10 min)
    python benchmarks/browser.py --quick           # 1 repeat, smaller W2/bulk (~3 min)
    python benchmarks/browser.py --json raw.json   # + every raw figure
    python benchmarks/browser.py --checkout ../wt  # datasync (web/, js/) of another checkout

Headless Chromium (``playwright.config.py``, a fresh persistent profile: IndexedDB and
OPFS on disk) loads ``benchmarks/browser.html`` from the local server with COOP/COEP
(5 µs clock). ``web/`` is built from the checkout measured; sqlite-wasm comes from
``node_modules/@sqlite.org/sqlite-wasm`` (``make npm``); nothing from a CDN. Every
figure is taken inside the page (``performance.now()``, or ``time.perf_counter()`` in
Pyodide; sahpool's inside its Worker), never around Playwright calls. The paths, the
workloads and how each figure is taken are in ``benchmarks/report.py``'s notes, printed
under the tables.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

PAGE = "benchmarks/browser.html"
FIRST = "benchmarks/first.html"
SIDE = (Path(__file__).parent / "pyodide_side.py").read_text()
EAGER_MEMORY = "--enable-blink-features=ForceEagerMeasureMemory"
JS_PATHS = {  # key -> (DataSync.open options for W1, how W1 inserts)
    "js_main": ({"tabs": False}, "executeMany"),
    "js_main_tx": ({"tabs": False}, "transaction"),
    "js_worker": ({"tabs": False, "worker": True}, "executeMany"),
}


def load_config() -> Any:
    """playwright.config.py (its name has a dot: loaded by path)."""
    spec = importlib.util.spec_from_file_location("datasync_playwright_config",
                                                  ROOT / "playwright.config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BenchPage:
    """A page of ``url``; ``boot()`` loads Pyodide through js/datasync.js and the
    Python half (pyodide_side.py)."""

    def __init__(self, ctx: Any, url: str) -> None:
        self.page = ctx.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.goto(url)
        self.page.wait_for_function("() => window.benchReady === true")

    def boot(self) -> dict[str, Any]:
        out = self.js("() => window.bench.boot()")
        self.py(SIDE + "\nNone")
        return out

    def js(self, expression: str, *args: Any) -> Any:
        try:
            return self.page.evaluate(expression, list(args) if len(args) > 1 else
                                      (args[0] if args else None))
        except Exception:
            print("\n".join(self.console[-20:]), file=sys.stderr)
            raise

    def call(self, method: str, *args: Any) -> Any:
        """window.bench[method](...args)."""
        return self.js(f"(a) => window.bench.{method}(...a)", list(args))

    def py(self, code: str) -> Any:
        return self.call("py", code)

    def memory(self) -> dict[str, float]:
        """WASM heap (Pyodide's HEAPU8) and JS heap used (CDP Performance.getMetrics,
        after a forced GC) of this page, and ``measureUserAgentSpecificMemory()``
        (every heap and ArrayBuffer of the page and its Workers), in bytes."""
        cdp = self.page.context.new_cdp_session(self.page)
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        cdp.detach()
        return {"wasm": self.call("wasmHeap"), "js": metrics["JSHeapUsedSize"],
                "ua": self.call("uaMemory")}


def main_session(pw: Any, config: Any, url: str, url_b: str, profile: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    """W1 for every path, bulk load, W2; leaves the databases for W3 in ``profile``."""
    sizes, rows, n = args.sizes, args.rows, args.commits
    raw: dict[str, Any] = {"w1": [], "w2": {}, "bulk": {}}
    ctx = config.launch_persistent(pw, profile)
    raw["browser"] = ctx.browser.version if ctx.browser else "?"
    page = BenchPage(ctx, url)
    raw["boot"] = page.boot()
    raw["env"] = page.py("import sys\n[datasync.__version__, sqlite3.sqlite_version, "
                         "sys.version.split()[0], bool(js.crossOriginIsolated)]")
    raw["sah_env"] = page.call("sah", "init", {})
    for rep in ["warmup"] + list(range(args.repeat)):  # the first round warms the JITs up
        seed = 42 + (rep if rep != "warmup" else 100)
        got: dict[str, Any] = {}
        for key, (options, via) in JS_PATHS.items():
            got[key] = page.call("w1", f"w1-{key}-{rep}", options, sizes, seed, via)
        got.update(page.py(f"await w1_round({rep!r}, {sizes}, {seed})"))
        got["sahpool"] = page.call("sah", "w1", {"sizes": sizes, "seed": seed})
        blocks = got["py_api"]["blocks"]
        got["floor"] = {k: page.call("putRecords", max(int(blocks[k]), 1), "default")
                        for k in ("insert", "update", "delete")}
        have = max(int(blocks["insert"]), 1)  # the database's pages, each read once
        got["floor"]["reads"] = got["floor"]["reads_tx"] = page.call("getRecords", have, have)
        if rep != "warmup":
            raw["w1"].append(got)
    # ---- bulk load + W2 on one 100,000-row database, every datasync mode in turn ----
    strict = {"tabs": False, "durability": "strict"}
    floor_before = page.call("commitLatency", n, "strict")  # and after: the load drifts
    page.call("open", "w2", "w2", strict)
    raw["bulk"]["js_main"] = page.call("bulk", "w2", rows, args.name_len, 7)
    raw["w2"]["js_main"] = page.call("commits", "w2", n, rows, 8)
    raw["image_bytes"] = page.call("exportImage", "w2")
    page.call("close", "w2")
    raw["floor_bulk"] = page.call("writeImage", "strict")
    # Each mode its own seed (JS main 8, Python 10 and 11): an UPDATE that writes what
    # a row already holds dirties no page in SQLite, so a repeated seed times no-ops.
    for key, options, seed in (("js_worker", {**strict, "worker": True}, 9),
                               ("js_shared", {"durability": "strict"}, 12)):
        raw[f"open_{key}"] = page.call("open", "w2", "w2", options)
        raw["w2"][key] = page.call("commits", "w2", n, rows, seed)
        page.call("close", "w2")
    raw["w2"].update(page.py(f"await w2_python('w2', {n}, {rows}, 10)"))
    raw["w2"]["floor"] = floor_before + page.call("commitLatency", n, "strict")
    raw["bulk"]["sahpool"] = page.call("sah", "build", {"file": "/w2.db", "rows": rows,
                                                        "nameLen": args.name_len, "seed": 7})
    raw["w2"]["sahpool"] = page.call("sah", "commits", {"file": "/w2.db", "n": n,
                                                        "rows": rows, "seed": 8})
    page.call("sah", "close", {"file": "/w2.db"})
    page.call("sahStop")
    page.page.close()
    # ---- B: Pyodide's sqlite3 on IDBFS, on its own origin ----------------------------
    page = BenchPage(ctx, url_b)
    page.boot()
    page.py("mount_idbfs()\nawait syncfs(True)")
    page.py(f"await w1_idbfs({sizes}, 1)")  # warm-up
    raw["w1_idbfs"] = [page.py(f"await w1_idbfs({sizes}, {42 + rep})")
                       for rep in range(args.repeat)]
    raw["bulk"]["idbfs"] = page.py(f"await build_idbfs({rows}, {args.name_len}, 7)")
    raw["w2"]["idbfs"] = page.py(f"await commits_idbfs({n}, {rows}, 8)")
    page.page.close()
    ctx.close()
    return raw


def cold_session(pw: Any, config: Any, url: str, url_b: str, profile: Path,
                 system: str) -> dict[str, Any]:
    """W3: a relaunched browser on the profile; Pyodide booted first (untimed)."""
    ctx = config.launch_persistent(pw, profile, args=config.CHROMIUM_ARGS + [EAGER_MEMORY])
    try:
        page = BenchPage(ctx, url_b if system == "idbfs" else url)
        if system == "floor":
            return page.call("coldRead")
        if system == "sahpool":
            out = page.call("sah", "cold", {"file": "/w2.db"})
            out["ua"] = page.call("uaMemory")
            page.call("sahStop")
            return out
        page.boot()
        mem0 = page.memory()
        if system == "idbfs":
            out = page.py("await cold_idbfs()")
            mem1 = page.memory()
            page.py("scan_idbfs()")
        else:
            options = {"tabs": False} if system == "js_main" else {}
            out = page.call("cold", "w2", options)
            mem1 = page.memory()
            page.call("scan", "cold")
        return {**out, "mem0": mem0, "mem1": mem1, "mem2": page.memory()}
    finally:
        ctx.close()


def boot_session(pw: Any, config: Any, url: str, system: str) -> list[dict[str, Any]]:
    """Navigation to the first query result, first visit then returning visit (same
    profile and HTTP cache, a new navigation)."""
    with tempfile.TemporaryDirectory(prefix="datasync-boot-") as tmp:
        ctx = config.launch_persistent(pw, Path(tmp) / "profile")
        try:
            page = ctx.new_page()
            visits = []
            for _ in range(2):
                page.goto(f"{url}{FIRST}?system={system}")
                page.wait_for_function("() => window.firstDone === true", timeout=120_000)
                result = page.evaluate("() => window.firstResult")
                if "error" in result:
                    raise RuntimeError(f"boot of {system}: {result['error']}")
                visits.append(result)
                page.goto("about:blank")
            return visits
        finally:
            ctx.close()


def build_web(checkout: Path) -> Path:
    """The web/ folder of ``checkout``: this checkout's own (``ensure_web``), or another's
    built by its own ``python -m datasync build`` into a folder of ours (its tree is left
    as it is)."""
    if checkout == ROOT:
        from datasync.tools.build import ensure_web

        ensure_web("web")
        return ROOT / "web"
    out = Path(tempfile.gettempdir()) / f"datasync-bench-web-{checkout.name}"
    subprocess.run([sys.executable, "-m", "datasync", "build", "--out", str(out)],
                   cwd=checkout, check=True, stdout=subprocess.DEVNULL)
    return out


def git_state(checkout: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "datasync", "js"],
                           cwd=checkout, capture_output=True, text=True).stdout.strip()
    return f"{checkout.name}@{head}{' + uncommitted changes' if dirty else ''}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from datasync.tools.serve import serving

    checkout = Path(args.checkout).resolve() if args.checkout else ROOT
    if not (ROOT / "node_modules/@sqlite.org/sqlite-wasm/dist/index.mjs").exists():
        raise SystemExit("node_modules/@sqlite.org/sqlite-wasm is missing: run `make npm`")
    web = build_web(checkout)
    manifest = json.loads((web / "manifest.json").read_text())
    config = load_config()
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    mounts = {"web": web, "js": checkout / "js"}
    with sync_playwright() as pw, serving(root=ROOT, coop_coep=True, mounts=mounts) as srv, \
            tempfile.TemporaryDirectory(prefix="datasync-browser-bench-") as tmp:
        profile = Path(tmp) / "profile"
        url = srv.url + PAGE
        url_b = srv.url.replace("127.0.0.1", "localhost") + PAGE  # B: its own origin
        raw = main_session(pw, config, url, url_b, profile, args)
        raw["cold"] = {s: [cold_session(pw, config, url, url_b, profile, s)
                           for _ in range(args.cold)]
                       for s in ("js_main", "js_shared", "sahpool", "idbfs", "floor")}
        raw["first"] = {s: [boot_session(pw, config, srv.url, s) for _ in range(args.boots)]
                        for s in ("datasync", "pyodide", "sahpool")}
        if args.boot_tasks:  # benchmarks/boot.py: long tasks, a lone tab's multi-tab cost
            from benchmarks.boot import measure

            raw["boot_tasks"] = measure(pw, config, srv.url, boots=args.cold,
                                        opens=args.cold + 2, commits=25)
    raw["meta"] = {"checkout": git_state(checkout), "manifest": manifest,
                   "elapsed_s": time.perf_counter() - started,
                   "load": [load0, os.getloadavg()[0]], "cpus": os.cpu_count(),
                   "args": vars(args)}
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 repeat, 20,000-row W2/bulk database, 10 commits (a few minutes)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, every path once (for tests/test_bench_browser.py)")
    ap.add_argument("--repeat", type=int, help="W1 repeats (default 3; --quick 1)")
    ap.add_argument("--rows", type=int, help="W2/bulk rows (default 100,000)")
    ap.add_argument("--commits", type=int, help="W2 durable commits per path (default 50)")
    ap.add_argument("--cold", type=int, help="W3 relaunches per system (default 3)")
    ap.add_argument("--boots", type=int, help="boot measurements per system (default 3)")
    ap.add_argument("--checkout", metavar="PATH",
                    help="measure the datasync (web/ built there, js/) of this checkout")
    ap.add_argument("--json", metavar="PATH", help="also write every raw figure here")
    ap.add_argument("--report", metavar="JSON", help="only print the tables of a --json file")
    ap.add_argument("--no-boot-tasks", dest="boot_tasks", action="store_false",
                    help="skip benchmarks/boot.py's long tasks and lone-tab figures "
                         "(skipped by --quick and --smoke too)")
    args = ap.parse_args()
    if args.report:
        from benchmarks.report import report

        report(json.loads(Path(args.report).read_text()))
        return
    small = args.quick or args.smoke
    args.boot_tasks = args.boot_tasks and not small
    args.repeat = args.repeat or (1 if small else 3)
    args.rows = args.rows or (500 if args.smoke else 20_000 if args.quick else 100_000)
    args.commits = args.commits or (3 if args.smoke else 10 if args.quick else 50)
    args.cold = args.cold or (1 if small else 3)
    args.boots = args.boots or (1 if small else 3)
    args.sizes = [50, 50, 10, 10] if args.smoke else [1000, 1000, 100, 100]
    args.name_len = 165  # ~210 bytes a row: 100,000 rows make the issue's ~21 MB database
    raw = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    from benchmarks.report import report

    report(raw)
    if "boot_tasks" in raw:
        from benchmarks.boot import report as report_boot

        report_boot(raw["boot_tasks"])


if __name__ == "__main__":
    main()
