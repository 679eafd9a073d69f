"""Point-in-time restore (retain_versions) and online backup."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

import datasync
from datasync.backends import MemoryBackend
from helpers import AsyncOnly, AsyncSentHistory, pause


async def _rows(db: datasync.Database) -> list[tuple[int, str]]:
    return [tuple(r) for r in (await db.execute("SELECT id, v FROM t ORDER BY id")).rows]


async def test_restore_returns_every_retained_version_exactly(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=6)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    snapshots: dict[int, list[tuple[int, str]]] = {}
    for i in range(10):
        if i % 3 == 2:
            await db.execute("DELETE FROM t WHERE id % 2 = 0")
            await db.execute("VACUUM")  # the file shrinks: truncated blocks are kept too
        else:
            await db.executemany("INSERT INTO t(v) VALUES (?)",
                                 [(f"{i}-{k}" * 40,) for k in range(30)])  # grows the file
        snapshots[await db.sync()] = await _rows(db)
    versions = [v["version"] for v in await db.versions()]
    current = versions[-1]
    assert len(versions) == 7 and versions == list(range(current - 6, current + 1))
    restored = None
    for version in versions[:-1]:  # oldest first: each restore moves the window by one
        if version not in snapshots:
            continue  # a version between two of ours (the CREATE TABLE's)
        new = await db.restore(version)
        restored = version
        assert new > current  # a restore is itself a new version
        assert await _rows(db) == snapshots[version]
        assert (await db.execute("PRAGMA integrity_check")).rows == [("ok",)]
        current = new
    await db.close()
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=6)
    assert restored is not None and await _rows(db) == snapshots[restored]  # durable
    await db.close()


async def test_a_restore_can_be_undone_by_restoring_the_version_before_it(
        backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=3)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    first = await db.sync()
    await db.execute("INSERT INTO t(v) VALUES ('kept')")
    before = await db.sync()
    await db.restore(first)
    assert await _rows(db) == []
    await db.restore(before)
    assert await _rows(db) == [(1, "kept")]
    await db.close()


async def test_restoring_a_version_no_longer_retained_is_refused_and_changes_nothing(
        backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=2)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    old = await db.sync()
    for i in range(4):
        await db.execute("INSERT INTO t(v) VALUES (?)", (str(i),))
        await db.sync()
    rows, version = await _rows(db), db.stats()["version"]
    with pytest.raises(datasync.VersionNotRetainedError, match=f"version {old}"):
        await db.restore(old)
    with pytest.raises(datasync.VersionNotRetainedError, match="does not exist"):
        await db.restore(version + 5)
    assert await _rows(db) == rows and db.stats()["version"] == version
    await db.close()


async def test_without_retain_versions_only_the_current_version_is_restorable(
        backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    await db.execute("INSERT INTO t(v) VALUES ('x')")
    current = await db.sync()
    assert [v["version"] for v in await db.versions()] == [current]
    with pytest.raises(datasync.VersionNotRetainedError):
        await db.restore(current - 1)
    await db.close()


async def test_retain_versions_is_refused_by_a_backend_that_cannot_keep_history() -> None:
    class NoHistory(AsyncOnly):
        """A store without the KeepsHistory capability."""

    with pytest.raises(datasync.InvalidOptionError, match="does not keep old versions"):
        await datasync.open("nohist", backend=NoHistory(MemoryBackend("nohist")),
                            retain_versions=2)
    with pytest.raises(datasync.InvalidOptionError, match="retain_versions"):
        await datasync.open("nohist", backend="memory", retain_versions=-1)


async def test_an_online_backup_is_a_consistent_copy_while_writes_continue(
        backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    await db.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 500,)] * 2000)
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            async with db.transaction():
                await db.execute("INSERT INTO t(v) VALUES ('a')")
                await db.execute("INSERT INTO t(v) VALUES ('b')")
            written += 1
            await pause(0.002)

    task = asyncio.ensure_future(writer())
    await asyncio.sleep(0.01)
    copy_name = db_name + "-backup" if backend_kind != "sqlitefile" else db_name + ".bak"
    at = await db.backup(copy_name, backend=backend_kind)
    stop.set()
    await task
    assert written > 0
    copy = await datasync.open(copy_name, backend=backend_kind)
    n = (await copy.execute("SELECT count(*) FROM t")).rows[0][0]
    assert n >= 2000 and (n - 2000) % 2 == 0  # whole transactions only
    assert (await copy.execute("PRAGMA integrity_check")).rows == [("ok",)]
    assert at["source_version"] <= db.stats()["version"] and at["bytes"] > 2000 * 500
    total = (await db.execute("SELECT count(*) FROM t")).rows[0][0]
    assert total == 2000 + 2 * written and total >= n
    await copy.close()
    await db.close()


async def test_a_backup_never_overwrites_an_existing_database(backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind)
    await db.execute("CREATE TABLE t(x)")
    other_name = db_name + "-other" if backend_kind != "sqlitefile" else db_name + ".other"
    other = await datasync.open(other_name, backend=backend_kind)
    await other.execute("CREATE TABLE mine(x)")
    await other.close()
    with pytest.raises(datasync.DatasyncError, match="already holds a database"):
        await db.backup(other_name, backend=backend_kind)
    other = await datasync.open(other_name, backend=backend_kind)
    with pytest.raises(sqlite3.OperationalError):
        await other.execute("SELECT * FROM t")
    await other.close()
    await db.close()


def StoreSentHistoryBackend(name: str) -> AsyncSentHistory:  # noqa: N802
    """A memory store that suspends and keeps only the history the block store sends
    (``Flush.history``), as the IndexedDB backend does: tests that path natively."""
    return AsyncSentHistory(MemoryBackend(name))


async def test_history_sent_by_the_store_restores_every_retained_version() -> None:
    name = "sent-history"
    db = await datasync.open(name, backend=StoreSentHistoryBackend(name), retain_versions=5)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    snapshots = {}
    for i in range(8):
        if i % 3 == 2:
            await db.execute("DELETE FROM t WHERE id % 3 = 0")
            await db.execute("VACUUM")
        else:
            await db.executemany("INSERT INTO t(v) VALUES (?)", [(f"{i}" * 300,)] * 20)
        snapshots[await db.sync()] = await _rows(db)
    versions = [v["version"] for v in await db.versions()]
    assert len(versions) == 6
    for version in versions[:-1]:
        if version in snapshots:
            await db.restore(version)
            assert await _rows(db) == snapshots[version]
            assert (await db.execute("PRAGMA integrity_check")).rows == [("ok",)]
    await db.close()
    # reopened, the store knows its blocks' versions again and keeps going
    db = await datasync.open(name, backend=StoreSentHistoryBackend(name), retain_versions=5)
    before = await _rows(db)
    await db.execute("INSERT INTO t(v) VALUES ('after reopen')")
    await db.restore((await db.sync()) - 1)
    assert await _rows(db) == before
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)


async def test_an_encrypted_store_restores_and_a_rekey_drops_history_under_the_old_key(
        backend_kind: str, db_name: str) -> None:
    db = await datasync.open(db_name, backend=backend_kind, retain_versions=4,
                             encryption_key=bytes(range(32)))
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    await db.execute("INSERT INTO t(v) VALUES ('first')")
    first = await db.sync()
    await db.execute("INSERT INTO t(v) VALUES ('second')")
    await db.sync()
    await db.restore(first)
    assert await _rows(db) == [(1, "first")]
    await db.rekey(bytes(range(1, 33)))
    assert [v["version"] for v in await db.versions()] == [db.stats()["version"]]
    with pytest.raises(datasync.VersionNotRetainedError):
        await db.restore(first)
    await db.execute("INSERT INTO t(v) VALUES ('after rekey')")
    before = await db.sync()
    await db.execute("DELETE FROM t")
    await db.sync()
    await db.restore(before)  # history kept again, under the new key
    assert [r[1] for r in await _rows(db)] == ["first", "after rekey"]
    await db.close()
