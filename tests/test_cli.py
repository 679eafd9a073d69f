"""python -m datasync: inspect, export, import, sql, and serve --root (an app folder)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import datasync
from datasync.tools import serve

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
    assert data["format_version"] == 2 and data["block_size"] == 4096
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


# ------------------------------------------------------------- serve --root DIR

def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_serve_root_serves_an_app_folder_next_to_the_runtime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = tmp_path / "myapp"
    (app / "web").mkdir(parents=True)  # hidden: /web/ is datasync's runtime
    (app / "index.html").write_text("<!doctype html><title>my app</title>")
    (app / "web" / "manifest.json").write_text('{"mine": true}')
    (tmp_path / "secret.txt").write_text("outside the root")
    web = tmp_path / "runtime-web"  # stands for the built web/
    web.mkdir()
    (web / "manifest.json").write_text('{"runtime": true}')
    mounts = serve.runtime_mounts(web)
    with serve.serving(root=app, mounts=mounts) as server:
        assert _get(server.url) == (200, (app / "index.html").read_bytes())
        assert _get(server.url + "web/manifest.json") == (200, b'{"runtime": true}')
        status, body = _get(server.url + "js/datasync.js")
        assert status == 200 and body == (Path(ROOT) / "js" / "datasync.js").read_bytes()
        assert _get(server.url + "web")[0] == 200  # redirected to /web/, a listing
        for escape in ("web/../../secret.txt", "js/%2e%2e/%2e%2e/secret.txt",
                       "../secret.txt", "demo/index.html", "web/.hidden"):
            assert _get(server.url + escape)[0] == 404, escape
    with pytest.raises(FileNotFoundError, match="--root"):
        serve.serve(port=0, root=tmp_path / "missing")


def test_serve_command_with_root_prints_where_the_runtime_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "index.html").write_text("<!doctype html><title>mine</title>")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "datasync", "serve", "--port", "0",
                             "--no-build", "--root", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        base = first.split()[-1]
        assert first.startswith(f"serving {tmp_path.resolve()} at http://127.0.0.1:")
        assert second.startswith(f"runtime: {base}web/, {base}js/ ")
        assert _get(base + "index.html") == (200, (tmp_path / "index.html").read_bytes())
        assert _get(base + "js/datasync.js")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_command_refuses_a_missing_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = cli("serve", "--port", "0", "--no-build", "--root", str(tmp_path / "nope"))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "--root" in out.stderr
