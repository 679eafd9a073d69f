"""Several sync server processes serving the same primaries from one PostgreSQL
(``--postgres DSN``): native replicas pushing through any of them, a server killed,
PostgreSQL restarted, and the version race between two processes in one event loop.

The replicas write rows ``(replica, seq)`` into a table WITHOUT a unique constraint,
so a write applied twice shows as a doubled row. The servers share the session's
throw-away cluster (``pg_dsn``); each test uses a database name of its own. The
PostgreSQL restart test starts a cluster of its own, so the session's is never
disturbed."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

import datasync
from datasync.errors import SyncUnavailableError
from datasync.sync import protocol

from .http_helpers import image_of, pull, rows
from .server_process import ROOT, SyncServer, free_port

pytestmark = pytest.mark.timeout(180)

SCHEMA = "CREATE TABLE log(replica TEXT NOT NULL, seq INTEGER NOT NULL)"  # no unique: doubles show
ROWS = "SELECT replica, seq FROM log ORDER BY replica, seq"


def fresh_name() -> str:
    return f"pg-{uuid.uuid4().hex[:12]}"


def start_pair(dsn: str, where: Path) -> tuple[SyncServer, SyncServer]:
    """Two server processes on one PostgreSQL, one secret: the same databases."""
    a = SyncServer(where / "a", postgres=dsn)
    b = SyncServer(where / "b", postgres=dsn, secret=a.secret)
    try:
        a.start()
        b.start()
    except BaseException:
        a.close()
        b.close()
        raise
    return a, b


@pytest.fixture
def pg_servers(pg_dsn, tmp_path):
    a, b = start_pair(pg_dsn, tmp_path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


async def open_replica(server, path, name, **options):
    options.setdefault("sync_interval", 0)
    return await datasync.open(str(path), sync_url=f"{server.url}/{name}",
                               auth_token=server.token(name), **options)


async def make_schema(server, tmp_path, name):
    db = await open_replica(server, tmp_path / f"schema-{name}.dsdb", name)
    await db.execute(SCHEMA)
    await db.close()


async def primary_rows(server, tmp_path, name):
    """The rows of ``log`` on the primary, as a fresh replica through ``server`` pulls them."""
    db = await open_replica(server, tmp_path / f"probe-{os.urandom(4).hex()}.dsdb", name)
    try:
        return [(r["replica"], r["seq"]) for r in await db.query(ROWS)]
    finally:
        await db.close()


async def replica_rows(db):
    return [(r["replica"], r["seq"]) for r in await db.query(ROWS)]


def doubled(rows):
    return sorted(row for row, n in Counter(rows).items() if n > 1)


async def push_until_sent(db, attempts=60):
    """Push what waits, again while the server answers 5xx (PostgreSQL coming back):
    a bounded number of attempts, not a clock."""
    for _ in range(attempts):
        try:
            await db.push()
            if db.sync_status()["waiting"] == 0:
                return
        except SyncUnavailableError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"writes still waiting after {attempts} pushes: {db.sync_status()}")


def version_of(server, name, attempts=60):
    """The primary's version through ``server`` (retried while it answers 5xx)."""
    for _ in range(attempts):
        resp = httpx.get(f"{server.url}{protocol.API_PREFIX}/{name}", headers=server.headers(name),
                         timeout=30)
        if resp.status_code == 200:
            return resp.json()["version"]
        assert resp.status_code >= 500, resp.text
        time.sleep(0.25)
    raise AssertionError(f"{server.url} kept answering {resp.status_code}: {resp.text}")


