"""Every JS and HTML block of README.md, run as written in Chromium (the Python and
command-line blocks run natively: tests/test_readme.py; the PyScript block, across a
reload: tests/browser/test_pyscript.py).

A block is put into a page of its own, verbatim. A fragment (one that uses a ``newKey``
it does not make) gets a prelude that defines what
the text around it says it has, and an epilogue that checks what it did; the block's
own text is never changed. Each test has a fresh profile: "app" starts empty."""
from __future__ import annotations

import re
from typing import Any

from helpers import readme_blocks
from pyodide_page import ROOT

PAGES = ROOT / "build" / "readme"
DONE = "window.readmeDone !== undefined"


def _page(context: Any, server: Any, name: str, html: str) -> tuple[Any, list[str]]:
    """Write ``html`` to build/readme/``name``.html, open it; returns (page, console)."""
    PAGES.mkdir(parents=True, exist_ok=True)
    (PAGES / f"{name}.html").write_text(html)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    page.goto(f"{server.url}build/readme/{name}.html")
    return page, console


def _module_page(block: str, *, prelude: str = "", epilogue: str = "",
                 head: str = "") -> str:
    """A page running ``block`` in a module script between ``prelude`` and
    ``epilogue``; ``window.readmeDone`` is ``{ok, result}`` or ``{ok: false, error}``.
    A prelude's helper may end a block that never returns with ``throw new
    Stop(result)``."""
    # A block's own ES imports go to the module's top (JS hoists them there anyway);
    # not Python's `import x` inside a string of the block.
    lines = block.splitlines()
    es_import = re.compile(r"""import\s.*\sfrom\s+["']""")
    imports = "\n".join(line for line in lines if es_import.match(line))
    block = "\n".join(line for line in lines if not es_import.match(line))
    imports = imports or 'import { DataSync } from "/js/datasync.js";'
    return f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
{head}</head><body><script type="module">
{imports}
class Stop extends Error {{ constructor(result) {{ super("stop"); this.result = result; }} }}
try {{
{prelude}
// ---- README block, as written ----
{block}
// ---- end of block ----
{epilogue}
}} catch (e) {{
  window.readmeDone = e instanceof Stop ? {{ok: true, result: e.result}}
                                        : {{ok: false, error: String(e && e.stack || e)}};
}}
</script></body></html>"""


def _done(page: Any) -> Any:
    page.wait_for_function(DONE, timeout=120_000)
    done = page.evaluate("window.readmeDone")
    assert done["ok"], done.get("error")
    return done.get("result")


def _check_page(context: Any, server: Any, name: str, script: str) -> Any:
    """Run ``script`` (a module body ending in ``window.readmeDone = ...``) in a page
    of the same profile: what another tab, or a reload, would see."""
    page, _ = _page(context, server, name, _module_page("", epilogue=script))
    return _done(page)


def test_the_readme_has_the_blocks_these_tests_run() -> None:
    # html[1] is run by test_pyscript.py, html[2] by test_npm_package.py
    assert len(readme_blocks("js")) == 6 and len(readme_blocks("html")) == 3


def test_the_script_module_quick_start_writes_a_durable_row(context: Any, server: Any,
                                                            manifest: Any) -> None:
    block = readme_blocks("html")[0]
    logged: list[Any] = []
    PAGES.mkdir(parents=True, exist_ok=True)
    (PAGES / "quickstart.html").write_text(f"""<!doctype html><html><head>
<meta charset="utf-8"><link rel="icon" href="data:,"></head><body>{block}</body></html>""")
    page = context.new_page()
    page.on("console", lambda msg: logged.append(
        msg.args[0].json_value() if msg.type == "log" and msg.args else msg.text))
    page.goto(f"{server.url}build/readme/quickstart.html")
    for _ in range(1200):
        if any(isinstance(entry, list) for entry in logged):
            break
        page.wait_for_timeout(100)
    assert [{"id": 1, "body": "hello"}] in logged, logged  # what its comment says
    page.wait_for_timeout(500)  # then its sync(): one IndexedDB transaction
    page.close()
    rows = _check_page(context, server, "quickstart-check", """
const db = await DataSync.open("app");
window.readmeDone = {ok: true, result: await db.query("SELECT * FROM notes")};""")
    assert rows == [{"id": 1, "body": "hello"}]


def test_the_many_tabs_block_takes_the_lead_and_applies_its_queued_write(
        context: Any, server: Any, manifest: Any) -> None:
    # Another tab leads first; the block (which defines all it uses) follows, writes
    # a transaction through it, takes the lead and queues a write.
    first, _ = _page(context, server, "tabs-first", _module_page("", epilogue="""
