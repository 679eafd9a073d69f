"""Statements that run at once (issue 11): ``execute()`` on an idle connection never
suspends, and ``Transaction.execute_now`` runs inside an open transaction only while
its holder is idle; otherwise both wait as every statement does."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import datasync
from datasync.errors import TransactionStatementError
from tabs.harness import Browser


def _finishes_at_once(coro: Any) -> Any:
    """The coroutine's value if it completes without ever suspending, else fail."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the statement suspended")


async def _db(**options: Any) -> Any:
    db = await datasync.open(f"now-{id(options)}-{len(options)}", backend="memory", **options)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    return db


async def test_a_statement_on_an_idle_connection_completes_without_suspending() -> None:
    db = await _db()
    try:
        res = _finishes_at_once(db.execute("INSERT INTO t VALUES (1, 'a')"))
        assert res.rowcount == 1
        assert _finishes_at_once(db.execute("SELECT v FROM t")).rows == [("a",)]
        with pytest.raises(Exception) as info:
            _finishes_at_once(db.execute("INSERT INTO t VALUES (1, 'again')"))
        assert type(info.value).__name__ == "IntegrityError"
    finally:
        await db.close()


async def test_a_statement_waits_while_another_task_holds_or_awaits_the_turn() -> None:
    db = await _db()
    try:
        entered, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1, 'held')")
                entered.set()
                await release.wait()

        holder = asyncio.ensure_future(hold())
        await entered.wait()
        assert not db.idle()
        read = asyncio.ensure_future(db.execute("SELECT count(*) FROM t"))
        await asyncio.sleep(0.01)
        assert not read.done()  # it waits for the transaction: never sees it half done
        release.set()
        await holder
        assert (await read).rows == [(1,)]
        assert db.idle()
    finally:
        await db.close()


async def test_a_strict_commit_done_at_once_still_waits_until_durable() -> None:
    db = await _db(durability="strict")
    try:
        flushes = db.stats()["flushes"]
        await db.execute("INSERT INTO t VALUES (1, 'strict')")
        assert db.stats()["flushes"] > flushes
        assert db._store.durable_seq == db._store.commit_seq
    finally:
        await db.close()


async def test_execute_now_runs_in_the_open_transaction_only_while_its_holder_is_idle() -> None:
    db = await _db()
    try:
        tx = await db.begin()
        assert tx.execute_now("INSERT INTO t VALUES (1, 'in tx')").rowcount == 1
        assert tx.execute_now("SELECT v FROM t").rows == [("in tx",)]
        queued = asyncio.ensure_future(tx.execute("INSERT INTO t VALUES (2, 'queued')"))
        await asyncio.sleep(0)  # queued: the next one may not overtake it
        assert tx.execute_now("SELECT count(*) FROM t") is None
        await queued
        assert tx.execute_now("SELECT count(*) FROM t").rows == [(2,)]
        ending = asyncio.ensure_future(tx.rollback())
        await asyncio.sleep(0)
        assert tx.execute_now("SELECT 1") is None  # ending: never outside the transaction
        await ending
        assert tx.execute_now("SELECT 1") is None
        assert (await db.execute("SELECT count(*) FROM t")).rows == [(0,)]  # rolled back
    finally:
        await db.close()


@pytest.mark.parametrize("kind", ["leader", "follower"])
async def test_a_tabs_transaction_runs_at_once_only_on_the_leader_and_classifies(kind: str) -> None:
    browser = Browser()
    try:
        leader, follower = await browser.leader_and_follower()
        await leader.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        tab = leader if kind == "leader" else follower
        tx = await tab.begin()
        now = getattr(tx, "execute_now", None)
        if kind == "follower":
            assert now is None  # its statements travel to the leader
            await tx.execute("INSERT INTO t VALUES (1, 'f')")
        else:
            assert now("INSERT INTO t VALUES (1, 'l')").rowcount == 1
            with pytest.raises(TransactionStatementError):
                now("COMMIT")  # refused as tx.execute refuses it
        await tx.commit()
        assert (await leader.query("SELECT count(*) AS n FROM t")) == [{"n": 1}]
    finally:
        await browser.close()
