"""The native VFS, block-store and database suites, run inside Pyodide in Chromium.

This proves the VFS in the runtime it is for: the same tests, with IndexedDB added
to the backends they run over (tests/helpers.py), installed with pytest and
Hypothesis from local wheels and run by pytest inside the page.
"""
from __future__ import annotations

import re
from pathlib import Path

from pyodide_page import ROOT, PyPage, fetch_test_wheels

SUITES = ["test_format.py", "test_blockstore.py", "test_vfs.py", "test_database.py", "test_restore.py",
          "test_rollback.py", "test_cdc_values.py", "test_missing_blocks.py",
          "test_differential.py", "test_cache_bound.py", "test_forks.py"]
FILES = ["helpers.py", "conftest.py", *SUITES]

INSTALL = """async ({wheels}) => {
  const micropip = window.py.pyimport('micropip');
  await micropip.install(wheels.map((w) => new URL('/' + w, location.href).href), {deps: false});
  micropip.destroy();
}"""


def test_native_suites_pass_inside_pyodide(pypage: PyPage) -> None:
    wheels = fetch_test_wheels()
    pypage.page.evaluate(INSTALL, {"wheels": sorted(wheels.values())})
    files = {name: (ROOT / "tests" / name).read_text() for name in FILES}
    pypage.page.evaluate("""(files) => {
        window.py.FS.mkdirTree('/home/pyodide/tests');
        for (const [name, text] of Object.entries(files)) {
          window.py.FS.writeFile('/home/pyodide/tests/' + name, text);
        }
    }""", files)
    report = pypage.run("""
import io, contextlib, pytest
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                        "--rootdir", "/home/pyodide/tests", *[
                        "/home/pyodide/tests/" + f for f in %r]])
[int(code), out.getvalue()[-6000:]]
""" % (SUITES,))
    code, tail = report
    summary = tail.strip().splitlines()[-1]
    assert code == 0, tail
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert "failed" not in summary and "error" not in summary, tail
    # IndexedDB joins the backends in Pyodide: more runs than natively, not fewer.
    assert passed >= 100, summary
    Path(ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "pyodide-suites.txt").write_text(tail)
