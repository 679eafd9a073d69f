"""Native replicas against a real sync server process (tests/sync/conftest.py)."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys

import pytest

import datasync
from datasync.errors import SyncUnavailableError

pytestmark = pytest.mark.timeout(180)
KEY = bytes(range(32))  # a raw key: no 600,000 PBKDF2 rounds per open


def url(server, name="notes"):
    return f"{server.url}/{name}"


async def open_replica(server, path, name="notes", **options):
    options.setdefault("sync_interval", 0)
    options.setdefault("auth_token", server.token(name))
    return await datasync.open(str(path), sync_url=url(server, name), **options)


async def probe_rows(server, tmp_path, name="notes", sql="SELECT body FROM notes ORDER BY body"):
    db = await open_replica(server, tmp_path / f"probe-{os.urandom(4).hex()}.dsdb", name)
    try:
        return [tuple(r.values()) for r in await db.query(sql)]
    finally:
        await db.close()


async def with_schema(server, tmp_path, name="notes"):
    db = await open_replica(server, tmp_path / f"schema-{name}.dsdb", name)
    await db.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT UNIQUE)")
    await db.close()


async def test_three_replicas_writing_at_once_apply_every_write_once_and_converge(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    replicas = [await open_replica(sync_server, tmp_path / f"r{i}.dsdb") for i in range(3)]

    async def writer(i, db):
        for k in range(15):
            res = await db.execute("INSERT INTO notes(body) VALUES (?)", (f"r{i}-{k}",))
            assert res.rowcount == 1
            # read-your-writes: the answer comes once the copy holds the write
            assert await db.query("SELECT 1 FROM notes WHERE body = ?", (f"r{i}-{k}",))

    await asyncio.gather(*(writer(i, db) for i, db in enumerate(replicas)))
    expected = sorted((f"r{i}-{k}",) for i in range(3) for k in range(15))
    for db in replicas:
        await db.pull()
        assert [tuple(r.values()) for r in await db.query(
            "SELECT body FROM notes ORDER BY body")] == expected
        assert db.sync_status()["waiting"] == 0
    versions = {db.sync_status()["pulled_version"] for db in replicas}
    assert len(versions) == 1
    for db in replicas:
        await db.close()
    assert await probe_rows(sync_server, tmp_path) == expected


async def test_offline_writes_survive_a_reopen_and_are_pushed_once_when_the_server_returns(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    path = tmp_path / "device.dsdb"
    db = await open_replica(sync_server, path)
    await db.close()
    sync_server.stop()
    db = await open_replica(sync_server, path)
    assert db.sync_status()["online"] is False
    for k in range(5):
        res = await db.execute("INSERT INTO notes(body) VALUES (?)", (f"off-{k}",))
        assert res.rowcount == 1
    assert len(await db.query("SELECT * FROM notes")) == 5
    await db.close()
    db = await open_replica(sync_server, path)          # reopened, still offline
    assert db.sync_status()["waiting"] == 5
    assert len(await db.query("SELECT * FROM notes")) == 5
    sync_server.start()
    assert await db.push() == 5
    assert db.sync_status()["waiting"] == 0
    assert await db.push() == 0
    rows = await db.query("SELECT body FROM notes ORDER BY body")
    assert [r["body"] for r in rows] == [f"off-{k}" for k in range(5)]
    tables = {r["name"] for r in await db.query("SELECT name FROM sqlite_master")}
    assert "_datasync_local" not in tables  # the copy is the primary's again
    await db.close()
    assert await probe_rows(sync_server, tmp_path) == [(f"off-{k}",) for k in range(5)]


async def test_the_server_killed_during_a_push_loses_and_doubles_no_write(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    path = tmp_path / "device.dsdb"
    db = await open_replica(sync_server, path)     # pulls the schema
    db.set_offline(True)
    for k in range(300):
        await db.execute("INSERT INTO notes(body) VALUES (?)", (f"w{k:04}",))
    db.set_offline(False)
    pushing = asyncio.ensure_future(db.push())
    await asyncio.sleep(0.05)
    sync_server.kill()
    with pytest.raises(SyncUnavailableError):
        await pushing
    waiting = db.sync_status()["waiting"]
    assert 0 < waiting <= 300
    sync_server.start()
    await db.push()
    assert db.sync_status()["waiting"] == 0
    await db.close()
    rows = await probe_rows(sync_server, tmp_path)
    assert rows == [(f"w{k:04}",) for k in range(300)]


class LosesReplies:
    """A transport whose next push reaches the server but whose answer is lost."""

    def __init__(self, inner):
        self.inner, self.base_url, self.lose = inner, inner.base_url, 0
        self.counters = inner.counters

    async def request(self, method, path, body=None, *, timeout):
        answer = await self.inner.request(method, path, body, timeout=timeout)
        if self.lose and path.endswith("/push"):
            self.lose -= 1
            raise SyncUnavailableError("the connection dropped before the answer")
        return answer

    async def close(self):
        await self.inner.close()


async def test_a_write_whose_answer_was_lost_is_applied_once(sync_server, tmp_path, monkeypatch):
    from datasync import runtime

    await with_schema(sync_server, tmp_path)
    made = []
    real = runtime.make_transport
    monkeypatch.setattr(runtime, "make_transport",
                        lambda base, token: made.append(LosesReplies(real(base, token))) or made[-1])
    db = await open_replica(sync_server, tmp_path / "device.dsdb")
    made[-1].lose = 1
    res = await db.execute("INSERT INTO notes(body) VALUES ('once')")  # applied there, answer lost
    assert res.rowcount == 1
    assert db.sync_status()["waiting"] == 1       # kept, as if offline
    await db.push()                               # same id: answered from the record
    assert db.sync_status()["waiting"] == 0
    assert [r["body"] for r in await db.query("SELECT body FROM notes")] == ["once"]
    await db.close()
    assert await probe_rows(sync_server, tmp_path) == [("once",)]


async def test_a_conflicting_offline_write_is_dropped_and_recorded_by_default(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    a = await open_replica(sync_server, tmp_path / "a.dsdb")
    b = await open_replica(sync_server, tmp_path / "b.dsdb")
    b.set_offline(True)
    await b.execute("INSERT INTO notes(body) VALUES ('same')")
    await b.execute("INSERT INTO notes(body) VALUES ('only-b')")
    await a.execute("INSERT INTO notes(body) VALUES ('same')")
    b.set_offline(False)
    assert await b.push() == 2
    [conflict] = await b.conflicts()
    assert conflict["error"][0] == "IntegrityError"
    assert conflict["resolution"] == "drop"
    assert conflict["statements"][0][0] == "INSERT INTO notes(body) VALUES ('same')"
    rows = [r["body"] for r in await b.query("SELECT body FROM notes ORDER BY id")]
    assert rows == ["same", "only-b"]   # a's row, then b's other write; b's copy of 'same' is gone
    await a.close()
    await b.close()


async def test_a_conflict_handler_can_replace_or_keep_the_write(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    seen = []

    def handler(conflict):
        seen.append(conflict)
        body = conflict["statements"][0][1][0]
        if body == "x":
            return {"replace": [["INSERT INTO notes(body) VALUES (?)", ["x (2)"]]]}
        return "keep" if len(seen) < 3 else "drop"

    a = await open_replica(sync_server, tmp_path / "a.dsdb")
    b = await open_replica(sync_server, tmp_path / "b.dsdb", on_conflict=handler)
    await a.execute("INSERT INTO notes(body) VALUES ('x')")
    await a.execute("INSERT INTO notes(body) VALUES ('y')")
    b.set_offline(True)
    await b.execute("INSERT INTO notes(body) VALUES (?)", ("x",))
    await b.execute("INSERT INTO notes(body) VALUES (?)", ("y",))
    b.set_offline(False)
    await b.push()                       # x replaced; y kept (to be sent again)
    assert b.sync_status()["waiting"] == 1
    await a.execute("DELETE FROM notes WHERE body = 'y'")   # what made y fail is gone
    await b.push()
    assert b.sync_status()["waiting"] == 0
    rows = sorted(r["body"] for r in await b.query("SELECT body FROM notes"))
    assert rows == ["x", "x (2)", "y"]
    assert [c["resolution"] for c in await b.conflicts()] == ["replace", "keep"]
    await a.close()
    await b.close()


async def test_a_store_that_follows_another_primary_is_refused(sync_server, tmp_path):
    path = tmp_path / "device.dsdb"
    db = await open_replica(sync_server, path, "first")
    await db.execute("CREATE TABLE t(v)")
    await db.close()
    other = await open_replica(sync_server, tmp_path / "o.dsdb", "second")
    await other.execute("CREATE TABLE u(v)")
    await other.close()
    with pytest.raises(datasync.ReplicaMismatchError):
        await open_replica(sync_server, path, "second")
    plain = await datasync.open(str(tmp_path / "plain.dsdb"))
    await plain.execute("CREATE TABLE mine(v)")
    await plain.close()
    with pytest.raises(datasync.ReplicaMismatchError):
        await open_replica(sync_server, tmp_path / "plain.dsdb")


async def test_tokens_decide_what_a_replica_may_do(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    reader = await open_replica(sync_server, tmp_path / "r.dsdb",
                                auth_token=sync_server.token("notes", read_only=True))
    assert await reader.query("SELECT * FROM notes") == []
    with pytest.raises(datasync.SyncForbiddenError):
        await reader.execute("INSERT INTO notes(body) VALUES ('no')")
    assert reader.sync_status()["waiting"] == 0
    await reader.close()
    with pytest.raises(datasync.SyncAuthError):
        await open_replica(sync_server, tmp_path / "x.dsdb", auth_token="not-a-token")
    with pytest.raises(datasync.SyncForbiddenError):
        await open_replica(sync_server, tmp_path / "y.dsdb",
                           auth_token=sync_server.token("another"))
    assert await probe_rows(sync_server, tmp_path) == []


async def test_a_commit_on_the_primary_reaches_a_long_polling_replica_and_fires_on_change(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    follower = await open_replica(sync_server, tmp_path / "f.dsdb", sync_interval=30)
    writer = await open_replica(sync_server, tmp_path / "w.dsdb")
    changed = asyncio.Event()
    follower.on_change(lambda change: changed.set())
    await asyncio.sleep(0.2)             # the follower's long poll is waiting
    await writer.execute("INSERT INTO notes(body) VALUES ('news')")
    await asyncio.wait_for(changed.wait(), 20)
    assert [r["body"] for r in await follower.query("SELECT body FROM notes")] == ["news"]
    assert follower.sync_status()["last_error"] is None
    await writer.close()
    await follower.close()


async def test_batches_and_scripts_are_one_transaction_on_the_primary(sync_server, tmp_path):
    db = await open_replica(sync_server, tmp_path / "d.dsdb")
    await db.executescript("CREATE TABLE a(v UNIQUE); CREATE TABLE b(v);")
    with pytest.raises(sqlite3.IntegrityError):
        await db.batch([("INSERT INTO a VALUES (1)", ()), ("INSERT INTO b VALUES (1)", ()),
                        ("INSERT INTO a VALUES (1)", ())])
    assert await db.query("SELECT * FROM b") == []
    res = await db.executemany("INSERT INTO b VALUES (?)", [(1,), (2,), (b"\x00\xff",)])
    assert res.rowcount == 3
    assert [r["v"] for r in await db.query("SELECT v FROM b ORDER BY rowid")] == [1, 2, b"\x00\xff"]
    with pytest.raises(datasync.ReplicaWriteError):
        db.transaction()
    with pytest.raises(datasync.ReplicaWriteError):
        await db.execute("BEGIN")
    conn = db.connect()
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO b VALUES (3)")
    conn.close()
    await db.close()


def test_the_replica_cli_pulls_pushes_and_reports(sync_server, tmp_path):
    asyncio.run(with_schema(sync_server, tmp_path))
    store = str(tmp_path / "cli.dsdb")
    env = {**os.environ, "DATASYNC_TOKEN": sync_server.token("notes")}

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "datasync", "replica", *args],
                             capture_output=True, text=True, env=env, timeout=60)
        return out.returncode, out.stdout, out.stderr

    code, out, err = cli("pull", store, "--url", url(sync_server))
    assert code == 0, err
    status = json.loads(out)
    assert status["pulled_version"] >= 1 and status["waiting"] == 0

    async def queue():
        db = await open_replica(sync_server, store, offline=True)
        await db.execute("INSERT INTO notes(body) VALUES ('from-cli')")
        await db.close()
    asyncio.run(queue())
    code, out, _ = cli("status", store)
    assert code == 0 and json.loads(out)["waiting"] == 1
    code, out, err = cli("push", store)
    assert code == 0, err
    assert json.loads(out)["waiting"] == 0
    code, _, err = cli("status", str(tmp_path / "missing.dsdb"))
    assert code == 2 and "no store" in err


async def test_an_expired_token_is_refused_until_a_fresh_one_is_set(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    db = await open_replica(sync_server, tmp_path / "d.dsdb",
                            auth_token=sync_server.token("notes", expires=1))
    await asyncio.sleep(1.5)
    with pytest.raises(datasync.SyncAuthError):
        await db.pull()
    with pytest.raises(datasync.SyncAuthError):
        await db.execute("INSERT INTO notes(body) VALUES ('late')")
    assert db.sync_status()["waiting"] == 0
    db.set_auth_token(sync_server.token("notes"))
    await db.execute("INSERT INTO notes(body) VALUES ('fresh')")
    assert [r["body"] for r in await db.query("SELECT body FROM notes")] == ["fresh"]
    await db.close()


async def test_a_conflict_handler_may_write_through_the_replica(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    a = await open_replica(sync_server, tmp_path / "a.dsdb")
    await a.execute("CREATE TABLE log(message TEXT)")

    async def handler(conflict):
        await b.execute("INSERT INTO log(message) VALUES (?)", (conflict["error"][0],))
        return "drop"

    b = await open_replica(sync_server, tmp_path / "b.dsdb", on_conflict=handler)
    b.set_offline(True)
    await b.execute("INSERT INTO notes(body) VALUES ('taken')")
    await a.execute("INSERT INTO notes(body) VALUES ('taken')")
    b.set_offline(False)
    await asyncio.wait_for(b.push(), 30)
    await b.pull()
    assert [r["message"] for r in await b.query("SELECT message FROM log")] == ["IntegrityError"]
    assert b.sync_status()["waiting"] == 0
    await a.close()
    await b.close()


async def test_an_encrypted_replica_keeps_the_primary_and_its_waiting_writes_encrypted(
        sync_server, tmp_path):
    pytest.importorskip("cryptography")
    await with_schema(sync_server, tmp_path)
    writer = await open_replica(sync_server, tmp_path / "w.dsdb")
    await writer.execute("INSERT INTO notes(body) VALUES ('secret from the primary')")
    await writer.close()
    path = tmp_path / "enc.dsdb"
    db = await open_replica(sync_server, path, encryption_key=KEY)
    db.set_offline(True)
    await db.execute("INSERT INTO notes(body) VALUES ('secret written offline')")
    await db.close()
    assert b"secret" not in path.read_bytes()
    with pytest.raises(datasync.WrongKeyError):
        await open_replica(sync_server, path, encryption_key=bytes(32))
    db = await open_replica(sync_server, path, encryption_key=KEY)
    await db.push()
    assert sorted(r["body"] for r in await db.query("SELECT body FROM notes")) == [
        "secret from the primary", "secret written offline"]
    await db.close()


async def test_waiting_writes_of_a_deleted_store_are_not_sent_to_another_primary(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    path = tmp_path / "d.dsdb"
    db = await open_replica(sync_server, path)
    db.set_offline(True)
    await db.execute("INSERT INTO notes(body) VALUES ('for notes')")
    await db.close()
    path.unlink()                      # the store goes; its outbox file stays
    with pytest.raises(datasync.ReplicaMismatchError, match="delete that outbox"):
        await open_replica(sync_server, path, "other")
    assert await probe_rows(sync_server, tmp_path) == []


async def test_a_push_over_the_servers_body_limit_is_split_and_an_oversized_write_is_a_conflict(
        sync_server_factory, tmp_path):
    server = sync_server_factory("--max-body", "20000")
    await with_schema(server, tmp_path)
    db = await open_replica(server, tmp_path / "d.dsdb")
    db.set_offline(True)
    for k in range(12):
        await db.execute("INSERT INTO notes(body) VALUES (?)", (f"{k:02} " + "x" * 3000,))
    await db.execute("INSERT INTO notes(body) VALUES (?)", ("too big " + "y" * 40000,))
    db.set_offline(False)
    assert await db.push() == 12
    [conflict] = await db.conflicts()
    assert conflict["error"][0] == "SyncRequestError" and conflict["resolution"] == "drop"
    assert db.sync_status()["waiting"] == 0
    await db.execute("INSERT INTO notes(body) VALUES ('small, online')")  # not blocked
    rows = await probe_rows(server, tmp_path)
    assert len(rows) == 13 and not any(r[0].startswith("too big") for r in rows)
    await db.close()


async def test_a_pull_waits_for_a_connect_reader_a_bounded_time_then_defers(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    db = await open_replica(sync_server, tmp_path / "d.dsdb")
    reader = db.connect()
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM notes").fetchone()     # inside a read transaction
    res = await asyncio.wait_for(db.execute("INSERT INTO notes(body) VALUES ('w')"), 30)
    assert res.rowcount == 1                                     # applied on the primary
    assert "db.connect()" in db.sync_status()["last_error"]
    reader.execute("COMMIT")
    reader.close()
    await db.pull()
    assert [r["body"] for r in await db.query("SELECT body FROM notes")] == ["w"]
    await db.close()


async def test_a_replica_store_opened_without_sync_url_is_read_only(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    path = tmp_path / "d.dsdb"
    db = await open_replica(sync_server, path)
    await db.execute("INSERT INTO notes(body) VALUES ('kept')")
    await db.close()
    plain = await datasync.open(str(path))
    assert [r["body"] for r in await plain.query("SELECT body FROM notes")] == ["kept"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await plain.execute("INSERT INTO notes(body) VALUES ('would be lost')")
    await plain.close()


async def test_a_read_only_replica_store_refuses_writes_through_connect_too(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    path = tmp_path / "d.dsdb"
    db = await open_replica(sync_server, path)
    await db.close()
    plain = await datasync.open(str(path))
    conn = plain.connect()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO notes(body) VALUES ('lost')")
    conn.close()
    await plain.close()


async def test_writes_made_before_any_pull_are_not_sent_to_another_database(
        sync_server, tmp_path):
    path = tmp_path / "d.dsdb"
    db = await open_replica(sync_server, path, offline=True)
    await db.execute("CREATE TABLE made_offline(x)")        # before any pull: no db_id
    await db.close()
    path.unlink()
    with pytest.raises(datasync.ReplicaMismatchError):
        await open_replica(sync_server, path, "other")


async def test_an_explain_of_a_write_runs_on_the_local_copy_and_sends_nothing(
        sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    db = await open_replica(sync_server, tmp_path / "r.dsdb")
    await db.execute("INSERT INTO notes(body) VALUES ('a')")
    before = db.sync_status()["pulled_version"]
    for sql in ("EXPLAIN INSERT INTO notes(body) VALUES ('b')",
                "EXPLAIN QUERY PLAN DELETE FROM notes WHERE body = 'a'",
                "EXPLAIN CREATE TABLE other(x)"):
        assert await db.query(sql)
    await db.pull()
    assert db.sync_status()["pulled_version"] == before
    assert await db.query("SELECT body FROM notes") == [{"body": "a"}]
    await db.close()


async def test_a_cached_explain_on_a_replica_sees_an_index_it_pulled(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    r1 = await open_replica(sync_server, tmp_path / "r1.dsdb")
    r2 = await open_replica(sync_server, tmp_path / "r2.dsdb")
    await r2.execute("CREATE TABLE tags(note INTEGER, tag TEXT)")
    await r1.pull()
    sql = "EXPLAIN QUERY PLAN SELECT note FROM tags WHERE tag = 'a'"
    assert "idx_tag" not in str(await r1.query(sql))
    await r2.execute("CREATE INDEX idx_tag ON tags(tag)")
    await r1.pull()
    assert "idx_tag" in str(await r1.query(sql))  # the same text: the cached statement
    await r1.close()
    await r2.close()
