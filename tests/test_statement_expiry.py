"""A cached statement that opens no read transaction (EXPLAIN, EXPLAIN QUERY PLAN)
never compares the schema cookie, so after the schema changed under the database's
connection it went on describing the old schema. Each way the schema can change
under it: another connection of the store, an import, a restore (tabs: a follower's
catch-up, tests/tabs/test_followers.py; a replica's pull, tests/sync/test_replica.py)."""
from __future__ import annotations

import sqlite3

import datasync

PLAN = "EXPLAIN QUERY PLAN SELECT a FROM t WHERE b = 1"
PROGRAM = "EXPLAIN SELECT a FROM t WHERE b = 1"


async def _uses_index(db: datasync.Database) -> tuple[bool, bool]:
    """(the plan, the bytecode) of the same texts each time: the cached statements."""
    plan = any("USING INDEX" in r["detail"] for r in await db.query(PLAN))
    program = any(r["opcode"].startswith("Idx") for r in await db.query(PROGRAM))
    return plan, program


async def _open(name: str, **options: object) -> datasync.Database:
    db = await datasync.open(name, backend="memory", **options)
    await db.execute("CREATE TABLE t(a, b)")
    assert await _uses_index(db) == (False, False)
    return db


async def test_an_index_made_by_another_connection_of_the_store_is_seen() -> None:
    db = await _open("expiry-connect")
    conn = db.connect()
    conn.execute("CREATE INDEX ib ON t(b)")
    conn.commit()
    assert await _uses_index(db) == (True, True)
    conn.execute("DROP INDEX ib")
    conn.commit()
    assert await _uses_index(db) == (False, False)
    conn.close()
    await db.close()


async def test_an_imported_image_with_an_index_is_seen() -> None:
    db = await _open("expiry-import")
    plain = sqlite3.connect(":memory:")
    plain.executescript("CREATE TABLE t(a, b); CREATE INDEX ib ON t(b);")
    await db.import_(plain.serialize())
    assert await _uses_index(db) == (True, True)
    await db.close()


async def test_a_restored_version_without_the_index_is_seen() -> None:
    db = await _open("expiry-restore", retain_versions=10)
    before = await db.sync()
    await db.execute("CREATE INDEX ib ON t(b)")
    await db.sync()
    assert await _uses_index(db) == (True, True)
    await db.restore(before)
    assert await _uses_index(db) == (False, False)
    await db.close()
