"""Connection-scoped state in multi-tab mode: each tab's, wherever its writes run.

Example::

    session = TabSession(db.connection)
    kind = session.classify("CREATE TEMP TABLE scratch(v)")
    session.check(sql, kind, runs_here=True)     # raises the named error, if any
    session.begin(origin_state)                   # a batch of some tab's, here
    ...                                           # run its statements
    new_state = session.end()

Each tab has its own SQLite connection, but its writes run on the leader tab's.
So state that belongs to a connection must not silently move to the leader's:

* **Transaction statements** through ``execute``/``batch`` are refused with
  :class:`~datasync.TransactionStatementError` (``batch`` is the atomic unit).
* **TEMP tables, views and triggers** are each tab's own: a statement that writes
  only the temp schema runs on this tab's connection; a write that needs temp
  objects or a database ATTACHed to one tab raises
  :class:`~datasync.LocalObjectError`.
* **PRAGMAs that change how a connection writes** set in one tab raise
  :class:`~datasync.ConnectionPragmaError`: every tab opens with ``pragmas={...}``.
* ``last_insert_rowid()``, ``changes()`` and ``total_changes()`` answer for this
  tab's own statements: each write carries the tab's values (:class:`ConnState`);
  whoever runs it (the leader, or this tab for a temp write) sets them on its
  connection first (``sqlite3_set_last_insert_rowid``), reads SQLite's live
  values while it runs, and hands the new ones back.

Classification: see :mod:`datasync.tabs.classify`.
"""
from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DatabaseClosedError, NotSupportedError
from ..vfs import capi
from .classify import PRAGMA, Kind, kind_of, refusal

_ROW_WRITES = {9, 18, 23}
_OTHER_WRITES = {19, 24, 25, 27, 28, 29, 30}  # PRAGMA ATTACH DETACH REINDEX...
_ALTER = 26
_SCHEMA_WRITES = {1, 2, 7, 8, 10, 11, 16, 17}
_NAMED_BY_ARG1 = {2, 8, 11, 17}  # CREATE/DROP TABLE and VIEW: arg1 is the name
_CACHE_SIZE = 256


@dataclass
class ConnState:
    """A tab's ``last_insert_rowid()``, ``changes()`` and ``total_changes()``."""

    rowid: int = 0
    changes: int = 0
    total: int = 0

    def to_wire(self) -> dict[str, int]:
        return {"rowid": self.rowid, "changes": self.changes, "total": self.total}

    @classmethod
    def from_wire(cls, raw: Any) -> "ConnState":
        if not isinstance(raw, dict):
            return cls()
        return cls(int(raw.get("rowid", 0)), int(raw.get("changes", 0)),
                   int(raw.get("total", 0)))


@dataclass
class _Running:
    """Statements of some tab running on this connection (its values set on it)."""

    origin: ConnState
    start_total: int
    changes: int  # changes() as the next statement starts


@dataclass
class _Recording:
    actions: list[tuple[int, Any, Any, Any]] = field(default_factory=list)


def _table_written(action: int, arg1: Any, arg2: Any) -> str | None:
    """The table a write action changes, for change notices: its rows (INSERT,
    UPDATE, DELETE), or its schema (CREATE/DROP TABLE or VIEW: arg1; an index or a
    trigger on it: arg2; ALTER TABLE: arg2)."""
    if action in _ROW_WRITES or action in _NAMED_BY_ARG1:
        return str(arg1) if arg1 else None
    if action in _SCHEMA_WRITES or action == _ALTER:
        return str(arg2) if arg2 else None
    return None


