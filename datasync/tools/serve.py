"""A small threaded static server for the repository root (so ``/js/``, ``/demo/`` and
``/web/`` are reachable) with the MIME types WebAssembly needs, ``Cache-Control:
no-cache`` and, optionally, the COOP/COEP headers that enable ``SharedArrayBuffer``.

Example::

    from datasync.tools.serve import serving

    with serving(port=0) as server:          # background thread, ephemeral port
        print(server.url + "demo/")

    # your app's folder at /, datasync's runtime next to it at /web/ and /js/
    with serving(root="myapp", mounts=runtime_mounts()) as server:
        print(server.url, server.url + "js/datasync.js")

Command line: ``python -m datasync serve [--port 8000] [--host 127.0.0.1] [--coop-coep]
[--root DIR]`` (it stops on Ctrl-C and on ``kill``: :func:`run_until_stopped`).
"""
from __future__ import annotations

import contextlib
import errno
import http.server
import os
import posixpath
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import REPO_ROOT, PortInUseError

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
    for hidden paths (``/.git/...``). Configure through the server's attributes.

    Example: ``DatasyncHTTPServer(("127.0.0.1", 0), ...)`` creates one per request.
    """

    protocol_version = "HTTP/1.1"  # keep-alive: Pyodide's boot is a dozen requests
    extensions_map = MIME_TYPES
    server: DatasyncHTTPServer

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        ext = os.path.splitext(str(path))[1].lower()
        ctype = MIME_TYPES.get(ext, "application/octet-stream")
        if ctype.startswith(_TEXT) and "charset" not in ctype:
            ctype += "; charset=utf-8"
        return ctype

    def translate_path(self, path: str) -> str:
        """A path under a mount (``/web/...``) maps into the mounted folder; any other
        path into the root, as ``SimpleHTTPRequestHandler`` does."""
        clean = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        parts = [p for p in posixpath.normpath(clean).split("/") if p not in ("", ".", "..")]
        folder = self.server.mounts.get(parts[0]) if parts else None
        if folder is None:
            return super().translate_path(path)
        return os.path.join(folder, *parts[1:]) + ("/" if clean.endswith("/") else "")

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
    """A ThreadingHTTPServer that knows its root, its mounts (first URL segment →
    folder, served instead of the root's folder of that name), URL and options.

    Example: ``server = serve(port=0); print(server.url)`` (see :func:`serve`).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, root: Path, coop_coep: bool,
                 verbose: bool, mounts: Mapping[str, Path] | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.root = root
        self.mounts = dict(mounts or {})
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


def runtime_mounts(web: Path | str = REPO_ROOT / "web",
                   checkout: Path | str = REPO_ROOT) -> dict[str, Path]:
    """``runtime_mounts()``: datasync's runtime as :func:`serve` mounts, so a page in
    any root loads ``/js/datasync.js`` and ``/web/...`` (Pyodide, the wheels)."""
    return {"web": Path(web).resolve(), "js": (Path(checkout) / "js").resolve()}


def serve(host: str = "127.0.0.1", port: int = 8000, root: Path | str = REPO_ROOT,
          coop_coep: bool = False, *, verbose: bool = False,
          mounts: Mapping[str, Path | str] | None = None) -> DatasyncHTTPServer:
    """``server = serve(port=0)``: create (bind, not yet run) a static server for
    ``root``; ``port=0`` picks a free port (see ``server.url``). ``mounts`` maps a first
    URL segment to a folder served there instead (see :func:`runtime_mounts`). Run it
    with :func:`run_until_stopped` or ``server.serve_forever()``, or use :func:`serving`
    for a background thread. Raises :class:`PortInUseError` (an ``OSError``) if the port
    is taken, saying how to pick another, ``FileNotFoundError`` if ``root`` is not a
    folder, and ``OSError`` if the address cannot be bound otherwise.
    """
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: serve an existing folder "
                                "(--root DIR, e.g. your app's)")
    folders = {name.strip("/"): Path(folder).resolve() for name, folder in (mounts or {}).items()}
    try:
        return DatasyncHTTPServer((host, port), root=root_path, coop_coep=coop_coep,
                                  verbose=verbose, mounts=folders)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        other = port + 1 if 0 < port < 65535 else 8001
        raise PortInUseError(
            f"port {port} on {host} is in use (another server, or an earlier `serve` "
            f"still running?): pick another port with `python -m datasync serve --port "
            f"{other}` (or `make demo PORT={other}`), or --port 0 for any free one") from exc


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, root: Path | str = REPO_ROOT,
            coop_coep: bool = False, *, verbose: bool = False,
            mounts: Mapping[str, Path | str] | None = None) -> Iterator[DatasyncHTTPServer]:
    """``with serving() as s: urlopen(s.url + "web/manifest.json")``: run :func:`serve`
    in a daemon thread for the ``with`` block; yields the server."""
    server = serve(host, port, root, coop_coep, verbose=verbose, mounts=mounts)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="datasync-web", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_until_stopped(server: DatasyncHTTPServer) -> None:
    """``run_until_stopped(serve(port=8000))``: print the server's URLs, then serve in
    this thread until Ctrl-C (SIGINT) or ``kill`` (SIGTERM), and close it."""
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) stops it as cleanly as Ctrl-C, and Ctrl-C works even when
        # started from a shell that ignores SIGINT for it (`&`, a background job).
        # Installed before the URLs are printed: whoever reads them may signal at once.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"serving {server.root} at {server.url}", flush=True)
    if server.mounts:
        runtime = ", ".join(f"{server.url}{name}/" for name in server.mounts)
        print(f"runtime: {runtime} (datasync's; Ctrl-C to stop)", flush=True)
    else:
        print(f"demo: {server.url}demo/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
