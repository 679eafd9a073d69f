"""A database's metrics: statement counts, errors, latency percentiles, flushes,
caches, connections, tabs, forwarded writes, sync lag; and its slowest statements.

Example::

    m = db.metrics()
    m["statements"]            # {"read": 120, "write": 14, "transaction": 3}
    m["latency_ms"]["read"]    # {"count": 120, "p50": 0.01, "p95": 0.03, "p99": 0.2, "max": 0.9}
    db.slow_queries(threshold_ms=50, limit=5)
    # [{"sql": "SELECT ...", "kind": "read", "count": 3, "max_ms": 212.0,
    #   "mean_ms": 90.1, "last_ms": 12.5}]

Statement calls are timed by :class:`~datasync.app.measured.Measured` (what counts
once, what is a read or a write, what is an error: see there) into this module's
:class:`Metrics`, one per open database object (``AppState.metrics``). Latencies go
into :class:`~datasync.histogram.LogHistogram` buckets (Prometheus native
histograms' schema 3: percentiles within 4.4 %, ``max`` exact). The other figures
are read when :meth:`Metrics.snapshot` is called, from the database's ``stats()``
(block store counters: flushes, bytes, failures, flush latency, block cache;
``connections``; a tab's ``forwarded_writes``) and ``sync_status()`` (a replica).

Cost on the hot path: the figures (``execute("SELECT 1")`` on an idle native
``Database``, measured against the unmeasured call) are in :mod:`.measured`.
"""
from __future__ import annotations

import time
from typing import Any

from ..errors import InvalidOptionError
from ..histogram import LogHistogram
from .measured import Measured, kind_of

__all__ = ["KINDS", "MAX_STATEMENTS", "Measured", "Metrics", "kind_of"]

#: The kinds counted (see :mod:`.measured`).
KINDS = ("read", "write", "transaction")
#: Distinct statement texts kept for :meth:`Metrics.slow`; see :meth:`Metrics._evict`.
MAX_STATEMENTS = 500
#: How many of them one eviction drops (so that evicting stays rare).
EVICT = 100


class Metrics:
    """Counters and latency histograms of one open database; see the module docstring.

    Example: ``m = Metrics(); m.ran("read", "SELECT 1", 0.0001); m.slow(0, 10)``

    Not thread-safe: the database's calls run on one event loop."""

    def __init__(self) -> None:
        self.latency = {kind: LogHistogram() for kind in KINDS}
        self.errors = 0
        self.errors_by_name: dict[str, int] = {}
        #: sql -> [kind (of its first call), count, total s, max s, last s, seen (a
        #: call number)]
        self._by_sql: dict[str, list[Any]] = {}
        self._calls = 0

    # -- recording (Measured) -------------------------------------------------------
    def ran(self, kind: str, sql: str | None, seconds: float) -> None:
        """One call of ``kind`` succeeded in ``seconds``; ``sql`` (None: a
        transaction) is the text it is known by in :meth:`slow`."""
        self.latency[kind].record(seconds)  # (its count is the kind's count)
        if sql is None:
            return
        self._calls = calls = self._calls + 1
        entry = self._by_sql.get(sql)
        if entry is None:
            if len(self._by_sql) >= MAX_STATEMENTS:
                self._evict()
            self._by_sql[sql] = [kind, 1, seconds, seconds, seconds, calls]
            return
        entry[1] += 1
        entry[2] += seconds
        if seconds > entry[3]:
            entry[3] = seconds
        entry[4] = seconds
        entry[5] = calls

    def failed(self, exc: BaseException) -> None:
        """One call raised ``exc``: counted under its class name, not timed."""
        self.errors += 1
        name = type(exc).__name__
        self.errors_by_name[name] = self.errors_by_name.get(name, 0) + 1

    def _evict(self) -> None:
        """Drop the :data:`EVICT` statements with the smallest ``max`` latency
        (ties: the least recently run), so that a stream of new fast statements
        cannot push a slow one out of :meth:`slow`."""
        doomed = sorted(self._by_sql.items(), key=lambda kv: (kv[1][3], kv[1][5]))[:EVICT]
        for sql, _ in doomed:
            del self._by_sql[sql]

    # -- reading ------------------------------------------------------------------
    def slow(self, threshold_ms: float = 100.0, limit: int = 20) -> list[dict[str, Any]]:
        """The statements whose slowest run took at least ``threshold_ms``, slowest
        first (by ``max_ms``), at most ``limit`` of them.

        Example: ``db.slow_queries(50, 5)`` ->
        ``[{"sql", "kind", "count", "max_ms", "mean_ms", "last_ms"}]`` (ms floats).

        Per distinct SQL text (a batch: its statements joined by ``"; "``, cut at
        1000 characters), over the last :data:`MAX_STATEMENTS` texts kept (see
        :meth:`_evict`); transactions are not listed. Raises
        :class:`~datasync.InvalidOptionError` for a negative threshold or limit."""
        if not isinstance(threshold_ms, (int, float)) or threshold_ms < 0:
            raise InvalidOptionError(
                f"threshold_ms={threshold_ms!r}: give milliseconds, a number >= 0")
        if not isinstance(limit, int) or limit < 0:
            raise InvalidOptionError(f"limit={limit!r}: give a whole number >= 0")
        # Compared in the unit reported: a threshold equal to a max_ms it gave must
        # include that statement ((x * 1000) / 1000 != x for some floats).
        found = [(sql, e) for sql, e in self._by_sql.items() if e[3] * 1000.0 >= threshold_ms]
        found.sort(key=lambda item: (-item[1][3], -item[1][5]))
        return [{"sql": sql, "kind": e[0], "count": e[1], "max_ms": e[3] * 1000.0,
                 "mean_ms": e[2] / e[1] * 1000.0, "last_ms": e[4] * 1000.0}
                for sql, e in found[:limit]]

    def snapshot(self, db: Any, state: Any) -> dict[str, Any]:
        """Every figure of ``db`` now. ``state``: its ``AppState`` (``cache``:
        ``.hits``, ``.misses``, ``len()``; ``live``: ``len()``, ``.runs``).

        Example: ``db.metrics()["block_cache"]["hit_rate"]`` (None: no lookup yet).

        * ``statements`` ``{"read", "write", "transaction"}``: calls that succeeded
          (:mod:`.measured` says what counts once and which kind); ``errors``,
          ``errors_by_name`` ``{class name: n}``: calls that raised.
        * ``latency_ms`` per kind, ``flushes["latency_ms"]``: ``{"count", "p50",
          "p95", "p99", "max"}``, milliseconds (None: nothing yet), percentiles
          within 4.4 %, max exact.
        * ``flushes``: ``count``, ``bytes`` (blocks flushed x block size, before the
          codec), ``failures`` of this process's block store (a follower tab's: 0,
          the leader flushes).
        * ``block_cache``, ``query_cache``: ``hits``, ``misses``, ``hit_rate`` (None:
          no lookup), the query cache's ``entries``; ``live_queries`` subscribed and
          their ``live_runs``.
        * ``connections``: SQLite connections open on the store in this process;
          ``tabs``: 1, or for a tab of a shared database the tabs open on it as
          last seen (see :func:`_tabs`);
          ``forwarded_writes``: write requests this tab sent to the leader.
        * ``sync``: None, or a replica's lag (see :func:`sync_lag`).

        Raises :class:`~datasync.DatabaseClosedError` once ``db`` is closed (its
        figures are gone with it)."""
        stats = db.stats()
        cache, live = getattr(state, "cache", None), getattr(state, "live", None)
        q_hits, q_misses = _int(cache, "hits"), _int(cache, "misses")
        return {
            "statements": {kind: h.count for kind, h in self.latency.items()},
            "errors": self.errors,
            "errors_by_name": dict(self.errors_by_name),
            "latency_ms": {kind: h.summary() for kind, h in self.latency.items()},
            "flushes": {
                "count": int(stats.get("flushes", 0)),
                "bytes": int(stats.get("bytes_flushed", 0)),
                "failures": int(stats.get("flush_failures", 0)),
                "latency_ms": dict(stats.get("flush_latency_ms")
                                   or LogHistogram().summary()),
            },
            "block_cache": _rate(int(stats.get("cache_hits", 0)),
                                 int(stats.get("cache_misses", 0))),
            "query_cache": {**_rate(q_hits, q_misses), "entries": _len(cache)},
            "live_queries": _len(live),
            "live_runs": _int(live, "runs"),
            "connections": int(stats.get("connections", 0)),
            "tabs": _tabs(db),
            "forwarded_writes": int(stats.get("forwarded_writes", 0)),
            "sync": sync_lag(stats.get("sync") or _sync_status(db)),
        }


