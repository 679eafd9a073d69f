"""Random SQL workloads give the same final dump on datasync as on plain sqlite3."""
from __future__ import annotations

import itertools
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datasync
from helpers import EXAMPLES

_ids = itertools.count()
values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.binary(max_size=6000),  # crosses block boundaries and overflow pages
)
statement = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 2), st.lists(values, min_size=2, max_size=2)),
    st.tuples(st.just("bulk"), st.integers(0, 2), st.integers(1, 300), st.binary(max_size=2000)),
    st.tuples(st.just("update"), st.integers(0, 2), values, st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, 50)),
    st.tuples(st.just("create"), st.integers(0, 2)),
    st.tuples(st.just("drop"), st.integers(0, 2)),
    st.tuples(st.just("index"), st.integers(0, 2)),
    st.tuples(st.just("vacuum")),
)
workload = st.lists(
    st.tuples(st.sampled_from(["autocommit", "commit", "rollback"]),
              st.lists(statement, min_size=1, max_size=6)),
    min_size=1,
    max_size=12,
)


def _sql(stmt):  # type: ignore[no-untyped-def]
    kind, *args = stmt
    if kind == "create":
        return [(f"CREATE TABLE IF NOT EXISTS t{args[0]}(id INTEGER PRIMARY KEY, a, b)", ())]
    if kind == "drop":
        return [(f"DROP TABLE IF EXISTS t{args[0]}", ())]
    if kind == "vacuum":
        return [("VACUUM", ())]
    table = f"t{args[0]}"
    ensure = (f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, a, b)", ())
    if kind == "index":
        return [ensure, (f"CREATE INDEX IF NOT EXISTS i{args[0]} ON {table}(a)", ())]
    if kind == "insert":
        return [ensure, (f"INSERT INTO {table}(a, b) VALUES (?, ?)", tuple(args[1]))]
    if kind == "bulk":
        n, blob = args[1], args[2]
        return [ensure, (
            f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<?) "
            f"INSERT INTO {table}(a, b) SELECT x, ? FROM c", (n, blob))]
    if kind == "update":
        return [ensure, (f"UPDATE {table} SET b = ? WHERE id % 51 = ?", (args[1], args[2]))]
    return [ensure, (f"DELETE FROM {table} WHERE id % 51 = ?", (args[1],))]


def _apply(conn: sqlite3.Connection, script) -> None:  # type: ignore[no-untyped-def]
    for mode, stmts in script:
        if mode == "autocommit":
            for stmt in stmts:
                for sql, params in _sql(stmt):
                    conn.execute(sql, params)
            continue
        in_tx = False
        for stmt in stmts:
            for sql, params in _sql(stmt):
                if sql == "VACUUM":
                    continue  # not allowed inside a transaction
                if not in_tx:
                    conn.execute("BEGIN")
                    in_tx = True
                conn.execute(sql, params)
        if in_tx:
            conn.execute("COMMIT" if mode == "commit" else "ROLLBACK")


@pytest.mark.parametrize("block_size", [512, 4096, 65536])
@settings(max_examples=max(EXAMPLES // 2, 4), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=workload)
async def test_random_workload_dump_matches_plain_sqlite(
    script, block_size: int, backend_kind: str, tmp_path_factory  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path_factory.mktemp("diff")
    reference = sqlite3.connect(folder / "plain.sqlite", isolation_level=None)
    _apply(reference, script)
    expected = list(reference.iterdump())
    reference.close()
    name = (f"diff-{next(_ids)}" if backend_kind != "sqlitefile" else str(folder / "d.dsdb"))

    db = await datasync.open(name, backend=backend_kind, block_size=block_size,
                             cache_bytes=4 * block_size)
    conn = db.connect(isolation_level=None)  # as the reference connection
    _apply(conn, script)
    conn.close()
    await db.close()
    db = await datasync.open(name, backend=backend_kind)  # from the stored blocks
    conn = db.connect()
    dump = list(conn.iterdump())
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    await db.close()
    assert dump == expected
