"""Query plans for :func:`datasync.app.analysis.explain`: the plan tree, and the
indexes SQLite's planner would use, tried on the private schema copy.

Example::

    rows = [(2, 0, "SCAN t")]                        # (id, parent, detail)
    tree(rows, {"t": "t"}, set())   # [{"id": 2, "detail": "SCAN t", "full_scan": True,
                                    #   "table": "t", "children": []}]
    suggest(copy, Trial(copy, sql, params), "t", ["a"])   # {"table", "columns", "sql"}

``copy`` is the schema copy of :mod:`.analysis` (``conn``, ``plan(sql, params)``,
``tables``, ``indexes``, ``names``); the algorithm is described in
:func:`~datasync.app.analysis.explain`.
"""
from __future__ import annotations

import itertools
import re
import sqlite3
from typing import Any

_ROW = re.compile(r"(?P<kind>SCAN|SEARCH) (?:TABLE )?(?P<name>.+?)"
                  r"(?: USING (?P<using>.+?))?(?: \((?P<terms>[^()]*)\))?$")
_TERM = re.compile(r"(?P<col>.+?)(?P<op>=|>=|<=|>|<)\?$")
_probe_names = itertools.count()


def parse(detail: str) -> dict[str, Any] | None:
    """A SCAN/SEARCH row's parts, or None (other rows, virtual tables).

    Example: ``parse("SEARCH t USING INDEX i (a=? AND b>?)")`` -> ``{"kind": "SEARCH",
    "name": "t", "using": "INDEX i", "terms": ["a=?", "b>?"]}`` (``name``: the table,
    or its alias, as SQLite shows it)."""
    m = _ROW.match(detail)
    if m is None or "VIRTUAL TABLE" in detail:
        return None
    return {"kind": m["kind"], "name": m["name"], "using": m["using"] or "",
            "terms": [t for t in (m["terms"] or "").split(" AND ") if t]}


