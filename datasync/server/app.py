"""The sync server's HTTP layer: a Starlette app over :class:`.primaries.Primaries`.

Example::

    app = create_app("/srv/datasync", load_secret(None), allow_origins=["https://app.example"])
    app = create_app(PostgresPlace("postgresql://sync@db/app"), load_secret(None))
    uvicorn.run(app, host="127.0.0.1", port=8765)
    # or, for any ASGI server: uvicorn --factory datasync.server:app_from_env

Routes, bodies and errors are :mod:`datasync.sync.protocol`'s. Every request passes
one error boundary (:func:`_answer`): the name is checked, then the token
(:mod:`.auth`), then the body is read (at most ``max_body`` bytes: the declared
Content-Length first, then counted while it streams in; over it, 413), parsed and
checked whole before anything runs (400), so a refused request changes nothing.
A :class:`~datasync.DatasyncError` becomes its protocol status with
:func:`~datasync.sync.protocol.error_body`; a failure of the server itself (a full
disk...) is 503 with the same body (a bug: 500, logged), never an answer for a
client's fault.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (
    DatasyncError,
    ReplicaMismatchError,
    SyncAuthError,
    SyncForbiddenError,
    SyncRequestError,
)
from ..sync import protocol
from .auth import check_token
from .places import FilePlace, PostgresPlace
from .primaries import DEFAULT_APPLIED_RETENTION, Primaries

_log = logging.getLogger("datasync.server")
#: The protocol's statuses by class (the inverse of ``protocol._BY_STATUS``; 413
#: is the body reader's own answer).
_STATUS: dict[type[DatasyncError], int] = {
    SyncRequestError: 400, SyncAuthError: 401, SyncForbiddenError: 403,
    ReplicaMismatchError: 409,
}
#: How much of a body over the limit is read (and dropped) before the 413 is
#: sent, so that a client still sending gets the answer rather than a reset.
_DRAIN_LIMIT = 16 * 1024 * 1024

Handler = Callable[[Primaries, str, Any], Awaitable[Response]]


def create_app(place: str | FilePlace | PostgresPlace, secret: str, *,
               max_body: int = protocol.DEFAULT_MAX_BODY,
               allow_origins: Sequence[str] = (),
               applied_retention: float = DEFAULT_APPLIED_RETENTION) -> Starlette:
    """The sync server as an ASGI app, its primaries in ``place``: a directory, or a
    :class:`~.places.PostgresPlace` (then any number of these apps, in as many
    processes, may serve the same databases).

    Example: ``app = create_app("data", secret, max_body=1 << 20)``

    ``secret``: the token signing secret (:func:`.auth.load_secret`); ``max_body``:
    bytes a request body may hold (over it: 413); ``allow_origins``: origins of
    browser replicas allowed to call it cross-origin (CORS, with the
    ``Authorization`` header); ``applied_retention``: seconds applied write ids are
    remembered. Replies are gzip-compressed for clients that accept it. The
    primaries are opened on first use and closed when the app's lifespan ends."""
    primaries = Primaries(place, applied_retention=applied_retention)

    def route(path: str, method: str, handler: Handler, *, write: bool,
              body: bool) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _answer(request, primaries, secret, handler, write=write,
                                 body=body, max_body=max_body)
        return Route(protocol.API_PREFIX + path, endpoint, methods=[method])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await primaries.close()

    middleware = [Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)]
    if allow_origins:
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], max_age=3600))
    app = Starlette(
        routes=[route("/{name}", "GET", _status, write=False, body=False),
                route("/{name}/pull", "POST", _pull, write=False, body=True),
                route("/{name}/push", "POST", _push, write=True, body=True)],
        middleware=middleware, lifespan=lifespan,
        exception_handlers={HTTPException: _http_error})
    app.state.primaries = primaries
    return app


async def _answer(request: Request, primaries: Primaries, secret: str, handler: Handler,
                  *, write: bool, body: bool, max_body: int) -> Response:
    """The error boundary: name, token, body, then the handler."""
    name = request.path_params["name"]
    try:
        primaries.check_name(name)
        check_token(secret, request.headers.get("authorization"), name, write=write)
    except DatasyncError as exc:
        return _error(exc)
    parsed: Any = None
    if body:
        try:
            raw = await _read_body(request, max_body)
        except SyncRequestError as exc:
            return _error(exc, 413)
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(SyncRequestError(
                f"the request body is not JSON ({exc}); send a JSON object as "
                "datasync.sync.protocol describes"))
    try:
        return await handler(primaries, name, parsed)
    except DatasyncError as exc:
        return _error(exc)
    except sqlite3.Error as exc:  # the server's own trouble (I/O, full): retry later
        return _error(exc, 503)
    except Exception as exc:  # a bug: logged with its traceback, answered as JSON
        _log.exception("%s %s failed", request.method, request.url.path)
        return _error(exc, 500)


def _error(exc: BaseException, status: int | None = None) -> JSONResponse:
    if status is None:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 503)
    if status >= 500:
        _log.error("%s %s", type(exc).__name__, exc)
    return JSONResponse(protocol.error_body(exc), status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; raises SyncRequestError (for a 413) when
    Content-Length says more, or once more has streamed in. What follows the limit
    is read, up to :data:`_DRAIN_LIMIT` bytes, and dropped, never kept."""
    declared = request.headers.get("content-length")
    too_large = SyncRequestError(
        f"the request body is larger than this server's limit of {limit} bytes: push "
        "fewer writes at a time (or start the server with a larger --max-body)")
    if declared is not None and declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                chunks.clear()
                if size > _DRAIN_LIMIT:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        raise SyncRequestError("the client hung up before the body was complete") from None
    if size > limit:
        raise too_large
    return b"".join(chunks)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown paths (404) and methods (405), as the protocol's JSON errors."""
    status = getattr(exc, "status_code", 404)
    what = "no such path" if status == 404 else f"method {request.method} not allowed"
    return JSONResponse({"error": {"name": "HTTPException", "message": (
        f"{what}: {request.url.path}; the sync API is GET {protocol.API_PREFIX}/NAME and "
        f"POST {protocol.API_PREFIX}/NAME/pull or /push")}}, status_code=status)


async def _status(primaries: Primaries, name: str, _body: Any) -> Response:
    return JSONResponse(asdict(await primaries.status(name)))


async def _pull(primaries: Primaries, name: str, body: Any) -> Response:
    request = protocol.check_pull_request(body)
    reply = await primaries.pull(name, request)
    return Response(protocol.encode_pull_reply(reply), media_type=protocol.PULL_CONTENT_TYPE)


async def _push(primaries: Primaries, name: str, body: Any) -> Response:
    writes = protocol.check_push_request(body)
    version, results = await primaries.push(name, writes)
    return JSONResponse({"version": version, "results": results})
