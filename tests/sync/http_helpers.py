"""Talking to a :class:`.server_process.SyncServer` over HTTP, as the protocol says.

Example::

    seed(server)                                   # table t(k, v) with row (1, 'one')
    push(server, [write("w1", ("INSERT INTO t VALUES (2, 'two')", []))])
    version, table = state(server)                 # (primary version, rows of t)
    image = image_of(pull(server, since=0))        # the SQLite image a replica holds
"""
from __future__ import annotations

import sqlite3
from typing import Any

import httpx

from datasync.sync import protocol

from .server_process import SyncServer

DB = "notes"


def api(server: SyncServer, db: str = DB, what: str = "") -> str:
    return f"{server.url}{protocol.API_PREFIX}/{db}" + (f"/{what}" if what else "")


def push(server: SyncServer, writes: list[dict[str, Any]], *, db: str = DB,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(api(server, db, "push"), json={"writes": writes},
                      headers=server.headers(db) if headers is None else headers, timeout=30)


def write(wid: str, *statements: tuple[str, list[Any]]) -> dict[str, Any]:
    return {"id": wid, "statements": [[sql, params] for sql, params in statements]}


def pull(server: SyncServer, db: str = DB, **body: Any) -> protocol.PullReply:
    resp = httpx.post(api(server, db, "pull"), json=body, headers=server.headers(db),
                      timeout=90)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == protocol.PULL_CONTENT_TYPE
    return protocol.decode_pull_reply(resp.content)


def image_of(reply: protocol.PullReply, base: bytes = b"") -> bytes:
    """The SQLite image a replica holding ``base`` has once it applies ``reply``."""
    bs = reply.block_size
    count = -(-reply.file_size // bs)
    blocks = [reply.blocks.get(i) or base[i * bs:(i + 1) * bs] for i in range(count)]
    assert all(len(b) == bs for b in blocks), "the reply lacks a block the replica lacks"
    return b"".join(blocks)[:reply.file_size]


def rows(image: bytes, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(image)
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def state(server: SyncServer, db: str = DB) -> tuple[int, list[tuple[Any, ...]]]:
    """The primary's version and the rows of its table t (none if it has no t)."""
    reply = pull(server, db)
    image = image_of(reply)
    has_t = image and rows(image, "SELECT count(*) FROM sqlite_master WHERE name = 't'")[0][0]
    return reply.version, rows(image, "SELECT * FROM t ORDER BY 1") if has_t else []


def seed(server: SyncServer, db: str = DB) -> None:
    resp = push(server, [write("seed", ("CREATE TABLE t(k INTEGER PRIMARY KEY, v)", []),
                               ("INSERT INTO t VALUES (1, 'one')", []))], db=db)
    assert resp.status_code == 200, resp.text


def refused(resp: httpx.Response, status: int, name: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["name"] == name
    assert resp.json()["error"]["message"]
