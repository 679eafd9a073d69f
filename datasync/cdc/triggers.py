"""Capture triggers and schema changes: what writes the change log.

Example::

    refresh_triggers(conn)                 # after any schema change, in its transaction
    before = schema_snapshot(conn)
    conn.execute("CREATE TABLE u(x)")
    log_schema_changes(conn, before, next_version())

AFTER INSERT/UPDATE/DELETE triggers on every user table write one log row per
changed row, in the changing transaction; values are lossless JSON (:func:`real_json`,
``{"$hex": ...}`` for BLOBs). See :mod:`datasync.cdc` for the whole design.
"""
from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from .log import (
    CONSUMERS_TABLE,
    LOG_TABLE,
    NOW_SQL,
    SCHEMA_SQL,
    TRIGGER_PREFIX,
    VERSION_FUNCTION,
)

_DDL_WORDS = ("CREATE", "ALTER", "DROP")
_JSON_CHUNK = 40  # columns per json_object() call (SQLite allows 127 arguments)

# -- triggers ----------------------------------------------------------------------------
def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: The SQL function the triggers call for a REAL: its exact JSON text (see below).
REAL_FUNCTION = "datasync_real"


def real_json(value: float) -> str:
    """A REAL as JSON that reads back bit for bit: Python's shortest round-trip
    ``repr`` (``0.30000000000000004``, ``-0.0``, ``1.7976931348623157e+308``; SQLite
    3.39/3.40's own JSON keeps only 15 digits), or ``{"$real": "Infinity"}`` for an
    infinity, which JSON cannot hold. Registered on every datasync connection as
    ``datasync_real(x)``."""
    if math.isinf(value):
        return json.dumps({"$real": "Infinity" if value > 0 else "-Infinity"})
    return repr(float(value))


def _value(ref: str) -> str:
    """A column value as JSON, exactly: a BLOB as {"$hex": ...} (json_object refuses
    BLOBs), a REAL through ``datasync_real`` (json() keeps its digits as written);
    INTEGER (all 64 bits), TEXT (NUL included) and NULL as json_object renders them."""
    # Plain values go to json_object as they are (the cheapest); the objects and the
    # numbers built here keep their JSON subtype through CASE, so they nest as JSON.
    return (f"CASE typeof({ref}) WHEN 'blob' THEN json_object('$hex', hex({ref})) "
            f"WHEN 'real' THEN json({REAL_FUNCTION}({ref})) ELSE {ref} END")


def _row_json(row: str, columns: Sequence[str]) -> str:
    chunks = [columns[i:i + _JSON_CHUNK] for i in range(0, len(columns), _JSON_CHUNK)] or [[]]
    expr = "json_object(" + ", ".join(
        f"{_literal(c)}, {_value(row + '.' + quote(c))}" for c in chunks[0]) + ")"
    for chunk in chunks[1:]:
        expr = "json_insert(" + expr + ", " + ", ".join(
            f"{_literal('$.' + json.dumps(c))}, {_value(row + '.' + quote(c))}"
            for c in chunk) + ")"
    return expr


def _user_tables(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
    """(name, without_rowid) of every ordinary table that is not datasync's or SQLite's."""
    rows = conn.execute(
        "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_datasync%' ESCAPE '\\'"
    ).fetchall()
    return [(str(name), bool(wr)) for name, wr in rows]


def trigger_sql(conn: sqlite3.Connection, table: str, without_rowid: bool) -> dict[str, str]:
    """The three capture triggers of ``table``: {trigger name: CREATE TRIGGER text}."""
    # table_xinfo: generated columns too (hidden 2 and 3); a row holds their values.
    info = [r for r in conn.execute(f"PRAGMA main.table_xinfo({quote(table)})").fetchall()
            if r[6] != 1]
    columns = [str(r[1]) for r in info]
    pk = [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]

    def key(row: str) -> str:
        if without_rowid:
            return _row_json(row, pk)
        return f"json_quote({row}.rowid)"

    out = {}
    for op, row, old, new in (("insert", "NEW", "NULL", _row_json("NEW", columns)),
                              ("update", "NEW", _row_json("OLD", columns),
                               _row_json("NEW", columns)),
                              ("delete", "OLD", _row_json("OLD", columns), "NULL")):
        name = f"{TRIGGER_PREFIX}{op}_{table}"
        out[name] = (
            f"CREATE TRIGGER {quote(name)} AFTER {op.upper()} ON {quote(table)} BEGIN "
            f"INSERT INTO {LOG_TABLE}(tbl, op, key, old, new, version, at) VALUES "
            f"({_literal(table)}, '{op}', {key(row)}, {old}, {new}, {VERSION_FUNCTION}(), "
            f"{NOW_SQL}); END")
    return out


def refresh_triggers(conn: sqlite3.Connection) -> None:
    """Make the capture triggers match the tables (call inside a write transaction)."""
    for sql in SCHEMA_SQL:
        conn.execute(sql)
    wanted: dict[str, str] = {}
    for table, without_rowid in _user_tables(conn):
        wanted.update(trigger_sql(conn, table, without_rowid))
    existing = dict(conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        "AND name LIKE ? ESCAPE '\\'", (TRIGGER_PREFIX.replace("_", "\\_") + "%",)).fetchall())
    for name, sql in existing.items():
        if wanted.get(name) != sql:
            conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
    for name, sql in wanted.items():
        if existing.get(name) != sql:
            conn.execute(sql)


