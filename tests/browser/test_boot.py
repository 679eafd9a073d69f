"""Real Chromium: how js/local.js boots (issue 11). The wheel is put on sys.path before
Python starts and imported from the zip with its bytecode (nothing compiled, no installer
run); a returning visit re-downloads nothing; a manifest naming a missing wheel fails
with a WebBuildError that says what to do."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from datasync.tools.serve import serving

BOOT = """async () => {
  const { boot } = await import('/js/local.js');
  const { pyodide } = await boot({});
  const found = pyodide.runPython(`
import sys, datasync, datasync.browser.bridge
compiled_here = sorted(m for m, mod in sys.modules.items()
                       if m.startswith("datasync") and not getattr(mod, "__file__", "x.pyc").endswith(".pyc"))
[datasync.__file__, compiled_here]
`).toJs();
  const resources = performance.getEntriesByType('resource').map(
    (r) => ({name: r.name, transfer: r.transferSize, body: r.decodedBodySize}));
  return {found, resources};
}"""


def test_boot_imports_datasync_from_the_wheel_with_its_bytecode(context: Any, server: Any,
                                                               manifest: dict[str, Any]) -> None:
    page = context.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    got = page.evaluate(BOOT)
    page.close()
    file, compiled_here = got["found"]
    wheel = manifest["wheels"]["datasync"].rsplit("/", 1)[1]
    # imported from the wheel file itself (zipimport), not from an installed copy
    assert file.endswith(f"site-packages/{wheel}/datasync/__init__.pyc"), file
    assert compiled_here == []  # every datasync module came from its .pyc


def test_a_returning_visit_downloads_no_file_again(context: Any, server: Any) -> None:
    first = context.new_page()
    first.goto(server.url + "tests/browser/blank.html")
    fetched = {r["name"]: r for r in first.evaluate(BOOT)["resources"]}
    first.close()
    again = context.new_page()
    again.goto(server.url + "tests/browser/blank.html")
    resources = again.evaluate(BOOT)["resources"]
    again.close()
    big = [r for r in resources if r["body"] > 10_000]
    assert any(r["name"].endswith(".whl") for r in big)
    assert any(r["name"].endswith("pyodide.asm.wasm") for r in big)
    for r in big:  # revalidated (304, headers only) or served from the cache
        assert r["transfer"] < 2_000, (r, fetched.get(r["name"]))


def test_a_manifest_naming_a_missing_wheel_says_to_rebuild(pw: Any, tmp_path: Path,
                                                           manifest: dict[str, Any]) -> None:
    from pyodide_page import config

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "web").mkdir()
    os.symlink(root / "web" / "pyodide", tmp_path / "web" / "pyodide")
    os.symlink(root / "js", tmp_path / "js")
    (tmp_path / "tests" / "browser").mkdir(parents=True)
    (tmp_path / "tests" / "browser" / "blank.html").write_text(
        (root / "tests" / "browser" / "blank.html").read_text())
    broken = dict(manifest, wheels=dict(manifest["wheels"], datasync="wheels/missing.whl"))
    (tmp_path / "web" / "manifest.json").write_text(json.dumps(broken))
    browser = config.launch(pw)
    try:
        with serving(root=tmp_path, port=0) as srv:
            page = browser.new_page()
            page.goto(srv.url + "tests/browser/blank.html")
            error = page.evaluate("""async () => {
              const { boot } = await import('/js/local.js');
              try { await boot({}); return null; } catch (e) { return [e.name, e.message]; }
            }""")
    finally:
        browser.close()
    assert error is not None and error[0] == "WebBuildError"
    assert "wheels/missing.whl answered 404" in error[1] and "python -m datasync build" in error[1]
