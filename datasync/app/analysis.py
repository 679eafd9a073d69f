"""Which tables a statement reads, its query plan, and the indexes that would serve it:
as SQLite decides, never from the statement's text.

Example::

    await analysis.tables_read(db, "SELECT * FROM recent")   # frozenset({'notes'}) (a view)
    plan = await analysis.explain(db, "SELECT * FROM notes WHERE author = ?", ["ann"])
    plan["full_scans"]      # ['notes']
    plan["suggestions"]     # [{'table': 'notes', 'columns': ['author'],
                            #   'sql': 'CREATE INDEX IF NOT EXISTS "idx_notes_author"
                            #           ON "notes"("author")'}]

Both work on a *private copy of the schema*: the ``CREATE`` statements of the
database's tables, indexes and views (``sqlite_schema``, read through
``db.query``), run in a ``sqlite3.connect(":memory:")`` of this process, with the
database's ``sqlite_stat1`` when it has one (so the planner's estimates are the
same). The copy is made once per database and schema version (``PRAGMA
schema_version``) and never touches the database itself, so the same code serves a
:class:`~datasync.Database`, a leader or follower tab (whose ``EXPLAIN`` of a write
would be classified as a write and forwarded) and a replica.

Limits: a statement the copy cannot prepare (it names an attached database, a TEMP
object of the tab, a function registered on the database's connection, a virtual
table whose module this process lacks) gives ``None`` from :func:`tables_read`
("cannot tell": callers treat any change as touching it) and no suggestions from
:func:`explain`. Triggers are not copied (reads do not fire them).

The plan tree and the index trials are in :mod:`.plans`.
"""
from __future__ import annotations

import sqlite3
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..errors import NotReadOnlyError
from .plans import Trial, collations, parse, suggest, tables_of, tree, walk
from .timing import unmeasured

__all__ = ["tables_read", "explain", "schema_key"]

_READ = 20
_WRITES = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 23, 24, 25, 26,
           27, 28, 29, 30}
#: Tables whose changes no change notice names (see tabs/session.py): a statement
#: reading one is "cannot tell" (None), so any change re-runs it.
_UNANNOUNCED = ("sqlite_", "_datasync")
_CACHED_STATEMENTS = 512


async def schema_key(db: Any) -> int:
    """The database's schema version (``PRAGMA schema_version``): it moves at every
    schema change. One cheap read, skipped while ``db.commits`` and ``db.version``
    stay where they were at the last one (a schema change is a commit here or, in
    a follower tab, a catch-up to a new version).

    Example: ``if await schema_key(db) != known: ...``"""
    stamp = (_commits(db), db.version)
    known = _schema_keys.get(db)
    if known is not None and stamp[0] is not None and known[0] == stamp:
        return known[1]
    with unmeasured():  # bookkeeping, not the application's statement
        rows = await db.query("PRAGMA schema_version")
    key = int(next(iter(rows[0].values()))) if rows else 0
    try:
        _schema_keys[db] = (stamp, key)
    except TypeError:  # (an object without weak references: no caching)
        pass
    return key


def _commits(db: Any) -> int | None:
    try:
        return int(db.commits)
    except Exception:  # (a database without the count: read every time)
        return None


