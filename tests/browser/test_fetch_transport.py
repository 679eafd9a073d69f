"""Real Chromium: FetchTransport (datasync/browser/fetch.py), the replica's HTTP client
in Pyodide, against small servers of the test's own: what it sends, what it returns,
and how each way of getting no answer becomes SyncUnavailableError."""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class _Echo(BaseHTTPRequestHandler):
    """Answers POST /echo with 207, its own content type, and a JSON body saying what
    it got; CORS open to any origin (the page is served from another port)."""

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "authorization, content-type")
        self.send_header("Access-Control-Allow-Methods", "GET, POST")

    def do_OPTIONS(self) -> None:  # the preflight (Authorization, JSON)
        self.send_response(204)
        self._cors()
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"auth": self.headers.get("Authorization"), "path": self.path,
                          "ctype": self.headers.get("Content-Type"),
                          "body": list(body)}).encode()
        self.send_response(207)
        self._cors()
        self.send_header("Content-Type", "application/x-test; charset=binary")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_request_carries_token_json_and_bytes_and_returns_status_body_and_type(
        pypage: Any, echo: str) -> None:
    out = pypage.run(f"""
import json
from datasync.browser.fetch import FetchTransport
t = FetchTransport({echo + "/"!r}, "tok-123")
status, body, ctype = await t.request("POST", "/echo", bytes([0, 1, 255]) + b'{{}}', timeout=10)
await t.close()
[status, json.loads(body), ctype, type(body).__name__]
""")
    status, got, ctype, kind = out
    assert status == 207 and kind == "bytes"
    assert ctype == "application/x-test; charset=binary"
    assert got == {"auth": "Bearer tok-123", "path": "/echo", "ctype": "application/json",
                   "body": [0, 1, 255, 123, 125]}


def test_no_answer_in_time_a_refused_connection_and_a_closed_transport_are_unavailable(
        pypage: Any, silent: str) -> None:
    out = pypage.run(f"""
import asyncio, time
from datasync import SyncUnavailableError
from datasync.browser.fetch import FetchTransport
errors = []
t = FetchTransport({silent!r}, None)
began = time.monotonic()
try:
    await t.request("POST", "/v1/databases/n/pull", b"{{}}", timeout=0.5)
except SyncUnavailableError as e:
    errors.append(["timeout", str(e), round(time.monotonic() - began, 1)])
try:
    await FetchTransport({_closed_port()!r}, "t").request("GET", "/x", timeout=10)
except SyncUnavailableError as e:
    errors.append(["refused", str(e), 0])
pending = asyncio.ensure_future(t.request("GET", "/long", timeout=30))
await asyncio.sleep(0.2)
await t.close()                                  # aborts what is under way
try:
    await pending
except SyncUnavailableError as e:
    errors.append(["closed", str(e), 0])
try:
    await t.request("GET", "/after", timeout=1)
except SyncUnavailableError as e:
    errors.append(["after", str(e), 0])
errors
""")
    kinds = [e[0] for e in out]
    assert kinds == ["timeout", "refused", "closed", "after"], out
    assert "no answer within 0.5 s" in out[0][1] and 0.4 <= out[0][2] < 5, out[0]
    assert "Failed to fetch" in out[1][1] and "--allow-origin" in out[1][1], out[1]
    assert "the transport was closed" in out[2][1], out[2]
    assert "transport is closed" in out[3][1], out[3]