def has_triggers(conn: sqlite3.Connection) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\' "
        "LIMIT 1", (TRIGGER_PREFIX.replace("_", "\\_") + "%",)).fetchone() is not None


def strip_triggers(image: bytes) -> bytes:
    """``image`` without the capture triggers (which call a function only datasync
    registers), so that any sqlite3 can write to an exported database."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(image)
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? "
            "ESCAPE '\\'", (TRIGGER_PREFIX.replace("_", "\\_") + "%",))]
        for name in names:
            conn.execute(f"DROP TRIGGER {quote(name)}")
        conn.commit()
        return conn.serialize()
    finally:
        conn.close()


# -- schema changes ----------------------------------------------------------------------
def is_ddl(sql: str) -> bool:
    """Whether ``sql`` starts (after comments) with CREATE, ALTER or DROP."""
    text = sql.lstrip()
    while text.startswith(("--", "/*")):
        end = text.find("\n") if text.startswith("--") else text.find("*/")
        if end < 0:
            return False
        text = text[end + (1 if text.startswith("--") else 2):].lstrip()
    return text[:6].upper().startswith(_DDL_WORDS)


def schema_snapshot(conn: sqlite3.Connection) -> dict[str, tuple[str, str, str | None]]:
    """{object name: (type, table, sql)} of the user's schema objects."""
    rows = conn.execute(
        "SELECT name, type, tbl_name, sql FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_datasync%' "
        "ESCAPE '\\' AND tbl_name NOT LIKE '\\_datasync%' ESCAPE '\\'").fetchall()
    return {str(n): (str(t), str(tb), s) for n, t, tb, s in rows}


def log_schema_changes(conn: sqlite3.Connection, before: dict[str, tuple[str, str, str | None]],
                       version: int) -> None:
    """Rebuild the triggers, and log one ``schema`` change per object created,
    altered or dropped since ``before`` (call in the transaction of the change)."""
    after = schema_snapshot(conn)
    refresh_triggers(conn)  # creates the log too, if it is missing
    for name in sorted(set(before) | set(after)):
        was, now = before.get(name), after.get(name)
        if was == now:
            continue
        table = (now or was)[1]  # type: ignore[index]
        old = None if was is None else {"type": was[0], "name": name, "sql": was[2]}
        new = None if now is None else {"type": now[0], "name": name, "sql": now[2]}
        conn.execute(
            f"INSERT INTO {LOG_TABLE}(tbl, op, key, old, new, version, at) "
            f"VALUES (?, 'schema', ?, ?, ?, ?, {NOW_SQL})",
            (table, json.dumps(name), json.dumps(old), json.dumps(new), version))


def carry_log(live: sqlite3.Connection, image: sqlite3.Connection, reason: dict[str, Any],
              version: int) -> None:
    """Before ``image`` replaces the live database: give it the live change log and
    consumers (so sequence numbers never go back and no acknowledgement is lost),
    then a ``reset`` change above them, and the capture triggers."""
    try:
        rows = live.execute(f"SELECT seq, tbl, op, key, old, new, version, at "
                            f"FROM {LOG_TABLE}").fetchall()
        consumers = live.execute(f"SELECT name, acked, at FROM {CONSUMERS_TABLE}").fetchall()
        top = live.execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                           (LOG_TABLE,)).fetchone()
    except sqlite3.OperationalError:
        rows, consumers, top = [], [], None  # nothing captured here yet
    image.execute("BEGIN")
    for table in (LOG_TABLE, CONSUMERS_TABLE):
        image.execute(f"DROP TABLE IF EXISTS {table}")
    for sql in SCHEMA_SQL:
        image.execute(sql)
    image.executemany(f"INSERT INTO {LOG_TABLE}(seq, tbl, op, key, old, new, version, at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    image.executemany(f"INSERT INTO {CONSUMERS_TABLE}(name, acked, at) VALUES (?, ?, ?)",
                      consumers)
    if top is not None:  # numbers handed out and since pruned stay used
        image.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                      (top[0], LOG_TABLE))
        image.execute("INSERT INTO sqlite_sequence(name, seq) SELECT ?, ? WHERE NOT EXISTS "
                      "(SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                      (LOG_TABLE, top[0], LOG_TABLE))
    image.execute(f"INSERT INTO {LOG_TABLE}(tbl, op, key, old, new, version, at) "
                  f"VALUES ('*', 'reset', NULL, NULL, ?, ?, {NOW_SQL})",
                  (json.dumps(reason), version))
    image.execute("COMMIT")


