"""A strict write whose own flush waited behind a flush in flight while the store
forked (``discard_unflushed``: a deposed leader tab drops what it had not flushed) is
never answered as durable: its wait keeps the generation of its commit, not the one
after the fork, where ``durable_seq`` was set past the dropped commit (found in the
issue-11 review)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import datasync
from datasync.backends import MemoryBackend
from datasync.errors import DeposedLeaderError
from helpers import AsyncWithHistory


class Gated(AsyncWithHistory):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.hold = False
        self.held, self.release = asyncio.Event(), asyncio.Event()

    async def write(self, flush: Any) -> None:
        if self.hold:
            self.hold = False
            self.held.set()
            await self.release.wait()
        await self.inner.write(flush)


async def test_a_strict_write_dropped_by_a_fork_is_not_reported_durable() -> None:
    gated = Gated(MemoryBackend("strict-fork", instance="x"))
    db = await datasync.open("strict-fork", backend=gated, durability="strict")
    await db.execute("CREATE TABLE t(x)")
    store = db.store
    gated.hold = True
    first = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (1)"))
    await asyncio.wait_for(gated.held.wait(), 5)          # flush 1 in flight
    fork = asyncio.ensure_future(store.discard_unflushed())  # waits for flush 1
    await asyncio.sleep(0)
    second = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (2)"))
    await asyncio.sleep(0.01)                             # committed; its flush waits too
    generation = store.generation
    gated.release.set()
    await first
    await fork
    assert store.generation == generation + 1             # the fork dropped commit 2
    with pytest.raises(DeposedLeaderError):
        res = await asyncio.wait_for(second, 5)
        print("reported durable:", res, "stored version", store.version)
    await db.close()
