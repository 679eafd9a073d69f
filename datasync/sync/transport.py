"""How a replica reaches its sync server: one HTTP request at a time.

Example::

    transport = HttpxTransport("http://127.0.0.1:8765", token)
    status, body, ctype = await transport.request("POST", "/v1/databases/app/pull",
                                                  b'{"since": 0}', timeout=10.0)
    await transport.close()

:class:`Transport` is the contract; natively :class:`HttpxTransport` (httpx, the
``datasync[sync]`` extra: a well-kept async client with timeouts and connection
reuse), in Pyodide :class:`datasync.browser.fetch.FetchTransport` (``fetch()``).
``runtime.make_transport`` picks one. A transport raises
:class:`~datasync.SyncUnavailableError` when no answer came (refused, reset, timed
out) and returns every answer, whatever its status: the replica decides what a
status means (:func:`.protocol.error_for_status`).
"""
from __future__ import annotations

from typing import Any, Protocol

from ..errors import SyncUnavailableError


class Transport(Protocol):
    base_url: str
    #: Bytes sent and received on the wire (bodies, as compressed in transit).
    counters: dict[str, int]

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      timeout: float) -> tuple[int, bytes, str]:
        """Send one request (``body``: JSON bytes, or None); returns ``(status,
        body, content type)``. ``timeout``: seconds for the whole exchange.
        Raises :class:`~datasync.SyncUnavailableError` if no answer came."""

    def set_token(self, token: str | None) -> None:
        """Send ``token`` from the next request on (a refreshed one)."""

    async def close(self) -> None:
        """Release connections (the transport may not be used after)."""


def auth_headers(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class HttpxTransport:
    """:class:`Transport` over an ``httpx.AsyncClient`` (native replicas)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise SyncUnavailableError(
                "a native replica needs httpx: pip install 'datasync[sync]'") from exc
        self.base_url = base_url.rstrip("/")
        self._httpx = httpx
        self._client: Any = httpx.AsyncClient(base_url=self.base_url,
                                              headers=auth_headers(token))
        self.counters = {"requests": 0, "bytes_sent": 0, "bytes_received": 0}

    async def request(self, method: str, path: str, body: bytes | None = None, *,
                      timeout: float) -> tuple[int, bytes, str]:
        try:
            resp = await self._client.request(method, path, content=body, timeout=timeout)
            data = await resp.aread()
        except (self._httpx.HTTPError, RuntimeError) as exc:  # (RuntimeError: closed)
            raise SyncUnavailableError(
                f"the sync server {self.base_url} did not answer {method} {path}: "
                f"{type(exc).__name__}: {exc or 'no detail'}") from exc
        c = self.counters
        c["requests"] += 1
        c["bytes_sent"] += len(body or b"")
        c["bytes_received"] += resp.num_bytes_downloaded
        return resp.status_code, data, resp.headers.get("content-type", "")

    def set_token(self, token: str | None) -> None:
        self._client.headers.pop("Authorization", None)
        self._client.headers.update(auth_headers(token))

    async def close(self) -> None:
        await self._client.aclose()
