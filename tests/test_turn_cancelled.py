"""A task cancelled while it waits for the connection's turn (with a timeout, as
forwarded writes and transactions wait) leaves the turn to nobody: every later
turn, close() included, still gets it (found as a hang of the tab campaign)."""
from __future__ import annotations

import asyncio

import datasync
from datasync.backends import MemoryBackend


async def test_a_cancelled_timed_wait_for_the_turn_never_keeps_the_lock() -> None:
    db = await datasync.open("turn-cancel", backend=MemoryBackend("turn-cancel"))
    await db.execute("CREATE TABLE t(x)")
    for granted_first in (False, True):
        holder_in, holder_out = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.turn():
                holder_in.set()
                await holder_out.wait()

        async def wait_turn() -> None:
            async with db.turn(timeout=5):
                pass

        holding = asyncio.ensure_future(hold())
        await holder_in.wait()
        waiting = asyncio.ensure_future(wait_turn())
        await asyncio.sleep(0.01)  # parked in the timed wait
        if granted_first:
            holder_out.set()  # the lock passes to the waiter's acquire...
            await asyncio.sleep(0)
        waiting.cancel()  # ...as (or before) its caller is cancelled
        holder_out.set()
        await holding
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.wait_for(db.execute("INSERT INTO t VALUES (1)"), 2)  # not stuck
    await asyncio.wait_for(db.close(), 2)
