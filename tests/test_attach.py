"""ATTACH on a datasync connection: reads across databases work, one database is
written per transaction (never a commit torn across two stores), and ordinary
files stay ordinary SQLite files."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import datasync
from datasync import vfs

from helpers import native_only

pytestmark = native_only
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def two_stores(tmp_path, keep_other_open: bool = False):  # type: ignore[no-untyped-def]
    """a.dsdb with o.dsdb attached as o; o.dsdb also open through datasync.open (its
    Database returned second) or not (None)."""
    other = await datasync.open(str(tmp_path / "o.dsdb"))
    await other.execute("CREATE TABLE b(v)")
    if not keep_other_open:
        await other.close()
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    await db.execute("CREATE TABLE a(v)")
    await db.execute("ATTACH ? AS o", (str(tmp_path / "o.dsdb"),))
    return db, other if keep_other_open else None


@pytest.mark.parametrize("second", ["store", "plain file", "store opened elsewhere"])
async def test_a_transaction_writing_two_databases_is_refused_and_rolled_back(tmp_path, second: str) -> None:  # type: ignore[no-untyped-def]
    if second == "plain file":
        plain = sqlite3.connect(tmp_path / "o.sqlite")
        plain.execute("CREATE TABLE b(v)")
        plain.close()
        db = await datasync.open(str(tmp_path / "a.dsdb"))
        await db.execute("CREATE TABLE a(v)")
        await db.execute("ATTACH ? AS o", (str(tmp_path / "o.sqlite"),))
        held = None
    else:
        db, held = await two_stores(tmp_path, second == "store opened elsewhere")
    with pytest.raises(datasync.CrossDatabaseWriteError, match="own transaction"):
        async with db.transaction():
            await db.execute("INSERT INTO a VALUES ('a')")
            await db.execute("INSERT INTO o.b VALUES ('b')")
    # Nothing of it remains, and each database is still writable on its own.
    assert not db._conn.in_transaction
    rows = (await db.query("SELECT v FROM a"), await db.query("SELECT v FROM o.b"))
    await db.execute("INSERT INTO a VALUES ('a alone')")
    await db.execute("INSERT INTO o.b VALUES ('b alone')")
    joined = await db.query("SELECT a.v AS x, b.v AS y FROM a, o.b")
    await db.execute("DETACH o")
    await db.close()
    if held is not None:
        await held.close()
    assert joined == [{"x": "a alone", "y": "b alone"}]
    assert rows == ([], [])


def test_a_raw_connection_is_refused_the_same_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    vfs.register()
    for name in ("a", "o"):
        con = sqlite3.connect(vfs.uri(str(tmp_path / f"{name}.dsdb")), uri=True)
        con.execute("CREATE TABLE t(v)")
        con.commit()
        con.close()
    con = sqlite3.connect(vfs.uri(str(tmp_path / "a.dsdb")), uri=True)
    con.execute("ATTACH ? AS o", (str(tmp_path / "o.dsdb"),))
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        con.execute("INSERT INTO o.t VALUES (1)")
    assert not con.in_transaction  # SQLite rolled the whole transaction back
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert isinstance(vfs.take_last_error(), datasync.CrossDatabaseWriteError)
    con.close()


async def test_a_process_exiting_right_after_a_two_store_transaction_keeps_no_half(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The issue's input: relaxed durability, then os._exit(0) at once."""
    child = textwrap.dedent(f"""
        import asyncio, os, sys
        sys.path.insert(0, {ROOT!r})
        import datasync

        async def main():
            db = await datasync.open({str(tmp_path / 'a.dsdb')!r})
            await db.execute("CREATE TABLE a(v)")
            await db.sync()
            await db.execute("ATTACH ? AS o", ({str(tmp_path / 'o.dsdb')!r},))
            await db.execute("CREATE TABLE o.b(v)")
            try:
                async with db.transaction():
                    await db.execute("INSERT INTO a VALUES (1)")
                    await db.execute("INSERT INTO o.b VALUES (1)")
                print("committed", flush=True)
            except datasync.CrossDatabaseWriteError:
                print("refused", flush=True)
            os._exit(0)

        asyncio.run(main())
    """)
    # ATTACH opens an existing store as a store
    await (await datasync.open(str(tmp_path / "o.dsdb"))).close()
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "refused", out.stderr
    a = await datasync.open(str(tmp_path / "a.dsdb"))
    o = await datasync.open(str(tmp_path / "o.dsdb"))
    counts = ((await a.query("SELECT count(*) AS n FROM a"))[0]["n"],
              (await o.query("SELECT count(*) AS n FROM b"))[0]["n"])
    await a.close()
    await o.close()
    assert counts == (0, 0)


async def test_an_attached_ordinary_file_keeps_its_own_journal_and_wal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = str(tmp_path / "wal.sqlite")
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    await db.execute("ATTACH ? AS w", (target,))
    assert (await db.execute("PRAGMA w.journal_mode=WAL")).rows == [("wal",)]
    await db.execute("CREATE TABLE w.t(v)")
    await db.execute("INSERT INTO w.t VALUES ('in wal')")
    assert os.path.exists(target + "-wal")
    await db.execute("DETACH w")
    await db.close()
    plain = sqlite3.connect(target)
    assert plain.execute("SELECT v FROM t").fetchall() == [("in wal",)]
    assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plain.close()


async def test_wal_stays_refused_on_a_datasync_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    with pytest.raises(sqlite3.OperationalError, match="WAL"):
        await db.execute("PRAGMA journal_mode=WAL")
    assert (await db.execute("PRAGMA journal_mode")).rows == [("memory",)]
    await db.close()


@pytest.mark.parametrize("order", [("a", "o.b"), ("o.b", "a")])
@pytest.mark.parametrize("other_vfs", ["unix", "unix-none", "unix-dotfile"])
async def test_a_database_attached_through_another_vfs_is_no_way_around_the_rule(
        tmp_path, order: tuple[str, str], other_vfs: str) -> None:  # type: ignore[no-untyped-def]
    """SQLite opens it with the VFS the URI names, so datasync never sees its
    locks: the commit itself asks SQLite which databases the transaction writes."""
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    await db.execute("CREATE TABLE a(v)")
    await db.execute(f"ATTACH 'file:{tmp_path / 'o.sqlite'}?vfs={other_vfs}' AS o")
    await db.execute("CREATE TABLE o.b(v)")
    with pytest.raises(datasync.CrossDatabaseWriteError):
        async with db.transaction():
            for table in order:
                await db.execute(f"INSERT INTO {table} VALUES (1)")
    counts = ((await db.query("SELECT count(*) AS n FROM a"))[0]["n"],
              (await db.query("SELECT count(*) AS n FROM o.b"))[0]["n"])
    await db.execute("INSERT INTO o.b VALUES (2)")  # one database at a time: fine
    await db.close()
    assert counts == (0, 0)