def tree(rows: list[tuple[int, int, str]], table_of: dict[str, str],
         not_tables: set[str]) -> list[dict[str, Any]]:
    """The plan rows nested by parent (see :func:`~datasync.app.analysis.explain`
    for the shape); ``table_of``: plan names (lower case) -> tables; ``not_tables``:
    names of CTEs and subqueries (MATERIALIZE, CO-ROUTINE rows).

    Example: ``tree([(2, 0, "SCAN t")], {"t": "t"}, set())``"""
    nodes: dict[int, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for id_, parent, detail in rows:
        parsed = parse(detail)
        table = None
        if parsed is not None and parsed["name"] not in not_tables:
            table = table_of.get(parsed["name"].lower())
        using = parsed["using"] if parsed else ""
        full = bool(parsed and table and parsed["kind"] == "SCAN"
                    and "COVERING INDEX" not in using)
        node = {"id": id_, "detail": detail, "full_scan": full, "table": table,
                "children": []}
        nodes[id_] = node
        (nodes[parent]["children"] if parent in nodes else roots).append(node)
    return roots


def walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every node of a plan tree, depth first. Example: ``walk(tree(rows, ...))``"""
    return [m for n in nodes for m in [n, *walk(n["children"])]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Trial:
    """Candidate indexes tried on the copy, each inside a savepoint rolled back.

    Example: ``Trial(copy, sql, params).search("t", ["a", "b"])`` -> ``[("a", "="),
    ("b", "range")]``"""

    def __init__(self, copy: Any, sql: str, params: Any) -> None:
        self.copy, self.sql, self.params = copy, sql, params

    def plan_with(self, indexes: dict[str, tuple[str, list[str]]]
                  ) -> list[tuple[int, int, str]]:
        """The copy's plan with the extra ``indexes`` (name -> (table, columns))."""
        conn = self.copy.conn
        conn.execute("SAVEPOINT datasync_probe")
        try:
            for name, (table, cols) in indexes.items():
                conn.execute(f"CREATE INDEX {_quote(name)} ON {_quote(table)}"
                             f"({', '.join(_quote(c) for c in cols)})")
            return self.copy.plan(self.sql, self.params)
        except sqlite3.Error:
            return []
        finally:
            conn.execute("ROLLBACK TO datasync_probe")
            conn.execute("RELEASE datasync_probe")

    def default_collations(self, table: str, cols: list[str]) -> list[str] | None:
        """The collations an index on ``cols`` made without COLLATE gets (the
        columns' own). Example: ``trial.default_collations("t", ["a"])  # ["BINARY"]``"""
        conn = self.copy.conn
        conn.execute("SAVEPOINT datasync_collations")
        try:
            conn.execute(f"CREATE INDEX _datasync_collations ON {_quote(table)}"
                         f"({', '.join(_quote(c) for c in cols)})")
            return collations(conn, "_datasync_collations")
        except sqlite3.Error:
            return None
        finally:
            conn.execute("ROLLBACK TO datasync_collations")
            conn.execute("RELEASE datasync_collations")

    def search(self, table: str, cols: list[str]) -> list[tuple[str, str]]:
        """With an index on ``table(cols)``: the (column, "=" or "range") terms a
        SEARCH through it uses, in index order ([]: the planner does not search
        through it)."""
        name = f"_datasync_probe_{next(_probe_names)}"
        for _, _, detail in self.plan_with({name: (table, cols)}):
            p = parse(detail)
            if p and p["kind"] == "SEARCH" and p["using"].endswith(f"INDEX {name}"):
                ops: dict[str, str] = {}
                for term in p["terms"]:
                    t = _TERM.match(term)
                    if t:
                        ops.setdefault(t["col"], "=" if t["op"] == "=" else "range")
                return [(c, ops[c]) for c in cols if c in ops]
        return []


def suggest(copy: Any, trial: Trial, table: str, columns: list[str]
            ) -> dict[str, Any] | None:
    """The index serving ``table``'s scan, or None; ``columns``: those of ``table``
    the statement reads (the algorithm: :func:`~datasync.app.analysis.explain`).

    Example: ``suggest(copy, trial, "t", ["a", "b"])`` -> ``{"table": "t", "columns":
    ["a"], "sql": 'CREATE INDEX IF NOT EXISTS "idx_t_a" ON "t"("a")'}``"""
    eq: list[str] = []
    ranged: list[str] = []
    for col in columns:
        used = trial.search(table, [col])
        if used == [(col, "=")]:
            eq.append(col)
        elif used == [(col, "range")]:
            ranged.append(col)
    wanted = eq + ranged[:1]
    if len(wanted) > 1:  # verify the combined index: keep the prefix the plan uses
        used_cols = [c for c, _ in trial.search(table, wanted)]
        wanted = [c for c in wanted if c in used_cols] or wanted[:1]
    if not wanted:
        return None
    default = trial.default_collations(table, wanted)
    for name, (itable, icols) in copy.indexes.items():  # one is there: statistics decided
        if itable.lower() == table.lower() and icols[:len(wanted)] == wanted \
                and copy.collations.get(name, [])[:len(wanted)] == default:
            return None  # (one on other collations, NOCASE say, serves other comparisons)
    base = re.sub(r"\W", "_", f"idx_{table}_{'_'.join(wanted)}")
    name, n = base, 1
    while name.lower() in copy.names:
        n += 1
        name = f"{base}_{n}"
    return {"table": table, "columns": wanted,
            "sql": f"CREATE INDEX IF NOT EXISTS {_quote(name)} ON {_quote(table)}"
                   f"({', '.join(_quote(c) for c in wanted)})"}


def tables_of(trial: Trial, rows: list[tuple[int, int, str]], reads: dict[str, list[str]],
              not_tables: set[str]) -> dict[str, str]:
    """Example: ``tables_of(trial, rows, {"t": ["a"]}, set())`` -> ``{"t": "t", "t2": "t"}``

    Plan names (lower case) -> tables. SQLite shows ``SCAN t2`` for ``FROM t AS
    t2``: an alias is learnt by giving every table read a probe index on the columns
    it reads (a plan row going through one names its table); one alias left when
    one table read is named by no row is that table."""
    table_of = dict(trial.copy.tables)
    names = {p["name"] for p in map(parse, (d for _, _, d in rows))
             if p and not p["name"].startswith("(") and p["name"] != "CONSTANT ROW"
             } - not_tables
    if all(n.lower() in table_of for n in names):
        return table_of
    for name, table in _by_loop_order(trial, not_tables).items():
        table_of.setdefault(name, table)
    if all(n.lower() in table_of for n in names):
        return table_of
    probes = {f"_datasync_alias_{next(_probe_names)}": (table, cols[:60])
              for table, cols in reads.items() if cols}
    for _, _, detail in trial.plan_with(probes) if probes else []:
        p = parse(detail)
        for name, (table, _) in probes.items():
            if p and p["using"].endswith(f"INDEX {name}"):
                table_of[p["name"].lower()] = table
    left = {n.lower() for n in names if n.lower() not in table_of}
    rest = set(reads) - {table_of[n.lower()] for n in names if n.lower() in table_of}
    if len(left) == 1 and len(rest) == 1:
        table_of[left.pop()] = rest.pop()
    return table_of


#: Opcodes that start a loop over (or a lookup in) a cursor, one per plan level.
_LOOP_STARTS = frozenset({"Rewind", "Last", "SeekGE", "SeekGT", "SeekLE", "SeekLT",
                          "SeekRowid", "NotExists"})


def _by_loop_order(trial: Trial, not_tables: set[str]) -> dict[str, str]:
    """Plan names -> tables, as the statement's bytecode on the schema copy says:
    the n-th SCAN/SEARCH row of the plan is the n-th cursor a loop starts on
    (``Rewind``, ``Seek*``...), whose ``OpenRead`` root page names its table (an
    index's, its ``tbl_name``). Empty when the counts differ (an OR over several
    indexes, a construct this does not follow): then the probes decide.

    Example: ``_by_loop_order(trial, set())`` -> ``{"x": "t", "y": "u"}`` for
    ``SELECT * FROM t x JOIN u y ON y.t_id = x.id WHERE y.w = 3``"""
    conn = trial.copy.conn
    try:
        program = conn.execute("EXPLAIN " + trial.sql, _trial_params(trial)).fetchall()
        plan = trial.copy.plan(trial.sql, trial.params)
        roots = dict(conn.execute(
            "SELECT rootpage, tbl_name FROM sqlite_schema WHERE rootpage > 0").fetchall())
    except (sqlite3.Error, ValueError, TypeError):
        return {}
    cursors: dict[int, str] = {}
    order: list[str] = []
    for _, opcode, p1, p2, p3, *_ in program:
        if opcode in ("OpenRead", "OpenWrite") and p3 == 0 and p2 in roots:
            cursors[p1] = roots[p2]
        elif opcode in _LOOP_STARTS and p1 in cursors:
            order.append(cursors.pop(p1))  # (popped: one level per cursor)
    levels = [p["name"] for p in map(parse, (r[2] for r in plan))
              if p and not p["name"].startswith("(") and p["name"] != "CONSTANT ROW"
              and p["name"] not in not_tables]
    if len(levels) != len(order):
        return {}
    found: dict[str, str] = {}
    for name, table in zip(levels, order):
        if found.setdefault(name.lower(), table) != table:
            return {}  # one name, two tables: not what it seemed
    return found


def _trial_params(trial: Trial) -> Any:
    params = trial.params if trial.params is not None else ()
    return dict(params) if isinstance(params, dict) else tuple(params)


def collations(conn: sqlite3.Connection, index: str) -> list[str]:
    """The collation of each key column of ``index``, in order.

    Example: ``collations(conn, "t_a_nocase")  # ["NOCASE"]``"""
    return [str(r[0]).upper() for r in conn.execute(
        "SELECT coll FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno", (index,))]
