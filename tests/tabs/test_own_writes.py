"""A leader tab's own writes: no row in the applied table (one page less to store
per commit), yet still applied exactly once when a takeover lands between the
commit and the moment it is durable. The store answers whether the commit was
stored (``BlockStore.durable_in_generation``), so the write either stands or is
sent, with the same id, to the new leader."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from datasync.backends import MemoryBackend
from datasync.tabs.wire import APPLIED_TABLE
from helpers import AsyncWithHistory
from tabs.harness import Browser, crash


class GatedBackend(AsyncWithHistory):
    """A memory store whose next flush can be held ``before`` or ``after`` its
    write reaches the store, until the test releases it."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.hold: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def _gate(self, where: str) -> None:
        if self.hold == where:
            self.hold = None
            self.held.set()
            await self.release.wait()

    async def write(self, flush: Any) -> None:
        await self._gate("before")
        await self.inner.write(flush)
        await self._gate("after")


async def gated_leader_and_follower(b: Browser) -> tuple[Any, Any, GatedBackend]:
    """Tab "a" leading on a gated store, with table ``t`` stored, and tab "f" following."""
    gated = GatedBackend(MemoryBackend(b.name, instance="a"))
    a = await b.open("a", backend=gated)
    await a.wait_for_leadership()
    f = await b.open("f")
    await a.execute("CREATE TABLE t(x)")
    await a.sync()
    return a, f, gated


async def stepping_down(a: Any) -> None:
    """Until ``a`` has stopped leading: its step-down then waits for the held flush
    before it drops what was not stored, the moment these tests are about."""
    for _ in range(2500):
        if not a.is_leader:
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the takeover never reached the old leader")


async def applied_ids(tab: Any) -> list[str]:
    res = await tab.db.execute(f"SELECT id FROM {APPLIED_TABLE}")
    return [r[0] for r in res.rows]


async def test_own_writes_leave_no_applied_row_and_forwarded_writes_do() -> None:
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    await a.execute("INSERT INTO t VALUES (1)")
    await a.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
    await a.batch([("INSERT INTO t VALUES (4)", ())])
    assert await applied_ids(a) == []
    await f.execute("INSERT INTO t VALUES (5)")
    assert len(await applied_ids(a)) == 1  # a follower's write is answered from it
    assert await f.query("SELECT count(*) AS n FROM t") == [{"n": 5}]
    await b.close()


@pytest.mark.parametrize("hold", ["before", "after"])
async def test_a_takeover_between_commit_and_flush_applies_the_own_write_once(hold: str) -> None:
    """``before``: the takeover's epoch fence refuses the flush, the commit is
    dropped, and the write goes to the new leader. ``after``: the flush stored it
    before the old leader stepped down, and it stands. Either way: once."""
    b = Browser(max_delay=0)
    a, f, gated = await gated_leader_and_follower(b)

    gated.hold = hold
    write = asyncio.ensure_future(a.execute("INSERT INTO t VALUES ('own')"))
    await asyncio.wait_for(gated.held.wait(), 5)
    takeover = asyncio.ensure_future(f.request_leadership())
    await asyncio.wait_for(takeover, 10)  # f leads: its epoch is staked (a's flush waits)
    await stepping_down(a)
    gated.release.set()
    res = await asyncio.wait_for(write, 10)
    await asyncio.wait_for(takeover, 10)
    assert res.rowcount == 1
    assert f.is_leader and not a.is_leader
    assert await f.query("SELECT x FROM t") == [{"x": "own"}]
    assert await a.query("SELECT x FROM t") == [{"x": "own"}]  # read-your-writes
    crash(a)
    b.tabs.pop("a")
    await b.close()


async def test_an_own_write_dropped_by_a_crash_of_its_tab_is_not_reported_durable() -> None:
    """The other member of the class: the tab dies with the commit unflushed; its
    caller is answered with an error (never a result), and nothing is stored."""
    b = Browser(max_delay=0)
    a, f, gated = await gated_leader_and_follower(b)
    gated.hold = "before"
    write = asyncio.ensure_future(a.execute("INSERT INTO t VALUES ('lost')"))
    await asyncio.wait_for(gated.held.wait(), 5)
    b.kill("a")
    with pytest.raises(Exception):
        await asyncio.wait_for(write, 5)
    survivor = await b.leader()
    assert survivor is f
    assert await f.query("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await b.close()


@pytest.mark.parametrize("hold", ["before", "after"])
async def test_a_takeover_between_commit_and_flush_settles_the_own_transaction(hold: str) -> None:
    """The leader's own interactive transaction (no applied row either): dropped by
    the fence, its commit raises TransactionAbortedError and nothing of it is
    stored; stored before the drop, it stands. Never both, never twice."""
    import datasync

    b = Browser(max_delay=0)
    a, f, gated = await gated_leader_and_follower(b)

    async def transfer() -> None:
        async with a.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES ('one')")
            await tx.execute("INSERT INTO t VALUES ('two')")

    gated.hold = hold
    work = asyncio.ensure_future(transfer())
    await asyncio.wait_for(gated.held.wait(), 5)
    takeover = asyncio.ensure_future(f.request_leadership())
    await asyncio.wait_for(takeover, 10)  # f leads: its epoch is staked (a's flush waits)
    await stepping_down(a)
    gated.release.set()
    if hold == "before":
        with pytest.raises(datasync.TransactionAbortedError):
            await asyncio.wait_for(work, 10)
        expected = 0
    else:
        await asyncio.wait_for(work, 10)
        expected = 2
    await asyncio.wait_for(takeover, 10)
    assert await f.query("SELECT count(*) AS n FROM t") == [{"n": expected}]
    assert await applied_ids(f) == []
    crash(a)
    b.tabs.pop("a")
    await b.close()


async def test_a_forwarded_write_whose_leader_died_before_replying_is_not_applied_again() -> None:
    """The write became this tab's own only after it was sent: the dead leader
    stored it, with its row, so the tab, now leading, finds it there."""
    b = Browser(max_delay=0)
    a, f, gated = await gated_leader_and_follower(b)
    gated.hold = "after"  # stored, but a dies before it answers f
    write = asyncio.ensure_future(f.execute("INSERT INTO t VALUES ('sent')"))
    await asyncio.wait_for(gated.held.wait(), 5)
    b.kill("a")
    res = await asyncio.wait_for(write, 10)
    assert f.is_leader and res.rowcount == 1
    assert await f.query("SELECT x FROM t") == [{"x": "sent"}]
    await b.close()
