"""Writes from follower tabs: forwarded to the leader and read back at once, with the
leader's errors; none lost or applied twice when the leader dies mid-stream."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

import datasync
from datasync.tabs import SharedDatabase
from tabs.harness import Browser


async def test_follower_writes_are_forwarded_and_read_back_at_once() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")  # DDL is a write
    res = await f.execute("INSERT INTO t(v) VALUES (?)", (b"\x00blob",))
    assert res.rowcount == 1 and res.lastrowid == 1
    assert await f.query("SELECT v FROM t") == [{"v": b"\x00blob"}]  # read-your-writes
    await f.execute("WITH x(n) AS (VALUES (2), (3)) INSERT INTO t(v) SELECT n FROM x")
    assert (await f.query("SELECT count(*) AS n FROM t")) == [{"n": 3}]
    assert (await a.query("SELECT count(*) AS n FROM t")) == [{"n": 3}]
    assert not f.is_leader and f.leader_info()["leader_id"] == "a"
    await b.close()


async def test_a_follower_behind_the_leader_still_writes_to_a_table_another_tab_created() -> None:
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    g = await b.open("g")
    f._catchup_wanted.set = lambda: None  # f misses every notice...
    f._catch_up_for_notice = _idle  # type: ignore[method-assign]
    f.poll_interval = 3600  # ...and does not poll
    await asyncio.sleep(0.01)
    await g.execute("CREATE TABLE t(x)")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await f.db.execute("SELECT x FROM t")  # f's own copy is behind
    await f.execute("INSERT INTO t VALUES (1)")
    assert await f.query("SELECT x FROM t") == [{"x": 1}]
    with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
        await f.execute("INSERT INTO nope VALUES (1)")  # the leader's error
    await b.close()


async def _idle() -> None:
    return None


async def test_errors_on_the_leader_reach_the_caller_with_their_class() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(x UNIQUE)")
    await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError):
        await f.batch([("INSERT INTO t VALUES (2)", []), ("INSERT INTO t VALUES (1)", [])])
    assert await f.query("SELECT x FROM t") == [{"x": 1}]  # the batch was atomic
    await b.close()


async def test_leader_crash_mid_stream_loses_no_acknowledged_write_and_applies_none_twice() -> None:
    b = Browser(max_delay=0.003, seed=7)
    a = await b.open("a")
    await a.wait_for_leadership()
    tabs = [a, await b.open("b"), await b.open("c"), await b.open("d")]
    await tabs[1].execute("CREATE TABLE t(k TEXT)")

    async def writer(tab: SharedDatabase) -> list[str]:
        done = []
        for i in range(40):
            key = f"{tab.tab_id}-{i}"
            try:
                await tab.execute("INSERT INTO t VALUES (?)", (key,))
                done.append(key)
            except datasync.DatabaseClosedError:
                break
        return done

    tasks = [asyncio.ensure_future(writer(t)) for t in tabs[1:]]
    await asyncio.sleep(0.03)
    b.kill("a")
    acked = [k for t in tasks for k in await t]
    survivor = await b.leader()
    rows = [r["k"] for r in await survivor.query("SELECT k FROM t")]
    assert len(acked) == 120
    assert sorted(rows) == sorted(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), "an acknowledged write was lost"
    assert survivor.epoch > 1
    await b.close()



@pytest.mark.parametrize("queued", [False, True])
async def test_closing_a_tab_answers_its_writes_still_waiting_for_the_leader(queued: bool) -> None:
    """A write (forwarded or queued) still waiting for the leader when its tab
    closes raises DatabaseClosedError at once, not after write_timeout (20 s here)
    as LeaderUnavailableError."""
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(x)")
    b.hub.kill("a")  # the leader hears nothing more: no answer comes
    write = asyncio.ensure_future(f.queue_write("INSERT INTO t VALUES (1)", []) if queued
                                  else f.execute("INSERT INTO t VALUES (1)"))
    await asyncio.sleep(0.05)
    assert not write.done()
    await f.close()
    # Answered by close() itself: at once, not at the next resend (1 s; 0.25 s queued).
    with pytest.raises(datasync.DatabaseClosedError, match="before the leader answered"):
        await asyncio.wait_for(write, 0.1)
    await b.close()


async def test_named_parameters_cross_to_the_leader_in_every_kind_of_write() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(k TEXT, v BLOB)")
    await f.execute("INSERT INTO t VALUES (:k, :v)", {"k": "execute", "v": b"\x01"})
    await f.batch([("INSERT INTO t VALUES (:k, :v)", {"k": "batch", "v": None})])
    await f.executemany("INSERT INTO t VALUES (:k, :v)", [{"k": "many", "v": 1}])
    async with f.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (:k, :v)", {"k": "transaction", "v": 2.5})
        assert await tx.query("SELECT v FROM t WHERE k = :k", {"k": "execute"}) == [{"v": b"\x01"}]
    await f.queue_write("INSERT INTO t VALUES (:k, :v)", {"k": "queued", "v": "x"})
    assert [r["k"] for r in await a.query("SELECT k FROM t ORDER BY rowid")] == [
        "execute", "batch", "many", "transaction", "queued"]
    await b.close()


async def test_the_leader_hears_of_another_tabs_schema_change_as_remote() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    heard: list[dict] = []
    a.on_change(heard.append)
    await f.execute("CREATE TABLE made(x)")
    await f.execute("CREATE INDEX made_x ON made(x)")
    await f.execute("ALTER TABLE made ADD COLUMN y")
    await a.execute("INSERT INTO made VALUES (1, 2)")
    assert [(c["tables"], c["by"]) for c in heard] == [
        (["made"], "remote"), (["made"], "remote"), (["made"], "remote"), (["made"], "local")]
    await b.close()


@pytest.mark.parametrize("sql", [
    "EXPLAIN INSERT INTO t VALUES (1)",
    "EXPLAIN QUERY PLAN DELETE FROM t WHERE x > 0",
    "EXPLAIN UPDATE t SET x = x + 1",
    "EXPLAIN CREATE TABLE u(y)",
    "EXPLAIN QUERY PLAN INSERT INTO t SELECT x FROM t",
])
async def test_an_explain_of_a_write_runs_in_its_own_tab_and_writes_nothing(sql: str) -> None:
    # SQLite calls EXPLAIN of a write not read-only (sqlite3_stmt_readonly) and the
    # authorizer sees the write's actions: it was forwarded and made a version.
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    await a.execute("INSERT INTO t VALUES (1)")
    await f.execute("INSERT INTO t VALUES (2)")  # f has caught up
    before = (a.version, f.version)
    for tab in (a, f):
        assert await tab.query(sql)  # the program or plan rows
    await asyncio.sleep(0.05)
    assert (a.version, f.version) == before
    assert await a.query("SELECT x FROM t ORDER BY x") == [{"x": 1}, {"x": 2}]
    await b.close()
