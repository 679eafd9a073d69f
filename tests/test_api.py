"""One API: a Database (one process or tab) and a SharedDatabase (a tab among
many, leader or follower) answer the same calls with the same results."""
from __future__ import annotations

import inspect
import sqlite3
from typing import Any

import pytest

import datasync
from datasync.api import DatabaseAPI, OpenTransactionAPI, TransactionAPI
from datasync.tabs import SharedDatabase
from tabs.harness import Browser

MEMBERS = [n for n in dir(DatabaseAPI) if not n.startswith("_")]


@pytest.mark.parametrize("cls", [datasync.Database, SharedDatabase])
def test_every_call_of_the_api_exists_with_its_parameters(cls: type) -> None:
    for name in MEMBERS:
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        want = getattr(DatabaseAPI, name)
        if callable(want) and not isinstance(inspect.getattr_static(DatabaseAPI, name), property):
            wanted = list(inspect.signature(want).parameters)
            got = list(inspect.signature(getattr(cls, name)).parameters)
            assert got[:len(wanted)] == wanted, (cls.__name__, name, got, wanted)


async def _open(kind: str) -> tuple[DatabaseAPI, Any]:
    """The database to test and what closes it."""
    if kind == "database":
        d = await datasync.open("api-database", backend="memory")
        return d, d.close
    b = Browser()
    a, f = await b.leader_and_follower()
    return (a if kind == "leader" else f), b.close


@pytest.mark.parametrize("kind", ["database", "leader", "follower"])
async def test_the_same_calls_give_the_same_results(kind: str) -> None:
    db, close = await _open(kind)
    assert isinstance(db, DatabaseAPI)
    await db.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
                           "INSERT INTO t(v) VALUES ('a');")
    res = await db.execute("INSERT INTO t(v) VALUES (?)", ["b"])
    assert (res.rowcount, res.lastrowid) == (1, 2)
    many = await db.executemany("INSERT INTO t(v) VALUES (?)", [["c"], ["d"]])
    assert (many.rowcount, many.lastrowid) == (2, 4)
    out = await db.batch([("UPDATE t SET v = upper(v) WHERE id = ?", [1]),
                          ("SELECT v FROM t WHERE id = 1", [])])
    assert out[1].rows == [("A",)]
    async with db.transaction() as tx:
        assert isinstance(tx, TransactionAPI)
        n = (await tx.query("SELECT count(*) AS n FROM t"))[0]["n"]
        await tx.execute("INSERT INTO t(v) VALUES (?)", [f"n={n}"])
    tx = await db.begin()
    assert isinstance(tx, OpenTransactionAPI)
    await tx.execute("DELETE FROM t")
    await tx.rollback()
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction():
            await db.execute("INSERT INTO t(id, v) VALUES (1, 'dup')")
    assert [r["v"] for r in await db.query("SELECT v FROM t ORDER BY id")] == \
        ["A", "b", "c", "d", "n=4"]
    info = db.leader_info()
    assert set(info) == {"is_leader", "leader_id", "epoch", "tab_id"}
    assert await db.sync() >= 1 and db.version >= 1
    assert (await db.queue_write("DELETE FROM t WHERE id = ?", [5])).rowcount == 1
    image = await db.export()
    assert image.startswith(b"SQLite format 3\x00")
    conn = db.connect()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (4,)
    conn.close()
    await close()
