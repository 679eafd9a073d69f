"""python -m datasync: inspect, export, import, sql."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys

import datasync

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "datasync", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_sql_then_inspect_reports_format_block_size_version_and_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = str(tmp_path / "a.dsdb")
    out = cli("sql", store, "CREATE TABLE t(x)", "INSERT INTO t VALUES (1), (2)",
              "SELECT sum(x) AS s FROM t")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"s": 3}
    info = cli("inspect", store, "--json", "--verify")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["format_version"] == 1 and data["block_size"] == 4096
    assert data["version"] >= 1 and data["blocks"] == 2 and data["file_size"] == 8192
    assert data["corrupt_blocks"] == []


def test_export_then_import_round_trips_through_a_standard_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, copy, other = (str(tmp_path / n) for n in ("a.dsdb", "a.sqlite", "b.dsdb"))
    cli("sql", store, "CREATE TABLE t(x)", "INSERT INTO t SELECT value FROM json_each('[1,2,3]')")
    assert cli("export", store, copy).returncode == 0
    plain = sqlite3.connect(copy)
    assert plain.execute("SELECT sum(x) FROM t").fetchone() == (6,)
    assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    plain.close()
    assert cli("import", copy, other).returncode == 0
    assert json.loads(cli("sql", other, "SELECT count(*) AS n FROM t").stdout) == {"n": 3}


def test_import_refuses_to_overwrite_a_store_without_replace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, copy = str(tmp_path / "a.dsdb"), str(tmp_path / "a.sqlite")
    cli("sql", store, "CREATE TABLE t(x)", "INSERT INTO t VALUES (1)")
    cli("export", store, copy)
    cli("sql", store, "INSERT INTO t VALUES (2)")
    refused = cli("import", copy, store)
    assert refused.returncode == 2 and "--replace" in refused.stderr
    assert json.loads(cli("sql", store, "SELECT count(*) AS n FROM t").stdout) == {"n": 2}
    assert cli("import", copy, store, "--replace").returncode == 0
    assert json.loads(cli("sql", store, "SELECT count(*) AS n FROM t").stdout) == {"n": 1}


def test_errors_are_one_line_with_status_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "p.sqlite"
    sqlite3.connect(plain).execute("CREATE TABLE t(x)").connection.commit()
    out = cli("inspect", str(plain))
    assert out.returncode == 2 and out.stderr.startswith("error: ")
    assert "not a datasync store" in out.stderr
    out = cli("import", str(tmp_path / "missing.sqlite"), str(tmp_path / "x.dsdb"))
    assert out.returncode == 2 and "no file" in out.stderr
    assert not (tmp_path / "x.dsdb").exists()


def test_inspect_lists_the_versions_a_store_can_be_restored_to(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = str(tmp_path / "r.dsdb")

    async def make() -> list[int]:
        db = await datasync.open(store, retain_versions=3)
        await db.execute("CREATE TABLE t(x)")
        for i in range(5):
            await db.execute("INSERT INTO t VALUES (?)", (i,))
            await db.sync()
        versions = [v["version"] for v in await db.versions()]
        await db.close()
        return versions

    versions = asyncio.run(make())
    info = cli("inspect", store, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["restorable_versions"] == versions
    assert len(versions) == 4
    human = cli("inspect", store)
    assert ", ".join(map(str, versions)) in human.stdout