# -- 1. two servers, several replicas -----------------------------------------------------
async def test_replicas_pushing_through_two_server_processes_apply_each_write_once_and_converge(
        pg_servers, tmp_path):
    a, b = pg_servers
    name = fresh_name()
    await make_schema(a, tmp_path, name)
    servers = [a, b, a, b, b]
    # Writers push with each write (sync_interval=0: a background long poll in a
    # replica that writes this fast hits the pull livelock of notes-pgtests.md);
    # followers long-poll, one on each server, and only read.
    replicas = [await open_replica(server, tmp_path / f"r{i}.dsdb", name)
                for i, server in enumerate(servers)]
    followers = [await open_replica(server, tmp_path / f"f{i}.dsdb", name, sync_interval=0.2)
                 for i, server in enumerate((a, b))]
    writes = 25

    async def writer(i, db):
        for k in range(writes):
            res = await db.execute("INSERT INTO log(replica, seq) VALUES (?, ?)", (f"r{i}", k))
            assert res.rowcount == 1
            # read-your-writes, whichever process applied it
            assert await db.query("SELECT 1 FROM log WHERE replica = ? AND seq = ?", (f"r{i}", k))

    await asyncio.gather(*(writer(i, db) for i, db in enumerate(replicas)))
    expected = sorted((f"r{i}", k) for i in range(len(replicas)) for k in range(writes))
    for db in replicas:
        assert db.sync_status()["waiting"] == 0, db.sync_status()   # all answered online
    on_primary = await primary_rows(b, tmp_path, name)
    assert not doubled(on_primary), f"writes applied twice: {doubled(on_primary)[:5]}"
    assert on_primary == expected
    assert await primary_rows(a, tmp_path, name) == expected
    final = version_of(a, name)
    assert version_of(b, name) == final
    for db in replicas:
        await db.pull()
        assert db.sync_status()["pulled_version"] == final
        assert await replica_rows(db) == expected

    async def caught_up(db):
        while db.sync_status()["pulled_version"] != final:
            await asyncio.sleep(0.05)

    for db in followers:             # the long polls bring them there, no pull() called
        await asyncio.wait_for(caught_up(db), 30)
        assert await replica_rows(db) == expected
    for db in replicas + followers:
        await db.close()


async def test_a_replica_following_one_server_hears_a_commit_pushed_through_the_other(
        pg_servers, tmp_path):
    a, b = pg_servers
    name = fresh_name()
    await make_schema(a, tmp_path, name)
    follower = await open_replica(b, tmp_path / "f.dsdb", name, sync_interval=30)
    changed = asyncio.Event()
    follower.on_change(lambda change: changed.set())
    writer = await open_replica(a, tmp_path / "w.dsdb", name)
    # A raw long poll on B, waiting from the current version (60 s on the server).
    since = version_of(b, name)
    polling = asyncio.ensure_future(asyncio.to_thread(pull, b, name, since=since, wait=60))
    await asyncio.sleep(0.3)                # both long polls are waiting on B
    await writer.execute("INSERT INTO log(replica, seq) VALUES ('via-a', 1)")
    reply = await asyncio.wait_for(polling, 20)      # woken by A's commit, well before 60 s
    assert reply.version > since
    await asyncio.wait_for(changed.wait(), 20)
    assert await replica_rows(follower) == [("via-a", 1)]
    assert follower.sync_status()["last_error"] is None
    await writer.close()
    await follower.close()


# -- 2. a server SIGKILLed during pushes ------------------------------------------------------
async def test_a_server_killed_during_pushes_loses_and_doubles_nothing_and_the_other_keeps_serving(
        pg_servers, tmp_path):
    a, b = pg_servers
    name = fresh_name()
    await make_schema(a, tmp_path, name)
    servers = [a, a, b, b]
    paths = [tmp_path / f"r{i}.dsdb" for i in range(len(servers))]
    replicas = [await open_replica(server, path, name)   # (sync_interval=0: see test 1)
                for server, path in zip(servers, paths)]
    acked: list[list[tuple[str, int]]] = [[] for _ in replicas]
    killed = asyncio.Event()
    after_kill = [0] * len(replicas)
    stop = asyncio.Event()

    async def writer(i, db):
        k = 0
        while not stop.is_set():
            await db.execute("INSERT INTO log(replica, seq) VALUES (?, ?)", (f"r{i}", k))
            acked[i].append((f"r{i}", k))       # acknowledged (on the primary, or in the outbox)
            after_kill[i] += killed.is_set()
            k += 1
            await asyncio.sleep(0)

    async def crash():
        while min(len(w) for w in acked) < 10:   # every replica is well under way
            await asyncio.sleep(0.05)
        await asyncio.to_thread(a.kill)
        killed.set()
        while min(after_kill) < 10:              # and goes on after the crash
            await asyncio.sleep(0.05)
        stop.set()

    await asyncio.gather(crash(), *(writer(i, db) for i, db in enumerate(replicas)))
    for i in (2, 3):   # B's replicas never noticed: every write answered online
        status = replicas[i].sync_status()
        assert status["waiting"] == 0 and status["online"], status
    for i in (0, 1):   # A's replicas are pointed at B, and send what waits
        await replicas[i].close()
        replicas[i] = await open_replica(b, paths[i], name, sync_interval=0)
        await push_until_sent(replicas[i])
        await replicas[i].execute("INSERT INTO log(replica, seq) VALUES (?, ?)",
                                  (f"r{i}", len(acked[i])))  # and keep going, online
        acked[i].append((f"r{i}", len(acked[i])))
    expected = sorted(row for rows in acked for row in rows)
    on_primary = await primary_rows(b, tmp_path, name)
    assert not doubled(on_primary), f"writes applied twice: {doubled(on_primary)[:5]}"
    missing = set(expected) - set(on_primary)
    assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
    assert on_primary == expected
    for db in replicas:
        await db.pull()
        assert await replica_rows(db) == expected
        await db.close()
    a.start()                                    # back: it serves the same state
    assert await primary_rows(a, tmp_path, name) == expected


