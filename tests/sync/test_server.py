"""The sync server, through HTTP against a real process (``python -m datasync server``)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import jwt
import pytest

import datasync
from datasync.server.primaries import Primaries
from datasync.sync import protocol
from datasync.sync.protocol import PullRequest, Write

from .server_process import ROOT, SyncServer

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


# -- tokens --------------------------------------------------------------------------
def test_token_command_prints_a_token_the_server_accepts(sync_server: SyncServer) -> None:
    def token(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "datasync", "token", "--database", DB,
                               *args], env=sync_server.env(), capture_output=True,
                              text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    writer, reader = token(), token("--read-only", "--expires", "600")
    resp = push(sync_server, [write("w", ("CREATE TABLE t(x)", []))],
                headers={"Authorization": f"Bearer {writer}"})
    assert resp.status_code == 200, resp.text
    resp = httpx.get(api(sync_server), headers={"Authorization": f"Bearer {reader}"})
    assert resp.status_code == 200 and resp.json()["version"] >= 1
    refused(push(sync_server, [write("w2", ("CREATE TABLE u(x)", []))],
                 headers={"Authorization": f"Bearer {reader}"}), 403, "SyncForbiddenError")


def test_token_command_without_a_secret_exits_2_naming_both_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**SyncServer(tmp_path).env(), "DATASYNC_SECRET": ""}
    done = subprocess.run([sys.executable, "-m", "datasync", "token", "--database", DB],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert "--secret-file" in done.stderr and "DATASYNC_SECRET" in done.stderr
    (tmp_path / "short").write_text("tooshort\n")
    done = subprocess.run([sys.executable, "-m", "datasync", "server", "--data",
                           str(tmp_path), "--secret-file", str(tmp_path / "short")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "at least 16" in done.stderr


def test_bad_tokens_are_401_and_change_nothing(sync_server: SyncServer) -> None:
    seed(sync_server)
    before = state(sync_server)
    now = int(time.time())
    expired = jwt.encode({"db": DB, "rights": "write", "iat": now - 100, "exp": now - 10},
                         sync_server.secret, algorithm="HS256")
    other_secret = jwt.encode({"db": DB, "rights": "write", "iat": now}, "x" * 32,
                              algorithm="HS256")
    no_rights = jwt.encode({"db": DB, "iat": now}, sync_server.secret, algorithm="HS256")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer garbage"},
                    {"Authorization": f"Basic {sync_server.token(DB)}"},
                    {"Authorization": f"Bearer {expired}"},
                    {"Authorization": f"Bearer {other_secret}"},
                    {"Authorization": f"Bearer {no_rights}"}):
        refused(push(sync_server, [write("bad", ("INSERT INTO t VALUES (2, 'x')", []))],
                     headers=headers), 401, "SyncAuthError")
        refused(httpx.post(api(sync_server, what="pull"), json={}, headers=headers),
                401, "SyncAuthError")
    assert state(sync_server) == before


def test_a_token_for_another_database_or_read_only_is_403_and_changes_nothing(
        sync_server: SyncServer) -> None:
    seed(sync_server)
    before = state(sync_server)
    attempt = [write("x", ("INSERT INTO t VALUES (2, 'x')", []))]
    refused(push(sync_server, attempt, headers=sync_server.headers("other")),
            403, "SyncForbiddenError")
    refused(httpx.get(api(sync_server), headers=sync_server.headers("other")),
            403, "SyncForbiddenError")
    refused(push(sync_server, attempt, headers=sync_server.headers(DB, read_only=True)),
            403, "SyncForbiddenError")
    assert state(sync_server) == before
    assert not (sync_server.data_dir / "other.dsdb").exists()


# -- malformed requests -------------------------------------------------------------
def test_malformed_bodies_are_400_and_apply_nothing(sync_server: SyncServer) -> None:
    seed(sync_server)
    before = state(sync_server)
    good = write("good", ("INSERT INTO t VALUES (5, 'five')", []))
    url, headers = api(sync_server, what="push"), sync_server.headers(DB)
    bodies = [b'{"writes": [{"id": "a", "statements": [["INSERT', b"", b"\xff\xfe",
              json.dumps({"writes": {}}).encode(), json.dumps([good]).encode(),
              json.dumps({"writes": [good, {"id": "", "statements": [["SELECT 1", []]]}]}).encode(),
              json.dumps({"writes": [good, {"id": "b", "statements": [["SELECT 1"]]}]}).encode(),
              json.dumps({"writes": [good, {"id": "c", "statements": []}]}).encode(),
              json.dumps({"writes": [good, good]}).encode(),
              json.dumps({"writes": [good, {"id": "d", "statements": [["SELECT ?", 5]]}]}).encode()]
    for body in bodies:
        refused(httpx.post(url, content=body, headers=headers), 400, "SyncRequestError")
    for body in ({"since": -1}, {"wait": 61}, {"blocks": [-1]}, {"db_id": 5}, [1]):
        refused(httpx.post(api(sync_server, what="pull"), json=body, headers=headers),
                400, "SyncRequestError")
    assert state(sync_server) == before


def test_a_body_over_max_body_is_413_and_applies_nothing(sync_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = sync_server_factory("--max-body", "4096")
    seed(server)
    before = state(server)
    big = [write(f"w{i}", ("INSERT INTO t(v) VALUES (?)", ["x" * 100])) for i in range(100)]
    refused(push(server, big), 413, "SyncRequestError")
    body = json.dumps({"writes": big}).encode()

    def chunks():  # no Content-Length: counted as it streams in
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    refused(httpx.post(api(server, what="push"), content=chunks(), headers=server.headers(DB)),
            413, "SyncRequestError")
    assert state(server) == before
    assert push(server, big[:2]).status_code == 200  # under the limit: fine


def test_unknown_paths_and_names_are_json_errors(sync_server: SyncServer) -> None:
    for resp in (httpx.get(sync_server.url + "/v2/x"),
                 httpx.post(api(sync_server, what="nope"), headers=sync_server.headers(DB))):
        assert resp.status_code == 404 and resp.json()["error"]["message"]
    assert httpx.delete(api(sync_server), headers=sync_server.headers(DB)).status_code == 405
    refused(httpx.get(api(sync_server, "-bad"), headers=sync_server.headers(DB)),
            400, "SyncRequestError")


# -- pushes ---------------------------------------------------------------------------
def test_a_push_applies_each_write_once_and_a_resend_gets_the_same_results(
        sync_server: SyncServer) -> None:
    seed(sync_server)
    writes = [write("a", ("INSERT INTO t(v) VALUES (?)", [{"$b": "AAEC"}]),
                    ("SELECT count(*) FROM t", [])),
              write("b", ("INSERT INTO t(v) VALUES (:v)", {"v": "named"}))]
    first = push(sync_server, writes).json()
    assert [r["id"] for r in first["results"]] == ["a", "b"]
    assert first["results"][0]["ok"][1]["rows"] == [[2]]
    again = push(sync_server, writes).json()
    assert again["results"] == first["results"]
    assert again["version"] >= first["version"]
    version, table = state(sync_server)
    assert table == [(1, "one"), (2, b"\x00\x01\x02"), (3, "named")]


def test_a_failing_write_returns_its_error_and_the_others_still_apply(
        sync_server: SyncServer) -> None:
    seed(sync_server)
    results = push(sync_server, [
        write("ok1", ("INSERT INTO t VALUES (10, 'ten')", [])),
        write("dup", ("INSERT INTO t VALUES (11, 'eleven')", []),
              ("INSERT INTO t VALUES (1, 'clash')", [])),
        write("bad-sql", ("INSERT INTO nowhere VALUES (1)", [])),
        write("ok2", ("INSERT INTO t VALUES (12, 'twelve')", []))]).json()["results"]
    assert "ok" in results[0] and "ok" in results[3]
    assert results[1]["error"][0] == "IntegrityError"
    assert results[2]["error"][0] == "OperationalError"
    assert state(sync_server)[1] == [(1, "one"), (10, "ten"), (12, "twelve")]
    # The recorded outcome answers a resend, even once the conflict is gone.
    push(sync_server, [write("fix", ("DELETE FROM t WHERE k = 1", []))])
    resent = push(sync_server, [write("dup", ("INSERT INTO t VALUES (11, 'eleven')", []))])
    assert resent.json()["results"][0] == results[1]
    assert 11 not in [k for k, _ in state(sync_server)[1]]


def test_writes_that_would_outlive_their_transaction_are_refused(sync_server: SyncServer) -> None:
    seed(sync_server)
    attempts = {"tx": ("COMMIT", "TransactionStatementError"),
                "attach": (f"ATTACH '{sync_server.data_dir}/x.db' AS x", "LocalObjectError"),
                "temp": ("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
                         "LocalObjectError"),
                "pragma": ("PRAGMA journal_mode = WAL", "ConnectionPragmaError"),
                "applied": ("DELETE FROM _datasync_applied", "LocalObjectError")}
    results = push(sync_server, [write(k, ("INSERT INTO t VALUES (7, 'seven')", []), (sql, []))
                                 for k, (sql, _) in attempts.items()]).json()["results"]
    assert [r["error"][0] for r in results] == [name for _, name in attempts.values()]
    assert state(sync_server)[1] == [(1, "one")]
    assert not (sync_server.data_dir / "x.db").exists()
    assert push(sync_server, [write("seed", ("SELECT 1", []))]).json()["results"][0]["ok"]


# -- pulls ----------------------------------------------------------------------------
def test_a_bootstrap_pull_is_exactly_the_primarys_image(sync_server: SyncServer) -> None:
    seed(sync_server)
    push(sync_server, [write(f"w{i}", ("INSERT INTO t(v) VALUES (?)", ["x" * 500]))
                       for i in range(40)])
    reply = pull(sync_server, since=0)
    status = httpx.get(api(sync_server), headers=sync_server.headers(DB)).json()
    assert (reply.db_id, reply.version, reply.file_size) == (
        status["db_id"], status["version"], status["file_size"])
    assert sorted(reply.blocks) == list(range(-(-reply.file_size // reply.block_size)))
    image = image_of(reply)
    assert sync_server.stop() == 0

    async def exported() -> bytes:
        db = await datasync.open(str(sync_server.data_dir / f"{DB}.dsdb"), create=False)
        try:
            return await db.export()
        finally:
            await db.close()

    assert image == asyncio.run(exported())
    assert rows(image, "SELECT count(*) FROM t")[0][0] == 41


def test_a_pull_since_v_returns_only_the_blocks_changed_after_v(sync_server: SyncServer) -> None:
    seed(sync_server)
    push(sync_server, [write(f"w{i}", ("INSERT INTO t(v) VALUES (?)", ["y" * 900]))
                       for i in range(60)])
    old = pull(sync_server, since=0)
    push(sync_server, [write("small", ("UPDATE t SET v = 'changed' WHERE k = 1", []))])
    delta = pull(sync_server, since=old.version)
    assert delta.version > old.version
    assert 0 < len(delta.blocks) < len(old.blocks) // 2
    assert image_of(delta, image_of(old)) == image_of(pull(sync_server, since=0))
    # Nothing changed since: no block, unless the replica names some.
    assert pull(sync_server, since=delta.version).blocks == {}
    named = pull(sync_server, since=delta.version, blocks=[1, 0, 10_000])
    assert sorted(named.blocks) == [0, 1] and named.blocks[0] == image_of(delta, image_of(old))[:4096]
    # A version the primary never reached: everything again.
    assert len(pull(sync_server, since=delta.version + 50).blocks) == len(old.blocks)


def test_a_new_database_bootstraps_empty_and_its_first_push_creates_the_image(
        sync_server: SyncServer) -> None:
    empty = pull(sync_server, "fresh", since=0)
    assert (empty.version, empty.file_size, empty.blocks) == (0, 0, {})
    assert push(sync_server, [write("one", ("CREATE TABLE t(x)", []),
                                    ("INSERT INTO t VALUES (42)", []))], db="fresh").status_code == 200
    after = pull(sync_server, "fresh", since=0, db_id=empty.db_id)
    assert after.db_id == empty.db_id and after.version > 0
    assert rows(image_of(after), "SELECT x FROM t") == [(42,)]


def test_a_pull_for_another_primary_is_409(sync_server: SyncServer) -> None:
    seed(sync_server)
    resp = httpx.post(api(sync_server, what="pull"), json={"since": 0, "db_id": "f" * 32},
                      headers=sync_server.headers(DB))
    refused(resp, 409, "ReplicaMismatchError")


def test_a_long_poll_answers_within_a_second_of_a_push(sync_server: SyncServer) -> None:
    seed(sync_server)
    since = pull(sync_server).version
    got: dict[str, Any] = {}

    def poll() -> None:
        got["reply"] = pull(sync_server, since=since, wait=20)
        got["at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    assert poller.is_alive(), "the long poll answered before anything changed"
    pushed = time.monotonic()
    push(sync_server, [write("wake", ("INSERT INTO t VALUES (99, 'up')", []))])
    poller.join(10)
    assert got["at"] - pushed < 1.0
    assert got["reply"].version > since and got["reply"].blocks


def test_a_long_poll_with_nothing_new_answers_after_wait_at_the_same_version(
        sync_server: SyncServer) -> None:
    seed(sync_server)
    since = pull(sync_server).version
    start = time.monotonic()
    reply = pull(sync_server, since=since, wait=1)
    assert 0.9 <= time.monotonic() - start < 3
    assert (reply.version, reply.blocks) == (since, {})


def test_replies_are_gzipped_and_cors_preflight_passes(sync_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = sync_server_factory("--allow-origin", "https://app.example")
    seed(server)
    resp = httpx.post(api(server, what="pull"), json={}, headers={
        **server.headers(DB), "Accept-Encoding": "gzip", "Origin": "https://app.example"})
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    assert int(resp.headers["content-length"]) < len(resp.content)
    assert protocol.decode_pull_reply(resp.content).blocks  # httpx decoded it
    pre = httpx.options(api(server, what="push"), headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 200
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    other = httpx.options(api(server, what="push"), headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 400


# -- crashes and shutdown -------------------------------------------------------------
def test_every_acknowledged_write_survives_a_sigkill_exactly_once(sync_server: SyncServer) -> None:
    push(sync_server, [write("schema", ("CREATE TABLE t(k TEXT PRIMARY KEY, v)", []))])
    acked: list[str] = []
    stop = threading.Event()

    def pusher() -> None:
        n = 0
        while not stop.is_set():
            ids = [f"p{n}-{j}" for j in range(3)]
            n += 1
            try:
                resp = push(sync_server, [write(i, ("INSERT INTO t VALUES (?, ?)", [i, "v"]))
                                          for i in ids])
            except httpx.HTTPError:
                return
            if resp.status_code == 200:
                acked.extend(ids)

    thread = threading.Thread(target=pusher)
    thread.start()
    time.sleep(1.0)
    sync_server.kill()
    stop.set()
    thread.join(30)
    assert len(acked) >= 3
    sync_server.start()
    keys = [k for (k, _) in state(sync_server)[1]]
    assert set(acked) <= set(keys) and len(keys) == len(set(keys))
    # Resending everything acknowledged applies nothing again.
    resend = push(sync_server, [write(i, ("INSERT INTO t VALUES (?, ?)", [i, "v"]))
                                for i in acked[-30:]]).json()["results"]
    assert all("ok" in r for r in resend)
    assert len(state(sync_server)[1]) == len(keys)


def test_sigterm_answers_long_polls_and_exits_cleanly(sync_server: SyncServer) -> None:
    seed(sync_server)
    since = pull(sync_server).version
    got: dict[str, Any] = {}
    poller = threading.Thread(target=lambda: got.update(reply=pull(sync_server, since=since,
                                                                   wait=30)))
    poller.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert sync_server.stop() == 0
    assert time.monotonic() - start < 5
    poller.join(5)
    assert got["reply"].version == since
    sync_server.start()
    assert state(sync_server)[1] == [(1, "one")]


# -- retention (in process) -------------------------------------------------------------
async def test_applied_ids_older_than_the_retention_are_pruned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    primaries = Primaries(str(tmp_path), applied_retention=0.0, prune_interval=0.0)
    try:
        again = Write("w", [("INSERT INTO t VALUES (1)", [])])
        await primaries.push(DB, [Write("s", [("CREATE TABLE t(x)", [])]), again])
        _, results = await primaries.push(DB, [again])  # pruned first: applied again
        assert "ok" in results[0]
        reply = await primaries.pull(DB, PullRequest())
        assert rows(image_of(reply), "SELECT count(*) FROM t") == [(2,)]
    finally:
        await primaries.close()
    kept = Primaries(str(tmp_path))
    try:
        await kept.push(DB, [Write("k", [("INSERT INTO t VALUES (1)", [])])])
        await kept.push(DB, [Write("k", [("INSERT INTO t VALUES (1)", [])])])
        reply = await kept.pull(DB, PullRequest())
        assert rows(image_of(reply), "SELECT count(*) FROM t") == [(3,)]
    finally:
        await kept.close()


@pytest.mark.parametrize("expires", [None, 60])
def test_tokens_name_one_database_and_their_rights(expires: float | None) -> None:
    from datasync.server.auth import check_token, make_token

    secret = "s" * 32
    claims = check_token(secret, f"Bearer {make_token(secret, DB, expires=expires)}", DB,
                         write=True)
    assert claims["db"] == DB and claims["rights"] == "write"
    assert ("exp" in claims) == (expires is not None)
