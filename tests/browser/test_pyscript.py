"""README's PyScript quick start, run as written in Chromium: PyScript (npm
``@pyscript/core``, served locally) on the local Pyodide imports datasync, writes a
table, and the rows are still there after the page is reloaded.

The block is put verbatim into a page of its own; the page only adds a listener for
PyScript's ``py:all-done`` event (the block has run) around it."""
from __future__ import annotations

import re
from typing import Any

from helpers import readme_blocks
from pyodide_page import ROOT

PAGES = ROOT / "build" / "readme"
CORE = ROOT / "node_modules" / "@pyscript" / "core" / "dist" / "core.js"


def _pyscript_block() -> str:
    """The HTML block of README's "Quick start: PyScript" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start: PyScript", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```html\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "README's PyScript section must hold one html block"
    assert blocks[0] in readme_blocks("html"), "the block tests/test_readme.py counts"
    return blocks[0]


def _wait_done(page: Any, console: list[str]) -> None:
    page.wait_for_function("window.pyscriptDone === true", timeout=120_000)
    errors = [c for c in console if "Error" in c or c.startswith("pageerror")]
    assert not errors, console


def test_the_pyscript_block_keeps_its_rows_across_a_reload(context: Any, server: Any,
                                                           manifest: Any) -> None:
    assert CORE.exists(), "PyScript is missing: run `make install` (package-lock.json pins it)"
    block = _pyscript_block()
    assert not re.search(r"datasync-\d", block), "wheel names come from web/manifest.json"
    PAGES.mkdir(parents=True, exist_ok=True)
    (PAGES / "pyscript.html").write_text(f"""<!doctype html><html><head>
<meta charset="utf-8"><link rel="icon" href="data:,">
<script>addEventListener("py:all-done", () => {{ window.pyscriptDone = true; }});</script>
</head><body>
{block}
</body></html>""")
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    page.goto(f"{server.url}build/readme/pyscript.html")
    _wait_done(page, console)
    assert "[{'n': 1}]" in console, console  # what its comment says
    console.clear()
    page.reload()  # the same tab, a new document: datasync boots again from IndexedDB
    _wait_done(page, console)
    assert "[{'n': 1}, {'n': 2}]" in console, console
    page.close()
