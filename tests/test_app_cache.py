"""Cached queries (``db.cached``): rows kept until their TTL passes or a commit in any
tab touches a table they read; read-your-writes in every kind of database."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import datasync
from datasync.app.cache import QueryCache
from tabs.harness import Browser, until

KINDS = ["database", "leader", "follower"]


async def _open(kind: str) -> tuple[Any, Any]:
    if kind == "database":
        d = await datasync.open(f"cache-{kind}", backend="memory")
        return d, d.close
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    return (a if kind == "leader" else f), b.close


async def test_hits_and_misses_are_counted_per_sql_and_parameters() -> None:
    db = await datasync.open("cache-counts", backend="memory")
    await db.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
                           "INSERT INTO t(v) VALUES ('a'), ('b');")
    cache = db._app.cache
    q = "SELECT v FROM t WHERE id = ?"
    assert await db.cached(q, [1]) == [{"v": "a"}]
    assert await db.cached(q, [1]) == [{"v": "a"}]
    assert await db.cached(q, [2]) == [{"v": "b"}]
    assert await db.cached(q, [2]) == [{"v": "b"}]
    assert await db.cached(q, [1]) == [{"v": "a"}]
    assert (cache.hits, cache.misses, len(cache)) == (3, 2, 2)
    await db.close()


async def test_the_rows_returned_are_copies_the_caller_may_change() -> None:
    db = await datasync.open("cache-copies", backend="memory")
    await db.executescript("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('a');")
    rows = await db.cached("SELECT v FROM t")
    rows[0]["v"] = "changed"
    rows.append({"v": "more"})
    again = await db.cached("SELECT v FROM t")
    again[0]["v"] = "changed too"
    assert await db.cached("SELECT v FROM t") == [{"v": "a"}]
    assert db._app.cache.hits == 2
    await db.close()


async def test_parameters_of_other_types_are_other_keys() -> None:
    db = await datasync.open("cache-types", backend="memory")
    assert await db.cached("SELECT typeof(?) AS k", [1]) == [{"k": "integer"}]
    assert await db.cached("SELECT typeof(?) AS k", [1.0]) == [{"k": "real"}]
    assert await db.cached("SELECT typeof(:x) AS k", {"x": b"1"}) == [{"k": "blob"}]
    assert await db.cached("SELECT typeof(:x) AS k", {"x": bytearray(b"1")}) == [{"k": "blob"}]
    assert db._app.cache.hits == 1
    await db.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_write_is_read_back_at_once_through_the_cache(kind: str) -> None:
    db, close = await _open(kind)
    await db.execute("CREATE TABLE t(v INTEGER)")
    assert await db.cached("SELECT count(*) AS n FROM t") == [{"n": 0}]
    for n in range(1, 4):  # no await between the write and the read
        await db.execute("INSERT INTO t VALUES (?)", [n])
        assert await db.cached("SELECT count(*) AS n FROM t") == [{"n": n}]
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM t")
    assert await db.cached("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await close()


@pytest.mark.parametrize("kind", ["leader", "follower"])
async def test_a_tab_keeps_entries_of_tables_a_write_did_not_touch(kind: str) -> None:
    db, close = await _open(kind)
    await db.executescript("CREATE TABLE t(v INTEGER); CREATE TABLE u(w INTEGER);")
    cache = db._app.cache
    await db.cached("SELECT count(*) AS n FROM u")
    await db.execute("INSERT INTO t VALUES (1)")
    assert await db.cached("SELECT count(*) AS n FROM u") == [{"n": 0}]
    assert (cache.hits, cache.misses) == (1, 1)
    await close()


async def test_an_entry_is_invalidated_by_a_write_from_another_tab() -> None:
    b = Browser(max_delay=0)
    leader, follower = await b.leader_and_follower()
    await leader.executescript("CREATE TABLE t(v INTEGER); CREATE TABLE u(w INTEGER);")
    await until(lambda: _version(follower, leader.version), "the follower to catch up")
    q = "SELECT v FROM t ORDER BY v"
    assert await follower.cached(q, [], 60) == []
    assert await follower.cached("SELECT w FROM u", [], 60) == []
    await leader.execute("INSERT INTO t VALUES (3)")

    async def fresh() -> bool:
        return await follower.cached(q, [], 60) == [{"v": 3}]

    await until(fresh, "the cached rows to show the other tab's write")
    assert await follower.cached("SELECT w FROM u", [], 60) == []  # u untouched: a hit
    cache = follower._app.cache
    assert cache.misses == 3 and cache.hits >= 1
    await b.close()


async def _version(tab: Any, version: int) -> bool:
    return tab.version >= version


async def test_an_entry_expires_after_its_ttl() -> None:
    db = await datasync.open("cache-ttl", backend="memory")
    cache = db._app.cache
    await db.cached("SELECT 1 AS one", [], 0.01)
    await asyncio.sleep(0.03)
    assert await db.cached("SELECT 1 AS one", [], 0.01) == [{"one": 1}]
    assert (cache.hits, cache.misses) == (0, 2)
    await db.cached("SELECT 2 AS two", [], 0)  # no TTL: never stored
    assert len(cache) == 1
    await db.close()


class _WritesDuringReads:
    """A database whose every query is followed, before it returns, by a commit."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.n = 0

    async def query(self, sql: str, params: Any = ()) -> Any:
        rows = await self.db.query(sql, params)
        if "count(*)" in sql:
            self.n += 1
            await self.db.execute("INSERT INTO t VALUES (?)", [self.n])
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def test_a_fill_that_races_a_commit_does_not_store_its_rows() -> None:
    db = await datasync.open("cache-race", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    racing = _WritesDuringReads(db)
    cache = QueryCache(racing, None)
    assert await cache.get("SELECT count(*) AS n FROM t", [], 60) == [{"n": 0}]
    assert len(cache) == 0  # stale already: not kept
    racing.n = -100  # (the next insert is another row)
    assert await cache.get("SELECT count(*) AS n FROM t", [], 60) == [{"n": 1}]
    assert cache.misses == 2
    await db.close()


async def test_the_cache_keeps_the_most_recently_used_entries() -> None:
    db = await datasync.open("cache-lru", backend="memory")
    cache = QueryCache(db, None, size=3)
    for i in range(5):
        await cache.get(f"SELECT {i} AS i", [], 60)
    assert len(cache) == 3
    await cache.get("SELECT 4 AS i", [], 60)
    await cache.get("SELECT 0 AS i", [], 60)
    assert (cache.hits, cache.misses) == (1, 6)
    await db.close()


async def test_unhashable_parameters_are_answered_but_not_cached() -> None:
    db = await datasync.open("cache-unhashable", backend="memory")
    cache = db._app.cache

    class Odd:
        __hash__ = None  # type: ignore[assignment]

        def __conform__(self, protocol: Any) -> int:
            return 5

    assert await db.cached("SELECT ? AS x", [Odd()]) == [{"x": 5}]
    assert await db.cached("SELECT ? AS x", [Odd()]) == [{"x": 5}]
    assert len(cache) == 0 and cache.misses == 2
    await db.close()


async def test_a_closed_database_answers_no_cached_rows() -> None:
    db = await datasync.open("cache-closed", backend="memory")
    await db.cached("SELECT 1 AS one")
    await db.close()
    with pytest.raises(datasync.DatabaseClosedError):
        await db.cached("SELECT 1 AS one")
    with pytest.raises(datasync.DatabaseClosedError):
        await db.live("SELECT 1 AS one", [], lambda rows: None)


async def test_a_miss_reads_the_schema_version_only_after_a_change() -> None:
    db = await datasync.open("cache-schema-reads", backend="memory")
    await db.execute("CREATE TABLE t(v INTEGER)")
    seen: list[str] = []
    query = db.query

    async def counting(sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return await query(sql, params)

    db.query = counting  # type: ignore[method-assign]
    for i in range(3):
        await db.cached(f"SELECT v + {i} FROM t")
    assert sum("schema_version" in s for s in seen) <= 1
    await db.execute("CREATE TABLE u(w INTEGER)")
    seen.clear()
    assert await db.cached("SELECT count(*) AS n FROM u") == [{"n": 0}]
    assert sum("schema_version" in s for s in seen) == 1
    await db.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_statement_that_writes_is_refused_before_it_runs(kind: str) -> None:
    db, close = await _open(kind)
    await db.executescript("CREATE TABLE w(x); INSERT INTO w VALUES (1);")
    for sql in ("INSERT INTO w VALUES (2)", "UPDATE w SET x = x + 1 RETURNING x",
                "DELETE FROM w", "CREATE TABLE z(y)"):
        with pytest.raises(datasync.NotReadOnlyError, match="only reads"):
            await db.cached(sql)
    assert await db.query("SELECT x FROM w") == [{"x": 1}]  # none of them ran
    for ttl in ("30", None, True):
        with pytest.raises(datasync.InvalidOptionError, match="ttl"):
            await db.cached("SELECT x FROM w", ttl=ttl)  # type: ignore[arg-type]
    await close()


@pytest.mark.parametrize("kind", KINDS)
async def test_own_writes_to_a_temp_table_are_seen(kind: str) -> None:
    # No change notice names a TEMP table and its writes move no commit count, so
    # rows read from one are never kept.
    db, close = await _open(kind)
    await db.execute("CREATE TEMP TABLE scratch(x)")
    assert await db.cached("SELECT count(*) AS n FROM scratch") == [{"n": 0}]
    await db.execute("INSERT INTO scratch VALUES (1)")
    assert await db.cached("SELECT count(*) AS n FROM scratch") == [{"n": 1}]
    await close()


async def test_a_view_redefined_in_another_tab_is_read_afresh() -> None:
    # The change notice names the view, not the tables the entry read through it.
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await a.executescript("CREATE TABLE u(x); INSERT INTO u VALUES (1), (2), (3); "
                          "CREATE VIEW v AS SELECT x FROM u WHERE x = 1;")
    await until(lambda: _version(f, a.version), "f catches up")
    for tab in (a, f):
        assert await tab.cached("SELECT x FROM v ORDER BY x") == [{"x": 1}]
    await a.executescript("DROP VIEW v; CREATE VIEW v AS SELECT x FROM u WHERE x > 1;")
    await until(lambda: _version(f, a.version), "f catches up")
    for tab in (a, f):
        assert await tab.cached("SELECT x FROM v ORDER BY x") == [{"x": 2}, {"x": 3}]
    await b.close()
