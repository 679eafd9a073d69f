"""Package datasync for the browser and serve it locally (native tooling only).

``build_web()`` assembles a self-contained directory (default ``web/``) that a page
can boot Pyodide from without any CDN::

    web/pyodide/        the Pyodide runtime copied from node_modules/pyodide (npm ci)
    web/wheels/         datasync-<version>-py3-none-any.whl (built from this checkout),
                        micropip and packaging wheels (from PyPI, cached in build/wheels/)
    web/manifest.json   {"pyodide": "pyodide/", "wheels": {"datasync": "wheels/...", ...},
                         "version": "<datasync version>", ...}

``serve()`` is a small threaded static server for the repository root (so ``/js/``,
``/demo/`` and ``/web/`` are reachable) with the MIME types WebAssembly needs,
``Cache-Control: no-cache`` and, optionally, the COOP/COEP headers that enable
``SharedArrayBuffer``.

Example::

    from datasync.web import build_web, serving
    build_web("web")
    with serving(port=0) as server:          # background thread, ephemeral port
        print(server.url + "demo/")

Command line (``python -m datasync.web`` works too, before cli.py hooks these in)::

    python -m datasync build [--out web]
    python -m datasync serve [--port 8000] [--host 127.0.0.1] [--coop-coep] [--no-build]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import DatasyncError

#: The repository root (this file is ``<root>/datasync/web.py``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Pinned browser-side wheels, fetched from PyPI once and cached in ``build/wheels/``.
#: micropip 0.11.1 vendors its own copy of ``packaging``; 26.1 is the version Pyodide
#: 314.0.7's own lock file ships, so it is known to work with this runtime.
MICROPIP_VERSION = "0.11.1"
PACKAGING_VERSION = "26.1"
#: Python version the downloaded wheels must suit (Pyodide 314 = CPython 3.14).
PYODIDE_PYTHON = "3.14"

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


class WebBuildError(DatasyncError):
    """The browser bundle cannot be built; the message says what to run or install."""


# --------------------------------------------------------------------------- build

def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], what: str, *, cwd: Path | None = None) -> None:
    """Run a command with its output captured; on failure raise with the output's tail."""
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise WebBuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _wheel_sources(root: Path) -> list[Path]:
    """Every file that goes into the datasync wheel (or decides its metadata)."""
    files = [p for p in (root / "datasync").rglob("*") if p.is_file()
             and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md"):
        if (root / name).is_file():
            files.append(root / name)
    files += sorted(root.glob("LICENSE*"))
    return sorted(files)


def _snapshot(root: Path) -> dict[str, bytes]:
    """The wheel's source files, read once: the digest and the build see the same bytes
    even while someone edits the checkout."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in _wheel_sources(root)}


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel] + b"\0")
    return h.hexdigest()


def source_digest(root: Path | str = REPO_ROOT) -> str:
    """A SHA-256 over the paths and contents of the files that make the datasync wheel."""
    return _digest(_snapshot(Path(root)))


def build_wheel(root: Path | str = REPO_ROOT, *, cache: Path | str | None = None,
                quiet: bool = True) -> tuple[Path, str]:
    """Build datasync's pure-Python wheel with the standard build backend (setuptools,
    through ``pip wheel``); return its path in ``build/wheels/datasync-<digest>/`` and
    the digest of the sources it was built from.

    The sources are copied to a temporary directory first, so setuptools' ``build/lib``
    never packs a stale module. A wheel already built from identical sources is reused.
    """
    root = Path(root)
    cache = Path(cache) if cache else root / "build" / "wheels"
    files = _snapshot(root)
    digest = _digest(files)
    target = cache / f"datasync-{digest[:16]}"
    found = sorted(target.glob("datasync-*.whl")) if target.is_dir() else []
    if found:
        return found[-1], digest
    _log(quiet, "building the datasync wheel (pip wheel, setuptools)...")
    with tempfile.TemporaryDirectory(prefix="datasync-wheel-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        for rel, data in files.items():
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
              "--disable-pip-version-check", "-w", str(out), str(src)],
             "building the datasync wheel")
        wheels = sorted(out.glob("datasync-*-py3-none-any.whl"))
        if len(wheels) != 1:
            raise WebBuildError(f"expected one pure-Python datasync wheel, got "
                                f"{[w.name for w in out.iterdir()]}")
        target.mkdir(parents=True, exist_ok=True)
        final = target / wheels[0].name
        shutil.copy2(wheels[0], final.with_suffix(".part"))
        os.replace(final.with_suffix(".part"), final)
    # keep the cache small: the few most recent datasync builds stay
    olds = sorted((d for d in cache.glob("datasync-*") if d.is_dir() and d != target),
                  key=lambda d: d.stat().st_mtime)
    for old in olds[:-3]:
        shutil.rmtree(old, ignore_errors=True)
    return final, digest


def _wheel_name_matches(filename: str, name: str, version: str) -> bool:
    """Whether ``filename`` is a pure-Python wheel (``...-none-any.whl``) of
    ``name==version``; names compare normalised (``Foo.Bar`` = ``foo_bar``)."""
    parts = filename[:-4].split("-") if filename.endswith(".whl") else []
    return (len(parts) in (5, 6) and parts[-2:] == ["none", "any"]
            and re.sub(r"[-_.]+", "_", parts[0]).lower() == re.sub(r"[-_.]+", "_", name).lower()
            and parts[1] == version)


def fetch_wheel(name: str, version: str, *, cache: Path | str | None = None,
                quiet: bool = True) -> Path:
    """Return a pure-Python wheel of ``name==version`` for Pyodide's Python, from the
    cache ``build/wheels/`` or else downloaded once from the package index by pip."""
    cache = Path(cache) if cache else REPO_ROOT / "build" / "wheels"
    hits = sorted(p for p in cache.glob("*.whl") if _wheel_name_matches(p.name, name, version)) \
        if cache.is_dir() else []
    if hits:
        return hits[0]
    _log(quiet, f"downloading {name}=={version} (wheel for Python {PYODIDE_PYTHON})...")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="datasync-dl-", dir=cache) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
              "--disable-pip-version-check", "--python-version", PYODIDE_PYTHON,
              "--only-binary=:all:", "--implementation", "py", "--abi", "none",
              "--platform", "any", "-d", tmp, f"{name}=={version}"],
             f"downloading the {name} {version} wheel (needs the package index)")
        got = [p for p in Path(tmp).iterdir() if _wheel_name_matches(p.name, name, version)]
        if len(got) != 1:
            raise WebBuildError(f"pip did not produce one pure-Python wheel of {name} "
                                f"{version}; got {sorted(p.name for p in Path(tmp).iterdir())}")
        with zipfile.ZipFile(got[0]) as z:  # a truncated download must not enter the cache
            if z.testzip() is not None:
                raise WebBuildError(f"downloaded {got[0].name} is corrupt")
        hit = cache / got[0].name
        os.replace(got[0], hit)
    return hit


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
    """The version of the Pyodide package in ``node_modules`` (``npm ci`` installs it)."""
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


def build_web(out: Path | str = "web", *, root: Path | str = REPO_ROOT,
              cache: Path | str | None = None, quiet: bool = True) -> dict[str, Any]:
    """Build the browser bundle in ``out`` (relative paths are relative to the repo
    root) and return the manifest written to ``out/manifest.json``.

    Raises :class:`WebBuildError` if ``node_modules/pyodide`` is missing ("run npm ci"),
    the wheel cannot be built, or a wheel cannot be downloaded.
    """
    root = Path(root).resolve()
    out = Path(out)
    out = out if out.is_absolute() else root / out
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
    _log(quiet, f"built {out} (datasync {version}, Pyodide {pyver}) in "
                f"{time.perf_counter() - started:.1f}s")
    return manifest


def web_is_stale(out: Path | str = "web", *, root: Path | str = REPO_ROOT) -> str | None:
    """Why ``out`` must be rebuilt (a short reason), or None if it is up to date."""
    root = Path(root).resolve()
    out = Path(out)
    out = out if out.is_absolute() else root / out
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
    """Build ``out`` if it is missing or stale; return its manifest (for test fixtures)."""
    root = Path(root).resolve()
    out_path = Path(out) if Path(out).is_absolute() else root / out
    if web_is_stale(out_path, root=root) is None:
        return dict(json.loads((out_path / "manifest.json").read_text()))
    return build_web(out_path, root=root, cache=cache, quiet=quiet)


# --------------------------------------------------------------------------- serve

MIME_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".json": "application/json",
    ".map": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
    ".md": "text/plain",
    ".py": "text/plain",
    ".ts": "text/plain",
    ".data": "application/octet-stream",
    "": "application/octet-stream",
}
_TEXT = ("text/", "application/json")


class WebRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with explicit MIME types, no caching, optional COOP/COEP, and 404
    for hidden paths (``/.git/...``). Configure through the server's attributes."""

    protocol_version = "HTTP/1.1"  # keep-alive: Pyodide's boot is a dozen requests
    extensions_map = MIME_TYPES
    server: DatasyncHTTPServer

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        ext = os.path.splitext(str(path))[1].lower()
        ctype = MIME_TYPES.get(ext, "application/octet-stream")
        if ctype.startswith(_TEXT) and "charset" not in ctype:
            ctype += "; charset=utf-8"
        return ctype

    def send_head(self):  # type: ignore[no-untyped-def]
        path = urllib.parse.unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        if any(part.startswith(".") and part not in (".", "..") for part in path.split("/")):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        if self.server.coop_coep:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class DatasyncHTTPServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its root, URL and options."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, root: Path, coop_coep: bool,
                 verbose: bool) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.root = root
        self.coop_coep = coop_coep
        self.verbose = verbose

        def handler(*args: Any, **kwargs: Any) -> WebRequestHandler:
            return WebRequestHandler(*args, directory=str(root), **kwargs)

        super().__init__(address, handler)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:8000/`` (the bound port if 0 was asked)."""
        host = str(self.server_address[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) and not self.verbose:
            return  # the browser closed a connection: normal, not worth a traceback
        super().handle_error(request, client_address)


def serve(host: str = "127.0.0.1", port: int = 8000, root: Path | str = REPO_ROOT,
          coop_coep: bool = False, *, verbose: bool = False) -> DatasyncHTTPServer:
    """Create (bind, not yet run) a static server for ``root``; ``port=0`` picks a free
    port (see ``server.url``). Run it with ``server.serve_forever()`` or use
    :func:`serving` for a background thread.
    """
    return DatasyncHTTPServer((host, port), root=Path(root).resolve(),
                              coop_coep=coop_coep, verbose=verbose)


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, root: Path | str = REPO_ROOT,
            coop_coep: bool = False, *, verbose: bool = False) -> Iterator[DatasyncHTTPServer]:
    """Run :func:`serve` in a daemon thread for the ``with`` block; yields the server.

    Example: ``with serving() as s: urlopen(s.url + "web/manifest.json")``
    """
    server = serve(host, port, root, coop_coep, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="datasync-web", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- CLI

def add_subcommands(subparsers: Any) -> None:
    """Add ``build`` and ``serve`` to an argparse subparsers object."""
    s = subparsers.add_parser("build", help="build the browser bundle (web/): Pyodide, wheels")
    s.add_argument("--out", default="web", help="output directory (default: web)")
    s = subparsers.add_parser("serve", help="serve the repository (demo, js, web) locally")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free)")
    s.add_argument("--coop-coep", action="store_true",
                   help="send COOP/COEP headers (cross-origin isolation: SharedArrayBuffer)")
    s.add_argument("--no-build", action="store_true",
                   help="do not (re)build web/ even if it is missing or stale")
    s.add_argument("--out", default="web", help=argparse.SUPPRESS)
    s.add_argument("--verbose", action="store_true", help="log every request")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_subcommand(args: argparse.Namespace) -> int | None:
    """Run ``build`` or ``serve`` if that is ``args.command``; else return None."""
    command = getattr(args, "command", None)
    if command not in ("build", "serve"):
        return None
    try:
        if command == "build":
            manifest = build_web(args.out, quiet=False)
            out = Path(args.out) if Path(args.out).is_absolute() else REPO_ROOT / args.out
            print(f"{out}: {', '.join(manifest['wheels'].values())}")
            return 0
        if not args.no_build:
            reason = web_is_stale(args.out)
            if reason:
                print(f"building {args.out}/ ({reason})", file=sys.stderr, flush=True)
                build_web(args.out, quiet=False)
        server = serve(args.host, args.port, coop_coep=args.coop_coep, verbose=args.verbose)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatasyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) stops it as cleanly as Ctrl-C, and Ctrl-C works even when
        # started from a shell that ignores SIGINT for it (`&`, a background job).
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"serving {server.root} at {server.url}", flush=True)
    print(f"demo: {server.url}demo/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m datasync.web build|serve ...`` (same as ``python -m datasync ...``)."""
    parser = argparse.ArgumentParser(prog="python -m datasync.web",
                                     description="Build and serve datasync for the browser.")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    status = run_subcommand(parser.parse_args(argv))
    return 0 if status is None else status


if __name__ == "__main__":
    sys.exit(main())