class _Copy:
    """The private in-memory copy of one schema version (see the module docstring)."""

    def __init__(self, key: int, rows: list[dict[str, Any]], stats: list[dict[str, Any]]):
        self.key = key
        # (no statement cache: the authorizer is called only when SQLite prepares)
        self.conn = sqlite3.connect(":memory:", isolation_level=None,
                                    check_same_thread=False, cached_statements=0)
        self.tables: dict[str, str] = {}  # lower-case name -> name, real tables only
        self.virtual: set[str] = set()
        self.names = {str(r["name"]).lower() for r in rows}  # (for new index names)
        self.views = {n.lower() for r in rows if r["type"] == "view" for n in [r["name"]]}
        self.indexes: dict[str, tuple[str, list[str]]] = {}  # lower name -> (table, cols)
        self.collations: dict[str, list[str]] = {}  # lower name -> its key columns'
        #: SQL text -> (it writes, the tables it reads or None): one prepare each.
        self.statements: OrderedDict[str, tuple[bool, frozenset[str] | None]] = OrderedDict()
        for row in rows:
            kind, name, sql = row["type"], str(row["name"]), row["sql"]
            if kind == "trigger":
                continue  # (reads do not fire them)
            if kind == "table" and not row["rootpage"]:
                self.virtual.add(name.lower())
            try:
                self.conn.execute(sql)
            except sqlite3.Error:
                continue  # (its module or function is missing here: see Limits)
            if kind == "table" and row["rootpage"]:
                self.tables[name.lower()] = name
        for name, table in self.conn.execute(
                "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index'").fetchall():
            cols = [r[2] for r in self.conn.execute(
                "SELECT * FROM pragma_index_info(?)", (name,)).fetchall()]
            partial = self.conn.execute("SELECT 1 FROM pragma_index_list(?) WHERE name = ? "
                                        "AND partial", (table, name)).fetchone()
            if not partial:  # (a partial one serves only the rows it covers)
                self.indexes[name.lower()] = (table, cols)
                self.collations[name.lower()] = collations(self.conn, name)
        if stats:
            self.conn.execute("ANALYZE")  # makes sqlite_stat1; then the database's
            self.conn.execute("DELETE FROM sqlite_stat1")
            self.conn.executemany("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)",
                                  [(s["tbl"], s["idx"], s["stat"]) for s in stats])
            self.conn.execute("ANALYZE sqlite_schema")  # loads them into the planner

    def actions(self, sql: str, params: Any = None) -> list[tuple[Any, ...]] | None:
        """What the authorizer sees while SQLite prepares ``sql`` here (None: it
        cannot be prepared). ``params`` None: NULLs, as many as it takes."""
        seen: list[tuple[Any, ...]] = []

        def record(action: int, arg1: Any, arg2: Any, schema: Any, source: Any) -> int:
            seen.append((action, arg1, arg2, schema))
            return sqlite3.SQLITE_OK

        self.conn.set_authorizer(record)
        try:
            for bound in _bindings(params):
                seen.clear()
                try:
                    self.conn.execute("EXPLAIN " + sql, bound)
                    return seen
                except sqlite3.ProgrammingError:
                    continue  # not that many parameters (or not named): the next
                except (sqlite3.Error, ValueError, TypeError, OverflowError):
                    return None
            return None
        finally:
            self.conn.set_authorizer(None)

    def reads(self, sql: str, params: Any = None) -> frozenset[str] | None:
        """The real tables ``sql`` reads, or None (see :func:`tables_read`)."""
        return self.facts(sql, params)[1]

    def facts(self, sql: str, params: Any = None) -> tuple[bool, frozenset[str] | None]:
        """Whether ``sql`` writes, and the tables it reads (None: cannot tell), from
        one preparation, kept per SQL text (a statement the copy cannot prepare:
        ``(False, None)``, the database then says what it does)."""
        if sql in self.statements:
            self.statements.move_to_end(sql)
            return self.statements[sql]
        actions = self.actions(sql, params)
        result: frozenset[str] | None = None
        if actions is not None:
            names = {str(a[1]) for a in actions if a[0] == _READ and a[1] is not None}
            tables = {self.tables.get(n.lower()) for n in names
                      if self.tables.get(n.lower()) or n.lower() not in self.views}
            if None not in tables and not any(
                    t.lower().startswith(_UNANNOUNCED) or t.lower() in self.virtual
                    for t in tables if t):
                result = frozenset(t for t in tables if t)
        writes = actions is not None and any(a[0] in _WRITES for a in actions)
        self.statements[sql] = (writes, result)
        if len(self.statements) > _CACHED_STATEMENTS:
            self.statements.popitem(last=False)
        return writes, result

    def plan(self, sql: str, params: Any) -> list[tuple[int, int, str]]:
        return [(r[0], r[1], r[3]) for r in self.conn.execute(
            "EXPLAIN QUERY PLAN " + sql, _params(params)).fetchall()]


