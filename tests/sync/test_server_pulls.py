"""The sync server's pulls, long polls, crashes and shutdown, against a real process."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx

import datasync
from datasync.sync import protocol

from .http_helpers import DB, api, image_of, pull, push, refused, rows, seed, state, write
from .server_process import SyncServer


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