def sync_lag(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``sync`` figures from a replica's ``sync_status()`` (None: not a replica).

    Example: ``sync_lag(db.sync_status())`` ->
    ``{"lag_versions": 0, "lag_seconds": 0.0, "online": True, "waiting": 0}``

    ``lag_versions``: the newest primary version this replica has heard of (from a
    pull or a push reply) minus the primary version its copy holds
    (``pulled_version``; both in the primary's numbering: ``local_version`` counts
    the local store's own flushes), None while either is unknown. ``lag_seconds``:
    0.0 when caught up; when behind, seconds since the last successful pull (None:
    none yet). ``online``: whether the server answered last time (None: not asked
    yet). ``waiting``: local writes not yet on the primary."""
    if not status:
        return None
    remote, pulled = status.get("remote_version"), status.get("pulled_version")
    lag = None if remote is None or pulled is None else max(0, int(remote) - int(pulled))
    seconds: float | None = None
    if lag == 0:
        seconds = 0.0
    elif lag is not None and status.get("last_pull") is not None:
        seconds = max(0.0, time.time() - float(status["last_pull"]))
    return {"lag_versions": lag, "lag_seconds": seconds, "online": status.get("online"),
            "waiting": int(status.get("waiting") or 0)}


def _sync_status(db: Any) -> dict[str, Any] | None:
    status = getattr(db, "sync_status", None)  # a replica tab's (Replica's is in stats)
    return status() if callable(status) else None


def _tabs(db: Any) -> int | None:
    """1 for a database open in one place; for a tab of a shared one, how many tabs
    have it open as of the last look (:meth:`SharedDatabase.tab_count`: holders and
    waiters of its leader lock, Web Locks' ``query()``; each call looks again in the
    background), None before the first look ends."""
    if db.leader_info().get("tab_id") is None:
        return 1
    count = getattr(db, "tab_count", None)
    return count() if callable(count) else None


def _rate(hits: int, misses: int) -> dict[str, Any]:
    lookups = hits + misses
    return {"hits": hits, "misses": misses, "hit_rate": hits / lookups if lookups else None}


def _int(obj: Any, name: str) -> int:
    return int(getattr(obj, name, 0) or 0)


def _len(obj: Any) -> int:
    try:
        return len(obj)
    except TypeError:  # (a placeholder without __len__)
        return 0
