"""Playwright fixtures: the built web folder, a local server, Chromium, Pyodide pages."""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the Playwright package is not installed (make install)")

_spec = importlib.util.spec_from_file_location("datasync_playwright_config",
                                               ROOT / "playwright.config.py")
assert _spec and _spec.loader
config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config)

#: Pure-Python wheels the in-browser test run installs with micropip.
TEST_WHEELS = {
    "pytest": "9.0.3", "pluggy": "1.6.0", "iniconfig": "2.3.0", "packaging": "26.1",
    "hypothesis": "6.155.2", "attrs": "26.1.0", "sortedcontainers": "2.4.0",
    "pygments": "2.20.0",
}

BOOT = """async ({manifest}) => {
  const web = new URL('/web/', location.href);
  const {loadPyodide} = await import(new URL(manifest.pyodide + 'pyodide.mjs', web));
  const py = await loadPyodide({indexURL: String(new URL(manifest.pyodide, web))});
  await py.loadPackage([String(new URL(manifest.wheels.packaging, web)),
                        String(new URL(manifest.wheels.micropip, web))]);
  await py.pyimport('micropip').install(String(new URL(manifest.wheels.datasync, web)), {deps: false});
  window.py = py;
  window.pyRun = async (code) => {
    const r = await py.runPythonAsync(code);
    if (r && typeof r.toJs === 'function') {
      const v = r.toJs({dict_converter: Object.fromEntries}); r.destroy(); return v;
    }
    return r;
  };
  return py.version;
}"""


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    from datasync.tools.build import ensure_web

    return ensure_web("web")


@pytest.fixture(scope="session")
def server(manifest: dict[str, Any]) -> Iterator[Any]:
    with config.server() as srv:
        yield srv


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    # Module scope: the sync API keeps an asyncio loop running in this thread while
    # it is started, which the native suites' asyncio.run() cannot share.
    with playwright_api.sync_playwright() as p:
        yield p


class PyPage:
    """A page with Pyodide and datasync loaded; ``run(code)`` runs Python there."""

    def __init__(self, page: Any, server: Any, manifest: dict[str, Any]) -> None:
        self.page, self.server, self.manifest = page, server, manifest
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(msg.text))

    def open(self, path: str = "tests/browser/blank.html") -> "PyPage":
        self.page.goto(self.server.url + path)
        self.page.evaluate(BOOT, {"manifest": self.manifest})
        return self

    def run(self, code: str) -> Any:
        """Run Python (top-level await allowed); returns the last expression's value."""
        return self.page.evaluate("(code) => window.pyRun(code)", code)

    def reload(self) -> "PyPage":
        self.page.reload()
        self.page.evaluate(BOOT, {"manifest": self.manifest})
        return self


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A fresh Chromium profile directory (IndexedDB on disk)."""
    path = tmp_path / "profile"
    path.mkdir()
    return path


@pytest.fixture
def context(pw: Any, profile: Path) -> Iterator[Any]:
    ctx = config.launch_persistent(pw, profile)
    yield ctx
    ctx.close()


def blank_pages(context: Any, server: Any, n: int) -> list[Any]:
    """``n`` pages on the blank test page (they import js/datasync.js themselves)."""
    pages = []
    for _ in range(n):
        page = context.new_page()
        page.goto(server.url + "tests/browser/blank.html")
        pages.append(page)
    return pages


@pytest.fixture
def pypage(context: Any, server: Any, manifest: dict[str, Any]) -> PyPage:
    return PyPage(context.new_page(), server, manifest).open()


def fetch_test_wheels() -> dict[str, str]:
    """Paths (relative to the repo root) of the wheels pytest needs in Pyodide."""
    from datasync.tools.wheels import fetch_wheel

    return {name: str(fetch_wheel(name, version).relative_to(ROOT))
            for name, version in TEST_WHEELS.items()}


if __name__ == "__main__":  # `make install`: download them now, so `make test` runs offline
    print("\n".join(fetch_test_wheels().values()))
