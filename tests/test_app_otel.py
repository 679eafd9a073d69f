"""The OpenTelemetry exporter (datasync.app.otel) publishes the figures of db.metrics()."""
from __future__ import annotations

import sys
from typing import Any

import pytest

import datasync
from datasync.app.otel import instrument


def test_without_opentelemetry_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import -> ImportError
    with pytest.raises(datasync.NotSupportedError, match="opentelemetry-api"):
        instrument(object())


def _reader() -> tuple[Any, Any]:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader]).get_meter("test")


def _points(reader: Any, db_name: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {attributes other than db.namespace (sorted items): value}, for ``db_name``."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    attrs = dict(p.attributes)
                    if attrs.pop("db.namespace") == db_name:
                        out.setdefault(metric.name, {})[tuple(sorted(attrs.items()))] = p.value
    return out


async def test_the_exported_figures_are_those_of_db_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reader, meter = _reader()
    db = await datasync.open(str(tmp_path / "otel.dsdb"), flush_interval=3600.0)
    off = instrument(db, meter)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    for _ in range(3):
        await db.query("SELECT sum(x) FROM t")
    async with db.transaction():
        await db.execute("UPDATE t SET x = x + 1")
    with pytest.raises(Exception):
        await db.execute("SELECT * FROM missing")
    await db.sync()
    points, m = _points(reader, db.name), db.metrics()
    assert points["datasync.statements"] == {
        (("kind", k),): n for k, n in m["statements"].items()}
    assert points["datasync.errors"] == {(("error.type", "OperationalError"),): 1}
    for kind, lat in m["latency_ms"].items():
        for key, q in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"), ("max", "1")):
            got = points["datasync.statement.duration"][(("kind", kind), ("quantile", q))]
            assert got == pytest.approx(lat[key] / 1000.0)
    assert points["datasync.flushes"] == {(): m["flushes"]["count"]} and m["flushes"]["count"] >= 1
    assert points["datasync.flush.bytes"] == {(): m["flushes"]["bytes"]}
    assert points["datasync.flush.failures"] == {(): 0}
    assert points["datasync.flush.duration"][(("quantile", "1"),)] == pytest.approx(
        m["flushes"]["latency_ms"]["max"] / 1000.0)
    assert points["datasync.block_cache.lookups"] == {
        (("result", "hit"),): m["block_cache"]["hits"],
        (("result", "miss"),): m["block_cache"]["misses"]}
    assert points["datasync.connections"] == {(): 1}
    assert points["datasync.tabs"] == {(): 1}
    assert points["datasync.forwarded_writes"] == {(): 0}
    assert "datasync.sync.lag" not in points  # not a replica
    off()
    await db.execute("SELECT 1")
    assert _points(reader, db.name) == {}  # unsubscribed: no longer reported
    await db.close()


async def test_two_databases_on_one_meter_are_told_apart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reader, meter = _reader()
    a = await datasync.open(str(tmp_path / "a.dsdb"))
    b = await datasync.open(str(tmp_path / "b.dsdb"))
    instrument(a, meter), instrument(b, meter)
    await a.execute("SELECT 1")
    for _ in range(2):
        await b.execute("SELECT 1")
    assert _points(reader, a.name)["datasync.statements"][(("kind", "read"),)] == 1
    assert _points(reader, b.name)["datasync.statements"][(("kind", "read"),)] == 2
    await a.close()
    assert _points(reader, a.name) == {}  # closed: left out
    await b.close()
