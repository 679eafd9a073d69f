"""Real Chromium: the npm package (`make package`) installed into a scratch app folder,
served from there by a plain static server, opens a database from a page importing
node_modules/datasync/js/datasync.js, on the main thread and in a Worker.

No network: the app's lockfile pins the tarball and the repository's pyodide (with its
dependencies, from package-lock.json), so `npm ci --offline` takes them from the npm
cache `make install`'s `npm ci` filled."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyodide_page import ROOT, config

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
</head><body><p>scratch app</p></body></html>"""


def _lockfile(app: Path, tarball: str) -> dict[str, Any]:
    """The app's package-lock.json: the tarball, and pyodide as the repository locks it."""
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    data = (app / tarball).read_bytes()
    with tarfile.open(app / tarball) as tar:
        meta = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
    packages: dict[str, Any] = {
        "": {"name": "scratch-app", "dependencies": {"datasync": f"file:{tarball}"}},
        "node_modules/datasync": {
            "version": meta["version"], "resolved": f"file:{tarball}", "license": "MIT",
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
            "dependencies": meta["dependencies"]},
    }
    todo = list(meta["dependencies"])
    while todo:
        name = todo.pop()
        if f"node_modules/{name}" not in packages:
            entry = locked[f"node_modules/{name}"]
            packages[f"node_modules/{name}"] = entry
            todo += list(entry.get("dependencies", {}))
    return {"name": "scratch-app", "lockfileVersion": 3, "requires": True, "packages": packages}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datasync.tools.npm_package import build_package

    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    app = tmp_path_factory.mktemp("scratch-app")
    tarball = build_package(app / "dist")
    shutil.copy2(tarball, app / tarball.name)
    (app / "package.json").write_text(json.dumps(
        {"name": "scratch-app", "private": True,
         "dependencies": {"datasync": f"file:{tarball.name}"}}))
    (app / "package-lock.json").write_text(json.dumps(_lockfile(app, tarball.name)))
    done = subprocess.run([npm, "ci", "--offline", "--no-audit", "--no-fund"], cwd=app,
                          capture_output=True, text=True, timeout=300)
    if "ENOTCACHED" in done.stderr:
        pytest.skip("pyodide is not in the npm cache: run `make install` (its npm ci fills it)")
    assert done.returncode == 0, done.stderr
    (app / "index.html").write_text(PAGE)
    return app


@pytest.fixture(scope="module")
def app_server(app: Path) -> Iterator[Any]:
    from datasync.tools.serve import serving

    with serving(root=app, port=0) as srv:  # a static server of the app folder only
        yield srv


def test_the_tarball_holds_the_module_the_types_the_wheels_and_no_pyodide(app: Path) -> None:
    installed = app / "node_modules" / "datasync"
    for name in ("js/datasync.js", "js/worker.js", "js/datasync.d.ts", "web/manifest.json"):
        assert (installed / name).is_file(), name
    # every module of js/ (datasync.js imports them; datasync.d.ts imports app.d.ts)
    shipped = {p.name for p in (installed / "js").iterdir()}
    assert {p.name for p in (ROOT / "js").glob("*.js")} | {"datasync.d.ts", "app.d.ts"} <= shipped
    manifest = json.loads((installed / "web" / "manifest.json").read_text())
    assert manifest["pyodide"] == "../../pyodide/"
    assert all((installed / "web" / path).is_file() for path in manifest["wheels"].values())
    assert not list(installed.rglob("pyodide.asm.wasm"))  # a dependency, not a copy
    assert (app / "node_modules" / "pyodide" / "pyodide.asm.wasm").is_file()
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["pyodide"]
    assert json.loads((installed / "package.json").read_text())["dependencies"] == {
        "pyodide": pinned}


OPEN = """async (options) => {
  const { DataSync } = await import('/node_modules/datasync/js/datasync.js');
  const db = await DataSync.open('npm-app', options);
  await db.execute('CREATE TABLE IF NOT EXISTS t(v TEXT)');
  await db.execute('INSERT INTO t VALUES (?)', [options.worker ? 'worker' : 'main']);
  const rows = await db.query('SELECT v FROM t ORDER BY rowid');
  await db.close();
  return rows.map((r) => r.v);
}"""


def test_a_page_of_the_app_opens_a_database_from_node_modules(
        pw: Any, app_server: Any, tmp_path: Path) -> None:
    context = config.launch_persistent(pw, tmp_path / "profile")
    try:
        page = context.new_page()
        page.goto(app_server.url + "index.html")
        assert page.evaluate(OPEN, {}) == ["main"]
        page.reload()
        assert page.evaluate(OPEN, {"worker": True}) == ["main", "worker"]
    finally:
        context.close()


def test_the_readme_npm_block_counts_visits_from_node_modules(
        pw: Any, app: Path, app_server: Any, tmp_path: Path) -> None:
    from helpers import readme_blocks

    block = readme_blocks("html")[2]
    assert "/node_modules/datasync/js/datasync.js" in block
    (app / "readme.html").write_text(f'<!doctype html><meta charset="utf-8">\n{block}')
    context = config.launch_persistent(pw, tmp_path / "profile")
    try:
        page = context.new_page()
        for visit in (1, 2):
            page.goto(app_server.url + "readme.html")
            page.wait_for_function(f"document.body.textContent.includes('visit number {visit}')",
                                   timeout=120_000)
    finally:
        context.close()


def test_the_types_resolve_from_the_package_name(app: Path, tmp_path: Path) -> None:
    from test_types import _typescript

    tsc = _typescript(tmp_path)
    (app / "use.ts").write_text(
        'import { DataSync, type Database, type Result } from "datasync";\n'
        'const db: Database = await DataSync.open("app", { worker: true });\n'
        'const r: Result = await db.execute("SELECT ?", [1]);\n'
        'export const n: number = r.rowsAffected;\n'
        'export const p95: number | null = db.metrics().latency_ms.read.p95;\n')
    done = subprocess.run(["node", str(tsc), "--noEmit", "--strict", "--target", "es2022",
                           "--module", "esnext", "--moduleResolution", "bundler",
                           "--lib", "es2022,dom", "use.ts"],
                          cwd=app, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
