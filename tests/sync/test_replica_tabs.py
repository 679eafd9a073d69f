"""A replica shared by simulated tabs (tests/tabs/harness.py's fakes of Web Locks and
BroadcastChannel, one memory store) against a real sync server: only the leader
talks to the server, every tab reads and writes, leadership moves without a write
lost or doubled."""
from __future__ import annotations

import asyncio
import itertools
import os

import pytest

import datasync
from datasync import runtime
from datasync.backends import MemoryBackend
from datasync.backends.memory import _STORES
from datasync.sync.replica import split_sync_url
from datasync.sync.tabs import open_replica_tab
from datasync.tabs import FakeBroadcast, FakeLocks, MemoryOutbox

pytestmark = pytest.mark.timeout(180)
_names = itertools.count()


class Tabs:
    def __init__(self, server, database="notes"):
        self.name = f"replica-tabs-{os.getpid()}-{next(_names)}"
        self.server, self.database = server, database
        self.locks, self.hub = FakeLocks(), FakeBroadcast(max_delay=0.002)
        self.tabs = {}

    async def open(self, tab, options=None, **sync):
        url = f"{self.server.url}/{self.database}"
        base, _ = split_sync_url(url)
        token = self.server.token(self.database)

        def parts(db):
            return (runtime.make_transport(base, token),
                    MemoryOutbox(f"replica:{self.name}"),
                    MemoryOutbox(f"replica-conflicts:{self.name}"))

        db = await open_replica_tab(
            self.name, sync={"sync_url": url, "auth_token": token, "sync_interval": 0.3, **sync},
            locks=self.locks.for_tab(tab), channel=self.hub.channel(tab),
            make_engine_parts=parts, backend=MemoryBackend(self.name, instance=tab),
            tab_id=tab, write_timeout=20, **(options or {}))
        self.tabs[tab] = db
        return db

    async def close(self):
        for db in list(self.tabs.values()):
            if not db.closed:
                await db.close()
        _STORES.pop(self.name, None)
        for kind in ("replica", "replica-conflicts"):
            MemoryOutbox.drop(f"{kind}:{self.name}")


async def leader_and_follower(server, created_by="a"):
    """Tabs "a" (leading) and "f" of one replica, its table created from ``created_by``."""
    tabs = Tabs(server)
    a = await tabs.open("a")
    await a.wait_for_leadership()
    f = await tabs.open("f")
    await tabs.tabs[created_by].execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    return tabs, a, f


async def eventually(read, count, seconds=10.0):
    """A follower catches up on the leader's notice: wait until ``read()`` has
    ``count`` rows."""
    for _ in range(int(seconds / 0.02)):
        rows = await read()
        if len(rows) == count:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(rows)} rows, not {count}")


async def primary_rows(server, tmp_path, sql="SELECT body FROM notes ORDER BY body"):
    db = await datasync.open(str(tmp_path / f"probe-{os.urandom(3).hex()}.dsdb"),
                             sync_url=f"{server.url}/notes", auth_token=server.token("notes"),
                             sync_interval=0)
    try:
        return [r["body"] for r in await db.query(sql)]
    finally:
        await db.close()


async def test_every_tab_writes_through_the_leader_and_reads_its_own_writes(
        sync_server, tmp_path):
    tabs, a, f = await leader_and_follower(sync_server, created_by="f")
    assert not f.is_leader
    await asyncio.gather(*(t.execute("INSERT INTO notes(body) VALUES (?)", (f"{n}-{k}",))
                           for k in range(5) for n, t in (("a", a), ("f", f))))
    for t in (a, f):   # read-your-writes in both: the answer came once the copy held it
        assert len(await t.query("SELECT * FROM notes")) == 10
    assert f.sync_status()["leader"] == "a"
    assert f.sync_status()["pulled_version"] == a.sync_status()["pulled_version"]
    assert await f.pull() >= 1
    assert await f.push() == 0
    assert await f.conflicts() == []
    with pytest.raises(datasync.ReplicaWriteError):
        f.transaction()
    assert len(await primary_rows(sync_server, tmp_path)) == 10
    await tabs.close()


