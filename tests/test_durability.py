"""Durability as promised: strict writes wait for their flush, reads never do; a
failed background flush is recorded and reported, never lost; db.connect() hands
out connections that behave as sqlite3.connect's."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

import datasync
from helpers import AsyncWithHistory


async def test_strict_reads_never_flush_nor_fail_because_of_a_flush(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind, durability="strict")
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    flushes = db.stats()["flushes"]
    for _ in range(200):
        assert (await db.query("SELECT x FROM t")) == [{"x": 1}]
    assert db.stats()["flushes"] == flushes  # not one flush for 200 reads

    def full(stage: str, detail: int) -> None:
        raise datasync.StorageFullError("injected: disk full")

    db._store.backend.fault_hook = full
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 1}]  # a read works
    with pytest.raises(datasync.StorageFullError):
        await db.execute("INSERT INTO t VALUES (2)")  # a strict write reports it
    db._store.backend.fault_hook = None
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 2}]  # kept
    await db.sync()
    await db.close()


async def test_a_failed_background_flush_is_recorded_logged_and_retried(db_name, backend_kind, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="datasync"):
        db = await datasync.open(db_name, backend=backend_kind)
        await db.execute("CREATE TABLE t(x)")
        await db.sync()
        failing = {"on": True}

        def hook(stage: str, detail: int) -> None:
            if failing["on"]:
                raise datasync.StorageFullError("injected: disk full")

        db._store.backend.fault_hook = hook
        conn = db.connect(isolation_level=None)
        conn.execute("INSERT INTO t VALUES ('through connect')")  # flushed in background
        await db.execute("INSERT INTO t VALUES ('through the database')")
        with pytest.raises(datasync.StorageFullError):
            await db.sync()  # still failing: sync() says so
        stats = db.stats()
        assert stats["flush_failures"] >= 1 and "injected" in stats["last_flush_error"]
        assert stats["recent_flush_errors"] and stats["dirty_blocks"] > 0
        failing["on"] = False
        version = await db.sync()
        stats = db.stats()
        assert stats["last_flush_error"] is None and stats["dirty_blocks"] == 0
        assert stats["flush_failures"] >= 1 and stats["recent_flush_errors"]  # kept
        conn.close()
        await db.close()
        db = await datasync.open(db_name, backend=backend_kind)
        assert db.version == version
        assert len(await db.query("SELECT x FROM t")) == 2
        await db.close()
    assert any("injected: disk full" in r.getMessage() for r in caplog.records)


async def test_connect_behaves_as_sqlite3_connect(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    conn = db.connect()
    assert conn.isolation_level == ""  # sqlite3's default
    commits = db.stats()["commits"]
    with conn:  # one transaction for the whole batch, as with sqlite3
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5000)])
    assert db.stats()["commits"] == commits + 1
    conn.execute("INSERT INTO t VALUES (-1)")
    conn.rollback()
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 5000}]
    auto = db.connect(isolation_level=None)
    auto.execute("INSERT INTO t VALUES (-2)")  # autocommit when asked for
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 5001}]
    await db.close()


async def test_a_read_through_the_database_does_not_wait_for_another_connections_flush(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A strict database: a commit made by a plain connection is flushed by it; the
    database's next read does not flush again."""
    db = await datasync.open(str(tmp_path / "s.dsdb"), durability="strict")
    await db.execute("CREATE TABLE t(x)")
    conn = db.connect()
    with conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert db.stats()["dirty_blocks"] == 0  # strict: durable at commit
    flushes = db.stats()["flushes"]
    await db.query("SELECT * FROM t")
    assert db.stats()["flushes"] == flushes
    with pytest.raises(sqlite3.ProgrammingError):
        conn.close() or conn.execute("SELECT 1")
    await db.close()


async def test_a_strict_read_never_waits_for_another_tasks_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(str(tmp_path / "r.dsdb"), durability="strict")
    await db.execute("CREATE TABLE t(x)")
    started = asyncio.Event()

    async def writer() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (1)")
            started.set()
            await asyncio.sleep(0.05)

    def gone(stage: str, detail: int) -> None:
        raise datasync.BackendError("injected: disk gone")

    task = asyncio.ensure_future(writer())
    await started.wait()
    db._store.backend.fault_hook = gone
    assert await db.query("SELECT count(*) AS n FROM t") in ([{"n": 0}], [{"n": 1}])
    with pytest.raises(datasync.BackendError):
        await task  # the writer's own commit reports it
    db._store.backend.fault_hook = None
    await db.close()


class _SlowWriteBackend(AsyncWithHistory):
    """Writes suspend and then commit whatever the caller does, as an IndexedDB
    transaction does once its requests are issued."""

    def __init__(self, name: str) -> None:
        super().__init__(datasync.backends.MemoryBackend(name))

    async def write(self, flush):  # type: ignore[no-untyped-def]
        async def commit() -> None:
            await asyncio.sleep(0.05)
            await self.inner.write(flush)

        await asyncio.shield(asyncio.ensure_future(commit()))


