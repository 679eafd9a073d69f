"""Live queries: a query's rows delivered now, and again whenever a commit in any tab
changes them.

Example::

    off = await db.live("SELECT id, body FROM notes ORDER BY id", [],
                        lambda rows: render(rows))     # called once before this returns
    await db.execute("INSERT INTO notes(body) VALUES ('hi')")   # any tab: render again
    off()                                              # no more calls (idempotent)

:class:`LiveQueries` is the app state behind ``db.live`` (one per database; see
:mod:`datasync.app`). It listens to ``db.on_change`` once for all its queries.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DatabaseClosedError
from . import analysis

__all__ = ["LiveQueries"]

log = logging.getLogger("datasync")
Rows = list[dict[str, Any]]


class _Query:
    def __init__(self, sql: str, params: Any, callback: Callable[[Rows], Any]) -> None:
        self.sql, self.params, self.callback = sql, params, callback
        self.tables: frozenset[str] | None = None  # None: any change may touch it
        self.rows: Rows | None = None  # the last rows delivered
        self.dirty = False  # a change came since its last run started
        self.busy = True    # a run (the first, or a re-run task) is in flight
        self.ended = False


class LiveQueries:
    """The live queries of one database.

    Example: ``live = LiveQueries(db); off = await live.add(sql, [], print); off()``

    A change notice (``db.on_change``: ``{"version", "tables", "by"}``) re-runs
    every query whose tables it may touch: its ``tables`` (None: any) meets the
    query's tables (:func:`datasync.app.analysis.tables_read`; None: any; a query
    reading no table never re-runs). Re-runs are coalesced: at most one run of a
    query is in flight; the changes that arrive during it cause exactly one more
    run after it. The callback is called only when the rows differ from the last
    ones it was given (``==`` on the list of dicts).

    Schema changes: at every change notice the schema version is read (``PRAGMA
    schema_version``, one read per notice, whatever the number of queries); when it
    moved, every query's tables are computed again and every query re-runs (a view
    redefined, a table dropped: its tables or its rows may differ, and a notice
    names only the table the schema change was about).

    A re-run that fails (a table dropped...) or a callback that raises is logged at
    WARNING on the ``datasync`` logger and counted in :attr:`errors`; the query
    stays subscribed. Once the database is closed nothing more is called and no
    task is left (a run in flight ends at its next step).

    Figures (for ``db.metrics()``): ``len(live)`` queries subscribed, :attr:`runs`
    queries run (first runs included), :attr:`errors`.
    """

    def __init__(self, db: Any) -> None:
        self._db = db
        self._queries: list[_Query] = []
        self._off: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._schema: int | None = None
        self._schema_check: asyncio.Task[None] | None = None
        self._schema_again = False
        self.runs = 0
        self.errors = 0

    def __len__(self) -> int:
        return len(self._queries)

    async def add(self, sql: str, params: Sequence[Any] | dict[str, Any],
                  callback: Callable[[Rows], Any] | None) -> Callable[[], None]:
        """Example: ``off = await live.add("SELECT * FROM t", [], print); off()``

        Run ``sql`` with ``params``, call ``callback(rows)`` (awaited if it returns
        an awaitable) and return the unsubscriber (a plain callable, idempotent).

        Raises what ``db.query`` raises for the first run (nothing stays
        subscribed then), what the first callback raises, TypeError without a
        callable ``callback``, and :class:`~datasync.NotReadOnlyError` for a
        statement that writes (it would run again after its own commit)."""
        if not callable(callback):
            raise TypeError("live() needs a callback: db.live(sql, params, callback), "
                            "called with the rows now and after every change to them")
        if self._db.closed:
            raise DatabaseClosedError(f"database {self._db.name!r} is closed; open it "
                                      "again to watch a query")
        q = _Query(sql, params if params is not None else (), callback)
        self._queries.append(q)
        if self._off is None:  # before the first run: no change can slip between
            self._off = self._db.on_change(self._on_change)
        try:
            await analysis.check_reads(self._db, sql, q.params, "live")
            if self._schema is None:
                self._schema = await analysis.schema_key(self._db)
            rows = await self._db.query(sql, q.params)
            self.runs += 1
            q.tables = await analysis.tables_read(self._db, sql, q.params)
            q.rows = rows
            out = callback(rows)
            if inspect.isawaitable(out):
                await out
        except BaseException:
            self._remove(q)
            raise
        q.busy = False
        if q.dirty:
            self._start(q)
        return lambda: self._remove(q)

    def close(self) -> None:
        """End every query (the database is closing): no callback after this, the
        tasks in flight are cancelled. Example: ``live.close()``"""
        for q in list(self._queries):
            self._remove(q)
        current = asyncio.current_task() if _running() else None
        for task in [*self._tasks, self._schema_check]:
            if task is not None and task is not current:
                task.cancel()

    # -- changes -----------------------------------------------------------------------
    def _on_change(self, change: dict[str, Any]) -> None:
        if self._db.closed:
            self.close()
            return
        touched = _names(change.get("tables"))
        for q in self._queries:
            if touches(touched, q.tables):
                self._mark(q)
        self._check_schema()

    def _mark(self, q: _Query) -> None:
        q.dirty = True
        if not q.busy:
            self._start(q)

    def _start(self, q: _Query) -> None:
        q.busy = True
        task = asyncio.ensure_future(self._rerun(q))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rerun(self, q: _Query) -> None:
        try:
            while q.dirty and not q.ended and not self._db.closed:
                q.dirty = False
                try:
                    rows = await self._db.query(q.sql, q.params)
                    self.runs += 1
                    if q.ended or self._db.closed or rows == q.rows:
                        continue
                    q.rows = rows
                    out = q.callback(rows)
                    if inspect.isawaitable(out):
                        await out
                except DatabaseClosedError:
                    return
                except Exception as exc:  # kept subscribed: see the class docstring
                    self.errors += 1
                    log.warning("live query %r failed (%s: %s); it stays subscribed and "
                                "runs again at the next change", q.sql[:200],
                                type(exc).__name__, exc)
        finally:
            q.busy = False

    def _check_schema(self) -> None:
        """Read the schema version (coalesced); when it moved, recompute every
        query's tables and re-run every query."""
        if self._schema_check is not None:
            self._schema_again = True
            return
        self._schema_check = asyncio.ensure_future(self._schema_loop())

    async def _schema_loop(self) -> None:
        try:
            self._schema_again = True
            while self._schema_again and self._queries and not self._db.closed:
                self._schema_again = False
                try:
                    key = await analysis.schema_key(self._db)
                except DatabaseClosedError:
                    return
                except Exception as exc:
                    self.errors += 1
                    log.warning("live queries: reading the schema version failed (%s: "
                                "%s)", type(exc).__name__, exc)
                    continue
                if key == self._schema:
                    continue
                self._schema = key
                for q in list(self._queries):
                    try:
                        q.tables = await analysis.tables_read(self._db, q.sql, q.params)
                    except DatabaseClosedError:
                        return
                    except Exception:
                        q.tables = None  # cannot tell: any change re-runs it
                    self._mark(q)
        finally:
            self._schema_check = None

    def _remove(self, q: _Query) -> None:
        q.ended = True
        if q in self._queries:
            self._queries.remove(q)
        if not self._queries and self._off is not None:
            off, self._off = self._off, None
            off()
            self._schema = None


def _names(tables: Any) -> frozenset[str] | None:
    return None if tables is None else frozenset(str(t).lower() for t in tables)


def touches(changed: frozenset[str] | None, read: frozenset[str] | None) -> bool:
    """Whether a change to ``changed`` (lower-case names; None: any table) may touch
    a statement reading ``read`` (None: cannot tell; empty: no table)."""
    if read is None:
        return True
    if not read:
        return False
    return changed is None or not changed.isdisjoint(t.lower() for t in read)


def _running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
