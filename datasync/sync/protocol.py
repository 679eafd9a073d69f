"""The sync protocol: what a replica and the sync server say to each other.

Example::

    body = encode_pull_reply(PullReply(db_id, version=7, block_size=4096,
                                       file_size=8192, blocks={0: page0, 1: page1}))
    reply = decode_pull_reply(body)            # -> the same PullReply
    check_push_request({"writes": [{"id": "w1", "statements": [["INSERT ...", [1]]]}]})

This module is the contract of the sync layer; the server (:mod:`.server`) and the
replica (:mod:`.replica`) both follow it and nothing else. Replication is
*physical*: the primary's SQLite pages travel, as the block store keeps them. Writes
travel as SQL with parameters, as ``batch`` takes them.

Every request carries ``Authorization: Bearer <token>`` (:mod:`.auth`). Paths, under
one database ``NAME`` (:data:`NAME_PATTERN`):

``GET /v1/databases/NAME``
    200, JSON :class:`Status` fields: ``database``, ``db_id``, ``version``,
    ``block_size``, ``file_size``.

``POST /v1/databases/NAME/pull``, JSON ``{"since": V, "blocks": [i, ...], "wait": S,
"db_id": ID}``
    ``since``: the primary version the replica holds (0: none, a bootstrap).
    ``blocks``: indexes of blocks the replica changed locally since it pulled ``since``
    (its offline writes); they are sent back whatever their version, so that the
    replica's copy becomes exactly the primary's. ``wait``: seconds (at most
    :data:`MAX_WAIT`) to hold the request while the primary is still at ``since``
    (a long poll: it answers as soon as a commit lands). ``db_id`` (optional): the
    primary the replica follows; another one is 409 ``ReplicaMismatchError``.
    200 with :data:`PULL_CONTENT_TYPE`, the body as :func:`encode_pull_reply` makes
    it: every block changed after ``since`` (all of them for ``since`` 0, or for a
    ``since`` the primary never reached) and every block of ``blocks``, taken from
    one version, ``version``. The replica applies them in one local flush.

``POST /v1/databases/NAME/push``, JSON ``{"writes": [{"id": ID, "statements":
[[SQL, PARAMS], ...]}, ...]}``
    Each write runs in its own transaction, in order, exactly once: its id (1 to
    :data:`MAX_ID_LENGTH` characters, chosen by the replica, unique) is recorded with
    its outcome in ``_datasync_applied`` in the same transaction, and a write sent
    again is answered from that record. PARAMS are as the multi-tab wire carries
    them (:func:`datasync.tabs.wire.encode_params`: bytes as ``{"$b": base64}``).
    200, JSON ``{"version": V, "results": [{"id": ID, "ok": [RESULT, ...]} | {"id":
    ID, "error": [NAME, MESSAGE]}, ...]}`` once every write is durable; ``version``
    contains them all. A RESULT is ``{columns, rows, rowcount, lastrowid}``. A write
    that fails (a constraint...) rolls back and its error is recorded: that is a
    *conflict* for the replica that queued it.

Errors are JSON ``{"error": {"name": NAME, "message": TEXT}}`` with status 400
(``SyncRequestError``: malformed body or parameters, or a NAME that does not match
:data:`NAME_PATTERN`), 401 (``SyncAuthError``), 403 (``SyncForbiddenError``), 404
(unknown path), 405 (wrong method), 409 (``ReplicaMismatchError``), 413
(``SyncRequestError``: body over the server's limit), 503 (the server's own trouble:
disk full, I/O; nothing was recorded, so the same request may be sent again; a
replica treats it as the server being unreachable). A refused request changes
nothing. :func:`error_for_status` turns one back into the named exception.

Pull reply body (binary, big-endian): ``b"DSB1"``, a 4-byte header length, the
header (UTF-8 JSON: ``db_id``, ``version``, ``block_size``, ``file_size``, ``blocks``:
the block indexes, ascending), then each block's ``block_size`` bytes in that order.
"""
from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ReplicaMismatchError,
    SyncAuthError,
    SyncError,
    SyncForbiddenError,
    SyncProtocolError,
    SyncRequestError,
)

API_PREFIX = "/v1/databases"
#: A database name on the server (it is also the store's file name there).
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
PULL_CONTENT_TYPE = "application/vnd.datasync.blocks"
PULL_MAGIC = b"DSB1"
#: Longest long poll a pull may ask for (seconds).
MAX_WAIT = 60.0
MAX_ID_LENGTH = 200
#: Default limit of a request body (bytes); the server's ``--max-body`` changes it.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
#: Token rights.
READ, WRITE = "read", "write"


@dataclass
class PullReply:
    """One pull's answer: the blocks of primary ``version`` the replica lacks."""

    db_id: str
    version: int
    block_size: int
    file_size: int
    blocks: dict[int, bytes] = field(default_factory=dict)


def encode_pull_reply(reply: PullReply) -> bytes:
    """The pull reply body (see the module docstring for the layout)."""
    order = sorted(reply.blocks)
    for i in order:
        if len(reply.blocks[i]) != reply.block_size:
            raise ValueError(f"block {i} is {len(reply.blocks[i])} bytes, not {reply.block_size}")
    header = json.dumps({"db_id": reply.db_id, "version": reply.version,
                         "block_size": reply.block_size, "file_size": reply.file_size,
                         "blocks": order}, separators=(",", ":")).encode()
    return b"".join([PULL_MAGIC, struct.pack(">I", len(header)), header,
                     *(reply.blocks[i] for i in order)])


