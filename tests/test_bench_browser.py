"""Smoke test of benchmarks/browser.py: every contender's path runs and yields figures.

Example: ``python -m pytest tests/test_bench_browser.py`` (about two minutes: Chromium,
Pyodide, sqlite-wasm). No timing is asserted: benchmarks print figures, tests check that
each path ran (its rows, counts and byte totals), so a broken contender fails here.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the Playwright package is not installed "
                    "(make install)")
ROOT = Path(__file__).resolve().parents[1]
SMOKE_ROWS = 500  # browser.py --smoke: W2/bulk rows; W1 sizes [50, 50, 10, 10]

# minutes on a loaded 2-core machine: a dozen Pyodide boots (pages, Workers, relaunches)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "raw.json"
    proc = subprocess.run([sys.executable, "benchmarks/browser.py", "--smoke", "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def test_every_w1_path_ran_every_phase(run: tuple[dict, str]) -> None:
    raw, _ = run
    (w1,) = raw["w1"]
    for key in ("js_main", "js_main_tx", "js_worker", "py_api", "py_conn", "memory"):
        assert set(w1[key]["times"]) == {"insert", "reads", "reads_tx", "update", "delete"}, key
        assert all(ms > 0 for ms in w1[key]["times"].values()), (key, w1[key])
    assert all(w1["sahpool"][p] > 0 for p in ("insert", "reads", "reads_tx", "update", "delete"))
    # main-thread datasync writes reach IndexedDB through the page's counted put/add
    for key in ("js_main", "js_main_tx", "py_api", "py_conn"):
        assert all(w1[key]["bytes"][p] >= 4096 for p in ("insert", "update", "delete")), key
    assert w1["py_api"]["blocks"]["insert"] >= 1
    assert raw["w1_idbfs"][0]["times"]["insert"] > 0


def test_bulk_w2_w3_cover_every_contender(run: tuple[dict, str]) -> None:
    raw, _ = run
    bulk = raw["bulk"]
    assert bulk["js_main"]["bytes_during"] >= bulk["js_main"]["db_bytes"] > 0
    assert bulk["idbfs"]["bytes_during"] >= bulk["idbfs"]["db_bytes"] > 0
    assert bulk["sahpool"]["bytes"] > 0
    for key in ("js_main", "js_worker", "js_shared", "idbfs"):
        assert len(raw["w2"][key]["lat"]) == 3, key
    for key in ("py_api", "py_conn", "sahpool"):
        assert len(raw["w2"][key]) == 3, key
    assert len(raw["w2"]["floor"]) == 6  # measured before and after the contenders
    assert all(b > 0 for b in raw["w2"]["bytes_conn"]), "connect() commits must reach IDB"
    assert raw["open_js_shared"]["leader"] is True
    for system in ("js_main", "js_shared", "sahpool", "idbfs"):
        (cold,) = raw["cold"][system]
        assert cold["count"] == SMOKE_ROWS, system
    assert raw["cold"]["floor"][0]["records"] * 4096 >= raw["image_bytes"]


def test_boot_and_report(run: tuple[dict, str]) -> None:
    raw, stdout = run
    for system in ("datasync", "pyodide", "sahpool"):
        (visits,) = raw["first"][system]
        first, returning = visits
        assert first["row"] == 1 and returning["row"] == 1
        assert first["weight"]["transfer"] > returning["weight"]["transfer"] > 0, system
    for label in ("opfs-sahpool", "IDBFS", "raw IndexedDB floor", "Worker", "shared mode",
                  "JS per call", "Bytes handed to IndexedDB", "Boot", "Memory"):
        assert label in stdout, label
