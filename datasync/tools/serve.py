"""A small threaded static server for the repository root (so ``/js/``, ``/demo/`` and
``/web/`` are reachable) with the MIME types WebAssembly needs, ``Cache-Control:
no-cache`` and, optionally, the COOP/COEP headers that enable ``SharedArrayBuffer``.

Example::

    from datasync.tools.serve import serving

    with serving(port=0) as server:          # background thread, ephemeral port
        print(server.url + "demo/")

Command line: ``python -m datasync serve [--port 8000] [--host 127.0.0.1] [--coop-coep]``
(it stops on Ctrl-C and on ``kill``: :func:`run_until_stopped`).
"""
from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import REPO_ROOT

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
    """A ThreadingHTTPServer that knows its root, URL and options.

    Example: ``server = serve(port=0); print(server.url)`` (see :func:`serve`).
    """

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
    """``server = serve(port=0)``: create (bind, not yet run) a static server for
    ``root``; ``port=0`` picks a free port (see ``server.url``). Run it with
    :func:`run_until_stopped` or ``server.serve_forever()``, or use :func:`serving` for a
    background thread. Raises ``OSError`` if the address cannot be bound (port in use).
    """
    return DatasyncHTTPServer((host, port), root=Path(root).resolve(),
                              coop_coep=coop_coep, verbose=verbose)


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, root: Path | str = REPO_ROOT,
            coop_coep: bool = False, *, verbose: bool = False) -> Iterator[DatasyncHTTPServer]:
    """``with serving() as s: urlopen(s.url + "web/manifest.json")``: run :func:`serve`
    in a daemon thread for the ``with`` block; yields the server."""
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
    print(f"demo: {server.url}demo/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
