"""The browser bundle: a self-contained folder (default ``web/``) a page boots Pyodide
from without any CDN::

    web/pyodide/        the Pyodide runtime copied from node_modules/pyodide (npm ci)
    web/wheels/         datasync-<version>-py3-none-any.whl (built from this checkout),
                        micropip and packaging wheels (from PyPI, cached in build/wheels/)
    web/manifest.json   {"pyodide": "pyodide/", "wheels": {"datasync": "wheels/...", ...},
                         "version": "<datasync version>", ...}

Example::

    from datasync.tools.build import build_web, ensure_web, web_is_stale

    manifest = build_web("web")        # always builds (reusing cached wheels)
    print(web_is_stale("web"))         # None: up to date, else why it must be rebuilt
    manifest = ensure_web("web")       # builds only if missing or stale (test fixtures)

Command line: ``python -m datasync build [--out web]``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import REPO_ROOT, WebBuildError, progress
from .wheels import MICROPIP_VERSION, PACKAGING_VERSION, build_wheel, fetch_wheel, source_digest

#: Files ``loadPyodide()`` fetches from its ``indexURL`` (checked by booting it in
#: Chromium): the loader, the Emscripten module, the WebAssembly binary, the standard
#: library and the package lock file.
PYODIDE_REQUIRED = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
#: Copied when present: the classic-script loader, source maps (fetched only by devtools),
#: TypeScript declarations and the package's own metadata.
PYODIDE_OPTIONAL = (
    "pyodide.js",
    "pyodide.js.map",
    "pyodide.mjs.map",
    "pyodide.d.ts",
    "ffi.d.ts",
    "package.json",
)


def _pyodide_dir(root: Path) -> Path:
    pkg = root / "node_modules" / "pyodide"
    missing = [f for f in PYODIDE_REQUIRED if not (pkg / f).is_file()]
    if missing:
        where = "is missing" if not pkg.is_dir() else f"lacks {', '.join(missing)}"
        raise WebBuildError(
            f"{pkg} {where}: run `npm ci` in {root} (or `make install`) to install the "
            "Pyodide runtime pinned in package.json")
    return pkg


def pyodide_version(root: Path | str = REPO_ROOT) -> str:
    """``pyodide_version()``: the version of the Pyodide package in ``node_modules``
    (``npm ci`` installs it). Raises :class:`WebBuildError` if it is not installed."""
    pkg = _pyodide_dir(Path(root))
    return str(json.loads((pkg / "package.json").read_text())["version"])


def _copy_if_changed(src: Path, dest: Path) -> None:
    try:
        st, dt = src.stat(), dest.stat()
        if st.st_size == dt.st_size and int(st.st_mtime) == int(dt.st_mtime):
            return
    except FileNotFoundError:
        pass
    tmp = dest.with_name(dest.name + ".part")
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def web_dir(out: Path | str = "web", root: Path | str = REPO_ROOT) -> Path:
    """``web_dir("web")``: where a bundle named ``out`` lives: ``out`` itself if it is
    absolute, else ``out`` in the repository root ``root``."""
    out = Path(out)
    return out if out.is_absolute() else Path(root) / out


def build_web(out: Path | str = "web", *, root: Path | str = REPO_ROOT,
              cache: Path | str | None = None, quiet: bool = True) -> dict[str, Any]:
    """``manifest = build_web("web")``: build the browser bundle in ``out`` (relative
    paths are relative to the repo root) and return the manifest written to
    ``out/manifest.json``.

    Raises :class:`WebBuildError` if ``node_modules/pyodide`` is missing ("run npm ci"),
    the wheel cannot be built, or a wheel cannot be downloaded.
    """
    root = Path(root).resolve()
    out = web_dir(out, root)
    cache = Path(cache) if cache else root / "build" / "wheels"
    pkg = _pyodide_dir(root)  # first: the cheapest check with the clearest message
    pyver = pyodide_version(root)

    started = time.perf_counter()
    datasync_whl, digest = build_wheel(root, cache=cache, quiet=quiet)
    extra = {
        "micropip": fetch_wheel("micropip", MICROPIP_VERSION, cache=cache, quiet=quiet),
        "packaging": fetch_wheel("packaging", PACKAGING_VERSION, cache=cache, quiet=quiet),
    }

    (out / "pyodide").mkdir(parents=True, exist_ok=True)
    wheels_dir = out / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PYODIDE_REQUIRED + PYODIDE_OPTIONAL:
        if (pkg / name).is_file():
            _copy_if_changed(pkg / name, out / "pyodide" / name)
            copied.append(name)

    wheels: dict[str, str] = {}
    sha: dict[str, str] = {}
    keep = set()
    for key, path in [("datasync", datasync_whl), *extra.items()]:
        _copy_if_changed(path, wheels_dir / path.name)
        wheels[key] = f"wheels/{path.name}"
        sha[key] = _sha256(path)
        keep.add(path.name)
    for stale in wheels_dir.glob("*.whl"):  # e.g. the wheel of an older version
        if stale.name not in keep:
            stale.unlink()

    version = datasync_whl.name.split("-")[1]
    manifest: dict[str, Any] = {
        "pyodide": "pyodide/",
        "wheels": wheels,
        "version": version,
        "pyodide_version": pyver,
        "sha256": sha,
        "source_digest": digest,
        "pyodide_files": copied,
    }
    tmp = out / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    progress(quiet, f"built {out} (datasync {version}, Pyodide {pyver}) in "
                    f"{time.perf_counter() - started:.1f}s")
    return manifest


def web_is_stale(out: Path | str = "web", *, root: Path | str = REPO_ROOT) -> str | None:
    """``web_is_stale("web")``: why ``out`` must be rebuilt (a short reason), or None
    if it is up to date."""
    root = Path(root).resolve()
    out = web_dir(out, root)
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return f"{out / 'manifest.json'} is missing or unreadable"
    if manifest.get("source_digest") != source_digest(root):
        return "the datasync sources changed"
    pkg = root / "node_modules" / "pyodide" / "package.json"
    if pkg.is_file() and json.loads(pkg.read_text()).get("version") != manifest.get("pyodide_version"):
        return "node_modules/pyodide is another version"
    needed = [f"pyodide/{f}" for f in PYODIDE_REQUIRED] + list(manifest.get("wheels", {}).values())
    absent = [p for p in needed if not (out / p).is_file()]
    if absent:
        return f"missing {', '.join(absent)}"
    return None


def ensure_web(out: Path | str = "web", *, root: Path | str = REPO_ROOT,
               cache: Path | str | None = None, quiet: bool = True) -> dict[str, Any]:
    """``manifest = ensure_web("web")``: build ``out`` if it is missing or stale, and
    return its manifest (for test fixtures and benchmarks). Raises as :func:`build_web`."""
    root = Path(root).resolve()
    out_path = web_dir(out, root)
    if web_is_stale(out_path, root=root) is None:
        return dict(json.loads((out_path / "manifest.json").read_text()))
    return build_web(out_path, root=root, cache=cache, quiet=quiet)
