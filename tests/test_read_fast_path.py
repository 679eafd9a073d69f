"""A plain connection between autocommit reads still sees every change made elsewhere.

Each autocommit SELECT takes SHARED and drops it, and SQLite checks the file's
change counter (offset 24) at the next SHARED to decide whether its page cache
is still good. The VFS answers the per-statement callbacks on a short path
(``LockManager.unlock`` from SHARED, ``DatasyncVFS.access`` without ordinary
files open): these tests change the store in every way a reader must notice,
between two reads of one warm connection, and check the second read sees it.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3

import datasync
from datasync.vfs import callbacks
from tabs.harness import Browser


def _warm(conn: sqlite3.Connection, n: int = 5) -> list[tuple[int, str]]:
    """Read the table a few times (the page cache is now warm), return its rows."""
    rows: list[tuple[int, str]] = []
    for _ in range(n):
        rows = [tuple(r) for r in conn.execute("SELECT id, v FROM t ORDER BY id")]
    return rows


async def _table(db: datasync.Database) -> None:
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    await db.execute("INSERT INTO t VALUES (1, 'one')")


async def test_a_write_through_another_connection_is_seen(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await _table(db)
    reader = db.connect(isolation_level=None)
    writer = db.connect(isolation_level=None)
    assert _warm(reader) == [(1, "one")]
    for i in range(2, 6):  # several commits in a row, each seen by the next read
        writer.execute("INSERT INTO t VALUES (?, ?)", (i, str(i)))
        assert _warm(reader, 1)[-1] == (i, str(i))
    writer.execute("UPDATE t SET v = 'uno' WHERE id = 1")  # same size, same page count
    assert _warm(reader, 1)[0] == (1, "uno")
    reader.close()
    writer.close()
    await db.close()


async def test_a_write_through_the_database_api_is_seen(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await _table(db)
    reader = db.connect(isolation_level=None)
    assert _warm(reader) == [(1, "one")]
    await db.execute("UPDATE t SET v = 'uno' WHERE id = 1")
    assert _warm(reader, 1) == [(1, "uno")]
    async with db.transaction():
        await db.execute("DELETE FROM t")
        await db.execute("INSERT INTO t VALUES (7, 'seven')")
    assert _warm(reader, 1) == [(7, "seven")]
    reader.close()
    await db.close()


async def test_a_restore_is_seen(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=4)
    await _table(db)
    keep = await db.sync()
    await db.execute("UPDATE t SET v = 'changed' WHERE id = 1")
    await db.sync()
    reader = db.connect(isolation_level=None)
    assert _warm(reader) == [(1, "changed")]
    await db.restore(keep)
    assert _warm(reader, 1) == [(1, "one")]
    reader.close()
    await db.close()


async def test_a_rekey_keeps_reads_right(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, encryption_key=os.urandom(32))
    await _table(db)
    reader = db.connect(isolation_level=None)
    assert _warm(reader) == [(1, "one")]
    await db.rekey(os.urandom(32))
    assert _warm(reader, 1) == [(1, "one")]
    await db.execute("UPDATE t SET v = 'after' WHERE id = 1")
    assert _warm(reader, 1) == [(1, "after")]
    reader.close()
    await db.close()


async def test_a_version_pulled_from_the_leader_tab_is_seen() -> None:
    b = Browser(max_delay=0)
    leader, follower = await b.leader_and_follower()
    await leader.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    await leader.execute("INSERT INTO t VALUES (1, 'one')")
    for _ in range(500):
        if await follower.query("SELECT count(*) AS n FROM sqlite_master") == [{"n": 1}]:
            break
        await asyncio.sleep(0.002)
    reader = follower.connect()
    for _ in range(500):
        if _warm(reader, 1) == [(1, "one")]:
            break
        await asyncio.sleep(0.002)
    assert _warm(reader) == [(1, "one")]
    await leader.execute("UPDATE t SET v = 'pulled' WHERE id = 1")
    for _ in range(500):
        if _warm(reader, 1) == [(1, "pulled")]:
            break
        await asyncio.sleep(0.002)
    assert _warm(reader, 1) == [(1, "pulled")]
    reader.close()
    await b.close()


async def test_an_ordinary_file_attached_keeps_its_journal_on_disk(
        backend_kind: str, db_name: str, tmp_path: object) -> None:
    """With an ordinary database open, its journal's existence comes from SQLite's
    own VFS (the short path applies only when no ordinary file is open)."""
    db = await datasync.open(db_name, backend=backend_kind)
    await _table(db)
    conn = db.connect(isolation_level=None)
    plain = os.path.join(str(tmp_path), "plain.db")
    conn.execute("ATTACH ? AS p", (plain,))
    conn.execute("PRAGMA p.journal_mode=PERSIST")  # the journal file stays on disk
    conn.execute("CREATE TABLE p.u(x)")
    conn.execute("INSERT INTO p.u VALUES (1)")
    assert os.path.exists(plain + "-journal")
    out = (callbacks.ctypes.c_int * 1)()
    assert callbacks.VFS.access((plain + "-journal").encode(), 0, out) == 0 and out[0] == 1
    assert callbacks.VFS.access((plain + "-wal").encode(), 0, out) == 0 and out[0] == 0
    assert _warm(conn, 1) == [(1, "one")]
    assert conn.execute("SELECT x FROM p.u").fetchall() == [(1,)]
    conn.execute("DETACH p")
    conn.close()
    await db.close()