def decode_pull_reply(body: bytes) -> PullReply:
    """Parse a pull reply body. Raises :class:`~datasync.SyncProtocolError` if it is
    not one, or is cut short."""
    if len(body) < 8 or body[:4] != PULL_MAGIC:
        raise SyncProtocolError(
            f"the server's pull reply does not start with {PULL_MAGIC!r} ({len(body)} bytes): "
            "is the URL a datasync sync server, of this protocol version (v1)?")
    (length,) = struct.unpack(">I", body[4:8])
    try:
        header = json.loads(body[8 : 8 + length])
        order = [int(i) for i in header["blocks"]]
        bs, size = int(header["block_size"]), int(header["file_size"])
        version, db_id = int(header["version"]), str(header["db_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SyncProtocolError(f"the pull reply's header is malformed: {exc}") from None
    data = memoryview(body)[8 + length :]
    if len(data) != bs * len(order):
        raise SyncProtocolError(
            f"the pull reply holds {len(data)} bytes of blocks, not {bs * len(order)} "
            f"({len(order)} blocks of {bs}): it was cut short; pull again")
    blocks = {i: bytes(data[k * bs : (k + 1) * bs]) for k, i in enumerate(order)}
    return PullReply(db_id, version, bs, size, blocks)


@dataclass
class PullRequest:
    since: int = 0
    blocks: list[int] = field(default_factory=list)
    wait: float = 0.0
    db_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "blocks": self.blocks, "wait": self.wait,
                "db_id": self.db_id}


def _bad(message: str) -> SyncRequestError:
    return SyncRequestError(message)


def check_pull_request(body: Any) -> PullRequest:
    """A pull request body, checked. Raises :class:`~datasync.SyncRequestError`."""
    if not isinstance(body, Mapping):
        raise _bad("a pull body is a JSON object {since, blocks, wait, db_id}")
    since, blocks = body.get("since", 0), body.get("blocks", [])
    wait, db_id = body.get("wait", 0), body.get("db_id")
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        raise _bad(f"'since' must be a version (an integer >= 0), not {since!r}")
    if not isinstance(blocks, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in blocks):
        raise _bad("'blocks' must be a list of block indexes (integers >= 0)")
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait <= MAX_WAIT:
        raise _bad(f"'wait' must be seconds between 0 and {MAX_WAIT:g}, not {wait!r}")
    if db_id is not None and not isinstance(db_id, str):
        raise _bad("'db_id' must be a string or null")
    return PullRequest(since, sorted(set(blocks)), float(wait), db_id)


@dataclass
class Write:
    """One queued write: an id and the statements of one transaction."""

    id: str
    statements: list[tuple[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "statements": [[sql, params] for sql, params in self.statements]}


def check_push_request(body: Any) -> list[Write]:
    """A push request body, checked (shapes only; SQL errors are each write's
    outcome). Raises :class:`~datasync.SyncRequestError` naming what is wrong."""
    if not isinstance(body, Mapping) or not isinstance(body.get("writes"), list):
        raise _bad('a push body is a JSON object {"writes": [{"id", "statements"}, ...]}')
    writes: list[Write] = []
    seen: set[str] = set()
    for n, raw in enumerate(body["writes"]):
        if not isinstance(raw, Mapping):
            raise _bad(f"write {n} is not an object {{id, statements}}")
        wid, stmts = raw.get("id"), raw.get("statements")
        if not isinstance(wid, str) or not 0 < len(wid) <= MAX_ID_LENGTH:
            raise _bad(f"write {n}: 'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
        if wid in seen:
            raise _bad(f"write {n}: id {wid!r} appears twice in one push")
        seen.add(wid)
        if not isinstance(stmts, list) or not stmts:
            raise _bad(f"write {wid!r}: 'statements' must be a non-empty list of [sql, params]")
        out: list[tuple[str, Any]] = []
        for k, st in enumerate(stmts):
            if (not isinstance(st, list) or len(st) != 2 or not isinstance(st[0], str)
                    or not isinstance(st[1], (list, dict))):
                raise _bad(f"write {wid!r}, statement {k}: expected [sql, params] with params "
                           "a list or an object")
            out.append((st[0], st[1]))
        writes.append(Write(wid, out))
    return writes


@dataclass
class Status:
    database: str
    db_id: str
    version: int
    block_size: int
    file_size: int


_BY_STATUS: dict[int, type[SyncError]] = {
    400: SyncRequestError, 401: SyncAuthError, 403: SyncForbiddenError,
    409: ReplicaMismatchError, 413: SyncRequestError,
}


def error_body(exc: BaseException) -> dict[str, Any]:
    return {"error": {"name": type(exc).__name__, "message": str(exc)}}


def error_for_status(status: int, body: bytes) -> SyncError:
    """The named error for a refused request (the server's message kept)."""
    try:
        raw = json.loads(body)["error"]
        message = f"{raw['message']} (HTTP {status})"
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {status}: {body[:200]!r}"
    cls = _BY_STATUS.get(status, SyncProtocolError if status < 500 else SyncError)
    return cls(message)
