"""Leadership: one leader elected and known to every tab, taken over on request,
and a deposed leader fenced off by its epoch."""
from __future__ import annotations

import asyncio

import pytest

import datasync
from tabs.harness import Browser, crash


async def test_one_leader_is_elected_and_every_tab_learns_who() -> None:
    b = Browser()
    tabs = [await b.open(t) for t in "abc"]
    leader = await b.leader()
    await asyncio.sleep(0.05)
    assert [t.is_leader for t in tabs].count(True) == 1
    assert {t.leader_info()["leader_id"] for t in tabs} == {leader.tab_id}
    assert {t.leader_info()["epoch"] for t in tabs} == {leader.epoch}
    await b.close()


async def test_request_leadership_takes_over_and_the_old_leader_steps_down() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    await f.request_leadership()
    assert f.is_leader and f.epoch == a.leaderships[-1] + 1
    for _ in range(500):
        if not a.is_leader:
            break
        await asyncio.sleep(0.002)
    assert not a.is_leader
    await a.execute("INSERT INTO t VALUES ('from the old leader')")  # now forwarded
    assert await f.query("SELECT x FROM t") == [{"x": "from the old leader"}]
    await b.close()


async def test_a_deposed_leader_cannot_overwrite_newer_data() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    # a is cut off (it does not learn that it lost the lock) while f takes over
    a._unsubscribe()
    b.locks._held.clear()
    await f.request_leadership()
    await f.execute("INSERT INTO t VALUES ('new leader')")
    a.db._store.epoch = a.epoch  # a still believes in its old epoch
    async with a._writable():
        await a.db.execute("INSERT INTO t VALUES ('stale')")
    with pytest.raises(datasync.DeposedLeaderError):
        await a.db.sync()
    assert await f.query("SELECT x FROM t") == [{"x": "new leader"}]
    crash(a)
    b.tabs.pop("a")
    await b.close()



async def test_a_leader_whose_last_flush_fails_stays_leader_and_closes_on_retry() -> None:
    """close() flushes before it gives anything up: a failing flush raises with the
    tab still leading and the write kept ("nothing lost, retried"); the next close()
    stores it and hands over."""
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    await a.sync()
    backend = a._store.backend
    stored_write = backend.write

    async def full(flush):  # type: ignore[no-untyped-def]
        raise datasync.StorageFullError("the quota is used up")

    backend.write = full  # type: ignore[method-assign]
    with pytest.raises(datasync.StorageFullError):  # committed, kept, not durable yet
        await a.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(datasync.StorageFullError):
        await a.close()
    assert a.is_leader and not f.is_leader
    backend.write = stored_write  # type: ignore[method-assign]
    await a.close()
    await asyncio.wait_for(f.wait_for_leadership(), 5)
    assert await f.query("SELECT x FROM t") == [{"x": 1}]
    b.tabs.pop("a")
    await b.close()
