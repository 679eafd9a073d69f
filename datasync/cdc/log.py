"""The change log: its tables, what a change is, reading it, consumers, pruning.

Example::

    changes = await read_changes(db, since=0, tables=["t"], limit=100)
    await ack(db, "search-index", changes[-1].seq)
    await prune(db, retention=7 * 86400)

The log is the table ``_datasync_changes`` (one row per change, in commit order by
``seq``) and ``_datasync_consumers`` (how far each named consumer acknowledged);
:mod:`.triggers` writes it. See :mod:`datasync.cdc` for the whole design.
"""
from __future__ import annotations

import asyncio
import json
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

SCHEMA_SQL = (
    f"CREATE TABLE IF NOT EXISTS {LOG_TABLE}(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "tbl TEXT NOT NULL, op TEXT NOT NULL, key TEXT, old TEXT, new TEXT, "
    "version INTEGER, at REAL NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {CONSUMERS_TABLE}"
    "(name TEXT PRIMARY KEY, acked INTEGER NOT NULL, at REAL NOT NULL)",
)
NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


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
