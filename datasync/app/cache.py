"""Cached queries: rows kept until a TTL passes or a commit touches a table they read.

Example::

    rows = await db.cached("SELECT * FROM notes WHERE author = ?", ["ann"], ttl=30)
    rows = await db.cached("SELECT * FROM notes WHERE author = ?", ["ann"], ttl=30)  # hit
    await db.execute("INSERT INTO notes(author) VALUES ('ann')")   # any tab
    rows = await db.cached("SELECT * FROM notes WHERE author = ?", ["ann"], ttl=30)  # miss

:class:`QueryCache` is the app state behind ``db.cached`` (one per database; see
:mod:`datasync.app`).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..errors import DatabaseClosedError, InvalidOptionError
from . import analysis
from .live import _names, touches

__all__ = ["QueryCache"]

Rows = list[dict[str, Any]]


class _Entry:
    __slots__ = ("rows", "tables", "expires")

    def __init__(self, rows: Rows, tables: frozenset[str] | None, expires: float) -> None:
        self.rows, self.tables, self.expires = rows, tables, expires


class QueryCache:
    """The query cache of one database: at most ``size`` entries, least recently used
    dropped first.

    Example: ``cache = QueryCache(db, metrics); rows = await cache.get(sql, [], 60.0)``

    An entry is keyed by the SQL text and its parameters (their types count: ``1``,
    ``1.0`` and ``True`` are three keys; unhashable values are not cached) and holds
    the rows and the tables the statement reads
    (:func:`datasync.app.analysis.tables_read`; None: cannot tell). It is fresh until
    ``ttl`` seconds pass (``time.monotonic``) or a change notice (``db.on_change``)
    names a table it reads (a notice with ``tables`` None drops every entry).

    Read-your-writes: a change notice can come after the call that committed has
    returned (a native :class:`~datasync.Database` announces its commits on the
    next turn of the event loop). So every lookup also reads ``db.commits`` (a
    count that moves at the commit itself): if it moved since the last notice was
    handled, every entry is dropped (what changed is not known yet). A fill that
    races a change (a notice, or ``db.commits`` moving, while it queries) returns
    its rows but does not store them.

    Figures (for ``db.metrics()``): :attr:`hits`, :attr:`misses`, ``len(cache)``.
    """

    def __init__(self, db: Any, metrics: Any = None, size: int = 256) -> None:
        self._db = db
        self._metrics = metrics
        self._size = size
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._off: Callable[[], None] | None = None
        self._generation = 0  # moves at every change notice and every drop-all
        self._commits: int | None = None  # db.commits when entries were last known good
        self._schema: int | None = None  # the schema version the entries were read at
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, sql: str, params: Sequence[Any] | dict[str, Any] = (),
                  ttl: float = 60.0) -> Rows:
        """Example: ``rows = await cache.get("SELECT * FROM t WHERE id = ?", [1], 30.0)``

        The rows of ``sql`` (a list of dicts, as ``db.query`` returns, copied: the
        caller may change them), from the cache while fresh (``ttl`` seconds; 0 or
        less: never stored). Raises what ``db.query`` raises, DatabaseClosedError
        once the database is closed (even for a cached entry)."""
        if self._db.closed:
            raise DatabaseClosedError(f"database {self._db.name!r} is closed; open it "
                                      "again to read through its cache")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise InvalidOptionError(f"ttl={ttl!r}: give the seconds rows stay fresh, a "
                                     "number (0: never kept)")
        params = () if params is None else params
        key = _key(sql, params)
        self._subscribe()
        self._check_commits()
        schema = await analysis.schema_key(self._db)
        if schema != self._schema:  # a view redefined: a notice names only the view
            self.clear()
            self._schema = schema
        entry = self._entries.get(key) if key is not None else None
        now = time.monotonic()
        if entry is not None and now < entry.expires:
            self.hits += 1
            self._entries.move_to_end(key)
            return [dict(r) for r in entry.rows]
        if entry is not None:
            del self._entries[key]
        self.misses += 1
        await analysis.check_reads(self._db, sql, params, "cached")
        generation, commits = self._generation, _commits(self._db)
        rows = await self._db.query(sql, params)
        if key is not None and ttl > 0:
            tables = await analysis.tables_read(self._db, sql, params)
            # None (TEMP tables, attached databases...): their writes make no change
            # notice and move no commit count here, so such rows are never kept.
            if tables is not None and generation == self._generation \
                    and commits == _commits(self._db):
                self._entries[key] = _Entry([dict(r) for r in rows], tables,
                                            time.monotonic() + float(ttl))
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return rows

    def clear(self) -> None:
        """Drop every entry. Example: ``cache.clear()``"""
        self._entries.clear()
        self._generation += 1

    # -- invalidation --------------------------------------------------------------------
    def _subscribe(self) -> None:
        if self._off is None and not self._db.closed:
            self._off = self._db.on_change(self._on_change)
            self._commits = _commits(self._db)

    def _check_commits(self) -> None:
        commits = _commits(self._db)
        if commits != self._commits:
            self.clear()
            self._commits = commits

    def _on_change(self, change: dict[str, Any]) -> None:
        self._generation += 1
        changed = _names(change.get("tables"))
        if changed is None:
            self._entries.clear()
        else:
            for key in [k for k, e in self._entries.items() if touches(changed, e.tables)]:
                del self._entries[key]
        self._commits = _commits(self._db)
        if self._db.closed and self._off is not None:
            off, self._off = self._off, None
            off()


def _commits(db: Any) -> int | None:
    try:
        return db.commits  # type: ignore[no-any-return]
    except Exception:  # (closed, or a database without the count: notices only)
        return None


def _key(sql: str, params: Any) -> Hashable | None:
    """(sql, typed params), or None for parameters that cannot be a key."""
    try:
        if isinstance(params, dict):
            items = tuple(sorted((str(k), _typed(v)) for k, v in params.items()))
        else:
            items = tuple(_typed(v) for v in params)
        key = (sql, isinstance(params, dict), items)
        hash(key)
        return key
    except TypeError:
        return None


def _typed(value: Any) -> tuple[str, Any]:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    return (type(value).__name__, value)