# -- 3. PostgreSQL restarted during a push --------------------------------------------------
@pytest.fixture
def own_pg_cluster(pg_cluster):   # (pg_cluster: skipped, saying why, without PostgreSQL)
    from pg_cluster import throwaway_cluster

    with throwaway_cluster() as cluster:
        yield cluster


async def test_a_push_during_a_postgres_restart_lands_once_and_the_servers_recover(
        own_pg_cluster, tmp_path):
    from datasync.backends.postgres import PostgresBackend

    a, b = start_pair(own_pg_cluster.dsn, tmp_path)
    try:
        name = fresh_name()
        await make_schema(a, tmp_path, name)
        db = await open_replica(a, tmp_path / "d.dsdb", name)
        db.set_offline(True)
        for k in range(150):
            await db.execute("INSERT INTO log(replica, seq) VALUES ('d', ?)", (k,))
        db.set_offline(False)
        pushing = asyncio.ensure_future(db.push())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(own_pg_cluster.restart, "immediate")
        try:
            await pushing                 # answered, or failed cleanly
        except SyncUnavailableError:
            pass
        assert a.running and b.running
        await push_until_sent(db)         # the same writes sent again, once PostgreSQL is back
        expected = [("d", k) for k in range(150)]
        assert await replica_rows(db) == expected
        on_primary = await primary_rows(b, tmp_path, name)
        assert not doubled(on_primary), f"writes applied twice: {doubled(on_primary)[:5]}"
        assert on_primary == expected

        # the stored image, read straight from PostgreSQL
        direct = await datasync.open(name, backend=PostgresBackend(own_pg_cluster.dsn, name))
        try:
            assert [tuple(r.values()) for r in await direct.query("PRAGMA integrity_check")] == [
                ("ok",)]
            assert (await direct.query("SELECT count(*) AS n FROM log"))[0]["n"] == 150
        finally:
            await direct.close()

        # notices reconnected: a long poll on B hears a commit pushed through A
        since = version_of(b, name)
        polling = asyncio.ensure_future(asyncio.to_thread(pull, b, name, since=since, wait=60))
        await asyncio.sleep(0.3)
        await db.execute("INSERT INTO log(replica, seq) VALUES ('after', 0)")
        reply = await asyncio.wait_for(polling, 20)
        assert reply.version > since
        await db.close()
        assert a.running and b.running    # neither server was restarted
    finally:
        a.close()
        b.close()


