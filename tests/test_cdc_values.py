"""Change data capture is lossless: every captured value equals, bit for bit, what
the table stores (REALs, 64-bit integers, text with NUL, BLOBs), and a captured
key finds its row. Runs natively and inside Pyodide (SQLite 3.39)."""
from __future__ import annotations

import math
import struct
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import datasync

from helpers import EXAMPLES

ISSUE_INPUTS = [0.1 + 0.2, 1 / 3, -0.0, 1.7976931348623157e308, time.time(), 5e-324,
                -1e-300, 2**53 + 1, -2**63, 2**63 - 1, "nul\x00inside", b"\x00\xff",
                float("inf"), float("-inf"), None, 123456789.0, ""]

VALUES = st.one_of(
    st.none(),
    st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=False),  # SQLite stores NaN as NULL
    st.text(st.characters(exclude_categories=["Cs"])),  # any character, NUL included
    st.binary(max_size=64),
)
_names = iter(range(10**9))


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type; REALs compared by their bits (-0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


async def captured(values: list[Any], without_rowid_key: Any = None) -> list[tuple[Any, Any]]:
    """Insert, update and delete each value; return (stored, captured) pairs and
    check every captured key finds its row."""
    db = await datasync.open(f"cdc-values-{next(_names)}", backend="memory", cdc=True)
    await db.execute("CREATE TABLE t(v)")
    await db.execute("CREATE TABLE m(k REAL PRIMARY KEY, v) WITHOUT ROWID")
    pairs: list[tuple[Any, Any]] = []
    for v in values:
        res = await db.execute("INSERT INTO t(v) VALUES (?)", (v,))
        await db.execute("UPDATE t SET v = v WHERE rowid = ?", (res.lastrowid,))
    stored = {r["rowid"]: r["v"] for r in await db.query("SELECT rowid, v FROM t")}
    keys = [k for k in values if isinstance(k, float) and not math.isinf(k)][:5]
    for k in keys:
        await db.execute("INSERT OR REPLACE INTO m VALUES (?, 'row')", (k,))
    await db.execute("DELETE FROM t")
    async for change in db.changes(follow=False):
        if change.table == "t" and change.op in ("insert", "update"):
            pairs.append((stored[change.key], change.new["v"]))
        if change.table == "t" and change.op == "update":
            pairs.append((stored[change.key], change.old["v"]))
        if change.table == "t" and change.op == "delete":
            pairs.append((stored[change.key], change.old["v"]))
        if change.table == "m" and change.op == "insert":
            found = await db.query("SELECT v FROM m WHERE k = ?", (change.key["k"],))
            assert found == [{"v": "row"}], f"key {change.key!r} finds no row"
    await db.close()
    return pairs


async def test_the_issue_inputs_are_captured_bit_for_bit() -> None:
    pairs = await captured(ISSUE_INPUTS)
    assert len(pairs) == 4 * len(ISSUE_INPUTS)
    bad = [(s, c) for s, c in pairs if not same(s, c)]
    assert bad == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=12))
async def test_any_value_round_trips_through_the_change_log(values: list[Any]) -> None:
    for stored, change in await captured(values):
        assert same(stored, change), (stored, change)


async def test_generated_columns_are_captured_with_the_row() -> None:
    db = await datasync.open(f"cdc-values-{next(_names)}", backend="memory", cdc=True)
    await db.execute("CREATE TABLE g(a, b AS (a * 2) STORED, c AS (a || '!'))")
    await db.execute("INSERT INTO g(a) VALUES (0.1)")
    await db.execute("UPDATE g SET a = 3")
    out = [(c.op, c.old, c.new) async for c in db.changes(follow=False) if c.table == "g"
           and c.op != "schema"]
    await db.close()
    assert out == [
        ("insert", None, {"a": 0.1, "b": 0.2, "c": "0.1!"}),
        ("update", {"a": 0.1, "b": 0.2, "c": "0.1!"}, {"a": 3, "b": 6, "c": "3!"})]