class _AnyName(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> None:
        return None


def _params(params: Any) -> Any:
    return dict(params) if isinstance(params, dict) else tuple(params)


def _bindings(params: Any) -> Any:
    """The parameters to prepare with: ``params``, or (None) NULL for every named
    parameter, else for 0, 1, 2... positional ones (Python's sqlite3 binds as it
    prepares and wants exactly as many)."""
    if params is not None:
        yield _params(params)
        return
    yield _AnyName()
    for n in range(_MAX_PARAMS + 1):
        yield (None,) * n


_MAX_PARAMS = 250
_copies: weakref.WeakKeyDictionary[Any, _Copy] = weakref.WeakKeyDictionary()
_schema_keys: weakref.WeakKeyDictionary[Any, tuple[Any, int]] = weakref.WeakKeyDictionary()


async def _copy_of(db: Any) -> _Copy:
    """The schema copy of ``db`` at its current schema version (made when it moved)."""
    key = await schema_key(db)
    copy = _copies.get(db)
    if copy is not None and copy.key == key:
        return copy
    with unmeasured():  # bookkeeping, not the application's statements
        rows = await db.query(
            "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema "
            "WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY type = 'trigger', type = 'view', type = 'index', rowid")
        stats = await db.query("SELECT tbl, idx, stat FROM sqlite_stat1") if await db.query(
            "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'") else []
    if copy is not None:
        copy.conn.close()
    copy = _Copy(key, rows, stats)
    try:
        _copies[db] = copy
    except TypeError:  # (an object without weak references: no caching)
        pass
    return copy


async def tables_read(db: Any, sql: str, params: Any = None) -> frozenset[str] | None:
    """The tables ``sql`` reads, as SQLite resolves them, or None when it cannot tell.

    Example: ``await tables_read(db, "SELECT * FROM v JOIN u USING (id)")`` ->
    ``frozenset({'t', 'u'})`` when the view ``v`` reads ``t``.

    SQLite prepares ``sql`` on the private schema copy (module docstring) under an
    authorizer; every ``SQLITE_READ`` names a table: views are compiled inline (their
    tables appear, the view itself is dropped), subqueries and CTEs too; an index
    read counts for its table. Names are returned as the schema spells them. None
    ("any change may touch it"): the statement cannot be prepared on the copy, or it
    reads a virtual table, ``sqlite_*`` (the schema itself, statistics) or a
    ``_datasync*`` table, none of which change notices name. ``frozenset()``: it
    reads no table (``SELECT 1``). ``params`` (optional, as for ``db.query``) only
    help preparing. Cached per database, schema version and SQL text.
    Raises what ``db.query`` raises (``DatabaseClosedError``...).
    """
    copy = await _copy_of(db)
    return copy.reads(sql, params)


async def check_reads(db: Any, sql: str, params: Any, call: str) -> None:
    """Raise :class:`~datasync.NotReadOnlyError` if ``sql`` writes, as SQLite
    prepares it on the schema copy (a statement the copy cannot prepare passes:
    the database then says what it does).

    Example: ``await check_reads(db, "UPDATE t SET a = 1", [], "live")  # raises``"""
    if (await _copy_of(db)).facts(sql, params)[0]:
        why = {"live": "runs its statement again after every change",
               "cached": "answers its statement again from the rows it kept"}.get(
                   call, "runs its statement more than once")
        raise NotReadOnlyError(
            f"db.{call}() {why}, and this one "
            f"writes ({sql.strip()[:80]!r}): give it a query that only reads, and run "
            "the write once with execute()")


async def explain(db: Any, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                  ) -> dict[str, Any]:
    """The query plan of ``sql`` as a tree, its full-table scans, and the indexes
    that would serve them.

    Example::

        out = await explain(db, "SELECT * FROM t WHERE a = ? AND b > ?", [1, 2])
        # {"sql": ..., "plan": [{"id": 2, "detail": "SCAN t", "full_scan": True,
        #                        "table": "t", "children": []}],
        #  "full_scans": ["t"],
        #  "suggestions": [{"table": "t", "columns": ["a", "b"],
        #                   "sql": 'CREATE INDEX IF NOT EXISTS "idx_t_a_b" ON "t"("a", "b")'}]}

    ``plan``: the rows of ``EXPLAIN QUERY PLAN`` nested by their ``parent`` (roots
    first, in SQLite's order). A read's plan is the database's own (``db.query``); a
    write's is the schema copy's (the database is never asked to prepare a write).
    ``table``: the table a ``SCAN``/``SEARCH`` row reads (an alias resolved to its
    table), None for other rows, subqueries and CTEs. ``full_scan``: a ``SCAN`` of a
    table that reads its rows: ``SCAN t`` and ``SCAN t USING INDEX i`` (every row, in
    the index's order) are; ``SCAN t USING COVERING INDEX i`` (the index alone) and
    virtual tables are not. ``full_scans``: their tables, each once, in plan order.

    ``suggestions``, decided by SQLite's planner on the schema copy (with the
    database's ``sqlite_stat1``): for each table scanned in full (or searched through
    an AUTOMATIC index, which SQLite builds at every run), every column of it the
    statement reads gets a trial index; the columns whose index turns the scan into
    ``SEARCH t USING INDEX`` are kept, those used with ``=`` first, then at most one
    used as a range (``>``, ``<``, ``BETWEEN``); the combined index is tried too, and
    only the columns its SEARCH uses stay. No suggestion for an unfiltered scan, a
    filter no index can serve (``LIKE '%x'``, a function of the column), or when an
    index with those leading columns exists (the planner prefers the scan, by the
    statistics). Names are ``idx_<table>_<columns>`` (``\\W`` -> ``_``), numbered
    past existing names; identifiers are double-quoted. Limits: tables are judged one
    at a time (a join's indexes are not tried together); expression and partial
    indexes are never suggested; a statement the copy cannot prepare (module
    docstring) gets none. Raises what ``db.query`` raises for the statement.
    """
    copy = await _copy_of(db)
    actions = copy.actions(sql, params)
    writes = actions is not None and any(a[0] in _WRITES for a in actions)
    if writes:
        rows = copy.plan(sql, params)
    else:
        rows = [(r["id"], r["parent"], r["detail"])
                for r in await db.query("EXPLAIN QUERY PLAN " + sql, params)]
    reads: dict[str, list[str]] = {}
    for action, table, column, _ in actions or []:
        name = copy.tables.get(str(table).lower()) if action == _READ else None
        if name is not None:
            cols = reads.setdefault(name, [])  # (count(*) reads a table, no column)
            if column and column not in cols and column.lower() != "rowid":
                cols.append(column)
    not_tables = {d.split(" ", 1)[1] for _, _, d in rows
                  if d.startswith(("MATERIALIZE ", "CO-ROUTINE "))}
    trial = Trial(copy, sql, params)
    table_of = tables_of(trial, rows, reads, not_tables) if actions is not None \
        else dict(copy.tables)
    plan = tree(rows, table_of, not_tables)
    nodes = walk(plan)
    full_scans = list(dict.fromkeys(n["table"] for n in nodes if n["full_scan"]))
    targets = list(dict.fromkeys(
        n["table"] for n in nodes if n["table"] and (
            n["full_scan"] or "AUTOMATIC" in (parse(n["detail"]) or {}).get("using", ""))))
    suggestions = []
    if actions is not None:
        for table in targets:
            found = suggest(copy, trial, table, reads.get(table, []))
            if found is not None:
                suggestions.append(found)
    return {"sql": sql, "plan": plan, "full_scans": full_scans, "suggestions": suggestions}
