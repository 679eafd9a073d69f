"""Followers keep up: what the leader writes or restores reaches them, and
on_change tells them which tables changed."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import datasync
from tabs.harness import Browser


async def test_on_change_fires_in_followers_with_the_tables_written() -> None:
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE notes(x)")
    await asyncio.sleep(0.02)
    seen: list[dict[str, Any]] = []
    f.on_change(seen.append)
    await a.execute("INSERT INTO notes VALUES (1)")
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.002)
    assert seen and seen[-1]["tables"] == ["notes"] and seen[-1]["by"] == "remote"
    assert await f.query("SELECT x FROM notes") == [{"x": 1}]
    await b.close()


async def test_a_restore_in_the_leader_reaches_the_followers() -> None:
    b = Browser(max_delay=0)
    a = await b.open("a", retain_versions=4)
    await a.wait_for_leadership()
    f = await b.open("f", retain_versions=4)
    await f.execute("CREATE TABLE t(x)")
    await f.execute("INSERT INTO t VALUES ('kept')")
    keep = a._store.version
    await f.execute("INSERT INTO t VALUES ('undone')")
    with pytest.raises(datasync.DatasyncError, match="leader tab"):
        await f.restore(keep)
    assert keep in [v["version"] for v in await a.versions()]
    await a.restore(keep)
    for _ in range(500):
        if await f.query("SELECT x FROM t") == [{"x": "kept"}]:
            break
        await asyncio.sleep(0.002)
    assert await f.query("SELECT x FROM t") == [{"x": "kept"}]
    await b.close()



@pytest.mark.parametrize("explain", ["EXPLAIN QUERY PLAN", "EXPLAIN"])
async def test_a_cached_explain_in_a_follower_sees_the_schema_another_tab_changed(
        explain: str) -> None:
    # EXPLAIN opens no read transaction, so SQLite never compares the schema cookie:
    # the statement cache kept describing the schema from before the catch-up.
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, done INT)")
    await f.execute("INSERT INTO t(done) VALUES (0)")  # f has caught up
    sql = f"{explain} SELECT id FROM t WHERE done = 0"

    async def uses_index() -> bool:
        rows = await f.query(sql)  # the same text each time: the cached statement
        return any("idx_done" in str(r.get("detail")) or str(r.get("opcode")).startswith("Idx")
                   for r in rows)

    assert not await uses_index()
    await a.execute("CREATE INDEX idx_done ON t(done)")
    await f.execute("INSERT INTO t(done) VALUES (1)")  # f has caught up again
    assert await uses_index()
    await a.execute("DROP INDEX idx_done")
    await f.execute("INSERT INTO t(done) VALUES (2)")
    assert not await uses_index()
    await b.close()
