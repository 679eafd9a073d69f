"""Change data capture: every committed insert, update and delete, in a change log.

Example::

    db = await datasync.open("app.dsdb", cdc=True, cdc_retention=7 * 86400)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")   # a "schema" change
    await db.execute("INSERT INTO t(v) VALUES ('a')")
    async for change in db.changes(tables=["t"], since=0, consumer="search-index"):
        print(change.seq, change.op, change.key, change.old, change.new)
        await db.ack("search-index", change.seq)   # pruning may now drop it

How: AFTER INSERT/UPDATE/DELETE triggers on every user table write a row into
``_datasync_changes`` in the same transaction as the change, so a rolled-back
transaction or a failed statement leaves nothing. A statement that starts with
CREATE, ALTER or DROP runs (through :class:`datasync.Database`) inside a
transaction that also rebuilds the triggers from ``PRAGMA table_xinfo`` and logs one
``schema`` change per object of ``sqlite_master`` it created, altered or dropped.

Row keys: the rowid for rowid tables, ``{pk column: value}`` for WITHOUT ROWID
tables. Values: JSON, lossless for every SQLite type: a BLOB is ``{"$hex": "..."}``
in the log and ``bytes`` in a :class:`Change`; a REAL is written with all the digits
that read it back bit for bit (:func:`real_json`), an infinite one as
``{"$real": "Infinity"}`` and ``float("inf")``; INTEGERs keep all 64 bits and TEXT
any character. ``version``: see :data:`VERSION_FUNCTION`.
"""
from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

LOG_TABLE = "_datasync_changes"
CONSUMERS_TABLE = "_datasync_consumers"
TRIGGER_PREFIX = "_datasync_cdc_"
#: The SQL function the triggers call for a change's ``version``: the version of the
#: store flush that will make the change durable (the durable version + 1, or + 2
#: while a flush is in flight). Once ``db.version >= change.version`` the change is
#: on storage. If a flush fails and is retried the change may land one version
#: earlier than stamped; "durable once ``db.version >= change.version``" still holds.
VERSION_FUNCTION = "datasync_next_version"
_DDL_WORDS = ("CREATE", "ALTER", "DROP")
_JSON_CHUNK = 40  # columns per json_object() call (SQLite allows 127 arguments)

SCHEMA_SQL = (
    f"CREATE TABLE IF NOT EXISTS {LOG_TABLE}(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "tbl TEXT NOT NULL, op TEXT NOT NULL, key TEXT, old TEXT, new TEXT, "
    "version INTEGER, at REAL NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {CONSUMERS_TABLE}"
    "(name TEXT PRIMARY KEY, acked INTEGER NOT NULL, at REAL NOT NULL)",
)
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class Change:
    """One captured change.

    Example: ``Change(seq=7, table="t", op="update", key=1, old={"id": 1, "v": "a"},
    new={"id": 1, "v": "b"}, version=12, at=1795000000.5)``

    ``op`` is ``insert``, ``update``, ``delete``, ``schema`` or ``reset``. A ``schema``
    change names the object in ``key`` (its ``table`` is the table it belongs to) and
    has ``old``/``new`` = ``{"type", "name", "sql"}`` from ``sqlite_master`` (``None``
    when created / dropped). A ``reset`` (``table`` ``"*"``, every table filter sees
    it) says the whole database was replaced (``new``: ``{"reason": "import" |
    "restore", "version": ...}``) without per-row changes: a consumer resyncs.
    ``at`` is Unix time in seconds.
    """

    seq: int
    table: str
    op: str
    key: Any
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    version: int | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "table": self.table, "op": self.op, "key": self.key,
                "old": self.old, "new": self.new, "version": self.version, "at": self.at}


class Executor(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


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
            f"{_NOW}); END")
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
            f"VALUES (?, 'schema', ?, ?, ?, ?, {_NOW})",
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
                  f"VALUES ('*', 'reset', NULL, NULL, ?, ?, {_NOW})",
                  (json.dumps(reason), version))
    image.execute("COMMIT")