const db = await DataSync.open("app");
window.readmeDone = {ok: true, result: db.getLeaderInfo()};"""))
    assert _done(first)["isLeader"]
    page, console = _page(context, server, "tabs", _module_page(
        readme_blocks("js")[0], epilogue="""
window.readmeDone = {ok: true, result: {
  info: db.getLeaderInfo(), rows: await db.query("SELECT x FROM log ORDER BY rowid")}};"""))
    result = _done(page)
    assert result["info"]["isLeader"]
    assert result["rows"] == [{"x": "entry 1"}, {"x": "bye"}]
    page.wait_for_timeout(500)
    logged = [c for c in console if not c.startswith(("Loading", "Loaded"))]
    assert len(logged) >= 2, f"getLeaderInfo and show() after onChange: {console}"


def test_the_change_stream_block_reads_and_acknowledges_changes(
        context: Any, server: Any, manifest: Any) -> None:
    page, _ = _page(context, server, "cdc", _module_page(
        readme_blocks("js")[1],
        prelude="""
const before = await DataSync.open("app", { cdc: true });
await before.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)");
await before.execute("INSERT INTO notes(body) VALUES ('hello')");
await before.close();
const seen = [];
const index = (c) => { seen.push(c.op); if (seen.length === 2) throw new Stop(seen); };""",
        epilogue="window.readmeDone = {ok: true, result: seen};"))
    # Both changes came through the block's loop (it follows for ever: the second
    # index() stops it), the first one acknowledged in between.
    assert _done(page) == ["schema", "insert"]


def test_the_pyodide_quick_start_prints_the_row(context: Any, server: Any,
                                                manifest: dict[str, Any]) -> None:
    block = readme_blocks("js")[2]
    # It installs the wheels web/manifest.json names: no version in it to go stale.
    assert '"/web/manifest.json"' in block and ".whl" not in block, block
    page, console = _page(context, server, "pyodide", _module_page(
        block, epilogue="window.readmeDone = {ok: true};"))
    _done(page)
    assert "[{'x': 42}]" in console, console


def test_the_encryption_block_rekeys_so_only_the_new_key_opens(
        context: Any, server: Any, manifest: Any) -> None:
    page, _ = _page(context, server, "encryption", _module_page(
        readme_blocks("js")[3],
        prelude="const newKey = crypto.getRandomValues(new Uint8Array(32));",
        epilogue="""
await db.execute("CREATE TABLE t(x)");
await db.close();
let old = "opened";
try { await DataSync.open("app", { encryptionKey: "a long passphrase" }); }
catch (e) { old = e.name; }
const again = await DataSync.open("app", { encryptionKey: newKey });
window.readmeDone = {ok: true, result: {old, tables: await again.query(
  "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 't'")}};"""))
    result = _done(page)
    assert result == {"old": "WrongKeyError", "tables": [{"name": "t"}]}


def test_the_worker_block_runs_the_same_api_in_a_worker(
        context: Any, server: Any, manifest: Any) -> None:
    page, console = _page(context, server, "worker", _module_page(
        readme_blocks("js")[4], epilogue="""
window.readmeDone = {ok: true, result: {pyodide: db.pyodide, leads: db.isLeader(),
  rows: await db.query("SELECT body FROM notes ORDER BY id")}};"""))
    result = _done(page)
    assert result == {"pyodide": None, "leads": True, "rows": [
        {"body": "written by the Worker"}, {"body": "note 2"}]}


def test_the_app_layer_block_migrates_watches_caches_and_explains(
        context: Any, server: Any, manifest: Any) -> None:
    page, console = _page(context, server, "app-layer", _module_page(
        readme_blocks("js")[5], prelude='const db = await DataSync.open("app");', epilogue="""
window.readmeDone = {ok: true, result: {
  status: (await db.migrationStatus(MIGRATIONS)).map((m) => [m.version, m.state]),
  seeded: await db.query("SELECT title FROM todos"), rows,
  live: db.metrics().live_queries,
  suggested: (await db.explain("SELECT * FROM todos WHERE done = 0")).suggestions.map((s) => s.columns)}};"""))
    result = _done(page)
    assert result == {"status": [[1, "applied"], [2, "applied"]],
                      "seeded": [{"title": "try datasync"}], "rows": [{"n": 1}],
                      "live": 0, "suggested": [["done"]]}, result
    assert any(line.startswith("to do:") and "try datasync" in line for line in console), console
