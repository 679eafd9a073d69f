"""db.metrics() and db.slow_queries(): figures that match the work counted (issue 14).

Native, and runnable inside Pyodide (no subprocess, no thread); the multi-tab tests
need tests/tabs/harness.py and are skipped where it is not copied."""
from __future__ import annotations

import asyncio
import math
import random
from types import SimpleNamespace

import pytest

import datasync
from datasync.app.measured import unmeasured
from datasync.app.metrics import MAX_STATEMENTS, Metrics, sync_lag
from datasync.histogram import RELATIVE_ERROR, LogHistogram

try:
    from tabs.harness import Browser
except ImportError:  # (inside Pyodide only the flat suites are copied)
    Browser = None  # type: ignore[assignment,misc]

needs_tabs = pytest.mark.skipif(Browser is None, reason="needs tests/tabs/harness.py")
#: Flushes only when sync() asks (no timer flush in the middle of a count).
NO_TIMER = {"flush_interval": 3600.0}
SLOW_SQL = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1500000) "
            "SELECT count(*) FROM c")


async def _open(db_name: str, backend_kind: str) -> datasync.Database:
    return await datasync.open(db_name, backend=backend_kind, **NO_TIMER)


# -- statements, kinds, errors --------------------------------------------------------
async def test_reads_writes_transactions_and_errors_are_each_counted_once(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")            # write 1
    for i in range(5):
        await db.execute("INSERT INTO t(v) VALUES (?)", (f"v{i}",))             # writes 2-6
    for _ in range(4):
        await db.query("SELECT * FROM t")                                        # reads 1-4
    await db.execute("SELECT v FROM t WHERE id = -1")         # read 5: no row, still a read
    await db.execute("INSERT INTO t(v) VALUES ('r') RETURNING id")   # write 7: rows, changed
    await db.executemany("INSERT INTO t(v) VALUES (?)", [("a",), ("b",)])   # write 8
    await db.batch([("UPDATE t SET v = upper(v)", ()), ("SELECT 1", ())])    # write 9
    await db.batch([("SELECT 1", ()), ("SELECT 2", ())])                     # read 6
    await db.executescript("INSERT INTO t(v) VALUES ('s'); INSERT INTO t(v) VALUES ('s')")  # 10
    await db.exec("DELETE FROM t WHERE v = 's'")                             # write 11
    async with db.transaction():                                             # transaction 1
        await db.execute("INSERT INTO t(v) VALUES ('tx')")                   # write 12
        await db.query("SELECT count(*) FROM t")                             # read 7
        async with db.transaction():                         # a savepoint: not a transaction
            await db.execute("INSERT INTO t(v) VALUES ('sp')")               # write 13
    tx = await db.begin()                                                    # transaction 2
    await tx.execute("INSERT INTO t(v) VALUES ('begin')")                    # write 14
    await tx.query("SELECT * FROM t")                                        # read 8
    await tx.commit()
    tx = await db.begin()                                                    # transaction 3
    await tx.rollback()
    for bad in ("SELECT * FROM nowhere", "INSERT INTO t(id) VALUES (1)"):    # errors 1-2
        with pytest.raises(Exception):
            await db.execute(bad)
    with pytest.raises(ZeroDivisionError):                                   # transaction 4
        async with db.transaction():                    # (rolled back: counted, no error)
            await db.execute("INSERT INTO t(v) VALUES ('gone')")             # write 15
            raise ZeroDivisionError
    with pytest.raises(Exception):                                           # error 3
        await db.batch([("INSERT INTO t(v) VALUES ('x')", ()), ("SELEC oops", ())])
    m = db.metrics()
    assert m["statements"] == {"read": 8, "write": 15, "transaction": 4}
    assert m["errors"] == 3
    assert m["errors_by_name"] == {"OperationalError": 2, "IntegrityError": 1}
    for kind, n in m["statements"].items():
        lat = m["latency_ms"][kind]
        assert lat["count"] == n
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    await db.close()


async def test_a_fresh_database_has_empty_figures_of_the_right_shape(db_name, backend_kind
                                                                     ) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    m = db.metrics()
    assert set(m) == {"statements", "errors", "errors_by_name", "latency_ms", "flushes",
                      "block_cache", "query_cache", "live_queries", "live_runs",
                      "connections", "tabs", "forwarded_writes", "sync"}
    assert m["statements"] == {"read": 0, "write": 0, "transaction": 0}
    assert m["latency_ms"]["read"] == {"count": 0, "p50": None, "p95": None, "p99": None,
                                       "max": None}
    assert m["query_cache"] == {"hits": 0, "misses": 0, "hit_rate": None, "entries": 0}
    assert (m["tabs"], m["forwarded_writes"], m["sync"], m["connections"]) == (1, 0, None, 1)
    assert set(m["flushes"]) == {"count", "bytes", "failures", "latency_ms"}
    await db.close()


async def test_concurrent_tasks_are_each_counted(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    await db.execute("CREATE TABLE t(x)")

    async def writer(i: int) -> None:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (?)", (i,))
            await asyncio.sleep(0)                       # others run meanwhile

    await asyncio.gather(*(writer(i) for i in range(10)),
                         *(db.query("SELECT count(*) FROM t") for _ in range(20)))
    assert db.metrics()["statements"] == {"read": 20, "write": 11, "transaction": 10}
    await db.close()


async def test_statements_of_a_change_callback_count_as_their_own(db_name, backend_kind
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    await db.execute("CREATE TABLE t(x)")
    seen: list[int] = []

    async def on_change(change: dict) -> None:          # a task started by the commit
        seen.append((await db.query("SELECT count(*) AS n FROM t"))[0]["n"])

    off = db.on_change(on_change)
    await db.execute("INSERT INTO t VALUES (1)")
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.005)
    off()
    assert seen == [1]
    assert db.metrics()["statements"] == {"read": 1, "write": 2, "transaction": 0}
    await db.close()


async def test_a_statement_run_at_once_in_an_open_transaction_is_counted(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    tx = await db.begin()
    res = tx.execute_now("SELECT 1")                    # (the JS bridge's fast path)
    if res is None:                                     # the holder was busy: not run
        res = await tx.execute("SELECT 1")
    assert res.rows == [(1,)]
    await tx.commit()
    assert db.metrics()["statements"] == {"read": 1, "write": 0, "transaction": 1}
    await db.close()


async def test_statements_of_the_app_layers_bookkeeping_can_be_left_out(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    with unmeasured():
        await db.query("PRAGMA schema_version")
        await db.execute("CREATE TABLE t(x)")
    await db.query("SELECT * FROM t")
    assert db.metrics()["statements"] == {"read": 1, "write": 0, "transaction": 0}
    assert [e["sql"] for e in db.slow_queries(0)] == ["SELECT * FROM t"]
    await db.close()


# -- flushes, block cache, connections ------------------------------------------------
async def test_flushes_count_what_the_store_wrote(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    before = db.metrics()["flushes"]
    await db.execute("CREATE TABLE t(x)")
    for i in range(3):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
        await db.sync()
    await db.sync()                                           # nothing new: no flush
    after, stats = db.metrics()["flushes"], db.stats()
    assert after["count"] - before["count"] == 3
    assert after["count"] == stats["flushes"] and after["failures"] == 0
    assert after["bytes"] == stats["blocks_flushed"] * stats["block_size"] > 0
    assert after["latency_ms"]["count"] == after["count"]
    assert 0 < after["latency_ms"]["p50"] <= after["latency_ms"]["max"]

    def full(stage: str, detail: int) -> None:
        raise datasync.StorageFullError("injected: disk full")

    db.store.backend.fault_hook = full
    await db.execute("INSERT INTO t VALUES (9)")
    with pytest.raises(datasync.StorageFullError):
        await db.sync()
    failed = db.metrics()["flushes"]
    assert (failed["count"], failed["failures"]) == (after["count"], 1)
    assert failed["latency_ms"]["count"] == after["count"]    # failures are not timed
    db.store.backend.fault_hook = None
    await db.sync()
    assert db.metrics()["flushes"]["count"] == after["count"] + 1
    await db.close()


async def test_block_cache_hits_grow_with_repeated_reads(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(200)])
    await db.sync()
    first = db.metrics()["block_cache"]
    for _ in range(10):
        await db.query("SELECT sum(x) FROM t")
    then = db.metrics()["block_cache"]
    stats = db.stats()
    assert (then["hits"], then["misses"]) == (stats["cache_hits"], stats["cache_misses"])
    lookups = then["hits"] + then["misses"]
    if lookups:  # (a store holding every block in memory looks nothing up)
        assert then["hits"] > first["hits"]
        assert then["hit_rate"] == then["hits"] / lookups
    else:
        assert then["hit_rate"] is None
    await db.close()


async def test_connections_count_the_sqlite_connections_open_on_the_store(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    assert db.metrics()["connections"] == 1
    extra = db.connect(isolation_level=None)
    assert db.metrics()["connections"] == 2
    extra.close()
    assert db.metrics()["connections"] == 1
    await db.close()


# -- slow statements ----------------------------------------------------------------
async def test_slow_queries_lists_the_slowest_first_above_the_threshold(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    for _ in range(3):
        await db.execute("SELECT 1")
    await db.execute(SLOW_SQL)
    await db.execute(SLOW_SQL)
    every = db.slow_queries(threshold_ms=0, limit=100)
    assert [e["sql"] for e in every] == [SLOW_SQL, "SELECT 1"]    # by max_ms, slowest first
    slow, fast = every
    assert (slow["kind"], slow["count"], fast["count"]) == ("read", 2, 3)
    assert slow["max_ms"] >= slow["mean_ms"] > 0 and slow["max_ms"] >= slow["last_ms"]
    assert fast["max_ms"] < slow["max_ms"]
    # the threshold cuts between them, by their own figures (no wall-clock assumption)
    assert [e["sql"] for e in db.slow_queries(threshold_ms=slow["max_ms"])] == [SLOW_SQL]
    assert db.slow_queries(threshold_ms=slow["max_ms"] * 2) == []
    assert len(db.slow_queries(threshold_ms=0, limit=1)) == 1
    with pytest.raises(datasync.InvalidOptionError):
        db.slow_queries(threshold_ms=-1)
    await db.close()


def test_slow_statements_are_kept_when_many_fast_ones_arrive() -> None:
    m = Metrics()
    m.ran("read", "the slow one", 2.0)
    for i in range(MAX_STATEMENTS * 3):
        m.ran("write", f"INSERT {i}", 0.001 + i * 1e-9)
    assert len(m._by_sql) <= MAX_STATEMENTS
    top = m.slow(threshold_ms=0, limit=2)
    assert top[0]["sql"] == "the slow one" and top[0]["max_ms"] == 2000.0
    assert top[1]["sql"] == f"INSERT {MAX_STATEMENTS * 3 - 1}"   # the newest fast one stays


# -- the app layer's caches, read from its state ---------------------------------------
async def test_query_cache_and_live_figures_are_read_from_the_app_state(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)

    class Cache:
        hits, misses = 3, 1

        def __len__(self) -> int:
            return 2

    class Live:
        runs = 7

        def __len__(self) -> int:
            return 4

    m = Metrics().snapshot(db, SimpleNamespace(cache=Cache(), live=Live()))
    assert m["query_cache"] == {"hits": 3, "misses": 1, "hit_rate": 0.75, "entries": 2}
    assert (m["live_queries"], m["live_runs"]) == (4, 7)
    await db.close()


async def test_query_cache_hits_after_repeated_reads_and_live_runs_are_counted(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await _open(db_name, backend_kind)
    await db.execute("CREATE TABLE t(x)")
    assert await db.cached("SELECT count(*) AS n FROM t", ttl=60) == [{"n": 0}]
    reads = db.metrics()["statements"]["read"]
    assert reads == 1  # the miss ran its query; the app's schema reads are not counted
    for _ in range(3):
        assert await db.cached("SELECT count(*) AS n FROM t", ttl=60) == [{"n": 0}]
    m = db.metrics()
    assert m["query_cache"] == {"hits": 3, "misses": 1, "hit_rate": 0.75, "entries": 1}
    assert m["statements"]["read"] == reads              # the hits ran none
    seen: list[list[dict]] = []
    off = await db.live("SELECT count(*) AS n FROM t", [], seen.append)
    assert (db.metrics()["live_queries"], db.metrics()["live_runs"]) == (1, 1)
    assert db.metrics()["statements"]["read"] == reads + 1  # its first run
    await db.execute("INSERT INTO t VALUES (1)")
    for _ in range(400):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.005)
    assert seen == [[{"n": 0}], [{"n": 1}]]
    assert db.metrics()["live_runs"] == 2
    off()
    assert db.metrics()["live_queries"] == 0
    await db.close()


# -- tabs ---------------------------------------------------------------------------
@needs_tabs
async def test_a_follower_counts_the_writes_it_forwards_to_the_leader() -> None:
    b = Browser()
    try:
        a, f = await b.leader_and_follower()
        await a.execute("CREATE TABLE t(x)")
        await f.execute("INSERT INTO t VALUES (1)")                       # forwarded 1
        await f.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])     # forwarded 2
        await f.batch([("INSERT INTO t VALUES (4)", ()), ("DELETE FROM t WHERE x = 1", ())])  # 3
        await f.executescript("INSERT INTO t VALUES (5); INSERT INTO t VALUES (6)")  # 4
        assert await f.query("SELECT count(*) AS n FROM t") == [{"n": 5}]   # a read, here
        mf, ma = f.metrics(), a.metrics()
        assert mf["forwarded_writes"] == 4 and ma["forwarded_writes"] == 0
        assert mf["statements"] == {"read": 1, "write": 4, "transaction": 0}
        assert ma["statements"] == {"read": 0, "write": 1, "transaction": 0}
        assert mf["sync"] is None
        await asyncio.sleep(0.01)  # (the looks metrics() started, for "tabs")
        assert f.metrics()["tabs"] == a.metrics()["tabs"] == 2
    finally:
        await b.close()


@needs_tabs
async def test_every_tab_counts_the_tabs_open_on_the_database() -> None:
    b = Browser()
    try:
        a, f = await b.leader_and_follower()
        g = await b.open("g")
        for tab in (a, f, g):
            tab.metrics()  # a look in the background
        await asyncio.sleep(0.01)
        assert [tab.metrics()["tabs"] for tab in (a, f, g)] == [3, 3, 3]
        await g.close()
        f.metrics()
        await asyncio.sleep(0.01)
        assert f.metrics()["tabs"] == 2
    finally:
        await b.close()


@needs_tabs
async def test_a_follower_counts_its_transactions_and_their_statements() -> None:
    b = Browser()
    try:
        a, f = await b.leader_and_follower()
        await a.execute("CREATE TABLE t(x)")
        async with f.transaction() as tx:                                 # transaction 1
            await tx.execute("INSERT INTO t VALUES (1)")                  # write 1
            await f.execute("INSERT INTO t VALUES (2)")     # write 2 (joins, counted once)
            await tx.query("SELECT count(*) FROM t")                      # read 1
        tx = await f.begin()                                              # transaction 2
        await tx.execute("INSERT INTO t VALUES (3)")                      # write 3
        await tx.commit()
        assert f.metrics()["statements"] == {"read": 1, "write": 3, "transaction": 2}
        assert f.metrics()["errors"] == 0
    finally:
        await b.close()


# -- sync lag, histogram --------------------------------------------------------------
def test_sync_lag_is_measured_in_the_primarys_versions() -> None:
    assert sync_lag(None) is None
    caught_up = {"remote_version": 7, "pulled_version": 7, "local_version": 12,
                 "last_pull": 0.0, "online": True, "waiting": 0}
    assert sync_lag(caught_up) == {"lag_versions": 0, "lag_seconds": 0.0, "online": True,
                                   "waiting": 0}
    behind = sync_lag({**caught_up, "remote_version": 9, "waiting": 2, "online": False})
    assert behind is not None and behind["lag_versions"] == 2 and behind["waiting"] == 2
    assert behind["lag_seconds"] is not None and behind["lag_seconds"] > 0
    assert behind["online"] is False
    unknown = sync_lag({**caught_up, "remote_version": None, "online": None})
    assert unknown == {"lag_versions": None, "lag_seconds": None, "online": None, "waiting": 0}


def test_histogram_percentiles_are_within_the_stated_error() -> None:
    rng = random.Random(14)
    values = [rng.lognormvariate(-7, 1.5) for _ in range(20000)]
    h = LogHistogram()
    for v in values:
        h.record(v)
    values.sort()
    for q, estimate in zip((0.5, 0.95, 0.99), h.percentiles(0.5, 0.95, 0.99)):
        true = values[math.ceil(q * len(values)) - 1]
        assert estimate is not None and abs(estimate - true) <= RELATIVE_ERROR * true
    s = h.summary()
    assert s["count"] == len(values) and s["max"] == values[-1] * 1000.0
    assert LogHistogram().summary()["p50"] is None
