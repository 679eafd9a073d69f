"""Lock ordering: threads committing through db.connect() never deadlock with the
event loop's flushes (tests/lock_order_stress.py, in a subprocess under a timeout).

The order (docs/architecture.md, "Locks"): SQLite's connection mutex, then the VFS
registry lock, then a store's flush mutex, then its store lock, then the backend.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import native_only

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120


def stress(tmp_path, scenario: str) -> str:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "stress.dsdb") if scenario != "memory" else f"stress-{os.getpid()}"
    env = {**os.environ, "STRESS_DUMP_AFTER": str(TIMEOUT - 10)}
    try:
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "lock_order_stress.py"), path, scenario],
            capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario}: hung for {TIMEOUT} s (a deadlock):\n{exc.stderr}")
    assert proc.returncode == 0, f"{scenario} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@native_only
@pytest.mark.parametrize("scenario", ["blob-small-cache", "blob-9mib"])
def test_a_thread_committing_a_blob_while_the_loop_syncs_never_deadlocks(
        tmp_path, scenario: str) -> None:  # type: ignore[no-untyped-def]
    assert stress(tmp_path, scenario).startswith("ok 41")


@native_only
@pytest.mark.parametrize("backend", ["file", "memory"])
def test_writer_and_reader_threads_with_slow_flushes_never_deadlock_nor_lose_a_row(
        tmp_path, backend: str) -> None:  # type: ignore[no-untyped-def]
    # 4 rounds of: 2 writer threads x 25 commits, 3 reader threads, 30 loop writes;
    # every round closes and reopens the database (strict and relaxed in turn).
    assert stress(tmp_path, backend).startswith("ok 320")