async def test_a_cancelled_sync_neither_loses_the_flush_nor_leaves_the_store_behind() -> None:
    name = "cancelled-sync"
    db = await datasync.open(name, backend=_SlowWriteBackend(name), durability="relaxed")
    await db.execute("CREATE TABLE t(x)")
    await db.sync()
    await db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(db.sync(), 0.01)  # cancelled mid-write
    await db.execute("INSERT INTO t VALUES (2)")
    version = await db.sync()  # was: BackendError "another writer flushed first"
    assert version == datasync.backends.memory._STORES[name].meta.version
    await db.close()
    db = await datasync.open(name, backend=_SlowWriteBackend(name))
    assert (await db.execute("SELECT x FROM t ORDER BY x")).rows == [(1,), (2,)]
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)


class _FailingWriteBackend(AsyncWithHistory):
    """Writes fail while ``failing`` is set (a disk that went away)."""

    def __init__(self, name: str) -> None:
        super().__init__(datasync.backends.MemoryBackend(name))
        self.failing = False

    async def write(self, flush):  # type: ignore[no-untyped-def]
        if self.failing:
            raise datasync.BackendError("the disk went away")
        await self.inner.write(flush)


async def _in_flush_backoff(name: str) -> tuple[Any, _FailingWriteBackend]:
    """A database whose INSERT of 1 into ``t`` is committed and not durable: its
    flush failed once and the flusher backs off (the backend still fails)."""
    backend = _FailingWriteBackend(name)
    db = await datasync.open(name, backend=backend)
    await db.execute("CREATE TABLE t(x)")
    await db.sync()
    backend.failing = True
    await db.execute("INSERT INTO t VALUES (1)")
    while not db.stats()["flush_failures"]:
        await asyncio.sleep(0.001)
    return db, backend


async def test_a_wait_for_durability_after_the_flusher_stopped_raises_instead_of_hanging() -> None:
    """A sync() that starts waiting while the flusher backs off from a failed flush,
    and the database stops for good before the flusher looks again (a page that
    dies): the flusher's last act answers it with DatabaseClosedError; a sync()
    after that raises at once. Neither hangs."""
    name = "flusher-gone"
    db, backend = await _in_flush_backoff(name)
    waiting = asyncio.ensure_future(db.sync())
    await asyncio.sleep(0)  # sync() waits on the flusher, which has not looked yet
    db._closed = True  # no close(), no final flush
    with pytest.raises(datasync.DatabaseClosedError, match="check whether the commit is there"):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(datasync.DatabaseClosedError):
        await asyncio.wait_for(db._durable_through(db._store.commit_seq), 5)
    db._closed, backend.failing = False, False
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)


async def test_a_wait_for_commits_the_store_dropped_fails_instead_of_reporting_them_durable() -> None:
    """A deposed leader tab's store drops its unflushed commits; a sync() waiting
    for them raises DeposedLeaderError instead of returning a version they never
    reached."""
    name = "dropped-while-waiting"
    db, backend = await _in_flush_backoff(name)
    waiting = asyncio.ensure_future(db.sync())
    await asyncio.sleep(0)
    await db._store.discard_unflushed()  # what stepping down does
    backend.failing = False
    with pytest.raises(datasync.DeposedLeaderError, match="not stored"):
        await asyncio.wait_for(waiting, 5)
    assert (await db.execute("SELECT count(*) FROM t")).rows == [(0,)]
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)


async def test_a_sync_waiting_when_the_database_closes_gets_the_version_close_flushed() -> None:
    """sync() registered while the flusher backs off, then close(): close() flushes
    and cancels the flusher, so close() itself must answer the wait (it hung)."""
    name = "close-in-backoff"
    db, backend = await _in_flush_backoff(name)
    backend.failing = False
    waiting = asyncio.ensure_future(db.sync())
    await asyncio.sleep(0)  # registered; the flusher has not looked again
    await db.close()
    version = await asyncio.wait_for(waiting, 5)
    assert version == datasync.backends.memory._STORES[name].meta.version
    datasync.backends.memory._STORES.pop(name, None)


async def test_a_commit_stored_before_the_store_dropped_the_rest_is_reported_durable() -> None:
    """A flush in flight lands, then the store steps down (discard_unflushed): the
    wait for the commit that flush stored returns its version, not "not stored"."""
    name = "stored-then-dropped"
    db = await datasync.open(name, backend=_SlowWriteBackend(name))
    await db.execute("CREATE TABLE t(x)")
    await db.sync()
    await db.execute("INSERT INTO t VALUES (1)")
    waiting = asyncio.ensure_future(db.sync())  # the flusher starts the slow write
    await asyncio.sleep(0.01)
    dropping = asyncio.ensure_future(db._store.discard_unflushed())  # waits for it
    version = await asyncio.wait_for(waiting, 5)
    await dropping
    assert version == datasync.backends.memory._STORES[name].meta.version
    assert (await db.execute("SELECT count(*) FROM t")).rows == [(1,)]
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)
