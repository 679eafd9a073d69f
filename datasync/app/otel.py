"""An optional OpenTelemetry exporter of :meth:`db.metrics() <datasync.app.AppCalls.metrics>`.

Example::

    from datasync.app.otel import instrument
    off = instrument(db)            # the global MeterProvider's meter "datasync"
    ...                             # the SDK's readers collect the figures
    off()                           # db's figures are no longer reported

Needs the ``opentelemetry-api`` package (``pip install 'datasync[otel]'``); without
it :func:`instrument` raises :class:`~datasync.NotSupportedError`. It only uses the
API: the application configures the SDK (a ``MeterProvider`` with readers and
exporters) as usual, or passes its own ``meter``.

Instruments (asynchronous: each collection calls ``db.metrics()`` of every
instrumented database). Names follow the OpenTelemetry semantic-convention style
(dotted lowercase namespace, units in UCUM, durations in seconds, a count's unit in
braces); every observation carries ``db.namespace`` = the database's name.

=============================== ======================= ========== ==============================
name                            kind                    unit       attributes
=============================== ======================= ========== ==============================
datasync.statements             counter                 {statement} kind: read|write|transaction
datasync.errors                 counter                 {error}    error.type: exception class
datasync.statement.duration     gauge                   s          kind; quantile: 0.5|0.95|0.99|1
datasync.flushes                counter                 {flush}
datasync.flush.failures         counter                 {flush}
datasync.flush.bytes            counter                 By
datasync.flush.duration         gauge                   s          quantile
datasync.block_cache.lookups    counter                 {lookup}   result: hit|miss
datasync.query_cache.lookups    counter                 {lookup}   result: hit|miss
datasync.query_cache.entries    up-down counter         {entry}
datasync.live_queries           up-down counter         {query}
datasync.live_query.runs        counter                 {run}
datasync.connections            up-down counter         {connection}
datasync.tabs                   up-down counter         {tab}      (when known)
datasync.forwarded_writes       counter                 {write}
datasync.sync.lag               gauge                   {version}  (a replica, when known)
datasync.sync.lag.duration      gauge                   s          (a replica, when known)
datasync.sync.waiting           up-down counter         {write}    (a replica)
datasync.sync.online            gauge                   1          1 online, 0 not (when known)
=============================== ======================= ========== ==============================

Latency percentiles are gauges (quantile ``1`` is the exact maximum): the API has
no asynchronous histogram, and the buckets stay inside datasync. Values are the
same figures as ``db.metrics()`` (ms turned into seconds). The instruments are
made once per meter; a closed or unsubscribed database is left out of later
collections.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import NotSupportedError

__all__ = ["instrument"]

_QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"), ("max", "1"))
#: One registry of instrumented databases per meter (the instruments exist once).
_registries: dict[int, "_Registry"] = {}


def instrument(db: Any, meter: Any = None) -> Callable[[], None]:
    """Publish ``db``'s metrics through OpenTelemetry; returns the unsubscriber.

    Example: ``off = instrument(db, meter=provider.get_meter("app")); ...; off()``

    ``meter``: an ``opentelemetry.metrics.Meter`` (default: the global provider's
    meter ``"datasync"``). Raises :class:`~datasync.NotSupportedError` when the
    ``opentelemetry-api`` package is not installed."""
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError as exc:
        raise NotSupportedError(
            "the OpenTelemetry exporter needs the opentelemetry-api package: "
            "pip install 'datasync[otel]' (or opentelemetry-api), then configure its SDK"
        ) from exc
    if meter is None:
        from .. import __version__

        meter = otel_metrics.get_meter("datasync", __version__)
    registry = _registries.get(id(meter))
    if registry is None or registry.meter is not meter:
        registry = _registries[id(meter)] = _Registry(meter, otel_metrics.Observation)
    registry.dbs.append(db)

    def unsubscribe() -> None:
        if db in registry.dbs:
            registry.dbs.remove(db)

    return unsubscribe


Figures = Callable[[dict[str, Any]], Iterable[tuple[float, dict[str, str]]]]


def _quantiles(summary: dict[str, Any], **attrs: str) -> list[tuple[float, dict[str, str]]]:
    return [(summary[key] / 1000.0, {**attrs, "quantile": q}) for key, q in _QUANTILES
            if summary.get(key) is not None]


def _lookups(figures: dict[str, Any]) -> list[tuple[float, dict[str, str]]]:
    return [(figures["hits"], {"result": "hit"}), (figures["misses"], {"result": "miss"})]


def _plain(value: Any) -> list[tuple[float, dict[str, str]]]:
    return [] if value is None else [(value, {})]


def _sync(key: str, scale: Callable[[Any], Any] = lambda v: v) -> Figures:
    def figures(m: dict[str, Any]) -> list[tuple[float, dict[str, str]]]:
        sync = m["sync"]
        return [] if sync is None or sync[key] is None else [(scale(sync[key]), {})]
    return figures


#: (instrument kind, name, unit, description, figures of one metrics() snapshot)
INSTRUMENTS: list[tuple[str, str, str, str, Figures]] = [
    ("counter", "datasync.statements", "{statement}", "Statement calls that succeeded",
     lambda m: [(n, {"kind": k}) for k, n in m["statements"].items()]),
    ("counter", "datasync.errors", "{error}", "Statement and transaction calls that raised",
     lambda m: [(n, {"error.type": name}) for name, n in m["errors_by_name"].items()]),
    ("gauge", "datasync.statement.duration", "s", "Latency percentiles of statement calls",
     lambda m: [f for k, s in m["latency_ms"].items() for f in _quantiles(s, kind=k)]),
    ("counter", "datasync.flushes", "{flush}", "Flushes of the block store to its backend",
     lambda m: _plain(m["flushes"]["count"])),
    ("counter", "datasync.flush.failures", "{flush}", "Flushes that failed",
     lambda m: _plain(m["flushes"]["failures"])),
    ("counter", "datasync.flush.bytes", "By", "Bytes of blocks flushed",
     lambda m: _plain(m["flushes"]["bytes"])),
    ("gauge", "datasync.flush.duration", "s", "Latency percentiles of flushes",
     lambda m: _quantiles(m["flushes"]["latency_ms"])),
    ("counter", "datasync.block_cache.lookups", "{lookup}", "Block cache lookups",
     lambda m: _lookups(m["block_cache"])),
    ("counter", "datasync.query_cache.lookups", "{lookup}", "Cached query lookups",
     lambda m: _lookups(m["query_cache"])),
    ("updown", "datasync.query_cache.entries", "{entry}", "Cached query results held",
     lambda m: _plain(m["query_cache"]["entries"])),
    ("updown", "datasync.live_queries", "{query}", "Live queries subscribed",
     lambda m: _plain(m["live_queries"])),
    ("counter", "datasync.live_query.runs", "{run}", "Runs of live queries",
     lambda m: _plain(m["live_runs"])),
    ("updown", "datasync.connections", "{connection}", "SQLite connections open on the store",
     lambda m: _plain(m["connections"])),
    ("updown", "datasync.tabs", "{tab}", "Tabs open on the database",
     lambda m: _plain(m["tabs"])),
    ("counter", "datasync.forwarded_writes", "{write}", "Writes this tab sent to the leader",
     lambda m: _plain(m["forwarded_writes"])),
    ("gauge", "datasync.sync.lag", "{version}", "Primary versions this replica lacks",
     _sync("lag_versions")),
    ("gauge", "datasync.sync.lag.duration", "s", "Seconds since the last pull, when behind",
     _sync("lag_seconds")),
    ("updown", "datasync.sync.waiting", "{write}", "Local writes not yet on the primary",
     _sync("waiting")),
    ("gauge", "datasync.sync.online", "1", "Whether the sync server answered last time",
     _sync("online", int)),
]


class _Registry:
    """The instruments of one meter and the databases they report."""

    def __init__(self, meter: Any, observation: Any) -> None:
        self.meter = meter
        self.dbs: list[Any] = []
        self._observation = observation
        make = {"counter": meter.create_observable_counter,
                "gauge": meter.create_observable_gauge,
                "updown": meter.create_observable_up_down_counter}
        for kind, name, unit, description, figures in INSTRUMENTS:
            make[kind](name, callbacks=[self._callback(figures)], unit=unit,
                       description=description)

    def _callback(self, figures: Figures) -> Callable[[Any], list[Any]]:
        def observe(options: Any) -> list[Any]:
            out = []
            for db in list(self.dbs):
                if db.closed:
                    self.dbs.remove(db)  # (its figures went with it)
                    continue
                base = {"db.namespace": str(db.name)}
                for value, attrs in figures(db.metrics()):
                    out.append(self._observation(value, {**base, **attrs}))
            return out
        return observe
