"""A replica's HTTP client in the browser: the page's ``fetch()`` (Pyodide only).

Example (Pyodide; :func:`datasync.runtime.make_transport` makes it)::

    transport = FetchTransport("http://127.0.0.1:8765", token)
    status, body, ctype = await transport.request(
        "POST", "/v1/databases/notes/pull", b'{"since": 0}', timeout=10.0)
    # -> (200, b"DSB1...", "application/vnd.datasync.blocks")
    await transport.close()

The :class:`datasync.sync.transport.Transport` contract over ``fetch()``: one
request per call, ``Authorization: Bearer <token>`` and ``Content-Type:
application/json`` on each, the body as bytes (a ``Uint8Array``), the answer read
whole as an ``ArrayBuffer``. ``timeout`` (seconds) covers the whole exchange, body
included: an ``AbortController`` aborts it. Every answer is returned whatever its
status; no answer (the server is down, the network is off, CORS refused the page's
origin: ``fetch`` rejects with a ``TypeError``), an abort (the timeout) or a
cancelled call (the replica closing during a long poll: the request is aborted and
the ``CancelledError`` goes on) raise :class:`~datasync.SyncUnavailableError`.

A page served from another origin than the server's needs the server to allow it
(``python -m datasync server --allow-origin https://app.example``).
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import SyncUnavailableError
from ..sync.transport import auth_headers


def _plain(value: dict[str, Any]) -> Any:
    import js
    from pyodide.ffi import to_js

    return to_js(value, dict_converter=js.Object.fromEntries)


class FetchTransport:
    """:class:`~datasync.sync.transport.Transport` over ``fetch()`` (see the module
    docstring). ``base_url``: ``http(s)://HOST:PORT`` (a trailing ``/`` is dropped);
    ``token``: the bearer token, or None to send none."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = auth_headers(token)
        self._pending: dict[int, Any] = {}  # AbortControllers of requests under way
        self._closed = False
        #: Bytes sent, and received as the server sent them (its Content-Length: gzip's
        #: size when it compressed; else the body's).
        self.counters = {"requests": 0, "bytes_sent": 0, "bytes_received": 0}

    def set_token(self, token: str | None) -> None:
        """Send ``token`` from the next request on."""
        self._headers = auth_headers(token)

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      timeout: float) -> tuple[int, bytes, str]:
        """Send one request; returns ``(status, body bytes, content type or "")``.
        ``timeout``: seconds for the whole exchange. Raises
        :class:`~datasync.SyncUnavailableError` if no answer came in time (or the
        transport was closed)."""
        import js
        from pyodide.ffi import JsException, to_js

        url = f"{self.base_url}{path}"
        if self._closed:
            raise SyncUnavailableError(
                f"{method} {url}: this replica's transport is closed; open the replica again")
        controller = js.AbortController.new()
        init = _plain({"method": method, "headers": self._headers, "cache": "no-store"})
        init.signal = controller.signal
        if body is not None:
            init.body = to_js(bytes(body))
        timer = asyncio.get_event_loop().call_later(max(float(timeout), 0.0), controller.abort)
        key = id(controller)
        self._pending[key] = controller
        try:
            response = await js.fetch(url, init)
            data = (await response.arrayBuffer()).to_bytes()
            status = int(response.status)
            ctype = response.headers.get("content-type")
            length = response.headers.get("content-length")
        except JsException as exc:
            timed_out = getattr(exc, "name", "") == "AbortError"
            if timed_out and self._closed:
                why = "the transport was closed"
            elif timed_out:
                why = f"no answer within {float(timeout):g} s"
            else:
                why = (f"{exc}: the server is down, the "
                       "network is off, or the server does not allow this page's origin "
                       "(start it with --allow-origin)")
            raise SyncUnavailableError(
                f"the sync server {self.base_url} did not answer {method} {path} ({why}); "
                "writes keep waiting in the outbox: pull or push again later") from None
        except asyncio.CancelledError:
            controller.abort()  # the caller gave up (a long poll cancelled): end it
            raise
        finally:
            timer.cancel()
            self._pending.pop(key, None)
        c = self.counters
        c["requests"] += 1
        c["bytes_sent"] += len(body or b"")
        c["bytes_received"] += int(length) if length is not None else len(data)
        return status, data, "" if ctype is None else str(ctype)

    async def close(self) -> None:
        """Abort the requests under way; later requests raise SyncUnavailableError."""
        self._closed = True
        for controller in list(self._pending.values()):
            controller.abort()
        self._pending.clear()