# -- 4. the race, in one process ---------------------------------------------------------------
async def test_two_primaries_objects_pushing_at_once_to_one_postgres_database_apply_each_write_once(
        pg_dsn):
    from datasync.server.places import PostgresPlace
    from datasync.server.primaries import Primaries
    from datasync.sync.protocol import PullRequest, Write

    name = fresh_name()
    one, two = Primaries(PostgresPlace(pg_dsn)), Primaries(PostgresPlace(pg_dsn))
    try:
        _, [created] = await one.push(name, [Write("schema", [(SCHEMA, [])])])
        assert "ok" in created, created
        each = 40

        async def push(primaries, who, k):
            version, [result] = await primaries.push(
                name, [Write(f"{who}-{k}", [("INSERT INTO log(replica, seq) VALUES (?, ?)",
                                              [who, k])])])
            assert result == {"id": f"{who}-{k}", "ok": [result["ok"][0]]}, result
            return version

        await asyncio.gather(*(push(p, who, k) for k in range(each)
                               for p, who in ((one, "one"), (two, "two"))))
        # resent ids (a lost answer) are answered from the record, not applied again
        await asyncio.gather(*(push(p, who, k) for k in range(0, each, 5)
                               for p, who in ((two, "one"), (one, "two"))))
        expected = sorted((who, k) for who in ("one", "two") for k in range(each))
        for primaries in (one, two):
            reply = await primaries.pull(name, PullRequest(since=0))
            image = image_of(reply)
            got = rows(image, ROWS)
            assert not doubled(got), f"writes applied twice: {doubled(got)[:5]}"
            assert got == expected
            assert rows(image, "SELECT count(*) FROM _datasync_applied") == [(2 * each + 1,)]
    finally:
        await one.close()
        await two.close()


# -- 5. command line and configuration ------------------------------------------------------
def server_command(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "datasync", "server", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "DATASYNC_SECRET": "s" * 64,
                               "PYTHONPATH": str(ROOT)})


def test_the_server_refuses_both_data_and_postgres(tmp_path):
    done = server_command("--data", str(tmp_path), "--postgres", "postgresql://x@127.0.0.1/x",
                          "--port", str(free_port()))
    assert done.returncode == 2
    assert "--postgres" in done.stderr and "not allowed with argument" in done.stderr


def test_the_server_refuses_a_postgres_option_that_is_not_a_connection_string(tmp_path):
    pytest.importorskip("psycopg")
    for bad in ("not a dsn", "host=h port"):
        done = server_command("--postgres", bad, "--port", str(free_port()))
        assert done.returncode == 2, done.stderr
        assert "not a PostgreSQL connection string" in done.stderr
        assert "postgresql://USER@HOST:PORT/DB" in done.stderr


def test_a_server_whose_postgres_cannot_be_reached_answers_503_saying_so(tmp_path):
    pytest.importorskip("psycopg")
    dsn = f"postgresql://nobody:s3cret-pw@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    server = SyncServer(tmp_path / "data", postgres=dsn)
    server.start()                                 # it starts: PostgreSQL is asked per request
    try:
        resp = httpx.get(f"{server.url}{protocol.API_PREFIX}/notes", headers=server.headers("notes"),
                         timeout=60)
        assert resp.status_code == 503, resp.text
        message = resp.json()["error"]["message"]
        assert resp.json()["error"]["name"] == "StorageUnavailableError"
        assert "cannot connect to PostgreSQL 127.0.0.1:" in message, message
        assert "s3cret-pw" not in message             # the password is never shown
        assert server.running
    finally:
        server.close()


def test_app_from_env_with_datasync_postgres_serves_from_postgres(monkeypatch):
    pytest.importorskip("starlette")
    from datasync.errors import InvalidOptionError
    from datasync.server import app_from_env
    from datasync.server.places import PostgresPlace

    dsn = "postgresql://sync@db.invalid:5432/app"
    monkeypatch.delenv("DATASYNC_DATA", raising=False)
    monkeypatch.delenv("DATASYNC_SECRET_FILE", raising=False)
    monkeypatch.setenv("DATASYNC_SECRET", "s" * 64)
    monkeypatch.setenv("DATASYNC_POSTGRES", dsn)
    place = app_from_env().state.primaries.place
    assert isinstance(place, PostgresPlace)
    assert place.dsn == dsn and place.shared
    assert place.describe() == "postgres db.invalid:5432/app"
    monkeypatch.setenv("DATASYNC_DATA", "/srv/datasync")
    with pytest.raises(InvalidOptionError, match="not both"):
        app_from_env()