class TabSession:
    """The per-connection state of one tab, kept on its own connection."""

    def __init__(self, conn: sqlite3.Connection,
                 set_authorizer: Callable[[Any], None] | None = None) -> None:
        handle = getattr(conn, "handle", None)
        if not handle:
            raise NotSupportedError(
                "SQLite did not identify this tab's connection (SQLITE_FCNTL_PDB), so "
                "multi-tab statements cannot be classified; this SQLite is too old")
        self.conn = conn
        self.handle = int(handle)
        self.state = ConnState()
        self.closed = False
        self._lib = capi.sqlite_library()
        self._recording: _Recording | None = None
        self._tables: set[str] | None = None
        self._running: _Running | None = None
        self._temp_guard = False
        self._cache: OrderedDict[str, Kind | None] = OrderedDict()
        # (the database's own setter remembers it: expiring statements sets it again)
        (set_authorizer or conn.set_authorizer)(self._authorize)
        conn.create_function("last_insert_rowid", 0, self._last_insert_rowid)
        conn.create_function("changes", 0, self._changes)
        conn.create_function("total_changes", 0, self._total_changes)

    def close(self) -> None:
        """The connection is about to close: never touch its handle again."""
        self.closed = True

    # -- classification -----------------------------------------------------------
    def forget(self) -> None:
        """The schema changed (a catch-up, a temp object): classify afresh."""
        self._cache.clear()

    def classify(self, sql: str) -> Kind | None:
        """What ``sql`` does (one statement), or None if SQLite cannot prepare it
        here (a syntax error, a table this tab's copy lacks yet): run it to see."""
        if self.closed:
            raise DatabaseClosedError("this tab's database is closed; open it again")
        if sql in self._cache:
            self._cache.move_to_end(sql)
            return self._cache[sql]
        recording = self._recording = _Recording()
        try:
            facts = capi.statement_facts(self.handle, sql)  # None: not prepared
        finally:
            self._recording = None
        readonly = None if facts is None else facts[0] or facts[1]
        if facts is not None and facts[1]:
            # EXPLAIN [QUERY PLAN] of anything only describes it: a read here,
            # whatever the explained statement's actions (it never runs).
            recording.actions = [a for a in recording.actions if a[0] == sqlite3.SQLITE_READ]
        denied_pragma = any(a[0] == PRAGMA for a in recording.actions)
        kind = kind_of(bool(readonly), recording.actions) \
            if denied_pragma or readonly is not None else None
        self._cache[sql] = kind
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return kind

    def check(self, sql: str, kind: Kind | None, *, runs_here: bool,
              for_another_tab: bool = False) -> None:
        """Raise the named error for what cannot run correctly in multi-tab mode
        (see :func:`datasync.tabs.classify.refusal`)."""
        error = refusal(sql, kind, runs_here=runs_here, for_another_tab=for_another_tab,
                        is_temp_table=self._is_temp_table)
        if error is not None:
            raise error

    def _is_temp_table(self, table: str) -> bool:
        row = sqlite3.Connection.execute(
            self.conn, "SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = ?",
            (table,)).fetchone()
        return row is not None

    # -- the authorizer: records while classifying, guards temp writes ------------
    def _authorize(self, action: int, arg1: Any, arg2: Any, schema: Any, source: Any) -> int:
        recording = self._recording
        if recording is not None:
            recording.actions.append((action, arg1, arg2, schema))
            if action == PRAGMA:
                # Some PRAGMAs act while being prepared (foreign_keys, query_only...):
                # classifying one must not run it. Denied here, judged by its name.
                return sqlite3.SQLITE_DENY
        if self._temp_guard and (
                (action == _ALTER and arg1 != "temp") or action in _OTHER_WRITES
                or (action in _ROW_WRITES or action in _SCHEMA_WRITES) and schema != "temp"):
            return sqlite3.SQLITE_DENY
        tables = self._tables
        if tables is not None and schema != "temp":
            table = _table_written(action, arg1, arg2)
            if table and not table.startswith(("sqlite_", "_datasync")):
                tables.add(table)
        return sqlite3.SQLITE_OK

    def guard_temp(self, on: bool) -> None:
        """While on, SQLite refuses (at prepare) every write outside the temp
        schema: a temp-only statement run on this tab can never write shared data,
        even if the schema changed since it was classified."""
        self._temp_guard = on

    def record_tables(self, tables: set[str] | None) -> None:
        """Collect the tables written from now on (None: stop)."""
        self._tables = tables

    # -- last_insert_rowid(), changes(), total_changes() ---------------------------
    def begin(self, origin: ConnState) -> None:
        """Statements of the tab whose values are ``origin`` start running on this
        connection: its values become the connection's."""
        self._lib.sqlite3_set_last_insert_rowid(self.handle, origin.rowid)
        self._running = _Running(origin, self._lib.sqlite3_total_changes(self.handle),
                                 origin.changes)

    def ran(self, kind: Kind | None) -> None:
        """One of them completed: an INSERT/UPDATE/DELETE (``kind.dml``) sets
        ``changes()`` to SQLite's count (rows of a CTE write included)."""
        running = self._running
        if running is not None and kind is not None and kind.dml:
            running.changes = int(self._lib.sqlite3_changes(self.handle))

    def end(self) -> ConnState:
        """They are done: the tab's new values, as SQLite counted them."""
        running, self._running = self._running, None
        if running is None:
            return self.state
        return ConnState(
            int(self._lib.sqlite3_last_insert_rowid(self.handle)), running.changes,
            running.origin.total + int(self._lib.sqlite3_total_changes(self.handle))
            - running.start_total)

    def _last_insert_rowid(self) -> int:
        if self._running is not None:
            return int(self._lib.sqlite3_last_insert_rowid(self.handle))
        return self.state.rowid

    def _changes(self) -> int:
        running = self._running
        return running.changes if running is not None else self.state.changes

    def _total_changes(self) -> int:
        running = self._running
        if running is not None:
            return running.origin.total + int(
                self._lib.sqlite3_total_changes(self.handle)) - running.start_total
        return self.state.total
