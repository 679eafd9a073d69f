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

