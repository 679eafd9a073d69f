"""A store that forks: unflushed commits discarded (a deposed leader tab), then
another writer's history caught up on. Both branches counted the same number of
commits from the same start, so SQLite's change counter and schema cookie can read
the same over different pages and schemas; nothing cached from the dropped branch
may survive (datasync.vfs.files, "Forks")."""
from __future__ import annotations

import itertools
from typing import Any

import pytest

import datasync
from datasync.backends import MemoryBackend

_names = itertools.count()


async def forked(setup: list[str], dropped: list[str], kept: list[str]) -> Any:
    """Two writers on one stored database: ``a`` commits ``dropped`` without
    flushing, ``b`` commits and flushes ``kept`` from the same start, then ``a``
    discards its commits and catches up. Returns ``(a, b)``."""
    name = f"forks-{next(_names)}"
    a = await datasync.open(name, backend=MemoryBackend(name, instance="a"),
                            flush_interval=3600)
    for sql in setup:
        await a.execute(sql)
    await a.sync()
    b = await datasync.open(name, backend=MemoryBackend(name, instance="b"))
    for sql in dropped:
        await a.execute(sql)
    assert a.store.has_unflushed
    for sql in kept:
        await b.execute(sql)
    await b.sync()
    async with a.turn():
        await a.store.discard_unflushed()
    await a.store.catch_up()
    return a, b


async def close(*dbs: Any) -> None:
    for db in dbs:
        await db.close()


async def test_rows_of_the_dropped_branch_are_not_read_from_the_page_cache() -> None:
    a, b = await forked(["CREATE TABLE t(k TEXT)", "INSERT INTO t VALUES ('base')"],
                        ["INSERT INTO t VALUES ('dropped')"],
                        ["INSERT INTO t VALUES ('kept')"])
    rows = [r[0] for r in (await a.execute("SELECT k FROM t ORDER BY k")).rows]
    assert rows == ["base", "kept"]
    assert (await a.execute("PRAGMA integrity_check")).rows == [("ok",)]
    await close(a, b)


async def test_a_write_after_the_fork_builds_on_the_kept_branch() -> None:
    a, b = await forked(["CREATE TABLE t(k TEXT)"],
                        ["INSERT INTO t VALUES ('dropped')"] * 3,
                        ["INSERT INTO t VALUES ('kept')"] * 3)
    a.store.epoch = a.store.meta.epoch + 1  # a leads now
    await a.execute("INSERT INTO t VALUES ('after')")
    await a.sync()
    await b.store.catch_up()
    for db in (a, b):
        rows = [r[0] for r in (await db.execute("SELECT k FROM t")).rows]
        assert sorted(rows) == ["after", "kept", "kept", "kept"]
    await close(a, b)


@pytest.mark.parametrize("dropped, kept, gone, there", [
    ("CREATE TABLE x(a)", "CREATE TABLE y(b)", "x", "y"),
    ("ALTER TABLE t ADD COLUMN dropped", "ALTER TABLE t ADD COLUMN kept", None, "t"),
    ("DROP TABLE t", "CREATE INDEX ti ON t(k)", None, "t"),
])
async def test_the_schema_of_the_dropped_branch_is_not_kept(
        dropped: str, kept: str, gone: str | None, there: str) -> None:
    a, b = await forked(["CREATE TABLE t(k TEXT)", "INSERT INTO t VALUES ('base')"],
                        [dropped], [kept])
    schema = (await a.execute("SELECT sql FROM sqlite_schema ORDER BY name")).rows
    assert schema == (await b.execute("SELECT sql FROM sqlite_schema ORDER BY name")).rows
    if gone is not None:
        with pytest.raises(Exception, match="no such table"):
            await a.execute(f"SELECT * FROM {gone}")
    await a.execute(f"SELECT * FROM {there}")
    columns = [c[1] for c in (await a.execute("PRAGMA table_info(t)")).rows]
    assert "dropped" not in columns
    assert (await a.execute("PRAGMA integrity_check")).rows == [("ok",)]
    await close(a, b)


async def test_a_plain_connection_reads_the_kept_branch_too() -> None:
    name = f"forks-{next(_names)}"
    a = await datasync.open(name, backend=MemoryBackend(name, instance="a"),
                            flush_interval=3600)
    await a.execute("CREATE TABLE t(k TEXT)")
    await a.sync()
    plain = a.connect(isolation_level=None)
    assert plain.execute("SELECT count(*) FROM t").fetchone() == (0,)
    b = await datasync.open(name, backend=MemoryBackend(name, instance="b"))
    plain.execute("INSERT INTO t VALUES ('dropped')")
    await b.execute("INSERT INTO t VALUES ('kept')")
    await b.sync()
    async with a.turn():
        await a.store.discard_unflushed()
    await a.store.catch_up()
    assert plain.execute("SELECT k FROM t").fetchall() == [("kept",)]
    plain.close()
    await close(a, b)
