"""The npm package for JS users: ``make package`` (``npm pack``; never published).

Example::

    from datasync.tools.npm_package import build_package

    tarball = build_package("dist")      # dist/datasync-<version>.tgz

Command line: ``python -m datasync.tools.npm_package [--out dist]``.

The tarball holds ``js/`` (datasync.js, its modules, worker.js, datasync.d.ts),
``web/wheels/`` (the datasync, micropip and packaging wheels of ``web/``) and
``web/manifest.json``, whose ``pyodide`` entry is ``../../pyodide/``: the ``pyodide``
npm package, a dependency pinned to the version ``package.json`` pins, installed next
to it (``node_modules/pyodide``), not a copy. So an app that installs it serves its
``node_modules`` folder as it is, with any static server, and imports
``/node_modules/datasync/js/datasync.js`` (the web folder is found next to it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import REPO_ROOT, WebBuildError, progress
from .build import ensure_web

#: What the package's js/ holds (datasync.js imports the others).
JS_FILES = ("datasync.js", "app.js", "local.js", "remote.js", "replica.js", "transaction.js",
            "values.js", "worker.js", "datasync.d.ts", "app.d.ts")
#: The web folder's manifest entry for Pyodide: node_modules/datasync/web/ -> node_modules/pyodide/
PYODIDE_FROM_WEB = "../../pyodide/"

README = """# datasync (npm package)

A persistent SQLite database for web pages: SQLite in Pyodide, its pages stored in
IndexedDB, shared by the app's tabs, on the main thread or in a Worker.

```js
import { DataSync } from "/node_modules/datasync/js/datasync.js";
const db = await DataSync.open("app", { worker: true });
await db.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, text TEXT)");
await db.execute("INSERT INTO notes(text) VALUES (?)", ["hello"]);
console.log(await db.query("SELECT * FROM notes"));
```

Serve the folder that holds `node_modules/` with any static server (WebAssembly as
`application/wasm`, `.mjs` as JavaScript): datasync finds its web folder
(`node_modules/datasync/web/`) next to `datasync.js`, and Pyodide
(`node_modules/pyodide/`, a dependency) next to that.

With a bundler, datasync.js no longer sits next to its web folder: copy (or serve)
`node_modules/datasync/web/` and `node_modules/pyodide/` as static files and pass
`webURL` (and `indexURL` if Pyodide is not at `<webURL>/../../pyodide/`):

```js
const db = await DataSync.open("app", { webURL: "/datasync-web/", indexURL: "/pyodide/" });
```

Types: `datasync.d.ts` (`import type { Database } from "datasync"`). Pyodide
{pyodide}, datasync {version}.
"""


def _pinned_pyodide(root: Path) -> str:
    package = json.loads((root / "package.json").read_text())
    pins = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    if "pyodide" not in pins:
        raise WebBuildError(f"{root / 'package.json'} pins no pyodide version: add it")
    return str(pins["pyodide"])


def package_json(version: str, pyodide: str) -> dict[str, Any]:
    """The package's package.json: ``package_json("0.3.0", "314.0.7")``."""
    return {
        "name": "datasync",
        "version": version,
        "description": "A persistent SQLite database for web pages (Pyodide + IndexedDB), "
                       "shared by an app's tabs, on the main thread or in a Worker",
        "license": "MIT",
        "type": "module",
        "main": "js/datasync.js",
        "types": "js/datasync.d.ts",
        "exports": {
            ".": {"types": "./js/datasync.d.ts", "default": "./js/datasync.js"},
            "./worker.js": "./js/worker.js",
            "./web/*": "./web/*",
            "./package.json": "./package.json",
        },
        "files": ["js", "web", "README.md"],
        "sideEffects": False,
        "dependencies": {"pyodide": pyodide},
    }


def stage(dest: Path, *, root: Path = REPO_ROOT, quiet: bool = True) -> dict[str, Any]:
    """Lay the package out in ``dest`` (emptied first); returns its package.json."""
    manifest = ensure_web("web", root=root, quiet=quiet)
    pyodide = _pinned_pyodide(root)
    if manifest.get("pyodide_version") != pyodide:
        raise WebBuildError(f"web/ was built with Pyodide {manifest.get('pyodide_version')} but "
                            f"package.json pins {pyodide}: run `npm ci` and `python -m datasync build`")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "js").mkdir(parents=True)
    (dest / "web" / "wheels").mkdir(parents=True)
    for name in JS_FILES:
        shutil.copy2(root / "js" / name, dest / "js" / name)
    web = root / "web"
    for path in manifest["wheels"].values():
        shutil.copy2(web / path, dest / "web" / path)
    packaged = {k: v for k, v in manifest.items() if k not in ("pyodide_files", "source_digest")}
    packaged["pyodide"] = PYODIDE_FROM_WEB
    (dest / "web" / "manifest.json").write_text(json.dumps(packaged, indent=2) + "\n")
    meta = package_json(manifest["version"], pyodide)
    (dest / "package.json").write_text(json.dumps(meta, indent=2) + "\n")
    (dest / "README.md").write_text(README.replace("{pyodide}", pyodide)
                                    .replace("{version}", manifest["version"]))
    return meta


def build_package(out: Path | str = "dist", *, root: Path | str = REPO_ROOT,
                  quiet: bool = True) -> Path:
    """``build_package("dist")``: stage the package in build/npm/ and ``npm pack`` it
    into ``out`` (relative to the repo root); returns the tarball's path. Raises
    :class:`WebBuildError` if npm is missing or web/ cannot be built."""
    root = Path(root).resolve()
    out_dir = Path(out) if Path(out).is_absolute() else root / out
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = root / "build" / "npm" / "datasync"
    meta = stage(staged, root=root, quiet=quiet)
    npm = shutil.which("npm")
    if npm is None:
        raise WebBuildError("npm is not installed: install Node.js (npm comes with it)")
    done = subprocess.run([npm, "pack", "--json", "--pack-destination", str(out_dir)],
                          cwd=staged, capture_output=True, text=True)
    if done.returncode != 0:
        raise WebBuildError(f"npm pack failed in {staged}: {done.stderr.strip()[-500:]}")
    tarball = out_dir / json.loads(done.stdout)[0]["filename"]
    progress(quiet, f"packed {tarball} (datasync {meta['version']}, "
                    f"pyodide {meta['dependencies']['pyodide']} as a dependency)")
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasync.tools.npm_package",
                                     description="Build the npm package with npm pack.")
    parser.add_argument("--out", default="dist", help="where the .tgz goes (default: dist)")
    args = parser.parse_args(argv)
    try:
        print(build_package(args.out, quiet=False))
    except WebBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
