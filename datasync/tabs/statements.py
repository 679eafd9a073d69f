"""Connection-scoped state in multi-tab mode: what runs where, decided by SQLite.

Example::

    session = TabSession(db._conn)
    kind = session.classify("CREATE TEMP TABLE scratch(v)")
    assert kind.temp_only                   # runs on this tab's own connection
    session.classify("BEGIN").transaction   # refused: see TransactionStatementError

Each tab has its own SQLite connection, but its writes run on the leader tab's.
So state that belongs to a connection must not silently move to the leader's:

* **Transaction statements** (BEGIN, COMMIT, ROLLBACK, END, SAVEPOINT, RELEASE)
  through ``execute``/``batch`` are refused with
  :class:`~datasync.TransactionStatementError` (``batch`` is the atomic unit).
* **TEMP tables, views and triggers** are each tab's own: a statement that writes
  only the temp schema runs on this tab's connection; one that writes shared
  tables and touches temp objects (a temp trigger on a shared table, an INSERT
  ... SELECT from a temp table) or a database ATTACHed to one tab is refused with
  :class:`~datasync.LocalObjectError`, since the leader cannot see them.
* **PRAGMAs that change how a connection writes** (``foreign_keys``...) set in
  one tab raise :class:`~datasync.ConnectionPragmaError`: open every tab with
  ``pragmas={...}`` (applied to every connection datasync makes).
* ``last_insert_rowid()``, ``changes()`` and ``total_changes()`` answer for this
  tab's own statements, wherever they ran: each write carries the tab's values to
  the leader, which sets them on its connection before running it and sends the
  new ones back (:class:`ConnState`).

A statement is classified by preparing it (``sqlite3_prepare_v2``, never run)
with an authorizer that records what SQLite says it does, and by
``sqlite3_stmt_readonly``: decided by SQLite's parser, not by matching text.
"""
from __future__ import annotations

import ctypes
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConnectionPragmaError, LocalObjectError, TransactionStatementError
from ..vfs import capi

# Authorizer action codes (sqlite3.h)
_TEMP_CREATES = {3, 4, 5, 6}   # CREATE_TEMP_INDEX/TABLE/TRIGGER/VIEW
_TEMP_DROPS = {12, 13, 14, 15}  # DROP_TEMP_INDEX/TABLE/TRIGGER/VIEW
_SCHEMA_WRITES = {1, 2, 7, 8, 10, 11, 16, 17}  # CREATE/DROP INDEX/TABLE/TRIGGER/VIEW
_ROW_WRITES = {9, 18, 23}       # DELETE, INSERT, UPDATE
_OTHER_WRITES = {19, 24, 25, 26, 27, 28, 29, 30}  # PRAGMA ATTACH DETACH ALTER REINDEX ANALYZE VTABs
_READ, _TRANSACTION, _SAVEPOINT, _FUNCTION, _PRAGMA = 20, 22, 32, 31, 19
#: PRAGMAs that change how a connection writes (or whether it may): set in one tab
#: they would not apply to its writes, which run on the leader's connection.
WRITE_PRAGMAS = frozenset({
    "foreign_keys", "defer_foreign_keys", "recursive_triggers", "ignore_check_constraints",
    "case_sensitive_like", "legacy_alter_table", "trusted_schema", "writable_schema",
    "secure_delete", "count_changes", "query_only"})
_CREATE_TEMP_TRIGGER = 5
STATE_FUNCTIONS = ("last_insert_rowid", "changes", "total_changes")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class Kind:
    """What one statement does, as SQLite prepared it."""

    readonly: bool
    transaction: bool = False
    writes: frozenset[str] = frozenset()  # schemas written ("main", "temp", ...)
    other_writes: bool = False  # PRAGMA, ATTACH, ALTER... (never run locally)
    reads_temp: bool = False
    temp_triggers_on: tuple[str, ...] = ()  # tables a new TEMP trigger is on
    attached: frozenset[str] = frozenset()  # schemas used besides main and temp
    pragma: str | None = None  # a PRAGMA statement: its name, lower case (run to see)
    pragma_set: str | None = None  # ... when it sets a value

    @property
    def temp_only(self) -> bool:
        """Writes the temp schema and nothing else: it stays on this tab."""
        return bool(self.writes) and self.writes <= {"temp"} and not self.other_writes

    @property
    def touches_temp(self) -> bool:
        return self.reads_temp or "temp" in self.writes


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
class _Applying:
    """A batch from some tab, running on this (the leader's) connection."""

    origin: ConnState
    start_total: int
    dml_seen: bool = False
    last_dml_changes: int = 0


@dataclass
class _Recording:
    actions: list[tuple[int, Any, Any, Any]] = field(default_factory=list)


