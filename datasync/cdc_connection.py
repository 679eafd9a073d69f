"""Plain ``sqlite3`` connections that keep change data capture whole across schema changes.

Example::

    db = await datasync.open("app.dsdb", cdc=True)
    conn = db.connect()                     # a CapturingConnection
    conn.execute("CREATE TABLE t(x)")       # logged as a "schema" change, triggers built
    conn.execute("INSERT INTO t VALUES (1)")  # captured like any other insert
    pandas_frame.to_sql("scores", conn)     # its CREATE TABLE too (through cursor())

With ``cdc=True`` the database's own statements that start with CREATE, ALTER or
DROP run in one transaction with their ``schema`` changes and the rebuilt capture
triggers (:meth:`datasync.Database._run_ddl`). ``db.connect()`` hands out this
connection class so the same happens for sync code, SQLAlchemy and pandas: every
``execute``, ``executemany`` and ``executescript`` of the connection and of its
cursors routes a schema change through :func:`run_ddl`, inside a SAVEPOINT (nested
in the caller's transaction if there is one), so the schema change, its log entries
and the new triggers commit or roll back together. Without it a table created here
would be written uncaptured until the next schema change made through the Database.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import cdc
from .vfs import Connection

T = TypeVar("T")
_SAVEPOINT = "_datasync_ddl"


def run_ddl(conn: sqlite3.Connection, run: Callable[[], T], next_version: Callable[[], int]) -> T:
    """Run ``run()`` (a schema change) in a savepoint that also logs its ``schema``
    changes and rebuilds the capture triggers; on any error all of it rolls back."""
    plain = sqlite3.Connection.execute
    plain(conn, f"SAVEPOINT {_SAVEPOINT}")
    nested, conn.in_ddl = getattr(conn, "in_ddl", False), True  # the triggers are DDL too
    try:
        before = cdc.schema_snapshot(conn)
        result = run()
        if cdc.schema_snapshot(conn) != before:
            cdc.log_schema_changes(conn, before, next_version())
    except BaseException:
        plain(conn, f"ROLLBACK TO {_SAVEPOINT}")
        plain(conn, f"RELEASE {_SAVEPOINT}")
        raise
    finally:
        conn.in_ddl = nested  # type: ignore[attr-defined]
    plain(conn, f"RELEASE {_SAVEPOINT}")
    return result


def split_script(script: str) -> list[str]:
    """The statements of ``script`` (``;`` inside strings, comments and trigger
    bodies does not split: SQLite's own completeness check decides)."""
    statements, start = [], 0
    pos = script.find(";")
    while pos >= 0:
        candidate = script[start:pos + 1]
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \t\r\n;"):
                statements.append(candidate)
            start = pos + 1
        pos = script.find(";", pos + 1)
    rest = script[start:]
    if rest.strip():
        statements.append(rest)
    return statements


class CapturingCursor(sqlite3.Cursor):
    """A cursor whose schema changes are captured (see the module docstring)."""

    def execute(self, sql: str, parameters: Any = (), /) -> "CapturingCursor":
        conn = self.connection
        if isinstance(conn, CapturingConnection) and not conn.in_ddl and cdc.is_ddl(sql):
            return run_ddl(conn, lambda: super(CapturingCursor, self).execute(sql, parameters),
                           conn.next_version)
        return super().execute(sql, parameters)  # type: ignore[return-value]

    def executescript(self, sql_script: str, /) -> "CapturingCursor":
        conn = self.connection
        if not isinstance(conn, CapturingConnection) or not conn.script_has_ddl(sql_script):
            return super().executescript(sql_script)  # type: ignore[return-value]
        conn.run_script(sql_script, self.execute)
        return self


class CapturingConnection(Connection):
    """``db.connect()`` with ``cdc=True``: schema changes made here are captured."""

    #: Set by :meth:`datasync.Database.connect`: the version stamped on log entries.
    next_version: Callable[[], int] = staticmethod(lambda: 0)  # type: ignore[assignment]
    #: True while :func:`run_ddl` runs here: the statements it makes pass straight on.
    in_ddl = False

    def cursor(self, factory: Any = CapturingCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)  # DML only, as in sqlite3

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        return self.cursor().executescript(sql_script)

    def script_has_ddl(self, script: str) -> bool:
        return any(cdc.is_ddl(statement) for statement in split_script(script))

    def run_script(self, script: str, execute: Callable[[str], Any]) -> None:
        """Like ``executescript``: commit what is pending, then run each statement
        as written (no implicit BEGIN), schema changes captured."""
        if self.in_transaction and self.isolation_level is not None:
            self.commit()
        level, self.isolation_level = self.isolation_level, None
        try:
            for statement in split_script(script):
                execute(statement)
        finally:
            self.isolation_level = level
