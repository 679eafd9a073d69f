"""The async Database API, over every backend."""
from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

import datasync
from helpers import native_only
from datasync.backends import MemoryBackend
from datasync.backends.sqlitefile import SqliteFileBackend
from datasync.format import FORMAT_VERSION, Meta


async def test_execute_query_and_reopen_return_everything(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
    res = await db.execute("INSERT INTO users(name, data) VALUES (?, ?)", ("ada", b"\x00\xff"))
    assert res.rowcount == 1 and res.lastrowid == 1
    await db.executemany(
        "INSERT INTO users(name) VALUES (?)", [(f"u{i}",) for i in range(500)]
    )
    res = await db.execute("SELECT id, name FROM users WHERE id <= ? ORDER BY id", (2,))
    assert res.columns == ["id", "name"] and res.rows == [(1, "ada"), (2, "u0")]
    assert await db.query("SELECT data FROM users WHERE id = 1") == [{"data": b"\x00\xff"}]
    await db.close()
    db = await datasync.open(db_name, backend=backend_kind)
    assert await db.query("SELECT count(*) AS n FROM users") == [{"n": 501}]
    assert await db.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    await db.close()


async def test_transaction_rolls_back_on_exception_and_commits_otherwise(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (1)")
        await db.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (3)")
            1 / 0
    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (4)")
        with pytest.raises(KeyError):
            async with db.transaction():  # nested: a savepoint
                await db.execute("INSERT INTO t VALUES (5)")
                raise KeyError
    assert [r["x"] for r in await db.query("SELECT x FROM t ORDER BY x")] == [1, 2, 4]
    await db.close()


async def test_executemany_is_atomic(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x UNIQUE)")
    with pytest.raises(sqlite3.IntegrityError):
        await db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (1,)])
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await db.close()