class TabSession:
    """The per-connection state of one tab, kept on its own connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        handle = getattr(conn, "handle", None)
        if not handle:
            raise TransactionStatementError(
                "SQLite did not identify this tab's connection (SQLITE_FCNTL_PDB), so "
                "multi-tab statements cannot be classified; this SQLite is too old")
        self.conn = conn
        self.handle = int(handle)
        self.state = ConnState()
        self._lib = capi.sqlite_library()
        self._recording: _Recording | None = None
        self._tables: set[str] | None = None
        self._applying: _Applying | None = None
        self._temp_guard = False
        self._cache: OrderedDict[str, Kind | None] = OrderedDict()
        conn.set_authorizer(self._authorize)
        conn.create_function("last_insert_rowid", 0, self._last_insert_rowid)
        conn.create_function("changes", 0, self._changes)
        conn.create_function("total_changes", 0, self._total_changes)

    # -- classification -----------------------------------------------------------
    def forget(self) -> None:
        """The schema changed (a catch-up, a temp object): classify afresh."""
        self._cache.clear()

    def classify(self, sql: str) -> Kind | None:
        """What ``sql`` does (one statement), or None if SQLite cannot prepare it
        here (a syntax error, a table this tab's copy lacks yet): run it to see."""
        if sql in self._cache:
            self._cache.move_to_end(sql)
            return self._cache[sql]
        recording = self._recording = _Recording()
        stmt = ctypes.c_void_p()
        try:
            rc = self._lib.sqlite3_prepare_v2(self.handle, sql.encode(), -1,
                                              ctypes.byref(stmt), None)
            readonly = bool(stmt.value) and bool(self._lib.sqlite3_stmt_readonly(stmt))
        finally:
            self._recording = None
            if stmt.value:
                self._lib.sqlite3_finalize(stmt)
        pragma = next((a for a in recording.actions if a[0] == _PRAGMA), None)
        if pragma is not None:  # prepared no further: see _authorize
            kind: Kind | None = Kind(readonly=False, pragma=str(pragma[1]).lower(),
                                     pragma_set=None if pragma[2] is None else str(pragma[1]).lower())
        else:
            kind = None if rc != 0 or not stmt.value else self._kind(readonly, recording.actions)
        self._cache[sql] = kind
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return kind

    @staticmethod
    def _kind(readonly: bool, actions: list[tuple[int, Any, Any, Any]]) -> Kind:
        writes: set[str] = set()
        other = transaction = reads_temp = False
        triggers = []
        attached: set[str] = set()
        for action, arg1, arg2, schema in actions:
            if schema not in (None, "main", "temp"):
                attached.add(str(schema))
            if action in (_TRANSACTION, _SAVEPOINT):
                transaction = True
            elif action in _TEMP_CREATES or action in _TEMP_DROPS:
                writes.add("temp")
                if action == _CREATE_TEMP_TRIGGER and arg2:
                    triggers.append(str(arg2))
            elif action in _ROW_WRITES or action in _SCHEMA_WRITES:
                writes.add(str(schema or "main"))
            elif action in _OTHER_WRITES:
                other = True
            elif action == _READ and schema == "temp" and arg1 != "sqlite_temp_master":
                reads_temp = True
        return Kind(readonly and not transaction, transaction, frozenset(writes), other,
                    reads_temp, tuple(triggers), frozenset(attached))

    def check_for_tabs(self, sql: str, kind: Kind | None, *, runs_here: bool,
                       for_another_tab: bool = False) -> None:
        """Refuse what cannot run correctly in multi-tab mode (named errors saying
        what to use instead). ``runs_here``: on this tab's own connection;
        ``for_another_tab``: the leader checking a write another tab sent."""
        if kind is None:
            return
        if kind.pragma_set in WRITE_PRAGMAS:
            raise ConnectionPragmaError(
                f"PRAGMA {kind.pragma_set} set in one tab would not apply to its writes, "
                "which run on the leader tab's connection: open every tab with "
                f"pragmas={{{kind.pragma_set!r}: ...}} instead")
        if kind.attached and not kind.readonly:
            raise LocalObjectError(
                f"this write uses {', '.join(sorted(kind.attached))}, a database attached "
                "to one tab's connection only; writes run on the leader tab, which cannot "
                "see it: write it from a connection of its own")
        if for_another_tab and kind.touches_temp:
            raise LocalObjectError(
                "the leader tab has a TEMP object named like a table this write uses, "
                "and its connection would resolve the name to it: qualify the table "
                "(main.<name>) or drop that TEMP object in the leader tab")
        if kind.transaction:
            raise TransactionStatementError(
                f"{sql.strip()[:40]!r}: transaction statements (BEGIN, COMMIT, ROLLBACK, "
                "SAVEPOINT, RELEASE) cannot run through execute() or batch() on a "
                "database shared by tabs, whose writes run on the leader tab's "
                "connection: pass the statements that must apply together to "
                "batch([...]), which runs them atomically")
        for table in kind.temp_triggers_on:
            if not self._is_temp_table(table):
                raise LocalObjectError(
                    f"a TEMP trigger on the shared table {table!r} would never fire: "
                    "writes run on the leader tab's connection. Use an ordinary trigger "
                    "(shared by every tab), or put the trigger on a TEMP table")
        if kind.temp_only:
            if runs_here:
                return
            raise LocalObjectError(
                "this statement writes only this tab's TEMP objects, which live on this "
                "tab's connection: run it with execute(), not in batch() or queue_write(), "
                "which run on the leader tab")
        if kind.touches_temp and not kind.readonly:
            raise LocalObjectError(
                "this statement writes shared tables and uses this tab's TEMP objects, "
                "which the leader tab (where writes run) cannot see: read the temp data "
                "first and pass it as parameters, or make the objects ordinary tables")

    def _is_temp_table(self, table: str) -> bool:
        row = sqlite3.Connection.execute(
            self.conn, "SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = ?",
            (table,)).fetchone()
        return row is not None

    # -- the authorizer: records while classifying, tables while applying -----------
    def _authorize(self, action: int, arg1: Any, arg2: Any, schema: Any, source: Any) -> int:
        recording = self._recording
        if recording is not None:
            recording.actions.append((action, arg1, arg2, schema))
            if action == _PRAGMA:
                # Some PRAGMAs act while being prepared (foreign_keys, query_only...):
                # classifying one must not run it. Denied here, decided by its name.
                return sqlite3.SQLITE_DENY
        if self._temp_guard and (action in _OTHER_WRITES or (
                action in _ROW_WRITES or action in _SCHEMA_WRITES) and schema != "temp"):
            return sqlite3.SQLITE_DENY
        tables = self._tables
        if tables is not None and action in _ROW_WRITES and arg1 \
                and not str(arg1).startswith(("sqlite_", "_datasync")):
            tables.add(str(arg1))
        return sqlite3.SQLITE_OK

    def guard_temp(self, on: bool) -> None:
        """While on, SQLite refuses (at prepare) every write outside the temp
        schema: a temp-only statement run on this tab can never write shared data,
        even if the schema changed since it was classified."""
        self._temp_guard = on

    def ran_here(self, rowcount: int, lastrowid: int | None) -> None:
        """A statement ran on this tab's own connection (a temp write)."""
        self.state.rowid = int(self._lib.sqlite3_last_insert_rowid(self.handle))
        if rowcount >= 0:
            self.state.changes = rowcount
            self.state.total += rowcount

    def record_tables(self, tables: set[str] | None) -> None:
        """Collect the tables written from now on (None: stop)."""
        self._tables = tables

    # -- last_insert_rowid(), changes(), total_changes() ---------------------------
    def begin_apply(self, origin: ConnState) -> None:
        """As the leader, before running a batch of ``origin``'s: its values become
        this connection's, so its statements see them."""
        self._lib.sqlite3_set_last_insert_rowid(self.handle, origin.rowid)
        self._applying = _Applying(origin, self._lib.sqlite3_total_changes(self.handle))

    def applied_statement(self, rowcount: int) -> None:
        """A statement of the batch ran (``rowcount`` >= 0 for INSERT/UPDATE/DELETE)."""
        applying = self._applying
        if applying is not None and rowcount >= 0:
            applying.dml_seen = True
            applying.last_dml_changes = rowcount

    def end_apply(self) -> ConnState:
        """The batch is done: the origin tab's new values."""
        applying, self._applying = self._applying, None
        assert applying is not None
        origin = applying.origin
        return ConnState(
            self._lib.sqlite3_last_insert_rowid(self.handle),
            applying.last_dml_changes if applying.dml_seen else origin.changes,
            origin.total + self._lib.sqlite3_total_changes(self.handle) - applying.start_total)

    def _last_insert_rowid(self) -> int:
        if self._applying is not None:
            return int(self._lib.sqlite3_last_insert_rowid(self.handle))
        return self.state.rowid

    def _changes(self) -> int:
        applying = self._applying
        if applying is not None:
            return applying.last_dml_changes if applying.dml_seen else applying.origin.changes
        return self.state.changes

    def _total_changes(self) -> int:
        applying = self._applying
        if applying is not None:
            return applying.origin.total + int(
                self._lib.sqlite3_total_changes(self.handle)) - applying.start_total
        return self.state.total
