"""What a statement does, as SQLite itself prepares it, and what tabs may not run.

Example::

    kind = classify_with(recorder, lib, handle, "CREATE TEMP TABLE scratch(v)")
    assert kind.temp_only                      # stays on this tab's connection
    refusal(kind_of("BEGIN"), ...)             # TransactionStatementError

A statement is prepared with ``sqlite3_prepare_v2`` on the tab's own connection
(never run) while an authorizer records every action SQLite checks, and
``sqlite3_stmt_readonly`` says whether it writes the database. PRAGMAs are denied
while recording (some act during preparation: ``query_only``, ``foreign_keys``),
so a PRAGMA is judged by its name. Nothing is decided from the statement's text.

Rows written to ``sqlite_master``/``sqlite_temp_master`` are bookkeeping of a
schema change, which is classified by its own action (CREATE_*, DROP_*, ALTER):
an ``ALTER TABLE ... RENAME`` rewrites ``sqlite_temp_master`` too, without touching
any temp object.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ConnectionPragmaError,
    LocalObjectError,
    TransactionStatementError,
)

# Authorizer action codes (sqlite3.h)
_TEMP_CREATES = {3, 4, 5, 6}   # CREATE_TEMP_INDEX/TABLE/TRIGGER/VIEW
_TEMP_DROPS = {12, 13, 14, 15}  # DROP_TEMP_INDEX/TABLE/TRIGGER/VIEW
_SCHEMA_WRITES = {1, 2, 7, 8, 10, 11, 16, 17}  # CREATE/DROP INDEX/TABLE/TRIGGER/VIEW
_ROW_WRITES = {9, 18, 23}       # DELETE, INSERT, UPDATE
_OTHER_WRITES = {24, 25, 27, 28, 29, 30}  # ATTACH DETACH REINDEX ANALYZE CREATE/DROP VTABLE
_CREATE_TEMP_TRIGGER, PRAGMA, _READ, _TRANSACTION, _ALTER, _SAVEPOINT = 5, 19, 20, 22, 26, 32
_MASTERS = ("sqlite_master", "sqlite_temp_master")
#: PRAGMAs that change how a connection writes (or whether it may): set in one tab
#: they would not apply to its writes, which run on the leader's connection.
WRITE_PRAGMAS = frozenset({
    "foreign_keys", "defer_foreign_keys", "recursive_triggers", "ignore_check_constraints",
    "case_sensitive_like", "legacy_alter_table", "trusted_schema", "writable_schema",
    "secure_delete", "count_changes", "query_only"})


#: The savepoints :meth:`transaction` nests with (run inside the leader's
#: transaction, never refused).
INTERNAL_SAVEPOINT = re.compile(r"(SAVEPOINT|RELEASE|ROLLBACK TO) datasync_sp_\d+\Z")


@dataclass(frozen=True)
class Kind:
    """What one statement does, as SQLite prepared it."""

    readonly: bool
    transaction: bool = False
    writes: frozenset[str] = frozenset()  # schemas written ("main", "temp", ...)
    other_writes: bool = False  # ATTACH, REINDEX, ANALYZE, virtual tables
    reads_temp: bool = False
    temp_triggers_on: tuple[str, ...] = ()  # tables a new TEMP trigger is on
    attached: frozenset[str] = frozenset()  # schemas used besides main and temp
    dml: bool = False  # INSERT/UPDATE/DELETE rows: sets changes()
    pragma: str | None = None  # a PRAGMA statement: its name, lower case (run to see)
    pragma_set: str | None = None  # ... when it sets a value

    @property
    def temp_only(self) -> bool:
        """Writes the temp schema and nothing else: it stays on this tab."""
        return bool(self.writes) and self.writes <= {"temp"} and not self.other_writes

    @property
    def touches_temp(self) -> bool:
        return self.reads_temp or "temp" in self.writes


def kind_of(readonly: bool, actions: list[tuple[int, Any, Any, Any]]) -> Kind:
    """The :class:`Kind` of a statement from what its preparation recorded."""
    pragma = next((a for a in actions if a[0] == PRAGMA), None)
    if pragma is not None:  # denied while recording: judged by its name
        name = str(pragma[1]).lower()
        return Kind(readonly=False, pragma=name, pragma_set=None if pragma[2] is None else name)
    writes: set[str] = set()
    used: set[str] = set()
    triggers: list[str] = []
    transaction = other = reads_temp = dml = False
    for action, arg1, arg2, schema in actions:
        if action in (_TRANSACTION, _SAVEPOINT):
            transaction = True
        elif action == _ALTER:  # (database, table, column): the schema is arg1
            writes.add(str(arg1 or "main"))
            used.add(str(arg1 or "main"))
        elif action in _TEMP_CREATES or action in _TEMP_DROPS:
            writes.add("temp")
            if action == _CREATE_TEMP_TRIGGER and arg2:
                triggers.append(str(arg2))
        elif action in _SCHEMA_WRITES:
            writes.add(str(schema or "main"))
            used.add(str(schema or "main"))
        elif action in _ROW_WRITES:
            if arg1 in _MASTERS:
                continue  # a schema change's bookkeeping: see the module docstring
            writes.add(str(schema or "main"))
            used.add(str(schema or "main"))
            dml = True
        elif action in _OTHER_WRITES:
            other = True
        elif action == _READ and arg1 not in _MASTERS:
            used.add(str(schema or "main"))
            reads_temp = reads_temp or schema == "temp"
    return Kind(readonly and not transaction, transaction, frozenset(writes), other,
                reads_temp, tuple(triggers), frozenset(used - {"main", "temp"}), dml)


def refusal(sql: str, kind: Kind | None, *, runs_here: bool, for_another_tab: bool,
            is_temp_table: Any) -> Exception | None:
    """The named error for what cannot run correctly in multi-tab mode, or None.

    ``runs_here``: on this tab's own connection; ``for_another_tab``: the leader
    checking a write another tab sent; ``is_temp_table(name)`` asks this connection.
    """
    if kind is None or INTERNAL_SAVEPOINT.match(sql):
        return None
    if kind.transaction:
        return TransactionStatementError(
            f"{sql.strip()[:40]!r}: transaction statements (BEGIN, COMMIT, ROLLBACK, "
            "SAVEPOINT, RELEASE) cannot run through execute() or batch() on a database "
            "shared by tabs, whose writes run on the leader tab's connection: use "
            "transaction() (Python: async with db.transaction(); JS: await "
            "db.transaction(async (tx) => ...)), which commits or rolls back for you and "
            "nests as a savepoint, or batch([...]) for statements that apply together")
    if kind.pragma_set in WRITE_PRAGMAS:
        return ConnectionPragmaError(
            f"PRAGMA {kind.pragma_set} set in one tab would not apply to its writes, "
            "which run on the leader tab's connection: open every tab with "
            f"pragmas={{{kind.pragma_set!r}: ...}} instead")
    if kind.attached and not kind.readonly:
        return LocalObjectError(
            f"this write uses {', '.join(sorted(kind.attached))}, a database attached to "
            "one tab's connection only; writes run on the leader tab, which cannot see "
            "it: write it from a connection of its own")
    for table in kind.temp_triggers_on:
        if not is_temp_table(table):
            return LocalObjectError(
                f"a TEMP trigger on the shared table {table!r} would never fire: writes "
                "run on the leader tab's connection. Use an ordinary trigger (shared by "
                "every tab), or put the trigger on a TEMP table")
    if for_another_tab and kind.touches_temp:
        return LocalObjectError(
            "the leader tab has a TEMP object named like a table this write uses, and "
            "its connection would resolve the name to it: qualify the table "
            "(main.<name>) or drop that TEMP object in the leader tab")
    if kind.temp_only:
        if runs_here:
            return None
        return LocalObjectError(
            "this statement writes only this tab's TEMP objects, which live on this "
            "tab's connection: run it with execute(), not in batch() or queue_write(), "
            "which run on the leader tab")
    if kind.touches_temp and not kind.readonly:
        return LocalObjectError(
            "this statement writes shared tables and uses this tab's TEMP objects, which "
            "the leader tab (where writes run) cannot see: read the temp data first and "
            "pass it as parameters, or make the objects ordinary tables")
    return None
