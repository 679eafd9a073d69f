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

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..vfs import Connection
from . import triggers as cdc

T = TypeVar("T")
_SAVEPOINT = "_datasync_ddl"
_DDL_WORD = re.compile(r"\b(?:CREATE|ALTER|DROP)\b", re.IGNORECASE)


@contextmanager
def _internal(conn: sqlite3.Connection) -> Iterator[None]:
    """Our own reads and writes on the user's connection: plain tuples and str
    (whatever row_factory/text_factory the user set), and DDL passed straight on
    (the capture triggers are DDL too)."""
    saved = (conn.row_factory, conn.text_factory, getattr(conn, "in_ddl", False))
    conn.row_factory, conn.text_factory, conn.in_ddl = None, str, True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        conn.row_factory, conn.text_factory, conn.in_ddl = saved  # type: ignore[attr-defined]


def run_ddl(conn: sqlite3.Connection, run: Callable[[], T], next_version: Callable[[], int]) -> T:
    """Run ``run()`` (a schema change) in a savepoint that also logs its ``schema``
    changes and rebuilds the capture triggers; on any error all of it rolls back."""
    plain = sqlite3.Connection.execute
    if not conn.in_transaction:
        # A write transaction from the start: a SAVEPOINT would read first and then
        # fail at once with "database is locked" if another connection writes
        # (SQLite does not wait to upgrade a read); BEGIN IMMEDIATE waits its turn.
        plain(conn, "BEGIN IMMEDIATE")
        try:
            result = run_ddl(conn, run, next_version)
        except BaseException:
            if conn.in_transaction:
                try:
                    plain(conn, "ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report
            raise
        plain(conn, "COMMIT")
        return result
    plain(conn, f"SAVEPOINT {_SAVEPOINT}")
    try:
        with _internal(conn):
            before = cdc.schema_snapshot(conn)
        result = run()
        with _internal(conn):
            if cdc.schema_snapshot(conn) != before:
                cdc.log_schema_changes(conn, before, next_version())
    except BaseException:
        # An interrupt, SQLITE_FULL or an I/O error may have rolled the whole
        # transaction back already, savepoint included: then there is nothing to undo.
        if conn.in_transaction:
            try:
                plain(conn, f"ROLLBACK TO {_SAVEPOINT}")
                plain(conn, f"RELEASE {_SAVEPOINT}")
            except sqlite3.Error:
                pass  # the original error is the one to report
        raise
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
        statements = None
        if isinstance(conn, CapturingConnection) and not conn.in_ddl:
            statements = conn.script_statements(sql_script)
        if statements is None:
            return super().executescript(sql_script)  # type: ignore[return-value]
        conn.run_script(statements, self.execute)
        return self


class CapturingConnection(Connection):
    """``db.connect()`` with ``cdc=True``: schema changes made here are captured."""

    #: Set by :meth:`datasync.Database.connect`: the version stamped on log entries.
    next_version: Callable[[], int] = staticmethod(lambda: 0)  # type: ignore[assignment]
    #: True while :func:`run_ddl` makes its own statements here: they pass straight on.
    in_ddl = False

    def cursor(self, factory: Any = CapturingCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)  # DML only, as in sqlite3

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        return self.cursor().executescript(sql_script)

    def script_statements(self, script: str) -> list[str] | None:
        """The statements of ``script`` if one of them changes the schema, else None
        (a script without the words CREATE/ALTER/DROP is not even split)."""
        if not _DDL_WORD.search(script):
            return None
        statements = split_script(script)
        return statements if any(cdc.is_ddl(s) for s in statements) else None

    def run_script(self, statements: list[str], execute: Callable[[str], Any]) -> None:
        """Like ``executescript``: commit what is pending, then run each statement
        as written (no implicit BEGIN), schema changes captured."""
        if self.in_transaction:
            self.commit()
        level, self.isolation_level = self.isolation_level, None
        try:
            for statement in statements:
                execute(statement).fetchall()  # step it to the end, as executescript does
        finally:
            self.isolation_level = level