async def test_other_tasks_wait_for_an_open_transaction(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    order: list[str] = []

    async def long_tx() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES ('tx')")
            order.append("tx-inside")
            await asyncio.sleep(0.05)
            order.append("tx-end")

    async def other() -> None:
        await asyncio.sleep(0.01)
        order.append("other-start")
        await db.execute("INSERT INTO t VALUES ('other')")
        order.append("other-done")

    await asyncio.gather(long_tx(), other())
    assert order == ["tx-inside", "other-start", "tx-end", "other-done"]
    await db.close()


@native_only  # in Pyodide the busy COMMIT never returns (the page hangs); never ran there
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


async def test_strict_durability_flushes_every_awaited_write(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind, durability="strict")
    await db.execute("CREATE TABLE t(x)")
    for i in range(5):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
        assert not db._store.has_unflushed
    assert db.stats()["flushes"] == 6 and db.version == 6
    await db.close()


async def test_relaxed_durability_batches_commits_into_fewer_flushes(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    await asyncio.gather(*(db.execute("INSERT INTO t VALUES (?)", (i,)) for i in range(50)))
    version = await db.sync()
    stats = db.stats()
    assert stats["commits"] == 51
    assert 1 <= stats["flushes"] < 10 and version == stats["version"]
    assert stats["dirty_blocks"] == 0
    await db.close()


async def test_sync_returns_the_durable_version(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind, flush_interval=60)
    await db.execute("CREATE TABLE t(x)")
    assert db._store.has_unflushed
    v = await db.sync()
    assert v == db.version >= 1 and not db._store.has_unflushed
    assert await db.sync() == v  # nothing new: same version
    await db.close()


async def test_plain_connection_shares_the_store(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    conn = db.connect()  # as sqlite3.connect: an implicit transaction until commit()
    conn.execute("INSERT INTO t VALUES ('from sync code')")
    assert conn.in_transaction
    conn.commit()
    assert await db.query("SELECT x FROM t") == [{"x": "from sync code"}]
    await db.execute("INSERT INTO t VALUES ('from async')")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    await db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed with the database
    db = await datasync.open(db_name, backend=backend_kind)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 2}]
    await db.close()


async def test_stats_report_the_documented_counters(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    await db.sync()
    s = db.stats()
    for key in ("version", "blocks", "dirty_blocks", "cache_hits", "cache_misses",
                "flushes", "bytes_flushed"):
        assert key in s
    assert s["blocks"] == 2 and s["bytes_flushed"] >= 8192
    await db.close()


async def test_export_gives_a_standard_sqlite_file_and_import_replaces_atomically(
    db_name, backend_kind, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    image = await db.export()
    path = tmp_path / "out.sqlite"
    path.write_bytes(image)
    plain = sqlite3.connect(path)
    assert plain.execute("SELECT count(*), sum(x) FROM t").fetchone() == (1000, 499500)
    plain.execute("UPDATE t SET x = -x")
    plain.commit()
    plain.close()
    await db.execute("DELETE FROM t")
    await db.import_(path.read_bytes())
    assert await db.query("SELECT sum(x) AS s FROM t") == [{"s": -499500}]
    with pytest.raises(datasync.NotASQLiteImageError):
        await db.import_(b"not a database at all" * 10)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 1000}]
    await db.close()


async def test_import_accepts_a_wal_mode_database(db_name, backend_kind, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = sqlite3.connect(tmp_path / "wal.sqlite")
    src.execute("PRAGMA journal_mode=WAL")
    src.execute("CREATE TABLE t(x)")
    src.execute("INSERT INTO t VALUES (7)")
    src.commit()
    image = src.serialize()
    src.close()

    db = await datasync.open(db_name, backend=backend_kind)
    await db.import_(image)
    assert await db.query("SELECT x FROM t") == [{"x": 7}]
    await db.close()


async def test_invalid_options_raise_named_errors() -> None:
    with pytest.raises(datasync.InvalidOptionError, match="power of two"):
        await datasync.open("x", backend="memory", block_size=1000)
    with pytest.raises(datasync.InvalidOptionError, match="durability"):
        await datasync.open("x", backend="memory", durability="sometimes")
    with pytest.raises(datasync.InvalidOptionError, match="backend"):
        await datasync.open("x", backend="floppy")


@native_only
async def test_a_path_that_cannot_be_created_raises_store_create_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(datasync.StoreCreateError, match="does not exist"):
        await datasync.open(str(tmp_path / "missing-dir" / "a.dsdb"))
    assert not (tmp_path / "missing-dir").exists()


async def test_a_store_of_another_format_is_refused_and_left_untouched(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "future.dsdb")
    db = await datasync.open(path, backend="sqlitefile")
    await db.execute("CREATE TABLE t(x)")
    await db.close()
    raw = sqlite3.connect(path)
    meta = Meta.from_json(raw.execute("SELECT value FROM meta").fetchone()[0])
    future = meta.to_json().replace(
        f'"format_version": {FORMAT_VERSION}', f'"format_version": {FORMAT_VERSION + 1}'
    )
    raw.execute("UPDATE meta SET value = ?", (future,))
    raw.commit()
    before = raw.execute("SELECT * FROM blocks ORDER BY idx").fetchall()
    raw.close()
    with pytest.raises(datasync.FormatVersionError, match="newer datasync"):
        await datasync.open(path, backend="sqlitefile")
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT * FROM blocks ORDER BY idx").fetchall() == before
    assert raw.execute("SELECT value FROM meta").fetchone()[0] == future
    raw.close()


async def test_a_plain_sqlite_file_is_not_mistaken_for_a_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plain.sqlite"
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE t(x)")
    plain.commit()
    plain.close()
    with pytest.raises(datasync.NotADatasyncStoreError, match="python -m datasync import"):
        await datasync.open(str(path), backend="sqlitefile")
    (tmp_path / "junk.dsdb").write_bytes(b"hello world" * 100)
    with pytest.raises(datasync.NotADatasyncStoreError):
        await datasync.open(str(tmp_path / "junk.dsdb"), backend="sqlitefile")
    assert (tmp_path / "junk.dsdb").read_bytes() == b"hello world" * 100


async def test_a_corrupt_block_raises_corrupt_block_error_from_the_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "c.dsdb")

    db = await datasync.open(path, backend="sqlitefile")
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (?)", [("y" * 900,)] * 40)
    await db.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE blocks SET checksum = checksum + 1 WHERE idx = 4")
    raw.commit()
    raw.close()
    db = await datasync.open(path, backend="sqlitefile", cache_bytes=0)
    with pytest.raises(datasync.CorruptBlockError, match="block 4 "):
        await db.query("SELECT sum(length(x)) FROM t")
    await db.close()


async def test_using_a_closed_database_raises_database_closed_error(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await db.close()
    await db.close()  # idempotent
    with pytest.raises(datasync.DatabaseClosedError, match="open it again"):
        await db.execute("SELECT 1")


@native_only
async def test_a_second_process_cannot_open_a_store_in_use(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    import textwrap

    path = str(tmp_path / "busy.dsdb")

    db = await datasync.open(path, backend="sqlitefile")
    await db.execute("CREATE TABLE t(x)")
    await db.sync()
    code = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
        import datasync
        try:
            asyncio.run(datasync.open({path!r}))
        except datasync.StoreBusyError as e:
            print("busy:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "busy:" in out.stdout and "another process" in out.stdout, out.stderr
    await db.close()


async def test_close_keeps_the_database_open_when_the_final_flush_fails(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(str(tmp_path / "f.dsdb"), backend="sqlitefile", flush_interval=60)
    await db.execute("CREATE TABLE t(x)")

    def full(stage: str, detail: int) -> None:
        raise datasync.StorageFullError("injected")

    db._store.backend.fault_hook = full
    with pytest.raises(datasync.StorageFullError):
        await db.close()
    assert not db.closed
    db._store.backend.fault_hook = None
    await db.close()
    db = await datasync.open(str(tmp_path / "f.dsdb"), backend="sqlitefile")
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await db.close()


async def test_store_metadata_records_the_flushed_size_and_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "s.dsdb")
    db = await datasync.open(path, backend="sqlitefile")
    await db.execute("CREATE TABLE t(x)")
    await db.close()
    backend = SqliteFileBackend(path)
    meta = await backend.open(Meta.new(), create=False)
    await backend.close()
    assert meta.version >= 1 and meta.file_size == 8192


class _SlowOpenBackend(MemoryBackend):
    """Opens as IndexedDB does: the event loop runs other tasks meanwhile."""

    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        await asyncio.sleep(0.01)
        return await super().open(initial, create=create)


async def test_two_opens_of_one_store_at_once_share_it(db_name) -> None:  # type: ignore[no-untyped-def]
    first, second = await asyncio.gather(
        datasync.open(db_name, backend=_SlowOpenBackend(db_name)),
        datasync.open(db_name, backend=_SlowOpenBackend(db_name)))
    await first.execute("CREATE TABLE t(x)")
    await first.execute("INSERT INTO t VALUES (1)")
    assert await second.query("SELECT x FROM t") == [{"x": 1}]
    await first.close()
    assert await second.query("SELECT x FROM t") == [{"x": 1}]  # still open
    await second.close()
