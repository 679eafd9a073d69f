"""Live queries (``db.live``): the rows now, and again after every commit in any tab
that touched a table the query reads; coalesced, skipped when the rows are the same."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

import datasync
from tabs.harness import Browser, until

KINDS = ["database", "leader", "follower"]


async def _open(kind: str) -> tuple[Any, Any, Any]:
    """(the database to test, a database writing to the same data, what closes both)."""
    if kind == "database":
        d = await datasync.open(f"live-{kind}", backend="memory")
        return d, d, d.close
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    return (a if kind == "leader" else f), a, b.close


async def _settled(live: Any) -> None:
    """Until no re-run of ``live`` is in flight (a few loop turns at least)."""
    for _ in range(5):
        await asyncio.sleep(0.002)
    await until(lambda: _idle(live), "the live queries to settle")


async def _idle(live: Any) -> bool:
    return not live._tasks and live._schema_check is None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_live_query_calls_back_now_and_after_a_commit_in_the_same_tab(kind: str) -> None:
    db, _, close = await _open(kind)
    await db.execute("CREATE TABLE t(v INTEGER)")
    calls: list[list[dict[str, Any]]] = []
    off = await db.live("SELECT v FROM t ORDER BY v", [], calls.append)
    assert calls == [[]]  # before live() returned
    await db.execute("INSERT INTO t VALUES (1)")
    await until(lambda: _called(calls, 2), "the second callback")
    assert calls[-1] == [{"v": 1}]
    off()
    await close()


async def _called(calls: list[Any], n: int) -> bool:
    return len(calls) >= n


async def test_a_follower_reruns_after_a_leader_commit_to_a_table_it_reads_and_not_another() -> None:
    b = Browser(max_delay=0)
    leader, follower = await b.leader_and_follower()
    await leader.executescript("CREATE TABLE t(v INTEGER); CREATE TABLE u(w INTEGER);")
    await until(lambda: _has_tables(follower), "the follower to see the tables")
    calls: list[list[dict[str, Any]]] = []
    # random(): every run gives new rows, so every run calls back and is counted
    await follower.live("SELECT v, random() AS r FROM t", [], calls.append)
    live = follower._app.live
    assert len(calls) == 1 and live.runs == 1
    await leader.execute("INSERT INTO u VALUES (1)")
    await until(lambda: _reached(follower, leader.version), "the follower to catch up")
    await _settled(live)
    assert len(calls) == 1 and live.runs == 1  # u is not read: not run again
    await leader.execute("INSERT INTO t VALUES (7)")
    await until(lambda: _called(calls, 2), "the follower's callback")
    await _settled(live)
    assert [r["v"] for r in calls[-1]] == [7] and len(calls) == 2 and live.runs == 2
    await b.close()


async def _has_tables(tab: Any) -> bool:
    return len(await tab.query("SELECT name FROM sqlite_schema WHERE type = 'table'")) >= 2


async def _reached(tab: Any, version: int) -> bool:
    return tab.version >= version


async def test_commits_during_a_run_cause_exactly_one_more_run_with_the_final_rows() -> None:
    db = await datasync.open("live-burst", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    gate = asyncio.Event()
    seen: list[list[dict[str, Any]]] = []

    async def slow(rows: list[dict[str, Any]]) -> None:
        seen.append(rows)
        if len(seen) == 2:
            await gate.wait()  # this run stays in flight while the burst commits

    await db.live("SELECT count(*) AS n FROM t", [], slow)
    live = db._app.live
    await db.execute("INSERT INTO t VALUES (0)")
    await until(lambda: _called(seen, 2), "the re-run after the first commit")
    for i in range(1, 21):
        await db.execute("INSERT INTO t VALUES (?)", [i])
    await asyncio.sleep(0.01)
    assert len(seen) == 2 and live.runs == 2  # none started while one is in flight
    gate.set()
    await until(lambda: _called(seen, 3), "the one run after the burst")
    await _settled(live)
    assert seen[-1] == [{"n": 21}]
    assert live.runs == 3 and len(seen) == 3
    await db.close()


async def test_rows_that_did_not_change_call_nobody() -> None:
    db = await datasync.open("live-same", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    calls: list[Any] = []
    await db.live("SELECT v FROM t WHERE v > 100", [], calls.append)
    live = db._app.live
    await db.execute("INSERT INTO t VALUES (1)")
    await until(lambda: _runs(live, 2), "the re-run")
    await _settled(live)
    assert calls == [[]]
    await db.execute("INSERT INTO t VALUES (101)")
    await until(lambda: _called(calls, 2), "the changed rows")
    assert calls[-1] == [{"v": 101}]
    await db.close()


async def _runs(live: Any, n: int) -> bool:
    return live.runs >= n


async def test_unsubscribing_stops_the_callbacks_and_the_listening_twice_safely() -> None:
    db = await datasync.open("live-off", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    calls: list[Any] = []
    off = await db.live("SELECT v FROM t", [], calls.append)
    other = await db.live("SELECT count(*) AS n FROM t", [], lambda rows: None)
    live = db._app.live
    assert len(live) == 2
    off()
    off()
    assert len(live) == 1 and live._off is not None
    other()
    assert len(live) == 0 and live._off is None  # the last one gone: not listening
    await db.execute("INSERT INTO t VALUES (1)")
    await asyncio.sleep(0.01)
    assert calls == [[]] and live.runs == 2
    await db.close()


async def test_closing_the_database_ends_the_live_queries_with_nothing_left_running() -> None:
    before = asyncio.all_tasks()  # (inside Pyodide the loop also runs the page's tasks)
    db = await datasync.open("live-close", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    calls: list[Any] = []
    await db.live("SELECT v FROM t", [], calls.append)
    await db.execute("INSERT INTO t VALUES (1)")  # its notice comes on the next turn
    await db.close()
    for _ in range(5):
        await asyncio.sleep(0.002)
    assert calls == [[]]
    live = db._app.live
    assert await _idle(live)
    mine = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert all(t.done() for t in mine), mine


async def test_a_failing_rerun_is_logged_and_counted_and_the_query_stays(
        caplog: pytest.LogCaptureFixture) -> None:
    db = await datasync.open("live-error", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    calls: list[Any] = []
    await db.live("SELECT v FROM t", [], calls.append)
    live = db._app.live
    with caplog.at_level(logging.WARNING, logger="datasync"):
        await db.execute("DROP TABLE t")
        await until(lambda: _errors(live, 1), "the failed re-run")
    assert any("live query" in r.getMessage() and r.name == "datasync" for r in caplog.records)
    assert len(live) == 1
    await db.executescript("CREATE TABLE t(v INTEGER); INSERT INTO t VALUES (5);")
    await until(lambda: _called(calls, 2), "the callback once the table is back")
    assert calls[-1] == [{"v": 5}]
    await db.close()


async def _errors(live: Any, n: int) -> bool:
    return live.errors >= n


async def test_a_first_run_that_fails_raises_and_leaves_nothing_subscribed() -> None:
    db = await datasync.open("live-first", backend="memory")
    live = db._app.live
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.live("SELECT * FROM missing", [], lambda rows: None)
    assert len(live) == 0 and live._off is None
    with pytest.raises(TypeError, match="callback"):
        await db.live("SELECT 1", [])
    await db.close()


async def test_a_view_redefined_to_read_another_table_follows_that_table() -> None:
    db = await datasync.open("live-schema", backend="memory")
    await db.executescript("CREATE TABLE t(v INTEGER); CREATE TABLE u(v INTEGER); "
                           "INSERT INTO u VALUES (9); CREATE VIEW w AS SELECT v FROM t;")
    calls: list[Any] = []
    await db.live("SELECT v FROM w", [], calls.append)
    live = db._app.live
    assert live._queries[0].tables == frozenset({"t"})
    await db.executescript("DROP VIEW w; CREATE VIEW w AS SELECT v FROM u;")
    await until(lambda: _called(calls, 2), "the rows of the new view")
    assert calls[-1] == [{"v": 9}]
    await _settled(live)
    assert live._queries[0].tables == frozenset({"u"})
    await db.close()


async def test_a_first_callback_that_raises_leaves_nothing_subscribed() -> None:
    db = await datasync.open("live-first-callback", backend="memory")

    def broken(rows: Any) -> None:
        raise ValueError("render failed")

    with pytest.raises(ValueError, match="render failed"):
        await db.live("SELECT 1 AS one", [], broken)
    assert len(db._app.live) == 0 and db._app.live._off is None
    await db.close()


async def test_a_live_query_with_parameters_follows_its_rows() -> None:
    db = await datasync.open("live-params", backend="memory")
    await db.execute("CREATE TABLE t(k TEXT, v INTEGER)")
    calls: list[Any] = []
    await db.live("SELECT v FROM t WHERE k = :k", {"k": "a"}, calls.append)
    await db.execute("INSERT INTO t VALUES ('b', 1)")
    await db.execute("INSERT INTO t VALUES ('a', 2)")
    await until(lambda: _called(calls, 2), "the rows of k = 'a'")
    await _settled(db._app.live)
    assert calls == [[], [{"v": 2}]]
    await db.close()


async def test_a_statement_that_writes_is_refused_and_nothing_stays_subscribed() -> None:
    # It would run again after its own commit, for ever.
    db = await datasync.open("live-writes", backend="memory")
    await db.executescript("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
    calls: list[Any] = []
    for sql in ("UPDATE t SET a = a + 1 RETURNING a", "INSERT INTO t VALUES (2) RETURNING a"):
        with pytest.raises(datasync.NotReadOnlyError, match="only reads"):
            await db.live(sql, [], calls.append)
    assert calls == [] and len(db._app.live) == 0
    assert await db.query("SELECT a FROM t") == [{"a": 1}]
    await db.close()