# -- reading -------------------------------------------------------------------------------
def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$hex" in value:
            return bytes.fromhex(value["$hex"])
        if len(value) == 1 and "$real" in value:
            return float(value["$real"])
        return {k: _decode(v) for k, v in value.items()}
    return value


def _load(text: str | None) -> Any:
    return None if text is None else _decode(json.loads(text))


def row_to_change(row: Sequence[Any]) -> Change:
    seq, tbl, op, key, old, new, version, at = row
    return Change(int(seq), str(tbl), str(op), _load(key), _load(old), _load(new),
                  None if version is None else int(version), float(at))


async def read_changes(db: Executor, since: int, tables: Iterable[str] | None,
                       limit: int) -> list[Change]:
    """Up to ``limit`` changes with ``seq > since`` (of ``tables`` if given), in order."""
    sql = f"SELECT seq, tbl, op, key, old, new, version, at FROM {LOG_TABLE} WHERE seq > ?"
    params: list[Any] = [since]
    if tables is not None:
        sql += " AND (tbl IN (SELECT value FROM json_each(?)) OR op = 'reset')"
        params.append(json.dumps(list(tables)))
    sql += " ORDER BY seq LIMIT ?"
    params.append(limit)
    try:
        res = await db.execute(sql, params)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # nothing captured in this copy yet
        raise
    return [row_to_change(r) for r in res.rows]


async def consumer_acked(db: Executor, name: str) -> int | None:
    try:
        res = await db.execute(f"SELECT acked FROM {CONSUMERS_TABLE} WHERE name = ?", (name,))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(res.rows[0][0]) if res.rows else None


async def register_consumer(db: Executor, name: str, acked: int = 0) -> None:
    await db.execute(f"INSERT OR IGNORE INTO {CONSUMERS_TABLE}(name, acked, at) VALUES (?, ?, ?)",
                     (name, acked, time.time()))


async def ack(db: Executor, name: str, seq: int) -> None:
    """Record that consumer ``name`` processed every change up to ``seq`` (never
    moves backwards); registers the consumer if it is new."""
    await db.execute(
        f"INSERT INTO {CONSUMERS_TABLE}(name, acked, at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET acked = max(acked, excluded.acked), at = excluded.at",
        (name, int(seq), time.time()))


PRUNE_SQL = (
    f"DELETE FROM {LOG_TABLE} WHERE at < ? AND seq <= "
    f"coalesce((SELECT min(acked) FROM {CONSUMERS_TABLE}), 9223372036854775807)")


async def prune(db: Executor, retention: float | None) -> int:
    """Delete changes older than ``retention`` seconds that every registered consumer
    has acknowledged; returns how many. ``None``: keep everything."""
    if retention is None:
        return 0
    res = await db.execute(PRUNE_SQL, (time.time() - retention,))
    return max(res.rowcount, 0)


async def stream(db: Executor, subscribe: Callable[[Callable[[], None]], Callable[[], None]],
                 *, tables: Iterable[str] | None, since: int | None, consumer: str | None,
                 follow: bool, batch: int, closed: Callable[[], bool],
                 register: Callable[[str], Awaitable[None]] | None = None
                 ) -> AsyncIterator[Change]:
    """The body of ``changes()``: read ``seq > since`` in batches, then wait for a
    wake-up from ``subscribe`` (a commit, a catch-up, closing), never polling. Ends
    when ``closed()`` is true after a wake-up."""
    wanted = None if tables is None else list(tables)
    if since is None:
        since = 0
        if consumer is not None:
            acked = await consumer_acked(db, consumer)
            if acked is None:
                if register is not None:
                    await register(consumer)
            else:
                since = acked
    woken = asyncio.Event()
    remove = subscribe(woken.set)
    try:
        while True:
            woken.clear()
            changes = await read_changes(db, since, wanted, batch)
            for change in changes:
                since = change.seq
                yield change
            if len(changes) == batch:
                continue
            if not follow:
                return
            await woken.wait()
            if closed():
                return
    finally:
        remove()
