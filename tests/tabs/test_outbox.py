"""Queued writes (the outbox): resolved with their result once durable, applied
exactly once whoever dies, kept queued past a timeout, failed alone."""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from datasync.backends import MemoryBackend
from datasync.backends.memory import _STORES
from datasync.tabs import MemoryOutbox, QueuedWriteTimeoutError
from helpers import AsyncWithHistory
from tabs.harness import Browser


async def test_a_queued_write_resolves_with_its_result_and_is_read_back() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    res = await f.queue_write("INSERT INTO t(v) VALUES (?)", [b"\x01"])
    assert res.rowcount == 1 and res.lastrowid == 1
    assert await f.query("SELECT v FROM t") == [{"v": b"\x01"}]
    res = await a.queue_write("INSERT INTO t(v) VALUES (2)")  # the leader's own
    assert res.lastrowid == 2 and b.queued() == []
    await b.close()


async def test_a_write_queued_by_a_tab_that_dies_at_once_is_still_applied_once() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    a._kick_drain = lambda: None  # type: ignore[method-assign]  # a is slow to drain...
    task = asyncio.ensure_future(f.queue_write("INSERT INTO t VALUES ('last words')"))
    while not b.queued():
        await asyncio.sleep(0)
    b.kill("f")  # ...and f is gone before anything was applied
    task.cancel()
    assert await a.query("SELECT x FROM t") == []
    del a._kick_drain  # a drains again (at its next poll, or the next notice)
    a._kick_drain()
    await b.drained()
    assert await a.query("SELECT x FROM t") == [{"x": "last words"}]
    await b.close()


async def test_a_queued_write_waits_for_a_leader_and_a_timeout_leaves_it_queued() -> None:
    b = Browser()
    ghost = await b.locks.for_tab("ghost").acquire(f"datasync-leader:{b.name}")
    f = await b.open("f")  # nobody can lead while the ghost holds the lock
    with pytest.raises(QueuedWriteTimeoutError, match="stays queued") as caught:
        await f.queue_write("CREATE TABLE t(x)", timeout=0.2)
    assert [e["id"] for e in b.queued()] == [caught.value.id]
    b.locks.release(ghost)
    await f.wait_for_leadership()
    await b.drained()
    res = await f.queue_write("INSERT INTO t VALUES (1)")
    assert res.rowcount == 1
    assert await f.query("SELECT x FROM t") == [{"x": 1}]
    await b.close()


async def test_a_queued_write_that_fails_raises_its_error_once_and_leaves_the_outbox() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(x UNIQUE)")
    await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await f.queue_write("INSERT INTO t VALUES (1)")
    assert b.queued() == []
    assert await a.query("SELECT count(*) AS n FROM t") == [{"n": 1}]
    await b.close()


async def test_a_leader_that_dies_after_applying_a_queued_write_does_not_apply_it_twice() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    deleted = asyncio.Event()

    async def die_before_deleting(entry_id: str) -> None:
        deleted.set()
        await asyncio.Event().wait()  # a is killed here, the entry still queued

    a._outbox = type("O", (), {"entries": MemoryOutbox(b.name).entries,
                               "delete": staticmethod(die_before_deleting),
                               "close": lambda self: None})()
    task = asyncio.ensure_future(f.queue_write("INSERT INTO t VALUES ('once')"))
    await deleted.wait()
    b.kill("a")
    res = await task  # answered by a's result message, or by the new leader
    assert res.rowcount == 1
    await b.drained()
    assert await f.query("SELECT x FROM t") == [{"x": "once"}]
    await b.close()


class _GatedBackend(AsyncWithHistory):
    """Flushes wait at a gate once ``gated`` (storage that is slow to commit)."""

    gated = False

    def __init__(self, name: str, *, instance: str) -> None:
        super().__init__(MemoryBackend(name, instance=instance))
        self.gate = asyncio.Event()

    async def write(self, flush: Any) -> None:
        if self.gated:
            await self.gate.wait()
        await super().write(flush)


async def test_a_queued_write_on_the_leader_resolves_only_once_durable() -> None:
    b = Browser()
    backend = _GatedBackend(b.name, instance="a")
    a = await b.open("a", backend=backend)
    await a.wait_for_leadership()
    await a.execute("CREATE TABLE t(x)")
    backend.gated = True
    task = asyncio.ensure_future(a.queue_write("INSERT INTO t VALUES (1)"))
    await asyncio.sleep(0.3)
    assert not task.done(), "resolved while its flush had not reached storage"
    backend.gate.set()
    res = await asyncio.wait_for(task, 10)
    assert res.rowcount == 1
    assert _STORES[b.name].meta.version == a._store.version
    await b.close()


async def test_a_queued_write_with_a_bad_parameter_fails_alone_and_the_outbox_drains() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    with pytest.raises(Exception, match="too large"):
        await f.queue_write("INSERT INTO t VALUES (?)", [2**70], timeout=10)
    res = await f.queue_write("INSERT INTO t VALUES ('next')", timeout=10)
    assert res.rowcount == 1 and b.queued() == []
    with pytest.raises(Exception, match="too large"):
        await f.execute("INSERT INTO t VALUES (?)", [2**70])  # forwarded, answered
    assert await a.query("SELECT x FROM t") == [{"x": "next"}]
    await b.close()

