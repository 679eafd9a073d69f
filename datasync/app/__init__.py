"""What applications build on a database: migrations, live and cached queries,
metrics and query analysis.

Example::

    db = await datasync.open("app.dsdb")
    await db.migrate([{"version": 1, "name": "notes",
                       "up": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)",
                       "down": "DROP TABLE notes"}])
    off = await db.live("SELECT count(*) AS n FROM notes", [], lambda rows: print(rows))
    rows = await db.cached("SELECT * FROM notes WHERE id = ?", [1], ttl=30)
    print(db.metrics()["statements"], (await db.explain("SELECT * FROM notes"))["plan"])
    off()

Every call here is made of the calls of :class:`datasync.api.DatabaseAPI`
(statements, transactions, ``on_change``, ``stats``), so one implementation serves
every kind of database: :class:`~datasync.Database`, a tab of
:class:`~datasync.tabs.SharedDatabase` (leader or follower) and a sync
:class:`~datasync.sync.replica.Replica`. :class:`AppCalls` is mixed into each of
them; its state (:class:`AppState`) lives on the database object.

Modules: :mod:`.migrations`, :mod:`.live` (live queries), :mod:`.cache` (cached
queries), :mod:`.analysis` (which tables a statement reads, query plans, index
suggestions, over the private schema copies and trial indexes of :mod:`.plans`), :mod:`.metrics` (counters, latency histograms, slow statements,
and :class:`~.measured.Measured` with :mod:`.timing`, which time every statement call), :mod:`.otel`
(the optional OpenTelemetry exporter).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import analysis, cache, live, metrics, migrations

__all__ = ["AppCalls", "AppState"]


class AppState:
    """The app layer's state of one open database: its metrics, its query cache
    and its live queries (made on first use)."""

    def __init__(self, db: Any) -> None:
        self.metrics = metrics.Metrics()
        self.cache = cache.QueryCache(db, self.metrics)
        self.live = live.LiveQueries(db)


class AppCalls(metrics.Measured):
    """migrate, rollback, migration_status, live, cached, metrics, explain,
    slow_queries: the app-layer calls of every database (see the module docstring)."""

    @property
    def _app(self) -> AppState:
        state = self.__dict__.get("_app_state")
        if state is None:
            state = self.__dict__["_app_state"] = AppState(self)
        return state

    async def close(self) -> None:
        """Example: ``await db.close()``: the database's own ``close``, then its live
        queries end (no callback runs after it returns) and its query cache empties."""
        await super().close()  # type: ignore[misc]
        state = self.__dict__.get("_app_state")
        if state is not None:
            state.live.close()
            state.cache.clear()

    # -- migrations ----------------------------------------------------------------
    async def migrate(self, migrations: Iterable[Any], target: int | None = None
                      ) -> dict[str, Any]:
        """Example: ``await db.migrate(MIGRATIONS)`` -> ``{"from": 0, "to": 2,
        "applied": [1, 2], "reverted": []}``; ``await db.migrate(MIGRATIONS, target=1)``
        runs the ``down`` of each applied one above 1, newest first. Raises the
        MigrationError family. See :func:`datasync.app.migrations.migrate`."""
        return await _migrations.migrate(self, migrations, target=target)

    async def rollback(self, migrations: Iterable[Any], steps: int = 1) -> dict[str, Any]:
        """Example: ``await db.rollback(MIGRATIONS)`` -> ``{"from": 2, "to": 1,
        "applied": [], "reverted": [2]}``: the ``down``s of the last ``steps`` applied
        migrations. See :func:`datasync.app.migrations.rollback`."""
        return await _migrations.rollback(self, migrations, steps=steps)

    async def migration_status(self, migrations: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Example: ``await db.migration_status(MIGRATIONS)`` -> ``[{"version": 1,
        "name": "notes", "checksum": "9f2c...", "applied_at": 1764561600.0, "state":
        "applied"}, ...]`` (states: applied, pending, changed, unknown). See
        :func:`datasync.app.migrations.status`."""
        return await _migrations.status(self, migrations)

    # -- live and cached queries ------------------------------------------------------
    async def live(self, sql: str, params: Sequence[Any] | dict[str, Any] = (),
                   callback: Callable[[list[dict[str, Any]]], Any] | None = None
                   ) -> Callable[[], None]:
        """Example: ``off = await db.live("SELECT * FROM notes", [], render); off()``:
        ``callback(rows)`` (a list of dicts) now and after each commit, in any tab,
        that changes them. Raises what ``query`` raises and NotReadOnlyError. See
        :meth:`datasync.app.live.LiveQueries.add`."""
        return await self._app.live.add(sql, params, callback)

    async def cached(self, sql: str, params: Sequence[Any] | dict[str, Any] = (),
                     ttl: float = 60.0) -> list[dict[str, Any]]:
        """Example: ``rows = await db.cached("SELECT * FROM tags", [], ttl=300)``: the
        rows, kept ``ttl`` seconds or until a commit touches a table they read.
        See :meth:`datasync.app.cache.QueryCache.get`."""
        return await self._app.cache.get(sql, params, ttl)

    # -- metrics and analysis ---------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Example: ``db.metrics()["latency_ms"]["read"]["p95"]``: counters, latency
        percentiles (ms), flushes, caches, tabs, sync lag. See
        :meth:`datasync.app.metrics.Metrics.snapshot`."""
        return self._app.metrics.snapshot(self, self._app)

    def slow_queries(self, threshold_ms: float = 100.0, limit: int = 20
                     ) -> list[dict[str, Any]]:
        """Example: ``db.slow_queries(threshold_ms=50, limit=5)`` -> ``[{"sql", "kind",
        "count", "max_ms", "mean_ms", "last_ms"}, ...]``, slowest first. See
        :meth:`datasync.app.metrics.Metrics.slow`."""
        return self._app.metrics.slow(threshold_ms, limit)

    async def explain(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                      ) -> dict[str, Any]:
        """Example: ``(await db.explain("SELECT * FROM t WHERE a = ?", [1]))["suggestions"]``
        -> ``[{"table": "t", "columns": ["a"], "sql": 'CREATE INDEX ...'}]``; also
        ``plan`` (a tree) and ``full_scans``. See :func:`datasync.app.analysis.explain`."""
        return await analysis.explain(self, sql, params)


_migrations = migrations
