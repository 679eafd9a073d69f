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

from .log import (
    CONSUMERS_TABLE,
    LOG_TABLE,
    PRUNE_SQL,
    SCHEMA_SQL,
    TRIGGER_PREFIX,
    VERSION_FUNCTION,
    Change,
    Executor,
    ack,
    consumer_acked,
    prune,
    read_changes,
    register_consumer,
    row_to_change,
    stream,
)
from .triggers import (
    REAL_FUNCTION,
    carry_log,
    has_triggers,
    is_ddl,
    log_schema_changes,
    quote,
    real_json,
    refresh_triggers,
    schema_snapshot,
    strip_triggers,
    trigger_sql,
)

__all__ = ["CONSUMERS_TABLE", "LOG_TABLE", "PRUNE_SQL", "REAL_FUNCTION", "SCHEMA_SQL",
           "TRIGGER_PREFIX", "VERSION_FUNCTION", "Change", "Executor", "ack", "carry_log",
           "consumer_acked", "has_triggers", "is_ddl", "log_schema_changes", "prune", "quote",
           "read_changes", "real_json", "refresh_triggers", "register_consumer",
           "row_to_change", "schema_snapshot", "stream", "strip_triggers", "trigger_sql"]
