"""Regression tests for defects an independent review found (each fixed here)."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import datasync
from datasync import vfs
from datasync.backends.sqlitefile import SqliteFileBackend
from datasync.blockstore import BlockStore
from helpers import AsyncWithHistory, native_only, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@native_only
@pytest.mark.parametrize("sql", ["VACUUM", "SELECT x FROM t ORDER BY x", "CREATE INDEX i ON t(x)"])
def test_temp_files_open_so_big_sorts_indexes_and_vacuum_work(tmp_path, sql: str) -> None:  # type: ignore[no-untyped-def]
    vfs.register()
    conn = sqlite3.connect(vfs.uri(str(tmp_path / "a.dsdb")), uri=True, isolation_level=None)
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA cache_size=5")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(300),) for _ in range(3000)])
    conn.execute("COMMIT")
    conn.execute(sql).fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


@native_only
def test_a_full_disk_is_reported_as_storage_full_and_the_next_flush_succeeds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = BlockStore.open_sync(SqliteFileBackend(tmp_path / "f.dsdb"))
    store.write(0, b"x" * 4096)
    store.commit()
    store.flush_sync()
    conn = store.backend._conn
    conn.execute(f"PRAGMA max_page_count={conn.execute('PRAGMA page_count').fetchone()[0] + 1}")
    for i in range(1, 40):
        store.write(i * 4096, os.urandom(4096))
    store.commit()
    with pytest.raises(datasync.StorageFullError):
        store.flush_sync()
    assert store.has_unflushed
    conn.execute("PRAGMA max_page_count=1073741823")
    version = store.flush_sync()
    data = store.read(0, store.size)
    store.close_sync()
    again = BlockStore.open_sync(SqliteFileBackend(tmp_path / "f.dsdb"))
    assert again.version == version and again.read(0, again.size) == data
    again.close_sync()


async def test_a_failed_commit_rolls_back_instead_of_leaving_the_transaction_open(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    reader = db.connect(timeout=0)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # holds SHARED: COMMIT gets busy
    with pytest.raises(sqlite3.OperationalError):
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (1)")
    assert not db._conn.in_transaction
    reader.execute("COMMIT")
    await db.execute("INSERT INTO t VALUES (2)")
    assert await db.query("SELECT x FROM t") == [{"x": 2}]
    await db.close()


async def test_a_task_created_inside_a_transaction_does_not_join_it(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    child = None
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES ('rolled back')")
            child = asyncio.ensure_future(db.execute("INSERT INTO t VALUES ('child')"))
            await asyncio.sleep(0.01)
            raise RuntimeError("abort the transaction")
    await child
    assert await db.query("SELECT x FROM t") == [{"x": "child"}]
    await db.close()


async def test_close_inside_a_transaction_raises_instead_of_hanging(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    async with db.transaction():
        with pytest.raises(datasync.DatasyncError, match="end the transaction first"):
            await db.close()
    await db.close()


@native_only
def test_committed_data_survives_exit_with_a_plain_connection_left_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "exit.dsdb")
    script = textwrap.dedent(f"""
        import asyncio, sqlite3, sys
        sys.path.insert(0, {ROOT!r})
        import datasync

        async def main():
            db = await datasync.open({path!r}, flush_interval=3600)
            await db.execute("CREATE TABLE t(x)")
            await db.execute("INSERT INTO t VALUES ('committed before exit')")
            global plain
            plain = db.connect()   # left open, database never closed
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    async def check() -> list[dict[str, str]]:
        db = await datasync.open(path)
        rows = await db.query("SELECT x FROM t")
        await db.close()
        return rows

    assert run(check()) == [{"x": "committed before exit"}]


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
