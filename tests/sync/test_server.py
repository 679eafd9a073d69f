"""The sync server, through HTTP against a real process (``python -m datasync server``)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import jwt
import pytest

from datasync.server.primaries import Primaries
from datasync.sync.protocol import PullRequest, Write

from .http_helpers import DB, api, image_of, push, refused, rows, seed, state, write
from .server_process import ROOT, SyncServer

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
        write("bad-param", ("INSERT INTO t(v) VALUES (?)", [[1]])),
        write("too-big", ("INSERT INTO t(v) VALUES (?)", [2 ** 70])),
        write("bad-blob", ("INSERT INTO t(v) VALUES (?)", [{"$b": 5}])),
        write("ok2", ("INSERT INTO t VALUES (12, 'twelve')", []))]).json()["results"]
    assert "ok" in results[0] and "ok" in results[-1]
    assert results[1]["error"][0] == "IntegrityError"
    assert results[2]["error"][0] == "OperationalError"
    assert all(r["error"][1] for r in results[3:6])
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
                "heap": ("PRAGMA hard_heap_limit = 100000", "ConnectionPragmaError"),
                "pages": ("PRAGMA max_page_count = 1", "ConnectionPragmaError"),
                "cache": ("PRAGMA cache_size = 1", "ConnectionPragmaError"),
                "where": ("PRAGMA database_list", "ConnectionPragmaError"),
                "applied": ("DELETE FROM _datasync_applied", "LocalObjectError"),
                "rename": ("ALTER TABLE _datasync_applied RENAME TO x", "LocalObjectError"),
                "trigger": ("CREATE TRIGGER tr AFTER INSERT ON _datasync_applied "
                            "BEGIN DELETE FROM _datasync_applied; END", "LocalObjectError"),
                "leak": ("INSERT INTO t SELECT 8, result FROM _datasync_applied",
                         "LocalObjectError")}
    results = push(sync_server, [write(k, ("INSERT INTO t VALUES (7, 'seven')", []), (sql, []))
                                 for k, (sql, _) in attempts.items()]).json()["results"]
    assert [r["error"][0] for r in results] == [name for _, name in attempts.values()]
    assert state(sync_server)[1] == [(1, "one")]
    assert not (sync_server.data_dir / "x.db").exists()
    assert push(sync_server, [write("seed", ("SELECT 1", []))]).json()["results"][0]["ok"]
    allowed = push(sync_server, [write("version", ("PRAGMA user_version = 7", [])),
                                 write("info", ("PRAGMA table_info(t)", [])),
                                 write("tvf", ("SELECT name FROM pragma_table_info('t')", []))])
    assert ["ok" in r for r in allowed.json()["results"]] == [True, True, True], allowed.json()
    refused = push(sync_server, [write("schema", ("PRAGMA schema_version = 1", []))])
    assert refused.json()["results"][0]["error"][0] == "ConnectionPragmaError"
    # and the server still serves writes normally after every refusal
    assert "ok" in push(sync_server, [write("after", ("INSERT INTO t VALUES (9, 'n')", []))]
                        ).json()["results"][0]


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


def test_app_from_env_names_what_is_missing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datasync import InvalidOptionError
    from datasync.server import app_from_env

    monkeypatch.delenv("DATASYNC_DATA", raising=False)
    monkeypatch.setenv("DATASYNC_SECRET", "s" * 32)
    with pytest.raises(InvalidOptionError, match="DATASYNC_DATA"):
        app_from_env()
    monkeypatch.setenv("DATASYNC_DATA", str(tmp_path))
    monkeypatch.setenv("DATASYNC_MAX_BODY", "lots")
    with pytest.raises(InvalidOptionError, match="DATASYNC_MAX_BODY"):
        app_from_env()
    monkeypatch.setenv("DATASYNC_MAX_BODY", "1000")
    assert app_from_env().state.primaries.place.data_dir == str(tmp_path)
