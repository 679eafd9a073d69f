"""The native VFS, block-store and database suites, and the backend conformance
suite, run inside Pyodide in Chromium.

This proves the VFS in the runtime it is for: the same tests, with IndexedDB added
to the backends they run over (tests/helpers.py), installed with pytest and
Hypothesis from local wheels and run by pytest inside the page. The conformance
suite (tests/backends/) is how IndexedDB is shown to keep the backend contract.
"""
from __future__ import annotations

import re
from pathlib import Path

from pyodide_page import ROOT, PyPage, fetch_test_wheels

TESTS = ROOT / "tests"
SUITES = ["test_format.py", "test_blockstore.py", "test_vfs.py", "test_database.py", "test_restore.py",
          "test_rollback.py", "test_cdc_values.py", "test_missing_blocks.py",
          "test_differential.py", "test_cache_bound.py", "test_forks.py",
          # the app layer (issue 14), over one tab and the simulated tabs of tabs/harness.py
          "test_app_migrations.py", "test_app_live.py", "test_app_cache.py",
          "test_app_explain.py", "test_app_metrics.py",
          "backends"]  # a directory: every suite in it, with its conftest.py
#: Paths under tests/, copied to the same paths under the page's /home/pyodide/tests.
FILES = ["helpers.py", "conftest.py", "tabs/__init__.py", "tabs/harness.py",
         *(s for s in SUITES if s.endswith(".py")),
         *(str(p.relative_to(TESTS)) for p in sorted((TESTS / "backends").glob("*.py")))]

INSTALL = """async ({wheels}) => {
  const micropip = window.py.pyimport('micropip');
  await micropip.install(wheels.map((w) => new URL('/' + w, location.href).href), {deps: false});
  micropip.destroy();
}"""


def test_native_suites_pass_inside_pyodide(pypage: PyPage) -> None:
    wheels = fetch_test_wheels()
    pypage.page.evaluate(INSTALL, {"wheels": sorted(wheels.values())})
    files = {name: (TESTS / name).read_text() for name in FILES}
    pypage.page.evaluate("""(files) => {
        for (const [name, text] of Object.entries(files)) {
          const path = '/home/pyodide/tests/' + name;
          window.py.FS.mkdirTree(path.slice(0, path.lastIndexOf('/')));
          window.py.FS.writeFile(path, text);
        }
    }""", files)
    report = pypage.run("""
import collections, io, contextlib, pytest, re, xml.etree.ElementTree as ET
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                        "--junitxml", "/home/pyodide/suites.xml",
                        "--rootdir", "/home/pyodide/tests", *[
                        "/home/pyodide/tests/" + f for f in %r]])
# The conformance suite's outcomes by variant (a parameter of each test id).
contract = collections.defaultdict(collections.Counter)
for case in ET.parse("/home/pyodide/suites.xml").iter("testcase"):
    found = re.search(r"\\[(?:.*-)?((?:memory|sqlitefile|indexeddb)(?:\\+[a-z-]+history)?)\\b",
                      case.get("name", ""))
    if case.get("classname", "").endswith("test_contract") and found:
        variant = found.group(1)
        outcome = next((c.tag for c in case if c.tag in ("skipped", "failure", "error")),
                       "passed")
        contract[variant][outcome] += 1
[int(code), out.getvalue()[-6000:], {v: dict(c) for v, c in contract.items()}]
""" % (SUITES,))
    code, tail, contract = report
    summary = tail.strip().splitlines()[-1]
    figures = "\n".join(f"backend contract, {v}: {c}" for v, c in sorted(contract.items()))
    Path(ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "pyodide-suites.txt").write_text(f"{tail}\n{figures}\n")
    assert code == 0, tail
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert "failed" not in summary and "error" not in summary, tail
    # IndexedDB joins the backends in Pyodide: more runs than natively, not fewer.
    assert passed >= 100, summary
    # ... and keeps the backend contract: the conformance suite ran over it.
    assert contract.get("indexeddb", {}).get("passed", 0) >= 20, figures
