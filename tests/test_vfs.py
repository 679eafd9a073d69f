"""The VFS through the standard sqlite3 module: files, locks, errors, exit."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

import datasync
from helpers import native_only, run
from datasync import vfs
from datasync.blockstore import BlockStore
from datasync.errors import CorruptBlockError
from datasync.vfs.files import EXCLUSIVE, NONE, PENDING, RESERVED, SHARED, LockManager, StoreFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def served(make_backend):  # type: ignore[no-untyped-def]
    """A store attached to the VFS; yields its name."""
    vfs.register()
    backend = make_backend()
    store = run(BlockStore.open(backend))
    vfs.attach(backend.key, store)
    yield backend.key
    vfs.detach(backend.key)
    run(store.close())


def connect(name: str, **kw) -> sqlite3.Connection:  # type: ignore[no-untyped-def]
    return sqlite3.connect(vfs.uri(name), uri=True, **kw)


def test_sqlite3_connect_by_uri_reads_and_writes(served: str) -> None:
    conn = connect(served)
    conn.execute("CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT)")
    with conn:
        conn.executemany("INSERT INTO t(y) VALUES (?)", [("v" * 500,)] * 2000)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    again = connect(served)
    assert again.execute("SELECT count(*), sum(length(y)) FROM t").fetchone() == (2000, 1_000_000)
    again.close()


@native_only
def test_journals_and_temp_files_never_touch_the_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    vfs.register()
    path = str(tmp_path / "raw.dsdb")
    conn = sqlite3.connect(vfs.uri(path), uri=True)
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5000)])
    conn.execute("CREATE TEMP TABLE scratch AS SELECT * FROM t ORDER BY random()")
    assert sorted(os.listdir(tmp_path)) == ["raw.dsdb", "raw.dsdb-wal"]  # the store only
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()


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


def test_wal_mode_is_refused_and_the_database_keeps_working(served: str) -> None:
    conn = connect(served)
    conn.execute("CREATE TABLE t(x)")
    with pytest.raises(sqlite3.OperationalError, match="journal_mode=WAL is not supported"):
        conn.execute("PRAGMA journal_mode=WAL")  # refused out loud, as README says
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    conn.close()


def test_exclusive_locking_mode_is_refused_clearly_and_other_pragmas_still_run(served: str) -> None:
    conn = connect(served, isolation_level=None)
    conn.execute("CREATE TABLE t(x)")
    for statement in ("PRAGMA locking_mode=EXCLUSIVE", "pragma main.LOCKING_MODE = 'exclusive'"):
        with pytest.raises(sqlite3.OperationalError, match="locking_mode=EXCLUSIVE is not supported"):
            conn.execute(statement)
    assert conn.execute("PRAGMA locking_mode").fetchone() == ("normal",)
    assert conn.execute("PRAGMA locking_mode=NORMAL").fetchone() == ("normal",)
    assert conn.execute("PRAGMA user_version=7").fetchall() == []
    conn.execute("INSERT INTO t VALUES (1)")
    # the write lock was dropped, so another connection sees the commit
    other = connect(served)
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert other.execute("PRAGMA user_version").fetchone() == (7,)
    other.close()
    conn.close()


def test_a_second_writer_gets_busy_and_nothing_is_corrupted(served: str) -> None:
    a, b = connect(served, timeout=0), connect(served, timeout=0)
    a.execute("CREATE TABLE t(x)")
    a.commit()
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        b.execute("BEGIN IMMEDIATE")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)  # reads still work
    a.commit()
    b.execute("INSERT INTO t VALUES ('b')")
    b.commit()
    assert a.execute("SELECT x FROM t ORDER BY x").fetchall() == [("a",), ("b",)]
    assert a.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    a.close(), b.close()


@native_only
def test_two_threads_writing_at_once_wait_for_each_other(served: str) -> None:
    setup = connect(served)
    setup.execute("CREATE TABLE t(who TEXT, i INTEGER)")
    setup.commit()
    setup.close()
    errors: list[BaseException] = []

    def writer(who: str) -> None:
        try:
            conn = connect(served, timeout=30)
            for i in range(200):
                with conn:
                    conn.execute("INSERT INTO t VALUES (?, ?)", (who, i))
            conn.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = connect(served)
    assert check.execute("SELECT who, count(*) FROM t GROUP BY who").fetchall() == [
        ("a", 200), ("b", 200)]
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def test_lock_state_machine_follows_sqlite_rules(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = run(BlockStore.open(make_backend()))
    locks = LockManager(store)
    a, b, c = (StoreFile(store, locks) for _ in range(3))
    assert a.lock(SHARED) and b.lock(SHARED)
    assert a.lock(RESERVED)
    assert not b.lock(RESERVED)  # one writer
    assert b.check_reserved()
    assert not a.lock(EXCLUSIVE) and a.level == PENDING  # b still reads
    assert not c.lock(SHARED)  # PENDING keeps new readers out
    b.unlock(NONE)
    assert a.lock(EXCLUSIVE) and a.level == EXCLUSIVE
    a.unlock(SHARED)
    assert not a.check_reserved()
    assert c.lock(SHARED) and b.lock(SHARED)
    a.unlock(NONE), b.unlock(NONE), c.unlock(NONE)
    assert locks.shared == 0


def test_releasing_the_write_lock_is_a_commit_point(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = run(BlockStore.open(make_backend()))
    locks = LockManager(store)
    f = StoreFile(store, locks)
    f.lock(SHARED), f.lock(RESERVED), f.lock(EXCLUSIVE)
    f.write(0, b"x" * 4096)
    assert store.stats()["commits"] == 0
    f.unlock(SHARED)
    assert store.stats()["commits"] == 1 and store.has_unflushed


@native_only
def test_a_corrupt_block_surfaces_as_an_io_error_with_the_named_cause(tmp_path) -> None:  # type: ignore[no-untyped-def]
    vfs.register()
    path = str(tmp_path / "c.dsdb")
    conn = sqlite3.connect(vfs.uri(path), uri=True)
    conn.execute("CREATE TABLE t(x)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?)", [("z" * 1000,)] * 50)
    conn.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE blocks SET data = zeroblob(4096) WHERE idx = 3")
    raw.commit()
    raw.close()
    conn = sqlite3.connect(vfs.uri(path), uri=True)
    vfs.take_last_error()
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT count(*), sum(length(x)) FROM t").fetchall()
    err = vfs.take_last_error()
    assert isinstance(err, CorruptBlockError) and err.index == 3
    conn.close()


@native_only
def test_process_using_the_vfs_exits_cleanly_even_with_connections_left_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = textwrap.dedent(
        f"""
        import sqlite3, sys
        sys.path.insert(0, {ROOT!r})
        from datasync import vfs
        vfs.register()
        conn = sqlite3.connect(vfs.uri({str(tmp_path / 'exit.dsdb')!r}), uri=True)
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES (42)")
        conn.commit()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (43)")  # left uncommitted and open
        print("done")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    check = sqlite3.connect(vfs.uri(str(tmp_path / "exit.dsdb")), uri=True)
    assert check.execute("SELECT x FROM t").fetchall() == [(42,)]
    check.close()


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