async def test_another_devices_commit_reaches_every_tab_and_fires_on_change(
        sync_server, tmp_path):
    tabs, a, f = await leader_and_follower(sync_server)
    seen = asyncio.Event()
    f.on_change(lambda change: seen.set())
    other = await datasync.open(str(tmp_path / "other.dsdb"), sync_url=f"{sync_server.url}/notes",
                                auth_token=sync_server.token("notes"), sync_interval=0)
    await other.execute("INSERT INTO notes(body) VALUES ('from another device')")
    await other.close()
    await asyncio.wait_for(seen.wait(), 20)
    for _ in range(200):
        rows = await f.query("SELECT body FROM notes")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == [{"body": "from another device"}]
    await tabs.close()


async def test_offline_writes_queued_by_a_leader_that_closed_are_pushed_once_by_the_next(
        sync_server, tmp_path):
    tabs, a, f = await leader_and_follower(sync_server)
    f.set_offline(True)          # every tab: the leader's engine stops talking
    await asyncio.sleep(0.05)
    assert a.sync_status()["offline"] is True
    await f.execute("INSERT INTO notes(body) VALUES ('queued by f')")
    await a.execute("INSERT INTO notes(body) VALUES ('queued by a')")
    assert a.sync_status()["waiting"] == 2
    await eventually(lambda: f.query("SELECT * FROM notes"), 2)  # applied locally already
    await a.close()                                          # f takes over
    await f.wait_for_leadership()
    assert len(await f.query("SELECT * FROM notes")) == 2
    f.set_offline(False)
    await f.push()
    assert f.sync_status()["waiting"] == 0
    assert sorted(r["body"] for r in await f.query("SELECT body FROM notes")) == [
        "queued by a", "queued by f"]
    assert await primary_rows(sync_server, tmp_path) == ["queued by a", "queued by f"]
    await tabs.close()


async def test_a_follower_write_resent_to_a_new_leader_is_applied_once(sync_server, tmp_path):
    """The leader dies after the primary applied a follower's write but before it
    answered: the follower sends it again, same id, to the new leader."""
    tabs, a, f = await leader_and_follower(sync_server)
    engine = a._engine
    real_send = engine.send
    died = asyncio.Event()

    async def send_then_die(entries):
        reply = await real_send(entries)       # applied on the primary
        died.set()
        await asyncio.sleep(3600)              # the answer never comes
        return reply
    engine.send = send_then_die
    writing = asyncio.ensure_future(f.execute("INSERT INTO notes(body) VALUES ('once')"))
    await asyncio.wait_for(died.wait(), 20)
    from tests.tabs.harness import crash
    crash(a)
    tabs.locks.kill("a")
    tabs.hub.kill("a")
    tabs.tabs.pop("a")
    await asyncio.wait_for(writing, 30)      # f leads now, and answered itself
    assert [r["body"] for r in await f.query("SELECT body FROM notes")] == ["once"]
    assert await primary_rows(sync_server, tmp_path) == ["once"]
    await tabs.close()


async def test_a_replica_alone_or_shared_by_tabs_refuses_cdc(sync_server, tmp_path):
    with pytest.raises(datasync.InvalidOptionError, match="capture changes on the primary"):
        await datasync.open(str(tmp_path / "d.dsdb"), sync_url=f"{sync_server.url}/notes",
                            auth_token=sync_server.token("notes"), cdc=True)
    assert not (tmp_path / "d.dsdb").exists()       # refused before anything was made
    tabs = Tabs(sync_server)
    with pytest.raises(datasync.InvalidOptionError, match="capture changes on the primary"):
        await tabs.open("a", {"cdc": True})
    await tabs.close()
