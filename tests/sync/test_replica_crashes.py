"""Crashes of a replica process, and of the server, in the middle of writes: every
acknowledged write reaches the primary exactly once (tests/sync/conftest.py starts
the server). The table has no unique constraint, so a write applied twice shows."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import datasync
from datasync.sync.outbox_file import FileOutbox
from datasync.sync.pushing import new_entry

pytestmark = pytest.mark.timeout(240)

WRITER = textwrap.dedent("""
    import asyncio, sys, datasync

    async def main(path, url, token, start):
        db = await datasync.open(path, sync_url=url, auth_token=token, sync_interval=0.2)
        k = start
        while True:
            await db.execute("INSERT INTO log(token) VALUES (?)", (f"w{k}",))
            print(f"w{k}", flush=True)      # acknowledged
            k += 1

    asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
""")


async def probe(server, tmp_path, name="notes"):
    db = await datasync.open(str(tmp_path / f"probe-{os.urandom(4).hex()}.dsdb"),
                             sync_url=f"{server.url}/{name}", auth_token=server.token(name),
                             sync_interval=0)
    try:
        return [r["token"] for r in await db.query("SELECT token FROM log")]
    finally:
        await db.close()


async def make_schema(server, tmp_path):
    db = await datasync.open(str(tmp_path / "schema.dsdb"), sync_url=f"{server.url}/notes",
                             auth_token=server.token("notes"), sync_interval=0)
    await db.execute("CREATE TABLE log(token TEXT)")
    await db.close()


def acknowledged(proc: subprocess.Popen) -> list[str]:
    out, _ = proc.communicate(timeout=30)
    return [line for line in out.splitlines() if line.startswith("w")]


async def test_a_replica_killed_while_writing_and_a_server_killed_under_it_lose_and_double_nothing(
        sync_server, tmp_path):
    await make_schema(sync_server, tmp_path)
    store = str(tmp_path / "device.dsdb")
    rng = random.Random(12)
    acked: list[str] = []
    start = 0
    for _round in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, store, f"{sync_server.url}/notes",
             sync_server.token("notes"), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        await asyncio.sleep(rng.uniform(1.5, 2.5))
        if _round % 2 == 0:  # the server dies under the writer: it goes on offline
            sync_server.kill()
            await asyncio.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        got = acknowledged(proc)
        acked += got
        start += 100_000
        if _round % 2 == 0:
            sync_server.start()
    assert len(acked) > 20
    db = await datasync.open(store, sync_url=f"{sync_server.url}/notes",
                             auth_token=sync_server.token("notes"), sync_interval=0)
    await db.push()
    assert db.sync_status()["waiting"] == 0
    local = sorted(r["token"] for r in await db.query("SELECT token FROM log"))
    await db.close()
    on_primary = sorted(await probe(sync_server, tmp_path))
    assert len(on_primary) == len(set(on_primary)), "a write was applied twice"
    missing = set(acked) - set(on_primary)
    assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
    assert local == on_primary  # and the replica converged on it


async def test_a_write_in_the_outbox_but_not_in_the_copy_is_applied_at_open_and_pushed_once(
        sync_server, tmp_path):
    """A crash between the outbox's put and the local transaction."""
    await make_schema(sync_server, tmp_path)
    store = str(tmp_path / "device.dsdb")
    db = await datasync.open(store, sync_url=f"{sync_server.url}/notes",
                             auth_token=sync_server.token("notes"), sync_interval=0)
    await db.close()
    outbox = FileOutbox(store + ".outbox")
    await outbox.put(new_entry([("INSERT INTO log(token) VALUES (?)", ["orphan"])], time.time()))
    outbox.close()
    sync_server.stop()
    db = await datasync.open(store, sync_url=f"{sync_server.url}/notes",
                             auth_token=sync_server.token("notes"), sync_interval=0)
    assert [r["token"] for r in await db.query("SELECT token FROM log")] == ["orphan"]
    await db.close()
    db = await datasync.open(store, sync_url=f"{sync_server.url}/notes",   # again: not twice
                             auth_token=sync_server.token("notes"), sync_interval=0)
    assert [r["token"] for r in await db.query("SELECT token FROM log")] == ["orphan"]
    sync_server.start()
    await db.push()
    await db.close()
    assert await probe(sync_server, tmp_path) == ["orphan"]


async def test_a_connection_open_across_a_pull_reads_the_primary_even_when_change_counters_match(
        sync_server, tmp_path):
    """The replica's offline write and the primary's own write both bump the file
    change counter once: equal counters, different pages. The pull must still make
    every connection drop its page cache."""
    await make_schema(sync_server, tmp_path)
    a = await datasync.open(str(tmp_path / "a.dsdb"), sync_url=f"{sync_server.url}/notes",
                            auth_token=sync_server.token("notes"), sync_interval=0)
    b = await datasync.open(str(tmp_path / "b.dsdb"), sync_url=f"{sync_server.url}/notes",
                            auth_token=sync_server.token("notes"), sync_interval=0)
    reader = b.connect()
    assert reader.execute("SELECT count(*) FROM log").fetchone() == (0,)
    b.set_offline(True)
    await b.execute("INSERT INTO log(token) VALUES ('from-b')")
    assert reader.execute("SELECT token FROM log").fetchall() == [("from-b",)]
    await a.execute("INSERT INTO log(token) VALUES ('from-a')")
    await a.execute("DELETE FROM log")
    await a.execute("INSERT INTO log(token) VALUES ('from-a again')")
    b.set_offline(False)
    await b.pull()   # b's write still waits: the copy is the primary's + b's on top
    assert sorted(r[0] for r in reader.execute("SELECT token FROM log")) == [
        "from-a again", "from-b"]
    await b.push()
    assert sorted(r[0] for r in reader.execute("SELECT token FROM log")) == [
        "from-a again", "from-b"]
    reader.close()
    await a.close()
    await b.close()

