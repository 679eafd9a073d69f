"""Smoke test of benchmarks/sync_postgres.py: every setup and phase runs and yields figures.

Example: ``python -m pytest tests/test_bench_postgres.py`` (about 20 s: ``--quick`` on
this session's throw-away PostgreSQL cluster). No timing is asserted: the benchmark
prints figures, this checks that each setup (file server, one and two servers on
PostgreSQL) ran each phase and that PostgreSQL's counters were read. Skipped, saying
why, where PostgreSQL is not installed (the ``pg_cluster`` fixture).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "pg.json"
    proc = subprocess.run([sys.executable, "benchmarks/sync_postgres.py", "--quick",
                           "--pg-dsn", pg_dsn, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def test_every_setup_pushed_every_phase(run: tuple[dict, str]) -> None:
    raw, _ = run
    assert list(raw["setups"]) == ["file", "pg1", "pg2"]
    phases = {"1db_c8", "4db_c8"}
    for key, setup in raw["setups"].items():
        assert set(setup["push"]) == (phases | {"4db_c8_pinned"} if key == "pg2" else phases)
        for phase in setup["push"].values():
            assert phase["writes"] == 24 and phase["writes_per_s"] > 0
            assert 0 < phase["push_p50"] <= phase["push_p95"]


def test_postgres_counters_were_read(run: tuple[dict, str]) -> None:
    raw, _ = run
    for key in ("pg1", "pg2"):
        for phase in raw["setups"][key]["push"].values():
            assert phase["pg_rollbacks"] >= 0
            # a write is at least one flush: one committed PostgreSQL transaction
            assert phase["pg_commits_per_write"] >= 1
            assert phase["pg_wal_bytes_per_write"] > 0
            assert phase["pg_stored_bytes_per_write"] > 0
            # one connection per open database and one that LISTENs, per process
            assert phase["pg_connections_per_process"] == phase["databases"] + 1
    # one process: no other writer, so no version race to lose
    assert all(p["pg_rollbacks"] == 0 for p in raw["setups"]["pg1"]["push"].values())


def test_pull_latency_and_report(run: tuple[dict, str]) -> None:
    raw, stdout = run
    assert set(raw["setups"]["pg2"]["pull"]) == {"same", "cross"}
    for setup in raw["setups"].values():
        for r in setup["pull"].values():
            assert r["commits"] == 5 and 0 <= r["pull_p50"] <= r["pull_p95"]
    for label in ("push throughput (writes/s)", "pg x2 / file", "version races lost",
                  "WAL bytes", "push via process A, poll on B (NOTIFY)"):
        assert label in stdout, label
